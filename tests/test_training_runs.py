"""Training a tenant's adapter from its confirmations, through the API: a run is queued, trained (progress on
its row), gated against the revision serving now and the rules alone, and registered as a new revision
only when the gate passes. Real PostgreSQL and a tiny random model (its answers are noise: the gate's
outcome here is "no worse"); the gate's decision rule is also checked on its own. ``tests/
test_trained_adapter.py`` rejects a real adapter trained on wrong confirmations, and ``tests/
test_serve_app.py`` runs a training in a Ray actor under Serve."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from serve_app.api.app import build_http_app
from serve_app.api.parts import Api
from serve_app.config import IngressConfig, IngressTunables
from serve_app.db.pool import create_pool
from serve_app.models.adapters import AdapterRegistry
from serve_app.models.board import ModelBoard
from serve_app.models.paths import ModelPaths
from serve_app.models.tiny import make_tiny_model
from serve_app.service.admin import AdminService
from serve_app.service.assembly import assemble_query_service
from serve_app.service.tenants import KeyStore
from serve_app.settings import Settings
from serve_app.training.gate import decide
from serve_app.training.revision import InProcessLauncher, TrainingSetup
from serve_app.training.run_store import TrainingRunStore
from tests.conftest import loaded_database

ADMIN = {"authorization": "Bearer s3cret-token-for-training-tests"}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("training-models")
    make_tiny_model(models)
    return models


@pytest.fixture
async def training_api(embedded_postgres, redis_client, tiny_models) -> AsyncIterator[tuple]:
    pool = await create_pool(await loaded_database(embedded_postgres, f"training{uuid.uuid4().hex[:6]}"))
    paths = ModelPaths.resolve(tiny_models)
    registry = AdapterRegistry(pool)
    await registry.register(paths.validate("job_22", "job_22"), "job_22")
    service = await assemble_query_service(pool, redis_client, Settings(), IngressTunables(rate_limit_per_s=1e4))
    service.result_cache.prefix = service.rate_limiter.prefix = f"training{uuid.uuid4().hex[:6]}"
    launcher = InProcessLauncher(pool, paths, TrainingSetup(directory_examples=16, directory_cases=6))
    api = Api(service, AdminService(registry, ModelBoard(redis_client), paths, None), dict,
              SecretStr(ADMIN["authorization"].removeprefix("Bearer ")), IngressConfig(auth="keys"),
              keys=KeyStore(pool), training=(TrainingRunStore(pool), launcher))  # fmt: skip
    keys = {
        "acme": (await api.keys.create("acme", ["job_22"], None, label="李四"))[0],  # type: ignore[union-attr]
        "other": (await api.keys.create("other", ["job_23"], None))[0],  # type: ignore[union-attr]
    }
    transport = httpx.ASGITransport(app=build_http_app(api))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client, keys, pool
    await service.query_log.close()
    await pool.close()


async def _confirm(pool, tenant: str, count: int) -> None:
    """``count`` of the tenant's confirmations, as decisions leave them: texts naming directory branches."""
    rows = await pool.fetch("SELECT code, name, city, branch FROM branches ORDER BY md5(code) LIMIT $1", count)
    for row in rows:
        await pool.execute(
            """INSERT INTO confirmations (tenant, text_key, text, code, name, city, decided_by)
               VALUES ($1, $2, $2, $3, $4, $5, '李四')""",
            tenant, row["name"], row["code"], row["name"], row["city"],
        )  # fmt: skip


async def _until_ended(client: httpx.AsyncClient, location: str, headers: dict) -> tuple[dict, list[int]]:
    steps_seen = []
    deadline = time.monotonic() + 240
    while True:
        run = (await client.get(location, headers=headers)).json()
        steps_seen.append(run["step"])
        if run["state"] in ("registered", "rejected", "failed"):
            return run, steps_seen
        assert time.monotonic() < deadline, run
        await _pause()


async def _pause() -> None:
    await asyncio.sleep(0.05)


async def test_a_run_trains_passes_its_gate_and_registers_a_new_revision(training_api) -> None:
    client, keys, pool = training_api
    await _confirm(pool, "acme", 12)
    acme = {"x-api-key": keys["acme"]}
    before = await AdapterRegistry(pool).get("job_22")
    started = await client.post("/api/v1/adapters/job_22/training", json={"steps": 6}, headers=acme)
    assert started.status_code == 202, started.text
    run = started.json()
    assert (run["state"], run["tenant"], run["steps"]) == ("queued", "acme", 6)
    again = await client.post("/api/v1/adapters/job_22/training", json={"steps": 6}, headers=acme)
    assert again.status_code == 409 and again.json()["error"]["code"] == "training_in_progress"

    ended, steps_seen = await _until_ended(client, started.headers["location"], acme)
    assert ended["state"] == "registered", ended
    assert ended["step"] == 6 and ended["loss"] is not None and ended["examples"] > 12
    assert steps_seen == sorted(steps_seen)  # progress only moves on
    report = ended["report"]
    assert report["confirmations_learned"] + report["cases"]["confirmations"] == 12 and report["accepted"]
    assert set(report["measured"]) == {"rules", "current", "candidate"} and report["replaces"] == before.ref
    after = await AdapterRegistry(pool).get("job_22")
    assert after.revision == ended["revision"] > before.revision and after.path.startswith("job_22.run-")

    listed = (await client.get("/api/v1/adapters/job_22/training", headers=acme)).json()
    assert [r["id"] for r in listed] == [run["id"]]
    assert len((await client.get("/api/v1/adapters/job_22/training", headers=ADMIN)).json()) == 1
    other = {"x-api-key": keys["other"]}
    refused = await client.post("/api/v1/adapters/job_22/training", json={}, headers=other)
    assert refused.status_code == 403  # a key trains only the adapters it may name
    assert (await client.get(f"/api/v1/adapters/job_23/training/{run['id']}", headers=other)).status_code == 404
    unknown = await client.post("/api/v1/adapters/job_22/training", json={}, headers=ADMIN)
    assert unknown.status_code == 422  # the admin names the tenant


def test_the_gate_rejects_a_revision_worse_on_right_or_wrong_matches() -> None:
    """The decision rule alone, on measurements made up for it (fakes, named as such)."""

    def tally(right: int, wrong: int, cases: int = 8) -> dict:
        return {"cases": cases, "right": right, "wrong": wrong}

    fake = {
        "rules": {"confirmations": tally(1, 0, 4), "directory": tally(5, 0)},
        "current": {"confirmations": tally(2, 0, 4), "directory": tally(6, 0)},
    }
    better = {"confirmations": tally(3, 0, 4), "directory": tally(6, 0)}
    assert decide(fake | {"candidate": better}) == (True, [])
    wrong_pays = better | {"confirmations": tally(3, 1, 4)}
    accepted, reasons = decide(fake | {"candidate": wrong_pays})
    assert not accepted and reasons == [
        "confirmations: 1 wrong matches, more than rules's 0",
        "confirmations: 1 wrong matches, more than current's 0",
    ]
    fewer = better | {"directory": tally(5, 0)}
    assert decide(fake | {"candidate": fewer}) == (False, ["directory: 5 right matches, fewer than current's 6"])
