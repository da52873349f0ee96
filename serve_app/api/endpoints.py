"""The route table: every endpoint with its handler's name, request and response models, success status
and the domain errors it may raise. Starlette's routes (``api.app``) and the OpenAPI document
(``api.openapi``) are both made from ``ENDPOINTS``, so neither can miss a route or disagree on a status."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from serve_app import errors as e
from serve_app.directory.browse import BankOut, BranchPage, BrowseQuery
from serve_app.directory.history import ChangePage, ChangeQuery, DirectoryInfo
from serve_app.jobs.outputs import ResultQuery
from serve_app.jobs.recheck import RecheckReport
from serve_app.jobs.review import DecisionIn, ReviewPage, ReviewQuery, ReviewRow
from serve_app.jobs.status import JobStatus
from serve_app.models.adapters import AdapterIn, AdapterOut
from serve_app.schemas import BatchRequest, BatchResponse, BranchRecordOut, JobParams, QueryRequest, QueryResult
from serve_app.service.confirmations import ConfirmationPage, ConfirmationQuery
from serve_app.training.run_store import TrainingRunIn, TrainingRunOut

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DEPENDENCY_ERRORS = (e.DependencyUnavailable, e.DependencyTimeout)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    name: str  # the handler's name in ``api.handlers.Handlers``
    summary: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    response_list: bool = False
    status: int = 200  # of a handler's reply that is not already a response (204: no body)
    errors: tuple[type[e.ServiceError], ...] = ()
    admin: bool = False
    tenant: bool = False  # needs a tenant's API key when the service runs with keys
    query: type[BaseModel] | None = None  # the query string's model
    upload: bool = False  # the body is a file (CSV, XLSX, JSON lines)
    media_type: str = "application/json"


_MODEL_ERRORS = (e.UnknownAdapter, e.AdapterInvalid, e.NoModelDeployment, e.Overloaded, e.ModelUnavailable)
JOB_ERRORS = (e.UnknownJob, *DEPENDENCY_ERRORS)
ENDPOINTS = (
    Endpoint("POST", "/api/v1/query", "query", "Answer one free-text query with a verdict.",
             QueryRequest, QueryResult, errors=(e.BodyTimeout, e.RateLimited, *_MODEL_ERRORS, *DEPENDENCY_ERRORS),
             tenant=True),
    Endpoint("POST", "/api/v1/query/batch", "query_batch", "Answer up to max_batch_lines queries, in order.",
             BatchRequest, BatchResponse,
             errors=(e.TooManyRows, e.BodyTimeout, e.RateLimited, *_MODEL_ERRORS, *DEPENDENCY_ERRORS),
             tenant=True),
    Endpoint("GET", "/api/v1/branches", "browse", "Directory records by bank, place and name text, a page at a time.",
             response=BranchPage, query=BrowseQuery, errors=DEPENDENCY_ERRORS, tenant=True),
    Endpoint("GET", "/api/v1/branches/{code}", "branch", "The directory record of a CNAPS code (410 once retired).",
             response=BranchRecordOut, errors=(e.InvalidCode, e.UnknownCode, e.RetiredCode, *DEPENDENCY_ERRORS),
             tenant=True),
    Endpoint("GET", "/api/v1/directory", "directory", "How current the directory is: as-of date, version, counts.",
             response=DirectoryInfo, errors=DEPENDENCY_ERRORS, tenant=True),
    Endpoint("GET", "/api/v1/directory/changes", "directory_changes",
             "What loads changed, code by code: retired, returned, renamed, moved, changed, new.",
             response=ChangePage, query=ChangeQuery, errors=DEPENDENCY_ERRORS, tenant=True),
    Endpoint("GET", "/api/v1/banks", "banks", "Institutions with their branch counts.", response=BankOut,
             response_list=True, errors=DEPENDENCY_ERRORS, tenant=True),
    Endpoint("POST", "/api/v1/jobs", "submit_job", "Reconcile a statement file (CSV, XLSX, JSON lines) in bulk.",
             response=JobStatus, status=201, query=JobParams, upload=True,
             errors=(e.BodyTooLarge, e.BodyTimeout, e.UnreadableFile, e.TooManyRows, e.UnknownAdapter, e.RateLimited,
                     e.QuotaExceeded, e.NoModelDeployment, *DEPENDENCY_ERRORS), tenant=True),
    Endpoint("GET", "/api/v1/jobs", "list_jobs", "The tenant's recent jobs.", response=JobStatus, response_list=True,
             errors=DEPENDENCY_ERRORS, tenant=True),
    Endpoint("GET", "/api/v1/jobs/{job_id}", "job", "A job's state and progress.", response=JobStatus,
             errors=JOB_ERRORS, tenant=True),
    Endpoint("GET", "/api/v1/jobs/{job_id}/result.csv", "job_result_csv", "Every input row with its answer (CSV).",
             query=ResultQuery, errors=(e.JobNotDone, *JOB_ERRORS), tenant=True, media_type="text/csv"),
    Endpoint("GET", "/api/v1/jobs/{job_id}/result.xlsx", "job_result_xlsx", "Every input row with its answer (XLSX).",
             query=ResultQuery, errors=(e.JobNotDone, *JOB_ERRORS), tenant=True, media_type=XLSX_TYPE),
    Endpoint("POST", "/api/v1/jobs/{job_id}/recheck", "recheck_job",
             "The finished job's rows whose code was retired or changed since, answered again.",
             response=RecheckReport, errors=(e.JobNotDone, e.RateLimited, *_MODEL_ERRORS, *JOB_ERRORS), tenant=True),
    Endpoint("DELETE", "/api/v1/jobs/{job_id}", "delete_job", "Delete a job and its rows.", status=204,
             errors=JOB_ERRORS, tenant=True),
    Endpoint("GET", "/api/v1/jobs/{job_id}/review", "review_job",
             "The job's rows to decide (ambiguous, none), with their candidates and any decision.",
             response=ReviewPage, query=ReviewQuery, errors=JOB_ERRORS, tenant=True),
    Endpoint("POST", "/api/v1/jobs/{job_id}/rows/{row}/decision", "decide_row",
             "A person's decision on a row: an active branch's code, or none. Kept as the tenant's confirmation.",
             DecisionIn, ReviewRow, errors=(e.UnknownRow, e.InvalidRequest, e.BodyTimeout, *JOB_ERRORS), tenant=True),
    Endpoint("GET", "/api/v1/confirmations", "list_confirmations",
             "The tenant's confirmations: texts it decided, newest first.", response=ConfirmationPage,
             query=ConfirmationQuery, errors=DEPENDENCY_ERRORS, tenant=True),
    Endpoint("GET", "/api/v1/confirmations.csv", "export_confirmations", "Every confirmation of the tenant (CSV).",
             errors=DEPENDENCY_ERRORS, tenant=True, media_type="text/csv"),
    Endpoint("DELETE", "/api/v1/confirmations/{confirmation_id}", "delete_confirmation",
             "Forget a confirmation: that text is answered as any text again.", status=204,
             errors=(e.UnknownConfirmation, *DEPENDENCY_ERRORS), tenant=True),
    Endpoint("POST", "/api/v1/adapters/{name}/training", "start_training",
             "Train a new revision of the adapter from its tenant's confirmations; it serves only if the gate passes.",
             TrainingRunIn, TrainingRunOut, status=202,
             errors=(e.UnknownAdapter, e.TrainingInProgress, e.Forbidden, e.NoModelDeployment, e.InvalidRequest,
                     e.BodyTimeout, *DEPENDENCY_ERRORS), tenant=True),
    Endpoint("GET", "/api/v1/adapters/{name}/training", "list_training", "The adapter's training runs, newest first.",
             response=TrainingRunOut, response_list=True, errors=(e.Forbidden, e.NoModelDeployment, *DEPENDENCY_ERRORS),
             tenant=True),
    Endpoint("GET", "/api/v1/adapters/{name}/training/{run_id}", "training_run",
             "A training run: state, step, loss, ETA, and the gate's report.", response=TrainingRunOut,
             errors=(e.UnknownTrainingRun, e.Forbidden, e.NoModelDeployment, *DEPENDENCY_ERRORS), tenant=True),
    Endpoint("GET", "/api/v1/query/model-cache-stats", "model_cache_stats", "Per-replica model statistics.",
             errors=(e.DependencyUnavailable,), admin=True),
    Endpoint("POST", "/api/v1/query/clear-model-cache", "clear_model_cache", "Unload every adapter.",
             errors=(e.DependencyUnavailable,), admin=True),
    Endpoint("GET", "/api/v1/adapters", "list_adapters", "Registered adapters.", response=AdapterOut,
             response_list=True, errors=DEPENDENCY_ERRORS, admin=True),
    Endpoint("POST", "/api/v1/adapters", "register_adapter", "Register an adapter folder.", AdapterIn, AdapterOut,
             status=201, errors=(e.AdapterInvalid, e.AdapterExists, e.NoModelDeployment, *DEPENDENCY_ERRORS),
             admin=True),
    Endpoint("DELETE", "/api/v1/adapters/{name}", "delete_adapter", "Remove an adapter from the registry.",
             status=204, errors=(e.UnknownAdapter, *DEPENDENCY_ERRORS), admin=True),
    Endpoint("GET", "/api/v1/stats", "stats", "This ingress replica's counters and tunables.", admin=True),
    Endpoint("GET", "/healthz", "healthz", "Liveness: the ingress answers."),
    Endpoint("GET", "/readyz", "readyz", "Readiness: the directory and the model replicas answer.",
             errors=(e.NotReady, *DEPENDENCY_ERRORS)),
    Endpoint("GET", "/openapi.json", "openapi", "This document."),
    Endpoint("GET", "/", "page", "The web page: search, browse, code lookup, file reconciliation.",
             media_type="text/html"),
)  # fmt: skip
