"""What changed between two directory snapshots: the one home of that decision, for loads and ``db diff``.

A CNAPS file is the whole directory as of a date. Compared with the directory before it, each code is
*new* (never seen), *retired* (active before, absent now), *returned* (retired before, present again),
or present in both; a code present in both may be *renamed* (its official name), *moved* (province,
city, county or PBOC city code) and *changed* (institution or clearing code) — one change per kind that
applies, each with the old and new values of its fields. Codes that are the same in both are only
counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from serve_app.directory.records import BranchRecord

ChangeKind = Literal["new", "retired", "returned", "renamed", "moved", "changed"]
CHANGE_KINDS: tuple[ChangeKind, ...] = ("new", "retired", "returned", "renamed", "moved", "changed")
#: The fields each kind of change compares, in the order they are reported.
TRACKED: dict[ChangeKind, tuple[str, ...]] = {
    "renamed": ("name",),
    "moved": ("province", "city", "district", "city_code"),
    "changed": ("bank_name", "clearing_code"),
}
FACT_FIELDS = tuple(name for fields in TRACKED.values() for name in fields)
#: Share of the active codes a snapshot may retire before a load is refused (a truncated download).
DEFAULT_MAX_RETIRE_SHARE = 0.05

#: A code's tracked fields, as the database or a file holds them.
Facts = Mapping[str, str | None]


def facts_of(record: BranchRecord) -> dict[str, str | None]:
    return {name: getattr(record, name) for name in FACT_FIELDS}


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    code: str
    bank_name: str
    city: str
    old: dict[str, str | None] | None  # the changed fields before (None for a new code)
    new: dict[str, str | None] | None  # and after (None for a retired one)


@dataclass
class SnapshotDiff:
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0
    active_before: int = 0

    def codes(self, kind: ChangeKind) -> list[str]:
        return [change.code for change in self.changes if change.kind == kind]

    def counts(self) -> dict[str, int]:
        counted = Counter(change.kind for change in self.changes)
        return {kind: counted.get(kind, 0) for kind in CHANGE_KINDS} | {"unchanged": self.unchanged}

    @property
    def retire_share(self) -> float:
        """The share of the codes active before that this snapshot retires."""
        return len(self.codes("retired")) / self.active_before if self.active_before else 0.0


class MassRetireRefused(ValueError):
    """A snapshot would retire more of the active codes than allowed: most likely an incomplete file."""


def diff_snapshots(
    active: Mapping[str, Facts], retired: Mapping[str, Facts], new: Mapping[str, Facts], *, partial: bool = False
) -> SnapshotDiff:
    """The changes from a directory (codes ``active`` and ``retired``, with their facts) to the snapshot
    ``new``. ``partial``: ``new`` is an update of some codes, not the whole directory, so nothing retires."""
    diff = SnapshotDiff(active_before=len(active))
    for code, after in new.items():
        before = active.get(code)
        if before is None and code in retired:
            before = retired[code]
            diff.changes.append(Change("returned", code, _text(after["bank_name"]), _text(after["city"]), None, None))
        if before is None:
            diff.changes.append(Change("new", code, _text(after["bank_name"]), _text(after["city"]), None, dict(after)))
            continue
        changed = _field_changes(code, before, after)
        diff.changes.extend(changed)
        if not changed and code in active:
            diff.unchanged += 1
    if not partial:
        for code, before in active.items():
            if code not in new:
                diff.changes.append(
                    Change("retired", code, _text(before["bank_name"]), _text(before["city"]), dict(before), None)
                )
    return diff


def _field_changes(code: str, before: Facts, after: Facts) -> list[Change]:
    changes = []
    for kind, names in TRACKED.items():
        differ = [name for name in names if (before.get(name) or None) != (after.get(name) or None)]
        if differ:
            old = {name: before.get(name) for name in differ}
            new = {name: after.get(name) for name in differ}
            changes.append(Change(kind, code, _text(after["bank_name"]), _text(after["city"]), old, new))
    return changes


def check_retire_share(diff: SnapshotDiff, max_share: float, allow_mass_retire: bool) -> None:
    """``MassRetireRefused`` when the snapshot retires more than ``max_share`` of the active codes."""
    if allow_mass_retire or diff.retire_share <= max_share:
        return
    retiring = len(diff.codes("retired"))
    raise MassRetireRefused(
        f"this snapshot would retire {retiring:,} of {diff.active_before:,} active codes "
        f"({diff.retire_share:.1%}), more than the {max_share:.0%} allowed: is the file complete? "
        "Load it with --allow-mass-retire if it is, or with --partial to add and update codes only."
    )


def snapshot_facts(records: Iterable[BranchRecord]) -> dict[str, dict[str, str | None]]:
    """``{code: facts}`` of a file's records (the first record of a repeated code wins, as in a load)."""
    facts: dict[str, dict[str, str | None]] = {}
    for record in records:
        facts.setdefault(record.code, facts_of(record))
    return facts


def _text(value: str | None) -> str:
    return value or ""
