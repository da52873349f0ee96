"""Small pieces of SQL text shared by the statements that need them (values are always bound, never spliced)."""

from __future__ import annotations


def escape_like(text: str) -> str:
    """``text`` for a ``LIKE … ESCAPE '\\'`` pattern: its own ``\\``, ``%`` and ``_`` matched literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def where_clause(clauses: dict[str, str], values: dict[str, object]) -> tuple[str, list[object]]:
    """The ``WHERE`` condition of the fixed ``clauses`` whose value is given (not None, not empty), each
    ``${n}`` numbered in turn, and the values to bind: ``("bank_name = $1 AND city = $2", [bank, city])``;
    ``true`` when none is. Page statements bind their limit and offset after these."""
    parts: list[str] = []
    arguments: list[object] = []
    for name, clause in clauses.items():
        value = values.get(name)
        if value is not None and value != "":
            arguments.append(value)
            parts.append(clause.replace("{n}", str(len(arguments))))
    return " AND ".join(parts) or "true", arguments
