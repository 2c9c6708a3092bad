from pathlib import Path

import pytest

from exchange.core.errors import ConfigError
from exchange.engine.config import EngineConfig


def test_defaults_need_no_configuration() -> None:
    config = EngineConfig()
    assert config.data_dir == Path("data")
    assert config.journal_url is None


def test_config_is_frozen_and_keyword_only() -> None:
    config = EngineConfig(data_dir=Path("x"))
    with pytest.raises(AttributeError):
        config.data_dir = Path("y")  # type: ignore[misc]
    with pytest.raises(TypeError):
        EngineConfig(Path("x"))  # type: ignore[misc]


def test_unknown_keys_are_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown keys \['group_comit'\]"):
        EngineConfig.from_mapping({"group_comit": 5})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"group_commit_max_commands": 0}, "group_commit_max_commands: expected an int"),
        ({"group_commit_max_commands": "5"}, "group_commit_max_commands: expected an int"),
        ({"snapshot_every_events": True}, "snapshot_every_events: expected an int"),
        ({"journal_url": "not a url"}, "journal_url: expected a database URL"),
        ({"data_dir": 5}, "data_dir: expected a path string"),
    ],
)
def test_bad_values_say_what_was_expected(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineConfig.from_mapping(data)


def test_toml_file_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "perpdex.toml"
    path.write_text('[engine]\ndata_dir = "state"\ngroup_commit_max_commands = 64\n')
    config = EngineConfig.from_toml(path)
    assert config.data_dir == Path("state")
    assert config.group_commit_max_commands == 64


def test_toml_with_unknown_table_or_bad_syntax_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "perpdex.toml"
    path.write_text("[engin]\n")
    with pytest.raises(ConfigError, match="unknown tables"):
        EngineConfig.from_toml(path)
    path.write_text("[engine\n")
    with pytest.raises(ConfigError, match="expected readable TOML"):
        EngineConfig.from_toml(path)
