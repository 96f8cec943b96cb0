"""`quietsync demo` end to end: the installed command, and its loud failure.

The demo is run exactly as a newcomer runs it (the console script of this
environment, from an unrelated directory), so a packaging or import mistake
fails here too. Its expectations are checked by the demo itself; this test
checks that it says so and exits 0, and that a broken reply makes it exit 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from quietsync.demo import run_demo

ROOT = Path(__file__).resolve().parent.parent


def demo_command() -> tuple[list[str], Path | None]:
    """The `quietsync` console script beside this interpreter, else ``python -m quietsync``."""
    script = Path(sys.executable).with_name("quietsync")
    if script.exists():
        return [str(script), "demo"], None
    return [sys.executable, "-m", "quietsync", "demo"], ROOT


def test_demo_command_narrates_the_story_and_exits_0(tmp_path: Path) -> None:
    command, cwd = demo_command()
    done = subprocess.run(
        command, cwd=cwd or tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for line in (
        "view switched to thread B mid-stream",
        "view on B, reply persisted in the replica",
        "shown at once (reattached, no gap)",
        "live delta:",
        "reply completed: ",
        "one notification: [ai.message.received]",
        "phone, by sync alone: the whole reply and notification job:",
        "identical title suppressed +1, no conflict for it",
        "conflict on owner, detected by the server: winner ",
        "both replicas end with ",
        "alice creates space 'Lisbon in May ✈️' and adds bob as a writer",
        "bob's replica heard of the space live and pulled it",
        "the plan merged, every edit kept: ",
        "title conflict naming both: ",
    ):
        assert line in out, f"missing {line!r} in:\n{out}"
    table = out[out.index("\nsummary\n") :].strip().splitlines()[1:]
    rows = dict(re.fullmatch(r"\s+(.+?)\s{2,}(\S.*)", row).groups() for row in table)  # type: ignore[union-attr]
    assert rows["replies streamed"] == "1"
    assert rows["tokens persisted"] == "60 / 60"
    assert rows["thread switches"] == "3"
    assert rows["notifications"] == "1"
    assert rows["conflicts reported"] == "1"
    assert rows["conflicts suppressed"] == "1"
    assert rows["lost writes"] == "0"
    assert rows["shared spaces"] == "1"
    assert rows["shared conflicts"] == "1"
    assert rows["elapsed"].endswith(" s")


async def test_a_reply_that_fails_midway_makes_the_demo_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The provider dies after 45 of 60 tokens: long after the demo came back to
    # A (~20 tokens in), before the reply could complete. The demo must say so
    # and print no summary.
    assert await run_demo(fail_after=45) == 1
    captured = capsys.readouterr()
    assert "demo FAILED: reply lost: job error" in captured.err
    assert "summary" not in captured.out
