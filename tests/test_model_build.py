"""`serve-app up`'s background build of the demo model, stopped with the service (Ctrl-C): training gives up at
its next step, so the process exits in seconds instead of when training would have ended."""

from __future__ import annotations

import io

import pytest

import serve_app.cli.model_build as model_build
from serve_app.cli.model_build import BuildStopped, ModelBuild
from serve_app.ops.warming import read_progress
from serve_app.settings import Settings
from serve_app.training.trainer import Progress


def _build(tmp_path) -> ModelBuild:
    settings = Settings(home=tmp_path, database_url="postgresql://unused/unused")
    return ModelBuild(settings, settings.database_url or "", ["serve", "deploy", "c.yaml"], {}, tmp_path / "serve.log",
                      io.BytesIO(), port=1)  # fmt: skip


def test_a_stopped_build_gives_up_at_its_next_training_step(tmp_path) -> None:
    build = _build(tmp_path)
    build._trained("job_22", Progress(step=1, steps=60, loss=2.5, elapsed_s=1.0))
    assert read_progress(tmp_path / "models")["step"] == 1
    build.stop()
    with pytest.raises(BuildStopped):
        build._trained("job_22", Progress(step=2, steps=60, loss=2.4, elapsed_s=2.0))


def test_a_stopped_build_says_so_and_leaves_no_progress_behind(tmp_path, monkeypatch, capsys) -> None:
    async def stopped(*args, **kwargs):  # a fake of the build: the stop reached its training loop
        raise BuildStopped

    monkeypatch.setattr(model_build, "register_demo_model", stopped)
    build = _build(tmp_path)
    build.stop()
    build.run()
    assert "the demo model's build stopped with the service" in capsys.readouterr().out
    assert read_progress(tmp_path / "models") is None
