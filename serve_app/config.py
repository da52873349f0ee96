"""The application's config tree: one pydantic model, validated once in the app builder.

Every ``configs/*.yaml`` file's ``args`` is an ``AppConfig``. Unknown fields are errors. Ray Serve
deployment options (replicas, autoscaling, queue bounds, CPUs/GPUs) are derived from it; the ``tunables``
of each component are its ``user_config``, applied in ``reconfigure()`` without restarting replicas.

Which copy of a tunable wins: ``build_app`` turns ``args.<component>.tunables`` into the deployment's
``user_config``; a ``user_config`` written in the file's ``deployments[]`` section is applied by Serve over
it (and is how operators change tunables live). Both pass the same pydantic model in ``reconfigure``, so a
bad live value fails the update instead of reaching a replica.

Process-level facts (database and Redis URLs, admin token) stay in ``Settings`` (environment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve_app.models.paths import ModelPaths

#: Ingress requests beyond admission control's bounds that Serve still routes (probes, the rejections).
INGRESS_PROBE_HEADROOM = 16
#: What Serve's proxy may hold for the ingress while no replica can take a request (one restarting).
INGRESS_PROXY_QUEUE = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Autoscaling(_Strict):
    """Ray Serve's queue-depth autoscaler: replicas = ongoing requests / target, within bounds."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float = Field(default=4, gt=0)
    upscale_delay_s: float = Field(default=3, ge=0)
    downscale_delay_s: float = Field(default=30, ge=0)
    # Replicas push metrics every 10 s by default; Ray requires the window to be longer than that.
    look_back_period_s: float = Field(default=15, gt=10)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class Resources(_Strict):
    """Per-replica deployment options."""

    num_cpus: float = Field(default=0.25, ge=0, description="Fractional so replicas can scale on few cores.")
    num_gpus: float = Field(default=0, ge=0)
    custom_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Ray custom resources each replica needs, e.g. {model_node: 0.5}: replicas go only to nodes "
        "started with that resource (ray start --resources).",
    )
    cpu_threads: int | None = Field(
        default=None,
        ge=1,
        description="OMP_NUM_THREADS in each replica (torch's CPU threads). Unset: Ray's choice, num_cpus rounded "
        "down and at least 1, so a model on CPU with fractional num_cpus computes on one core.",
    )
    max_ongoing_requests: int = Field(default=32, ge=1)
    max_queued_requests: int = Field(default=64, ge=-1, description="Beyond this callers get 503; -1 unbounded.")
    autoscaling: Autoscaling = Autoscaling()
    health_check_period_s: float = Field(default=10, gt=0)
    health_check_timeout_s: float = Field(default=30, gt=0)
    graceful_shutdown_timeout_s: float = Field(default=20, ge=0)

    def deployment_options(self, user_config: BaseModel) -> dict:
        actor_options: dict = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.custom_resources:
            actor_options["resources"] = dict(self.custom_resources)
        if self.cpu_threads is not None:
            # The environment, not torch.set_num_threads: OpenMP keeps the count per thread, and generation
            # runs in worker threads. Serve merges these env_vars with the application's runtime_env.
            actor_options["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": str(self.cpu_threads)}}
        return {
            "ray_actor_options": actor_options,
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "autoscaling_config": self.autoscaling.model_dump(exclude_none=True),
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
            "user_config": user_config.model_dump(mode="json"),
        }

    def ingress_options(self, user_config: BaseModel) -> dict:
        """The ingress's options: its own admission control holds ``max_ongoing_requests`` at work and
        ``max_queued_requests`` waiting, and answers past both with a JSON 503. Serve's bounds are set
        above those (room for probes), so requests queue in the replica rather than in Serve's proxy,
        whose own overflow answer is plain text."""
        options = self.deployment_options(user_config)
        if self.max_queued_requests < 0:  # an unbounded line: Serve's proxy may hold it
            options["max_ongoing_requests"] = self.max_ongoing_requests + INGRESS_PROBE_HEADROOM
            return options
        options["max_ongoing_requests"] = self.max_ongoing_requests + self.max_queued_requests + INGRESS_PROBE_HEADROOM
        options["max_queued_requests"] = INGRESS_PROXY_QUEUE
        return options


class IngressTunables(_Strict):
    rate_limit_per_s: float = Field(default=50, gt=0, description="Token-bucket refill per API key or client.")
    rate_limit_burst: int = Field(default=100, ge=1)
    result_cache_ttl_s: int = Field(default=3600, ge=1)
    local_cache_size: int = Field(default=10_000, ge=0)
    query_log_batch: int = Field(default=200, ge=1)
    query_log_interval_s: float = Field(default=1.0, gt=0)
    extract_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest wait for extraction (and the model) before a 504."
    )


class UploadLimits(_Strict):
    """Bounds on reading an uploaded file, checked as it is read and before any other work: a small file
    must not cost much (a 1.5 kB XLSX can claim 20,000 rows of 16,384 columns; a 22 kB zip can unpack to
    gigabytes). Past any of them the upload is a 422 naming the limit."""

    max_uncompressed_bytes: int = Field(
        default=128 * 2**20, ge=2**16, description="An XLSX's parts, unpacked, together."
    )
    max_columns: int = Field(default=64, ge=1, description="Columns of a row (or distinct keys of JSON lines).")
    max_cells: int = Field(default=4_000_000, ge=1000, description="Rows × columns of the table, padded.")
    max_cell_chars: int = Field(default=4096, ge=64, description="Characters of one cell or JSON value.")
    max_line_chars: int = Field(default=65_536, ge=256, description="Characters of one line of text.")
    parse_timeout_s: float = Field(default=10.0, gt=0, description="Longest a file may take to read.")


class IngressConfig(_Strict):
    resources: Resources = Resources(max_ongoing_requests=64, max_queued_requests=256)
    tunables: IngressTunables = IngressTunables()
    max_body_bytes: int = Field(default=16_384, ge=256, description="JSON bodies (a batch: this per line).")
    auth: Literal["open", "keys"] = Field(
        default="open",
        description="open: anyone may call (one tenant, 'open'; rate limits per client address). keys: every "
        "API call needs a tenant's X-API-Key (serve-app keys create).",
    )
    open_to_network: bool = Field(
        default=False,
        description="auth: open answers only its own machine (loopback) unless this is set: every caller of an "
        "open service is one tenant, who may list, download and delete every job.",
    )
    model_warming: bool = Field(
        default=False,
        description="A model is configured but still being built (serve-app up's first run deploys this way): "
        "requests naming an adapter get 503 model_warming; everything else is answered by the rules.",
    )
    max_batch_lines: int = Field(default=1000, ge=1, description="Lines in one POST /api/v1/query/batch.")
    max_upload_bytes: int = Field(default=32 * 2**20, ge=1024, description="Size of one bulk job's file.")
    body_grace_s: float = Field(
        default=1.5,
        gt=0,
        description="A body may take this long, plus its bytes at min_body_bytes_per_s (408 past it).",
    )
    min_body_bytes_per_s: int = Field(
        default=16_384, ge=1, description="The slowest a body may arrive after its grace: slow senders hold slots."
    )
    max_job_rows: int = Field(default=200_000, ge=1, description="Rows in one bulk job.")
    max_active_jobs_per_tenant: int = Field(default=20, ge=1, description="Jobs queued or running (429 past it).")
    max_stored_rows_per_tenant: int = Field(
        default=2_000_000, ge=1, description="Rows of a tenant's jobs kept (429 past it: delete finished jobs)."
    )
    upload_limits: UploadLimits = UploadLimits()


class JobTunables(_Strict):
    chunk_rows: int = Field(default=200, ge=1, description="Rows a worker takes, answers and commits at once.")
    concurrency: int = Field(default=16, ge=1, description="Rows of a chunk answered at the same time.")
    poll_interval_s: float = Field(default=0.5, gt=0, description="How often an idle worker looks for work.")
    hung_chunk_s: float = Field(
        default=600, gt=0, description="A chunk held this long with no word from its worker is given to another."
    )
    extract_timeout_s: float = Field(
        default=60, gt=0, description="Longest wait for a model reading of one row; past it the chunk is retried."
    )


class RetentionPolicy(_Strict):
    """How long what tenants send is kept: statement text is theirs, not ours to keep for ever."""

    query_log_days: int = Field(default=90, ge=1, description="Query-log rows (query text, client address).")
    job_days: int = Field(default=30, ge=1, description="Finished jobs, their rows and result files.")
    sweep_interval_s: float = Field(default=3600, gt=0, description="How often a job worker sweeps.")


class JobWorkerConfig(_Strict):
    """The bulk-job workers: a fixed number of replicas (they take work from PostgreSQL, not from requests)."""

    replicas: int = Field(default=1, ge=1)
    resources: Resources = Resources()
    tunables: JobTunables = JobTunables()
    retention: RetentionPolicy = RetentionPolicy()

    def deployment_options(self) -> dict:
        options = self.resources.deployment_options(self.tunables)
        del options["autoscaling_config"]
        return options | {"num_replicas": self.replicas}


#: The highest ``model_fallback_threshold``: a rules reading of confidence 1 is never sent to the model.
MAX_FALLBACK_THRESHOLD = 1.0


class ExtractorTunables(_Strict):
    model_fallback_threshold: float = Field(
        default=0.5,
        ge=0,
        le=MAX_FALLBACK_THRESHOLD,
        description="Rules confidence under which the default adapter is asked.",
    )
    default_adapter: str | None = Field(default=None, description="Adapter for low-confidence queries.")
    model_fallback_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest wait for the default adapter's reading; past it, or with the model replicas "
        "saturated, the rules' reading is the answer. Keep it under the ingress's extract_timeout_s.",
    )


class ExtractorConfig(_Strict):
    resources: Resources = Resources()
    tunables: ExtractorTunables = ExtractorTunables()


class ModelTunables(_Strict):
    max_batch_size: int = Field(default=16, ge=1, description="HFEngine's batches (vLLM's scheduler forms its own).")
    batch_wait_timeout_s: float = Field(default=0.01, ge=0, description="An idle engine waits this long for company.")
    #: Answers take 48 tokens at the median (p99 77) in format 1, 28 (p99 59) in format 2 (``answer_tokens.py``).
    max_new_tokens: int = Field(default=96, ge=1, le=512)


class VLLMOptions(_Strict):
    """VLLMEngine's engine arguments (HFEngine ignores them)."""

    memory_utilization: float = Field(
        default=0.9, gt=0, le=1, description="Share of GPU memory (on CPU: of host memory) vLLM reserves."
    )
    max_lora_rank: int = Field(default=16, ge=1, description="Largest adapter rank it can load; sizes LoRA buffers.")
    max_model_len: int = Field(default=512, ge=64, description="Prompt plus answer tokens per sequence.")
    enforce_eager: bool = Field(default=True, description="No CUDA graphs: faster start, slower GPU decoding.")
    structured_output: bool = Field(default=True, description="Constrain each output to its adapter's answer format.")


class ModelConfig(_Strict):
    engine: Literal["hf", "vllm"] = "hf"
    model_path: Path | None = Field(default=None, description="Base model folder; default: the demo model.")
    adapter_root: Path | None = Field(default=None, description="Adapter folders; default: models/adapters.")
    base_model_aliases: list[str] = Field(default_factory=list, description="Names adapters may give the base.")
    device: str = "cpu"
    dtype: str = "float32"
    #: The base's weights: int8 (hf on CPU), fp8 or bitsandbytes (vllm, GPU); adapters stay in full precision.
    quantization: Literal["none", "int8", "fp8", "bitsandbytes"] = "none"
    max_adapters_per_replica: int = Field(default=4, ge=1)
    preload_adapters: list[str] = Field(default_factory=list)
    vllm: VLLMOptions = VLLMOptions()
    resources: Resources = Resources(max_ongoing_requests=32, max_queued_requests=64)
    tunables: ModelTunables = ModelTunables()

    @model_validator(mode="after")
    def _fits(self) -> ModelConfig:
        if self.quantization == "int8" and (self.engine != "hf" or self.device != "cpu"):
            raise ValueError("model.quantization int8 is for engine hf on device cpu")
        if self.quantization in ("fp8", "bitsandbytes") and self.engine != "vllm":
            raise ValueError(f"model.quantization {self.quantization} is for engine vllm (on a GPU)")
        self.check_tunables(self.tunables)
        return self

    def check_tunables(self, tunables: ModelTunables) -> None:
        """Tunables this model config can run (checked at build and by a replica's live ``reconfigure``)."""
        if self.resources.max_ongoing_requests < tunables.max_batch_size:
            raise ValueError("model resources.max_ongoing_requests must be at least tunables.max_batch_size")
        if self.quantization == "int8" and tunables.max_batch_size != 1:
            # Dynamic int8 quantizes activations with one scale per batch: a reading would depend on the
            # readings batched with it, another tenant's among them.
            raise ValueError("model.quantization int8 reads one request at a time: set tunables.max_batch_size 1")

    def paths(self, models_dir: Path) -> ModelPaths:
        return ModelPaths.resolve(models_dir, self.model_path, self.adapter_root, self.base_model_aliases)


class AppConfig(_Strict):
    """``args`` of the Serve application (see ``configs/``)."""

    ingress: IngressConfig = IngressConfig()
    extractor: ExtractorConfig = ExtractorConfig()
    model: ModelConfig | None = Field(default=ModelConfig(), description="null: rules only, no model replicas.")
    jobs: JobWorkerConfig | None = Field(default=JobWorkerConfig(), description="null: no bulk-job workers.")

    @model_validator(mode="after")
    def _default_adapter_needs_a_model(self) -> AppConfig:
        if self.model is None and self.extractor.tunables.default_adapter is not None:
            raise ValueError("extractor.tunables.default_adapter needs model replicas (model is null)")
        return self
