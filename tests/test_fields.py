"""``bank_field``: the counterparty bank's part of a pasted statement row (pure; no services)."""

from __future__ import annotations

import pytest

from serve_app.query.fields import bank_field
from serve_app.query.inputs import read_text


@pytest.mark.parametrize(
    ("row", "field"),
    [
        # An Excel row pasted from an export: cells joined by tabs; the payee's name writes another city.
        (
            "2026-11-03\t转账\t成都市锦江区某某贸易有限公司\t6222021234567890\t华夏银行江油西山支行\t5,000.00",
            "华夏银行江油西山支行",
        ),
        # A PDF's line: single spaces, a label glued to each value.
        ("对方户名:上海某某科技有限公司 对方开户行:华夏银行江油西山支行", "对方开户行:华夏银行江油西山支行"),
        # Labels and a party after the name; dates and amounts with Chinese units; full-width separators.
        ("华夏银行江油西山支行 收款人 重庆市渝北区某某公司", "华夏银行江油西山支行"),
        ("2026年11月3日｜货款｜成都市第一人民医院｜工行徐州经济开发区支行｜￥5，000.00元", "工行徐州经济开发区支行"),
        # A party whose name holds a bank's short name is still a party: 平安 is no bank here.
        ("中国平安保险股份有限公司 招商银行深圳分行", "招商银行深圳分行"),
        ("成都某某有限公司/6222021234567890/华夏银行江油西山支行", "华夏银行江油西山支行"),
        # Fields glued together: a label and its colon starts one; digits right after a name's end are data.
        ("对方户名:上海某某科技有限公司对方开户行:华夏银行江油西山支行", "对方开户行:华夏银行江油西山支行"),
        ("收款行:华夏银行江油西山支行收款人:成都某某公司", "收款行:华夏银行江油西山支行"),
        ("成都某某贸易有限公司华夏银行江油西山支行", "华夏银行江油西山支行"),  # a company's name ends at its form
        ("华夏银行江油西山支行6222021234567890", "华夏银行江油西山支行"),
        # Traditional characters are read as simplified ones: 銀行 names a bank.
        ("成都市某某貿易有限公司 華夏銀行江油西山支行", "华夏银行江油西山支行"),
        # No bank named: the party and the data go, the rest stays.
        ("成都市锦江区某某贸易有限公司 江油西山支行 200.00", "江油西山支行"),
    ],
)
def test_a_rows_bank_field_is_kept_alone(row: str, field: str) -> None:
    assert bank_field(row) == field


@pytest.mark.parametrize(
    "text",
    [
        "华夏银行江油西山支行",
        "华夏银 行江油西山支行",  # a space where OCR split a name is no field's end
        "中国工 商银行股份有限公司 北京分行",
        "HUA XIA BANK CO.,LTD. 华夏银行江油西山支行",
        "成都 工商银行 高新支行",  # a place written first, in a search box
        "中国工商银行抚顺市分行章党支行6409分理处",  # digits inside a name, not after its end
        "工行股份有限公司 北京新华支行",  # a bank's short name with a company form is no party
        "华夏银行股份有限公司江油西山支行",  # nor is a bank's own company form before its branch
        "北京华联商厦股份有限公司",  # a party alone: nothing else to keep
        "6222021234567890",
    ],
)
def test_a_text_of_one_field_is_left_as_it_is(text: str) -> None:
    assert bank_field(text) == text


@pytest.mark.parametrize(
    ("row", "field"),
    [
        # Spreadsheet cells are fields as they are: a person's name after the bank's cell goes too.
        ("货款\t华夏银行江油西山支行\t张三", "华夏银行江油西山支行"),
        # A header pasted with its row: the labels go.
        (
            "交易日期\t摘要\t对方户名\t对方开户行\n2025-11-03\t货款\t甲公司\t华夏银行江油西山支行",
            "华夏银行江油西山支行",
        ),
        # The bank in one cell, its branch in the next.
        ("中国工商银行\t徐州经济开发区支行\t张三", "中国工商银行 徐州经济开发区支行"),
    ],
)
def test_a_spreadsheet_rows_bank_cell_is_kept_alone(row: str, field: str) -> None:
    assert bank_field(row) == field


def test_two_banks_named_both_stay_for_the_reader() -> None:
    row = "付款行 中国工商银行北京分行\t收款行 华夏银行江油西山支行\t100.00"
    assert bank_field(row) == "中国工商银行北京分行 华夏银行江油西山支行"


def test_the_words_read_from_a_row_are_its_bank_fields_and_the_code_it_carries() -> None:
    words, code = read_text("成都市某某贸易有限公司 华夏银行股份有限公司江油西山支行（304659715925） 5,000.00")
    assert (words, code.code if code else None) == ("华夏银行江油西山支行", "304659715925")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("华夏银行（江油西山支行）", "华夏银行江油西山支行"),  # a branch's name in brackets is the name
        ("華夏銀行(江油西山支行)", "华夏银行江油西山支行"),
        ("华夏银行股份有限公司江油西山支行（原江油支行）", "华夏银行江油西山支行"),  # after a name: an annotation
        ("中国工商银行北京分行（不对外营业）", "中国工商银行北京分行"),
        ("中国农业银行（鞍山分行运营管理部）", "中国农业银行鞍山分行运营管理部"),  # a unit after a level
        ("成都农商银行（新都大丰东街分理 处）", "成都农商银行新都大丰东街分理处"),  # an OCR split inside
        ("江油西山支行（华夏银行）", "江油西山支行华夏银行"),  # the bank after its branch
        ("贵阳花溪建设村镇银行有限责任公司（清算中心）", "贵阳花溪建设村镇银行"),  # a unit: as the directory reads it
    ],
)
def test_a_branch_written_in_brackets_is_read_and_an_annotation_is_not(text: str, words: str) -> None:
    assert read_text(text)[0] == words
