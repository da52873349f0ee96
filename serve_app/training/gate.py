"""The gate before a new revision serves: it must be no worse than the revision serving now, and no worse
than the rules alone, on right matches and on wrong matches — measured through the service's own
pipeline (extraction with the model asked, retrieval, verdict) on cases nothing was trained on.

A right match is ``match`` with the branch the case names; a wrong match is ``match`` with another. Each
set of cases (the tenant's held-out confirmations, held-out directory records) is judged on its own: a
revision that gains on the directory but pays a tenant's confirmed text to the wrong branch is rejected.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncpg

from serve_app.config import ExtractorTunables, ModelTunables
from serve_app.extraction.service import ExtractionService
from serve_app.models.engine import AdapterSpec, GenerationRequest
from serve_app.models.hf_engine import HFEngine
from serve_app.models.task import ModelAnswer, format_for
from serve_app.query.inputs import read_text
from serve_app.query.pipeline import QueryPipeline
from serve_app.query.retrieval import BranchRepository
from serve_app.schemas import QueryRequest
from serve_app.training.tenant_examples import GateCase

#: The conditions measured, by name: the rules alone, the revision serving now, the new one.
RULES, CURRENT, CANDIDATE = "rules", "current", "candidate"
MAX_NEW_TOKENS = ModelTunables().max_new_tokens
#: Readings generated at once.
BATCH = 16


@dataclass
class Tally:
    cases: int = 0
    right: int = 0
    wrong: int = 0


async def measure(
    pool: asyncpg.Pool, base: Path, adapters: dict[str, AdapterSpec], cases: list[GateCase], device: str = "cpu"
) -> dict[str, dict[str, dict]]:
    """Per condition (``RULES`` and each of ``adapters``, asked for every case) and per source of cases:
    ``{"cases", "right", "wrong"}``. The adapters are loaded into one HFEngine, the engine a CPU replica runs,
    with the replica's prompt, token limit and parser."""
    engine = HFEngine(base, device=device)
    await engine.start()
    try:
        for spec in adapters.values():
            await engine.load_adapter(spec)
        # Every reading the pipeline will ask for, generated in batches first (one at a time, a CPU spends
        # seconds a reading); the pipeline then reads them from here.
        texts = list(dict.fromkeys(read_text(case.text)[0] for case in cases))
        readings: dict[tuple[str, str], ModelAnswer] = {}
        formats = {adapter: format_for(spec) for adapter, spec in adapters.items()}

        def request(text: str, adapter: str) -> GenerationRequest:
            return formats[adapter].request(text, adapter, MAX_NEW_TOKENS)

        for adapter in adapters:
            for first in range(0, len(texts), BATCH):
                chunk = texts[first : first + BATCH]
                results = await engine.generate([request(text, adapter) for text in chunk])
                for text, result in zip(chunk, results, strict=True):
                    readings[(adapter, text)] = formats[adapter].read(result.text, result.finished)

        async def read(normalized: str, adapter: str) -> ModelAnswer:
            if (adapter, normalized) not in readings:
                [result] = await engine.generate([request(normalized, adapter)])
                readings[(adapter, normalized)] = formats[adapter].read(result.text, result.finished)
            return readings[(adapter, normalized)]

        extraction = await ExtractionService(pool, ExtractorTunables(), read).start()
        pipeline = QueryPipeline(extraction, BranchRepository(pool))
        tallies: dict[str, dict[str, Tally]] = {}
        for condition in (RULES, *adapters):
            model = None if condition == RULES else condition
            per_source = tallies.setdefault(condition, {})
            for case in cases:
                answer = await pipeline.run(QueryRequest(query=case.text, top_k=1, model=model))
                tally = per_source.setdefault(case.source, Tally())
                tally.cases += 1
                if answer.verdict == "match":
                    right = answer.matches[0].code == case.code
                    tally.right += right
                    tally.wrong += not right
    finally:
        await engine.shutdown()
    return {condition: {source: asdict(t) for source, t in sources.items()} for condition, sources in tallies.items()}


def decide(measured: dict[str, dict[str, dict]]) -> tuple[bool, list[str]]:
    """Whether the candidate may serve, and why not: on every source of cases, at least as many right
    matches and at most as many wrong ones as each other condition."""
    reasons = []
    candidate = measured[CANDIDATE]
    for rival in (RULES, CURRENT):
        if rival not in measured:
            continue
        for source, theirs in measured[rival].items():
            ours = candidate.get(source, asdict(Tally()))
            if ours["right"] < theirs["right"]:
                reasons.append(f"{source}: {ours['right']} right matches, fewer than {rival}'s {theirs['right']}")
            if ours["wrong"] > theirs["wrong"]:
                reasons.append(f"{source}: {ours['wrong']} wrong matches, more than {rival}'s {theirs['wrong']}")
    return not reasons, reasons


def counts_by_source(cases: list[GateCase]) -> dict[str, int]:
    return dict(Counter(case.source for case in cases))
