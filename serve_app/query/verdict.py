"""Verdicts: which directory records fit what a query says, how probable each is, and what a payer should do.

A CNAPS code is where money goes, so the one answer that must not happen is a confident wrong code. The
steps, each a pure function:

1. ``serve_app.query.evidence`` compares one candidate with the query, part by part: bank, city, district,
   and the branch keyword with place names and the level (支行, 营业部 …) set aside.
2. ``features`` turns that evidence — plus how many other candidates fit as well ("rivals") — into the
   inputs of a logistic model. ``VerdictWeights`` holds its weights, fit by ``benchmarks/eval_verdict.py
   --fit`` on queries generated from half of the directory, with a share of their target branches
   deleted; the other half is only ever used to evaluate. Its output is the match's ``confidence``: the
   observed frequency with which a candidate with that evidence was the branch meant.
3. ``judge`` gives the verdict: ``match`` only when the bank was read without doubt, the best candidate is
   of that bank, its confidence reaches the model's ``match_threshold``, no place written contradicts it,
   no other candidate fits as well, it takes payments, and a query naming no branch beyond its place
   (中国银行安远) names the bank's only branch there; ``ambiguous`` when candidates fit but not
   surely; ``none`` when nothing in the directory fits what was written (branches of those words that lie
   only elsewhere are listed, ``no_branch_in_place``; a branch the directory has retired is ``none``,
   ``branch_retired``, and never a ``match``). A code in the query is checked and looked up instead
   (``judge_code``), and is a ``match`` only when its branch is active and nothing else written
   contradicts it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from serve_app.directory.codes import CodeInText
from serve_app.query.candidates import Candidate, Retrieval
from serve_app.query.evidence import Fit, evidence, query_keyword, rivals
from serve_app.query.place_words import writes_a_place
from serve_app.schemas import Branch, Entities, Match, Reason, Verdict

#: Bumped whenever verdicts may change for the same candidates (rules here or the shipped model): cached
#: results depend on it.
VERDICT_VERSION = 7
#: The confidence shown for a code's own record when the words beside it contradict it.
_CONFLICT_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: Reason
    matches: list[Match]
    #: For ``branch_retired``: the retired record the query means (its successors are looked up).
    retired: Candidate | None = None


class VerdictWeights:
    """Logistic weights over evidence features, and the confidence from which ``match`` is answered."""

    def __init__(
        self, weights: dict[str, float], intercept: float, match_threshold: float, meta: dict[str, Any] | None = None
    ):
        self.weights = weights
        self.intercept = intercept
        self.match_threshold = match_threshold
        self.meta = meta or {}

    @classmethod
    def from_json(cls, text: str) -> VerdictWeights:
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
def default_weights() -> VerdictWeights:
    """The model shipped in ``data/verdict_model.json`` (loaded once per process)."""
    return VerdictWeights.from_json((resources.files("serve_app") / "data" / "verdict_model.json").read_text("utf-8"))


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


def assess(
    entities: Entities,
    candidates: list[Candidate],
    bank_uncertain: bool,
    weights: VerdictWeights,
    written: str | None = None,
) -> list[tuple[Fit, list[str], float]]:
    """Every candidate's fit, active features and confidence, most probable first. ``written``: the
    normalized query the entities were read from."""
    keyword = query_keyword(entities)
    fits = [evidence(entities, keyword, candidate, written) for candidate in candidates]
    scored = []
    for fit in fits:
        active = features(fit, rivals(fit, fits), bank_uncertain)
        scored.append((fit, active, weights.probability(active)))
    scored.sort(key=lambda item: (-item[2], -item[0].candidate.score, item[0].candidate.code))
    return scored


def judged_entities(entities: Entities, retrieval: Retrieval) -> Entities:
    """The reading the candidates are judged against: with the keyword they were found by, when retrieval
    set words after the name aside (``Retrieval.branch``)."""
    return entities if retrieval.branch is None else entities.model_copy(update={"branch": retrieval.branch})


def judge(
    entities: Entities,
    retrieval: Retrieval,
    top_k: int,
    other_bank: str | None = None,
    weights: VerdictWeights | None = None,
    written: str | None = None,
) -> Judgement:
    """The verdict for a query read as ``entities`` (from the normalized text ``written``) whose candidates
    are ``retrieval``."""
    weights = weights or default_weights()
    entities = judged_entities(entities, retrieval)
    if entities.bank and not entities.branch and not writes_a_place(entities, written):
        # A bank alone names no branch to pay to, unless the bank's own record is one (a village bank's
        # head office): then only that record is a candidate.
        own = [candidate for candidate in retrieval.candidates if not candidate.branch]
        if not own and retrieval.bank_in_directory is not False:
            return Judgement("none", "no_branch_named", [])
        retrieval = Retrieval(own, retrieval.bank_in_directory)
    if not retrieval.candidates:
        if entities.bank and retrieval.bank_in_directory is False:
            return Judgement("none", "bank_not_in_directory", [])
        return Judgement("none", "no_branch_fits" if entities.bank or entities.branch else "nothing_to_match", [])
    candidates = _without_superseded(retrieval.candidates)
    scored = assess(entities, candidates, other_bank is not None, weights, written)
    fitting = [(fit, p) for fit, _, p in scored if fit.fits]  # the reason is decided on all, not on top_k
    if not fitting:
        return Judgement("none", "no_branch_fits", [])
    retired = [(fit, p) for fit, p in fitting if fit.candidate.retired_on is not None]
    if retired:
        meant = _retired_meant(fitting)
        if meant is not None:
            return Judgement("none", "branch_retired", [_match(*meant)], meant[0].candidate)
        fitting = [(fit, p) for fit, p in fitting if fit.candidate.retired_on is None]  # only these are offered
        if not fitting:
            return Judgement("none", "no_branch_fits", [])
    matches = [_match(fit, p) for fit, p in fitting[:top_k]]
    best_fit, best = fitting[0]
    if all(fit.place == "conflict" for fit, _ in fitting):
        # Branches of that name exist, but none where the query says: shown for a person, never offered
        # as a choice among wrong answers.
        return Judgement("none", "no_branch_in_place", matches)
    if not entities.bank:
        return Judgement("ambiguous", "bank_unknown", matches)
    if other_bank is not None:
        return Judgement("ambiguous", "bank_uncertain", matches)
    # A retired branch that fits as well is still a branch the query may mean: never pay the other one.
    rivals = [fit for fit, _ in fitting[1:2] + retired if fit.as_strong_as(best_fit)]
    alone = not rivals
    if retired and not alone:
        matches += [_match(fit, p) for fit, p in retired if fit.as_strong_as(best_fit)][: max(top_k - len(matches), 0)]
    if (
        alone  # another branch the evidence cannot tell apart is a choice for a person, however probable
        and retrieval.branch is None  # words written after the name are not explained: a person reads them
        and not retrieval.loosely  # a name only loosely like any in the directory: a person compares them
        and best >= weights.match_threshold
        and best_fit.evidence.bank == "exact"
        and best_fit.place != "conflict"  # a place written that is not the branch's is a veto
        and best_fit.payable
        and (not best_fit.vague or _only_branch_there(best_fit, entities, retrieval))
    ):
        return Judgement("match", "unique_fit", matches)
    if not best_fit.payable:
        return Judgement("ambiguous", "not_payable", matches)
    if not alone and best_fit.place != "conflict":
        return Judgement("ambiguous", "several_fit", matches)
    return Judgement("ambiguous", "uncertain_fit", matches)


def _only_branch_there(fit: Fit, entities: Entities, retrieval: Retrieval) -> bool:
    """A query that names no branch beyond its place (中国银行安远: a name cut after it, or a bank and a place
    alone) names the bank's one branch in that place, when it has only one and this is it (by its record's
    place, which is what was counted)."""
    candidate = fit.candidate
    in_place = candidate.city == entities.city and (not entities.district or candidate.district == entities.district)
    return retrieval.branches_there == 1 and in_place


def _without_superseded(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates without retired records whose bank, city and branch name an active candidate now has
    (a code replaced under the same name: the query names the active one)."""
    active = {(c.bank, c.city, c.branch) for c in candidates if c.retired_on is None}
    return [c for c in candidates if c.retired_on is None or (c.bank, c.city, c.branch) not in active]


def _retired_meant(fitting: list[tuple[Fit, float]]) -> tuple[Fit, float] | None:
    """The retired branch the query means, if it is one: the most probable fit is retired, its place does
    not contradict the query, and no active branch fits as well (a code replaced under the same name, or
    a namesake, is then what the query names)."""
    best_fit, best = fitting[0]
    if best_fit.candidate.retired_on is None or best_fit.place == "conflict":
        return None
    active = [fit for fit, _ in fitting if fit.candidate.retired_on is None]
    if any(fit.as_strong_as(best_fit) for fit in active):
        return None
    return best_fit, best


def judge_code(
    code: CodeInText,
    record: Candidate | None,
    entities: Entities,
    words: Judgement | None = None,
    top_k: int = 1,
    written: str | None = None,
) -> Judgement:
    """The verdict for a query that is, or carries, a 12-digit code (checked before any lookup).

    ``words`` is the verdict the words beside the code get on their own (None for a bare code). The code
    is a ``match`` unless something written contradicts its record — another bank, a place that is not
    the record's, a branch name that is not its own, or words that are on their own a sure match for
    another branch: then a person must choose, between the code's record (first) and what the words fit
    (``code_conflict``, at most ``top_k`` shown, never fewer than both branches)."""
    if not code.valid:
        return Judgement("none", "invalid_code", [])
    if record is None:
        return Judgement("none", "code_not_in_directory", [])
    fit = evidence(entities, query_keyword(entities), record, written)
    if record.retired_on is not None:
        return Judgement("none", "branch_retired", [_match(fit, 1.0)], record)
    if not fit.payable:
        return Judgement("ambiguous", "not_payable", [_match(fit, _CONFLICT_CONFIDENCE)])
    if _contradicts(fit, entities, words):
        others = [match for match in (words.matches if words else []) if match.code != record.code]
        shown = [_match(fit, _CONFLICT_CONFIDENCE), *others][: max(top_k, 2)]
        return Judgement("ambiguous", "code_conflict", shown)
    return Judgement("match", "code_lookup", [_match(fit, 1.0)])


def _contradicts(fit: Fit, entities: Entities, words: Judgement | None) -> bool:
    """Whether what the query writes beside a code disagrees with the code's record (``fit``)."""
    if entities.bank and entities.bank != fit.candidate.bank:
        return True
    if fit.place == "conflict":  # a place written that is not the record's (its own name's places included)
        return True
    if fit.evidence.branch == "none" and not fit.places_only and fit.level != "unstated":
        return True  # it names a branch (words and a level: 草池支行), and not this one; a label (对方) does not
    return words is not None and words.verdict == "match" and words.matches[0].code != fit.candidate.code


def _match(fit: Fit, confidence: float) -> Match:
    record = Branch.model_validate(fit.candidate).model_dump()
    return Match(**record, confidence=round(confidence, 4), evidence=fit.evidence, score=fit.candidate.score)
