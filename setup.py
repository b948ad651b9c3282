"""Build script: compiles every ``cext/_NAME.pyx`` into the extension ``media._NAME``
(``cext/_sipmsg.pyx``, the SIP parser, into ``sip28181.sip._sipmsg``).

``SIP28181_NO_EXTENSIONS=1`` at build time skips compilation (the pure-Python twins are used);
``SIP28181_DEBUG=1`` builds with bounds checks and line tracing.
"""

import os
import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
NO_EXTENSIONS = os.environ.get("SIP28181_NO_EXTENSIONS", "") not in ("", "0")
DEBUG = os.environ.get("SIP28181_DEBUG", "") not in ("", "0")
PACKAGES = {"_sipmsg": "sip28181.sip"}     # sources not built into ``media``


def extensions():
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    modules = []
    for pyx in sorted((HERE / "cext").glob("_*.pyx")):
        modules.append(
            Extension(
                f"{PACKAGES.get(pyx.stem, 'media')}.{pyx.stem}",
                [str(pyx.relative_to(HERE))],
                depends=[str(h.relative_to(HERE)) for h in sorted((HERE / "cext").glob("*.h"))],
                extra_compile_args=["-O3"] if not DEBUG else ["-O0", "-g"],
                define_macros=[("CYTHON_TRACE", "1")] if DEBUG else [],
            )
        )
    return cythonize(
        modules,
        language_level=3,
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": False,
            "initializedcheck": DEBUG,
            "cdivision": True,
            "linetrace": DEBUG,
            "embedsignature": True,
        },
        annotate=DEBUG,
    )


setup(
    packages=find_packages(include=["sip28181", "sip28181.*", "media", "media.*"]),
    package_data={"media": ["*.pyi", "py.typed"], "sip28181": ["py.typed"]},
    ext_modules=extensions(),
)
