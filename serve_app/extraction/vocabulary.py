"""What the rules extractor knows: the banks of the directory with their aliases, and where they operate.

Built from the directory itself (``from_database`` in the service, ``from_records`` offline), so every
institution in it — city, rural and village banks included — is recognised by its official name and by
the short forms people write.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg

from serve_app.directory.banks import ALIASES
from serve_app.directory.gazetteer import Gazetteer
from serve_app.directory.records import BranchRecord

#: Long and short forms of institution types, each pair usable in both directions.
_TYPE_FORMS = (
    ("农村商业银行", "农商银行"),
    ("农村商业银行", "农商行"),
    ("农村合作银行", "农合行"),
    ("农村信用合作联社", "农村信用社"),
    ("农村信用合作联社", "信用联社"),
    ("农村信用合作联社", "农信社"),
    ("城市商业银行", "城商行"),
)
_PROVINCE_PREFIX_MIN_REST = 4  # "河北邢台农村商业银行" → "邢台农村商业银行", but never down to "银行"


@dataclass(frozen=True)
class Bank:
    name: str
    category_code: str


@dataclass
class Vocabulary:
    """Banks, the surface forms that name each one, and per-bank city/district branch counts."""

    banks: dict[str, Bank]
    surface_forms: dict[str, str] = field(default_factory=dict)
    cities: dict[str, Counter] = field(default_factory=dict)
    districts: dict[str, Counter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.surface_forms:
            self.surface_forms = build_surface_forms(self.banks.values())

    @classmethod
    def from_records(cls, records: Iterable[BranchRecord]) -> Vocabulary:
        banks: dict[str, Counter] = defaultdict(Counter)
        cities: dict[str, Counter] = defaultdict(Counter)
        districts: dict[str, Counter] = defaultdict(Counter)
        for record in records:
            banks[record.bank_name][record.bank_code] += 1
            cities[record.bank_name][record.city] += 1
            if record.district:
                districts[record.bank_name][record.district] += 1
        return cls(
            banks={name: Bank(name, codes.most_common(1)[0][0]) for name, codes in banks.items()},
            cities=dict(cities),
            districts=dict(districts),
        )

    @classmethod
    async def from_database(cls, conn: asyncpg.Connection) -> Vocabulary:
        banks = {r["name"]: Bank(r["name"], r["category_code"]) for r in await conn.fetch("SELECT * FROM banks")}
        cities: dict[str, Counter] = defaultdict(Counter)
        districts: dict[str, Counter] = defaultdict(Counter)
        rows = await conn.fetch(
            "SELECT bank_name, city, district, count(*) AS n FROM branches GROUP BY bank_name, city, district"
        )
        for row in rows:
            cities[row["bank_name"]][row["city"]] += row["n"]
            if row["district"]:
                districts[row["bank_name"]][row["district"]] += row["n"]
        return cls(banks=banks, cities=dict(cities), districts=dict(districts))


def build_surface_forms(banks: Iterable[Bank]) -> dict[str, str]:
    """Surface form → bank name. A derived form that could mean two banks is dropped; official names win."""
    banks = list(banks)
    official = {bank.name: bank.name for bank in banks}
    candidates: dict[str, set[str]] = defaultdict(set)
    provinces = [r for r in Gazetteer.default().regions if r.level == "province"]
    for bank in banks:
        for form in _derived_forms(bank.name, provinces):
            candidates[form].add(bank.name)
        for alias in ALIASES.get(bank.name, ()):
            candidates[alias].add(bank.name)
    forms = {form: next(iter(names)) for form, names in candidates.items() if len(names) == 1}
    forms.update(official)  # an official name always means itself
    return forms


def _derived_forms(name: str, provinces) -> set[str]:
    forms = {name}
    for long, short in _TYPE_FORMS:
        for form in list(forms):
            if form.endswith(long):
                forms.add(form[: -len(long)] + short)
            elif form.endswith(short):
                forms.add(form[: -len(short)] + long)
    for form in list(forms):
        for province in provinces:
            for prefix in (province.name, province.short):
                rest = form[len(prefix) :]
                if form.startswith(prefix) and len(rest) >= _PROVINCE_PREFIX_MIN_REST and not _is_generic(rest):
                    forms.add(rest)
    return forms


_GENERIC = re.compile(
    r"^(农村商业银行|农商银行|农商行|农村合作银行|农村信用合作联社|农村信用社|信用联社|农信社|银行|村镇银行)$"
)


def _is_generic(rest: str) -> bool:
    """A form that names a type of bank, not one bank ("农村商业银行")."""
    return bool(_GENERIC.match(rest))
