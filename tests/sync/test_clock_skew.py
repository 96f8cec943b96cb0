"""A device whose clock is wrong: the server refuses its writes, the user is told once, why."""

from __future__ import annotations

from pathlib import Path

from quietsync.conflicts import wall_clock_ms
from quietsync.protocol import NOTIFICATIONS
from quietsync.replica import ClockSkewError, Notifications, Replica, SyncClient
from quietsync.testing import RunningServer
from tests.sync.conftest import TOKEN, wait_status

FIVE_MINUTES_MS = 5 * 60_000


def fast_wall() -> int:
    return wall_clock_ms() + FIVE_MINUTES_MS


async def test_a_fast_clock_is_explained_once_and_never_loops(
    server: RunningServer, tmp_path: Path
):
    with Replica.open(tmp_path / "fast.db", node_id="fast", wall=fast_wall) as replica:
        notes = Notifications(replica)
        client = SyncClient(replica, server.url, token=TOKEN, on_refused=notes.write_refused)
        await client.start()
        for n in range(3):
            replica.put("notes", f"n{n}", {"title": f"écrit à l'avance ⏰ {n}"})
        status = await wait_status(
            client, lambda s: isinstance(s.error, ClockSkewError) and s.pending == 0
        )
        replica.put("notes", "later", {"title": "one more 🕰️"})
        status = await wait_status(
            client, lambda s: isinstance(s.error, ClockSkewError) and s.pending == 0
        )
        await client.stop()
        assert "clock" in (status.last_error or "") and status.online
        [warning] = notes.list()
        assert warning["type"] == "system.warning" and "clock" in warning["body"]
        refused = replica.refused()
        assert {(r.mutation.collection, r.mutation.key) for r in refused} == {
            *(("notes", f"n{n}") for n in range(3)),
            ("notes", "later"),
            (NOTIFICATIONS, "sync.refused:clock_drift"),  # refused too, and not told again
        }
        assert all(r.reason.startswith("clock_drift") for r in refused)
