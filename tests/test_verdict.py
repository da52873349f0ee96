"""Verdicts on the real directory sample: the same-bank guarantee, codes, banks without branches, calibration.

Everything here runs the one query path (``pipeline.compute_answer``) over a real PostgreSQL; the unit tests at the
end feed ``judge`` hand-made candidates (fakes of retrieval, named as such).
"""

from __future__ import annotations

import random

import pytest

from serve_app.directory.codes import CodeInText, check_digit, find_code, is_valid_code
from serve_app.directory.institutions import CENTRAL_BANK, english_form, licensed_institutions
from serve_app.extraction.question import strip_question
from serve_app.query.candidates import Candidate, Retrieval
from serve_app.query.pipeline import build_pipeline
from serve_app.query.place_words import other_places
from serve_app.query.verdict import default_weights, judge
from serve_app.schemas import Entities, QueryRequest

SEED_CODE = "304659715925"


@pytest.fixture(scope="module")
async def pipeline(sample_pool):
    return await build_pipeline(sample_pool)


async def ask(pipeline, text: str, top_k: int = 5):
    return await pipeline.run(QueryRequest(query=text, top_k=top_k))


@pytest.mark.parametrize(
    "text",
    [
        "华夏银行江油西山支行",
        "华夏银行股份有限公司江油西山支行",
        "请帮我查一下华夏银行在江油西山那个支行的联行号",
        "華夏銀行江油西山支行",
        "THE PEOPLE'S BANK OF CHINA 华夏银行股份有限公 司江油西山支行",
        "华夏银行（江油西山支行）",  # the branch in brackets after its bank, as forms print an 开户行
        "华夏银行股份有限公司江油西山支行（原江油支行）",  # a former name in brackets is an annotation
        "江油西山支行（华夏银行）",  # the bank in brackets after its branch
        "华夏银行·江油西山支行",
        "华夏银行江油西山支行（Hua Xia Bank Jiangyou Xishan Sub-branch）",  # an English rendering after the name
    ],
)
async def test_the_seed_branch_is_a_sure_match(pipeline, text: str) -> None:
    result = await ask(pipeline, text)
    assert (result.verdict, result.reason) == ("match", "unique_fit")
    top = result.matches[0]
    assert top.code == SEED_CODE
    assert top.confidence >= default_weights().match_threshold
    assert (top.evidence.bank, top.evidence.branch) == ("exact", "exact")


@pytest.mark.parametrize(
    "text",
    [
        "请帮我查一下华夏银行在江油西山那个支行的联行号",
        # The name ends before what a question asks for, whatever words come between or after.
        "华夏银行江油西山支行这个网点的联行号麻烦发一下",
        "请问华夏银行江油西山支行，银行代码",
        "华夏银行江油西山支行CNAPS号",
    ],
)
async def test_natural_question_reads_the_branch_not_the_question(pipeline, text: str) -> None:
    result = await ask(pipeline, text)
    assert result.entities.branch == "江油西山支行"
    assert (result.verdict, result.matches[0].code) == ("match", SEED_CODE)


async def test_another_banks_branch_is_never_the_answer(pipeline) -> None:
    # ICBC has a 北京西客站支行 in the sample; 民生 has none of that name.
    result = await ask(pipeline, "中国民生银行北京西客站支行")
    assert result.entities.bank == "中国民生银行"
    assert (result.verdict, result.reason, result.matches) == ("none", "no_branch_fits", [])


async def test_same_bank_guarantee_over_banks_absent_from_a_city(pipeline, sample_pool) -> None:
    """For banks with no branch in a city where other banks have some, never another bank's branch."""
    rows = await sample_pool.fetch(
        """SELECT b.bank_name, c.city FROM (SELECT DISTINCT bank_name FROM branches) b
           CROSS JOIN (SELECT city, count(*) AS n FROM branches GROUP BY city HAVING count(*) > 40) c
           WHERE NOT EXISTS (SELECT 1 FROM branches x WHERE x.bank_name = b.bank_name AND x.city = c.city)
           ORDER BY b.bank_name, c.city"""
    )
    rng = random.Random(3)
    pairs = rng.sample([(r["bank_name"], r["city"]) for r in rows], 60)
    keywords = await sample_pool.fetch(
        "SELECT branch FROM branches WHERE city = ANY($1::text[])", [c for _, c in pairs]
    )
    for bank, _city in pairs:
        # A branch keyword that does exist in that city, for some other bank.
        keyword = rng.choice([k["branch"] for k in keywords])
        result = await ask(pipeline, f"{bank}{keyword}")
        assert result.verdict != "match" or result.matches[0].bank == bank, (bank, keyword, result.matches[0])
        assert all(match.bank == result.entities.bank for match in result.matches), (bank, keyword)


async def test_a_bare_code_is_checked_and_looked_up(pipeline) -> None:
    result = await ask(pipeline, SEED_CODE)
    assert (result.verdict, result.reason, result.matches[0].code) == ("match", "code_lookup", SEED_CODE)
    assert result.matches[0].confidence == 1.0


async def test_a_code_inside_a_statement_line(pipeline) -> None:
    result = await ask(pipeline, f"华夏银行股份有限公司江油西山支行（联行号：{SEED_CODE}）")
    assert (result.verdict, result.reason, result.matches[0].code) == ("match", "code_lookup", SEED_CODE)
    assert result.matches[0].evidence.bank == "exact"
    fullwidth = await ask(pipeline, "对方行号：３０４６５９７１５９２５")
    assert (fullwidth.verdict, fullwidth.matches[0].code) == ("match", SEED_CODE)


async def test_a_wrong_check_digit_is_never_guessed_around(pipeline) -> None:
    wrong = SEED_CODE[:-1] + str((int(SEED_CODE[-1]) + 1) % 10)
    for text in (wrong, f"华夏银行江油西山支行 {wrong}"):
        result = await ask(pipeline, text)
        assert (result.verdict, result.reason, result.matches) == ("none", "invalid_code", [])


async def test_a_valid_code_not_in_the_directory(pipeline) -> None:
    code = "10210000999" + str(check_digit("10210000999"))
    result = await ask(pipeline, code)
    assert (result.verdict, result.reason, result.matches) == ("none", "code_not_in_directory", [])


async def test_a_code_of_another_bank_than_the_text_names_needs_a_person(pipeline) -> None:
    result = await ask(pipeline, f"中国工商银行北京分行 {SEED_CODE}")
    assert (result.verdict, result.reason) == ("ambiguous", "code_conflict")
    assert result.matches[0].code == SEED_CODE


async def test_a_code_of_another_branch_of_the_same_bank_needs_a_person_with_both_shown(pipeline) -> None:
    # 103651074220 is ABC's 成都空港新城支行; the words name its 成都草池支行 (103651074123).
    result = await ask(pipeline, "中国农业银行成都草池支行（103651074220）")
    assert (result.verdict, result.reason) == ("ambiguous", "code_conflict")
    assert [m.code for m in result.matches[:2]] == ["103651074220", "103651074123"]
    alone = await ask(pipeline, "中国农业银行成都草池支行")
    assert (alone.verdict, alone.matches[0].code) == ("match", "103651074123")


async def test_a_code_whose_place_the_words_contradict_needs_a_person(pipeline) -> None:
    result = await ask(pipeline, f"华夏银行北京 {SEED_CODE}")  # the seed is in 绵阳市
    assert (result.verdict, result.reason) == ("ambiguous", "code_conflict")


@pytest.mark.parametrize(
    "text",
    [
        f"华夏银行江油西山支行 {SEED_CODE}",
        f"华夏银行江油西山支行 行号 {SEED_CODE}",
        f"华夏银行江油西山支行，联行号为{SEED_CODE}",
        f"{SEED_CODE} 华夏银行江油西山支行",
        f"华夏银行(CNAPS: {SEED_CODE})",
        f"华夏银行股份有限公司江油西山支行（{SEED_CODE}）",
    ],
)
async def test_words_that_agree_with_the_code_keep_it_a_match(pipeline, text: str) -> None:
    result = await ask(pipeline, text)
    assert (result.verdict, result.reason, result.matches[0].code) == ("match", "code_lookup", SEED_CODE)
    assert SEED_CODE not in result.normalized  # the words are read without the code they carry


async def test_an_account_number_is_not_read_as_a_code(pipeline) -> None:
    line = "账号：455765432109 开户行：华夏银行江油西山支行"
    assert find_code(line) is None
    result = await ask(pipeline, line)
    assert (result.verdict, result.reason, result.matches[0].code) == ("match", "unique_fit", SEED_CODE)


@pytest.mark.parametrize(
    ("text", "bank"),
    [
        ("南京银行鼓楼支行", "南京银行"),
        ("成都银行股份有限公司高新支行", "成都银行"),
        ("上海农商银行张江支行", "上海农村商业银行"),
        ("BANK OF FUXIN JINGJI KAIFAQU SUB-BRANCH", "阜新银行"),
        ("国家开发银行四川省分行", "国家开发银行"),
    ],
)
async def test_a_known_bank_without_branches_in_the_directory(pipeline, text: str, bank: str) -> None:
    result = await ask(pipeline, text)
    assert result.entities.bank == bank
    assert (result.verdict, result.reason, result.matches) == ("none", "bank_not_in_directory", [])


@pytest.mark.parametrize(
    "text",
    [
        "华夏银行绵阳",
        "绵阳华夏银行",
        "中国农业银行淮安",
        "中国农业银行岳阳支行",  # a unit named by its place alone, and the bank has none named so there
        "中国工商银行锦州支行",
    ],
)
async def test_a_bank_and_place_alone_is_a_choice_among_its_branches_there(pipeline, text: str) -> None:
    # No branch is named by more than its place, so none is paid to; but the bank has branches in the place
    # written (a name cut after its place, as statement exports cut it): "no such branch" would be false.
    result = await ask(pipeline, text)
    assert result.verdict == "ambiguous" and result.matches
    assert {(m.bank, m.city) for m in result.matches} == {(result.entities.bank, result.entities.city)}


async def test_a_name_found_only_loosely_is_a_choice_never_a_payee(pipeline) -> None:
    # A place dropped from inside the name (云南自贸试验区红河片区支行): the branches of those words are listed for a
    # person — 红河's and 连云港's both read as 自贸试验区片区 once their places are set aside — never "no such branch".
    result = await ask(pipeline, "中国农业银行自贸试验区片区支行")
    assert result.verdict == "ambiguous" and "103744426610" in {m.code for m in result.matches}


async def test_a_bank_and_place_where_the_bank_has_one_branch_is_that_branch(pipeline) -> None:
    # 中国银行安远, as exports cut 中国银行安远支行: the bank's one branch in 安远县 is the branch meant.
    result = await ask(pipeline, "中国银行安远")
    assert (result.verdict, result.matches[0].code) == ("match", "104428866019")


async def test_a_bank_alone_read_as_in_its_home_is_only_its_own_record(pipeline) -> None:
    # 九江银行 is read as in 九江, but that is the bank's name: no place and no branch is written, so only the
    # bank's own record (its head office) is offered, and not paid.
    result = await ask(pipeline, "九江银行")
    assert result.verdict == "ambiguous" and [m.name for m in result.matches] == ["九江银行股份有限公司"]


async def test_without_a_bank_a_person_chooses(pipeline) -> None:
    result = await ask(pipeline, "江油西山支行")
    assert (result.verdict, result.reason) == ("ambiguous", "bank_unknown")
    assert result.matches[0].code == SEED_CODE and result.matches[0].evidence.bank == "unstated"


async def test_two_banks_named_means_the_bank_is_uncertain(pipeline) -> None:
    result = await ask(pipeline, "华夏银行江油西山支行 中国工商银行")
    assert (result.verdict, result.reason) == ("ambiguous", "bank_uncertain")
    assert result.matches[0].code == SEED_CODE


async def test_nothing_to_match(pipeline) -> None:
    result = await ask(pipeline, "（不对外营业）")
    assert (result.verdict, result.reason, result.matches) == ("none", "nothing_to_match", [])


# --- units: no database ------------------------------------------------------------------------------


def _fake_candidate(code: str, bank: str, branch: str, city: str = "绵阳市", district: str | None = "江油市"):
    """A fake retrieval row."""
    return Candidate(code, bank + branch, bank, code[:3], "四川省", city, district, branch, 2.0)


def test_judge_never_matches_another_banks_branch_even_if_retrieval_offered_one() -> None:
    entities = Entities(bank="中国民生银行", city="绵阳市", district="江油市", branch="江油西山支行")
    retrieval = Retrieval([_fake_candidate(SEED_CODE, "华夏银行", "江油西山支行")])
    judgement = judge(entities, retrieval, top_k=5)
    assert (judgement.verdict, judgement.reason) == ("ambiguous", "uncertain_fit")
    assert judgement.matches[0].evidence.bank == "none"


def test_two_equally_fitting_branches_are_ambiguous() -> None:
    entities = Entities(bank="华夏银行", city="绵阳市", district="江油市", branch="江油西山支行")
    twins = [
        _fake_candidate("304659715925", "华夏银行", "江油西山支行"),
        _fake_candidate("304659700000", "华夏银行", "江油西山支行"),
    ]
    judgement = judge(entities, Retrieval(twins), top_k=5)
    # However probable each is, a branch the evidence cannot tell from another is a choice, never a match.
    assert (judgement.verdict, judgement.reason) == ("ambiguous", "several_fit")
    assert judgement.matches[0].confidence == judgement.matches[1].confidence
    assert judge(entities, Retrieval(twins), top_k=1).reason == "several_fit"  # whatever top_k shows


def test_check_digits() -> None:
    assert is_valid_code(SEED_CODE) and is_valid_code("102100000021")
    assert (
        not is_valid_code("304659715926")
        and not is_valid_code("30465971592")
        and not is_valid_code("３０４６５９７１５９２５")
    )
    assert find_code("账号6222021234567890123") is None  # an account number is not a code
    found = find_code(f"收款行 {SEED_CODE}")
    assert found is not None and found.valid and not found.whole_query


@pytest.mark.parametrize(
    "label",
    ["账号：", "账号 ", "收款人账号", "帐号:", "卡号", "账户", "收款账户号：", "Account No.: ", "ACCT ", "A/C "],
)
def test_a_number_labelled_as_an_account_is_not_a_code(label: str) -> None:
    assert find_code(f"{label}{SEED_CODE}") is None
    assert find_code(f"{label}{SEED_CODE} 开户行联行号：102100000021") == CodeInText("102100000021", True, False)


@pytest.mark.parametrize(
    "text",
    [
        SEED_CODE,
        f"（{SEED_CODE}）",
        f"联行号：{SEED_CODE}",
        f"行号{SEED_CODE}",
        f"CNAPS {SEED_CODE}",
        f"支付行号 {SEED_CODE}",
    ],
)
def test_a_bare_bracketed_or_labelled_code_is_a_code(text: str) -> None:
    found = find_code(text)
    assert found is not None and (found.code, found.valid) == (SEED_CODE, True)


def test_licensed_institutions_cover_banks_beyond_the_directory() -> None:
    names = {i.name for i in licensed_institutions()}
    assert {"南京银行", "阜新银行", "国家开发银行", "阿克苏塔里木农村商业银行", CENTRAL_BANK} <= names
    assert len(names) > 3500
    assert english_form("Bank of Fuxin Co.,Ltd.") == "BANKOFFUXIN"


@pytest.mark.parametrize(
    ("keyword", "stripped"),
    [
        ("在江油西山那个支行的联行号", "江油西山支行"),
        ("江油西山支行的联行号是多少？", "江油西山支行"),
        ("徐州经济开发区支行的行号", "徐州经济开发区支行"),
        ("于都县支行", "于都县支行"),
        ("查干湖支行", "查干湖支行"),
        ("江油西山支行在哪里", "江油西山支行"),
        ("江油西山支行的营业网点", "江油西山支行"),
        ("江油西山支行开户", "江油西山支行"),  # what was done there, as 转账 is
    ],
)
def test_question_phrasing_is_stripped_and_names_are_not(keyword: str, stripped: str) -> None:
    assert strip_question(keyword) == stripped


async def test_branches_elsewhere_with_the_same_words_are_not_offered_as_a_choice(pipeline) -> None:
    # The sample has no ICBC 徐州经济开发区支行, only 经济开发区 branches in other cities: a person is shown
    # them, but not invited to choose among wrong answers.
    result = await ask(pipeline, "工行徐州经济开发区支行")
    assert (result.verdict, result.reason) == ("none", "no_branch_in_place")
    assert result.matches and all(m.bank == "中国工商银行" and m.evidence.city == "none" for m in result.matches)


# --- classes of real statement input (issue 25), through the real pipeline ---------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [("中国农业银行宿迁分行清算中心", "103309046003"), ("中国农业银行衡阳分行清算中心", "103554029990")],
)
async def test_a_generic_unit_is_matched_in_its_own_city(pipeline, text: str, code: str) -> None:
    result = await ask(pipeline, text)
    assert (result.verdict, result.matches[0].code) == ("match", code)


@pytest.mark.parametrize(
    "text",
    [
        "中国农业银行大连分行清算中心",  # ABC has 清算中心 in 宿迁 and 衡阳, none in 大连
        "兴业银行漳州分行清算中心",
    ],
)
async def test_a_place_written_that_contradicts_every_candidate_is_never_a_match(pipeline, text: str) -> None:
    result = await ask(pipeline, text)
    assert result.verdict != "match"
    assert result.verdict == "none" and result.reason in {
        "no_branch_in_place",
        "no_branch_fits",
        "bank_not_in_directory",
    }
    assert all(m.evidence.city == "none" for m in result.matches)


@pytest.mark.parametrize("text", ["农行成都高新区支行", "成都农行高新区支行"])  # the city before the bank, too
async def test_a_zone_name_shared_by_many_cities_finds_the_branch_in_the_city_written(pipeline, text: str) -> None:
    # 高新区 branches exist in 鞍山 and 南通 as well: never a match there. 成都's is spelt 成都高新技术产业开发区支行,
    # a zone named with its city's name: set aside whole, its keyword is the query's (not 高新技术产业开发区).
    result = await ask(pipeline, text)
    assert (result.verdict, result.matches[0].code) == ("match", "103651080880")
    assert result.matches[0].evidence.branch == "exact"


async def test_a_place_inferred_from_the_branch_name_is_not_a_contradiction(pipeline) -> None:
    # 西山 is also 昆明市西山区: the city is inferred from the keyword, not written, and the keyword agrees.
    result = await ask(pipeline, "华夏银行西山支行")
    assert result.entities.city == "昆明市" and result.matches[0].code == SEED_CODE
    assert result.reason != "no_branch_in_place" and result.matches[0].evidence.district == "exact"


async def test_a_bank_alone_names_no_branch(pipeline) -> None:
    result = await ask(pipeline, "中国工商银行")
    assert (result.verdict, result.reason, result.matches) == ("none", "no_branch_named", [])


async def test_a_bank_alone_is_its_own_record_where_the_directory_has_one(pipeline) -> None:
    # A village bank's head office is a record whose name is the bank's: a line naming only the bank names it.
    result = await ask(pipeline, "巴中中银富登村镇银行有限责任公司")
    assert result.verdict != "none" and [m.name for m in result.matches] == ["巴中中银富登村镇银行有限责任公司"]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("九江银行昌南支行", "313422042033"),  # 九江银行's home is 九江; this branch is in 景德镇
        ("中原银行许昌许继大道支行", "313503002013"),  # 中原 is also 郑州's 中原区: the bank's name writes no place
        ("新疆农村商业银行伊宁市伊犁河南岸新区支行", "402899300021"),  # 河南 inside 伊犁河南岸 is no province
    ],
)
async def test_a_place_inside_a_name_is_not_a_contradiction(pipeline, text: str, code: str) -> None:
    result = await ask(pipeline, text)
    assert result.reason != "no_branch_in_place" and result.matches[0].code == code


@pytest.mark.parametrize("verb", ["转账", "汇款", "付款", "打款"])
async def test_what_a_statement_line_says_was_done_is_not_part_of_the_branch(pipeline, verb: str) -> None:
    result = await ask(pipeline, f"华夏银行江油西山支行{verb}")
    assert result.entities.branch == "江油西山支行"
    assert (result.verdict, result.matches[0].code) == ("match", SEED_CODE)


@pytest.mark.parametrize(
    "text", ["中国邮政储蓄银行股份有限公司东方市支行（", "中国邮政储蓄银行股份有限公司东方市支行（不对"]
)
async def test_a_name_cut_inside_its_annotation_is_a_choice_never_none_nor_a_payee(pipeline, text: str) -> None:
    # Cut where exports cut, inside （不对外）: 东方市支行 and 东方市支行（不对外） are both the words written, and the
    # open bracket says more followed. Cut right at the bracket, every candidate was unfit before: none, nothing shown.
    result = await ask(pipeline, text)
    assert result.verdict == "ambiguous"
    assert {m.code for m in result.matches[:2]} == {"403641001111", "403641099055"}


@pytest.mark.parametrize(
    "row",
    [
        "2026-11-03\t转账\t成都市锦江区某某贸易有限公司\t6222021234567890\t华夏银行江油西山支行\t5,000.00",
        "对方户名:上海某某科技有限公司 对方开户行:华夏银行股份有限公司江油西山支行",
        "华夏银行江油西山支行 收款人 重庆市渝北区某某公司",
        "收款行:华夏银行江油西山支行收款人:成都某某公司",  # fields glued without a space
        "成都某某贸易有限公司华夏银行江油西山支行",
    ],
)
async def test_a_pasted_rows_payee_writes_no_place_of_the_branch(pipeline, row: str) -> None:
    # The payee's city (成都, 上海, 重庆) read as the branch's would veto the right branch in 绵阳; the amount
    # and the label would read as branch words.
    result = await ask(pipeline, row)
    assert (result.verdict, result.matches[0].code, result.entities.city) == ("match", SEED_CODE, "绵阳市")


async def test_a_record_not_open_for_business_is_never_a_payee(pipeline) -> None:
    by_name = await ask(pipeline, "中国农业银行大连市分行")  # 中国农业银行股份有限公司大连市分行（不对外办理业务）
    assert (by_name.verdict, by_name.reason, by_name.matches[0].code) == ("ambiguous", "not_payable", "103222099999")
    by_code = await ask(pipeline, "103222099999")
    assert (by_code.verdict, by_code.reason) == ("ambiguous", "not_payable")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("中国农业银行股份有限公司宿迁分行清", "103309046003"),  # cut at 36 GBK bytes, as exports cut the field
        ("华夏银行江油西", SEED_CODE),
        ("中国农业银行成都草", "103651074123"),
    ],
)
async def test_a_name_cut_short_that_one_branch_starts_with_is_that_branch(pipeline, text: str, code: str) -> None:
    result = await ask(pipeline, text)
    assert (result.verdict, result.matches[0].code, result.matches[0].evidence.branch) == ("match", code, "prefix")


async def test_a_name_cut_short_that_several_branches_start_with_is_a_choice(pipeline) -> None:
    result = await ask(pipeline, "中国农业银行成都东")  # 成都东光支行, 成都东郊支行, 成都东大街支行 …
    assert (result.verdict, result.reason) == ("ambiguous", "several_fit")
    prefixed = [m for m in result.matches if m.evidence.branch == "prefix"]
    assert len(prefixed) >= 2 and len({m.confidence for m in prefixed}) == 1


# --- issue 25's classes of real statement lines, through the real pipeline -----------------------------


async def test_words_after_a_name_are_set_aside_to_find_it_but_never_paid_on_their_own(pipeline) -> None:
    # Nothing starts with 江油西山支行那边打钱: the name as far as its level finds the branch, and a person
    # reads the rest (it could have been a name cut short: 分行十堰分).
    result = await ask(pipeline, "华夏银行江油西山支行那边打钱")
    assert (result.verdict, result.reason, result.matches[0].code) == ("ambiguous", "uncertain_fit", SEED_CODE)


async def test_a_unit_cut_short_after_a_level_is_still_read_as_cut(pipeline) -> None:
    # The whole keyword is tried first: 宿迁分行清 starts 宿迁分行清算中心, not 宿迁分行 with words after it.
    result = await ask(pipeline, "中国农业银行宿迁分行清")
    assert (result.verdict, result.matches[0].code) == ("match", "103309046003")


async def test_two_characters_cut_short_are_a_choice_among_the_names_they_start(pipeline) -> None:
    result = await ask(pipeline, "中国建设银行张家")  # 张家港…: too short a prefix to pay to
    assert (result.verdict, result.reason) == ("ambiguous", "several_fit")
    assert all(m.name.startswith("中国建设银行股份有限公司张家") for m in result.matches)


async def test_a_local_banks_short_name_writes_no_place_of_its_branch(pipeline) -> None:
    # 亳州药都农商银行 is 亳州药都农村商业银行 (its home 亳州 is the bank's name); its 大寺支行 is filed under 阜阳.
    result = await ask(pipeline, "亳州药都农商银行大寺支行")
    assert (result.verdict, result.matches[0].code) == ("match", "402372200396")


async def test_a_province_level_name_finds_the_branch_filed_in_the_capital(pipeline) -> None:
    result = await ask(pipeline, "工行湖南分行")  # 中国工商银行股份有限公司湖南省分行, filed under 长沙市
    assert (result.entities.province, result.entities.city) == ("湖南省", None)
    # Found, first, and never "no such branch" (how sure a places-only name is, is the verdict model's).
    assert result.verdict != "none" and result.matches[0].code == "102551099983"
    assert result.matches[0].evidence.city == "unstated"  # the capital is where it is filed, not what was written


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("农村商业银行城关支行", "314"),
        ("农商银行城关支行", "314"),
        ("农商行城关支行", "314"),
        ("农村信用合作联社城关信用社", "402"),
        ("农信社城关信用社", "402"),
    ],
)
async def test_a_local_bank_written_only_as_its_kind_is_a_choice_among_that_kinds_branches(
    pipeline, text: str, kind: str
) -> None:
    result = await ask(pipeline, text)
    assert (result.entities.bank, result.entities.bank_code) == (None, kind)
    assert (result.verdict, result.reason) == ("ambiguous", "bank_unknown")
    ending = {"314": ("农村商业银行", "农商银行"), "402": ("联社", "农村信用社")}[kind]
    assert all(m.bank.endswith(ending) for m in result.matches)  # banks of that kind, whatever their codes' class
    assert {m.evidence.branch for m in result.matches} == {"exact"}


async def test_a_district_only_the_banks_name_spells_says_nothing_against_a_branch(pipeline) -> None:
    # 宁波鄞州农村商业银行 is registered in 鄞州区, where most of its branches are; its 龙观支行 is filed elsewhere in
    # 宁波. The district read from the bank's name is kept, but does not disagree with that record.
    result = await ask(pipeline, "宁波鄞州农村商业银行股份有限公司龙观支行")
    assert (result.entities.city, result.entities.district) == ("宁波市", "鄞州区")
    assert (result.verdict, result.matches[0].code) == ("match", "402332018515")
    assert result.matches[0].evidence.district == "unstated"


async def test_a_bank_the_directory_spells_two_ways_finds_all_its_branches(pipeline) -> None:
    # 长治漳泽农商银行 is how the file spells 2 of 长治漳泽农村商业银行's rows: either way, every branch is found.
    result = await ask(pipeline, "长治漳泽农商银行老顶山支行")
    assert result.entities.bank == "长治漳泽农村商业银行"
    assert (result.verdict, result.matches[0].code) == ("match", "402164010034")
    result = await ask(pipeline, "长治漳泽农村商业银行潞阳门北路支行")
    assert (result.verdict, result.matches[0].code) == ("match", "402164010139")


async def test_a_kind_written_is_never_answered_with_a_bank_of_another_kind(pipeline) -> None:
    # The directory's only 西楚支行 in 宜昌 is 中国建设银行's: a 农商银行 is no 建设银行, so nothing written fits.
    result = await ask(pipeline, "农商银行宜昌西楚支行")
    assert (result.entities.bank_code, result.entities.city) == ("314", "宜昌市")
    assert (result.verdict, result.reason, result.matches) == ("none", "no_branch_fits", [])


@pytest.mark.parametrize(
    ("entities", "written", "other"),
    [
        # 湾里区 was merged into 新建区 in 2019; a branch named for 湾里 kept its name beside 新建支行.
        (
            Entities(bank="中国建设银行", bank_code="105", province="江西省", city="南昌市", district="新建区",
                     branch="南昌湾里支行"),
            "中国建设银行南昌湾里支行",
            Candidate("105421005409", "中国建设银行股份有限公司新建支行", "中国建设银行", "105", "江西省", "南昌市",
                      None, "新建支行", 2.0),
        ),
        # A city's branch is not its province's, though both are filed in 海口.
        (
            Entities(bank="中国农业发展银行", bank_code="203", province="海南省", city="海口市", branch="海口市分行"),
            "中国农业发展银行海口市分行",
            Candidate("203641095250", "中国农业发展银行海南省分行", "中国农业发展银行", "203", "海南省", "海口市", None,
                      "海南省分行", 2.0),
        ),
    ],
)  # fmt: skip
def test_names_of_places_alone_that_each_write_their_own_place_are_other_units(
    entities: Entities, written: str, other: Candidate
) -> None:
    judgement = judge(entities, Retrieval([other]), top_k=5, written=written)
    assert judgement.verdict != "match" and judgement.matches[0].evidence.branch == "partial"


@pytest.mark.parametrize(
    ("first", "second", "places", "other"),
    [
        ("南昌湾里支行", "南昌新建支行", ("南昌市", "新建区"), True),  # a former name against the current one
        ("海口市分行", "海南省分行", ("海口市", "海南省"), True),
        ("越秀支行", "大连越秀支行", ("广州市", "越秀区", "大连市"), False),  # a city left out is no evidence
        ("成都高新区支行", "成都高新技术产业开发区支行", ("成都市", "成都高新技术产业开发区"), False),  # its city
        ("浏阳支行", "浏阳市支行", ("长沙市", "浏阳市"), False),
    ],
)
def test_which_places_a_keyword_writes(first: str, second: str, places: tuple, other: bool) -> None:
    assert other_places(first, second, places) is other


def test_an_institutions_own_record_is_no_unit_a_keyword_names() -> None:
    # The bank's head-office record names no unit: it is no 支行 written (a 营业部 may be its own counter).
    entities = Entities(bank="宁波镇海农村商业银行", bank_code="402", city="宁波市", branch="蛟川支行")
    own = Candidate("402332057003", "宁波镇海农村商业银行股份有限公司", "宁波镇海农村商业银行", "402", "浙江省",
                    "宁波市", None, "", 2.0)  # fmt: skip
    judgement = judge(entities, Retrieval([own]), top_k=5, written="宁波镇海农村商业银行蛟川支行")
    assert (judgement.verdict, judgement.reason, judgement.matches) == ("none", "no_branch_fits", [])


def test_the_same_unit_named_for_another_place_is_never_a_payee() -> None:
    # 泗阳城中支行 lies in 宿迁市, but 宿迁城中支行 names its unit for 宿迁: another branch (or none).
    entities = Entities(bank="中国工商银行", bank_code="102", province="江苏省", city="宿迁市", branch="宿迁城中支行")
    other = Candidate("102309304019", "中国工商银行股份有限公司泗阳城中支行", "中国工商银行", "102", "江苏省",
                      "宿迁市", "泗阳县", "泗阳城中支行", 2.0)  # fmt: skip
    judgement = judge(entities, Retrieval([other]), top_k=5, written="中国工商银行宿迁城中支行")
    assert judgement.verdict != "match" and judgement.matches[0].evidence.branch == "partial"
    # 盐城大丰城南支行 spells its city and its own district: 盐城城南支行, which writes the city alone, is not it.
    entities = Entities(bank="中国工商银行", bank_code="102", province="江苏省", city="盐城市", branch="盐城城南支行")
    other = Candidate("102311669077", "中国工商银行股份有限公司盐城大丰城南支行", "中国工商银行", "102", "江苏省",
                      "盐城市", "大丰区", "盐城大丰城南支行", 2.0)  # fmt: skip
    judgement = judge(entities, Retrieval([other]), top_k=5, written="中国工商银行盐城城南支行")
    assert judgement.verdict != "match" and judgement.matches[0].evidence.branch == "partial"


@pytest.mark.parametrize(
    ("text", "elsewhere"),
    [
        ("中国建设银行汉中支行", "105799200014"),  # 汉中南郑区支行: a district's branch of 汉中
        ("中原银行新乡支行", "313498174302"),  # 新乡县支行: 新乡 was read as the city
        ("中国工商银行南阳支行", "102306600161"),  # 启东南阳支行: a town's, in 南通
    ],
)
async def test_a_unit_named_by_its_place_alone_is_not_a_branch_that_names_another_place(
    pipeline, text: str, elsewhere: str
) -> None:
    result = await ask(pipeline, text)
    assert result.verdict == "ambiguous"
    assert {m.code: m.evidence.branch for m in result.matches}.get(elsewhere) in {"partial", "none"}


async def test_a_district_name_that_is_also_a_street_is_a_choice_among_its_branches(pipeline) -> None:
    # 中山 is 大连's 中山区 and a street in many cities: 大连中山支行 is no surer than 沈阳中山支行.
    result = await ask(pipeline, "中国农业银行中山支行")
    assert (result.verdict, result.reason) == ("ambiguous", "several_fit")
    assert {"103222009201", "103221019607"} <= {m.code for m in result.matches}


def test_a_bank_and_place_alone_is_paid_only_to_the_branch_that_was_counted_there() -> None:
    # Fakes of retrieval: the bank has one branch in 天水市 by its records, but the candidate found is filed in
    # 宁波市 (its name spells 天水): it is not the one counted, so it is a choice, not a payee.
    entities = Entities(bank="宁波银行", bank_code="313", province="甘肃省", city="天水市", branch="天水")
    filed_elsewhere = Candidate("313332083185", "宁波银行股份有限公司天水支行", "宁波银行", "313", "浙江省", "宁波市",
                                None, "天水支行", 2.0)  # fmt: skip
    there = Candidate("313332083186", "宁波银行股份有限公司天水支行", "宁波银行", "313", "甘肃省", "天水市", None,
                      "天水支行", 2.0)  # fmt: skip
    assert judge(entities, Retrieval([filed_elsewhere], branches_there=1), 5, written="宁波银行天水").verdict != "match"
    assert judge(entities, Retrieval([there], branches_there=1), 5, written="宁波银行天水").verdict == "match"
    assert judge(entities, Retrieval([there], branches_there=2), 5, written="宁波银行天水").verdict != "match"


@pytest.mark.parametrize("text", ["中国银行（香港）有限公司九龙支行", "中国银行(香港)有限公司", "交通银行香港分行"])
async def test_a_hong_kong_entity_is_never_a_mainland_branch(pipeline, text: str) -> None:
    # The bracketed region names the entity (not an annotation dropped with its brackets): its place is read,
    # and no branch in the directory is there.
    result = await ask(pipeline, text)
    assert (result.verdict, result.entities.city) == ("none", "香港")


async def test_a_similar_name_elsewhere_never_hides_the_branch_in_the_place_written(pipeline) -> None:
    # 珠海江湾支行 is the name most like 上海江湾支行; the directory spells the Shanghai one 上海市江湾支行.
    result = await ask(pipeline, "中国银行上海江湾支行")
    assert (result.verdict, result.matches[0].code) == ("match", "104290057015")
