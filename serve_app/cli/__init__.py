"""``serve-app``: the command line, one module per command group.

Where ``SERVE_APP_DATABASE_URL`` is unset, commands start the embedded PostgreSQL under
``SERVE_APP_HOME`` for their duration (a second run restarts it on the same data, in ~0.1 s).
A command is ``args.run(settings, args)``: a coroutine, or a plain function where ``blocking`` is set.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import asyncpg

from serve_app.cli import bootstrap, bulk, database, demo, keys, query, train, up
from serve_app.cli.database import prepare_database
from serve_app.cli.demo import register_demo_model
from serve_app.errors import ServiceError
from serve_app.settings import Settings

__all__ = ["build_parser", "main", "prepare_database", "register_demo_model"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serve-app", description="Bank-branch query service.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (database, bootstrap, query, bulk, keys, up, demo, train):
        group.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        settings = Settings()
        if getattr(args, "blocking", False):
            return args.run(settings, args)
        return asyncio.run(args.run(settings, args))
    except (OSError, RuntimeError, ValueError, asyncpg.PostgresError, ServiceError) as exc:
        print(f"serve-app: error: {exc}", file=sys.stderr)  # one line: the message says what to do
        return 1
    except KeyboardInterrupt:  # Ctrl-C ends a long-running command (a worker) without a traceback
        return 130


if __name__ == "__main__":
    sys.exit(main())
