"""Suite-wide settings: Hypothesis profiles (CI runs at least 200 examples each), and a
loopback port a test's server can count on while tests run in parallel (pytest-xdist)."""

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from benchmarks._loopback import PortHold

settings.register_profile(
    "default",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")


@pytest.fixture
def held_port() -> Iterator[int]:
    """A free port of 127.0.0.1, held for the test (`PortHold`): a server the test starts
    (and restarts) on it gets it, nothing else does, and until one listens a connection to
    it is refused. Never ask for a free port and close it: another worker may take it."""
    with PortHold() as hold:
        yield hold.port
