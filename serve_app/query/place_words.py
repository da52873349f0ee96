"""Which places a branch keyword writes, by the regions its place names mean.

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
