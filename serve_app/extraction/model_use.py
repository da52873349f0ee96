"""When the fine-tuned model is asked, and how its answer combines with the rules' reading.

Shared by the ``EntityExtractor`` deployment and the offline pipeline, so both decide the same way.
"""

from __future__ import annotations

from serve_app.extraction.vocabulary import Vocabulary
from serve_app.models.task import ModelAnswer
from serve_app.schemas import Extraction, ExtractionOutcome


def adapter_to_ask(requested: str | None, rules: Extraction, threshold: float, default: str | None) -> str | None:
    """The adapter the request names; else the default adapter when the rules are unsure; else none."""
    if requested is not None:
        return requested
    if rules.confidence < threshold:
        return default
    return None


def rules_outcome(rules: Extraction) -> ExtractionOutcome:
    return ExtractionOutcome(
        entities=rules.entities, source="rules", confidence=rules.confidence, other_bank=rules.other_bank
    )


def combine(rules: Extraction, answer: ModelAnswer, adapter: str, vocabulary: Vocabulary) -> ExtractionOutcome:
    """The model's entities when its answer is valid (bank code from the directory); else the rules'."""
    if not answer.valid:
        return rules_outcome(rules).model_copy(update={"model": adapter, "model_error": answer.error})
    entities = answer.entities
    assert entities is not None  # a valid answer carries entities
    bank = vocabulary.banks.get(entities.bank or "")
    entities = entities.model_copy(update={"bank_code": bank.category_code if bank else None})
    return ExtractionOutcome(
        entities=entities, source="model", model=adapter, confidence=rules.confidence, other_bank=rules.other_bank
    )
