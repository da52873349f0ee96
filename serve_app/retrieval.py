"""Ranked branch lookup in PostgreSQL: structured filters to find candidates, pg_trgm to rank them.

The statement is chosen from a small fixed set by which entities are known, so each has a plan that
uses the right index and no SQL is ever built from values:

- bank known → the bank's branches that are in the extracted city or district, *or* whose name contains
  the branch keyword: a BitmapOr of the btree ``(bank_name, city)``, ``(district)`` and the GIN index over
  ``(bank_name, search_name)`` trigrams. Place is a strong ranking signal, not a hard filter, so a
  misread place (朝阳 read as Beijing's) cannot hide the branch that carries the keyword.
- no bank, place known → branches in that city or district whose name matches the keyword;
- otherwise → the trigram index alone.
- a bank's rows scanned for the keyword verbatim, only when the above found nothing.

Keyword matching is word similarity (``<%``): most of the probe's trigrams must occur, in order, which
lets GIN skip the posting lists of trigrams every name shares (银行, 支行); plain ``%`` similarity at a
useful threshold scans tens of thousands of rows at 150k. If a statement finds nothing, the search goes
on with the next, more general one.
"""

from __future__ import annotations

import asyncpg

from serve_app.normalize import normalize
from serve_app.schemas import Entities, Match

#: Score bonuses for agreeing with the extracted place and for containing the whole branch keyword;
#: the trigram terms are each in [0, 1].
CITY_BONUS = 0.5
DISTRICT_BONUS = 0.3
KEYWORD_BONUS = 0.5

# score = trigram similarity of the whole query + word similarity of the probe (branch keyword, else
# the text) + bonuses for the extracted city and district and for containing the probe verbatim (short
# and truncated keywords such as 和平 have no trigrams inside a name); ties go to the shorter name (a
# 营业部 or head office over its sub-branches), then to the code, so results are deterministic.
_SELECT = f"""
SELECT code, name, bank_name, province, city,
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
    "bank_place": ("bank_name = $6 AND (city = $3 OR district = $4 OR $2 <% search_name)", ("bank",)),
    "bank": ("bank_name = $6 AND $2 <% search_name", ("bank",)),
    # Last resort for a bank: the keyword verbatim, for probes too short for trigrams. Scans the bank's
    # rows, so it runs only when the indexed statements found nothing.
    "bank_substring": ("bank_name = $6 AND strpos(search_name, $2) > 0", ("bank",)),
    "place": ("(city = $3 OR district = $4) AND $2 <% search_name", ()),
    "province": ("province = $6 AND $2 <% search_name", ("province",)),
    "trgm": ("$2 <% search_name", ()),
}
STATEMENTS = {name: _SELECT.format(where=where) for name, (where, _) in _WHERE.items()}


def plan_for(entities: Entities) -> list[str]:
    """The statements to try, in order, for the entities that are known."""
    plans = []
    has_place = bool(entities.city or entities.district)
    if entities.bank:
        plans.append("bank_place" if has_place else "bank")
        plans.append("bank_substring")
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

    async def search(self, entities: Entities, text: str, top_k: int = 5) -> list[Match]:
        """Rank directory records for a query. ``text`` is the normalized query.

        Returns at most ``top_k`` matches, best first; an empty list when nothing is similar enough.
        Raises ``TimeoutError`` when no pooled connection comes free within ``acquire_timeout_s``.
        """
        if top_k <= 0:
            return []
        async with self.pool.acquire(timeout=self.acquire_timeout_s) as conn:
            for plan in plan_for(entities):
                rows = await conn.fetch(STATEMENTS[plan], *_arguments(plan, entities, text, top_k))
                if rows:
                    return [
                        Match(
                            code=row["code"],
                            name=row["name"],
                            bank=row["bank_name"],
                            province=row["province"],
                            city=row["city"],
                            score=round(float(row["score"]), 4),
                        )
                        for row in rows
                    ]
        return []

    async def explain(self, plan: str, entities: Entities, text: str, top_k: int = 5) -> str:
        """EXPLAIN (ANALYZE) of one statement, for tests and the benchmark."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "EXPLAIN (ANALYZE, COSTS OFF) " + STATEMENTS[plan], *_arguments(plan, entities, text, top_k)
            )
        return "\n".join(row[0] for row in rows)


def _arguments(plan: str, entities: Entities, text: str, top_k: int) -> tuple:
    probe = (normalize(entities.branch) if entities.branch else "") or text
    filters = tuple(getattr(entities, field) for field in _WHERE[plan][1])
    return (text, probe, entities.city or "", entities.district or "", top_k, *filters)
