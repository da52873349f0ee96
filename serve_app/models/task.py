"""The extraction task for the model: versioned answer formats, each a prompt, a writer, a strict reader
and a decoding constraint.

An adapter is trained for one format, and its folder says which (``answer_format.json``, written by the
trainer); a folder without that file was trained before formats were versioned and answers in format 1.
``format_of`` reads it when an adapter is validated, so an unknown version is refused at registration
(and at load) with a clear error. The engine prompts each request in its adapter's format and reads the
answer with that format's parser: anything else — wrong shape, unknown fields, cut short — is reported
as invalid with the reason, never raised, and the caller falls back to the rules' reading.

Tokens per answer over the directory sample with SmolLM2's tokenizer (``benchmarks/answer_tokens.py``):
format 1 (JSON) 48 at the median, format 2 (compact) 28. Most of what format 2 saves is not the keys and
quotes but words the reader can restore exactly: an English-centric byte-level tokenizer pays two to three
tokens per Chinese character. Format 1 stays the default: the demo's adapters trained for format 2 on the
same budget answered 25 tokens instead of 45 but were worse end to end (``benchmarks/eval_model.py``:
invalid answers 1.8 % → 13.8 %, right matches 90.0 % → 84.4 %; docs/models.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from serve_app.errors import AdapterInvalid
from serve_app.models.engine import Abandonment, AdapterSpec, GenerationRequest
from serve_app.schemas import Entities

#: Entity fields a model may answer (format 1's JSON keys); the province follows from the city.
MODEL_FIELDS = ("bank", "province", "city", "district", "branch")
#: Fields an adapter writes, in the order it writes them.
ANSWER_FIELDS = ("bank", "city", "district", "branch")
#: Longest value a model may write for one field, in characters (directory names are shorter).
MAX_FIELD_CHARS = 40
FORMAT_FILE = "answer_format.json"


class ModelAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entities: Entities | None
    valid: bool
    error: str | None = None
    raw: str


def _invalid(text: str, reason: str) -> ModelAnswer:
    return ModelAnswer(entities=None, valid=False, error=reason, raw=text)


def _entities(text: str, values: Mapping[str, object]) -> ModelAnswer:
    try:
        entities = Entities(**{key: (value or None) for key, value in values.items()})
    except (ValidationError, TypeError) as exc:
        return _invalid(text, f"does not fit the entity schema: {exc}")
    return ModelAnswer(entities=entities, valid=True, raw=text)


class AnswerFormat:
    """What every format has: a version, a name and a prompt. Each subclass writes (training), reads
    (strictly) and constrains (vLLM's structured output) its own answers."""

    version: int
    name: str
    #: Short on purpose: every token of it is computed for every query.
    prompt_template: str

    def prompt(self, normalized_query: str) -> str:
        return self.prompt_template.format(query=normalized_query)

    def request(
        self, normalized_query: str, adapter: str | None, max_new_tokens: int, abandonment: Abandonment | None = None
    ) -> GenerationRequest:
        """The request a model replica makes to read ``normalized_query`` with ``adapter`` in this format."""
        return GenerationRequest(self.prompt(normalized_query), adapter, max_new_tokens, abandonment, self.version)

    def write(self, answer: Mapping[str, str]) -> str:
        raise NotImplementedError

    def read(self, text: str, finished: bool = True) -> ModelAnswer:
        """The model's output; ``finished`` is False when generation hit its token limit."""
        raise NotImplementedError

    def constraint(self) -> dict:
        """vLLM's structured-output arguments that admit exactly this format."""
        raise NotImplementedError


class JsonFormat(AnswerFormat):
    """Format 1: one compact JSON object, fields in ``ANSWER_FIELDS`` order, missing fields left out."""

    version = 1
    name = "json"
    prompt_template = "Bank branch to JSON.\nQuery: {query}\nJSON: "
    schema: ClassVar[dict] = {
        "type": "object",
        "properties": {name: {"type": ["string", "null"], "maxLength": MAX_FIELD_CHARS} for name in MODEL_FIELDS},
        "required": list(MODEL_FIELDS),
        "additionalProperties": False,
    }

    def write(self, answer: Mapping[str, str]) -> str:
        ordered = {name: answer[name] for name in ANSWER_FIELDS if answer.get(name)}
        return json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))

    def read(self, text: str, finished: bool = True) -> ModelAnswer:
        try:
            data = json.loads(text.strip())
        except json.JSONDecodeError as exc:
            return _invalid(text, "output cut short before the JSON closed" if not finished else f"not JSON: {exc.msg}")
        if not isinstance(data, dict):
            return _invalid(text, "JSON is not an object")
        return _entities(text, data)

    def constraint(self) -> dict:
        return {"json": self.schema}


class CompactFormat(AnswerFormat):
    """Format 2: ``bank|city|district|branch`` — no keys, no quotes, a missing field empty — with words the
    reader restores exactly left out:

    - a field's usual ending (``…银行``, ``…市``, ``…支行``) is dropped when the reader, which adds it back
      unless the value already ends in a word of its kind, gets the same value again;
    - a branch that starts with its city's short name (the city less 市) is written ``~`` and the rest, with
      its district's ``^`` and the rest (the directory spells most branches that way: 北京新华支行);
    - a value the reader would change otherwise is written verbatim behind ``=``.

    ``read(write(answer)) == answer`` for every answer; ``tests/test_answer_formats.py`` checks it over the whole
    directory sample and arbitrary text.
    """

    version = 2
    name = "compact"
    prompt_template = "Bank branch, compact.\nQuery: {query}\nAnswer: "
    #: field → (the ending the writer may drop, endings after which the reader adds nothing)
    endings: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "bank": ("银行", ("银行", "社", "公司")),
        "city": ("市", ("市", "自治州", "地区", "盟", "区", "县", "划")),
        "branch": ("支行", ("行", "部", "处", "所", "社", "室", "中心", "点", "科", "厅", "站", "组")),
    }
    places = (("~", "city"), ("^", "district"))
    pattern = rf"[^|\n]{{0,{MAX_FIELD_CHARS + 1}}}(\|[^|\n]{{0,{MAX_FIELD_CHARS + 1}}}){{3}}"

    def write(self, answer: Mapping[str, str]) -> str:
        values = {name: answer.get(name) or "" for name in ANSWER_FIELDS}
        if any("|" in value or "\n" in value for value in values.values()):
            raise ValueError(f"an answer field holds '|' or a line break: {values}")
        branch = values["branch"]
        written = {name: self._shorten(name, values[name]) for name in ("bank", "city", "district")}
        written["branch"] = self._shorten("branch", branch)
        for mark, place in self.places:
            short = _short_place(values[place])
            if short and branch.startswith(short) and len(branch) > len(short):
                written["branch"] = mark + self._shorten("branch", branch[len(short) :])
                break
        return "|".join(written[name] for name in ANSWER_FIELDS)

    def read(self, text: str, finished: bool = True) -> ModelAnswer:
        if not finished:
            return _invalid(text, "output cut short before the answer ended")
        parts = text.strip().split("|")
        if len(parts) != len(ANSWER_FIELDS):
            return _invalid(text, f"expected {len(ANSWER_FIELDS)} fields separated by '|', found {len(parts)}")
        values = dict(zip(ANSWER_FIELDS, parts, strict=True))
        if any("\n" in value or len(value) > MAX_FIELD_CHARS + 1 for value in values.values()):
            return _invalid(text, f"a field spans lines or is longer than {MAX_FIELD_CHARS} characters")
        read = {name: self._restore(name, values[name]) for name in ("bank", "city", "district")}
        branch = values["branch"]
        for mark, place in self.places:
            if branch.startswith(mark):
                short = _short_place(read[place])
                if not short:
                    return _invalid(text, f"the branch starts with {mark!r} but no {place} is given")
                read["branch"] = short + self._restore("branch", branch[len(mark) :])
                break
        else:
            read["branch"] = self._restore("branch", branch)
        return _entities(text, read)

    def constraint(self) -> dict:
        return {"regex": self.pattern}

    def _restore(self, field: str, value: str) -> str:
        if value.startswith("="):
            return value[1:]
        if field not in self.endings or not value:
            return value
        ending, complete = self.endings[field]
        return value if value.endswith(complete) else value + ending

    def _shorten(self, field: str, value: str) -> str:
        if field in self.endings:
            ending = self.endings[field][0]
            if value.endswith(ending) and len(value) > len(ending):
                short = value[: -len(ending)]
                if not short.startswith(("=", "~", "^")) and self._restore(field, short) == value:
                    return short
        if value.startswith(("=", "~", "^")) or self._restore(field, value) != value:
            return "=" + value
        return value


def _short_place(name: str | None) -> str:
    """A city or district as branch names start with it: 北京市 → 北京, 西山区 → 西山, 江油市 → 江油."""
    if not name:
        return ""
    return name[:-1] if name.endswith(("市", "区", "县")) and len(name) > 2 else name


FORMATS: dict[int, AnswerFormat] = {1: JsonFormat(), 2: CompactFormat()}
#: What adapters are trained for unless asked otherwise, and what the base model alone is prompted with.
DEFAULT_FORMAT = FORMATS[1]


def format_for(spec: AdapterSpec | None) -> AnswerFormat:
    """The format a request is prompted and read in: its adapter's, or ``DEFAULT_FORMAT`` for the base alone."""
    return DEFAULT_FORMAT if spec is None else FORMATS[spec.answer_format]


def format_of(folder: Path) -> AnswerFormat:
    """The answer format the adapter in ``folder`` was trained for; ``AdapterInvalid`` for one this service
    cannot read. No ``answer_format.json``: format 1 (adapters trained before formats were versioned)."""
    marker = folder / FORMAT_FILE
    if not marker.is_file():
        return FORMATS[1]
    try:
        version = json.loads(marker.read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AdapterInvalid(f"unreadable {FORMAT_FILE} in {folder.name} ({exc})") from exc
    if version not in FORMATS or isinstance(version, bool):
        known = ", ".join(str(v) for v in FORMATS)
        raise AdapterInvalid(
            f"adapter in {folder.name} answers in format {version!r}, which this service cannot read (it reads {known})"
        )
    return FORMATS[version]


def mark_format(folder: Path, answer_format: AnswerFormat) -> None:
    """Record in an adapter folder which format it was trained for (``format_of`` reads it)."""
    (folder / FORMAT_FILE).write_text(json.dumps({"version": answer_format.version, "name": answer_format.name}))
