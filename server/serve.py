"""`quietsync serve`: run the sync server until SIGINT or SIGTERM.

Tokens come from ``--tokens FILE``, else ``--dev`` (one generated token for
user ``dev``, printed on stdout), else the ``QUIETSYNC_TOKENS`` environment
variable. Every limit of `ServerConfig` and of the jobs feature's `JobsConfig`
is an option, generated from the field's ``help`` metadata (``--max-batch``,
``--job-timeout``, ...), so the command line always offers what the configs
hold. ``--access-log`` logs one line per request.

Jobs stream from ``--provider`` (default ``$QUIETSYNC_PROVIDER``, else
``scripted``): the scripted provider takes ``--job-tokens``,
``--job-token-delay`` and ``--job-fail-after``; ``openai`` reads its endpoint
from the environment (`quietsync.server.jobs.providers.provider_from_env`) and
takes ``--system-prompt`` and ``--provider-idle-timeout`` (which override
``$QUIETSYNC_SYSTEM_PROMPT`` and ``$QUIETSYNC_PROVIDER_IDLE_TIMEOUT``).

Shutdown is aiohttp's graceful one: live sockets are closed (1001), job event
streams end, requests in flight finish (a push being committed is committed
and answered), then the store closes.

``--workers N`` (N > 1, PostgreSQL only) serves the port from N worker
processes under this one (`quietsync.server.workers`): worker ``i`` is the
server with node id ``<node>-<i>`` (``server-1``, ...: what ``/v1/health``
answers, and the node of the stamps it writes), so no two processes stamp
alike.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web

from quietsync.server.app import create_app
from quietsync.server.config import (
    TOKENS_ENV,
    ServerConfig,
    is_postgres_url,
    load_tokens_file,
    tokens_from_env,
)
from quietsync.server.errors import ConfigError, StoreError
from quietsync.server.jobs import (
    JobsConfig,
    Provider,
    ProviderError,
    ScriptedProvider,
    jobs_feature,
    provider_from_env,
)
from quietsync.server.workers import Worker, Workers

__all__ = ["DEV_USER", "PROVIDERS", "add_serve_arguments", "serve"]

DEV_USER = "dev"
PROVIDERS = ("scripted", "openai")
log = logging.getLogger("quietsync.serve")


def _add_config_options(group: Any, cls: type, prefix: str) -> None:
    """One option per field of `cls` that has a ``help`` (``--<prefix><name>``), default None."""
    for field in attrs.fields(cls):
        if "help" in field.metadata:
            whole = str(field.type).startswith("int")  # the fields are ints or float seconds
            group.add_argument(
                f"--{prefix}{field.name.replace('_', '-')}",
                dest=f"{prefix}{field.name}".replace("-", "_"),
                type=int if whole else float,
                metavar="N" if whole else "SECONDS",
                help=f"{field.metadata['help']} (default: {field.default})",
            )


def _config_values(args: argparse.Namespace, cls: type, prefix: str) -> dict[str, Any]:
    """The fields of `cls` the command line set (the others keep their defaults)."""
    values = {}
    for field in attrs.fields(cls):
        value = getattr(args, f"{prefix}{field.name}".replace("-", "_"), None)
        if "help" in field.metadata and value is not None:
            values[field.name] = value
    return values


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default="quietsync-server.db",
        help="SQLite file of the server (one process per file), or a postgresql:// URL"
        " (needs quietsync[postgres]; several processes may share it, see docs/deploy.md)"
        " (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=8787, help="port to listen on (%(default)s)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes serving the port, restarted if they die; more than 1 needs a"
        " postgresql:// --db (default: %(default)s, this process serves)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log one line per request (aiohttp.access)"
    )
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument(
        "--tokens",
        type=Path,
        metavar="FILE",
        help=f'JSON file {{"token": "user", ...}} (default: ${TOKENS_ENV})',
    )
    tokens.add_argument(
        "--dev",
        action="store_true",
        help=f"development mode: one generated token for user {DEV_USER!r}, printed",
    )
    _add_config_options(parser.add_argument_group("limits"), ServerConfig, "")
    jobs = parser.add_argument_group("jobs")
    jobs.add_argument(
        "--provider",
        choices=PROVIDERS,
        default=os.environ.get("QUIETSYNC_PROVIDER", "scripted"),
        help="where job output comes from (default: $QUIETSYNC_PROVIDER or scripted)",
    )
    jobs.add_argument(
        "--system-prompt",
        metavar="TEXT",
        help="openai: the system prompt of every job (default: $QUIETSYNC_SYSTEM_PROMPT, none)",
    )
    jobs.add_argument(
        "--provider-idle-timeout",
        type=float,
        metavar="SECONDS",
        help="openai: seconds the endpoint may stay silent before the job fails "
        "(default: $QUIETSYNC_PROVIDER_IDLE_TIMEOUT, else 60)",
    )
    _add_config_options(jobs, JobsConfig, "job-")
    _add_config_options(jobs, ScriptedProvider, "job-")


def _jobs_config(args: argparse.Namespace) -> JobsConfig:
    """The jobs feature's settings the command line asks for."""
    if args.provider not in PROVIDERS:  # argparse does not check a default from the environment
        raise ConfigError(f"unknown provider {args.provider!r}: use one of {', '.join(PROVIDERS)}")
    provider: Provider
    if args.provider == "openai":
        overrides = {
            name: str(value)
            for name, value in [
                ("QUIETSYNC_SYSTEM_PROMPT", args.system_prompt),
                ("QUIETSYNC_PROVIDER_IDLE_TIMEOUT", args.provider_idle_timeout),
            ]
            if value is not None
        }
        try:
            provider = provider_from_env(
                {**os.environ, "QUIETSYNC_PROVIDER": "openai", **overrides}
            )
        except ProviderError as exc:
            raise ConfigError(str(exc)) from exc
    else:
        provider = ScriptedProvider(**_config_values(args, ScriptedProvider, "job-"))
    return JobsConfig(provider=provider, **_config_values(args, JobsConfig, "job-"))


def _tokens(args: argparse.Namespace) -> dict[str, str]:
    if args.tokens is not None:
        return load_tokens_file(args.tokens)
    if args.dev:
        token = secrets.token_urlsafe(24)
        print(f"dev token (user {DEV_USER!r}): {token}", flush=True)
        return {token: DEV_USER}
    tokens = tokens_from_env()
    if tokens is None:
        raise ConfigError(f"no tokens: give --tokens FILE, set ${TOKENS_ENV}, or use --dev")
    return tokens


def _check_workers(args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {args.workers}")
    if args.workers > 1 and not is_postgres_url(args.db):
        raise ConfigError(
            "--workers needs a postgresql:// database: one SQLite file is served by one"
            " process (docs/deploy.md)"
        )


def serve(args: argparse.Namespace) -> int:
    """Run the server (blocking); 0 after a graceful shutdown, 2 on a configuration error."""
    try:
        _check_workers(args)
        config = ServerConfig(
            db_path=args.db, tokens=_tokens(args), **_config_values(args, ServerConfig, "")
        )
        jobs = _jobs_config(args)
    except ConfigError as exc:
        print(f"quietsync serve: {exc}", file=sys.stderr)
        return 2
    log.info("%d user(s), database %s", len(set(config.tokens.values())), config.db_label)
    if args.workers == 1:
        return _run(config, jobs, args, None)
    try:
        family = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((args.host, args.port), family=family)
    except OSError as exc:  # socket.gaierror included
        print(f"quietsync serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    with sock:
        host, port = sock.getsockname()[:2]
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

        def work(worker: Worker) -> int:
            node = f"{config.node_id}-{worker.number}"
            return _run(attrs.evolve(config, node_id=node), jobs, args, worker)

        return Workers(sock, args.workers, work, url).run()


def _log_running(text: str) -> None:
    log.info("%s", text.strip())


def _run(
    config: ServerConfig, jobs: JobsConfig, args: argparse.Namespace, worker: Worker | None
) -> int:
    """Serve `config` here: on `args`' host and port, or as `worker` of several."""
    where: dict[str, Any] = {"host": args.host, "port": args.port, "print": _log_running}
    if worker is not None:  # the parent logs "Running on" once every worker is ready
        where = {
            "sock": worker.sock,
            "loop": worker.loop,
            "handle_signals": False,
            "print": lambda _text: worker.ready(),
        }
    try:
        web.run_app(
            create_app(config, [jobs_feature(jobs)]),
            **where,
            access_log=logging.getLogger("aiohttp.access") if args.access_log else None,
        )
    except (ConfigError, StoreError) as exc:  # the store refused to open: say why, once
        print(f"quietsync serve: {exc}", file=sys.stderr)
        return 2
    log.info("stopped")
    return 0
