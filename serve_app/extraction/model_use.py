"""When the fine-tuned model is asked, and how its answer combines with the rules' reading.

Shared by the ``EntityExtractor`` deployment and the offline pipeline, so both decide the same way.
"""

from __future__ import annotations

from serve_app.config import MAX_FALLBACK_THRESHOLD
from serve_app.extraction.grounding import Grounding
from serve_app.extraction.levels import LEVEL_AT_END, is_whole_name
from serve_app.extraction.rules import RulesExtractor
from serve_app.models.task import MODEL_FIELDS, ModelAnswer
from serve_app.normalize import normalize
from serve_app.schemas import Entities, Extraction, ExtractionOutcome


def adapter_to_ask(requested: str | None, rules: Extraction, threshold: float, default: str | None) -> str | None:
    """The adapter the request names; else the default adapter when the rules are unsure; else none."""
    if requested is not None:
        return requested
    if rules.confidence < threshold:
        return default
    return None


def no_model_can_be_asked(requested: str | None, rules: Extraction) -> bool:
    """True when ``adapter_to_ask`` returns None under every valid tunable: no adapter named, and a
    complete rules reading (confidence 1, which no threshold — at most 1 — falls under)."""
    return requested is None and rules.confidence >= MAX_FALLBACK_THRESHOLD


#: ``model_error`` of an answer whose optional model reading (the default adapter, asked because the rules
#: were unsure) was skipped: the model replicas were saturated, gone, or too slow. Such an answer is the
#: rules' and is not cached, so the next identical query asks the model again.
MODEL_SKIPPED = "the model could not answer in time; the rules' reading stands"


def rules_outcome(rules: Extraction) -> ExtractionOutcome:
    return ExtractionOutcome(
        entities=rules.entities,
        source="rules",
        confidence=rules.confidence,
        other_bank=rules.other_bank,
        bank_written=rules.bank_written,
    )


def combine(
    rules: Extraction, query: str, answer: ModelAnswer, adapter: str, extractor: RulesExtractor
) -> ExtractionOutcome:
    """The rules' reading, corrected field by field by the model's where the model's is grounded.

    ``query`` is the normalized query both read, ``extractor`` the rules extractor that read it. The
    stated rules, per field:

    1. The model says nothing, or names something the query does not support (see ``grounding``): the
       rules' value stands; the reason is reported in ``model_overruled``.
    2. Only the model read the field: its value is used.
    3. Both read it and differ: for ``branch`` the model's wins when it is contained in the rules' and ends
       in a branch level while the rules' does not (the rules swept words in after the branch: 江油西山支行那边打钱
       → 西山支行; a tail such as 谢谢 names no branch; 南区支行城南分理处 and 江西省分行票据中心 are whole names);
       for every other field the rules' wins (a literal match against the vocabulary or the gazetteer).
    4. A district the model supplied that lies outside the city is dropped.

    ``source`` is "model" only when the model changed the entities; ``entities_source`` says, per field
    read, whether it came from the rules, the model, or both agreed."""
    outcome = rules_outcome(rules).model_copy(update={"model": adapter})
    if not answer.valid:
        return outcome.model_copy(update={"model_error": answer.error})
    assert answer.entities is not None  # a valid answer carries entities
    read_by_rules = rules.entities.model_dump()
    read_by_model = answer.entities.model_dump()
    chosen = dict(read_by_rules)
    sources: dict[str, str] = {}
    overruled: dict[str, str] = {}
    grounding = Grounding(query, extractor)
    for field in MODEL_FIELDS:
        ours, theirs = read_by_rules[field], read_by_model[field]
        if ours is not None:
            sources[field] = "rules"
        if theirs is None:
            continue
        if theirs == ours:
            sources[field] = "both"
            continue
        reason = grounding.check(field, theirs, bank=chosen["bank"])
        if reason is None and ours is not None and not (field == "branch" and _tighter_branch(theirs, ours)):
            reason = f"the rules read {ours!r}"
        if reason is not None:
            overruled[field] = reason
            continue
        chosen[field] = theirs
        sources[field] = "model"
    city, district = chosen["city"], chosen["district"]
    if sources.get("district") == "model" and city and grounding.district_outside_city(district, city):
        chosen["district"] = read_by_rules["district"]
        overruled["district"] = f"not in {city}"
        if chosen["district"] is None:
            del sources["district"]
        else:
            sources["district"] = "rules"
    bank = extractor.vocabulary.banks.get(chosen["bank"] or "")
    chosen["bank_code"] = bank.category_code if bank else None
    entities = Entities(**chosen)
    changed = entities != rules.entities
    return outcome.model_copy(
        update={
            "entities": entities,
            "source": "model" if changed else "rules",
            "entities_source": sources,
            "model_overruled": overruled or None,
            "bank_written": rules.bank_written if entities.bank == rules.entities.bank else None,
        }
    )


def _tighter_branch(model: str, rules: str) -> bool:
    """The model's branch is the rules' without words swept in after it: inside it and a branch name, where
    the rules' own reading ends in neither a level nor a unit. One that does is a whole name, often nested
    (南区支行城南分理处, 江西省分行票据中心): cutting it would name the parent, another code."""
    tighter, whole = normalize(model), normalize(rules)
    return tighter in whole and LEVEL_AT_END.search(tighter) is not None and not is_whole_name(whole)
