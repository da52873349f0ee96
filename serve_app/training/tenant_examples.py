"""What a tenant's adapter learns from, and what its gate measures: the tenant's confirmations and
directory records written in the tenant's styles.

A confirmation with a code is an example in the tenant's own words: its text (as the model is shown it:
normalized, without a code it carries), answered with the confirmed branch's fields. Confirmations whose
branch has since been retired, renamed or moved are left out, as are "no such branch" decisions (they
name no fields to learn). One confirmation in four (by a hash of its text) is held out for the gate, and
so is the directory's evaluation half (``is_training_record`` false): nothing the gate measures was
trained on.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import asyncpg

from serve_app.directory.records import BranchRecord
from serve_app.query.inputs import read_text
from serve_app.training.examples import TENANT_STYLES, Example, answer_of, build_examples, is_training_record

#: Each confirmation is shown this many times per pass over the directory examples: a tenant's own texts
#: are few beside the directory's, and are what the run is for.
CONFIRMATION_WEIGHT = 4
#: Directory records read to write examples from (a deterministic sample of the active directory).
DIRECTORY_SAMPLE = 4000
_RECORD_COLUMNS = ", ".join(f"b.{column}" for column in BranchRecord.COLUMNS)


@dataclass(frozen=True)
class GateCase:
    """A text and the branch it names: right when the answer is ``match`` with that code."""

    text: str
    code: str
    source: Literal["confirmations", "directory"]


@dataclass(frozen=True)
class TenantMaterial:
    training: list[Example]
    cases: list[GateCase]
    confirmations: int  # used for training


def _record(row: asyncpg.Record) -> BranchRecord:
    return BranchRecord(*(row[column] for column in BranchRecord.COLUMNS))


def is_held_out_confirmation(text_key: str) -> bool:
    return zlib.crc32(text_key.encode()) % 4 == 0


async def tenant_material(
    pool: asyncpg.Pool, tenant: str, style: str, directory_examples: int, directory_cases: int, seed: int = 0
) -> TenantMaterial:
    """Training examples and gate cases for ``tenant``: its usable confirmations, split, and directory
    records written in the styles of ``style`` (a ``TENANT_STYLES`` key)."""
    styles = TENANT_STYLES[style]
    async with pool.acquire() as conn:
        confirmed = await conn.fetch(
            f"""SELECT c.text, c.text_key, {_RECORD_COLUMNS} FROM confirmations c JOIN branches b ON b.code = c.code
                WHERE c.tenant = $1 AND b.retired_on IS NULL AND b.name = c.name AND b.city = c.city
                ORDER BY c.id""",  # noqa: S608 - constants only
            tenant,
        )
        sample = await conn.fetch(
            f"""SELECT {_RECORD_COLUMNS} FROM branches b WHERE b.retired_on IS NULL
                ORDER BY md5(b.code) LIMIT $1""",  # noqa: S608 - constants only
            DIRECTORY_SAMPLE,
        )
    training: list[Example] = []
    cases: list[GateCase] = []
    for row in confirmed:
        record = _record(row)
        if is_held_out_confirmation(row["text_key"]):
            cases.append(GateCase(row["text"], record.code, "confirmations"))
        else:
            example = Example(read_text(row["text"])[0], answer_of(record), "confirmed", record.code)
            training += [example] * CONFIRMATION_WEIGHT
    records = [_record(row) for row in sample]
    learned = [r for r in records if is_training_record(r.code)]
    unseen = [r for r in records if not is_training_record(r.code)]
    if learned:
        training += build_examples(learned, styles, directory_examples, seed)
    if unseen:
        held = build_examples(unseen, styles, directory_cases, seed + 1)
        cases += [GateCase(example.query, example.code, "directory") for example in held]
    used = len(confirmed) - sum(case.source == "confirmations" for case in cases)
    return TenantMaterial(training, cases, used)
