"""Where the base model and the adapters are: resolved once from the config tree and the data folder.

``build_app`` resolves a ``ModelPaths`` and hands the same object to every deployment that needs it; the
CLI resolves it the same way. Nothing else spells the default folder names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from serve_app.models.adapters import base_model_identity, validate_adapter
from serve_app.models.engine import AdapterSpec

DEMO_BASE_DIR = "demo-base"  # under the models folder: what ``make-demo-model`` builds
ADAPTER_DIR = "adapters"


@dataclass(frozen=True)
class ModelPaths:
    base: Path
    adapter_root: Path
    base_model_aliases: tuple[str, ...] = ()

    @classmethod
    def resolve(cls, models_dir: Path, base: Path | None = None, adapter_root: Path | None = None,
                aliases: tuple[str, ...] | list[str] = ()) -> ModelPaths:  # fmt: skip
        """Configured folders where given, else the demo model's under ``models_dir``."""
        return cls(base or models_dir / DEMO_BASE_DIR, adapter_root or models_dir / ADAPTER_DIR, tuple(aliases))

    @cached_property
    def base_names(self) -> set[str]:
        """Names an adapter config may give the resident base: its own names plus the configured aliases.
        Read where the model folder is (a model replica), on first use."""
        return base_model_identity(self.base) | set(self.base_model_aliases)

    def validate(self, name: str, path: str | Path) -> AdapterSpec:
        """``validate_adapter`` against this base, aliases included: registration and loading agree."""
        return validate_adapter(name, path, self.adapter_root, self.base, self.base_names)
