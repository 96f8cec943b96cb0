"""`JobsClient`: the HTTP side of the jobs API (start, poll, live events, abort).

A thin transport: it speaks the protocol of ``docs/protocol.md`` and turns
answers into `JobEvent`s; every policy (retries, fallback to polling,
persistence) lives in the stream tracker. It talks through the replica's one
HTTP layer (`quietsync.replica.http`), so its errors are the sync client's:
`TransportError` (unreachable, 5xx, a broken stream: retry later),
`RequestRefusedError` (4xx; `UnknownJobError` for a job the server does not
know) and `ProtocolError` (an answer or an event the protocol does not allow).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from typing import Any, Literal, TypeVar

import attrs

from quietsync.conflicts import HLC
from quietsync.protocol import JOB_ID_HEADER, JOB_STATUSES, WireError
from quietsync.protocol.jobs import JobEvent, JobStatus
from quietsync.replica.errors import ProtocolError
from quietsync.replica.http import EventStream, HttpClient

__all__ = ["JobPoll", "JobsClient", "StartMode"]

StartMode = Literal["background", "hybrid"]
T = TypeVar("T")


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
    """Calls the jobs API of one server as one user; open it inside the event loop.

    Requests have no overall time limit (an event stream lasts as long as its
    job); `read_timeout` bounds the silence between two reads, which the
    server's keepalives keep short. One stream per followed job: no cap on
    connections, or the 101st job's stream would stall behind the others.
    """

    def __init__(self, url: str, *, token: str, read_timeout: float = 60.0) -> None:
        self._http = HttpClient(
            url, token=token, timeout=None, read_timeout=read_timeout, connections=0
        )

    async def close(self) -> None:
        await self._http.close()

    async def start(
        self,
        thread_id: str,
        message_id: str,
        text: str,
        *,
        mode: StartMode,
        space: str | None = None,
    ) -> tuple[str, AsyncGenerator[JobEvent, None] | None]:
        """Start a job; its id, and for ``hybrid`` the stream of its events from offset 0.

        `space` is the id of the space the reply's message lives in (``?space=``;
        None: the private space). Only the start names it: the job knows its
        space, so polls, events and aborts by id work for every member of it.
        The hybrid answer's header (with the id) arrives before the first token,
        so the id is known while the reply still streams.
        """
        body = {"thread_id": thread_id, "message_id": message_id, "input": text, "mode": mode}
        params = {} if space is None else {"space": space}
        if mode == "background":
            answer = await self._http.json("POST", "/v1/jobs", json=body, params=params)
            job_id = answer.get("job_id") if isinstance(answer, dict) else None
            if not isinstance(job_id, str) or not job_id:
                raise ProtocolError(f"the server answered no job id: {answer!r:.80}")
            return job_id, None
        stream = await self._http.stream("POST", "/v1/jobs", json=body, params=params)
        job_id = stream.headers.get(JOB_ID_HEADER)
        if not job_id:
            stream.close()
            raise ProtocolError(f"hybrid answer without the {JOB_ID_HEADER} header")
        return job_id, _events(stream)

    async def poll(self, job_id: str, offset: int) -> JobPoll:
        answer = await self._http.json("GET", f"/v1/jobs/{job_id}", params={"offset": offset})
        return _decode(JobPoll.from_json, answer)

    async def events(self, job_id: str, offset: int) -> AsyncGenerator[JobEvent, None]:
        """The live events of a job from `offset` (snapshot first), until the server ends them."""
        path = f"/v1/jobs/{job_id}/events"
        async for event in _events(await self._http.stream("GET", path, params={"offset": offset})):
            yield event

    async def abort(self, job_id: str) -> JobStatus:
        answer = await self._http.json("POST", f"/v1/jobs/{job_id}/abort")
        status = answer.get("status") if isinstance(answer, dict) else None
        return status if status in JOB_STATUSES else "aborted"


def _decode(decoder: Callable[[Any], T], obj: Any) -> T:
    try:
        return decoder(obj)
    except WireError as exc:
        raise ProtocolError(f"malformed job answer: {exc}") from exc


async def _events(stream: EventStream) -> AsyncGenerator[JobEvent, None]:
    """Decode a ``text/event-stream`` body of job events (``data:`` lines, blank line ends one)."""
    data: list[str] = []
    try:
        async for line in stream.lines():
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif not line and data:
                text, data = "\n".join(data), []
                try:
                    obj = json.loads(text)
                except ValueError as exc:
                    raise ProtocolError(f"a job event is not JSON: {text:.120}") from exc
                yield _decode(JobEvent.from_json, obj)
    finally:
        stream.close()
