"""The counterparty bank's part of a pasted statement row.

Clerks paste whole rows of a statement — a PDF's line, or an Excel row, whose cells arrive joined by tabs:
``2026-11-03  转账  成都市锦江区某某贸易有限公司  6222…  华夏银行江油西山支行  5,000.00``. Only the bank's cell
says where the money goes. The payee's name writes a place that is the company's, not the branch's (read
as the branch's, 成都 vetoes the right branch in 绵阳), and an amount or a label after the name reads as
branch words. ``bank_field`` keeps the bank's part of such a row and leaves every other text as it is.

Cells pasted from a spreadsheet (tabs or lines between them) are fields as they are. A PDF's line is cut
at whitespace and at the separators statements print between cells (| , ; /); a single space is also where
OCR splits a name (华夏银 行江油西山支行), so its tokens are joined back into one field unless one of them is
plainly not part of a bank's name: data (a date, an amount, an account number), the name of a party (a
company, a hospital, a bureau: it ends in such a word and names no bank) or a column's label. Texts are read
in simplified characters (華夏銀行 names a bank as 华夏银行 does).
"""

from __future__ import annotations

import re

from serve_app.directory.banks import ALIASES
from serve_app.extraction.levels import NAME_END_INSIDE, is_whole_name
from serve_app.normalize import COMPANY_FORMS, normalize, simplified

#: Between a spreadsheet's cells, as a paste of a row (or of a header and a row) brings them.
_CELL_BREAK = re.compile(r"[\t\r\n]+")
#: Between cells, after NFKC (which makes ｜，；／ the ASCII |,;/): a comma inside an amount, or a slash inside
#: a date, only splits data.
_SEPARATORS = re.compile(r"[\s|,;/\\]+")
#: Words that name a bank in any text (the rest of a bank's official name, English included).
_BANK_WORD = r"银行|信用|联社|互助社|农商|农信|BANK"
#: …and the short names people write for banks (工行, 浦发), which name a bank only where no party is named.
_HAN = re.compile("[\u4e00-\u9fff]")
_HAN_ALIASES = sorted({alias for forms in ALIASES.values() for alias in forms if _HAN.search(alias)})
_HAN_ALIAS_SET = frozenset(_HAN_ALIASES)
_NAMES_BANK_STRONGLY = re.compile(_BANK_WORD, re.IGNORECASE)
_NAMES_BANK = re.compile("|".join((_BANK_WORD, *_HAN_ALIASES)), re.IGNORECASE)
#: How the names of parties end (the account holders of a statement): never how a branch's name ends.
_PARTY_END = re.compile(
    r"(公司|厂|集团|企业|商行|经营部|门市部|事务所|工作室|合作社|医院|诊所|学校|大学|学院|局|委员会|政府|协会|超市|店)"
    r"[)）]?[:：]?$"
)
#: Column labels of statement exports, alone in a cell or before a colon.
_LABELS = frozenset(
    "收款人 付款人 收款方 付款方 户名 账号 帐号 账户 卡号 金额 交易金额 摘要 用途 备注 附言 日期 交易日期 余额 币种 "
    "对方 对方户名 对方账号 对方开户行 开户行 开户银行 收款行 付款行 收款银行 付款银行 交易类型 流水号".split()
)
_LABEL_WITH_COLON = re.compile("(?:" + "|".join(sorted(_LABELS, key=len, reverse=True)) + ")[:：]")
#: An account number or a date glued to a name's end (…支行6222021234567890); not a numbered unit (…支行6409分理处).
_DIGITS_AFTER_NAME = re.compile(f"({NAME_END_INSIDE.pattern})(?=\\d{{8}})")
#: A company form glued to a bank's name after it (…贸易有限公司华夏银行…): a party's name ends there.
_AFTER_COMPANY_FORM = re.compile(
    "("
    + "|".join(f for f in COMPANY_FORMS if f != "股份公司")
    + f")(?=[^\\s)）:：]{{0,12}}?(?:{_NAMES_BANK.pattern}))",
    re.IGNORECASE,
)
#: Characters of dates and amounts written with Chinese units (2026年11月3日, 5000元).
_DATA_UNITS = re.compile("[年月日时分秒元万角]")
#: A company form, or the tail of one that OCR split off (限公司 of 有 限公司), at the end of a token.
_COMPANY_FORM_TAIL = re.compile(
    "("
    + "|".join(sorted({form[i:] for form in COMPANY_FORMS for i in range(len(form) - 1)}, key=len, reverse=True))
    + ")$"
)
_MIN_PARTY_NAME = 2
#: Characters of a field's end that its checks read: longer than any level, unit or bank word.
_TAIL = 12
_LETTERS = re.compile(r"[\u4e00-\u9fffA-Za-z]")
_DIGIT = re.compile(r"\d")


def bank_field(text: str) -> str:
    """The part of ``text`` that names the counterparty's bank, when ``text`` is a row of several fields.

    Data, parties and labels are left out wherever there is anything else; of the remaining fields, the
    one that names a bank is kept alone when exactly one does (two banks named stay for the reader to see
    both). ``text`` itself when nothing is left out. Pure, total and linear in the length of ``text``.

    Cells pasted from a spreadsheet (tabs or lines between them) are fields as they are: no OCR split a
    cell, so a cell that is no part of a bank's name goes whatever it holds (a person's name, 张三)."""
    cells = [cell for cell in _CELL_BREAK.split(text) if cell.strip()]
    if len(cells) > 1:
        return _bank_cell(text, cells)
    return _bank_words(text)


def names_a_bank(text: str) -> bool:
    """Whether ``text`` (simplified characters) has a word that names a bank: 银行, 信用社 …, or a short name (工行)."""
    return _NAMES_BANK.search(text) is not None


def _bank_cell(text: str, cells: list[str]) -> str:
    """The bank's cell of a spreadsheet row, read as one text (``_bank_words``); with the cell after it when
    it names the bank alone and that one is a branch's name (中国工商银行 | 徐州经济开发区支行)."""
    simple = [simplified(cell).strip() for cell in cells]
    names = [i for i, cell in enumerate(simple) if not (_ends_a_field(cell, None) or _is_party(cell))]
    banks = [i for i in names if names_a_bank(simple[i])]
    if len(banks) != 1:
        return _bank_words(" ".join(cells[i] for i in names)) if names else text
    (bank,) = banks
    branch = bank + 1  # the cell after a bank named alone, when it is a branch's name
    with_branch = (
        branch in names
        and not is_whole_name(normalize(simple[bank]))
        and is_whole_name(normalize(simple[branch]))
        and not names_a_bank(simple[branch])
    )
    return _bank_words(" ".join(cells[i] for i in ([bank, branch] if with_branch else [bank])))


def _bank_words(text: str) -> str:
    """``bank_field`` of a text whose fields are separated by spaces and separators, as a PDF's line is."""
    tokens = [token for token in _SEPARATORS.split(_unglued(simplified(text))) if token]
    if len(tokens) < 2:
        return text
    fields: list[_Field] = []
    field: _Field | None = None  # the field the next token may join; None after an end of field
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if _ends_a_field(token, following) or (_is_party(token) and _apart(field, token, following)):
            field = None
        elif field is None:
            field = _Field(token)
            fields.append(field)
        else:
            field.add(token)
    if not fields:
        return text
    banks = [field for field in fields if field.names_bank]
    kept = banks if len(banks) == 1 else fields
    if len(kept) == 1 and len(kept[0].tokens) == len(tokens):
        return text
    return " ".join(token for field in kept for token in field.tokens)


class _Field:
    """Tokens read as one field, with what the checks ask of it, kept up to date token by token."""

    def __init__(self, first: str):
        self.tokens: list[str] = []
        self.tail = ""  # the last characters, enough to see how it ends or a bank word split by a space
        self.names_bank = False
        self.add(first)

    def add(self, token: str) -> None:
        self.tokens.append(token)
        self.names_bank = self.names_bank or _NAMES_BANK.search(self.tail + token) is not None
        self.tail = (self.tail + token)[-_TAIL:]

    def names_bank_with(self, token: str) -> bool:
        return self.names_bank or _NAMES_BANK.search(self.tail + token) is not None


def _unglued(text: str) -> str:
    """``text`` with a space where a field may start glued to the one before it: a label and its colon
    (…支行收款人:…), an account number right after a name's end (…支行6222…), words after a company form
    (成都某某贸易有限公司华夏银行…; a bank's own 华夏银行股份有限公司 江油西山支行 is joined back)."""
    text = _LABEL_WITH_COLON.sub(r" \g<0>", text)
    return _AFTER_COMPANY_FORM.sub(r"\1 ", _DIGITS_AFTER_NAME.sub(r"\1 ", text))


def _is_data(token: str) -> bool:
    """Digits with punctuation and units only: a date, an amount, an account number. Not a bracket alone,
    which is what ``split_code`` leaves of a code written in one (支行（ ）), and normalization removes."""
    return _DIGIT.search(token) is not None and _LETTERS.search(_DATA_UNITS.sub("", token)) is None


def _is_party(token: str) -> bool:
    """Whether ``token`` is shaped like a party's name: it ends as theirs end and names no bank, and is more
    than a company form or the tail of one that OCR split off a bank's name (股份有 限公司). Words of a branch's
    name end so too (北京长辛店支行, 重庆大学城支行): callers take a token for a party only where it stands
    apart, between ends of fields."""
    if _PARTY_END.search(token) is None or _NAMES_BANK_STRONGLY.search(token) is not None:
        return False
    name = _COMPANY_FORM_TAIL.sub("", token)
    return len(_HAN.findall(name)) >= _MIN_PARTY_NAME and name not in _HAN_ALIAS_SET  # 工行股份有限公司 is a bank


def _apart(field: _Field | None, token: str, following: str | None) -> bool:
    """Whether ``token`` stands apart from a bank's name, between ``field`` (the field it would join; None
    after an end of field) and the token ``following`` it. Before it: nothing, an end of field, a whole name
    (…支行) or words that name no bank, even with it (货款, not 商业银 of 商业银 行…); after it: nothing, an end of
    field, a bank, or a whole name. A piece OCR split off a name (…大连 瓦房店 老虎屯支行) has its bank before it
    and the rest of the name after it."""
    apart_before = field is None or is_whole_name(field.tail) or not field.names_bank_with(token)
    apart_after = (
        following is None
        or _ends_a_field(following, None)
        or _NAMES_BANK.search(following) is not None
        or is_whole_name(following)
    )
    return apart_before and apart_after


def _ends_a_field(token: str, following: str | None) -> bool:
    """A label, or data — unless a name's end follows the digits (6409 分理处: a numbered unit, split by OCR)."""
    if _is_label(token):
        return True
    return _is_data(token) and not (following and NAME_END_INSIDE.match(following))


def _is_label(token: str) -> bool:
    return token.rstrip(":：") in _LABELS
