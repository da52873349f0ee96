"""Small pieces of SQL text shared by the statements that need them (values are always bound, never spliced)."""

from __future__ import annotations


def escape_like(text: str) -> str:
    """``text`` for a ``LIKE … ESCAPE '\\'`` pattern: its own ``\\``, ``%`` and ``_`` matched literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
