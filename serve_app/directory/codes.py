"""CNAPS codes (联行号): the ISO 7064 MOD 11,10 check digit, and finding codes inside free text.

A CNAPS code is 12 digits: bank class (3), PBOC city code (4), branch sequence (4), check digit (1).
Statement lines often carry one (``…（联行号：304659715925）``); a code that passes its check digit is a
far stronger signal than any name, and one that fails is a typo that must never be guessed around.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

CODE_LENGTH = 12
#: Exactly 12 digits, not part of a longer number (account numbers are 16-19 digits).
_CODE_IN_TEXT = re.compile(r"(?<!\d)(\d{12})(?!\d)")


def check_digit(first_eleven: str) -> int:
    """The ISO 7064 MOD 11,10 check digit of an 11-digit string."""
    product = 10
    for char in first_eleven:
        total = (product + int(char)) % 10 or 10
        product = (2 * total) % 11
    return (11 - product) % 10


def is_code_shaped(code: str) -> bool:
    """Whether ``code`` is 12 ASCII digits (its check digit unexamined)."""
    return len(code) == CODE_LENGTH and code.isascii() and code.isdigit()


def is_valid_code(code: str) -> bool:
    """Whether ``code`` is 12 ASCII digits whose last is the check digit of the first 11."""
    return is_code_shaped(code) and int(code[-1]) == check_digit(code[:-1])


@dataclass(frozen=True)
class CodeInText:
    code: str
    valid: bool
    #: The whole query is the code (after whitespace and full-width digits), not a line carrying one.
    whole_query: bool


def find_code(text: str) -> CodeInText | None:
    """The first standalone 12-digit number in ``text`` (full-width digits accepted), checked; else None.

    Read from the raw query: normalization drops bracketed annotations, where statement lines keep codes.
    """
    folded = unicodedata.normalize("NFKC", text)
    match = _CODE_IN_TEXT.search(folded)
    if match is None:
        return None
    code = match.group(1)
    return CodeInText(code=code, valid=is_valid_code(code), whole_query="".join(folded.split()) == code)
