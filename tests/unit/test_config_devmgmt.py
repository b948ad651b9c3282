"""The [catalog], [alarm] and [query] options: TOML, environment, checks."""

from __future__ import annotations

import pytest

from sip28181.config import Config
from sip28181.errors import ConfigError


def test_toml_and_environment(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[catalog]\nquery_on_register = false\ntimeout = 5\nsubscribe = true\n"
                    "[alarm]\nrespond = false\nposition_interval = 2\n[query]\ntimeout = 3.5\n")
    config = Config.load(["--config", str(path)], environ={"SIP28181_CATALOG_IDLE_TIMEOUT": "2.5"})
    assert (config.catalog_query_on_register, config.catalog_timeout, config.catalog_subscribe) == (False, 5.0, True)
    assert (config.alarm_respond, config.position_interval, config.query_timeout) == (False, 2, 3.5)
    assert config.catalog_idle_timeout == 2.5


@pytest.mark.parametrize("text", ["[catalog]\ntimeout = 0\n", "[catalog]\nsubscribe_expires = 5\n",
                                  "[alarm]\nrespond = \"yes\"\n", "[query]\ntimeout = -1\n", "[catalog]\nbogus = 1\n"])
def test_bad_values_are_refused(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        Config.load(["--config", str(path)], environ={})
