"""`thread_history`: the thread's earlier messages a job sends its provider, bounded.

The records are the user's own (`JobStore.thread_messages`); the rule
(``docs/protocol.md``, "Jobs", "History"):

* a message counts if it has a ``role`` of ``user`` or ``assistant``, a
  non-empty string ``content``, a number ``created_at``, and is not deleted;
  the job's own message does not count, nor any message created at or after
  it (when the job's message has a ``created_at``);
* messages go oldest first (``created_at``, then key);
* the user message holding the input, if it is already synced (the last
  message, of role user, with exactly the input's text), is not sent twice;
* at most `max_messages`, the most recent, and no more than `max_chars`
  characters with the input: older messages are left out first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quietsync.protocol import DELETED_FIELD
from quietsync.server.jobs.providers import Chat, ChatMessage

__all__ = ["thread_history"]

_ROLES = ("user", "assistant")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def thread_history(
    messages: Mapping[str, Mapping[str, Any]],
    message_id: str,
    prompt: str,
    *,
    max_messages: int,
    max_chars: int,
) -> Chat:
    """The `Chat` for a job writing `message_id` with input `prompt` (module docstring)."""
    created = messages.get(message_id, {}).get("created_at")
    before = created if _number(created) else None
    earlier = []
    for key, fields in messages.items():
        role, content, at = fields.get("role"), fields.get("content"), fields.get("created_at")
        if key == message_id or fields.get(DELETED_FIELD) is True or role not in _ROLES:
            continue
        if not isinstance(content, str) or not content or not _number(at):
            continue
        if before is None or at < before:
            earlier.append((at, key, ChatMessage(role, content)))
    history = [message for *_, message in sorted(earlier)]
    if history and history[-1] == ChatMessage("user", prompt):
        history.pop()
    kept: list[ChatMessage] = []
    size = len(prompt)
    for message in reversed(history[-max_messages:]):
        size += len(message.content)
        if size > max_chars:
            break
        kept.append(message)
    return Chat(prompt, tuple(reversed(kept)))
