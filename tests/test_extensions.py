"""The compiled hot path is really in use, and SIP28181_NO_EXTENSIONS=1 really forces the twins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

STAGES = ("rtp", "ps", "flv", "psmux", "receiver", "udprecv")
PROBE = (
    "import media._impl as i, media.rtp, media.ps, media.flv, media.psmux, media.receiver,"
    " media.udprecv\n"
    "print(int(i.NO_EXTENSIONS), ','.join(i.FALLBACKS) or '-',"
    " ','.join(c.__module__ for c in (media.rtp.JitterBuffer, media.ps.PsDemuxer, media.flv.FlvMuxer,"
    " media.psmux.PsMuxer, media.receiver.RtpPsReceiver, media.udprecv.UdpReader)))\n"
)


def run_probe(**env_changes) -> list[str]:
    env = dict(os.environ)
    env.pop("SIP28181_NO_EXTENSIONS", None)
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return out.stdout.split()


def test_compiled_modules_are_built_and_chosen():
    no_ext, fallbacks, modules = run_probe()
    assert no_ext == "0"
    assert fallbacks == "-", f"compiled stages missing (silent fallback): {fallbacks}"
    assert modules.split(",") == [f"media._{s}" for s in STAGES]


def test_environment_forces_the_pure_python_twins():
    no_ext, fallbacks, modules = run_probe(SIP28181_NO_EXTENSIONS="1")
    assert no_ext == "1" and fallbacks == "-"
    assert modules.split(",") == [f"media._{s}_py" for s in STAGES]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_has_a_compiled_source_and_a_twin(stage):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert os.path.exists(os.path.join(root, "cext", f"_{stage}.pyx"))
    assert os.path.exists(os.path.join(root, "media", f"_{stage}_py.py"))
