"""The real model path, end to end: SmolLM2-135M-Instruct from the installed wheel, an adapter trained here
by `serve-app train-adapter`, registered, and asked by `serve-app query` through the service's pipeline.

Slow by nature (the base is converted and the adapter trained on the CPU, ~3 min), so it trains once per
module and keeps the training short; the demo trains longer (``DEMO_TRAINING``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_app.cli import main
from serve_app.models.paths import DEMO_BASE_DIR
from serve_app.models.smollm2 import build_smollm2_base

pytestmark = pytest.mark.slow  # trains an adapter on the real SmolLM2 base (minutes on 2 cores)

SEED_CODE = "304659715925"
#: A staff question the rules misread (they sweep the trailing 在哪个城市 into the branch name: no word for a
#: code is asked), phrased as the adapter's training examples phrase questions.
QUESTION = "华夏银行江油西山支行在哪个城市"
STEPS = 40


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory, sample_database_url: str):
    home = tmp_path_factory.mktemp("trained-home")
    build_smollm2_base(home / "models" / DEMO_BASE_DIR)
    patch = pytest.MonkeyPatch()
    patch.setenv("SERVE_APP_DATABASE_URL", sample_database_url)
    patch.setenv("SERVE_APP_HOME", str(home))
    arguments = ["train-adapter", "job_q", "--tenant", "statements", "--steps", str(STEPS), "--held-out", "16"]
    assert main([*arguments, "--register"]) == 0
    yield home
    patch.undo()


def test_training_reports_progress_and_a_held_out_evaluation(trained_home: Path, capsys) -> None:
    report = json.loads((trained_home / "models" / "adapters" / "job_q" / "training_report.json").read_text())
    assert report["trained"]["steps"] == STEPS and report["trained"]["last_loss"] < report["trained"]["first_loss"]
    held_out = report["held_out"]["overall"]
    assert held_out["n"] == 16 and held_out["valid"] >= 0.9 and held_out["bank"] >= 0.8


def test_the_adapter_reads_what_the_rules_cannot(trained_home: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["query", QUESTION, "--json"]) == 0
    rules = json.loads(capsys.readouterr().out)
    assert rules["source"] == "rules" and rules["entities"]["branch"] == "江油西山支行在城市"
    assert rules["verdict"] != "match"
    assert main(["query", QUESTION, "--model", "job_q", "--json"]) == 0
    asked = json.loads(capsys.readouterr().out)
    assert (asked["source"], asked["model"]) == ("model", "job_q")
    assert asked["entities_source"]["branch"] == "model" and asked["entities"]["branch"].endswith("西山支行")
    assert asked["entities"]["bank"] == "华夏银行" and asked["matches"][0]["code"] == SEED_CODE


def test_a_revision_trained_on_wrong_confirmations_is_rejected_and_the_old_one_keeps_serving(
    trained_home: Path, sample_database_url: str
) -> None:
    """Deliberately wrong confirmations — each branch's official name confirmed as a branch of another bank
    in another city — and nothing else to learn from: the new revision reads worse than job_q on held-out
    directory records written in the tenant's styles, so the gate rejects it, its folder is deleted, and
    job_q's revision is the one registered."""
    import asyncio
    import uuid

    from serve_app.db.pool import create_pool
    from serve_app.models.adapters import AdapterRegistry
    from serve_app.models.paths import ModelPaths
    from serve_app.training.revision import TrainingSetup, run_training
    from serve_app.training.run_store import TrainingRunStore

    async def scenario() -> tuple:
        pool = await create_pool(sample_database_url)
        try:
            tenant = f"careless-{uuid.uuid4().hex[:6]}"
            rows = await pool.fetch("SELECT code, name, bank_name, city FROM branches ORDER BY md5(code) LIMIT 80")
            for written, paid in zip(rows[:40], rows[40:], strict=True):
                if (written["bank_name"], written["city"]) == (paid["bank_name"], paid["city"]):
                    continue
                await pool.execute(
                    """INSERT INTO confirmations (tenant, text_key, text, code, name, city, decided_by)
                       VALUES ($1, $2, $2, $3, $4, $5, 'careless')""",
                    tenant, written["name"], paid["code"], paid["name"], paid["city"],
                )  # fmt: skip
            registry = AdapterRegistry(pool)
            before = await registry.get("job_q")
            store = TrainingRunStore(pool)
            run = await store.create("job_q", tenant, 20)
            paths = ModelPaths.resolve(trained_home / "models")
            await run_training(pool, paths, uuid.UUID(run.id), TrainingSetup(directory_examples=0, directory_cases=16))
            return before, await store.get("job_q", run.id, None), await registry.get("job_q"), paths
        finally:
            await pool.close()

    before, run, after, paths = asyncio.run(scenario())
    assert run.state == "rejected", (run.state, run.error, run.report and run.report["measured"])
    assert run.report["reasons"] and not run.report["accepted"]
    assert after.revision == before.revision and after.path == before.path  # the old revision keeps serving
    assert not (paths.adapter_root / f"job_q.run-{run.id[:8]}").exists()
