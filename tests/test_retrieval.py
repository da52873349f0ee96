"""Ranked retrieval against the real directory, and the plans PostgreSQL chooses for it at scale."""

from __future__ import annotations

import re

import pytest

from serve_app.normalize import normalize
from serve_app.query.retrieval import BranchRepository, plan_for
from serve_app.schemas import Entities

SEED_CODE = "304659715925"
SEED_TEXT = normalize("华夏银行江油西山支行")


@pytest.fixture(params=["sample", pytest.param("scale", marks=pytest.mark.slow)])
def directory_pool(request: pytest.FixtureRequest, sample_pool):
    """The 15k-row sample and the 165k-row scale directory, in turn (the scale one is built on first use)."""
    return sample_pool if request.param == "sample" else request.getfixturevalue("scale_pool")


@pytest.mark.parametrize(
    "entities",
    [
        Entities(bank="华夏银行", city="绵阳市", branch="西山支行"),
        Entities(bank="华夏银行", district="江油市", branch="西山支行"),
        Entities(bank="华夏银行", branch="西山支行"),
        Entities(branch="江油西山支行"),
    ],
    ids=["bank+city", "bank+district", "bank-only", "branch-only"],
)
async def test_seed_branch_is_top_1(entities: Entities, directory_pool) -> None:
    repository = BranchRepository(directory_pool)
    matches = (await repository.search(entities, SEED_TEXT, limit=5)).candidates
    assert matches[0].code == SEED_CODE
    assert matches[0].name == "华夏银行股份有限公司江油西山支行"
    assert (matches[0].bank, matches[0].province, matches[0].city) == ("华夏银行", "四川省", "绵阳市")
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)


async def test_top_k_bounds_the_result(sample_pool) -> None:
    repository = BranchRepository(sample_pool)
    entities = Entities(bank="中国工商银行", city="北京市", branch="ZZZZ支行")  # the bank's 229 Beijing rows
    assert len((await repository.search(entities, normalize("工商银行ZZZZ支行"), limit=3)).candidates) == 3
    assert (await repository.search(entities, "工商银行ZZZZ支行", limit=0)).candidates == []


async def test_the_keyword_comes_before_the_place(sample_pool) -> None:
    # A keyword similar to some of the bank's names: those are the candidates, not all 229 of its
    # Beijing branches; a keyword similar to none: the bank's branches in the place, for the verdict.
    repository = BranchRepository(sample_pool)
    similar = Entities(bank="中国工商银行", city="北京市", branch="北京望京支行")
    found = (await repository.search(similar, normalize("工商银行北京望京支行"))).candidates
    assert found[0].name == "中国工商银行股份有限公司北京望京支行" and len(found) < 20
    dissimilar = Entities(bank="中国工商银行", city="北京市", branch="QQQQ支行")
    place = (await repository.search(dissimilar, normalize("工商银行QQQQ支行"))).candidates
    assert len(place) == 20 and {c.city for c in place} == {"北京市"} and {c.bank for c in place} == {"中国工商银行"}


async def test_wrong_city_falls_back_to_the_bank(sample_pool) -> None:
    repository = BranchRepository(sample_pool)
    entities = Entities(bank="华夏银行", city="北京市", branch="江油西山支行")
    matches = (await repository.search(entities, SEED_TEXT)).candidates
    assert matches[0].code == SEED_CODE


async def test_nothing_similar_gives_no_matches(sample_pool) -> None:
    repository = BranchRepository(sample_pool)
    assert (await repository.search(Entities(), "ZZZZQQQQ")).candidates == []


async def test_a_keyword_cut_short_finds_the_names_it_starts(sample_pool) -> None:
    entities = Entities(bank="中国农业银行", city="宿迁市", branch="宿迁分行清")
    found = await BranchRepository(sample_pool).search(entities, "中国农业银行宿迁分行清")
    assert [c.code for c in found.candidates] == ["103309046003"]  # 宿迁分行清算中心, the only one


async def test_short_truncated_keyword_is_found_verbatim(sample_pool) -> None:
    # "和平" has no trigram inside "…银行和平支行": only the verbatim fallback finds it.
    entities = Entities(bank="湖北宣恩农村商业银行", branch="和平")
    matches = (await BranchRepository(sample_pool).search(entities, normalize("湖北宣恩农村商业银行和平"))).candidates
    assert matches[0].name == "湖北宣恩农村商业银行股份有限公司和平支行"


async def test_place_is_a_signal_not_a_filter(sample_pool) -> None:
    # 朝阳 misread as Beijing's 朝阳区 must not hide the 溧阳 branch that carries the keyword.
    entities = Entities(bank="中国建设银行", city="北京市", district="朝阳区", branch="溧阳朝阳支行")
    matches = (await BranchRepository(sample_pool).search(entities, normalize("中国建设银行溧阳朝阳支行"))).candidates
    assert matches[0].name == "中国建设银行股份有限公司溧阳朝阳支行"


def test_plans_go_from_specific_to_general_and_never_leave_the_bank() -> None:
    with_place = Entities(bank="B", city="C", district="D", province="P")
    assert plan_for(with_place) == ["bank", "bank_place", "bank_substring", "bank_loose"]
    assert plan_for(Entities(bank="B")) == ["bank", "bank_substring", "bank_loose"]
    # A keyword without a level at its end may be a name cut short: the bank's names starting with it first.
    cut = Entities(bank="B", city="C", branch="宿迁分行清")
    assert plan_for(cut) == ["bank_prefix", "bank", "bank_place", "bank_substring", "bank_loose"]
    assert plan_for(Entities(bank="B", branch="宿迁分行")) == ["bank", "bank_substring", "bank_loose"]
    assert plan_for(Entities(city="C", province="P")) == ["place", "province", "trgm"]
    assert plan_for(Entities()) == ["trgm"]
    # A province and no city (湖南分行): the bank's branches in the province; a kind and no bank: its class's
    # alone, wherever a place is written (a kind contradicts every bank of another kind).
    assert plan_for(Entities(bank="B", province="P", branch="湖南分行")) == [
        "bank",
        "bank_province",
        "bank_substring",
        "bank_loose",
    ]
    assert plan_for(Entities(bank_code="314", branch="城关支行")) == ["kind"]
    assert plan_for(Entities(bank_code="314", city="C", province="P", branch="城关支行")) == ["kind"]


async def test_words_after_a_level_are_tried_whole_then_set_aside(sample_pool) -> None:
    repository = BranchRepository(sample_pool)
    entities = Entities(bank="华夏银行", city="绵阳市", district="江油市", branch="江油西山支行那边打钱")
    found = await repository.search(entities, normalize("华夏银行江油西山支行那边打钱"))
    assert (found.branch, found.candidates[0].code) == ("江油西山支行", SEED_CODE)
    whole = await repository.search(Entities(bank="中国农业银行", branch="宿迁分行清"), "中国农业银行宿迁分行清")
    assert whole.branch is None and [c.code for c in whole.candidates] == ["103309046003"]


async def test_a_read_bank_is_a_constraint_not_a_hint(sample_pool) -> None:
    # The sample holds ICBC's 北京西客站支行 but no 民生 branch of that name: 民生 is never answered with ICBC's.
    repository = BranchRepository(sample_pool)
    entities = Entities(bank="中国民生银行", city="北京市", branch="北京西客站支行")
    retrieval = await repository.search(entities, normalize("中国民生银行北京西客站支行"))
    assert {c.bank for c in retrieval.candidates} <= {"中国民生银行"}
    icbc = await repository.search(Entities(branch="北京西客站支行"), normalize("北京西客站支行"))
    assert "中国工商银行" in {c.bank for c in icbc.candidates}  # the other bank's branch does exist


async def test_a_bank_with_no_branches_is_reported_as_such(sample_pool) -> None:
    repository = BranchRepository(sample_pool)
    absent = await repository.search(Entities(bank="南京银行", branch="鼓楼支行"), normalize("南京银行鼓楼支行"))
    assert absent.candidates == [] and absent.bank_in_directory is False
    present = await repository.search(Entities(bank="华夏银行", branch="ZZZZ支行"), normalize("华夏银行ZZZZ"))
    assert present.candidates == [] and present.bank_in_directory is True


async def test_lookup_by_code(sample_pool) -> None:
    repository = BranchRepository(sample_pool)
    record = await repository.by_code(SEED_CODE)
    assert (record.name, record.bank, record.city, record.district) == (
        "华夏银行股份有限公司江油西山支行",
        "华夏银行",
        "绵阳市",
        "江油市",
    )
    assert await repository.by_code("102100000000") is None


@pytest.mark.parametrize(
    ("plan", "entities", "text", "indexes"),
    [
        ("bank_place", Entities(bank="中国农业银行", city="北京市", branch="定福庄支行"),
         "农业银行北京定福庄支行", {"branches_city_district", "branches_district", "branches_trgm"}),
        ("bank_place", Entities(bank="华夏银行", district="江油市", branch="西山支行"), SEED_TEXT,
         {"branches_city_district", "branches_district", "branches_trgm"}),
        ("bank", Entities(bank="中国农业银行", branch="定福庄支行"), "农业银行定福庄支行", {"branches_trgm"}),
        ("bank_prefix", Entities(bank="中国农业银行", city="北京市", branch="北京定福庄"), "农业银行北京定福庄",
         {"branches_trgm"}),
        ("bank_substring", Entities(bank="湖北宣恩农村商业银行", branch="和平"), "湖北宣恩农村商业银行和平",
         {"branches_trgm"}),
        ("bank_loose", Entities(bank="中国农业银行", branch="自贸试验区片区支行"), "中国农业银行自贸试验区片区支行",
         {"branches_trgm"}),
        # A city holds a few hundred rows: the planner may rightly prefer its btree to the trigram index.
        ("place", Entities(city="绵阳市", branch="江油西山支行"), SEED_TEXT,
         {"branches_trgm", "branches_city_district", "branches_district"}),
        ("trgm", Entities(branch="江油西山支行"), SEED_TEXT, {"branches_trgm"}),
    ],
)  # fmt: skip
async def test_explain_uses_the_indexes_at_scale(
    scale_pool, plan: str, entities: Entities, text: str, indexes: set[str]
) -> None:
    plan_text = await BranchRepository(scale_pool).explain(plan, entities, text)
    used = set(re.findall(r"Index Scan (?:on|using) (\w+)", plan_text))
    assert used and used <= indexes, plan_text
    assert "Seq Scan" not in plan_text, plan_text


async def test_a_bank_and_place_with_no_level_counts_the_banks_branches_there(sample_pool) -> None:
    # 中国银行安远 (a name cut after its place, or a bank and a place alone): how many branches the bank has
    # there decides whether the one found is the one meant. A name with a level is not asked about.
    repository = BranchRepository(sample_pool)
    one = Entities(bank="中国银行", city="赣州市", district="安远县", branch="安远")
    assert (await repository.search(one, normalize("中国银行安远"))).branches_there == 1
    many = Entities(bank="中国农业银行", city="淮安市", branch="淮安")
    assert (await repository.search(many, normalize("中国农业银行淮安"))).branches_there > 1
    named = Entities(bank="中国银行", city="赣州市", district="安远县", branch="安远支行")
    assert (await repository.search(named, normalize("中国银行安远支行"))).branches_there is None


async def test_a_name_with_a_place_dropped_from_inside_is_found_loosely(sample_pool) -> None:
    # 自贸试验区片区支行 is too unlike 云南自贸试验区红河片区支行 for word similarity's threshold and no name holds it
    # verbatim: the last resort lists the bank's names that share some of its trigrams, marked as found so.
    entities = Entities(bank="中国农业银行", branch="自贸试验区片区支行")
    found = await BranchRepository(sample_pool).search(entities, normalize("中国农业银行自贸试验区片区支行"))
    assert found.loosely and "中国农业银行股份有限公司云南自贸试验区红河片区支行" in {c.name for c in found.candidates}
    named = Entities(bank="中国农业银行", branch="北京定福庄支行")
    assert not (await BranchRepository(sample_pool).search(named, normalize("中国农业银行北京定福庄支行"))).loosely
