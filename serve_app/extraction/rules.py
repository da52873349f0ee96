"""The rules/gazetteer extractor: bank first, then place, then branch keyword. Pure, fast, total.

Order matters. The bank is matched first (longest surface form), and the place is read only from the text
around it, so "北京银行成都分行" is a Chengdu branch of 北京银行, not a Beijing one. Places are matched
against the gazetteer (full, short and historical names) and resolved to one consistent
province → city → district chain; where a name is ambiguous (通州: Beijing or Nantong), the bank's own
branch distribution in the directory decides, and an unresolvable guess is left out rather than made.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import ahocorasick

from serve_app.directory.gazetteer import Gazetteer, Region
from serve_app.directory.institutions import CENTRAL_BANK
from serve_app.extraction.kinds import WRITTEN_KIND, WRITTEN_KINDS
from serve_app.extraction.latin import (
    is_latin_only,
    without_english_rendering,
    without_latin_at_end,
    without_latin_before_chinese,
)
from serve_app.extraction.levels import LEVEL_AT_END
from serve_app.extraction.question import strip_question
from serve_app.extraction.vocabulary import Vocabulary, is_strong_form
from serve_app.schemas import Entities, Extraction

#: Bumped whenever extraction output may change for the same input: cached answers are keyed on it.
EXTRACTOR_VERSION = 11

#: A place name directly followed by one of these is a street or landmark (中山路, 人民广场), not a place.
_STREET_AFTER = ("路", "街", "大道", "道", "巷", "广场", "大街", "大厦", "小区", "村", "镇", "乡", "门", "桥")
#: …but a bridge's quarter (桥西, 桥头: 石家庄's 桥西区 is named so) after a city's name is the city's (锦州桥西支行).
_QUARTER_AFTER = tuple("桥" + side for side in ("东", "西", "南", "北", "头", "口"))
#: After a place already read, a place name followed by a direction and a street is a street named for it
#: (南京北京西路, 青岛香港中路), unless it is a district of the city read (沈阳和平北大街); first in a name it
#: may be the city's own (成都东大街).
_DIRECTED_STREET_AFTER = tuple(
    direction + street for direction in "东西南北中" for street in ("路", "街", "大街", "大道")
)
#: Classes of banks named after their home region (城商行, 农商行, 农合行, 村镇银行, 信用社): their name
#: says where they are when the rest of the query does not.
_NAMED_AFTER_HOME = frozenset({"313", "314", "317", "320", "402"})
#: Rural classes that do not branch out of their region (city banks do: 北京银行成都分行).
_CONFINED_TO_HOME = frozenset({"314", "317", "320", "402"})
_MIN_PLACE_NAME = 2
_HAN = re.compile(r"[\u4e00-\u9fff]")
#: Place names considered per query. Real queries name two or three; resolution compares every pair, so
#: this bound keeps arbitrary input (100k characters of place names) linear.
_MAX_PLACE_MATCHES = 8


@dataclass(frozen=True)
class _PlaceMatch:
    start: int
    end: int
    regions: tuple[Region, ...]
    full_name: bool


class RulesExtractor:
    """Immutable once built; safe to share between concurrent requests."""

    def __init__(self, vocabulary: Vocabulary, gazetteer: Gazetteer | None = None):
        self.vocabulary = vocabulary
        self.gazetteer = gazetteer or Gazetteer.default()
        self._banks = ahocorasick.Automaton()
        for form, bank in vocabulary.surface_forms.items():
            self._banks.add_word(form, (len(form), bank))
        self._banks.make_automaton()
        self._places = ahocorasick.Automaton()
        by_name: dict[str, list[Region]] = {}
        for region in self.gazetteer.regions:
            for name in region.names():
                if len(name) >= _MIN_PLACE_NAME:
                    by_name.setdefault(name, []).append(region)
        for name, regions in by_name.items():
            self._places.add_word(name, (name, tuple(regions)))
        self._places.make_automaton()

    def extract(self, text: str) -> Extraction:
        """Entities of a *normalized* query (see ``serve_app.normalize``). Never raises."""
        bank, start, end, other_bank = self._match_bank(text)
        kind = None if bank else WRITTEN_KIND.search(text)
        if kind is not None:
            start, end = kind.span()
        before, after = (text[:start], text[end:]) if bank or kind else ("", text)
        after = without_english_rendering(strip_question(without_latin_before_chinese(after)))
        if not _HAN.search(after) and LEVEL_AT_END.search(leading := without_latin_at_end(before)):
            # The bank is named after the branch, as cross-border lines do: 莫城支行(POSTAL … LTD.). Only a
            # text ending in a branch level counts, so a label (开户行: HUA XIA BANK) is never a branch.
            before, after = "", strip_question(leading)
        places = (self._match_places(after) + self._match_places(before))[:_MAX_PLACE_MATCHES]
        if not places and bank and self.vocabulary.banks[bank].category_code in _NAMED_AFTER_HOME:
            places = self._match_places(bank)
        province, city, district = self._resolve_places(places, bank)
        if city is None and bank and self.vocabulary.banks[bank].category_code in _CONFINED_TO_HOME:
            home = self._home_city(bank)
            if home is not None and province in (None, self.gazetteer.province_of(home)):
                province, city, district = self.gazetteer.province_of(home), home, None
        # Latin alone (the rest of an English name, a romanised branch) matches no name in the directory.
        branch = after if _HAN.search(after) else None
        level_match = LEVEL_AT_END.search(after)
        entities = Entities(
            bank=bank,
            bank_code=self._bank_code(bank, kind),
            province=province.name if province else None,
            city=city.name if city else None,
            district=district.name if district else None,
            branch=branch,
        )
        confidence = 0.45 * bool(bank) + 0.3 * bool(city or district) + 0.25 * bool(level_match)
        return Extraction(
            entities=entities,
            confidence=round(confidence, 2),
            level=level_match.group(1) if level_match else None,
            other_bank=other_bank,
            bank_written=text[start:end] if bank else None,
            extractor_version=EXTRACTOR_VERSION,
        )

    def _bank_code(self, bank: str | None, kind: re.Match | None) -> str | None:
        """The CNAPS class of the bank read, or of the kind of institution written in its place."""
        if bank:
            return self.vocabulary.banks[bank].category_code
        return WRITTEN_KINDS[kind.group()] if kind else None

    def banks_named(self, text: str) -> set[str]:
        """Every bank one of whose surface forms occurs anywhere in ``text``, with no reading rules applied."""
        return {bank for _, (_, bank) in self._banks.iter(text)}

    def regions_named(self, text: str) -> set[tuple[str, str]]:
        """The keys of every region one of whose names occurs in ``text`` outside the name of the bank it
        reads: a bank's name says where the bank is registered, not where the branch is (北京银行成都分行
        names 成都; 湘潭农村商业银行云峰 names no place of the branch)."""
        bank, start, end, _ = self._match_bank(text)
        if bank:
            text = text[:start] + "\0" + text[end:]  # no name may span the gap
        return {region.key for _, (_, regions) in self._places.iter(text) for region in regions}

    def _match_bank(self, text: str) -> tuple[str | None, int, int, str | None]:
        """The bank the text names first: (bank, start, end, another bank the text also names by a full form).

        Leftmost wins, the longest form at that position; statements name the bank first and the branch
        after it, where 大连银行 in 工行大连银行大厦支行 is a building. A short alias followed by a street
        word is a street (华夏路, 民生街). The central bank yields to any other bank on the line (it is the
        clearing channel, not the payee's bank). A second bank named by a full form makes the reading
        uncertain, and is returned so the verdict can say so.
        """
        found: list[tuple[int, int, str, bool]] = []  # (start, end, bank, strong form)
        for end_index, (length, bank) in self._banks.iter(text):
            start, end = end_index - length + 1, end_index + 1
            form = text[start:end]
            strong = is_strong_form(form)
            if not strong and text.startswith(_STREET_AFTER, end):
                continue
            found.append((start, end, bank, strong))
        if not found:
            return None, 0, 0, None
        found.sort(key=lambda m: (m[0], -(m[1] - m[0])))
        chosen = [m for m in found if m[2] != CENTRAL_BANK] or found
        start, end, bank, _ = chosen[0]
        for s, e, b, strong in chosen[1:]:  # the bank written twice, in English then in Chinese: one mention
            if b == bank and strong and s >= end and is_latin_only(text[end:s]):
                end = e
        # A bank's name inside another mention of the bank read is part of it (BANK OF CHINA in POSTAL SAVINGS
        # BANK OF CHINA), not a second bank.
        own = [(s, e) for s, e, b, _ in chosen if b == bank]
        others = {
            b
            for s, e, b, strong in chosen
            if strong and b != bank and (s >= end or e <= start) and not any(o <= s and e <= f for o, f in own)
        }
        return bank, start, end, min(others) if others else None

    def _home_city(self, bank: str) -> Region | None:
        """The city of a rural bank, which does not branch out of its region: the one its name spells (江苏泗阳
        农村商业银行 → 宿迁市), else the one city that holds all its branches in the directory (陕西秦农农村商业
        银行 → 西安市). The branch is there even when the words written read as a place elsewhere (湖南衡南农村
        商业银行松江支行: 松江 is no Shanghai district here). Only the city: the district in a bank's name is
        where it is registered, not necessarily the branch's."""
        _, city, _ = self._resolve_places(self._match_places(bank), bank)
        cities = self.vocabulary.cities.get(bank, Counter())
        if city is not None or len(cities) != 1:
            return city
        (name,) = cities
        return next((region for region in self.gazetteer.named(name) if region.level == "city"), None)

    def _match_places(self, text: str) -> list[_PlaceMatch]:
        """Longest non-overlapping place names, left to right, that are not street names."""
        found = sorted(
            ((end - len(name) + 1, end + 1, name, regions) for end, (name, regions) in self._places.iter(text)),
            key=lambda m: (m[0], -(m[1] - m[0])),
        )
        matches: list[_PlaceMatch] = []
        covered_until = 0
        for start, end, name, regions in found:
            if start < covered_until or (
                text.startswith(_STREET_AFTER, end) and not self._before_quarter(text, end, regions)
            ):
                continue
            if matches and text.startswith(_DIRECTED_STREET_AFTER, end) and not self._within(regions, matches):
                continue
            matches.append(_PlaceMatch(start, end, regions, full_name=any(r.name == name for r in regions)))
            covered_until = end
            if len(matches) == _MAX_PLACE_MATCHES:
                break
        return matches

    @staticmethod
    def _before_quarter(text: str, end: int, regions: tuple[Region, ...]) -> bool:
        """Whether a city's name is followed by a quarter named for a bridge (锦州桥西, 本溪桥头), not by a bridge."""
        return text.startswith(_QUARTER_AFTER, end) and any(region.level == "city" for region in regions)

    def _within(self, regions: tuple[Region, ...], earlier: list[_PlaceMatch]) -> bool:
        """Whether one reading of ``regions`` lies in a city read before (和平 of 沈阳和平北大街)."""
        gz = self.gazetteer
        cities = {
            (r if r.level == "city" else gz.parent(r)) for m in earlier for r in m.regions if r.level != "province"
        }
        return any(gz.parent(r) in cities for r in regions if r.level == "district")

    def _resolve_places(
        self, matches: list[_PlaceMatch], bank: str | None
    ) -> tuple[Region | None, Region | None, Region | None]:
        """Choose one (province, city, district) consistent with every match, or leave parts out.

        Each matched name is read as each region it can mean, as a (city, district) pair. A reading scores
        for every *other* match that agrees with it (its province, its city, a district in it), for the
        bank having branches there, and for a full-name match. The best reading wins only if it beats every
        reading that places the branch in another city; otherwise the city is ambiguous and left out.
        """
        gz = self.gazetteer
        provinces = {r.adcode: r for m in matches for r in m.regions if r.level == "province"}
        city_prior: Counter = self.vocabulary.cities.get(bank or "", Counter())
        district_prior: Counter = self.vocabulary.districts.get(bank or "", Counter())
        # A rural bank does not operate outside its region: a reading where the directory has none of its
        # branches is a word that looks like a place (山东寿光农商银行广陵分理处 is not in Yangzhou).
        local = bool(bank and self.vocabulary.banks[bank].category_code in _CONFINED_TO_HOME and city_prior)
        readings = []
        for index, match in enumerate(matches):
            for region in match.regions:
                if region.level == "province":
                    continue
                city = region if region.level == "city" else gz.parent(region)
                if city is None:
                    continue
                district = region if region.level == "district" else None
                province = gz.province_of(city)
                if provinces and province.adcode not in provinces:
                    continue
                if local and not city_prior.get(city.name):
                    continue
                support = sum(
                    any(_agrees(other, city, province, gz) for other in other_match.regions)
                    for other_index, other_match in enumerate(matches)
                    if other_index != index
                )
                score = (
                    2.0 * support
                    + (1.0 if city_prior.get(city.name) else 0.0)
                    + (1.0 if district and district_prior.get(district.name) else 0.0)
                    + (0.5 if match.full_name else 0.0)
                    + (0.25 if district is None else 0.0)  # a city reading is the safer one
                )
                readings.append((score, city, district, index))
        if not readings:
            only = next(iter(provinces.values())) if len(provinces) == 1 else None
            return only, None, None
        readings.sort(key=lambda reading: reading[0], reverse=True)
        best_score, city, _, _ = readings[0]
        rivals = [score for score, other_city, _, _ in readings if other_city.key != city.key]
        if rivals and rivals[0] >= best_score:
            only = next(iter(provinces.values())) if len(provinces) == 1 else None
            return only, None, None
        # A name that can be read as the chosen city is the city, not also a district of it (长沙, 长沙县).
        city_matches = {i for _, c, d, i in readings if d is None and c.key == city.key}
        districts = [
            (score, d) for score, c, d, i in readings if d is not None and c.key == city.key and i not in city_matches
        ]
        district = max(districts, key=lambda item: item[0])[1] if districts else None
        return gz.province_of(city), city, district


def _agrees(region: Region, city: Region, province: Region, gz: Gazetteer) -> bool:
    """Whether ``region`` is the province, the city, or a district of the reading (city, province)."""
    if region.level == "province":
        return region.adcode == province.adcode
    if region.level == "city":
        return region.key == city.key
    return region.parent == city.adcode
