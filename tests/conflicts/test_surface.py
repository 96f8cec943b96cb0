"""The merge core's public surface (its purity is checked in tests/test_layout.py)."""

from __future__ import annotations

from quietsync import conflicts


def test_public_names_are_importable_from_the_package() -> None:
    for name in ("HLC", "Clock", "merge_field", "Conflict", "ClockDriftError", "canonical_equal"):
        assert name in conflicts.__all__
    assert all(hasattr(conflicts, name) for name in conflicts.__all__)
