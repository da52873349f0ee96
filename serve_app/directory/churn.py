"""A plausible next snapshot of a CNAPS file, for tests, the churn evaluation and the load benchmark.

Between two published days the directory loses codes (closed branches), gains codes (new branches),
renames branches (same code, new official name) and moves them (same code, another county of the same
prefecture). ``churn`` makes such a snapshot from the rows of one, deterministically for a seed, and says
which codes it changed how. Rows are CNAPS CSV rows (``records.CNAPS_COLUMNS``), so the result is loaded
by the same code as a real file.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from serve_app.directory.codes import check_digit
from serve_app.directory.gazetteer import stem
from serve_app.directory.records import CNAPS_COLUMNS

#: Words a renamed or new branch is named with (streets and districts, as real names are).
_WORDS = (
    "人民路 解放路 中山路 建设路 新华路 东风路 胜利路 和平路 文化路 长江路 滨江路 世纪大道 金融街 新城 高铁站 湖滨"
).split()
_LEVEL = "支行"


@dataclass
class Churn:
    rows: list[dict[str, str]]
    retired: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CNAPS_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def churn(
    rows: list[dict[str, str]],
    *,
    retire: float = 0.05,
    rename: float = 0.02,
    move: float = 0.01,
    add: float = 0.03,
    seed: int = 20261207,
) -> Churn:
    """The snapshot after ``rows``: shares of the distinct codes retired, renamed, moved (to another county
    of the same prefecture) and added (new codes of the same bank class and city, named in the same form).
    A code is changed at most one way."""
    rng = random.Random(seed)
    by_code: dict[str, dict[str, str]] = {}
    for row in rows:
        by_code.setdefault(row["BankCode"], dict(row))  # the first row of a repeated code, as loads keep
    codes = sorted(by_code)
    rng.shuffle(codes)
    n = len(codes)
    take = iter(codes)
    out = Churn(rows=[])
    out.retired = [next(take) for _ in range(int(n * retire))]
    counties = _counties(by_code.values())
    names = {row["LName"] for row in by_code.values()}
    for code in take:
        row = by_code[code]
        renamed = _named(row, rng.choice(_WORDS), names)
        if renamed is not None:
            row["LName"] = renamed
            out.renamed.append(code)
        if len(out.renamed) >= int(n * rename):
            break
    for code in take:
        if len(out.moved) >= int(n * move):
            break
        row = by_code[code]
        others = [c for c in counties[row["CityCode"][:3]] if c[0] != row["CityCode"]]
        if others and stem(row["CityName"]) not in row["LName"]:  # a name that says its county stays there
            row["CityCode"], row["CityName"] = rng.choice(others)
            out.moved.append(code)
    retired = set(out.retired)
    kept = [row for code, row in by_code.items() if code not in retired]
    templates = rng.sample(kept, min(len(kept), int(n * add) * 2))
    taken = set(by_code)
    for template in templates:
        if len(out.new) >= int(n * add):
            break
        body = template["BankCode"][:7] + f"{rng.randrange(10_000):04d}"
        code = body + str(check_digit(body))
        name = _named(template, rng.choice(_WORDS) + "新区", names)
        if code in taken or name is None:
            continue
        taken.add(code)
        kept.append(dict(template, BankCode=code, LName=name))
        out.new.append(code)
    out.rows = kept
    return out


def _named(row: dict[str, str], word: str, names: set[str]) -> str | None:
    """The row's official name with ``word`` before its final 支行 (None when it has none, or is taken)."""
    name = row["LName"].strip()
    if not name.endswith(_LEVEL):
        return None
    renamed = name[: -len(_LEVEL)] + word + _LEVEL
    if renamed in names:
        return None
    names.add(renamed)
    return renamed


def _counties(rows) -> dict[str, list[tuple[str, str]]]:
    """PBOC city codes and names seen under each prefecture (the first 3 digits)."""
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for row in rows:
        seen[row["CityCode"][:3]].add((row["CityCode"], row["CityName"]))
    return {prefix: sorted(places) for prefix, places in seen.items()}
