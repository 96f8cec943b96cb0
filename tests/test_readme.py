"""The README's example runs as written: the front door must stay true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _run_example(number: int, tmp_path: Path) -> list[str]:
    """Run the README's `number`-th marked example (from 0); the lines it printed."""
    text = README.read_text()
    marker = [m.start() for m in re.finditer("<!-- readme-example:", text)][number]
    block = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert block is not None
    script = tmp_path / "example.py"
    script.write_text(block.group(1))
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def test_the_readme_example_runs_and_shows_the_reply_and_its_notification(tmp_path: Path) -> None:
    reply, notifications = _run_example(0, tmp_path)
    assert reply.startswith("You said: What does quietsync do?")
    assert notifications == "['Reply ready']"
    assert (tmp_path / "app.db").exists()


def test_the_sharing_example_merges_both_users_edits_in_the_shared_space(tmp_path: Path) -> None:
    assert _run_example(1, tmp_path) == ["Pack 🧳. Day 1: Alfama None"]  # not in the private one
