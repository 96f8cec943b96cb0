"""The `quietsync` command line: one subcommand per job, wired here.

This is the wiring layer: it may import both `quietsync.server` and
`quietsync.replica` (the demo needs both sides); nothing below it may. The
benchmarks are not a subcommand: they live in the repository, not in the
wheel (``python -m benchmarks`` from a checkout).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from quietsync import __version__
from quietsync.demo import demo
from quietsync.server import admin
from quietsync.server.serve import add_serve_arguments, serve

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quietsync",
        description="Offline-first replication for Python apps: local SQLite replicas, "
        "a sync server, and streamed server jobs mirrored into the replica.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    serve_parser = commands.add_parser(
        "serve", help="run the sync server", description="Run the quietsync sync server."
    )
    add_serve_arguments(serve_parser)
    serve_parser.set_defaults(command=serve)
    demo_parser = commands.add_parser(
        "demo",
        help="narrate the whole system in one process (under 10 s)",
        description="Start an embedded server and two replicas, stream a reply across thread "
        "switches, edit a record offline on both, and print a summary table.",
    )
    demo_parser.set_defaults(command=demo)
    for name, add, run, text in (
        ("backup", admin.add_backup_arguments, admin.backup, "copy a server database, online"),
        ("restore", admin.add_restore_arguments, admin.restore, "put a backup in place (stopped)"),
        ("compact", admin.add_compact_arguments, admin.compact, "collect old tombstones (stopped)"),
    ):
        sub = commands.add_parser(name, help=text, description=admin.__doc__.split("\n\n")[0])
        add(sub)
        sub.set_defaults(command=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command: Command | None = args.command
    if command is None:
        parser.print_help()
        return 0
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
