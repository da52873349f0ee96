"""Ray Serve custom metrics, exported through Ray's Prometheus endpoint (names prefixed ``serve_app_``).

Created inside replicas (Ray metrics need a running worker). ``serve_app`` keeps plain counters; the
ingress turns their deltas into Ray counters, so the logic stays free of Ray.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from ray.serve import metrics

from serve_app.directory.snapshots import CHANGE_KINDS

LATENCY_MS_BOUNDARIES = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


class IngressMetrics:
    def __init__(self) -> None:
        self.queries = metrics.Counter(
            "serve_app_queries_total",
            description="Answered queries by source and verdict.",
            tag_keys=("source", "verdict"),
        )
        self.query_ms = metrics.Histogram(
            "serve_app_query_ms",
            description="Query latency inside the ingress, by source (the path: cache, rules, model).",
            boundaries=LATENCY_MS_BOUNDARIES,
            tag_keys=("source",),
        )
        self.retrieval_ms = metrics.Histogram(
            "serve_app_retrieval_ms",
            description="PostgreSQL retrieval latency (uncached queries).",
            boundaries=LATENCY_MS_BOUNDARIES,
        )
        self.result_cache = metrics.Counter(
            "serve_app_result_cache_total", description="Result cache lookups by outcome.", tag_keys=("outcome",)
        )
        self.redis_errors = metrics.Counter("serve_app_redis_errors_total", description="Failed Redis calls (cache).")
        self.rate_limit = metrics.Counter(
            "serve_app_rate_limit_total", description="Rate-limit decisions.", tag_keys=("decision",)
        )
        self.query_log = metrics.Counter(
            "serve_app_query_log_rows_total", description="Query-log rows by fate.", tag_keys=("fate",)
        )
        self.query_log_pending = metrics.Gauge(
            "serve_app_query_log_pending", description="Query-log rows buffered in this replica, not yet written."
        )
        self.dependency_up = metrics.Gauge(
            "serve_app_dependency_up",
            description="1 while this replica's last call to the dependency succeeded, else 0.",
            tag_keys=("dependency",),
        )
        self.directory_branches = metrics.Gauge(
            "serve_app_directory_branches",
            description="Directory codes by state: active (payable) and retired (left a snapshot).",
            tag_keys=("state",),
        )
        self.directory_as_of = metrics.Gauge(
            "serve_app_directory_as_of_timestamp_seconds",
            description="The date the directory is a snapshot of (midnight UTC, Unix seconds).",
        )
        self.directory_loaded = metrics.Gauge(
            "serve_app_directory_last_load_timestamp_seconds", description="When the last directory load committed."
        )
        self.directory_changed = metrics.Gauge(
            "serve_app_directory_last_load_changes",
            description="Codes the last directory load changed, by kind (new, retired, renamed, moved, ...).",
            tag_keys=("kind",),
        )
        self._last: dict[tuple[str, str], float] = {}

    def export_directory(self, info) -> None:
        """The directory's gauges from a ``DirectoryInfo`` (read when its data version changes)."""
        self.directory_branches.set(info.active, tags={"state": "active"})
        self.directory_branches.set(info.retired, tags={"state": "retired"})
        if info.as_of is not None:
            self.directory_as_of.set(datetime.combine(info.as_of, time.min, UTC).timestamp())
        if info.last_load is not None:
            self.directory_loaded.set(info.last_load.loaded_at.timestamp())
            for kind, count in info.last_load.counts.items():
                if kind in CHANGE_KINDS:
                    self.directory_changed.set(count, tags={"kind": kind})

    def observe(self, result, cached: bool) -> None:
        self.queries.inc(tags={"source": result.source, "verdict": result.verdict})
        self.query_ms.observe(result.timings_ms.get("total", 0.0), tags={"source": result.source})
        if not cached and "retrieve" in result.timings_ms:
            self.retrieval_ms.observe(result.timings_ms["retrieve"])

    def export(self, service, database_up: bool) -> None:
        """Add what the service's counters gained since the last call; set the gauges."""
        self.query_log_pending.set(service.query_log.pending)
        self.dependency_up.set(1 if service.result_cache.stats.redis_up else 0, tags={"dependency": "redis"})
        self.dependency_up.set(1 if database_up else 0, tags={"dependency": "postgres"})
        cache, limiter, log = service.result_cache.stats, service.rate_limiter.stats, service.query_log
        self._delta(self.result_cache, "outcome", "local_hit", cache.local_hits)
        self._delta(self.result_cache, "outcome", "redis_hit", cache.redis_hits)
        self._delta(self.result_cache, "outcome", "miss", cache.misses)
        self._delta(self.result_cache, "outcome", "coalesced", cache.coalesced)
        self._delta(self.redis_errors, None, "", cache.redis_errors)
        self._delta(self.rate_limit, "decision", "allowed", limiter.allowed)
        self._delta(self.rate_limit, "decision", "rejected", limiter.rejected)
        self._delta(self.query_log, "fate", "written", log.written)
        self._delta(self.query_log, "fate", "dropped", log.dropped)

    def _delta(self, counter, tag: str | None, value: str, total: float) -> None:
        key = (counter.info["name"], value)
        gained = total - self._last.get(key, 0)
        if gained > 0:
            counter.inc(gained, tags={tag: value} if tag else None)
        self._last[key] = total


class ExtractorMetrics:
    """The ``ExtractionService``'s observer."""

    def __init__(self) -> None:
        self.extractions = metrics.Counter(
            "serve_app_extractions_total",
            description="Extractions by source (rules, model) and model outcome.",
            tag_keys=("source", "outcome"),
        )

    def on_extraction(self, source: str, outcome: str) -> None:
        self.extractions.inc(tags={"source": source, "outcome": outcome})


class ModelMetrics:
    """Adapter residency events (the residency's observer) and batch sizes."""

    def __init__(self) -> None:
        self.loads = metrics.Counter(
            "serve_app_adapter_loads_total", description="Adapter loads.", tag_keys=("adapter",)
        )
        self.evictions = metrics.Counter(
            "serve_app_adapter_evictions_total", description="Adapter evictions.", tag_keys=("adapter",)
        )
        self.load_seconds = metrics.Histogram(
            "serve_app_adapter_load_seconds",
            description="Adapter load time.",
            boundaries=[0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30],
            tag_keys=("adapter",),
        )
        self.batch_size = metrics.Histogram(
            "serve_app_model_batch_size",
            description="Requests per generation batch.",
            boundaries=[1, 2, 4, 8, 16, 32, 64, 128],
        )

    def on_adapter_event(self, event: str, adapter: str, seconds: float | None) -> None:
        tags = {"adapter": adapter}
        if event == "load":
            self.loads.inc(tags=tags)
            if seconds is not None:
                self.load_seconds.observe(seconds, tags=tags)
        elif event == "evict":
            self.evictions.inc(tags=tags)


class JobMetrics:
    """The bulk worker's observer: rows answered by verdict, chunks committed or rolled back."""

    def __init__(self) -> None:
        self.rows = metrics.Counter(
            "serve_app_job_rows_total", description="Bulk-job rows answered, by verdict.", tag_keys=("verdict",)
        )
        self.chunks = metrics.Counter(
            "serve_app_job_chunks_total", description="Bulk-job chunks by outcome.", tag_keys=("outcome",)
        )
        self.swept = metrics.Gauge(
            "serve_app_retention_last_sweep_deleted",
            description="Rows the last retention sweep deleted, by table.",
            tag_keys=("table",),
        )

    def on_sweep(self, deleted: dict[str, int]) -> None:
        for table, count in deleted.items():
            self.swept.set(count, tags={"table": table})

    def on_chunk(self, verdicts: dict[str, int] | None) -> None:
        if verdicts is None:
            self.chunks.inc(tags={"outcome": "rolled_back"})
            return
        self.chunks.inc(tags={"outcome": "committed"})
        for verdict, count in verdicts.items():
            self.rows.inc(count, tags={"verdict": verdict})
