"""``AnswerInputs``: everything one answer is computed from, read once from a request.

``pipeline.compute_answer`` reads nothing of a request but these, and the result cache keys on all of them
(``ResultCache.key``), so an input added here is in the cache key by construction: an answer can never
depend on something its key forgot, such as a code written in the text that normalization drops with
its brackets. What the inputs do not name is the same for every caller: the directory's rows (named by
``data_version``) and the code that reads and judges them (named by the normalizer, extractor and verdict
versions in the key).

The inputs hold nothing of the caller but what changes its answer: the adapter it names, and its tenant's
confirmation of this text (a person's decision, ``service.confirmations``), if it has one. A tenant without
a confirmation of a text shares the cache entry of every other such tenant; one with a confirmation has
its own entry, keyed on the decision.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict

from serve_app.directory.codes import CodeInText, split_code
from serve_app.normalize import normalize
from serve_app.query.brackets import names_out_of_brackets
from serve_app.query.fields import bank_field
from serve_app.schemas import Confirmation, QueryRequest


class AnswerInputs(BaseModel):
    """What an answer depends on: the text as extraction reads it, the code as the text writes it, the
    adapter asked, how many matches are shown, and the directory version the answer is made against."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The words as extraction reads them: normalized, without the code they carry.
    normalized: str
    #: The 12-digit code the raw text carries (``find_code``), if any, read before normalization (which
    #: drops bracketed annotations, where statement lines keep codes).
    code: CodeInText | None
    #: The adapter to extract with: ``name@revision`` in the service, the request's name offline; None: rules.
    adapter: str | None
    top_k: int
    #: The directory version the answer is computed and cached at (None: the directory as it is), and the
    #: as-of date of its snapshot (determined by the version; carried so the answer can say it).
    data_version: int | None
    directory_as_of: date | None = None
    #: The caller's tenant's decision on this text, if it has one (checked against the directory when used).
    confirmation: Confirmation | None = None

    @property
    def text_key(self) -> str:
        """The text as a tenant's decision on it is kept and found: the normalized words, then ``#code`` when
        the text carries a code."""
        return text_key(self.normalized, self.code)


def text_key(normalized: str, code: CodeInText | None) -> str:
    return f"{normalized} #{code.code}" if code is not None else normalized


def read_text(text: str) -> tuple[str, CodeInText | None]:
    """The words of ``text`` as extraction reads them (normalized, without the code; of a statement row, the
    bank's field), and the code it carries."""
    code, words = split_code(text)
    return normalize(bank_field(names_out_of_brackets(words))), code


def read_inputs(
    request: QueryRequest,
    adapter: str | None,
    data_version: int | None,
    directory_as_of: date | None = None,
    confirmation: Confirmation | None = None,
) -> AnswerInputs:
    """The inputs of ``request``'s answer. ``adapter``: the adapter to ask, already resolved by the caller
    (the request's ``model``, or a job's adapter, as ``name@revision`` in the service)."""
    normalized, code = read_text(request.query)
    return AnswerInputs(
        normalized=normalized,
        code=code,
        adapter=adapter,
        top_k=request.top_k,
        data_version=data_version,
        directory_as_of=directory_as_of,
        confirmation=confirmation,
    )
