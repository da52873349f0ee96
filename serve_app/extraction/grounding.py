"""Whether a field of the model's reading is supported by the query text and consistent with the directory.

A model can answer valid JSON that names a bank or a place the query never mentions (vLLM's structured
output guarantees the JSON, not the truth). A CNAPS code is where money goes, so the model's reading of a
field is only ever used when it is *grounded*:

- ``bank``: a bank the directory or the licensed-institution list knows, one of whose surface forms (its
  name, an alias, a registered English name) occurs in the normalized query;
- ``province``/``city``/``district``: a place the gazetteer knows, one of whose names (full, short, stem,
  historical) occurs in the query outside the bank's name (湘潭农村商业银行云峰 does not say the branch is
  in 湘潭县);
- ``branch``: its words without the level (支行, 营业部 …) occur in the query, and they name a branch: not
  a bare level (支行), and not the bank's own name (山东五莲农村商业银行 is the bank, not a branch of it).

What the query names is found with the rules extractor's own automata, once per query.
"""

from __future__ import annotations

from functools import cached_property

from serve_app.extraction.levels import LEVEL_AT_END
from serve_app.extraction.rules import RulesExtractor
from serve_app.normalize import normalize

#: A branch reading shorter than this, once its level is set aside, names nothing by itself.
MIN_BRANCH_CORE = 2


class Grounding:
    """What one normalized query supports. Each check returns ``None`` when ``value`` is grounded, else
    the reason it is not (reported to the caller)."""

    def __init__(self, query: str, extractor: RulesExtractor):
        self.query = query
        self.extractor = extractor

    @cached_property
    def _banks(self) -> set[str]:
        return self.extractor.banks_named(self.query)

    @cached_property
    def _regions(self) -> set[tuple[str, str]]:
        return self.extractor.regions_named(self.query)

    def check(self, field: str, value: str, bank: str | None = None) -> str | None:
        """``bank``: the bank the answer will name (a branch reading must not be its name)."""
        if field == "bank":
            return self.bank(value)
        if field == "branch":
            return self.branch(value, bank)
        return self.place(value)

    def bank(self, bank: str) -> str | None:
        if bank not in self.extractor.vocabulary.banks:
            return "not a bank the directory knows"
        return None if bank in self._banks else "the query does not name this bank"

    def place(self, place: str) -> str | None:
        regions = self.extractor.gazetteer.named(place)
        if not regions:
            return "not a place the gazetteer knows"
        return None if any(region.key in self._regions for region in regions) else "the query does not name this place"

    def branch(self, branch: str, bank: str | None = None) -> str | None:
        core = normalize(branch)
        while (level := LEVEL_AT_END.search(core)) is not None:
            core = core[: level.start()]
        if len(core) < MIN_BRANCH_CORE:
            return "names no branch"
        if bank and core in bank:
            return "names the bank, not a branch"
        return None if core in self.query else "the query does not contain this branch name"

    def district_outside_city(self, district: str, city: str) -> bool:
        """True when no region called ``district`` lies in a city called ``city``: both cannot hold."""
        gazetteer = self.extractor.gazetteer
        cities = {region.key for region in gazetteer.named(city) if region.level == "city"}
        if not cities:
            return False  # a municipality's districts hang from the province: nothing to contradict
        parents = {gazetteer.parent(region) for region in gazetteer.named(district) if region.level == "district"}
        return not any(parent is not None and parent.key in cities for parent in parents)
