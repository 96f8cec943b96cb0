"""The pytest plugin works the way ``docs/protocol.md`` tells app developers to use it.

Runs a separate pytest session on a small suite written the documented way
(a top-level conftest registering the plugin, pytest-asyncio in strict mode).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CONFTEST = """
import pytest

pytest_plugins = ["quietsync.pytest_plugin"]

@pytest.fixture
def quietsync_users():
    return {"alice": "token-a", "bob": "token-b"}
"""

TESTS = """
import pytest

@pytest.mark.asyncio
async def test_pull_starts_empty(quietsync_server):
    async with quietsync_server.client("alice") as http:
        body = await (await http.get("/v1/pull")).json()
        assert body == {"changes": [], "cursor": 0, "has_more": False}
    assert quietsync_server.token("bob") == "token-b"

@pytest.mark.asyncio
@pytest.mark.parametrize("quietsync_server_options", [{"max_batch": 1}])
async def test_options(quietsync_server):
    assert quietsync_server.config.max_batch == 1
    async with quietsync_server.client("alice") as http:
        resp = await http.post("/v1/push", json={"mutations": [{}, {}]})
        assert resp.status == 413
"""


def test_an_app_suite_can_use_the_fixture(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_app.py").write_text(textwrap.dedent(TESTS))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
