"""Branch levels and units: how the directory's branch names end (支行, 分理处, 清算中心, 营业部)."""

from __future__ import annotations

import re

#: Branch levels, longest first, matched at the end of the branch keyword.
LEVELS = ("分行营业部", "营业部", "营业室", "分理处", "储蓄所", "营业所", "信用分社", "信用社", "支行", "分行", "总行")
LEVEL_AT_END = re.compile("(" + "|".join(LEVELS) + ")$")
LEVEL_INSIDE = re.compile("(" + "|".join(LEVELS) + ")")
#: A bank's own units after a branch level in directory names (江西省分行票据中心, …支行运营管理部, …会计科):
#: a name that ends in one is whole, as one ending in a level is.
_UNITS = "中心|部|科|处|室|厅"
UNIT_AT_END = re.compile(f"({_UNITS})$")
#: Where a name can end inside a text: a level or a unit.
NAME_END_INSIDE = re.compile("|".join((*LEVELS, _UNITS)))
#: The shortest name before a level (西山支行): one character before it is part of a word, not a name.
_MIN_NAME = 2


def is_whole_name(keyword: str) -> bool:
    """Whether a branch keyword ends as directory names end: in a level (支行) or a unit (清算中心, 营业部)."""
    return LEVEL_AT_END.search(keyword) is not None or UNIT_AT_END.search(keyword) is not None


def name_before_tail(keyword: str | None) -> str | None:
    """The keyword as far as its last branch level, when words that end no name follow it (…支行对公, …支行
    那边 → …支行); None when it ends as a name does, or has no level inside. The rest may also be a name cut
    short (分行营业, 分行十堰分), so callers try the whole keyword first, and what the shortened one finds is
    a choice for a person, never a payee on its own. A whole name before an open bracket is cut there
    (``name_before_bracket``)."""
    if not keyword:
        return None
    if (before_bracket := name_before_bracket(keyword)) is not None:
        return before_bracket
    if is_whole_name(keyword):
        return None
    inside = [match for match in LEVEL_INSIDE.finditer(keyword) if match.start() >= _MIN_NAME]
    return keyword[: inside[-1].end()] if inside else None


def name_before_bracket(keyword: str | None) -> str | None:
    """The whole name before an open bracket in the keyword (…东方市支行(不对外 → …东方市支行: a name cut inside
    its annotation), if there is one. What a bracket holds is never a name's words: the directory's names are
    read without their annotations, so the keyword whole need not be searched."""
    before, bracket, _ = (keyword or "").partition("(")
    return before if bracket and is_whole_name(before) else None
