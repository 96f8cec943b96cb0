"""The OpenAPI description (``server/openapi.json``) is the server's real API, served as is.

* it is a valid OpenAPI 3.1 document;
* its (method, path) pairs are exactly the app's routes (the jobs feature's
  included), both ways: a route added without describing it, or a described
  route that no longer exists, fails here;
* every error it documents is the one error shape, with the codes the docs give;
* the server serves it at ``/v1/openapi.json`` without a token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import schemathesis
from aiohttp import web

from quietsync.server import JobsConfig, ServerConfig, create_app, jobs_feature
from quietsync.server.routes import OPENAPI_PATH
from quietsync.testing import running_server

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = json.loads((ROOT / "server" / "openapi.json").read_text(encoding="utf-8"))
METHODS = frozenset({"get", "put", "post", "delete", "patch", "options", "head", "trace"})


def _described() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DESCRIPTION["paths"].items()
        for method in item
        if method in METHODS
    }


def _routes(app: web.Application, prefix: str = "") -> set[tuple[str, str]]:
    """Every (method, path) the app answers, sub-apps included; HEAD is aiohttp's twin of GET."""
    found = set()
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            found |= _routes(resource._app, prefix + resource.canonical)
            continue
        for route in resource:
            if route.method != "HEAD":
                found.add((route.method, prefix + resource.canonical))
    return found


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in DESCRIPTION["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_description_is_valid_openapi_3_1() -> None:
    assert DESCRIPTION["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(DESCRIPTION).validate()


def test_the_description_lists_exactly_the_routes_of_the_app(tmp_path: Path) -> None:
    config = ServerConfig(db_path=tmp_path / "server.db", tokens={"token-a": "alice"})
    app = create_app(config, [jobs_feature(JobsConfig())])
    routes = _routes(app)
    assert ("POST", "/v1/jobs/{job_id}/abort") in routes  # the jobs feature's are listed
    assert routes - _described() == set(), "routes missing from server/openapi.json"
    assert _described() - routes == set(), "described operations the server does not have"


@pytest.mark.parametrize(
    ("method", "path", "operation"), _operations(), ids=[f"{m} {p}" for m, p, _ in _operations()]
)
def test_every_documented_error_has_the_one_error_shape(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    public = operation.get("security") == []
    errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
    assert public or "401" in errors, f"{method} {path} needs a token but documents no 401"
    for status, response in errors.items():
        [schema] = [c["schema"] for c in response["content"].values()]
        base, codes = schema["allOf"]
        assert base["$ref"] in {
            "#/components/schemas/Error",
            "#/components/schemas/MutationsRefused",
            "#/components/schemas/Resync",
        }, (method, path, status)
        assert codes["properties"]["error"]["properties"]["code"]["enum"], (method, path, status)


async def test_the_server_serves_its_description_without_a_token() -> None:
    async with running_server() as server, aiohttp.ClientSession(base_url=server.url) as http:
        async with http.get(OPENAPI_PATH) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            assert await resp.json() == DESCRIPTION
        async with http.get("/v1/pull") as resp:
            assert resp.status == 401  # only the description is public, not the rest
