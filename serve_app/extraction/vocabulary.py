"""What the rules extractor knows: every bank a statement can name, the forms people write, where each operates.

Banks come from two places: the regulator's list of licensed institutions (``directory.institutions``, so
南京银行 is recognised even when the loaded directory holds none of its branches) and the directory itself
(``from_database`` in the service, ``from_records`` offline), whose class codes and branch distribution
win where both know a bank.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg

from serve_app.directory.banks import ALIASES, TYPE_FORMS
from serve_app.directory.gazetteer import Gazetteer
from serve_app.directory.institutions import MIN_ENGLISH_FORM, Institution, licensed_institutions
from serve_app.directory.records import BranchRecord

_PROVINCE_PREFIX_MIN_REST = 4  # "河北邢台农村商业银行" → "邢台农村商业银行", but never down to "银行"


#: Words that make a surface form name an institution on its own (工商银行, 邮储银行); forms without one
#: (工行, 华夏, 平安, ICBC) are short aliases that also occur as ordinary words in branch names (平安支行).
_INSTITUTION_WORDS = ("银行", "信用社", "联社", "农商行", "农合行", "信用合作", "资金互助社")


@dataclass(frozen=True)
class Bank:
    name: str
    category_code: str | None  # CNAPS class; None for a licensed bank whose class the list does not give


@dataclass
class Vocabulary:
    """Banks, the surface forms that name each one, and per-bank city/district branch counts.

    ``cities``/``districts`` hold only banks with branches in the directory; ``banks`` holds every bank.
    """

    banks: dict[str, Bank]
    surface_forms: dict[str, str] = field(default_factory=dict)
    cities: dict[str, Counter] = field(default_factory=dict)
    districts: dict[str, Counter] = field(default_factory=dict)
    #: Forms from the institution list: English names, and official names the directory spells otherwise.
    extra_forms: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.surface_forms:
            self.surface_forms = build_surface_forms(self.banks.values(), self.extra_forms)

    @classmethod
    def build(
        cls,
        directory_banks: dict[str, str],
        cities: dict[str, Counter],
        districts: dict[str, Counter],
        institutions: Iterable[Institution] | None = None,
    ) -> Vocabulary:
        """Directory banks (name → class code) joined with the licensed institutions (default: the NFRA list)."""
        institutions = licensed_institutions() if institutions is None else tuple(institutions)
        # One institution may be spelled two ways (成都农村商业银行 on the list, 成都农商银行 in the
        # directory): it stays one bank, under the directory's spelling, which its branches carry.
        spelled_in_directory = {form: name for name in directory_banks for form in _derived_forms(name, ())}
        banks: dict[str, Bank] = {}
        extra: dict[str, str] = {}
        for institution in institutions:
            same = spelled_in_directory.get(institution.name, institution.name)
            if same != institution.name:
                extra[institution.name] = same
            else:
                banks[institution.name] = Bank(institution.name, institution.category_code)
            if institution.english:
                extra[institution.english] = same
        banks.update({name: Bank(name, code) for name, code in directory_banks.items()})
        return cls(banks=banks, cities=dict(cities), districts=dict(districts), extra_forms=extra)

    @classmethod
    def from_records(cls, records: Iterable[BranchRecord], institutions: Iterable[Institution] | None = None):
        classes: dict[str, Counter] = defaultdict(Counter)
        cities: dict[str, Counter] = defaultdict(Counter)
        districts: dict[str, Counter] = defaultdict(Counter)
        for record in records:
            classes[record.bank_name][record.bank_code] += 1
            cities[record.bank_name][record.city] += 1
            if record.district:
                districts[record.bank_name][record.district] += 1
        directory = {name: codes.most_common(1)[0][0] for name, codes in classes.items()}
        return cls.build(directory, cities, districts, institutions)

    @classmethod
    async def from_database(cls, conn: asyncpg.Connection) -> Vocabulary:
        directory = {r["name"]: r["category_code"] for r in await conn.fetch("SELECT name, category_code FROM banks")}
        cities: dict[str, Counter] = defaultdict(Counter)
        districts: dict[str, Counter] = defaultdict(Counter)
        rows = await conn.fetch(
            "SELECT bank_name, city, district, count(*) AS n FROM branches GROUP BY bank_name, city, district"
        )
        for row in rows:
            cities[row["bank_name"]][row["city"]] += row["n"]
            if row["district"]:
                districts[row["bank_name"]][row["district"]] += row["n"]
        return cls.build(directory, cities, districts)


def is_strong_form(form: str) -> bool:
    """Whether a surface form names an institution by itself (see ``_INSTITUTION_WORDS``)."""
    return any(word in form for word in _INSTITUTION_WORDS) or (form.isascii() and len(form) >= MIN_ENGLISH_FORM)


def build_surface_forms(banks: Iterable[Bank], extra_forms: dict[str, str] | None = None) -> dict[str, str]:
    """Surface form → bank name. Official names win; then a form that needs no province prefix dropped
    (河南农商银行 is 河南农村商业银行, not 青海河南农村商业银行); a form that could still mean two banks is dropped."""
    # A "bank" whose name is a kind of bank (records filed under 农村信用社) names no institution: its words
    # are read as the kind (``RulesExtractor``), and its records are found by their class.
    banks = [bank for bank in banks if not _is_generic(bank.name)]
    official = {bank.name: bank.name for bank in banks}
    # form → {bank: cost}; cost 0 for curated aliases and type forms, 1 with a province prefix dropped
    candidates: dict[str, dict[str, int]] = defaultdict(dict)

    def offer(form: str, bank: str, cost: int) -> None:
        candidates[form][bank] = min(cost, candidates[form].get(bank, cost))

    provinces = [r for r in Gazetteer.default().regions if r.level == "province"]
    for bank in banks:
        for form, cost in _derived_forms(bank.name, provinces).items():
            offer(form, bank.name, cost)
        for alias in ALIASES.get(bank.name, ()):
            offer(alias, bank.name, 0)
    for form, name in (extra_forms or {}).items():
        offer(form, name, 0)
    forms = {}
    for form, costs in candidates.items():
        cheapest = min(costs.values())
        names = [name for name, cost in costs.items() if cost == cheapest]
        if len(names) == 1:
            forms[form] = names[0]
    forms.update(official)  # an official name always means itself
    return forms


def _derived_forms(name: str, provinces) -> dict[str, int]:
    """Forms of a bank's name → cost: 0 for the name and its type forms, 1 with a province prefix dropped."""
    forms = {name: 0}
    for long, short in TYPE_FORMS:
        for form in list(forms):
            if form.endswith(long):
                forms.setdefault(form[: -len(long)] + short, 0)
            elif form.endswith(short):
                forms.setdefault(form[: -len(short)] + long, 0)
    for form in list(forms):
        for province in provinces:
            for prefix in (province.name, province.short):
                rest = form[len(prefix) :]
                if form.startswith(prefix) and len(rest) >= _PROVINCE_PREFIX_MIN_REST and not _is_generic(rest):
                    forms.setdefault(rest, 1)
    return forms


_GENERIC = re.compile(
    r"^(农村商业银行|农商银行|农商行|农村合作银行|农村信用合作联社|农村信用社|信用联社|农信社|银行|村镇银行)$"
)


def _is_generic(rest: str) -> bool:
    """A form that names a type of bank, not one bank ("农村商业银行")."""
    return bool(_GENERIC.match(rest))
