"""Schema-driven fuzzing of every operation of ``server/openapi.json`` against a real server.

schemathesis generates requests from the description (`positive`: what it
allows; `negative`: what it forbids) and sends them to a running server on
loopback (`quietsync.testing.running_server`, alice's token). For every
request:

* no 5xx, ever;
* the answer conforms to the description: a documented status, its media
  type, headers and body schema (so every refusal is ``{"error": {"code",
  "message"}}`` with a documented code), and negative data is refused (4xx);
* a refusal (4xx) changes nothing: alice's head, every field she has
  (a Unicode witness record among them) and her conflicts are the same before
  and after;
* no request of alice's, refused or not, writes anything to bob's space (his
  head stays where it was).

The job operations are fuzzed twice: with generated job ids (unknown: 404)
and with the id of a real, finished job (its offsets and its abort). A job a
request starts is waited for (its event stream read to the end) before the
next request, so nothing changes behind a refusal's back.

It runs on both stores (SQLite, PostgreSQL), one server each.

Bounded and deterministic for CI: `MAX_EXAMPLES` per operation and mode,
derandomized (Hypothesis derives the seed from the test), no example database,
no shrinking (a failure is reported as found, with its request).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from quietsync.protocol import JOB_ID_HEADER
from quietsync.server.jobs import JobsConfig, ScriptedProvider
from quietsync.testing import RunningServer, running_server
from tests.server.helpers import Writer

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = json.loads((ROOT / "server" / "openapi.json").read_text(encoding="utf-8"))
SCHEMA = schemathesis.openapi.from_dict(
    DESCRIPTION,
    # The server ignores query parameters it does not know (as HTTP servers do), and
    # the token is given to each strategy (`AUTH`); tokens are fuzzed apart (`WRONG_TOKENS`).
    config=SchemathesisConfig.from_dict(
        {"generation": {"allow-extra-parameters": False, "with-security-parameters": False}}
    ),
)
MAX_EXAMPLES = 10
MAX_INT = 2**63 - 1
"""The bound of every integer query parameter (``server/openapi.json``): SQLite's integers."""
TIMEOUT = 10.0
"""Seconds any one request (a job's whole event stream included) may take."""
USERS = {"alice": "token-a-fuzz", "bob": "token-b"}
AUTH = {"Authorization": f"Bearer {USERS['alice']}"}
BOB = {"Authorization": f"Bearer {USERS['bob']}"}
JOBS = JobsConfig(provider=ScriptedProvider(tokens=3, token_delay=0), keepalive=60)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
WITNESS = {
    "title": "Ünïcødé 🎉 𝔄𝔅 e\u0301 한국어",
    "body": "crdt: 👩\u200d💻 naïve 𝕏",
}
JOB_OPERATIONS = ("GET /v1/jobs/{job_id}", "GET /v1/jobs/{job_id}/events")
ABORT = "POST /v1/jobs/{job_id}/abort"


@attrs.frozen
class Served:
    """The server the fuzzing talks to, in its own thread and event loop."""

    url: str
    finished_job: str
    """A job of alice that has completed (for the job operations with a real id)."""
    session: requests.Session
    """Reads the users' state between requests (alice's token unless told otherwise)."""
    plain: requests.Session
    """No default headers: sends the generated requests exactly as generated."""


def _label(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


LABELS = [_label(op.ok()) for op in SCHEMA.get_all_operations()]


def _seed(http: requests.Session, url: str) -> str:
    """Alice's and bob's witness records (lww and crdt text), a finished job of alice's; its id."""
    for headers in (AUTH, BOB):
        writer = Writer("fuzz")
        mutations = [
            writer.lww("witness-ü🎉", "title", WITNESS["title"]),
            writer.text("witness-ü🎉", "body", WITNESS["body"]),
        ]
        body = {"mutations": mutations}
        resp = http.post(f"{url}/v1/push", json=body, headers=headers, timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text
    start = {"thread_id": "t-ü", "message_id": "m-🎉", "input": "héllo 𝔄", "mode": "background"}
    resp = http.post(f"{url}/v1/jobs", json=start, timeout=TIMEOUT)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    _wait_for_job(http, url, job_id)
    return job_id


def _wait_for_job(http: requests.Session, url: str, job_id: str) -> None:
    """Read the job's event stream to its end: the job has written everything it will."""
    resp = http.get(f"{url}/v1/jobs/{job_id}/events", timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    last = json.loads(resp.text.strip().splitlines()[-1].removeprefix("data: "))
    assert last["type"] == "status" and last["status"] != "streaming", last


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """One server for the module (the fuzzing's state accumulates, as a real one's would),
    on each store: a file, or a PostgreSQL database."""
    db = request.getfixturevalue("pg_module_url") if request.param == "postgres" else None
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with running_server(db, users=USERS, jobs=JOBS) as server:
            box["server"], box["stop"] = server, asyncio.Event()
            box["loop"] = asyncio.get_running_loop()
            started.set()
            await box["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="fuzzed-server")
    thread.start()
    try:
        assert started.wait(TIMEOUT), "the server did not start"
        server: RunningServer = box["server"]
        with requests.Session() as http, requests.Session() as plain:
            http.headers.update(AUTH)
            yield Served(server.url, _seed(http, server.url), http, plain)
    finally:
        if "loop" in box:
            box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the server did not stop"


def _head(served: Served, headers: dict[str, str]) -> int:
    """The user's head: the seq of their last change (an empty push changes nothing)."""
    empty = served.session.post(
        f"{served.url}/v1/push", json={"mutations": []}, headers=headers, timeout=TIMEOUT
    )
    assert empty.status_code == 200, empty.text
    return int(empty.json()["cursor"])


def _state(served: Served, headers: dict[str, str] = AUTH) -> tuple[Any, ...]:
    """Everything of a user a request could change: head, fields (with stamps), conflicts."""

    def pages(path: str, items: str) -> list[Any]:
        found, since = [], 0
        while True:
            params = {"since": since, "limit": 5000}
            resp = served.session.get(
                f"{served.url}{path}", params=params, headers=headers, timeout=TIMEOUT
            )
            assert resp.status_code == 200, resp.text
            page = resp.json()
            found += page[items]
            if not page["has_more"]:
                return found
            since = page["cursor"]

    return _head(served, headers), pages("/v1/pull", "changes"), pages("/v1/conflicts", "conflicts")


def _repro(case: Any, response: requests.Response) -> str:
    request = response.request
    body = request.body.decode(errors="backslashreplace") if request.body else None
    return f"{response.status_code} for {request.method} {request.url:.300} body={body!s:.300}"


def _exercise(served: Served, case: Any) -> Any:
    """Send `case`; check the answer, and that a refusal changed nothing. The response."""
    before, bobs = _state(served), _head(served, BOB)
    response = case.call(base_url=served.url, session=served.plain, timeout=TIMEOUT)
    assert response.status_code < 500, _repro(case, response)
    case.validate_response(response, checks=CHECKS, headers=case.headers)
    if 400 <= response.status_code < 500:
        assert _state(served) == before, f"a refusal changed state: {_repro(case, response)}"
    elif response.status_code == 202:  # a background job: let it finish before the next case
        _wait_for_job(served.session, served.url, response.json()["job_id"])
    elif JOB_ID_HEADER in response.headers:  # a hybrid start: its body was the whole stream
        assert '"type": "status"' in response.text
    assert _head(served, BOB) == bobs, (
        f"alice's request wrote to bob's space: {_repro(case, response)}"
    )
    return response


def _fuzz(
    served: Served,
    label: str,
    mode: GenerationMode,
    *,
    max_examples: int = MAX_EXAMPLES,
    headers: dict[str, str] = AUTH,
    refused_with: str | None = None,
    **fixed: Any,
) -> None:
    """Fuzz one operation; with `refused_with`, every answer must be that error code."""
    method, path = label.split(" ", 1)
    strategy = SCHEMA[path][method].as_strategy(mode, headers=headers, **fixed)

    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],  # a failure is reported as found: shrinking it costs minutes
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        response = _exercise(served, case)
        if refused_with is not None:
            assert response.json()["error"]["code"] == refused_with, _repro(case, response)

    run()


def _negatable(label: str, fixed: frozenset[str] = frozenset()) -> bool:
    """Whether the operation has a parameter or body left to break (negative mode needs one)."""
    method, path = label.split(" ", 1)
    operation = DESCRIPTION["paths"][path][method.lower()]
    # a path parameter broken (empty, say) is another path, never sent as such
    params = {p["name"] for p in operation.get("parameters", ()) if p["in"] != "path"} - fixed
    return bool(params) or "requestBody" in operation


def _cases(labels: list[str], fixed: frozenset[str] = frozenset()) -> list[Any]:
    return [
        pytest.param(label, mode, id=f"{label}-{mode}")
        for label in labels
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if mode is GenerationMode.POSITIVE or _negatable(label, fixed)
    ]


@pytest.mark.parametrize(("label", "mode"), _cases(LABELS))
def test_every_operation(served: Served, label: str, mode: GenerationMode) -> None:
    _fuzz(served, label, mode)


@pytest.mark.parametrize(("label", "mode"), _cases([*JOB_OPERATIONS, ABORT], frozenset({"job_id"})))
def test_job_operations_on_a_real_job(served: Served, label: str, mode: GenerationMode) -> None:
    _fuzz(served, label, mode, path_parameters={"job_id": served.finished_job})


WRONG_TOKENS = [
    pytest.param({}, id="no-header"),
    pytest.param({"Authorization": "Bearer token-b-wrong"}, id="unknown-token"),
    pytest.param({"Authorization": "Basic dG9rZW4tYS1mdXp6"}, id="not-bearer"),
    pytest.param({"Authorization": f"Bearer {USERS['alice']}x"}, id="alices-token-plus-one"),
]
PROTECTED = [label for label in LABELS if label not in {"GET /v1/health", "GET /v1/openapi.json"}]


@pytest.mark.parametrize("headers", WRONG_TOKENS)
@pytest.mark.parametrize("label", PROTECTED)
def test_every_protected_operation_refuses_a_wrong_token(
    served: Served, label: str, headers: dict[str, str]
) -> None:
    """Whatever else the request holds: 401 in the error shape, and nothing changes."""
    _fuzz(
        served,
        label,
        GenerationMode.POSITIVE,
        max_examples=2,
        headers=headers,
        refused_with="unauthorized",
    )


# The 500s the fuzzing found before issue #15 (item 3: nesting; item 4: integers,
# the Authorization byte), each kept as one minimal request, checked exactly as a
# fuzzed one.
HUGE = "9" * 5000
DEEP = 1000
_DEEP_PUSH = (
    '{"mutations": [{"id": "n1:1", "collection": "notes", "key": "ü", "field": "f", '
    '"kind": "lww", "stamp": "001763946000000-00000000-n1", "base": null, "value": '
    + "[" * DEEP
    + "]" * DEEP
    + "}]}"
)


def _known(request_id: str, item: str, label: str, **request: Any) -> Any:
    return pytest.param(label, request, id=f"{request_id} ({item})")


KNOWN_500S = [
    _known("conflicts-since-2^63", "item 4", "GET /v1/conflicts", query={"since": 2**63}),
    _known("conflicts-since-5000-digits", "item 4", "GET /v1/conflicts", query={"since": HUGE}),
    _known("conflicts-limit-5000-digits", "item 4", "GET /v1/conflicts", query={"limit": HUGE}),
    _known("pull-since-5000-digits", "item 4", "GET /v1/pull", query={"since": HUGE}),
    _known("pull-limit-5000-digits", "item 4", "GET /v1/pull", query={"limit": HUGE}),
    _known("live-since-5000-digits", "item 4", "GET /v1/live", query={"since": HUGE}),
    _known("job-offset-5000-digits", "item 4", "GET /v1/jobs/{job_id}", query={"offset": HUGE}),
    _known(
        "events-offset-5000-digits",
        "item 4",
        "GET /v1/jobs/{job_id}/events",
        query={"offset": HUGE},
    ),
    _known(
        "authorization-byte-ff", "item 4", "GET /v1/pull", headers={"Authorization": "Bearer \xff"}
    ),
    _known("push-1000-levels-deep", "item 3", "POST /v1/push", data=_DEEP_PUSH),
    _known("job-body-1000-levels-deep", "item 3", "POST /v1/jobs", data="[" * DEEP + "]" * DEEP),
]


@pytest.mark.parametrize(("label", "request_"), KNOWN_500S)
def test_known_500s(served: Served, label: str, request_: dict[str, Any]) -> None:
    """The same checks as the fuzzing (no 5xx, the documented answer, nothing changes)."""
    method, path = label.split(" ", 1)
    request_ = dict(request_)  # the parameter's own dict stays whole for a rerun
    data = request_.pop("data", None)
    case = SCHEMA[path][method].Case(
        path_parameters={"job_id": served.finished_job} if "{job_id}" in path else None,
        headers=request_.pop("headers", AUTH),
        **request_,
    )
    if data is None:
        _exercise(served, case)
    else:  # a body no JSON encoder here can write: sent as bytes
        before = _state(served)
        response = served.plain.post(
            served.url + path, data=data.encode(), headers=AUTH, timeout=TIMEOUT
        )
        assert response.status_code < 500, _repro(case, response)
        SCHEMA[path][method].validate_response(response)
        assert _state(served) == before
