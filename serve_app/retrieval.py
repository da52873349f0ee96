"""Ranked branch lookup in PostgreSQL: structured filters first, pg_trgm similarity to rank.

The statement is chosen from a small fixed set by which entities are known, so each has a plan that
uses the right index and no SQL is ever built from values:

- bank and city (or district) known → btree ``(bank_name, city)`` / ``(district)``: a few hundred rows
  at most, ranked exactly;
- otherwise → the GIN index over ``(bank_name, search_name)`` trigrams, probed with the branch keyword
  (or the whole text) through word similarity (``<%``), intersected with whatever filter is known.
  Word similarity needs most of the probe's trigrams to match, which lets GIN skip the posting lists of
  trigrams every name shares (银行, 支行); plain ``%`` similarity at a useful threshold scans tens of
  thousands of rows at 150k.

If the filtered statement finds nothing (an entity was wrong, or the directory lacks the pair), the
search is repeated with fewer filters, ending with trigram similarity alone.
"""

from __future__ import annotations

import asyncpg

from serve_app.normalize import normalize
from serve_app.schemas import Entities, Match

# score = trigram similarity of the whole query, plus how well the probe (branch keyword, else the text)
# occurs in the name, plus a small bonus for the district; ties go to the shorter name (a 营业部 or head
# office over its sub-branches), then to the code, so results are deterministic.
_SELECT = """
SELECT code, name, bank_name, province, city,
       similarity(search_name, $1)
       + word_similarity($2, search_name)
       + CASE WHEN $3 <> '' AND district = $3 THEN 0.1 ELSE 0 END
       AS score
FROM branches
WHERE {where}
ORDER BY score DESC, length(search_name), code
LIMIT $4
"""

#: Filter combinations, most specific first: (WHERE clause, entity fields bound to $5, $6, ...).
#: $1 is the normalized text, $2 the probe (branch keyword, else the text), $3 the district, $4 the limit.
_WHERE: dict[str, tuple[str, tuple[str, ...]]] = {
    "bank_city": ("bank_name = $5 AND city = $6", ("bank", "city")),
    "bank_district": ("bank_name = $5 AND district = $3", ("bank",)),
    "bank_trgm": ("bank_name = $5 AND $2 <% search_name", ("bank",)),
    "city_trgm": ("city = $5 AND $2 <% search_name", ("city",)),
    "province_trgm": ("province = $5 AND $2 <% search_name", ("province",)),
    "trgm": ("$2 <% search_name", ()),
}
STATEMENTS = {name: _SELECT.format(where=where) for name, (where, _) in _WHERE.items()}


def plan_for(entities: Entities) -> list[str]:
    """The statements to try, in order, for the entities that are known."""
    plans = []
    if entities.bank and entities.city:
        plans.append("bank_city")
    if entities.bank and entities.district:
        plans.append("bank_district")
    if entities.bank:
        plans.append("bank_trgm")
    if entities.city:
        plans.append("city_trgm")
    if entities.province:
        plans.append("province_trgm")
    plans.append("trgm")
    return plans


class BranchRepository:
    """Async lookups over one asyncpg pool (one pool per process; never shared across processes)."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def search(self, entities: Entities, text: str, top_k: int = 5) -> list[Match]:
        """Rank directory records for a query. ``text`` is the normalized query.

        Returns at most ``top_k`` matches, best first; an empty list when nothing is similar enough.
        """
        if top_k <= 0:
            return []
        async with self.pool.acquire() as conn:
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
    return (text, probe, entities.district or "", top_k, *filters)
