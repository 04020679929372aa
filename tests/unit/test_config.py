from pathlib import Path

import pytest

from surge.config import ConfigError, Settings


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.data_dir == Path(".surge")
    assert settings.max_body_bytes == 1024 * 1024


def test_values_are_read_from_surge_variables_with_their_types() -> None:
    settings = Settings.from_env(
        {
            "SURGE_DATABASE_URL": "postgresql://db/surge",
            "SURGE_API_PORT": "9000",
            "SURGE_WORKER_POLL_INTERVAL": "0.5",
            "SURGE_DATA_DIR": "/var/lib/surge",
        }
    )
    assert settings.database_url == "postgresql://db/surge"
    assert settings.api_port == 9000
    assert settings.worker_poll_interval == 0.5
    assert settings.data_dir == Path("/var/lib/surge")


def test_a_bad_number_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SURGE_API_PORT"):
        Settings.from_env({"SURGE_API_PORT": "eighty"})
