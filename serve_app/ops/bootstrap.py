"""A first deploy from nothing: migrations, the directory, the adapters of a manifest — idempotent and safe
to run concurrently (``serve-app bootstrap``; in Kubernetes, the Job in ``k8s/bootstrap-job.yaml``).

Everything runs under one PostgreSQL advisory lock, so of two bootstraps started together one does the
work and the other waits, then finds nothing left to do. Run again, it changes nothing:

- migrations already applied are skipped (``db.migrate``);
- the directory file (a path, or an ``https://`` URL; default the shipped sample; optionally with its
  expected SHA-256 and a size limit) is loaded as a snapshot when the directory is empty or the file's
  SHA-256 differs from the one last loaded;
- each adapter of the manifest (``{name: folder under the adapter root}``) is validated against the base
  model and registered when missing, re-registered (a new revision) when its folder, base or rank
  changed, and left alone otherwise. New weights in the same folder need a new revision of their own
  (``serve-app train-adapter --register``, or a delete and a registration). An adapter that fails
  validation is reported, and the others still register.
"""

from __future__ import annotations

import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import yaml

from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import check_trigram_locale
from serve_app.directory.loader import file_sha256, load_directory
from serve_app.directory.records import demo_cnaps_path
from serve_app.errors import AdapterError
from serve_app.models.adapters import AdapterRegistry
from serve_app.models.paths import ModelPaths

#: Shared by every bootstrap of this project (the migrator has its own).
BOOTSTRAP_LOCK_KEY = 0x5E_7E_A9_02
DOWNLOAD_TIMEOUT_S = 120
#: The national directory is about 25 MB; a download far past that is not a directory.
DEFAULT_MAX_DIRECTORY_BYTES = 256 * 1024 * 1024


@dataclass
class BootstrapReport:
    migrations: list[str] = field(default_factory=list)
    directory: str = "unchanged"  # or "loaded N branches (data version V)"
    adapters: dict[str, str] = field(default_factory=dict)  # name → registered | updated | unchanged | failed: …

    @property
    def ok(self) -> bool:
        return not any(state.startswith("failed") for state in self.adapters.values())


def read_manifest(path: Path) -> dict[str, str]:
    """``{name: folder}`` from a YAML or JSON file holding that mapping (or ``{"adapters": mapping}``)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if isinstance(data, dict) and isinstance(data.get("adapters"), dict):
        data = data["adapters"]
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: an adapter manifest maps names to folders, e.g. job_22: job_22")
    return data


@dataclass(frozen=True)
class DirectorySource:
    """Where the directory file comes from, and what it must be: the source of truth for payments.

    ``location`` is a path or an ``https://`` URL (plain ``http://`` only with ``allow_http``, for a
    trusted network); a download stops past ``max_bytes``; with ``sha256`` the file must have that digest.
    """

    location: str
    sha256: str | None = None
    max_bytes: int = DEFAULT_MAX_DIRECTORY_BYTES
    allow_http: bool = False


def fetch_directory(source: DirectorySource, folder: Path) -> Path:
    """The file, checked: a local path as it is, a URL downloaded into ``folder``. ``ValueError`` naming the
    problem for a plain-http URL not allowed, a download over the size limit, or a digest that differs."""
    location = source.location
    if location.startswith("http://") and not source.allow_http:
        raise ValueError(
            f"refusing to download the directory over plain http ({location}): use https, or pass --allow-http "
            "for a trusted network"
        )
    if location.startswith(("http://", "https://")):
        path = folder / "directory.csv"
        _download(location, path, source.max_bytes)
    else:
        path = Path(location)
    if source.sha256 is not None:
        digest = file_sha256(path)
        if digest != source.sha256.lower():
            raise ValueError(f"the directory file's SHA-256 is {digest}, not the expected {source.sha256}")
    return path


def _download(url: str, target: Path, max_bytes: int) -> None:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, target.open("wb") as out:  # noqa: S310 - http(s) only
        received = 0
        while block := response.read(1 << 20):
            received += len(block)
            if received > max_bytes:
                raise ValueError(f"the directory download is over {max_bytes:,} bytes (--directory-max-bytes)")
            out.write(block)


async def _directory(conn: asyncpg.Connection, source: Path) -> str:
    loaded = await conn.fetchval(
        "SELECT sha256 FROM directory_loads WHERE mode = 'snapshot' ORDER BY data_version DESC LIMIT 1"
    )
    if loaded == file_sha256(source):
        return "unchanged"
    report = await load_directory(conn, source)
    return f"loaded {report.branches_loaded} branches (data version {report.data_version})"


async def _adapters(registry: AdapterRegistry, manifest: dict[str, str], paths: ModelPaths) -> dict[str, str]:
    states = {}
    for name, folder in manifest.items():
        try:
            spec = paths.validate(name, folder)
        except AdapterError as exc:
            states[name] = f"failed: {exc.message}"
            continue
        current = await registry.get(name)
        if current is None:
            await registry.register(spec, folder)
            states[name] = "registered"
        elif (current.path, current.base_model, current.rank) == (folder, spec.base_model, spec.rank):
            states[name] = "unchanged"
        else:
            await registry.upsert(spec, folder)
            states[name] = "updated"
    return states


async def bootstrap(
    database_url: str,
    directory: DirectorySource | None = None,
    manifest: dict[str, str] | None = None,
    paths: ModelPaths | None = None,
) -> BootstrapReport:
    """Bring the database at ``database_url`` to a serving state; see the module docstring."""
    if manifest and paths is None:
        raise ValueError("an adapter manifest needs the model's paths (a config with a model section)")
    report = BootstrapReport()
    conn = await asyncpg.connect(database_url, server_settings={"application_name": "serve-app-bootstrap"})
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", BOOTSTRAP_LOCK_KEY)
        report.migrations = await apply_migrations(conn)
        await check_trigram_locale(conn)
        with tempfile.TemporaryDirectory(prefix="serve-app-bootstrap-") as tmp:
            source = fetch_directory(directory, Path(tmp)) if directory else demo_cnaps_path()
            report.directory = await _directory(conn, source)
        if manifest:
            assert paths is not None
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
            try:
                report.adapters = await _adapters(AdapterRegistry(pool), manifest, paths)
            finally:
                await pool.close()
    finally:
        await conn.close()  # the session's advisory lock goes with it
    return report
