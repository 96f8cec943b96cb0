"""`quietsync serve`: run the sync server until SIGINT or SIGTERM.

Tokens come from ``--tokens FILE``, else ``--dev`` (one generated token for
user ``dev``, printed on stdout), else the ``QUIETSYNC_TOKENS`` environment
variable. Shutdown is aiohttp's graceful one: live sockets are closed (1001),
job event streams end, requests in flight finish (a push being committed is
committed and answered), then the store closes.

Jobs stream from ``--provider`` (default ``$QUIETSYNC_PROVIDER``, else
``scripted``): the scripted provider takes ``--job-tokens``,
``--job-token-delay`` and ``--job-fail-after``; ``openai`` reads its endpoint
from the environment (`server.providers.provider_from_env`).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path

from aiohttp import web

from quietsync.server.app import create_app
from quietsync.server.config import TOKENS_ENV, ServerConfig, load_tokens_file, tokens_from_env
from quietsync.server.errors import ConfigError
from quietsync.server.providers import Provider, ProviderError, provider_from_env

__all__ = ["DEV_USER", "add_serve_arguments", "serve"]

DEV_USER = "dev"
log = logging.getLogger("quietsync.serve")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        type=Path,
        default=Path("quietsync-server.db"),
        help="SQLite file of the server (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=8787, help="port to listen on (%(default)s)")
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
    _add_job_arguments(parser)


PROVIDERS = ("scripted", "openai")


def _add_job_arguments(parser: argparse.ArgumentParser) -> None:
    jobs = parser.add_argument_group("jobs")
    jobs.add_argument(
        "--provider",
        choices=PROVIDERS,
        default=os.environ.get("QUIETSYNC_PROVIDER", "scripted"),
        help="where job output comes from (default: $QUIETSYNC_PROVIDER or scripted)",
    )
    jobs.add_argument("--job-tokens", type=int, default=40, help="scripted reply length")
    jobs.add_argument(
        "--job-token-delay", type=float, default=0.02, help="seconds before each scripted token"
    )
    jobs.add_argument(
        "--job-fail-after", type=int, default=None, help="scripted failure after N tokens"
    )
    jobs.add_argument("--max-jobs-per-user", type=int, default=4, help="concurrent jobs per user")
    jobs.add_argument("--job-timeout", type=float, default=300.0, help="seconds per job")
    jobs.add_argument(
        "--job-retention", type=float, default=3600.0, help="seconds a finished job is kept"
    )


def _job_settings(args: argparse.Namespace) -> dict[str, object]:
    """The `ServerConfig` job fields the command line asks for."""
    provider: Provider | None = None
    if args.provider not in PROVIDERS:  # argparse does not check a default from the environment
        raise ConfigError(f"unknown provider {args.provider!r}: use one of {', '.join(PROVIDERS)}")
    if args.provider == "openai":
        try:
            provider = provider_from_env({**os.environ, "QUIETSYNC_PROVIDER": "openai"})
        except ProviderError as exc:
            raise ConfigError(str(exc)) from exc
    return {
        "provider": provider,
        "job_tokens": args.job_tokens,
        "job_token_delay": args.job_token_delay,
        "job_fail_after": args.job_fail_after,
        "max_jobs_per_user": args.max_jobs_per_user,
        "job_timeout": args.job_timeout,
        "job_retention": args.job_retention,
    }


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


def serve(args: argparse.Namespace) -> int:
    """Run the server (blocking); 0 after a graceful shutdown, 2 on a configuration error."""
    try:
        config = ServerConfig(db_path=args.db, tokens=_tokens(args), **_job_settings(args))
    except ConfigError as exc:
        print(f"quietsync serve: {exc}", file=sys.stderr)
        return 2
    log.info("%d user(s), database %s", len(set(config.tokens.values())), config.db_path)
    web.run_app(
        create_app(config),
        host=args.host,
        port=args.port,
        print=lambda text: log.info("%s", text.strip()),
        access_log=None,
    )
    log.info("stopped")
    return 0
