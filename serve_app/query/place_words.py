"""Place names in what a query writes: where they are written, in which forms, and which places they mean.

``written_in`` tells whether a text spells a place in any of its forms (成都市 → 成都), ``outside_bank`` what of
a query can write the branch's place (not the bank's own name: 九江银行 names its home), ``other_places``
whether two keywords each write a place the other does not.

Two keywords made only of place names and a level (南昌湾里支行, 南昌新建支行) are not the same unit when each
writes a place the other does not. Set aside as place names, both leave nothing, and "nothing = nothing"
would make any two of them exact; so they are compared here by what they write: each place name read as the
regions it names and whether it is a *former* name (湾里, merged into 新建区 in 2019: a branch named for it
kept its name beside 新建支行), and a place written inside a more specific one counts once (成都 of
成都高新区 is the zone's city, as 成都高新技术产业开发区 writes it too).
"""

from __future__ import annotations

from functools import lru_cache

from serve_app.directory.gazetteer import Gazetteer, Region, stem
from serve_app.schemas import Entities

#: (region key, written by a former name)
Written = tuple[tuple[str, str], bool]


def other_places(first: str, second: str, places: tuple[str | None, ...]) -> bool:
    """Whether two keywords each write a place the other does not (南昌湾里, 南昌新建; 海口市, 海南省), reading
    only the place names in ``places``. One that writes fewer places is no such evidence (越秀 of 大连越秀:
    a name with its city left out)."""
    forms = _forms(tuple(sorted({place for place in places if place})))
    mine, theirs = _written(first, forms), _written(second, forms)
    return bool(mine - theirs) and bool(theirs - mine)


@lru_cache(maxsize=4096)
def _forms(places: tuple[str, ...]) -> tuple[tuple[str, frozenset[Written]], ...]:
    """Every form of the places' names, longest first, with what it writes (a form may be two places': 衡阳
    of 衡阳市 and of 衡阳县)."""
    meanings: dict[str, set[Written]] = {}
    for place in places:
        for region in Gazetteer.default().named(place):
            current = {region.name, region.short, stem(region.name)}
            for form in region.names():
                if len(form) >= 2:
                    meanings.setdefault(form, set()).add((region.key, form not in current))
    return tuple(sorted(((form, frozenset(m)) for form, m in meanings.items()), key=lambda f: -len(f[0])))


def _written(text: str, forms: tuple[tuple[str, frozenset[Written]], ...]) -> frozenset[Written]:
    """What ``text`` writes: its place names read longest first, left to right, the places they are inside
    of left out."""
    found: set[Written] = set()
    position = 0
    while position < len(text):
        match = next(((form, meaning) for form, meaning in forms if text.startswith(form, position)), None)
        if match is None:
            position += 1
            continue
        found |= match[1]
        position += len(match[0])
    return frozenset(found - _ancestors(found))


def _ancestors(found: set[Written]) -> set[Written]:
    """The places written that contain another one written (a zone's city, a district's province)."""
    gazetteer = Gazetteer.default()
    above: set[tuple[str, str]] = set()
    for key, _ in found:
        region: Region | None = gazetteer.region(key)
        while region is not None and (region := gazetteer.parent(region)) is not None:
            above.add(region.key)
    return {written for written in found if written[0] in above}


@lru_cache(maxsize=8192)
def place_forms(name: str | None) -> tuple[str, ...]:
    """Every way a place name can appear inside a branch keyword, longest first."""
    if not name:
        return ()
    forms = {name, stem(name)} | {form for region in Gazetteer.default().named(name) for form in region.names()}
    return tuple(sorted((f for f in forms if len(f) >= 2), key=len, reverse=True))


def written_places(entities: Entities, written: str) -> str:
    """What of the query can write a place: all of it but the bank's own name (九江银行 names the bank's
    home, not the branch's place; 中原银行 is no 中原区)."""
    return written.replace(entities.bank, "\0") if entities.bank else written


def writes_a_place(entities: Entities, written: str | None) -> bool:
    """Whether the query writes the place it was read with, outside the bank's name (华夏银行绵阳 does;
    九江银行 alone, read as in 九江, does not). Without ``written``, any place read counts."""
    places = (entities.province, entities.city, entities.district)
    if written is None:
        return any(places)
    return any(written_in(place, written_places(entities, written)) for place in places)


def outside_bank(text: str, bank_written: str | None) -> str:
    """``text`` without the bank's name as it writes it (亳州药都农商银行): what of a query can write the
    branch's place. The evidence's ``written``."""
    return text.replace(bank_written, "\0", 1) if bank_written else text


def written_in(place: str | None, text: str) -> bool:
    """Whether ``text`` (a query, or a record's branch name) spells ``place`` in any of its forms (成都市 →
    成都)."""
    return any(form in text for form in place_forms(place))
