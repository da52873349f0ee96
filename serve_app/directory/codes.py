"""CNAPS codes (联行号): the ISO 7064 MOD 11,10 check digit, and finding codes inside free text.

A CNAPS code is 12 digits: bank class (3), PBOC city code (4), branch sequence (4), check digit (1).
Statement lines often carry one (``…（联行号：304659715925）``); a code that passes its check digit is a
far stronger signal than any name, and one that fails is a typo that must never be guessed around.

A 12-digit number is read as a code unless the text labels it as something else: pasted payment
instructions carry account numbers (``账号：455765432109 开户行：…``), and some accounts are 12 digits.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

CODE_LENGTH = 12
#: Exactly 12 digits, not part of a longer number (most account numbers are 16-19 digits).
_CODE_IN_TEXT = re.compile(r"(?<!\d)(\d{12})(?!\d)")
#: Labels that make the number after them an account, not a bank's code: 账号, 帐号, 卡号, 账户, 户号
#: (收款账户号 …), ACCOUNT / ACCT / A/C, each optionally followed by NO. Matched against the folded text
#: that ends where the number starts, separators (spaces, colons, 为/是) allowed in between.
_ACCOUNT_LABEL = re.compile(
    r"(?:账号|帐号|卡号|账户|帐户|户号|存折号|ACCOUNT|ACCT|A/C)(?:\s*NO\.?)?(?:\s*(?:NUMBER|为|是))?[\s:：#=.-]*$",
    re.IGNORECASE,
)
#: Labels written before a code (联行号：, 行号, CNAPS:): removed with the code from the words.
_CODE_LABEL = re.compile(r"(?:联行号|行号|CNAPS(?:\s*CODE)?|支付系统行号)(?:\s*(?:为|是))?[\s:：#=.-]*$", re.IGNORECASE)


def check_digit(first_eleven: str) -> int:
    """The ISO 7064 MOD 11,10 check digit of an 11-digit string."""
    product = 10
    for char in first_eleven:
        total = (product + int(char)) % 10 or 10
        product = (2 * total) % 11
    return (11 - product) % 10


def pasted_code(text: str) -> str:
    """A code as people paste it, as 12 digits: full-width digits folded, spaces, hyphens and dots between
    groups removed (``3046 5971 5925``, ``304-659-715-925``). Anything else is left for the check to refuse."""
    folded = unicodedata.normalize("NFKC", text).strip()
    squeezed = re.sub(r"(?<=\d)[\s.\-]+(?=\d)", "", folded)
    return squeezed if squeezed.isdigit() else folded


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
    """The first standalone 12-digit number in ``text`` (full-width digits accepted) that no account label
    precedes, checked; else None.

    Read from the raw query: normalization drops bracketed annotations, where statement lines keep codes.
    """
    return split_code(text)[0]


def split_code(text: str) -> tuple[CodeInText | None, str]:
    """``find_code(text)``, and the words of ``text`` without that code and the label before it (the text
    unchanged when it carries no code): what the words say is read apart from the code they carry."""
    folded = unicodedata.normalize("NFKC", text)
    for match in _CODE_IN_TEXT.finditer(folded):
        if _ACCOUNT_LABEL.search(folded, 0, match.start()):
            continue
        code = match.group(1)
        found = CodeInText(code=code, valid=is_valid_code(code), whole_query="".join(folded.split()) == code)
        label = _CODE_LABEL.search(folded, 0, match.start())
        start = label.start() if label else match.start()
        return found, f"{folded[:start]} {folded[match.end() :]}"
    return None, text
