"""Whether a field of the model's reading is supported by the query text and consistent with the directory.

A model can answer valid JSON that names a bank or a place the query never mentions (vLLM's structured
output guarantees the JSON, not the truth). A CNAPS code is where money goes, so the model's reading of a
field is only ever used when it is *grounded*:

- ``bank``: a bank the directory or the licensed-institution list knows, one of whose surface forms (its
  name, an alias, a registered English name) occurs in the normalized query;
- ``province``/``city``/``district``: a place the gazetteer knows, one of whose names (full, short, stem,
  historical) occurs in the query;
- ``branch``: its words without the level (支行, 营业部 …) occur in the query.

Each check returns ``None`` when grounded, else the reason it is not (reported to the caller).
"""

from __future__ import annotations

from serve_app.directory.gazetteer import Gazetteer
from serve_app.extraction.rules import LEVEL_AT_END
from serve_app.extraction.vocabulary import Vocabulary
from serve_app.normalize import normalize

PLACE_FIELDS = ("province", "city", "district")
#: A branch reading shorter than this, once its level is set aside, names nothing by itself.
MIN_BRANCH_CORE = 2


def bank_ungrounded(bank: str, query: str, vocabulary: Vocabulary) -> str | None:
    if bank not in vocabulary.banks:
        return "not a bank the directory knows"
    if any(form in query for form, name in vocabulary.surface_forms.items() if name == bank):
        return None
    return "the query does not name this bank"


def place_ungrounded(place: str, query: str, gazetteer: Gazetteer) -> str | None:
    regions = gazetteer.named(place)
    if not regions:
        return "not a place the gazetteer knows"
    if any(name in query for region in regions for name in region.names() if len(name) >= 2):
        return None
    return "the query does not name this place"


def branch_ungrounded(branch: str, query: str) -> str | None:
    core = normalize(branch)
    while (level := LEVEL_AT_END.search(core)) is not None and level.start() > 0:
        core = core[: level.start()]
    if len(core) < MIN_BRANCH_CORE:
        return "names no branch"
    if core not in query:
        return "the query does not contain this branch name"
    return None


def district_outside_city(district: str, city: str, gazetteer: Gazetteer) -> bool:
    """True when no region called ``district`` lies in a city called ``city``: the two cannot both hold."""
    cities = {region.key for region in gazetteer.named(city) if region.level == "city"}
    if not cities:
        return False  # a municipality's districts hang from the province: nothing to contradict
    parents = {gazetteer.parent(region) for region in gazetteer.named(district) if region.level == "district"}
    return not any(parent is not None and parent.key in cities for parent in parents)
