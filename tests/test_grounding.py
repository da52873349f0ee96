"""Combining the model's reading with the rules': only grounded fields are used, by the stated rules.

The model answers here are fakes (JSON written by hand, and a fake model reader that always answers the
same wrong thing), named as such; the rules extractor, its vocabulary and the gazetteer are the real ones.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from serve_app.config import ExtractorTunables
from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.extraction.model_use import combine
from serve_app.extraction.rules import RulesExtractor
from serve_app.extraction.vocabulary import Vocabulary
from serve_app.models.task import FORMATS, ModelAnswer
from serve_app.normalize import normalize


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary.from_records(read_cnaps(demo_cnaps_path()))


@pytest.fixture(scope="module")
def rules(vocabulary):
    return RulesExtractor(vocabulary)


def fake_answer(**fields) -> ModelAnswer:
    """A valid answer naming ``fields`` (format 1, the one that can name a province too)."""
    return FORMATS[1].read(json.dumps(fields, ensure_ascii=False))


def test_a_tighter_grounded_branch_from_the_model_is_used(rules) -> None:
    query = normalize("我要给华夏银行江油西山支行那边打钱，谢谢")
    read = rules.extract(query)
    assert read.entities.branch == "江油西山支行那边打钱谢谢"  # the rules swept neighbouring words in
    outcome = combine(read, query, fake_answer(bank="华夏银行", branch="西山支行"), "job_22", rules)
    assert (outcome.source, outcome.entities.branch) == ("model", "西山支行")
    assert outcome.entities_source["branch"] == "model" and outcome.entities_source["bank"] == "both"
    assert (outcome.entities.bank, outcome.entities.bank_code, outcome.entities.city) == ("华夏银行", "304", "绵阳市")


def test_a_wrong_model_never_overrides_a_grounded_rules_field(rules) -> None:
    query = normalize("华夏银行江油西山支行")
    read = rules.extract(query)
    wrong = fake_answer(bank="中国银行", province="北京市", city="北京市", district="朝阳区", branch="东山支行")
    outcome = combine(read, query, wrong, "job_22", rules)
    assert outcome.entities == read.entities and outcome.source == "rules"
    assert set(outcome.model_overruled) == {"bank", "province", "city", "district", "branch"}
    assert outcome.model_overruled["bank"] == "the query does not name this bank"
    assert outcome.model_overruled["branch"] == "the query does not contain this branch name"


@pytest.mark.parametrize(
    ("text", "model_branch", "reason"),
    [
        # Only the model read a branch, and it is the bank's own name.
        ("山东五莲农村商业银行股份有限公司", "山东五莲农村商业银行", "names the bank, not a branch"),
        # A bare level inside the rules' reading is no tighter reading of it.
        ("北京新街口支行 (Industrial And Commercial Bank Of China Limited)", "支行", "names no branch"),
        # Words inside the rules' reading that end in no level are no branch either.
        ("请提供青龙满族自治县农村信用联社娄杖子信用社的清算行号，谢谢", "谢谢", "the rules read"),
        # A whole nested name is not cut to its parent: another branch, another code.
        ("浙江衢州衢江农村商业银行的南区支行城南分理处联行号是什么？", "南区支行", "the rules read"),
        ("中国建设银行股份有限公司江西省分行票据中心（不对外营业）", "江西省分行", "the rules read"),
    ],
)
def test_a_model_branch_that_names_no_branch_is_not_used(rules, text: str, model_branch: str, reason: str) -> None:
    query = normalize(text)
    read = rules.extract(query)
    answer = fake_answer(bank=read.entities.bank, branch=model_branch)
    outcome = combine(read, query, answer, "job_22", rules)
    assert outcome.entities == read.entities and outcome.source == "rules"
    assert outcome.model_overruled["branch"].startswith(reason)


def test_a_grounded_disagreement_keeps_the_rules_reading_and_says_so(rules) -> None:
    query = normalize("华夏银行绵阳江油西山支行")
    read = rules.extract(query)
    assert read.entities.city == "绵阳市"
    # 江油 is in the query too, but the rules' literal reading of the city stands.
    outcome = combine(read, query, fake_answer(bank="华夏银行", city="江油市"), "job_22", rules)
    assert outcome.entities.city == "绵阳市" and outcome.model_overruled["city"] == "the rules read '绵阳市'"


def test_fields_only_the_model_read_are_used_when_grounded(rules) -> None:
    from serve_app.schemas import Entities, Extraction

    query = normalize("HUAXIA BANK 江油西山支行")
    nothing = Extraction(entities=Entities(), confidence=0.1, extractor_version=0)
    answer = fake_answer(bank="华夏银行", district="江油市", branch="西山支行")
    outcome = combine(nothing, query, answer, "job_23", rules)
    assert (outcome.entities.bank, outcome.entities.district, outcome.entities.branch) == (
        "华夏银行",
        "江油市",
        "西山支行",
    )
    assert outcome.entities_source == {"bank": "model", "district": "model", "branch": "model"}
    invented = combine(nothing, query, fake_answer(bank="华夏银行", city="成都市"), "job_23", rules)
    assert invented.entities.city is None and invented.model_overruled == {"city": "the query does not name this place"}


def test_a_place_named_only_inside_the_banks_name_grounds_nothing(rules) -> None:
    query = normalize("湖南湘潭天易农村商业银行谭家山")
    read = rules.extract(query)
    assert read.entities.district is None  # the rules read no district either
    outcome = combine(read, query, fake_answer(bank=read.entities.bank, district="湘潭县"), "job_22", rules)
    assert outcome.entities == read.entities
    assert outcome.model_overruled == {"district": "the query does not name this place"}


def test_a_district_outside_the_city_is_dropped(rules) -> None:
    from serve_app.schemas import Entities, Extraction

    query = normalize("华夏银行绵阳市朝阳区支行")
    read = Extraction(entities=Entities(bank="华夏银行", city="绵阳市"), confidence=0.5, extractor_version=0)
    outcome = combine(read, query, fake_answer(district="朝阳区"), "job_22", rules)
    assert outcome.entities.district is None and outcome.model_overruled["district"] == "not in 绵阳市"


def test_an_invalid_answer_keeps_the_rules_and_says_why(rules) -> None:
    query = normalize("华夏银行江油西山支行")
    read = rules.extract(query)
    outcome = combine(read, query, FORMATS[2].read("华夏|绵阳"), "job_22", rules)
    assert (outcome.source, outcome.entities, outcome.model) == ("rules", read.entities, "job_22")
    assert "expected 4 fields" in outcome.model_error


async def test_a_fake_wrong_model_behind_the_extraction_service_changes_nothing(sample_pool) -> None:
    """The whole extraction step, with a fake model reader that always answers the same wrong reading."""
    from serve_app.extraction.service import ExtractionService

    async def fake_wrong_model(normalized: str, adapter: str) -> ModelAnswer:
        return fake_answer(bank="中国工商银行", city="徐州市", branch="经济开发区支行")

    service = await ExtractionService(sample_pool, ExtractorTunables(), fake_wrong_model).start()
    rules_only = await service.extract_entities("华夏银行江油西山支行", None)
    asked = await service.extract_entities("华夏银行江油西山支行", "job_22")
    assert asked.entities == rules_only.entities and asked.source == "rules" and asked.model == "job_22"
    assert set(asked.model_overruled) == {"bank", "city", "branch"}


#: A weak reading for the rules (the question swept into the branch, no level at its end: confidence 0.75).
WEAK_QUERY = "中国工商银行重庆金开支行那边打钱"


async def test_a_fallback_the_model_cannot_answer_in_time_keeps_the_rules_reading(sample_pool) -> None:
    """The default adapter is optional: a fake model too slow, or saturated, leaves the rules' answer; a
    tenant that names its adapter hears why the model did not answer."""
    from serve_app.errors import Overloaded
    from serve_app.extraction.model_use import MODEL_SKIPPED
    from serve_app.extraction.service import ExtractionService

    never_done = asyncio.Event()

    async def fake_stalled_model(normalized: str, adapter: str) -> ModelAnswer:
        await never_done.wait()
        raise AssertionError("unreachable")

    async def fake_saturated_model(normalized: str, adapter: str) -> ModelAnswer:
        raise Overloaded("the model replicas are at capacity")

    tunables = ExtractorTunables(model_fallback_threshold=0.9, default_adapter="job_22", model_fallback_timeout_s=0.05)
    for fake in (fake_stalled_model, fake_saturated_model):
        service = await ExtractionService(sample_pool, tunables, fake).start()
        rules = await service.rules(WEAK_QUERY)
        assert rules.confidence < tunables.model_fallback_threshold  # so the default adapter is asked
        outcome = await service.extract_entities(WEAK_QUERY, None)
        assert (outcome.source, outcome.model, outcome.model_error) == ("rules", "job_22", MODEL_SKIPPED)
        assert outcome.entities == rules.entities
    with pytest.raises(Overloaded):
        await service.extract_entities(WEAK_QUERY, "job_22")
