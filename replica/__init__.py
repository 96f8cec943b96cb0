"""The client side of quietsync: the local replica, sync client and stream tracker.

Must not import `server` (only the CLI/demo/testing layer wires both).
"""

__all__: list[str] = []
