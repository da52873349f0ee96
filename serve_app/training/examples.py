"""Supervised examples for an adapter, built from directory records: the way people write a branch, and the
record's own fields as the answer.

The labels are ground truth (the record's bank, city, district and branch), never the rules' reading, so
an adapter can learn what the rules get wrong. Each *style* writes one record as a tenant's text would;
a *tenant* is a set of styles (``TENANT_STYLES``). These phrasings are this module's own: the
evaluations (``benchmarks/noise.py``) use different operators and templates, so an evaluation measures
text the adapter never saw written that way.

Records are split by a hash of their code (``is_training_record``), the same split the verdict model
is fit on: an adapter trains on one half, and ``evaluate_adapter`` and ``benchmarks/eval_model.py``
measure it on the other.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from serve_app.directory.institutions import registered_english_names
from serve_app.directory.records import BranchRecord
from serve_app.normalize import normalize

Style = Callable[[BranchRecord, random.Random], str | None]

_LEVEL = re.compile(r"(分行营业部|营业部|营业室|分理处|储蓄所|营业所|信用社|支行|分行)$")
_STATEMENT_LABELS = ("收款人开户行：", "汇入行：", "开户行名称 ", "对方行 ", "收款银行:")
_QUESTIONS = (
    "{bank}{branch}联行号查询",
    "查一下{bank}{branch}行号",
    "{bank}{branch}的支付系统行号是多少",
    "我要给{bank}{branch}汇款，行号多少",
    "{bank}{branch}在哪个城市",
)
_ENGLISH_LABELS = ("", "", "BENEFICIARY BANK: ", "PAYEE BANK ", "Bank name: ")


def is_training_record(code: str) -> bool:
    """The half of the directory adapters train on and the verdict model is fit on (``eval_verdict``'s "fit")."""
    return zlib.crc32(code.encode()) % 2 == 0


def answer_of(record: BranchRecord) -> dict[str, str]:
    """What the adapter should answer for any text that names ``record`` (written out by an answer format)."""
    fields = {"bank": record.bank_name, "city": record.city, "district": record.district, "branch": record.branch}
    return {name: value for name, value in fields.items() if value}


def _official(record: BranchRecord, rng: random.Random) -> str:
    return record.name


def _statement(record: BranchRecord, rng: random.Random) -> str:
    text = record.name
    if rng.random() < 0.5:
        cut = rng.randrange(1, len(text))
        text = text[:cut] + " " + text[cut:]
    return rng.choice(_STATEMENT_LABELS) + text


def _question(record: BranchRecord, rng: random.Random) -> str | None:
    if not _LEVEL.search(record.branch):
        return None
    return rng.choice(_QUESTIONS).format(bank=record.bank_name, branch=record.branch)


def _short(record: BranchRecord, rng: random.Random) -> str:
    return record.bank_name + record.branch


def _english_bank(record: BranchRecord, rng: random.Random) -> str | None:
    english = registered_english_names().get(record.bank_name)
    if english is None:
        return None
    english = english.upper() if rng.random() < 0.6 else english
    return rng.choice(_ENGLISH_LABELS) + english + rng.choice((" ", "  ", ", ")) + record.branch


TENANT_STYLES: dict[str, dict[str, Style]] = {
    # Payment teams' statement exports and the questions their staff type.
    "statements": {"official": _official, "statement": _statement, "question": _question, "short": _short},
    # Cross-border and foreign-currency statements: the bank by its registered English name.
    "english": {"english_bank": _english_bank, "official": _official},
}


@dataclass(frozen=True)
class Example:
    """One supervised example: the normalized query (what the model is shown) and the answer."""

    query: str
    answer: dict[str, str]
    style: str
    code: str


def build_examples(records: Iterable[BranchRecord], styles: dict[str, Style], count: int, seed: int) -> list[Example]:
    """``count`` examples over ``records`` (cycled in a seeded random order), styles taken in turn."""
    rng = random.Random(seed)
    pool = list(records)
    if not pool:
        raise ValueError("no records to build examples from")
    rng.shuffle(pool)
    names = list(styles)
    examples: list[Example] = []
    attempts = 0
    while len(examples) < count and attempts < count * 4:
        record = pool[attempts % len(pool)]
        style = names[attempts % len(names)]
        attempts += 1
        text = styles[style](record, rng)
        if text:
            examples.append(Example(normalize(text), answer_of(record), style, record.code))
    return examples
