"""Verdicts: which directory records fit what a query says, how probable each is, and what a payer should do.

A CNAPS code is where money goes, so the one answer that must not happen is a confident wrong code. The
steps, each a pure function:

1. ``evidence`` compares one candidate with the query, part by part: bank, city, district, and the
   branch keyword with place names and the level (支行, 营业部 …) set aside.
2. ``features`` turns that evidence — plus how many other candidates fit as well ("rivals") — into the
   inputs of a logistic model. ``VerdictModel`` holds its weights, fit by ``benchmarks/eval_verdict.py
   --fit`` on queries generated from half of the directory, with a share of their target branches
   deleted; the other half is only ever used to evaluate. Its output is the match's ``confidence``: the
   observed frequency with which a candidate with that evidence was the branch meant.
3. ``judge`` gives the verdict: ``match`` only when the bank was read without doubt, the best candidate is
   of that bank and its confidence reaches the model's ``match_threshold``; ``ambiguous`` when candidates
   fit but not surely; ``none`` when nothing in the directory fits. A code in the query is checked and
   looked up instead (``judge_code``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import cache, lru_cache
from importlib import resources

from serve_app.directory.codes import CodeInText
from serve_app.directory.gazetteer import Gazetteer, stem
from serve_app.extraction.rules import LEVEL_AT_END
from serve_app.normalize import normalize
from serve_app.retrieval import Candidate, Retrieval
from serve_app.schemas import Agreement, Branch, Entities, Evidence, Match, Verdict

#: Bumped whenever verdicts may change for the same candidates (rules here or the shipped model): cached
#: results depend on it.
VERDICT_VERSION = 1
#: Levels people write for one another. 分行 and 分行营业部 are not among them: the directory lists a
#: branch and its business department under different codes.
_LEVEL_FAMILIES = ({"营业部", "营业室"}, {"信用社", "信用分社"})
_PARTIAL_SIMILARITY = 0.6
_RIVALS_CAP = 2


@dataclass(frozen=True)
class Fit:
    """One candidate's evidence and the place agreement the model reads (finer than ``Evidence``)."""

    candidate: Candidate
    evidence: Evidence
    place: str  # exact | city | unstated | conflict
    level: str  # agree | differ | unstated
    #: The query's keyword is nothing but place names and a level (浏阳支行): "exact" then says less.
    places_only: bool = False

    @property
    def vague(self) -> bool:
        """The query names no branch: no words beyond places, and no level (华夏银行绵阳)."""
        return (self.places_only or self.evidence.branch == "unstated") and self.level == "unstated"

    @property
    def strength(self) -> tuple[int, int, int]:
        return (_BRANCH_RANK[self.evidence.branch], _PLACE_RANK[self.place], _LEVEL_RANK[self.level])

    @property
    def fits(self) -> bool:
        """Worth showing a person: the keyword agrees, and the place does not contradict a partial one."""
        branch = self.evidence.branch
        return branch == "exact" or (branch == "partial" and self.place != "conflict")


_BRANCH_RANK = {"exact": 2, "partial": 1, "none": 0, "unstated": 0}
_PLACE_RANK = {"exact": 3, "city": 2, "unstated": 1, "conflict": 0}
_LEVEL_RANK = {"agree": 2, "unstated": 1, "differ": 0}


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    matches: list[Match]


class VerdictModel:
    """Logistic weights over evidence features, and the confidence from which ``match`` is answered."""

    def __init__(self, weights: dict[str, float], intercept: float, match_threshold: float, meta: dict | None = None):
        self.weights = weights
        self.intercept = intercept
        self.match_threshold = match_threshold
        self.meta = meta or {}

    @classmethod
    def from_json(cls, text: str) -> VerdictModel:
        data = json.loads(text)
        return cls(data["weights"], data["intercept"], data["match_threshold"], data.get("meta"))

    def to_json(self) -> str:
        data = {
            "intercept": self.intercept,
            "match_threshold": self.match_threshold,
            "weights": self.weights,
            "meta": self.meta,
        }
        return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"

    def probability(self, active: list[str]) -> float:
        z = self.intercept + sum(self.weights.get(name, 0.0) for name in active)
        return 1.0 / (1.0 + math.exp(-z))


@cache
def default_model() -> VerdictModel:
    """The model shipped in ``data/verdict_model.json`` (loaded once per process)."""
    return VerdictModel.from_json((resources.files("serve_app") / "data" / "verdict_model.json").read_text("utf-8"))


# --- evidence -------------------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def _place_forms(name: str | None) -> tuple[str, ...]:
    """Every way a place name can appear inside a branch keyword, longest first."""
    if not name:
        return ()
    forms = {name, stem(name)} | {form for region in Gazetteer.default().named(name) for form in region.names()}
    return tuple(sorted((f for f in forms if len(f) >= 2), key=len, reverse=True))


def _strip_levels(keyword: str) -> tuple[str, str | None]:
    """The keyword without trailing levels (…支行营业室 → …), and the last level it had."""
    last = None
    while (match := LEVEL_AT_END.search(keyword)) is not None:
        last = last or match.group(1)
        keyword = keyword[: match.start()]
    return keyword, last


def keyword_core(keyword: str, places: tuple[str | None, ...]) -> tuple[str, str | None]:
    """What names the branch itself: the keyword without levels, place names and inner 分行; and its level."""
    core, level = _strip_levels(keyword)
    for place in places:
        for form in _place_forms(place):
            core = core.replace(form, "")
    return core.replace("分行", ""), level


def _branch_agreement(query_core: str, candidate_core: str) -> Agreement:
    if query_core == candidate_core:
        return "exact"
    if not query_core or not candidate_core:
        return "none"
    if query_core in candidate_core or candidate_core in query_core:
        return "partial"
    if SequenceMatcher(None, query_core, candidate_core).ratio() >= _PARTIAL_SIMILARITY:
        return "partial"
    return "none"


def _level_agreement(query_level: str | None, candidate_level: str | None) -> str:
    if query_level is None:
        return "unstated"
    if query_level == candidate_level:
        return "agree"
    if any(query_level in family and candidate_level in family for family in _LEVEL_FAMILIES):
        return "agree"
    return "differ"


def query_keyword(entities: Entities) -> str:
    """The query's branch keyword, normalized as the directory's names are (once per query)."""
    return normalize(entities.branch) if entities.branch else ""


def evidence(entities: Entities, keyword: str, candidate: Candidate) -> Fit:
    """How the query's entities (and its ``query_keyword``) agree with one candidate."""
    places = (
        entities.province,
        entities.city,
        entities.district,
        candidate.province,
        candidate.city,
        candidate.district,
    )
    query_core, query_level = keyword_core(keyword, places)
    candidate_core, candidate_level = keyword_core(candidate.branch, places)
    bank: Agreement = "unstated" if not entities.bank else ("exact" if entities.bank == candidate.bank else "none")
    city = _place_agreement(entities.city, candidate.city, candidate.branch)
    district = _place_agreement(entities.district, candidate.district, candidate.branch)
    if entities.district and district == "exact":
        place = "exact"
    elif entities.district and city == "exact":
        place = "city"
    elif entities.city:
        place = "exact" if city == "exact" else "conflict"
    elif entities.province:
        place = "unstated" if entities.province == candidate.province else "conflict"
    else:
        place = "unstated"
    return Fit(
        candidate=candidate,
        evidence=Evidence(
            bank=bank, city=city, district=district, branch=_branch_agreement(query_core, candidate_core)
        ),
        place=place,
        level=_level_agreement(query_level, candidate_level),
        places_only=not query_core,
    )


def _place_agreement(read: str | None, recorded: str | None, candidate_branch: str) -> Agreement:
    """A place read from the query against the record's: its field, or its own name when the record was
    filed at a coarser level (a county branch whose PBOC code is the prefecture's)."""
    if not read:
        return "unstated"
    if read == recorded or (recorded is None and any(form in candidate_branch for form in _place_forms(read))):
        return "exact"
    return "none"


def rivals(fit: Fit, fits: list[Fit]) -> int:
    """How many other candidates fit at least as well on keyword, place and level (capped)."""
    strength = fit.strength
    count = sum(
        1 for other in fits if other is not fit and all(o >= s for o, s in zip(other.strength, strength, strict=True))
    )
    return min(count, _RIVALS_CAP)


def features(fit: Fit, rival_count: int, bank_uncertain: bool) -> list[str]:
    """The model's active (one-hot) features for one candidate."""
    branch, place = fit.evidence.branch, fit.place
    active = [
        f"branch={branch}",
        f"place={place}",
        f"level={fit.level}",
        f"rivals={rival_count}",
        f"bank={fit.evidence.bank}",
        f"branch={branch}&place={place}",
        f"branch={branch}&rivals={rival_count}",
    ]
    if fit.places_only:
        active.append(f"places_only&branch={branch}")
    if bank_uncertain:
        active.append("bank_uncertain")
    return active


# --- verdicts -------------------------------------------------------------------------------------------


def assess(entities: Entities, candidates: list[Candidate], bank_uncertain: bool, model: VerdictModel):
    """Every candidate's fit, active features and confidence, most probable first."""
    keyword = query_keyword(entities)
    fits = [evidence(entities, keyword, candidate) for candidate in candidates]
    scored = []
    for fit in fits:
        active = features(fit, rivals(fit, fits), bank_uncertain)
        scored.append((fit, active, model.probability(active)))
    scored.sort(key=lambda item: (-item[2], -item[0].candidate.score, item[0].candidate.code))
    return scored


def judge(
    entities: Entities,
    retrieval: Retrieval,
    top_k: int,
    other_bank: str | None = None,
    model: VerdictModel | None = None,
) -> Judgement:
    """The verdict for a query read as ``entities`` whose candidates are ``retrieval``."""
    model = model or default_model()
    if not retrieval.candidates:
        if entities.bank and retrieval.bank_in_directory is False:
            return Judgement("none", "bank_not_in_directory", [])
        return Judgement("none", "no_branch_fits" if entities.bank or entities.branch else "nothing_to_match", [])
    scored = assess(entities, retrieval.candidates, other_bank is not None, model)
    shown = [(fit, p) for fit, _, p in scored if fit.fits][:top_k]
    if not shown:
        return Judgement("none", "no_branch_fits", [])
    matches = [_match(fit, p) for fit, p in shown]
    best_fit, best = shown[0]
    if not entities.bank:
        return Judgement("ambiguous", "bank_unknown", matches)
    if other_bank is not None:
        return Judgement("ambiguous", "bank_uncertain", matches)
    if best >= model.match_threshold and best_fit.evidence.bank == "exact" and not best_fit.vague:
        return Judgement("match", "unique_fit", matches)
    if len(shown) > 1 and best_fit.place != "conflict" and shown[1][0].strength >= best_fit.strength:
        return Judgement("ambiguous", "several_fit", matches)
    return Judgement("ambiguous", "uncertain_fit", matches)


def judge_code(code: CodeInText, record: Candidate | None, entities: Entities) -> Judgement:
    """The verdict for a query that is, or carries, a 12-digit code (checked before any lookup)."""
    if not code.valid:
        return Judgement("none", "invalid_code", [])
    if record is None:
        return Judgement("none", "code_not_in_directory", [])
    fit = evidence(entities, query_keyword(entities), record)
    if entities.bank and entities.bank != record.bank:
        # The line names one bank and carries another's code: a person must look.
        return Judgement("ambiguous", "code_conflict", [_match(fit, 0.5)])
    return Judgement("match", "code_lookup", [_match(fit, 1.0)])


def _match(fit: Fit, confidence: float) -> Match:
    record = Branch.model_validate(fit.candidate).model_dump()
    return Match(**record, confidence=round(confidence, 4), evidence=fit.evidence, score=fit.candidate.score)
