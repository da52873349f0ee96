"""What brackets in a written bank name hold: words of the name, or an annotation.

Normalization drops what brackets hold (``serve_app.normalize``): the directory's own names carry annotations
so — （不对外办理业务）, （原XX支行）, （清算中心） — and its names are read without them. People's texts also
bracket words that *are* the name, and dropping those loses the answer. ``names_out_of_brackets`` keeps them
as words, before normalization:

- a region after a bank's name: 中国银行（香港）有限公司 is the Hong Kong bank, no branch of 中国银行 in the
  directory (kept, so the place is read and vetoes every mainland branch);
- a branch's name after its bank's, as forms print an 开户行: 华夏银行（江油西山支行）, 中国农业银行（鞍山分行运营
  管理部） — unless a name already ends before it (…西山支行（原江油支行）: a former name). A name ending in a
  level, or in a unit after a level: a unit alone in brackets is how the directory itself annotates
  (…村镇银行有限责任公司（清算中心））;
- a bank's name after its branch's, where nothing before names a bank: 江油西山支行（华夏银行）.
"""

from __future__ import annotations

import re

from serve_app.extraction.levels import LEVEL_AT_END, LEVEL_INSIDE, UNIT_AT_END, is_whole_name
from serve_app.normalize import simplified
from serve_app.query.fields import names_a_bank

_REGION = re.compile(r"[(（](香港|澳门|澳門|台湾|台灣)[)）]")
_IN_BRACKETS = re.compile(r"[(（]([^()（）]{1,30})[)）]")
#: Characters before a bracket that say whether a name ends there: more than any level or unit.
_BEFORE_BRACKET = 12
_SPACES = re.compile(r"\s+")  # OCR splits inside a bracket too (分理 处)


def names_out_of_brackets(text: str) -> str:
    """``text`` with the brackets around words of the name removed, and every other bracket left as it is."""
    text = _REGION.sub(r"\1", text)

    def unbracket(match: re.Match[str]) -> str:
        words, whole = _SPACES.sub("", simplified(match.group(1))), match.group(0)
        before = simplified(text[: match.start()]).strip()
        branch = _names_a_branch(words) and not is_whole_name(before[-_BEFORE_BRACKET:])
        bank = names_a_bank(words) and not names_a_bank(before)
        return match.group(1) if branch or bank else whole

    return _IN_BRACKETS.sub(unbracket, text)


def _names_a_branch(words: str) -> bool:
    """Whether bracketed words are a branch's name: they end in a level (江油西山支行), or in a unit after a level
    (鞍山分行运营管理部)."""
    if LEVEL_AT_END.search(words) is not None:
        return True
    return UNIT_AT_END.search(words) is not None and LEVEL_INSIDE.search(words) is not None
