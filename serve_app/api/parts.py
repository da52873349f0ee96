"""``Api``: what the HTTP routes stand on, built once per ingress replica (or per test)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from serve_app.config import IngressConfig
from serve_app.directory.browse import DirectoryBrowser
from serve_app.directory.history import DirectoryHistory
from serve_app.jobs.store import JobStore
from serve_app.service.admin import AdminService
from serve_app.service.query_service import QueryService
from serve_app.service.tenants import KeyStore
from serve_app.training.revision import Launcher
from serve_app.training.run_store import TrainingRunStore


@dataclass(frozen=True)
class Api:
    """What the routes stand on. ``browser``, ``jobs``, ``keys``, ``history`` and ``training`` may be absent in
    tests of other parts (their routes then fail as internal errors; without ``training`` the training routes
    are ``no_model``); ``keys`` is required when ``config.auth`` is ``keys``."""

    service: QueryService
    admin: AdminService
    replica_stats: Callable[[], dict[str, Any]]
    admin_token: SecretStr | None
    config: IngressConfig = field(default_factory=IngressConfig)
    browser: DirectoryBrowser | None = None
    jobs: JobStore | None = None
    keys: KeyStore | None = None
    history: DirectoryHistory | None = None
    training: tuple[TrainingRunStore, Launcher] | None = None  # runs' store, and where runs go to train
    #: While ``config.model_warming``: how the model's build is going (``ops.warming.read_progress``).
    build_progress: Callable[[], dict[str, Any] | None] = lambda: None
