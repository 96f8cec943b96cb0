"""The tokens an operator gives `quietsync serve` (a file or ``QUIETSYNC_TOKENS``) are checked.

Each bad set is refused with a `ConfigError` naming where it came from and why;
a file that group or others may read is served, with one warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from quietsync.server.config import MIN_TOKEN_LENGTH, load_tokens_file, tokens_from_env
from quietsync.server.errors import ConfigError

LONG = "0123456789abcdef"
BAD = [
    ('{"t": "alice"}', f"tokens must be at least {MIN_TOKEN_LENGTH} characters"),
    ('{"fünfzehn-😀-abcd": "alice"}', "at least 16 characters"),  # 15 characters
    (f'{{"{LONG}": "alice", "{LONG}": "bob"}}', f"duplicate token '{LONG[:4]}'"),
    (f'{{"{LONG}-é": "alice", "x{LONG}": "bob", "{LONG}-é": "alice"}}', "duplicate token"),
    (f'{{"{LONG}\\ud800": "alice"}}', "not valid UTF-8"),
]


@pytest.mark.parametrize(("content", "fragment"), BAD)
def test_bad_tokens_in_a_file_are_refused(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=fragment) as refused:
        load_tokens_file(path)
    assert str(path) in str(refused.value)


@pytest.mark.parametrize(("content", "fragment"), BAD)
def test_bad_tokens_in_the_environment_are_refused(content: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=f"QUIETSYNC_TOKENS: .*{fragment}"):
        tokens_from_env({"QUIETSYNC_TOKENS": content})


def test_tokens_of_the_minimum_length_in_any_script_are_accepted(tmp_path: Path) -> None:
    tokens = {"fünfzehn-😀-abcde": "alice", "e\u0301" * 8: "bob", "𝄞" * 16: "carol"}
    assert all(len(token) == MIN_TOKEN_LENGTH for token in tokens)
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    assert load_tokens_file(path) == tokens
    assert tokens_from_env({"QUIETSYNC_TOKENS": json.dumps(tokens)}) == tokens


@pytest.mark.parametrize(("mode", "warned"), [(0o666, True), (0o604, True), (0o600, False)])
def test_a_tokens_file_others_may_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warned: bool
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({LONG: "alice"}))
    path.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="quietsync.server.config"):
        assert load_tokens_file(path) == {LONG: "alice"}
    assert [r.getMessage() for r in caplog.records] == (
        [f"tokens file {path} has mode {mode:o}: group or others may read it; chmod 600 it"]
        if warned
        else []
    )
