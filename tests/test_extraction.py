"""The rules extractor on real, messy branch names; its vocabulary; and its behaviour on any input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.extraction.levels import name_before_tail
from serve_app.extraction.rules import RulesExtractor
from serve_app.extraction.vocabulary import Vocabulary
from serve_app.normalize import normalize
from serve_app.schemas import Extraction


@pytest.fixture(scope="module")
def extractor() -> RulesExtractor:
    return RulesExtractor(Vocabulary.from_records(read_cnaps(demo_cnaps_path())))


def read(extractor: RulesExtractor, text: str) -> dict:
    return extractor.extract(normalize(text)).entities.model_dump(exclude_none=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("华夏银行江油西山支行",
         {"bank": "华夏银行", "bank_code": "304", "province": "四川省", "city": "绵阳市", "district": "江油市",
          "branch": "江油西山支行"}),
        ("THE PEOPLE'S BANK OF CHINA 中国光大银行股份有 限公司北京金融街丰盛支行",
         {"bank": "中国光大银行", "bank_code": "303", "province": "北京市", "city": "北京市",
          "branch": "北京金融街丰盛支行"}),
        ("招商银行股份有限公 司长沙分行浏阳支行",
         {"bank": "招商银行", "bank_code": "308", "province": "湖南省", "city": "长沙市", "district": "浏阳市",
          "branch": "长沙分行浏阳支行"}),
        ("工行徐州经济开发区支行",
         {"bank": "中国工商银行", "bank_code": "102", "province": "江苏省", "city": "徐州市",
          "branch": "徐州经济开发区支行"}),
        # 北京银行 is the bank; the place is 成都 (a generic address parser answers Beijing).
        ("北京银行成都分行",
         {"bank": "北京银行", "bank_code": "313", "province": "四川省", "city": "成都市", "branch": "成都分行"}),
        # 正阳门 is a Beijing landmark, not 正阳县 in Henan: no place rather than a wrong one.
        ("工行正阳门支行", {"bank": "中国工商银行", "bank_code": "102", "branch": "正阳门支行"}),
        # A local bank's name says where it is when nothing else does.
        ("深圳农商银行", {"bank": "深圳农村商业银行", "bank_code": "402", "province": "广东省", "city": "深圳市"}),
        # Traditional characters and full-width brackets.
        ("華夏銀行（不对外营业）江油西山支行",
         {"bank": "华夏银行", "bank_code": "304", "province": "四川省", "city": "绵阳市", "district": "江油市",
          "branch": "江油西山支行"}),
        # 通州: Beijing or Nantong — left out rather than guessed.
        ("农业银行通州支行", {"bank": "中国农业银行", "bank_code": "103", "branch": "通州支行"}),
        # A street named after a city is a street.
        ("建行中山路支行", {"bank": "中国建设银行", "bank_code": "105", "branch": "中山路支行"}),
        # …also with a direction, after the city it runs in (a district of that city stays a district).
        ("平安银行青岛香港中路支行",
         {"bank": "平安银行", "bank_code": "307", "province": "山东省", "city": "青岛市",
          "branch": "青岛香港中路支行"}),
        ("民生银行南京北京西路支行",
         {"bank": "中国民生银行", "bank_code": "305", "province": "江苏省", "city": "南京市",
          "branch": "南京北京西路支行"}),
        ("建行沈阳和平北大街支行",
         {"bank": "中国建设银行", "bank_code": "105", "province": "辽宁省", "city": "沈阳市", "district": "和平区",
          "branch": "沈阳和平北大街支行"}),
        # A city's name before a bridge's quarter (桥西, 桥头) is the city; before a bridge (柳林桥), a landmark.
        ("中国工商银行锦州桥西支行",
         {"bank": "中国工商银行", "bank_code": "102", "province": "辽宁省", "city": "锦州市",
          "branch": "锦州桥西支行"}),
        ("中国农业银行本溪桥头支行",
         {"bank": "中国农业银行", "bank_code": "103", "province": "辽宁省", "city": "本溪市",
          "branch": "本溪桥头支行"}),
        ("农行柳林桥支行", {"bank": "中国农业银行", "bank_code": "103", "branch": "柳林桥支行"}),
        # Registered English names: the whole name is the bank, its CO.,LTD. not the branch's.
        ("AGRICULTURAL BANK OF CHINA LIMITED 通州支行",
         {"bank": "中国农业银行", "bank_code": "103", "branch": "通州支行"}),
        ("RECEIVER: HUA XIA BANK CO.,Limited 江油西山支行",
         {"bank": "华夏银行", "bank_code": "304", "province": "四川省", "city": "绵阳市", "district": "江油市",
          "branch": "江油西山支行"}),
        # The bank in English and again in Chinese is one mention.
        ("BANK OF CHINA LIMITED 中国银行通州支行", {"bank": "中国银行", "bank_code": "104", "branch": "通州支行"}),
        # The branch first, the bank after it in English: the branch is the words before the bank.
        ("常熟市莫城支行 (Postal Savings Bank Of China Co., Ltd.)",
         {"bank": "中国邮政储蓄银行", "bank_code": "403", "province": "江苏省", "city": "苏州市", "district": "常熟市",
          "branch": "常熟市莫城支行"}),
        # A label before the bank is no branch.
        ("开户行: HUA XIA BANK CO.,Limited", {"bank": "华夏银行", "bank_code": "304"}),
        # An English rendering after the Chinese name, and punctuation between bank and branch, are no branch words.
        ("华夏银行江油西山支行 HUA XIA BANK JIANGYOU XISHAN SUB-BRANCH",
         {"bank": "华夏银行", "bank_code": "304", "province": "四川省", "city": "绵阳市", "district": "江油市",
          "branch": "江油西山支行"}),
        ("华夏银行—江油西山支行",
         {"bank": "华夏银行", "bank_code": "304", "province": "四川省", "city": "绵阳市", "district": "江油市",
          "branch": "江油西山支行"}),
    ],
)  # fmt: skip
def test_reads_real_inputs(extractor: RulesExtractor, text: str, expected: dict) -> None:
    assert read(extractor, text) == expected


def test_a_banks_name_inside_another_mention_of_the_bank_read_is_no_second_bank(extractor: RulesExtractor) -> None:
    # BANK OF CHINA (中国银行) is the end of POSTAL SAVINGS BANK OF CHINA: one bank named twice, not two banks.
    extraction = extractor.extract(normalize("中国邮政储蓄银行常熟市莫城支行(POSTAL SAVINGS BANK OF CHINA CO., LTD.)"))
    assert (extraction.entities.bank, extraction.other_bank) == ("中国邮政储蓄银行", None)
    assert extraction.entities.branch == "常熟市莫城支行"
    # A second bank written on its own still is one.
    assert extractor.extract(normalize("华夏银行江油西山支行 中国工商银行")).other_bank == "中国工商银行"


def test_level_and_confidence(extractor: RulesExtractor) -> None:
    full = extractor.extract(normalize("中国农业银行萧县支行营业部"))
    assert full.level == "营业部"
    assert full.entities.district == "萧县"
    assert full.confidence == 1.0
    partial = extractor.extract(normalize("农业银行通州支行"))
    assert partial.confidence < full.confidence
    assert extractor.extract("").confidence == 0.0


def test_local_bank_is_not_placed_where_it_has_no_branches(extractor: RulesExtractor) -> None:
    entities = read(extractor, "山东寿光农商银行广陵分理处")
    assert entities["bank"] == "山东寿光农村商业银行"
    assert entities.get("city") != "扬州市"


@pytest.mark.parametrize(
    ("text", "city"),
    [
        ("江苏泗阳农村商业银行股份有限公司桃源支行", "宿迁市"),  # 桃源 is 常德's county elsewhere: its name's 泗阳 says
        ("湖南衡南农村商业银行股份有限公司松江支行", "衡阳市"),  # 松江 is a town of 衡南 here, not Shanghai's district
        ("陕西秦农农村商业银行股份有限公司向阳路支行", "西安市"),  # no place in its name: all its branches are in 西安
        ("江苏民丰农村商业银行股份有限公司丁嘴支行", "宿迁市"),
    ],
)
def test_a_rural_bank_reads_its_home_city_when_the_branch_words_do_not(
    extractor: RulesExtractor, text: str, city: str
) -> None:
    entities = read(extractor, text)
    assert entities.get("city") == city
    assert "district" not in entities  # a district in a bank's name is where it is registered, not the branch


def test_a_city_bank_is_not_placed_at_its_home_when_its_branch_words_name_a_place(extractor: RulesExtractor) -> None:
    # City banks branch out (九江银行 has branches in 南昌): the home is read only when nothing else is written.
    assert read(extractor, "九江银行南昌分行")["city"] == "南昌市"
    assert read(extractor, "九江银行股份有限公司")["city"] == "九江市"


@pytest.mark.parametrize(
    ("text", "bank"),
    [
        ("常熟银行虞山支行", "江苏常熟农村商业银行"),  # a listed rural bank by its stock name
        ("张家港行杨舍支行", "江苏张家港农村商业银行"),
        ("渝农商行渝中支行", "重庆农村商业银行"),
        ("微众银行", "深圳前海微众银行"),  # a private bank without its place
        ("邮政银行江油支行", "中国邮政储蓄银行"),  # as people say it
        ("中国邮政江油支行", "中国邮政储蓄银行"),
        ("国开行四川省分行", "国家开发银行"),
        ("进出口银行四川省分行", "中国进出口银行"),
        ("深发展北京分行", "平安银行"),  # a former name still on old cheques
    ],
)
def test_banks_are_read_by_the_short_names_they_trade_under(extractor: RulesExtractor, text: str, bank: str) -> None:
    assert read(extractor, text)["bank"] == bank


def test_vocabulary_surface_forms(extractor: RulesExtractor) -> None:
    forms = extractor.vocabulary.surface_forms
    assert forms["工行"] == "中国工商银行"
    assert forms["深圳农商银行"] == "深圳农村商业银行"
    assert forms["成都农村商业银行"] == "成都农商银行"  # the directory's name is the short form
    # Every bank is named by its own name, but a "bank" named as a kind (records filed under 农村信用社):
    # those words are read as the kind.
    assert all(forms[name] == name for name in extractor.vocabulary.banks if name != "农村信用社")
    assert "农村信用社" not in forms
    assert "农村商业银行" not in forms  # a type of bank, not a bank


_ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8", categories=None), max_size=2_000)
_BANKISH = st.lists(
    st.sampled_from(
        ["华夏", "银行", "工行", "支行", "北京", "（", "）", "股份有限公司", " ", "\x00", "\u200b", "營業部"]
    ),
    max_size=400,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(_ANY_TEXT, _BANKISH))
def test_normalize_and_extract_never_raise(extractor: RulesExtractor, text: str) -> None:
    normalized = normalize(text)
    assert isinstance(normalized, str)
    assert len(normalized) <= len(text) * 3  # NFKC may expand a few ligatures, never unboundedly
    extraction = extractor.extract(normalized)
    assert isinstance(extraction, Extraction)
    assert extractor.extract(text).extractor_version == extraction.extractor_version


@settings(max_examples=5, deadline=timedelta(seconds=60))  # does not hang; linear time is the point
@given(unit=st.sampled_from(["华夏银行江油西山支行", "\x00", "（" * 3, "銀行 ", "a" * 7]))
def test_very_long_input_stays_bounded(extractor: RulesExtractor, unit: str) -> None:
    text = unit * (100_000 // len(unit))
    extraction = extractor.extract(normalize(text))
    assert isinstance(extraction, Extraction)


@pytest.mark.parametrize(
    ("keyword", "name"),
    [
        ("江油西山支行那边", "江油西山支行"),  # words after a level that end no name
        ("宿迁分行营业", "宿迁分行"),  # maybe a name cut short: callers try the whole keyword first
        ("江油西山支行", None),  # a whole name
        ("江油西山", None),  # no level inside
        ("东方市支行(不对", "东方市支行"),  # a name cut inside its annotation
        ("东方市支行(不对外营业部", "东方市支行"),  # whatever the bracket holds
    ],
)
def test_the_name_before_words_that_end_none(keyword: str, name: str | None) -> None:
    assert name_before_tail(keyword) == name
