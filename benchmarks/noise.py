"""Noise operators that turn official branch names into what people type, with the answers that stay right.

Each operator takes a directory record and a random generator and returns the noisy query, or None when
it does not apply to that record. Each also has an ``information`` function: the part of a record the
query still carries. Every record with the same information as the gold record is an equally right
answer (dropping the city from "中国工商银行北京新华支行" leaves every ICBC 新华支行 right).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import opencc

from serve_app.directory.banks import ALIASES
from serve_app.directory.gazetteer import Gazetteer, stem
from serve_app.normalize import normalize

Record = dict  # code, name, bank_name, search_name, branch, province, city, district

_S2T = opencc.OpenCC("s2t")
_LEVEL = re.compile(r"(分行营业部|营业部|营业室|分理处|储蓄所|营业所|信用社|支行|分行)$")
_LOCAL_FORMS = (("农村商业银行", "农商银行"), ("农村信用合作联社", "农村信用社"), ("农村合作银行", "农合行"))
_ENGLISH_PREFIXES = ("THE PEOPLE'S BANK OF CHINA ", "PEOPLE'S BANK OF CHINA ", "The Peoples Bank of China ")
_FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def _place_names(record: Record) -> list[str]:
    names = []
    for value in (record["province"], record["city"], record["district"]):
        if value:
            names += [value, stem(value)]
            names += [r.short for r in Gazetteer.default().named(value)]
    return sorted({n for n in names if len(n) >= 2}, key=len, reverse=True)


def _strip_places(text: str, record: Record) -> str:
    for name in _place_names(record):
        text = text.replace(name, "")
    return text


def clean(record: Record, rng: random.Random) -> str | None:
    return record["name"]


def alias(record: Record, rng: random.Random) -> str | None:
    bank = record["bank_name"]
    choices = [a for a in ALIASES.get(bank, ()) if not a.isascii()]
    for long, short in _LOCAL_FORMS:
        if bank.endswith(long):
            choices.append(bank[: -len(long)] + short)
    if not choices:
        return None
    return rng.choice(choices) + record["branch"]


def drop_location(record: Record, rng: random.Random) -> str | None:
    """Drop province/city/district names; only where a name is left (南康支行 minus 南康 says nothing)."""
    stripped = _strip_places(record["branch"], record)
    if stripped == record["branch"] or len(_LEVEL.sub("", stripped)) < 2:
        return None
    return record["bank_name"] + stripped


def ocr_spaces(record: Record, rng: random.Random) -> str | None:
    chars = list(record["name"])
    for _ in range(rng.randint(1, 3)):
        chars.insert(rng.randrange(1, len(chars)), " ")
    return "".join(chars)


def english_prefix(record: Record, rng: random.Random) -> str | None:
    return rng.choice(_ENGLISH_PREFIXES) + record["name"]


def traditional(record: Record, rng: random.Random) -> str | None:
    converted = _S2T.convert(record["name"])
    return converted if converted != record["name"] else None


def fullwidth(record: Record, rng: random.Random) -> str | None:
    annotation = rng.choice(("(不对外营业)", "(原营业网点)", ""))
    return (record["name"] + annotation).translate(str.maketrans(_FULLWIDTH)).replace(" ", "\u3000")


def truncation(record: Record, rng: random.Random) -> str | None:
    branch = record["branch"]
    if len(branch) < 4:
        return None
    keep = rng.randint(2, len(branch) - 2)
    return record["bank_name"] + branch[:keep]


def suffix_variant(record: Record, rng: random.Random) -> str | None:
    branch = record["branch"]
    level = _LEVEL.search(branch)
    if not level or len(branch) - len(level.group(1)) < 2:
        return None
    body = branch[: level.start()]
    variant = {"营业部": "营业室", "营业室": "营业部", "分理处": "分理"}.get(level.group(1), "")
    return record["bank_name"] + body + variant


def _same_text(record: Record) -> str:
    return record["search_name"]


def _without_places(record: Record) -> tuple:
    return (record["bank_name"], _strip_places(record["branch"], record))


def _without_level(record: Record) -> tuple:
    return (record["bank_name"], _LEVEL.sub("", record["branch"]))


@dataclass(frozen=True)
class Operator:
    name: str
    apply: Callable[[Record, random.Random], str | None]
    #: The record's information the query keeps; None when the query keeps the exact name.
    information: Callable[[Record], object] = _same_text
    #: For truncation: a prefix test instead of equality.
    prefix: bool = False


OPERATORS = (
    Operator("clean", clean),
    Operator("alias", alias),
    Operator("drop_location", drop_location, _without_places),
    Operator("ocr_spaces", ocr_spaces),
    Operator("english_prefix", english_prefix),
    Operator("traditional", traditional),
    Operator("fullwidth", fullwidth),
    Operator("truncation", truncation, prefix=True),
    Operator("suffix_variant", suffix_variant, _without_level),
)


def right_answers(operator: Operator, gold: Record, query: str, records: list[Record], index: dict) -> set[str]:
    """Codes of every record that the query fits as well as the gold one."""
    if operator.prefix:
        text = normalize(query)
        return {r["code"] for r in index["by_bank"][gold["bank_name"]] if r["search_name"].startswith(text)}
    key = operator.information(gold)
    return {r["code"] for r in index[operator.name].get(key, [])} | {gold["code"]}


def build_index(records: list[Record]) -> dict:
    index: dict = {"by_bank": {}}
    for record in records:
        index["by_bank"].setdefault(record["bank_name"], []).append(record)
    for operator in OPERATORS:
        if operator.prefix:
            continue
        groups: dict = {}
        for record in records:
            groups.setdefault(operator.information(record), []).append(record)
        index[operator.name] = groups
    return index
