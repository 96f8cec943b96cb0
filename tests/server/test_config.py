"""`ServerConfig` and the token sources refuse bad settings with a clear `ConfigError`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quietsync.server.config import ServerConfig, load_tokens_file, tokens_from_env
from quietsync.server.errors import ConfigError
from quietsync.server.jobs import JobsConfig, ScriptedProvider


def test_tokens_from_the_environment() -> None:
    tokens = {"t1-0123456789abcdef": "alice"}
    assert tokens_from_env({"QUIETSYNC_TOKENS": json.dumps(tokens)}) == tokens
    assert tokens_from_env({}) is None
    with pytest.raises(ConfigError, match="QUIETSYNC_TOKENS is not JSON"):
        tokens_from_env({"QUIETSYNC_TOKENS": "{"})


def test_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    tokens = {"t1-0123456789abcdef": "alice", "t2-0123456789abcdef": "bob"}
    path.write_text(json.dumps(tokens))
    assert load_tokens_file(path) == tokens
    with pytest.raises(ConfigError, match="cannot read tokens file"):
        load_tokens_file(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("tokens", "fragment"),
    [({}, "non-empty JSON object"), ({" t": "a"}, "without spaces"), ({"t": ""}, "1-128")],
)
def test_bad_tokens(tokens: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        ServerConfig(db_path=":memory:", tokens=tokens)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"max_batch": 0}, "max_batch must be a positive int"),
        ({"max_body_bytes": -1}, "max_body_bytes must be a positive int"),
        ({"node_id": "no spaces"}, "invalid node id"),
    ],
)
def test_bad_limits(override: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        ServerConfig(db_path=":memory:", tokens={"t": "a"}, **override)  # type: ignore[arg-type]


def test_defaults_are_the_documented_limits() -> None:
    config = ServerConfig(db_path="x.db", tokens={"t": "a"})
    assert (config.max_body_bytes, config.max_batch, config.max_drift_ms) == (2**20, 1000, 60_000)
    assert (config.pull_limit_default, config.pull_limit_max) == (500, 5000)
    assert config.db_path == Path("x.db")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"max_per_user": 0}, "max_per_user must be a positive int"),
        ({"timeout": 0}, "timeout must be a positive number of seconds"),
        ({"retention": -1}, "retention must be a number of seconds >= 0"),
        ({"flush_interval": True}, "flush_interval must be a positive number of seconds"),
    ],
)
def test_bad_job_settings(override: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        JobsConfig(**override)  # type: ignore[arg-type]


def test_job_defaults_are_the_documented_ones() -> None:
    config = JobsConfig()
    assert (config.max_per_user, config.timeout, config.retention) == (4, 300.0, 3600.0)
    assert (config.keepalive, config.flush_interval) == (15.0, 0.05)
    assert config.provider == ScriptedProvider(tokens=40, token_delay=0.02, fail_after=None)
