"""`Backoff`: how long the sync client waits before trying an unreachable server again.

Exponential with full jitter (the delay is uniform in ``[0, min(cap, base * 2**n)]``
after the n-th consecutive failure): many replicas that lost the same server
spread their retries instead of returning in lockstep, and a long outage costs
one attempt per `cap` seconds at most. Progress resets it (the sync client
says what counts: a live batch applied, writes pushed, or a live connection
that stayed up `settled` seconds), never a lone successful request, so a
server that answers one request and then breaks is retried ever more slowly.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import random

import attrs

__all__ = ["Backoff"]


@attrs.define
class Backoff:
    """Delays for consecutive failures; `rng` is injectable so tests can pin the jitter."""

    base: float = 0.1
    cap: float = 10.0
    rng: random.Random = attrs.Factory(random.Random)
    failures: int = 0
    settled: float = 10.0
    """Seconds a connection must stay up to count as progress (the delays start over)."""

    def __attrs_post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"need 0 < base <= cap, got base={self.base} cap={self.cap}")

    def next_delay(self) -> float:
        """The delay before the next attempt (seconds); counts one more failure."""
        ceiling = min(self.cap, self.base * 2.0 ** min(self.failures, 62))
        self.failures += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.failures = 0
