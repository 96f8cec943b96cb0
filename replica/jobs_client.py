"""`JobsClient`: the HTTP side of the jobs API (start, poll, live events, abort).

A thin transport: it speaks the protocol of ``docs/protocol.md`` and turns
answers into `JobEvent`s and errors; every policy (retries, fallback to
polling, persistence) lives in the stream tracker.

Errors (all `ReplicaError`s, aiohttp's translated here and re-raised ``from``)::

    ReplicaError
    └── JobsError                    a jobs API call failed
        ├── JobsUnavailableError     network failure, 5xx, a broken stream: retry later
        └── JobRefusedError          a 4xx answer (`status`, `code`): retrying will not help
            └── UnknownJobError      404 unknown_job (gone, expired, or another user's)

Must not import `server`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any, Literal

import aiohttp
import attrs

from quietsync.conflicts import HLC
from quietsync.protocol import JOB_ID_HEADER, WireError
from quietsync.protocol.jobs import JobEvent, JobStatus
from quietsync.replica.errors import JobRefusedError, JobsUnavailableError, UnknownJobError

__all__ = ["JobPoll", "JobsClient", "StartMode"]

StartMode = Literal["background", "hybrid"]


@attrs.frozen
class JobPoll:
    """One ``GET /v1/jobs/{id}?offset=N`` answer."""

    job_id: str
    status: JobStatus
    offset: int
    content_delta: str
    content_length: int
    error: str | None
    stamp: HLC

    def as_event(self) -> JobEvent:
        """The same information as the event the live stream would have sent."""
        kind = "delta" if self.status == "streaming" else "status"
        return JobEvent(
            kind,
            self.job_id,
            self.status,
            offset=self.offset,
            text=self.content_delta,
            content_length=self.content_length,
            error=self.error,
            stamp=self.stamp,
        )

    @classmethod
    def from_json(cls, obj: Any) -> JobPoll:
        if not isinstance(obj, dict) or not isinstance(obj.get("stamp"), str):
            raise WireError(f"a job poll answer must be an object with a stamp, got {obj!r:.80}")
        event = JobEvent.from_json({**obj, "type": "delta", "text": obj.get("content_delta", "")})
        assert event.stamp is not None  # from_json requires it for a delta
        return cls(
            event.job_id,
            event.status,
            event.offset,
            event.text,
            event.content_length,
            event.error,
            event.stamp,
        )


class JobsClient:
    """Calls the jobs API of one server as one user; open it inside the event loop."""

    def __init__(self, url: str, *, token: str, read_timeout: float = 60.0) -> None:
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # One open stream per followed job: the default cap of 100 connections
            # would stall the 101st job's stream (and every poll behind it).
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=0),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def start(
        self, thread_id: str, message_id: str, text: str, *, mode: StartMode
    ) -> tuple[str, AsyncGenerator[JobEvent, None] | None]:
        """Start a job; its id, and for ``hybrid`` the stream of its events from offset 0.

        The hybrid answer's header (with the id) arrives before the first token,
        so the id is known while the reply still streams.
        """
        body = {"thread_id": thread_id, "message_id": message_id, "input": text, "mode": mode}
        resp = await self._request("POST", "/v1/jobs", json=body)
        if mode == "background":
            async with resp:
                answer = await _json(resp)
            job_id = answer.get("job_id") if isinstance(answer, dict) else None
            if not isinstance(job_id, str) or not job_id:
                raise JobsUnavailableError(f"the server answered no job id: {answer!r:.80}")
            return job_id, None
        job_id = resp.headers.get(JOB_ID_HEADER)
        if not job_id:
            resp.release()
            raise JobsUnavailableError(f"hybrid answer without the {JOB_ID_HEADER} header")
        return job_id, _sse(resp)

    async def poll(self, job_id: str, offset: int) -> JobPoll:
        resp = await self._request("GET", f"/v1/jobs/{job_id}", params={"offset": offset})
        async with resp:
            return _decode(JobPoll.from_json, await _json(resp))

    async def events(self, job_id: str, offset: int) -> AsyncGenerator[JobEvent, None]:
        """The live events of a job from `offset` (snapshot first), until the server ends them."""
        resp = await self._request("GET", f"/v1/jobs/{job_id}/events", params={"offset": offset})
        async for event in _sse(resp):
            yield event

    async def abort(self, job_id: str) -> JobStatus:
        resp = await self._request("POST", f"/v1/jobs/{job_id}/abort")
        async with resp:
            answer = await _json(resp)
        status = answer.get("status") if isinstance(answer, dict) else None
        return status if status in ("streaming", "complete", "error", "aborted") else "aborted"

    async def _request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        try:
            resp = await self._http().request(method, self._url + path, **kwargs)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise JobsUnavailableError(f"{method} {path}: {exc!r}") from exc
        if resp.status < 400:
            return resp
        async with resp:
            try:
                error = (await resp.json(content_type=None))["error"]
                code, message = str(error["code"]), str(error["message"])
            except (aiohttp.ClientError, ValueError, KeyError, TypeError):
                code, message = "http_error", resp.reason or ""
        if resp.status >= 500:
            raise JobsUnavailableError(f"{method} {path}: {resp.status} {code}: {message}")
        if resp.status == 404 and code == "unknown_job":
            raise UnknownJobError(resp.status, code, message)
        raise JobRefusedError(resp.status, code, message)


async def _json(resp: aiohttp.ClientResponse) -> Any:
    try:
        return await resp.json(content_type=None)
    except (aiohttp.ClientError, ValueError) as exc:
        raise JobsUnavailableError(f"unreadable answer from {resp.url}: {exc!r}") from exc


def _decode(decoder: Any, obj: Any) -> Any:
    try:
        return decoder(obj)
    except WireError as exc:
        raise JobsUnavailableError(f"malformed job answer: {exc}") from exc


async def _sse(resp: aiohttp.ClientResponse) -> AsyncGenerator[JobEvent, None]:
    """Decode a ``text/event-stream`` body of job events (``data:`` lines, blank line ends one)."""
    data: list[str] = []
    try:
        async with resp:
            async for raw in resp.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif not line and data:
                    text, data = "\n".join(data), []
                    yield _decode(JobEvent.from_json, _loads(text))
    except (aiohttp.ClientError, TimeoutError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise JobsUnavailableError(f"job event stream broke: {exc!r}") from exc


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise JobsUnavailableError(f"a job event is not JSON: {exc}") from exc
