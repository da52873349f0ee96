"""Every licensed banking institution in China, from the regulator's list, independent of the branch directory.

``data/nfra_institutions.csv`` is the NFRA's 银行业金融机构法人名单 (as of 2025-06-30; see
``NFRA_SOURCE.md``). A statement can name any of these banks whether or not the loaded directory holds a
branch of it, so the extractor's bank vocabulary is built from this list plus the directory: a bank that
is recognised but absent from the directory is a clear ``bank_not_in_directory``, not a guess at another
bank's branch. Non-bank institutions (finance, trust, leasing companies …) are left out.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from serve_app.directory.banks import CATEGORY_NAMES, parse_institution
from serve_app.normalize import normalize

#: NFRA institution types that are banks or credit cooperatives (those CNAPS gives branch codes).
BANK_TYPES = frozenset(
    {
        "开发性金融机构", "政策性银行", "国有大型商业银行", "股份制商业银行", "城市商业银行", "民营银行",
        "外资法人银行", "住房储蓄银行", "直销银行", "农村商业银行", "农村合作银行", "农村信用社",
        "农村资金互助社", "村镇银行",
    }
)  # fmt: skip
#: CNAPS bank class by NFRA type, for the classes whose members share one code (national banks have their
#: own class, looked up by name in ``CATEGORY_NAMES``; other types get none rather than a guess).
_CLASS_BY_TYPE = {
    "城市商业银行": "313",
    "农村商业银行": "314",
    "农村合作银行": "317",
    "村镇银行": "320",
    "农村信用社": "402",
}
_CLASS_BY_NAME = {name: code for code, name in CATEGORY_NAMES.items()}
#: The central bank is not a licensed institution, but statements name it as a counterparty.
CENTRAL_BANK = "中国人民银行"
#: English company forms and punctuation dropped from registered English names before matching.
_ENGLISH_NOISE = re.compile(r"[^A-Z0-9]")
_ENGLISH_SUFFIXES = ("COMPANYLIMITED", "CORPORATIONLIMITED", "COLTD", "CORPLTD", "LIMITED", "LTD", "CORPORATION",
                     "CORP", "COMPANY", "CO", "INC")  # fmt: skip
MIN_ENGLISH_FORM = 10  # shorter English forms (BOC, ABC) are curated aliases, not derived ones


@dataclass(frozen=True)
class Institution:
    name: str  # canonical: normalized, company form dropped, as the directory's bank_name spells it
    kind: str  # the NFRA type, e.g. 城市商业银行
    category_code: str | None  # CNAPS bank class when it follows from the name or type
    english: str | None  # the registered English name as a matching form (upper case, letters/digits only)


def canonical_bank_name(official: str) -> str:
    """The institution's name as branch names spell it: 阜新银行股份有限公司 → 阜新银行."""
    text = normalize(official)
    return parse_institution(text) or text


def english_form(name_en: str) -> str | None:
    """A registered English name as a matching form (BANK OF FUXIN CO.,LTD. → BANKOFFUXIN), or None."""
    form = _ENGLISH_NOISE.sub("", name_en.upper())
    stripped = True
    while stripped:
        stripped = False
        for suffix in _ENGLISH_SUFFIXES:
            if form.endswith(suffix) and len(form) > len(suffix):
                form, stripped = form[: -len(suffix)], True
    return form if len(form) >= MIN_ENGLISH_FORM else None


def parse_institutions(text: str) -> list[Institution]:
    """Banking institutions of an NFRA list (``seq,name,name_en,code,type,regulator``), central bank added."""
    institutions = {CENTRAL_BANK: Institution(CENTRAL_BANK, "中央银行", "001", None)}
    for row in csv.DictReader(io.StringIO(text)):
        if row["type"] not in BANK_TYPES:
            continue
        name = canonical_bank_name(row["name"])
        category = _CLASS_BY_NAME.get(name) or _CLASS_BY_TYPE.get(row["type"])
        english = english_form(row["name_en"] or "")
        institutions.setdefault(name, Institution(name, row["type"], category, english))
    return list(institutions.values())


@cache
def licensed_institutions() -> tuple[Institution, ...]:
    """The shipped NFRA list, parsed once per process."""
    text = (resources.files("serve_app") / "data" / "nfra_institutions.csv").read_text(encoding="utf-8")
    return tuple(parse_institutions(text))


@cache
def registered_english_names() -> dict[str, str]:
    """Canonical bank name → its registered English name as written (Bank of Fuxin Co.,Ltd.)."""
    text = (resources.files("serve_app") / "data" / "nfra_institutions.csv").read_text(encoding="utf-8")
    names: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(text)):
        english = (row["name_en"] or "").strip()
        if row["type"] in BANK_TYPES and english.isascii() and any(c.isalpha() for c in english):  # not "无"
            names.setdefault(canonical_bank_name(row["name"]), english)
    return names
