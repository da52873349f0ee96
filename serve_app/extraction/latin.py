"""English around a Chinese bank name: what of it is no part of the branch keyword.

Statements print banks' English names beside the Chinese ones — before the branch words (HUA XIA BANK CO.,
LTD. 江油西山支行), after them (…莫城支行(POSTAL SAVINGS BANK OF CHINA …)), or as a rendering of the whole
name after it (…江油西山支行 HUA XIA BANK JIANGYOU XISHAN SUB-BRANCH). Texts here are normalized (upper-cased,
no whitespace).
"""

from __future__ import annotations

import re

from serve_app.extraction.levels import is_whole_name

#: Latin letters and punctuation between an English bank name and the Chinese branch words: the rest of
#: the registered name (CO.,LTD., LIMITED) or a separator.
_LATIN_RUN = r"[A-Z.,&/\-:;'()]"
_LATIN_BEFORE_CHINESE = re.compile(rf"^{_LATIN_RUN}+(?=[\u4e00-\u9fff])")
_LATIN_ONLY = re.compile(rf"{_LATIN_RUN}*")
_LATIN_AT_END = re.compile(rf"{_LATIN_RUN}+$")
#: Latin letters (and digits among them) that end a keyword, in brackets or not.
_LATIN_TAIL = re.compile(r"\(?[A-Z0-9]*[A-Z][A-Z0-9]*\)?$")


def without_latin_before_chinese(text: str) -> str:
    """``text`` without the Latin run that starts it before Chinese words (CO.,LTD.江油西山支行 → 江油西山支行)."""
    return _LATIN_BEFORE_CHINESE.sub("", text)


def is_latin_only(text: str) -> bool:
    """Whether ``text`` is Latin letters and punctuation only (what may lie between two mentions of a bank)."""
    return _LATIN_ONLY.fullmatch(text) is not None


def without_latin_at_end(text: str) -> str:
    """``text`` without the Latin run that ends it: 常熟市莫城支行(POSTAL…LTD.) → 常熟市莫城支行."""
    return _LATIN_AT_END.sub("", text)


def without_english_rendering(keyword: str) -> str:
    """The keyword without the English rendering printed after a Chinese name (江油西山支行HUAXIABANKJIANGYOU
    XISHANSUBBRANCH, as bilingual statements print it): Latin after a whole name says nothing the name did not."""
    tail = _LATIN_TAIL.search(keyword)
    if tail is None or not tail.start():
        return keyword
    name = keyword[: tail.start()]
    return name if is_whole_name(name) else keyword
