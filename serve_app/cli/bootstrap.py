"""``serve-app bootstrap``: from an empty database to one the service can start on (see ``serve_app.ops.bootstrap``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from serve_app.cli.database import database_url
from serve_app.config import AppConfig
from serve_app.models.paths import ModelPaths
from serve_app.ops.bootstrap import DEFAULT_MAX_DIRECTORY_BYTES, DirectorySource, bootstrap, read_manifest
from serve_app.settings import Settings


def model_paths(settings: Settings, config_file: Path | None) -> ModelPaths | None:
    """The model folders of a Serve config file (its one application's ``args.model``), else the defaults."""
    if config_file is None:
        return AppConfig().model.paths(settings.models_dir)  # type: ignore[union-attr]  # the default has one
    [app] = yaml.safe_load(config_file.read_text())["applications"]
    model = AppConfig.model_validate(app.get("args") or {}).model
    return None if model is None else model.paths(settings.models_dir)


async def _bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    manifest = read_manifest(args.adapters) if args.adapters else None
    paths = model_paths(settings, args.config) if manifest else None
    async with database_url(settings) as url:
        source = None
        if args.directory:
            source = DirectorySource(args.directory, args.directory_sha256, args.directory_max_bytes, args.allow_http)
        report = await bootstrap(url, source, manifest, paths)
    print(json.dumps({"ok": report.ok, **vars(report)}, ensure_ascii=False))
    if not report.ok:
        print("serve-app bootstrap: some adapters were not registered (see above)", file=sys.stderr)
    return 0 if report.ok else 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "bootstrap",
        help="migrate, load the directory and register adapters: idempotent, safe to run concurrently",
        description="Brings the configured database to a serving state. Run it before the first deploy and "
        "whenever the directory file or the adapter manifest changes; a second run changes nothing.",
    )
    command.add_argument("--directory", help="CNAPS CSV: a path or an https URL (default: the shipped sample)")
    command.add_argument("--directory-sha256", metavar="HEX", help="refuse the file unless it has this SHA-256")
    command.add_argument(
        "--directory-max-bytes",
        type=int,
        default=DEFAULT_MAX_DIRECTORY_BYTES,
        metavar="N",
        help=f"refuse a download over N bytes (default {DEFAULT_MAX_DIRECTORY_BYTES:,})",
    )
    command.add_argument("--allow-http", action="store_true", help="allow a plain http:// directory URL")
    command.add_argument("--adapters", type=Path, help="YAML manifest {name: folder under the adapter root}")
    command.add_argument("--config", type=Path, help="Serve config whose model section names the folders")
    command.set_defaults(run=_bootstrap)
