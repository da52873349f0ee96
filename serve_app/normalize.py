"""Text normalization shared by queries and the directory's ``search_name`` column.

Both sides of a match go through ``normalize`` so that trigram similarity compares like with like.
The function is total (never raises), pure, and linear in the input length.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

#: Bumped whenever normalization changes output: cached results and ``search_name`` depend on it.
NORMALIZER_VERSION = 2

#: Company forms that official names carry and people leave out. Longest first.
COMPANY_FORMS = ("股份有限公司", "有限责任公司", "股份公司", "有限公司")

#: English boilerplate printed on statements before the Chinese name: the central bank's name. Never a
#: commercial bank's English name (AGRICULTURAL BANK OF CHINA LIMITED names the bank).
_ENGLISH_BOILERPLATE = re.compile(
    r"(THE\s+)?PEOPLE'?S\s+BANK\s+OF\s+CHINA",
    re.IGNORECASE,
)
#: Annotations in brackets that are not part of the name: （不对外营业）, (原XX支行).
_BRACKETED = re.compile(r"[(\[{【〔][^)\]}】〕]{0,30}[)\]}】〕]")
_WHITESPACE = re.compile(r"\s+")
_CONTROL = {cat for cat in ("Cc", "Cf", "Cs", "Co", "Cn")}


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def _drop_controls(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) not in _CONTROL or ch in "\t\n ")


def simplified(text: str) -> str:
    """``text`` in simplified characters and NFKC forms (full-width → half-width), nothing else changed."""
    return _t2s().convert(unicodedata.normalize("NFKC", text))


def normalize(text: str) -> str:
    """Canonical form of a branch name or query.

    NFKC (full-width → half-width, compatibility forms), control characters dropped, traditional →
    simplified Chinese (OpenCC ``t2s``), English boilerplate and bracketed annotations removed, all
    whitespace removed (OCR splits words: "股份有 限公司"), company forms removed, Latin upper-cased.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _drop_controls(text)
    text = _t2s().convert(text)
    text = _ENGLISH_BOILERPLATE.sub(" ", text)
    text = _BRACKETED.sub("", text)
    text = _WHITESPACE.sub("", text)
    for form in COMPANY_FORMS:
        text = text.replace(form, "")
    return text.upper()
