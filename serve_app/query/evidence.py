"""Evidence: how one directory record agrees with what a query says, part by part.

Bank, city, district, and the branch keyword with place names and the level (支行, 营业部 …) set aside;
and how many other candidates fit as well ("rivals"). Pure functions; ``serve_app.query.verdict`` turns the
evidence into a confidence and a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher

from serve_app.extraction.levels import LEVEL_AT_END
from serve_app.normalize import normalize
from serve_app.query.candidates import Candidate
from serve_app.query.place_words import other_places, place_forms, written_in, written_places
from serve_app.schemas import Agreement, Entities, Evidence

#: A business counter: a branch's, or a head office's own (a village bank with one office).
_COUNTERS = frozenset({"营业部", "营业室"})
#: Levels people write for one another. 分行 and 分行营业部 are not among them: the directory lists a
#: branch and its business department under different codes.
_LEVEL_FAMILIES = (_COUNTERS, frozenset({"信用社", "信用分社"}))
_PARTIAL_SIMILARITY = 0.6
_RIVALS_CAP = 2


@dataclass(frozen=True)
class Fit:
    """One candidate's evidence and the place agreement the model reads (finer than ``Evidence``)."""

    candidate: Candidate
    evidence: Evidence
    place: str  # exact | city | unstated | conflict
    level: str  # agree | differ | unstated
    #: The query's keyword is nothing but place names and a level (浏阳支行): "exact" then says less.
    places_only: bool = False
    #: The place agreed on is written in the query (outside the bank's name), not only inferred.
    place_written: bool = False

    @property
    def vague(self) -> bool:
        """The query names no branch: no words beyond places, and no level (华夏银行绵阳)."""
        return (self.places_only or self.evidence.branch == "unstated") and self.level == "unstated"

    @property
    def strength(self) -> tuple[int, int, int]:
        return (_BRANCH_RANK[self.evidence.branch], _PLACE_RANK[self.place], _LEVEL_RANK[self.level])

    def as_strong_as(self, other: Fit) -> bool:
        """Whether this candidate fits the query at least as well as ``other`` on keyword, place and level."""
        return all(mine >= theirs for mine, theirs in zip(self.strength, other.strength, strict=True))

    @property
    def payable(self) -> bool:
        """Whether the record takes payments: records marked 不对外 (not open for business) never do."""
        return "不对外" not in self.candidate.name

    @property
    def fits(self) -> bool:
        """Worth showing a person: the keyword agrees, and the place does not contradict a partial one (or a
        prefix); or the query names a bank and a place and no branch words (中国农业银行淮安: a name cut after its
        place; 淮安支行: a unit named by its place alone), and this is one of the bank's branches in that place."""
        branch = self.evidence.branch
        if (self.vague or self.places_only) and self.place_written and self.place in {"exact", "city"}:
            return True
        return branch == "exact" or (branch in {"prefix", "partial"} and self.place != "conflict")


_BRANCH_RANK = {"exact": 3, "prefix": 2, "partial": 1, "none": 0, "unstated": 0}
_PLACE_RANK = {"exact": 3, "city": 2, "unstated": 1, "conflict": 0}
_LEVEL_RANK = {"agree": 2, "unstated": 1, "differ": 0}


def _strip_levels(keyword: str) -> tuple[str, str | None]:
    """The keyword without trailing levels (…支行营业室 → …), and the last level it had."""
    last = None
    while (match := LEVEL_AT_END.search(keyword)) is not None:
        last = last or match.group(1)
        keyword = keyword[: match.start()]
    return keyword, last


#: Words of a zone's name (成都高新技术产业开发区, 郑州航空港经济综合实验区), which starts with its city's.
_ZONE_WORDS = ("开发", "园区", "新区", "高新", "实验区", "试验区")


def keyword_core(keyword: str, places: tuple[str | None, ...]) -> tuple[str, str | None]:
    """What names the branch itself: the keyword without levels, place names and inner 分行; and its level.

    Places are set aside in order, the query's first, so a county named like its city (衡阳县) keeps its 县
    against a keyword that writes the city (衡阳城关 is not 衡阳县城关). A zone named with its city's name goes
    first, whole: setting the city aside first would leave the rest of it (高新技术产业开发区 of 成都高新技术
    产业开发区) to read as the branch's own words."""
    core, level = _strip_levels(keyword)
    forms_of_each = [place_forms(place) for place in places]
    zones = {form for forms in forms_of_each for form in forms if any(w in form for w in _ZONE_WORDS)}
    for form in sorted(zones, key=len, reverse=True):
        core = core.replace(form, "")
    for forms in forms_of_each:
        for form in forms:
            core = core.replace(form, "")
    return core.replace("分行", ""), level


def _branch_agreement(query_core: str, candidate_core: str) -> Agreement:
    if query_core == candidate_core:
        return "exact"
    if not query_core or not candidate_core:
        return "none"
    if query_core in candidate_core or candidate_core in query_core:
        return "partial"
    if SequenceMatcher(None, query_core, candidate_core).ratio() >= _PARTIAL_SIMILARITY:
        return "partial"
    return "none"


#: The shortest keyword read as a name cut short: two characters start too many names to say anything.
_MIN_PREFIX = 3


def _cut_short_of(keyword: str, candidate_branch: str) -> bool:
    """Whether the query's keyword is the start of the record's, cut before its end (a statement export's
    field limit: 宿迁分行清 of 宿迁分行清算中心)."""
    return len(keyword) >= _MIN_PREFIX and len(keyword) < len(candidate_branch) and candidate_branch.startswith(keyword)


def _level_agreement(query_level: str | None, candidate_level: str | None) -> str:
    if query_level is None:
        return "unstated"
    if query_level == candidate_level:
        return "agree"
    if any(query_level in family and candidate_level in family for family in _LEVEL_FAMILIES):
        return "agree"
    return "differ"


def query_keyword(entities: Entities) -> str:
    """The query's branch keyword, normalized as the directory's names are (once per query)."""
    return normalize(entities.branch) if entities.branch else ""


def evidence(entities: Entities, keyword: str, candidate: Candidate, written: str | None = None) -> Fit:
    """How the query's entities (and its ``query_keyword``) agree with one candidate. ``written``: the
    normalized query (default: the keyword), which tells a place written from one only inferred (西山 read
    as 昆明市西山区 writes no 昆明)."""
    outside_bank = written_places(entities, keyword if written is None else written)
    if _registered_district_only(entities, candidate, outside_bank):
        entities = entities.model_copy(update={"district": None})
    places = (
        entities.province,
        entities.city,
        entities.district,
        candidate.province,
        candidate.city,
        candidate.district,
    )
    query_core, query_level = keyword_core(keyword, places)
    candidate_core, candidate_level = keyword_core(candidate.branch, places)
    bank: Agreement = "unstated" if not entities.bank else ("exact" if entities.bank == candidate.bank else "none")
    city = _place_agreement(entities.city, candidate.city, candidate.branch)
    district = _place_agreement(entities.district, candidate.district, candidate.branch)
    place = _place(entities, candidate, city, district, outside_bank)
    branch = _branch_agreement(query_core, candidate_core)
    if branch != "exact" and query_level is None and _cut_short_of(keyword, candidate.branch):
        branch = "prefix"
    elif branch == "none" and query_level is None and len(keyword) == 2 and candidate.branch.startswith(keyword):
        branch = "partial"  # two characters start too many names to be a prefix's evidence (张家 of 张家港…)
    if branch == "exact" and place != "conflict" and _named_for_another_place(keyword, entities, candidate, query_core):
        branch = "partial"
    if branch == "exact" and not query_core and other_places(keyword, candidate.branch, places):
        branch = "partial"  # places alone, each its own (南昌湾里支行, 南昌新建支行): another unit
    if not candidate.branch and query_level is not None and query_level not in _COUNTERS:
        # The institution's own record names no unit, and the keyword names one (海曙支行); a 营业部 may be the
        # head office's own counter (a village bank with one office).
        branch = "none"
    return Fit(
        candidate=candidate,
        evidence=Evidence(bank=bank, city=city, district=district, branch=branch),
        place=place,
        level=_level_agreement(query_level, candidate_level),
        places_only=not query_core,
        place_written=written_in(entities.city, outside_bank) or written_in(entities.district, outside_bank),
    )


def _registered_district_only(entities: Entities, candidate: Candidate, written: str) -> bool:
    """Whether the query's district is spelt only by the bank's name (宁波鄞州农村商业银行: where the bank is
    registered) and is not the record's: a county's bank has branches filed across its city, so that says
    nothing against this one, as a district written outside the bank's name would."""
    district = entities.district
    return (
        bool(district)
        and district != candidate.district
        and not written_in(district, written)
        and not written_in(district, candidate.branch)
    )


def _named_for_another_place(keyword: str, entities: Entities, candidate: Candidate, query_core: str) -> bool:
    """Whether the record's name spells a place of its own (its county: 泗阳城中支行) that the query's keyword
    does not, while the keyword spells another that the name does not (宿迁城中支行): the same unit words,
    named for another place. A keyword that spells no place (城中支行), or only places the name spells too
    (法库支行 of 沈阳法库支行), says nothing against it.

    A keyword of places alone (汉中支行, 南阳支行) that writes the record's places, or a city, names its unit by
    them only: a record whose name spells a place of its own that was not read from the query is another
    unit, however alike the words — a district's (汉中南郑区支行), a county's named like its city (衡阳县支行,
    where 衡阳 was read as the city), or a town's named like a city elsewhere (启东南阳支行 for 南阳支行, which
    may as well be 南阳's own). A district name read elsewhere is no such evidence: 中山支行 is as much a
    street's branch (沈阳中山支行) as 大连's 中山区 one."""
    own = [place for place in (candidate.district, candidate.city) if place and written_in(place, candidate.branch)]
    if not own:
        return False
    read = (entities.city, entities.district)
    read_here = [place for place in read if place and written_in(place, keyword)]
    if (
        not query_core
        and read_here
        and (entities.city in read_here or set(read_here) <= {candidate.city, candidate.district})
    ):
        return any(place not in read for place in own)
    if any(written_in(place, keyword) for place in own):
        # The keyword writes the record's city, and the record's name its own district after it, which the
        # keyword does not (盐城城南支行 against 盐城大丰城南支行): that district's unit, named for it.
        return (
            candidate.city in own
            and written_in(candidate.city, keyword)
            and candidate.district in own
            and not written_in(candidate.district, keyword)
        )
    return any(
        written_in(place, keyword) and not written_in(place, candidate.branch) for place in (entities.province, *read)
    )


def _place(entities: Entities, candidate: Candidate, city: Agreement, district: Agreement, written: str) -> str:
    """The place agreement the verdict reads: ``conflict`` when a place *written* in the query is not the
    candidate's (a city is a generic unit's whole identity, and a district name shared by many cities, 高新区,
    agreeing elsewhere does not make up for it); a place only inferred (西山 read as 昆明市西山区, a city
    bank's home) never conflicts."""
    if entities.city and city != "exact" and written_in(entities.city, written):
        return "conflict"
    if entities.district and district != "exact" and city != "exact" and written_in(entities.district, written):
        return "conflict"
    if entities.district and district == "exact":
        return "exact"
    if entities.city and city == "exact":
        return "city" if entities.district else "exact"
    province_elsewhere = entities.province and not entities.city and entities.province != candidate.province
    if (
        province_elsewhere
        and written_in(entities.province, written)
        and not written_in(entities.province, candidate.branch)
    ):
        return "conflict"
    return "unstated"


def _place_agreement(read: str | None, recorded: str | None, candidate_branch: str) -> Agreement:
    """A place read from the query against the record's: its field, or the record's own branch name, which
    may spell a place its fields do not (a county branch filed under its prefecture's PBOC code; 宁波银行
    丹东支行 filed where the bank is)."""
    if not read:
        return "unstated"
    if read == recorded or written_in(read, candidate_branch):
        return "exact"
    return "none"


def rivals(fit: Fit, fits: list[Fit]) -> int:
    """How many other candidates fit at least as well on keyword, place and level (capped)."""
    return min(sum(1 for other in fits if other is not fit and other.as_strong_as(fit)), _RIVALS_CAP)
