"""The offline pipeline (the service's query path in one process), on real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from serve_app.cli import main
from serve_app.extraction.model_use import rules_outcome
from serve_app.normalize import normalize
from serve_app.query.pipeline import build_pipeline
from serve_app.schemas import MAX_QUERY_CHARS, QueryRequest

SEED_CODE = "304659715925"


async def test_seed_query_end_to_end(sample_pool) -> None:
    pipeline = await build_pipeline(sample_pool)
    result = await pipeline.run(QueryRequest(query="华夏银行江油西山支行"))
    assert result.matches[0].code == SEED_CODE
    assert result.source == "rules"
    assert result.entities.city == "绵阳市"
    assert set(result.timings_ms) == {"normalize", "extract", "rules", "retrieve", "total"}
    assert result.timings_ms["rules"] <= result.timings_ms["extract"] <= result.timings_ms["total"]


async def test_the_offline_pipeline_reads_the_vocabulary_once_not_per_query(sample_pool, monkeypatch) -> None:
    """``serve-app query --file`` answers thousands of lines: one vocabulary read at start, none per line."""
    from serve_app.extraction import service

    reads = 0
    real = service.Vocabulary.from_database

    async def counted(conn):
        nonlocal reads
        reads += 1
        return await real(conn)

    monkeypatch.setattr(service.Vocabulary, "from_database", counted)
    pipeline = await build_pipeline(sample_pool)
    for text in ("华夏银行江油西山支行", "工行徐州经济开发区支行", "北京银行成都分行"):
        await pipeline.run(QueryRequest(query=text))
    assert reads == 1


@pytest.mark.parametrize("text", ["\u200b\u200d", "（不对外营业）", "ZZZZQQQQ", "银行"])
async def test_odd_input_gives_an_answer_not_an_error(sample_pool, text: str) -> None:
    pipeline = await build_pipeline(sample_pool)
    result = await pipeline.run(QueryRequest(query=text))
    assert isinstance(result.matches, list)


def test_requests_are_validated_before_anything_runs() -> None:
    with pytest.raises(ValidationError):
        QueryRequest(query="   ")
    with pytest.raises(ValidationError, match="control characters"):
        QueryRequest(query="华夏\x00银行")
    with pytest.raises(ValidationError):
        QueryRequest(query="银" * (MAX_QUERY_CHARS + 1))
    with pytest.raises(ValidationError):
        QueryRequest(query="华夏银行", top_k=0)
    with pytest.raises(ValidationError):
        QueryRequest(query="华夏银行", unexpected=1)
    assert QueryRequest(query="  华夏银行 ", model="").model == None  # noqa: E711
    assert QueryRequest(query="  华夏银行 ").query == "华夏银行"


def test_cli_query_json(monkeypatch: pytest.MonkeyPatch, sample_database_url: str, capsys) -> None:
    monkeypatch.setenv("SERVE_APP_DATABASE_URL", sample_database_url)
    assert main(["query", "华夏银行江油西山支行", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["matches"][0]["code"] == SEED_CODE
    assert set(result) == {
        "query",
        "normalized",
        "entities",
        "verdict",
        "reason",
        "matches",
        "source",
        "model",
        "entities_source",
        "model_overruled",
        "model_error",
        "successors",
        "data_version",
        "directory_as_of",
        "confirmation",
        "timings_ms",
    }
    assert result["data_version"] >= 1 and result["directory_as_of"]  # the CLI says which snapshot answered
    assert (result["verdict"], result["reason"]) == ("match", "unique_fit")


def test_cli_query_file_gives_one_line_per_input(
    monkeypatch: pytest.MonkeyPatch, sample_database_url: str, tmp_path: Path, capsys
) -> None:
    monkeypatch.setenv("SERVE_APP_DATABASE_URL", sample_database_url)
    queries = tmp_path / "queries.txt"
    queries.write_text("华夏银行江油西山支行\n   \n工行正阳门支行\n", encoding="utf-8")
    assert main(["query", "--file", str(queries), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3
    assert lines[0]["matches"][0]["code"] == SEED_CODE
    assert lines[1]["error"]["code"] == "invalid_query"
    assert lines[2]["entities"]["bank"] == "中国工商银行"


def test_cli_query_needs_text_or_file(capsys) -> None:
    assert main(["query"]) == 2
    assert "either TEXT or --file" in capsys.readouterr().err


def test_model_is_asked_when_named_or_when_rules_are_unsure() -> None:
    from serve_app.extraction.model_use import adapter_to_ask
    from serve_app.schemas import Entities, Extraction

    sure = Extraction(entities=Entities(), confidence=1.0, extractor_version=2)
    unsure = Extraction(entities=Entities(), confidence=0.45, extractor_version=2)
    assert adapter_to_ask("job_23", sure, 0.5, "job_22") == "job_23"
    assert adapter_to_ask(None, unsure, 0.5, "job_22") == "job_22"
    assert adapter_to_ask(None, sure, 0.5, "job_22") is None
    assert adapter_to_ask(None, unsure, 0.5, None) is None


def test_cli_query_with_a_model(
    monkeypatch: pytest.MonkeyPatch, sample_database_url: str, tmp_path: Path, capsys
) -> None:
    monkeypatch.setenv("SERVE_APP_DATABASE_URL", sample_database_url)
    monkeypatch.setenv("SERVE_APP_HOME", str(tmp_path))
    assert main(["make-demo-model", "--tiny"]) == 0
    capsys.readouterr()
    assert main(["query", "华夏银行江油西山支行", "--model", "job_23", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "job_23"
    # The tiny demo model's random weights (seeded) never close their JSON: the model was asked, its answer
    # refused as invalid, and the rules' reading stands, which still finds the branch.
    assert (result["source"], result["model_error"]) == ("rules", "output cut short before the JSON closed")
    assert result["matches"][0]["code"] == SEED_CODE
    assert main(["query", "华夏银行", "--model", "job_99"]) == 1
    assert "no adapter named 'job_99'" in capsys.readouterr().err


async def test_extraction_follows_the_directory_data_version(empty_database_url: str, tmp_path: Path) -> None:
    """After `db load` elsewhere, the extractor reads the new vocabulary before answering for the new
    version, so nothing is cached under a version it was not computed with."""
    from serve_app.config import ExtractorTunables
    from serve_app.db.migrate import apply_migrations
    from serve_app.db.pool import connect_admin, create_pool
    from serve_app.directory.loader import load_directory, read_data_version
    from serve_app.directory.records import demo_cnaps_path
    from serve_app.errors import NoModelDeployment
    from serve_app.extraction.service import ExtractionService
    from serve_app.settings import Settings

    conn = await connect_admin(empty_database_url)
    await apply_migrations(conn)
    lines = demo_cnaps_path().read_text(encoding="utf-8").splitlines()
    without_huaxia = tmp_path / "without_huaxia.csv"
    without_huaxia.write_text("\n".join(line for line in lines if "华夏银行" not in line) + "\n", encoding="utf-8")
    await load_directory(conn, without_huaxia)
    pool = await create_pool(empty_database_url, Settings())
    try:
        service = await ExtractionService(pool, ExtractorTunables()).start()
        await service.extract_entities("华夏银行江油西山支行", None, service.data_version)
        assert "华夏银行" not in service.vocabulary.cities  # no branches of it in this directory
        with pytest.raises(NoModelDeployment):
            await service.extract_entities("华夏银行江油西山支行", "job_22", service.data_version)
        await load_directory(conn, demo_cnaps_path())  # `serve-app db load`: a new data version
        version = await read_data_version(conn)
        assert version > service.data_version
        after = await service.extract_entities("华夏银行江油西山支行", None, version)
        assert service.data_version == version and service.vocabulary.cities["华夏银行"]["绵阳市"] > 0
        assert after.entities.city == "绵阳市"
    finally:
        await pool.close()
        await conn.close()


async def test_the_ingress_answers_complete_readings_itself_and_delegates_the_rest(sample_pool) -> None:
    """``RulesFirstExtraction``: no hop to the extraction deployment (a fake that records calls) when no
    model can be asked; the deployment — here the real service under the strictest tunables, with a fake
    model that must not be called — gives the same answer for those."""
    from serve_app.config import MAX_FALLBACK_THRESHOLD, ExtractorTunables
    from serve_app.extraction.service import ExtractionService, RulesFirstExtraction

    async def fake_model_never_called(normalized: str, adapter: str):
        raise AssertionError(f"the model was asked about {normalized!r}")

    strictest = ExtractorTunables(model_fallback_threshold=MAX_FALLBACK_THRESHOLD, default_adapter="job_22")
    deployment = await ExtractionService(sample_pool, strictest, fake_model_never_called).start()
    delegated: list[tuple[str, str | None]] = []

    async def fake_deployment(normalized: str, adapter: str | None, data_version: int):
        delegated.append((normalized, adapter))
        return rules_outcome(await deployment.rules(normalized))

    local = RulesFirstExtraction(await ExtractionService(sample_pool, ExtractorTunables()).start(), fake_deployment)
    version = local.rules.data_version
    complete = normalize("华夏银行江油西山支行")
    here = await local(complete, None, version)
    assert delegated == [] and here.source == "rules" and set(here.timings_ms) == {"rules"}
    there = await deployment.extract_entities(complete, None, version)
    assert (here.entities, here.confidence) == (there.entities, there.confidence) == (here.entities, 1.0)
    weak = normalize("中国工商银行重庆金开支行那边打钱")  # no level at the end: the default adapter may be asked
    await local(weak, None, version)
    await local(complete, "job_22", version)  # a named adapter always goes to the deployment
    assert delegated == [(weak, None), (complete, "job_22")]
