"""``ExtractionService``: rules → model where called for → combine. The one orchestration.

The ``EntityExtractor`` deployment and the offline pipeline both run this; they differ only in how the
model is asked (``ModelReader``: a deployment handle, or a ``ModelWorker`` in this process). The ingress
runs its rules step itself and calls the deployment only when a model may be asked
(``RulesFirstExtraction``). When the
model is asked and how its answer combines with the rules: ``model_use``.

The vocabulary comes from the directory. Callers pass the data version their answer will be cached
under; a newer one than the vocabulary was read at makes the service read the directory again first,
so nothing is ever cached under a version it was not computed with.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncpg

from serve_app.config import ExtractorTunables
from serve_app.db.errors import VOCABULARY, database_errors
from serve_app.directory.loader import read_data_version
from serve_app.errors import ModelUnavailable, NoModelDeployment, Overloaded
from serve_app.extraction.model_use import (
    MODEL_SKIPPED,
    adapter_to_ask,
    combine,
    no_model_can_be_asked,
    rules_outcome,
)
from serve_app.extraction.rules import RulesExtractor
from serve_app.extraction.vocabulary import Vocabulary
from serve_app.models.adapters import parse_adapter_ref
from serve_app.models.task import ModelAnswer
from serve_app.schemas import Extraction, ExtractionOutcome
from serve_app.timing import ms_since

log = logging.getLogger(__name__)

#: Asks the model: (normalized query, adapter ref or name) → its answer.
ModelReader = Callable[[str, str], Awaitable[ModelAnswer]]
#: What keeps the model from answering a fallback in time; the rules' reading is then the answer.
MODEL_BUSY = (TimeoutError, Overloaded, ModelUnavailable)


class ExtractionObserver(Protocol):
    def on_extraction(self, source: str, outcome: str) -> None: ...  # not_asked | valid | invalid | skipped


class _Unobserved:
    def on_extraction(self, source: str, outcome: str) -> None:
        pass


class ExtractionService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        tunables: ExtractorTunables,
        read_with_model: ModelReader | None = None,
        observer: ExtractionObserver | None = None,
    ):
        self.pool = pool
        self.tunables = tunables
        self.read_with_model = read_with_model
        self.observer = observer or _Unobserved()
        self.data_version = -1
        self.extractor: RulesExtractor | None = None
        self._reload_lock = asyncio.Lock()

    async def start(self) -> ExtractionService:
        await self.follow(None)
        return self

    @property
    def vocabulary(self) -> Vocabulary:
        assert self.extractor is not None, "start() reads the vocabulary"
        return self.extractor.vocabulary

    async def follow(self, data_version: int | None) -> None:
        """Read the directory's vocabulary again unless it is already at ``data_version`` or newer
        (``None``: read it now). Concurrent callers share one read."""
        if data_version is not None and data_version <= self.data_version:
            return
        async with self._reload_lock:
            if data_version is not None and data_version <= self.data_version:
                return
            with database_errors(VOCABULARY):
                async with self.pool.acquire() as conn:
                    version = await read_data_version(conn)
                    vocabulary = await Vocabulary.from_database(conn)
            if self.extractor is not None:
                log.info("directory data version %d → %d: vocabulary reloaded", self.data_version, version)
            self.extractor = RulesExtractor(vocabulary)
            self.data_version = version

    def reconfigure(self, tunables: ExtractorTunables) -> None:
        self.tunables = tunables

    async def rules(self, normalized: str) -> Extraction:
        """The rules' reading. Not cached: it takes tens of microseconds, less than a Redis round trip
        (whole answers are cached by the ingress's result cache)."""
        assert self.extractor is not None, "start() reads the vocabulary"
        return self.extractor.extract(normalized)

    async def extract_entities(
        self, normalized: str, adapter: str | None, data_version: int | None = None
    ) -> ExtractionOutcome:
        """Rules, then the model where the request (``adapter``: the API's ``model``, a LoRA adapter's name
        or ref) or a low rules confidence calls for it. ``data_version``: the directory version the caller
        will cache the answer under (the vocabulary is read again first if it is older); None: the
        vocabulary as it is (one process answering many queries, as the CLI does).

        ``NoModelDeployment`` when an adapter is asked for and nothing here can run a model."""
        if adapter is not None and self.read_with_model is None:
            raise NoModelDeployment(f"adapter {adapter!r} was asked for, but this application runs without a model")
        if data_version is not None:
            await self.follow(data_version)
        extractor = self.extractor  # the one that reads this query, even if a reload lands meanwhile
        assert extractor is not None, "start() reads the vocabulary"
        started = time.perf_counter()
        rules = await self.rules(normalized)
        timings = {"rules": ms_since(started)}
        tunables = self.tunables
        asked = adapter_to_ask(adapter, rules, tunables.model_fallback_threshold, tunables.default_adapter)
        if asked is None or self.read_with_model is None:
            self.observer.on_extraction("rules", "not_asked")
            return rules_outcome(rules).model_copy(update={"timings_ms": timings})
        mark = time.perf_counter()
        name = parse_adapter_ref(asked)[0]
        try:
            if adapter is not None:  # the tenant named it: it waits for it, and hears why not
                answer = await self.read_with_model(normalized, asked)
            else:
                async with asyncio.timeout(tunables.model_fallback_timeout_s):
                    answer = await self.read_with_model(normalized, asked)
        except MODEL_BUSY as exc:
            if adapter is not None:
                raise
            log.info("fallback to %s skipped: %s", name, type(exc).__name__)
            self.observer.on_extraction("rules", "skipped")
            timings["model"] = ms_since(mark)
            update = {"model": name, "model_error": MODEL_SKIPPED, "timings_ms": timings}
            return rules_outcome(rules).model_copy(update=update)
        outcome = combine(rules, normalized, answer, name, extractor)
        timings["model"] = ms_since(mark)
        self.observer.on_extraction(outcome.source, "valid" if answer.valid else "invalid")
        return outcome.model_copy(update={"timings_ms": timings})

    def stats(self) -> dict:
        return {"data_version": self.data_version}


#: Extraction as ``pipeline.compute_answer`` calls it: (normalized query, adapter ref or name or None, the data
#: version the answer is made at or None for the vocabulary as loaded) → outcome.
ExtractEntities = Callable[[str, str | None, int | None], Awaitable[ExtractionOutcome]]


class RulesFirstExtraction:
    """Extraction as the ingress runs it: the rules in this process, and the extraction deployment
    (``delegate``) only when a model may be asked — an adapter named, or a reading the default adapter
    could be asked about. A complete reading with no adapter named is answered here, as the deployment
    would answer it (``no_model_can_be_asked``), without the hop to it.

    ``rules`` is an ``ExtractionService`` without a model: the same vocabulary, following the same data
    version, as the deployment's."""

    def __init__(self, rules: ExtractionService, delegate: ExtractEntities):
        self.rules = rules
        self.delegate = delegate

    async def __call__(self, normalized: str, adapter: str | None, data_version: int | None) -> ExtractionOutcome:
        started = time.perf_counter()
        await self.rules.follow(data_version)
        reading = await self.rules.rules(normalized)
        if not no_model_can_be_asked(adapter, reading):
            return await self.delegate(normalized, adapter, data_version)
        self.rules.observer.on_extraction("rules", "not_asked")
        return rules_outcome(reading).model_copy(update={"timings_ms": {"rules": ms_since(started)}})
