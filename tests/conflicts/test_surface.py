"""The package's public surface, and its purity (no I/O modules imported)."""

from __future__ import annotations

import subprocess
import sys

from quietsync import conflicts


def test_public_names_are_importable_from_the_package() -> None:
    for name in ("HLC", "Clock", "merge_field", "Conflict", "ClockDriftError", "canonical_equal"):
        assert name in conflicts.__all__
    assert all(hasattr(conflicts, name) for name in conflicts.__all__)


def test_importing_conflicts_pulls_in_no_io_or_asyncio() -> None:
    code = (
        "import sys, quietsync.conflicts; "
        "bad = [m for m in ('asyncio', 'sqlite3', 'aiohttp', 'sqlite_utils', 'replica', 'server') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
