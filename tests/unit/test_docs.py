"""The README tells the truth about what the code reads and prints."""

import inspect
import re
from pathlib import Path

from oddsbatch import config
from oddsbatch.local import demo

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented_and_read():
    source = inspect.getsource(config.Settings.from_env)
    for name in config.SETTINGS_HELP:
        assert f"`{name}`" in README, name
        assert f'"{name}"' in source, f"{name} is documented but never read"
    read = set(re.findall(r'"(ODDSBATCH_[A-Z_]+)"', source))
    assert read <= set(config.SETTINGS_HELP), read - set(config.SETTINGS_HELP)


def test_readme_gives_the_two_commands_and_the_demo_line():
    assert "make demo" in README and "make test" in README
    line = re.search(r"^demo: .*$", README, re.M).group(0)
    assert line == ("demo: game_lines_rows=<int> player_props_rows=<int> merges=<int> files=<int> "
                    "quarantined=<int> seconds=<float>")
    printed = inspect.getsource(demo.main)
    for field in ("game_lines_rows=", "player_props_rows=", "merges=", "files=", "quarantined=", "seconds="):
        assert field in printed
