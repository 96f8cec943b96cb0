"""The README's example runs as written: the front door must stay true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_runs_and_shows_the_reply_and_its_notification(tmp_path: Path) -> None:
    text = README.read_text()
    marker = text.index("<!-- readme-example:")
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
    reply, notifications = out.stdout.strip().splitlines()
    assert reply.startswith("You said: What does quietsync do?")
    assert notifications == "['Reply ready']"
    assert (tmp_path / "app.db").exists()
