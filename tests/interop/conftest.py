"""Fixtures of the interop tests: Node.js with npm's `yjs`, installed once per package.json."""

from __future__ import annotations

import pytest

from tests.interop.node_peer import NodeEnv, install_node_env


@pytest.fixture(scope="session")
def node_env() -> NodeEnv:
    """``node`` (skips without node and npm) and the peer script beside an installed `yjs`."""
    return install_node_env()
