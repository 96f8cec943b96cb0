"""Change subscriptions: who is told, after commit, that records changed.

Views (and the stream tracker) subscribe per collection, optionally per key.
Callbacks run synchronously right after the transaction that made the change
committed, on the caller's thread (the replica lives on one asyncio loop): a
callback that wants to do async work schedules it itself. A callback that
raises is logged and skipped: a broken view must never break a write that
is already durable.

Must not import `quietsync.server`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Literal

import attrs

__all__ = ["ChangeEvent", "Origin", "Subscriptions", "Unsubscribe"]

log = logging.getLogger(__name__)

Origin = Literal["local", "remote"]
Unsubscribe = Callable[[], None]


@attrs.frozen
class ChangeEvent:
    """Fields of one record that changed in one committed transaction."""

    collection: str
    key: str
    fields: frozenset[str]
    origin: Origin


Callback = Callable[[ChangeEvent], object]


@attrs.define(eq=False)  # identity: the same callback may be subscribed twice
class _Subscription:
    collection: str
    key: str | None
    callback: Callback


class Subscriptions:
    """The registry of callbacks; `notify` is called by the replica after commit."""

    def __init__(self) -> None:
        self._subs: list[_Subscription] = []

    def subscribe(
        self, collection: str, callback: Callback, *, key: str | None = None
    ) -> Unsubscribe:
        """Call `callback(event)` for changes in `collection` (only `key`'s, if given).

        Returns a function that removes the subscription; calling it twice is harmless.
        """
        sub = _Subscription(collection, key, callback)
        self._subs.append(sub)

        def unsubscribe() -> None:
            if sub in self._subs:
                self._subs.remove(sub)

        return unsubscribe

    def __len__(self) -> int:
        return len(self._subs)

    def notify(self, events: Iterable[ChangeEvent]) -> None:
        """Deliver each event to every matching subscriber, logging callback failures."""
        for event in events:
            # A copy: callbacks may subscribe or unsubscribe while we iterate.
            for sub in list(self._subs):
                if sub.collection != event.collection or sub.key not in (None, event.key):
                    continue
                try:
                    sub.callback(event)
                except Exception:
                    log.exception(
                        "subscriber %r failed on a change to %s/%s; the write stands",
                        sub.callback,
                        event.collection,
                        event.key,
                    )
