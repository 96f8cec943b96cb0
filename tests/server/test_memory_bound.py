"""Pages are bounded in bytes: a user with 150 MB of values cannot swell the server.

A real ``quietsync serve`` process holds 150 values of 1 MB. A pull asking
for 5,000 changes at once, and a live socket asking for the whole backlog,
both get it page by page (a few values a page); the server's resident memory
grows by at most 64 MB while it serves them (Linux: peak RSS, reset after the
values were written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.server.helpers import Writer, push
from tests.server.processes import serve_process

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for the peak RSS")

VALUES = 150
VALUE = "x" * (1 << 20)
LIMIT_MB = 64


def _status(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM`` figure of process `pid`, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    """Start process `pid`'s peak RSS (``VmHWM``) again from its current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def test_huge_values_are_served_page_by_page_in_bounded_memory(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"secret-1-ab7Fq2xZ": "alice"}))
    args = ("--tokens", str(tokens), "--max-body-bytes", str(2 << 20))
    headers = {"Authorization": "Bearer secret-1-ab7Fq2xZ"}
    w = Writer("n1")
    async with serve_process(tmp_path / "s.db", *args) as server:
        pid = server.proc.pid
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(server.url, headers=headers, timeout=timeout) as http:
            for i in range(VALUES):
                status, _ = await push(http, [w.lww(f"k{i}", "f", VALUE)])
                assert status == 200
            _reset_peak(pid)
            before = _status(pid, "VmRSS")
            pages, since = [], 0
            while True:  # asks for everything at once; gets pages bounded in bytes
                params = {"since": str(since), "limit": "5000"}
                async with http.get("/v1/pull", params=params) as resp:
                    page = await resp.json()
                pages.append(len(page["changes"]))
                since = page["cursor"]
                if not page["has_more"]:
                    break
            received = 0
            async with http.ws_connect("/v1/live", params={"since": "0"}, max_msg_size=0) as ws:
                assert (await ws.receive_json(timeout=60))["type"] == "hello"
                while received < VALUES:
                    received += len((await ws.receive_json(timeout=60))["changes"])
            grown = _status(pid, "VmHWM") - before
    assert sum(pages) == VALUES and max(pages) <= 4  # 4 MiB pages: a few values each
    assert received == VALUES
    print(f"server peak RSS grew by {grown / (1 << 20):.1f} MB serving {VALUES} MB")
    assert grown <= LIMIT_MB << 20, f"the server grew by {grown / (1 << 20):.1f} MB"
