"""Candidate branches in PostgreSQL: structured filters to find them, pg_trgm to rank them.

The statement is chosen from a small fixed set by which entities are known, so each has a plan that
uses the right index and no SQL is ever built from values:

- bank known → only that bank's branches: first those whose name is similar to the branch keyword (the
  GIN index over ``(bank_name, search_name)`` trigrams, bank and trigrams intersected inside the index),
  ranked with bonuses for the extracted city and district (also when all similar ones lie elsewhere); when
  none is, the bank's branches in that city or district, or province; then its rows containing the keyword
  verbatim; last, its names sharing some of the keyword's trigrams (never a ``match``). The bank is a
  constraint, never a hint: when none of its branches is similar, the answer is that none is, not another
  bank's branch with the same street name.
- no bank read → a kind of bank written (农商银行), only that kind's banks (a kind is a constraint too);
  else a place, branches there; the index alone.
Words after a name's level are tried whole, then set aside (``_stages``).

Keyword matching is word similarity (``<%``): most of the probe's trigrams must occur, in order, which
lets GIN skip the posting lists of trigrams every name shares (银行, 支行). Whether a candidate *fits*
the query, and how sure that is, is decided afterwards by ``serve_app.query.verdict``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from serve_app.db.errors import DIRECTORY, database_errors
from serve_app.db.sql import escape_like
from serve_app.directory.gazetteer import Gazetteer
from serve_app.extraction.kinds import NAME_ENDINGS
from serve_app.extraction.levels import LEVEL_AT_END, name_before_bracket, name_before_tail
from serve_app.normalize import normalize
from serve_app.query.candidates import Candidate, Retrieval
from serve_app.schemas import Entities

#: Score bonuses for agreeing with the extracted place and for containing the whole branch keyword;
#: the trigram terms are each in [0, 1].
CITY_BONUS = 0.5
DISTRICT_BONUS = 0.3
KEYWORD_BONUS = 0.5
#: The least word similarity of a name found by the last resort (``bank_loose``); the verdict decides what fits.
LOOSE_SIMILARITY = 0.3

# score = trigram similarity of the whole query + word similarity of the probe (branch keyword, else
# the text) + bonuses for the extracted city and district and for containing the probe verbatim (short
# and truncated keywords such as 和平 have no trigrams inside a name); ties go to the shorter name (a
# 营业部 or head office over its sub-branches), then to the code, so results are deterministic.
_COLUMNS = "code, name, bank_name, bank_code, province, city, district, branch, clearing_code, retired_on"
_SELECT = f"""
SELECT {_COLUMNS},
       similarity(search_name, $1)
       + word_similarity($2, search_name)
       + CASE WHEN city = $3 THEN {CITY_BONUS} ELSE 0 END
       + CASE WHEN district = $4 THEN {DISTRICT_BONUS} ELSE 0 END
       + CASE WHEN strpos(search_name, $2) > 0 THEN {KEYWORD_BONUS} ELSE 0 END
       AS score
FROM branches
WHERE {{where}}
ORDER BY score DESC, length(search_name), code
LIMIT $5
"""  # noqa: S608 - constants only

#: Candidate sets, most specific first: (WHERE clause, entity fields bound to $6, $7, ...).
#: $1 is the normalized text, $2 the probe (branch keyword, else the text), $3 the city, $4 the district
#: ('' when unknown), $5 the limit.
_WHERE: dict[str, tuple[str, tuple[str, ...]]] = {
    # A keyword without a level at its end may be a name cut short (statement exports cut the field at a
    # byte or character limit: 宿迁分行清): the bank's names that start with it, through the trigram index.
    "bank_prefix": ("bank_name = $6 AND search_name LIKE $7 ESCAPE '\\'", ("bank", "prefix")),
    "bank": ("bank_name = $6 AND $2 <% search_name", ("bank",)),
    # The keyword matched none of the bank's names (misspelt, abbreviated, too short for trigrams): the
    # bank's branches in the place, for the verdict to judge. Scoring every branch of a large bank in a
    # large city is what made this the first statement slow (229 ICBC rows in Beijing), so it comes second.
    "bank_place": ("bank_name = $6 AND (city = $3 OR district = $4)", ("bank",)),
    # A province-level name (湖南分行, 四川省分行YY支行) reads a province and no city: the bank's branches in
    # that province, those in its capital ranked first (where province-level units are filed).
    "bank_province": ("bank_name = $6 AND province = $7", ("bank", "province")),
    # Last resort for a bank: the keyword verbatim, for probes too short for trigrams. Scans the bank's
    # rows, so it runs only when the indexed statements found nothing.
    "bank_substring": ("bank_name = $6 AND strpos(search_name, $2) > 0", ("bank",)),
    # The very last: ``bank`` at a lower word-similarity threshold (``LOOSE_SIMILARITY``, set for the one
    # statement), names that share some of the keyword's trigrams (a place dropped from inside a name:
    # 自贸试验区片区支行 of 云南自贸试验区红河片区支行). What it finds is never a `match`.
    "bank_loose": ("bank_name = $6 AND $2 <% search_name", ("bank",)),
    # Without a bank read: a kind of institution written (农村商业银行城关支行), the branches of that name of
    # the banks of that kind (by their names: a 农商银行 converted from a 联社 keeps its 402 codes), and no
    # other bank's; with neither a bank nor a kind, any bank's branches, for a person to choose from.
    "kind": ("bank_name ~ $6 AND $2 <% search_name", ("kind",)),
    "place": ("(city = $3 OR district = $4) AND $2 <% search_name", ()),
    "province": ("province = $6 AND $2 <% search_name", ("province",)),
    "trgm": ("$2 <% search_name", ()),
}
STATEMENTS = {name: _SELECT.format(where=where) for name, (where, _) in _WHERE.items()}


_BY_CODE = f"SELECT {_COLUMNS}, 0.0 AS score FROM branches WHERE code = $1"  # noqa: S608 - constants only
#: How alike (pg_trgm similarity of the branch keywords) an active branch must be named to be suggested
#: as a retired one's successor when no load links them.
SUCCESSOR_SIMILARITY = 0.3
_SUCCESSORS = f"""
SELECT {_COLUMNS}, similarity(branch, $4) AS score
FROM branches
WHERE bank_name = $1 AND city = $2 AND code <> $3 AND retired_on IS NULL
  AND (added_version = (SELECT retired_version FROM branches WHERE code = $3)
       OR similarity(branch, $4) >= {SUCCESSOR_SIMILARITY})
ORDER BY added_version IS NOT DISTINCT FROM (SELECT retired_version FROM branches WHERE code = $3) DESC,
         score DESC, code
LIMIT $5
"""  # noqa: S608 - constants only
_BANK_HAS_BRANCHES = "SELECT EXISTS (SELECT 1 FROM branches WHERE bank_name = $1)"
_BRANCHES_THERE = """SELECT count(*) FROM branches
WHERE bank_name = $1 AND city = $2 AND ($3 = '' OR district = $3) AND retired_on IS NULL"""


#: Statements that find names *similar to the keyword*. A keyword with words after its name is tried whole
#: in these first (分行清算中心 is a whole name; 分行营业 one cut short), then as far as its level in all.
_KEYWORD_PLANS = frozenset({"bank_prefix", "bank", "place", "province", "trgm"})


def plan_for(entities: Entities) -> list[str]:
    """The statements to try, in order, for the entities that are known."""
    has_place = bool(entities.city or entities.district)
    if entities.bank:
        first = ["bank_prefix", "bank"] if _may_be_cut_short(entities.branch) else ["bank"]
        if has_place:
            return [*first, "bank_place", "bank_substring", "bank_loose"]
        if entities.province:
            return [*first, "bank_province", "bank_substring", "bank_loose"]
        return [*first, "bank_substring", "bank_loose"]
    if entities.bank_code in NAME_ENDINGS:
        return ["kind"]  # a kind written is a constraint as a bank is: 农商银行 is never 中国农业银行
    plans = []
    if has_place:
        plans.append("place")
    if entities.province:
        plans.append("province")
    plans.append("trgm")
    return plans


class BranchRepository:
    """Async lookups over one asyncpg pool (one pool per process; never shared across processes)."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout_s: float | None = None):
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s  # waiting for a free connection; None waits for ever

    async def search(self, entities: Entities, text: str, limit: int = 20) -> Retrieval:
        """Candidates for a query, best-scored first. ``text`` is the normalized query.

        With a bank read, only that bank's branches are candidates. Returns at most ``limit``; none when
        nothing is similar enough. The database's failures are the directory's (``database_errors``): 504
        when no pooled connection comes free within ``acquire_timeout_s`` or a statement times out, else 503.
        """
        if limit <= 0:
            return Retrieval([])
        with database_errors(DIRECTORY):
            return await self._search(entities, text, limit)

    async def _search(self, entities: Entities, text: str, limit: int) -> Retrieval:
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
            for plan, read in _stages(entities):
                rows = await _fetch(conn, plan, read, text, limit)
                if plan == "bank" and _all_elsewhere(rows, read):
                    # Every similar name is elsewhere (珠海江湾支行 for 上海江湾支行, where the name in the place is
                    # spelt 上海市江湾支行): the bank's branches in the place written are candidates too.
                    rows = _merged(rows, await _fetch(conn, "bank_place", read, text, limit), 2 * limit)
                if plan == "bank_place" and read.branch and not any(_probe(read, text) in r["branch"] for r in rows):
                    # None of the bank's branches in the place carries the keyword: one elsewhere that does
                    # (a branch filed under another city) is a candidate too, first.
                    rows = _merged(await _fetch(conn, "bank_substring", read, text, limit), rows, limit)
                if rows:
                    branch = read.branch if read is not entities else None
                    there = await conn.fetchval(_BRANCHES_THERE, *_place_of(read)) if _names_a_place(read) else None
                    candidates = [Candidate.from_row(row) for row in rows]
                    return Retrieval(candidates, branch=branch, branches_there=there, loosely=plan == "bank_loose")
            if entities.bank:
                return Retrieval([], bank_in_directory=await conn.fetchval(_BANK_HAS_BRANCHES, entities.bank))
        return Retrieval([])

    async def by_code(self, code: str) -> Candidate | None:
        """The record with this CNAPS code, or None."""
        with database_errors(DIRECTORY):
            async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
                row = await conn.fetchrow(_BY_CODE, code)
        return Candidate.from_row(row) if row else None

    async def successors(self, retired: Candidate, limit: int = 3) -> list[Candidate]:
        """Active branches of a retired one's bank and city that may have taken it over: added by the load
        that retired it, or named like it (``SUCCESSOR_SIMILARITY``), most alike first. For a person to
        choose from, never to pay to without one."""
        with database_errors(DIRECTORY):
            async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
                rows = await conn.fetch(_SUCCESSORS, retired.bank, retired.city, retired.code, retired.branch, limit)
        return [Candidate.from_row(row) for row in rows]

    async def explain(self, plan: str, entities: Entities, text: str, limit: int = 20) -> str:
        """EXPLAIN (ANALYZE) of one statement, for tests and the benchmark."""
        async with self.pool.acquire() as conn, _settings_of(conn, plan):
            rows = await conn.fetch(
                "EXPLAIN (ANALYZE, COSTS OFF) " + STATEMENTS[plan], *_arguments(plan, entities, text, limit)
            )
        return "\n".join(row[0] for row in rows)


async def _fetch(
    conn: asyncpg.Connection, plan: str, entities: Entities, text: str, limit: int
) -> list[asyncpg.Record]:
    async with _settings_of(conn, plan):
        rows: list[asyncpg.Record] = await conn.fetch(STATEMENTS[plan], *_arguments(plan, entities, text, limit))
    return rows


@asynccontextmanager
async def _settings_of(conn: asyncpg.Connection, plan: str) -> AsyncIterator[None]:
    """``bank_loose`` is ``bank`` at a lower word-similarity threshold, set for its one statement (in a
    transaction of its own: the other statements pay no round trip for it)."""
    if plan != "bank_loose":
        yield
        return
    async with conn.transaction():
        await conn.execute(f"SET LOCAL pg_trgm.word_similarity_threshold = {LOOSE_SIMILARITY}")
        yield


def _stages(entities: Entities) -> list[tuple[str, Entities]]:
    """(statement, the entities it searches by), in order: the keyword as read, then — when words that end
    no name follow its level (…支行那边打钱) — the name as far as that level, in every statement."""
    plans = plan_for(entities)
    shortened = name_before_tail(entities.branch)
    if shortened is None:
        return [(plan, entities) for plan in plans]
    cut = entities.model_copy(update={"branch": shortened})
    # Cut at a bracket: what a bracket holds is never a name's words, so the cut alone is searched.
    cut_at_bracket = shortened == name_before_bracket(entities.branch)
    whole = [] if cut_at_bracket else [(plan, entities) for plan in plans if plan in _KEYWORD_PLANS]
    return whole + [(plan, cut) for plan in plan_for(cut)]


def _all_elsewhere(rows: list[asyncpg.Record], entities: Entities) -> bool:
    """Whether a place was read and none of ``rows`` is in it."""
    if not rows or not (entities.city or entities.district):
        return False
    return not any(
        (entities.city and row["city"] == entities.city) or (entities.district and row["district"] == entities.district)
        for row in rows
    )


def _names_a_place(entities: Entities) -> bool:
    """Whether the query is a bank and a place with no level after them (中国银行安远, 华夏银行绵阳): a name cut
    after its place, or a bank and a place alone. How many branches the bank has there decides it."""
    return bool(entities.bank and entities.city) and (
        not entities.branch or LEVEL_AT_END.search(entities.branch) is None
    )


def _place_of(entities: Entities) -> tuple[str, str, str]:
    return entities.bank or "", entities.city or "", entities.district or ""


def _merged(first: list[asyncpg.Record], then: list[asyncpg.Record], limit: int) -> list[asyncpg.Record]:
    seen = {row["code"] for row in first}
    return (first + [row for row in then if row["code"] not in seen])[:limit]


def _may_be_cut_short(branch: str | None) -> bool:
    return branch is not None and len(branch) >= 3 and LEVEL_AT_END.search(branch) is None


def _probe(entities: Entities, text: str) -> str:
    return (normalize(entities.branch) if entities.branch else "") or text


def _arguments(plan: str, entities: Entities, text: str, limit: int) -> tuple[object, ...]:
    probe = _probe(entities, text)
    filters = tuple(_filter(f, entities, probe) for f in _WHERE[plan][1])
    city = entities.city or (_capital(entities.province) if plan == "bank_province" else None)
    return (text, probe, city or "", entities.district or "", limit, *filters)


def _filter(field: str, entities: Entities, probe: str) -> object:
    if field == "prefix":
        return _prefix_pattern(entities, probe)
    if field == "kind":
        return NAME_ENDINGS[entities.bank_code or ""]
    return getattr(entities, field)


def _capital(province: str | None) -> str | None:
    capital = Gazetteer.default().capital(province) if province else None
    return capital.name if capital else None


def _prefix_pattern(entities: Entities, probe: str) -> str:
    """``LIKE`` pattern of the names that start with the bank and the keyword as written (wildcards escaped)."""
    return escape_like(normalize(entities.bank or "") + probe) + "%"
