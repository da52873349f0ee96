"""The gazetteer of Chinese administrative regions (province → city → district) shipped in ``data/``.

Built from jionlp's data by ``scripts/build_gazetteer.py`` (see ``data/REGIONS_SOURCE.md``). Each region
has a full name (绵阳市), a short name (绵阳) and historical aliases (襄樊 for 襄阳市).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from importlib import resources

LEVELS = ("province", "city", "district")

#: Administrative suffixes, longest first; stripping one gives a name's stem (宽甸满族自治县 → 宽甸满族).
_SUFFIX = re.compile(r"(自治县|自治州|自治区|自治旗|特别行政区|林区|地区|新区|县|市|区|旗|盟)$")


def stem(name: str) -> str:
    """The name without its administrative suffix; never empty for a non-empty name."""
    stripped = _SUFFIX.sub("", name)
    return stripped or name


@dataclass(frozen=True)
class Region:
    adcode: str
    level: str
    name: str
    short: str
    parent: str
    aliases: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.level, self.adcode)

    def names(self) -> tuple[str, ...]:
        """Every name this region is known by: full, short, stem and historical."""
        return tuple(dict.fromkeys((self.name, self.short, stem(self.name), *self.aliases)))


class Gazetteer:
    """Lookup over the regions; immutable once built."""

    def __init__(self, regions: list[Region]):
        self.regions = regions
        self._by_key = {r.key: r for r in regions}
        self._by_name: dict[str, list[Region]] = defaultdict(list)
        for region in regions:
            for name in region.names():
                self._by_name[name].append(region)

    @classmethod
    @cache
    def default(cls) -> Gazetteer:
        """The shipped gazetteer (parsed once per process)."""
        text = (resources.files("serve_app") / "data" / "regions.tsv").read_text(encoding="utf-8")
        regions = []
        for line in text.splitlines()[2:]:
            adcode, level, name, short, parent, aliases = line.split("\t")
            regions.append(Region(adcode, level, name, short, parent, tuple(a for a in aliases.split("|") if a)))
        return cls(regions)

    def region(self, key: tuple[str, str]) -> Region | None:
        """The region with this ``Region.key``."""
        return self._by_key.get(key)

    def parent(self, region: Region) -> Region | None:
        if region.level == "province":
            return None
        return self._by_key.get((LEVELS[LEVELS.index(region.level) - 1], region.parent))

    def province_of(self, region: Region) -> Region:
        while region.level != "province":
            parent = self.parent(region)
            if parent is None:
                return region
            region = parent
        return region

    def capital(self, province: str) -> Region | None:
        """The city a province's name means when no city is written: its capital (adcode ``pp0100``, where
        province-level units of banks are filed), or the municipality itself."""
        region = self.province_named(province)
        if region is None:
            return None
        prefix = region.adcode[:2]
        return self._by_key.get(("city", prefix + "0100")) or self._by_key.get(("city", region.adcode))

    def named(self, name: str) -> list[Region]:
        """Regions known by exactly this name (full, short, stem or alias), any level."""
        return list(self._by_name.get(name, ()))

    def province_named(self, name: str) -> Region | None:
        for candidate in (name, stem(name)):
            for region in self._by_name.get(candidate, ()):
                if region.level == "province":
                    return region
        return None

    def resolve(self, name: str, province: Region | None = None, prefer: str = "city") -> Region | None:
        """Find the city or district called ``name`` (full, short or historical), inside ``province``.

        Ties are broken by ``prefer`` (the level expected) and then by the lower adcode, so the answer is
        deterministic. Returns None when nothing in the province carries that name.
        """
        candidates = []
        keys = [name, stem(name)]
        if name.endswith("州") and len(name) > 2:  # 恩施州: the short form of 恩施土家族苗族自治州
            keys.append(name[:-1])
        for key in dict.fromkeys(keys):
            for region in self._by_name.get(key, ()):
                if region.level == "province":
                    continue
                if province is not None and self.province_of(region).adcode != province.adcode:
                    continue
                candidates.append(region)
        if not candidates:
            return None
        return min(candidates, key=lambda r: (r.level != prefer, r.name != name, r.adcode))
