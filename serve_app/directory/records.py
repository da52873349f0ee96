"""Branch records: reading the CNAPS file and placing each branch in the gazetteer.

The CNAPS file's ``CityCode`` is the PBOC 4-digit city code: ``XXX0`` is a prefecture-level city and any
other last digit a county under ``XXX0``. Its ``BankName`` column is sometimes a class ("C 村镇银行")
rather than the institution, so the institution is parsed from the official name itself.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import astuple, dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path

from serve_app.directory.banks import national_bank, parse_institution
from serve_app.directory.codes import is_valid_code
from serve_app.directory.gazetteer import Gazetteer, Region
from serve_app.directory.spellings import filed_as
from serve_app.normalize import normalize

CNAPS_COLUMNS = (
    "LName",
    "BankCode",
    "BankName",
    "BankId",
    "CityCode",
    "CityName",
    "ProvinceName",
    "ProvinceCode",
)


@dataclass(frozen=True)
class BranchRecord:
    """One row of the ``branches`` table (field order = column order used by the loader)."""

    code: str
    bank_code: str
    bank_name: str
    name: str
    search_name: str
    branch: str
    province: str
    city: str
    district: str | None
    city_code: str
    source: str
    #: The direct participant this branch settles through (清算行号, the file's ``BankId``); None when the
    #: file gives a placeholder or a number that fails its check digit.
    clearing_code: str | None = None

    COLUMNS = ("code", "bank_code", "bank_name", "name", "search_name", "branch", "province", "city",
               "district", "city_code", "source", "clearing_code")  # fmt: skip

    def as_row(self) -> tuple:
        return astuple(self)


@dataclass(frozen=True)
class Place:
    province: str
    city: str
    district: str | None


def demo_cnaps_path() -> Path:
    return Path(str(resources.files("serve_app") / "data" / "cnaps_sample.csv"))


@cache
def pboc_cities() -> dict[str, dict]:
    """PBOC city code → {CityName, ProvinceName, ...} from the shipped ``pboc_cities.json``."""
    text = (resources.files("serve_app") / "data" / "pboc_cities.json").read_text(encoding="utf-8")
    return {entry["CityCode"]: entry for entry in json.loads(text)}


class PlaceResolver:
    """Maps (PBOC city code, PBOC names) to gazetteer names; memoised, since codes repeat."""

    def __init__(self, gazetteer: Gazetteer | None = None):
        self.gazetteer = gazetteer or Gazetteer.default()
        self._cache: dict[tuple[str, str, str], Place] = {}

    def place(self, city_code: str, city_name: str, province_name: str) -> Place:
        key = (city_code, city_name, province_name)
        if key not in self._cache:
            self._cache[key] = self._resolve(city_code, city_name, province_name)
        return self._cache[key]

    def _resolve(self, city_code: str, city_name: str, province_name: str) -> Place:
        gz = self.gazetteer
        province = gz.province_named(province_name)
        province_full = province.name if province else province_name
        prefecture_code = city_code[:3] + "0"
        prefecture_name = pboc_cities().get(prefecture_code, {}).get("CityName", city_name)
        prefecture = gz.resolve(prefecture_name, province, prefer="city")
        if city_code == prefecture_code:
            return self._place_of(prefecture, province_full, city_name, None)
        county = gz.resolve(city_name, province, prefer="district")
        if county is not None and county.level == "district":
            parent = gz.parent(county)
            return Place(province_full, parent.name if parent else prefecture_name, county.name)
        around = self._place_of(prefecture, province_full, prefecture_name, None)
        return Place(province_full, around.city, city_name)

    def _place_of(self, region: Region | None, province: str, fallback: str, district: str | None) -> Place:
        if region is None:
            return Place(province, fallback, district)
        if region.level == "district":  # a county-level city listed with its own PBOC code
            parent = self.gazetteer.parent(region)
            return Place(province, parent.name if parent else fallback, region.name)
        return Place(province, region.name, district)


def make_record(
    *,
    code: str,
    official_name: str,
    bank_hint: str,
    place: Place,
    city_code: str,
    source: str,
    clearing_code: str | None = None,
) -> BranchRecord:
    """Build a record; the institution comes from the code's class for national banks, else from the name,
    else from ``bank_hint``.

    A national bank's class is authoritative: a branch published as 工商银行响水支行 (code 102…) belongs to
    中国工商银行, and the branch keyword is what follows whatever institution the name spells.
    """
    search_name = normalize(official_name)
    spelled = parse_institution(search_name)
    institution = national_bank(code) or spelled or bank_hint
    branch = search_name[len(spelled) :] if spelled else search_name
    return BranchRecord(
        code=code,
        bank_code=code[:3],
        bank_name=institution,
        name=official_name.strip(),
        search_name=search_name,
        branch=branch,
        province=place.province,
        city=place.city,
        district=place.district,
        city_code=city_code,
        source=source,
        clearing_code=clearing_code_or_none(clearing_code),
    )


def clearing_code_or_none(value: str | None) -> str | None:
    """A ``BankId`` as a clearing code: kept when it is a valid CNAPS code, else None. The files fill the
    column with placeholders (``999999999994``) where a branch has none; some fail their check digit."""
    value = (value or "").strip()
    if not is_valid_code(value) or value.startswith(_PLACEHOLDER_PREFIX):
        return None
    return value


_PLACEHOLDER_PREFIX = "99999999"


def read_cnaps(path: Path, resolver: PlaceResolver | None = None) -> Iterator[BranchRecord]:
    """Yield one record per row of a CNAPS CSV file (duplicates included; the loader merges them), each
    institution's under one bank name however the file spells it (``serve_app.directory.spellings``)."""
    records = list(_read_rows(path, resolver or PlaceResolver()))
    renamed = filed_as(Counter(record.bank_name for record in records))
    for record in records:
        yield replace(record, bank_name=renamed[record.bank_name]) if record.bank_name in renamed else record


def _read_rows(path: Path, resolver: PlaceResolver) -> Iterator[BranchRecord]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(CNAPS_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing CNAPS columns {sorted(missing)}")
        for row in reader:
            place = resolver.place(row["CityCode"], row["CityName"].strip(), row["ProvinceName"].strip())
            bank_hint = row["BankName"].strip()
            if bank_hint[:2] in ("C ", "N "):  # a class, not an institution
                bank_hint = bank_hint[2:]
            yield make_record(
                code=row["BankCode"].strip(),
                official_name=row["LName"],
                bank_hint=bank_hint,
                place=place,
                city_code=row["CityCode"].strip(),
                source="cnaps_sample",
                clearing_code=row["BankId"],
            )
