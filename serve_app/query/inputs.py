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

import re
from datetime import date

from pydantic import BaseModel, ConfigDict

from serve_app.directory.codes import CodeInText, split_code
from serve_app.extraction.levels import LEVEL_AT_END, is_whole_name
from serve_app.normalize import normalize, simplified
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


#: A region in brackets after a bank's name is the entity, not an annotation: 中国银行（香港）有限公司 is the
#: Hong Kong bank, no branch of 中国银行 in the directory. Kept as words, so the place is read and vetoes
#: every mainland branch, where normalization would drop it with its brackets.
_REGION_IN_BRACKETS = re.compile(r"[(（](香港|澳门|澳門|台湾|台灣)[)）]")


#: A branch's name in brackets after its bank's, as forms print an 开户行 (华夏银行（江油西山支行）), is the name,
#: not an annotation, unless a name already ends before it (…西山支行（原江油支行）: a former name). Only a name
#: ending in a level: the directory itself writes units so as annotations (…村镇银行有限责任公司（清算中心）), and
#: its names are read without them.
_IN_BRACKETS = re.compile(r"[(（]([^()（）]{1,30})[)）]")
#: Characters before a bracket that say whether a name ends there: more than any level or unit.
_BEFORE_BRACKET = 12


def _branch_out_of_brackets(text: str) -> str:
    def unbracket(match: re.Match[str]) -> str:
        name, whole = match.group(1), match.group(0)
        before = simplified(text[max(match.start() - _BEFORE_BRACKET, 0) : match.start()]).strip()
        named = LEVEL_AT_END.search(simplified(name).strip()) is not None and not is_whole_name(before)
        return name if named else whole

    return _IN_BRACKETS.sub(unbracket, text)


def read_text(text: str) -> tuple[str, CodeInText | None]:
    """The words of ``text`` as extraction reads them (normalized, without the code; of a statement row, the
    bank's field), and the code it carries."""
    code, words = split_code(text)
    words = _branch_out_of_brackets(_REGION_IN_BRACKETS.sub(r"\1", words))
    return normalize(bank_field(words)), code


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
