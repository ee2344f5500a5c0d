"""Settings precedence: defaults < config.toml < QWENDESK_* environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwendesk.daemon import config
from qwendesk.daemon.errors import ConfigError


def test_defaults_live_under_home(qwendesk_home: Path) -> None:
    s = config.load_settings()
    assert s.home == qwendesk_home.resolve()
    assert s.port == config.DEFAULT_PORT
    assert s.host == "127.0.0.1"
    assert s.model_folders == [qwendesk_home.resolve() / "models"]
    for path in (s.config_file, s.log_dir, s.run_dir, s.xinference_home):
        assert qwendesk_home.resolve() in path.parents


def test_precedence_file_then_env_then_flags(qwendesk_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (qwendesk_home / "config.toml").write_text("port = 1111\nn_ctx = 2048\nkeep_alive = 10\n")
    assert config.load_settings().port == 1111
    monkeypatch.setenv("QWENDESK_PORT", "2222")
    s = config.load_settings()
    assert (s.port, s.n_ctx, s.keep_alive) == (2222, 2048, 10.0)
    s = config.load_settings(flags={"port": 3333, "n_ctx": None})
    assert (s.port, s.n_ctx) == (3333, 2048)


def test_home_flag_moves_everything(tmp_path: Path) -> None:
    s = config.load_settings(flags={"home": str(tmp_path / "elsewhere")})
    assert s.data_dir == (tmp_path / "elsewhere").resolve()
    assert s.config_file.parent == s.data_dir


def test_env_lists_and_bools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    monkeypatch.setenv("QWENDESK_MODELS_DIRS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    monkeypatch.setenv("QWENDESK_ALLOWED_ORIGINS", "http://a.test, http://b.test")
    monkeypatch.setenv("QWENDESK_AUTO_START", "false")
    s = config.load_settings()
    assert s.model_folders == [(tmp_path / "a").resolve(), (tmp_path / "b").resolve()]
    assert s.allowed_origins == ["http://a.test", "http://b.test"]
    assert s.auto_start is False


def test_bad_values_say_where(monkeypatch: pytest.MonkeyPatch, qwendesk_home: Path) -> None:
    monkeypatch.setenv("QWENDESK_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="port"):
        config.load_settings()


def test_unknown_key_in_file(qwendesk_home: Path) -> None:
    (qwendesk_home / "config.toml").write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="Unknown setting.*prot"):
        config.load_settings()


def test_broken_toml(qwendesk_home: Path) -> None:
    (qwendesk_home / "config.toml").write_text("port = \n")
    with pytest.raises(ConfigError, match="config file"):
        config.load_settings()


def test_public_dict_hides_secrets() -> None:
    s = config.load_settings(flags={"token": "s3cret"})
    assert s.public_dict()["token"] == "***"
    assert "s3cret" not in str(s.public_dict())


def test_every_setting_is_described() -> None:
    rows = config.describe()
    assert {r["name"] for r in rows} == set(config.FIELDS)
    assert all(r["help"] and r["env"].startswith("QWENDESK_") for r in rows)
