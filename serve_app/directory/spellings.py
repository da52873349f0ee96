"""One institution spelled two ways in one directory file is one bank.

A file may publish most of a bank's branches under its full name (长治漳泽农村商业银行…) and a few under its
short form (长治漳泽农商银行股份有限公司潞阳门北路支行). Read as two banks, a query naming either finds only
that spelling's branches, and answers "no such branch" for one that is there. So the records of the
spelling with fewer branches are filed under the other (under the full form on a tie); each keeps its own
official name (``serve_app.directory.records.read_cnaps`` files them as it reads a file). A bank spelled one
way only (成都农商银行, its registered name) is left as it is.
"""

from __future__ import annotations

from collections import Counter

from serve_app.directory.banks import TYPE_FORMS


def filed_as(counts: Counter) -> dict[str, str]:
    """Bank name → the spelling its branches are filed under, for the names spelled another way with more
    branches (``counts``: branches per bank name in one file). Names absent are filed as they are."""
    steps = {name: twin for name in counts if (twin := _more_common_twin(name, counts)) is not None}
    return {name: _final(name, steps) for name in steps}


def _more_common_twin(name: str, counts: Counter) -> str | None:
    """The other spelling of ``name``'s institution in ``counts`` with the most branches, if it holds more than
    ``name`` (or as many, and is the longer, full form)."""
    twins = [twin for twin in _twins(name) if twin in counts]
    best = max(twins, key=lambda twin: (counts[twin], len(twin)), default=None)
    if best is None or (counts[best], len(best)) <= (counts[name], len(name)):
        return None
    return best


def _twins(name: str) -> set[str]:
    """The spellings of ``name`` with its type written the other way (农商银行 ↔ 农村商业银行)."""
    twins = set()
    for long, short in TYPE_FORMS:
        if name.endswith(short):
            twins.add(name[: -len(short)] + long)
        elif name.endswith(long):
            twins.add(name[: -len(long)] + short)
    return twins


def _final(name: str, steps: dict[str, str]) -> str:
    """Where ``name``'s branches end up: every step holds more branches, so the chain ends."""
    while name in steps:
        name = steps[name]
    return name
