"""Every setting is documented in the README with its environment variable and default."""
from __future__ import annotations

from pathlib import Path

import pytest

from service.config import SETTINGS
from service.log_config import TOPIC_CONFIGS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_setting_is_in_the_readme_table(setting):
    row = next((line for line in README.splitlines() if line.startswith(f"| `{setting.name}` |")), None)
    assert row is not None, f"README has no row for {setting.name}"
    assert f"`{setting.env}`" in row
    if setting.default is not None and not isinstance(setting.default, bool):
        assert str(setting.default) in row


@pytest.mark.parametrize("name", sorted(TOPIC_CONFIGS))
def test_topic_config_is_in_the_readme_table(name):
    assert any(line.startswith(f"| `{name}` |") for line in README.splitlines()), name
