from __future__ import annotations

from pathlib import Path

import pytest

from trio_sync.config import DEFAULT_DATABASE, DEFAULT_LISTEN, Config, ConfigError, load_config


def test_defaults_are_the_embedded_sqlite() -> None:
    config = load_config({}, environ={})
    assert config.database == DEFAULT_DATABASE
    assert config.listen == DEFAULT_LISTEN


def test_file_then_environment_then_command_line(tmp_path: Path) -> None:
    path = tmp_path / "trio-sync.toml"
    path.write_text('database = "sqlite:///from-file.db"\nlisten = "0.0.0.0:1"\nbatch_size = 7\n')
    env = {"TRIO_SYNC_LISTEN": "127.0.0.1:2", "TRIO_SYNC_SERVER_NAME": "env.example"}
    config = load_config({"server_name": "cli.example"}, environ=env, config_file=str(path))
    assert config.database == "sqlite:///from-file.db"
    assert config.listen == "127.0.0.1:2"
    assert config.server_name == "cli.example"
    assert config.batch_size == 7


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('ingest_secret = "s3cret"\n')
    assert load_config({}, environ={"TRIO_SYNC_CONFIG": str(path)}).ingest_secret == "s3cret"


def test_unknown_config_file_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('databse = "typo"\n')
    with pytest.raises(ValueError, match="databse"):
        load_config({}, environ={}, config_file=str(path))


def test_numeric_environment_values_are_converted() -> None:
    config = load_config({}, environ={"TRIO_SYNC_GRACEFUL_TIMEOUT": "2.5"})
    assert config.graceful_timeout == 2.5


def test_max_request_body_is_a_positive_number_of_bytes() -> None:
    assert Config().with_overrides({"max_request_body": "1024"}).max_request_body == 1024
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ConfigError, match="max_request_body"):
            Config().with_overrides({"max_request_body": bad})
