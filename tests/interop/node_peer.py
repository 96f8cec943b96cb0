"""Node.js for the interop tests: `yjs` installed once per package.json, and the peer process.

`install_node_env()` finds ``node`` and ``npm`` (skipping the tests without
them), installs ``package.json``/``package-lock.json`` of this folder with
``npm ci`` into ``$XDG_CACHE_HOME/quietsync-tests/node-<hash>`` (``~/.cache`` when
unset), keyed by the hash of both files, and reuses that directory while they
stay the same. An install is built in a fresh temporary directory under a file
lock and renamed into place only once it is complete, so concurrent sessions
never see (or make) a half-installed cache. A failing ``npm ci`` fails the test
session with npm's output: CI has the registry.

`js_peer()` runs ``yjs_peer.mjs`` against a server and talks to it over
stdin/stdout, one JSON line each way (the commands are listed in the script).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

try:
    import fcntl
except ImportError:  # not POSIX: the atomic rename alone keeps the cache whole
    fcntl = None  # type: ignore[assignment]

HERE = Path(__file__).resolve().parent
MANIFESTS = ("package.json", "package-lock.json")
PEER_SCRIPT = HERE / "yjs_peer.mjs"
READY = ".quietsync-ready"  # written last, before the rename: the cache is complete
NPM_TIMEOUT = 600.0
ANSWER_TIMEOUT = 10.0  # seconds any one command of the peer may take


@attrs.frozen
class NodeEnv:
    """How to run the peer: ``node``, its flags, the script beside an installed node_modules."""

    node: str
    flags: tuple[str, ...]
    script: Path


def cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # the XDG rule
    return base / "quietsync-tests"


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def install_node_modules(npm: str) -> Path:
    """The cache directory holding ``node_modules`` for this folder's package files."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    name = f"node-{_digest(*(HERE / m for m in MANIFESTS))}"
    final = root / name
    if (final / READY).exists():
        return final
    with _locked(root / f"{name}.lock"):
        if (final / READY).exists():  # another session installed it while we waited
            return final
        if fcntl is not None:  # under the lock nobody else is installing this one
            for stale in [*root.glob(f"{name}.tmp-*"), final]:  # left by a killed session
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=root))
        try:
            for manifest in MANIFESTS:
                shutil.copy2(HERE / manifest, tmp / manifest)
            cmd = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
            try:
                done = subprocess.run(
                    cmd, cwd=tmp, capture_output=True, text=True, timeout=NPM_TIMEOUT
                )
            except subprocess.TimeoutExpired as exc:
                pytest.fail(f"`{' '.join(cmd)}` took over {NPM_TIMEOUT:.0f} s:\n{exc.output}")
            if done.returncode != 0:
                pytest.fail(
                    f"`{' '.join(cmd)}` failed ({done.returncode}) in {tmp}:\n"
                    f"{done.stdout}\n{done.stderr}",
                    pytrace=False,
                )
            (tmp / READY).write_text(f"installed {time.ctime()}\n")
            tmp.chmod(0o755)  # mkdtemp's 0700 is for the temporary name only
            try:
                os.rename(tmp, final)  # atomic: the cache appears whole or not at all
            except OSError:
                if not (final / READY).exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _place_script(modules: Path) -> Path:
    """The peer script copied beside node_modules (ESM resolves ``yjs`` from its own folder)."""
    source = PEER_SCRIPT.read_bytes()
    target = modules / f"yjs_peer-{hashlib.sha256(source).hexdigest()[:16]}.mjs"
    if not target.exists() or target.read_bytes() != source:
        fd, tmp = tempfile.mkstemp(dir=modules, suffix=".mjs.tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(source)
        os.replace(tmp, target)
    return target


def _websocket_flags(node: str) -> tuple[str, ...] | None:
    """The flags under which this node has a global `WebSocket` (None: it has none)."""
    probe = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
    for flags in ((), ("--experimental-websocket",)):  # Node 22+: built in; 20.10+: flag
        done = subprocess.run([node, *flags, "-e", probe], capture_output=True, timeout=60)
        if done.returncode == 0:
            return flags
    return None


def install_node_env() -> NodeEnv:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        pytest.skip(
            f"node and npm are needed for the Yjs interop test ({missing} not found on PATH)"
        )
    flags = _websocket_flags(node)
    if flags is None:
        version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
        pytest.skip(
            f"the Yjs interop test needs Node.js >= 20.10 (a global WebSocket); "
            f"found {version.strip()}"
        )
    return NodeEnv(node=node, flags=flags, script=_place_script(install_node_modules(npm)))


class PeerError(AssertionError):
    """The peer answered a command with an error, or died."""


class JsPeer:
    """The running peer: `call` sends one command and returns its answer."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._next = 0
        self._stderr = bytearray()
        self._drain = asyncio.create_task(self._collect_stderr())

    async def _collect_stderr(self) -> None:
        assert self._proc.stderr is not None
        while chunk := await self._proc.stderr.read(65536):
            self._stderr += chunk

    def log(self) -> str:
        """What the peer wrote on stderr so far."""
        return self._stderr.decode(errors="replace")

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._next += 1
        self._proc.stdin.write(json.dumps({"id": self._next, "op": op, **args}).encode() + b"\n")
        await self._proc.stdin.drain()
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), ANSWER_TIMEOUT)
        except TimeoutError:
            raise PeerError(f"no answer to {op} in {ANSWER_TIMEOUT} s:\n{self.log()}") from None
        if not line:
            await self._proc.wait()
            raise PeerError(f"peer exited ({self._proc.returncode}) on {op}:\n{self.log()}")
        answer = json.loads(line)
        assert answer["id"] == self._next, answer
        if not answer["ok"]:
            raise PeerError(f"{op} failed: {answer['error']}")
        return answer

    async def kill(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        if self._proc.returncode is None:
            self._proc.kill()
        await self._proc.wait()
        await self._drain


@asynccontextmanager
async def js_peer(env: NodeEnv, url: str, token: str, node_id: str) -> AsyncIterator[JsPeer]:
    """Start the peer as node `node_id` of the server at `url`; kill it on exit."""
    proc = await asyncio.create_subprocess_exec(
        env.node,
        *env.flags,
        str(env.script),
        "--url",
        url,
        "--token",
        token,
        "--node",
        node_id,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=env.script.parent,
        limit=1 << 22,
    )
    peer = JsPeer(proc)
    try:
        yield peer
    finally:
        await peer.kill()
