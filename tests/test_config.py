"""The data-root setting: explicit option, environment, repository layout, cache."""
from __future__ import annotations

import pytest

from ppg_edge import config
from ppg_edge.errors import DataNotFoundError


def test_explicit_root_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_DATA_ROOT, str(tmp_path / "elsewhere"))
    assert config.data_root(tmp_path) == tmp_path


def test_environment_root(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_DATA_ROOT, str(tmp_path))
    assert config.data_root() == tmp_path


@pytest.mark.parametrize("origin", ["explicit", "env"])
def test_named_root_that_is_missing_is_an_error_not_a_fallback(tmp_path, monkeypatch, origin):
    missing = tmp_path / "missing"
    if origin == "env":
        monkeypatch.setenv(config.ENV_DATA_ROOT, str(missing))
        with pytest.raises(DataNotFoundError, match=config.ENV_DATA_ROOT):
            config.data_root()
    else:
        with pytest.raises(DataNotFoundError, match="--data-root"):
            config.data_root(missing)


def test_nothing_found_names_every_place(tmp_path, monkeypatch):
    monkeypatch.delenv(config.ENV_DATA_ROOT, raising=False)
    monkeypatch.setenv(config.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(config, "REPO_ROOT", tmp_path / "repo")
    with pytest.raises(DataNotFoundError) as err:
        config.data_root()
    msg = str(err.value)
    assert "PPG_EDGE_DATA" in msg and "repository layout" in msg and "download cache" in msg
