"""Natural-language questions around a branch name: 请帮我查一下华夏银行在江油西山那个支行的联行号.

The rules extractor reads the bank, then takes the rest of the text as the branch keyword; in a question
that rest carries the asking (请问, 帮我查一下), what is asked for (的联行号是多少, 的行号), and fillers
(在, 那个, 这家); on a statement line, what was done (转账, 汇款). ``strip_question`` removes those so the
keyword is the branch's own words (江油西山支行). None of these words occurs in official branch names in
these positions.
"""

from __future__ import annotations

import re
import unicodedata

from serve_app.extraction.levels import NAME_END_INSIDE

#: What is asked for, at the end: (的)(联行号|行号|…)(是|为)(多少|什么|啥)(呢|啊)(?).
_ASKED_FOR = re.compile(
    r"(的)?(开户行)?(大额)?(支付系统)?(联行号|联行行号|行号|银行代码|行别代码|CNAPS码|CNAPS号|CNAPS|银联号|代码|编号|号码|信息|地址)"
    r"(码)?(是|为)?(多少|什么|啥|哪个)?(呀|呢|啊|吗|嘛)?$"
)
#: What a question asks for, anywhere after the name (…支行对应的行号是, …支行，联行号多少): the name ends at
#: the last branch level before it, whatever words come between or after.
_ASKED_FOR_WORD = re.compile(r"联行号|行号|银行代码|行别代码|CNAPS|银联号")
#: Trailing question words without an object: 是多少, 是哪个, 吗.
_TRAILING_ASK = re.compile(
    r"(是|为)?(多少|什么|啥|哪个|哪家|哪里|哪儿)?(呀|呢|啊|吗|嘛)$|(是|为)(多少|什么|啥|哪个)$|(在)?(哪里|哪儿|哪)$"
)
#: Requests before the name: 请问, 请帮我查一下, 麻烦查询, 我想知道.
_REQUEST = re.compile(
    r"^(你好|您好)?(请问|请|麻烦|劳驾)?(你|您)?(帮我|帮忙|给我)?(查一下|查下|查询一下|查询|查找|找一下|搜一下|搜索|看一下|看看)?"
    r"(我想知道|我想查|我要查|想问一下|想问|问一下|一下)?"
)
#: Fillers inside the keyword: prepositions and demonstratives (在江油西山那个支行 → 江油西山支行).
_FILLERS = re.compile(r"那个|这个|哪个|那家|这家|哪家|那一个|这一个")
#: What a statement line says was done, after the bank: …支行转账, …支行汇款, …支行开户 (never part of a
#: branch name).
_TRANSACTION_TAIL = re.compile(r"(转账|转帐|汇款|付款|打款|收款|划款|代付|代发|开户|开的户|的账户|账户)+$")
#: The name's outlet, said after it (…支行网点, …支行的营业网点): no directory name ends so.
_OUTLET_TAIL = re.compile(r"(的)?(营业)?网点$")
#: Punctuation (?, 、, —, ·, quotes …; Unicode's categories): no directory name has any. Not brackets: one left
#: open says a name was cut inside its annotation (…东方市支行（ of …东方市支行（不对外营业）, another record).
_PUNCTUATION = frozenset({"Pc", "Pd", "Po", "Pi", "Pf"})
_LEADING_PREPOSITION = re.compile(r"^(在|的|位于)")  # not 于: 于都, 于田 are counties


def strip_question(keyword: str) -> str:
    """``keyword`` without question phrasing; unchanged when it has none. Pure and total."""
    text = "".join(char for char in keyword if unicodedata.category(char) not in _PUNCTUATION)
    if not text:
        return text
    text = _before_what_is_asked(text)
    previous = None
    while previous != text:  # tails can stack: 的联行号是多少呢
        previous = text
        text = _ASKED_FOR.sub("", text)
        text = _TRAILING_ASK.sub("", text) if len(text) > 2 else text
        text = _TRANSACTION_TAIL.sub("", text)
        text = _OUTLET_TAIL.sub("", text)
    text = _REQUEST.sub("", text, count=1)
    text = _LEADING_PREPOSITION.sub("", text)
    return _FILLERS.sub("", text)


def _before_what_is_asked(text: str) -> str:
    """The text as far as the last end of a name (a level or a unit) before what it asks for (江油西山支行对应的
    行号是 → 江油西山支行, 江西省分行票据中心的行号 → …票据中心); unchanged without a word for what is asked, or
    without a name's end before it."""
    asked = _ASKED_FOR_WORD.search(text)
    if asked is None:
        return text
    ends = [m for m in NAME_END_INSIDE.finditer(text, 0, asked.start()) if m.start() >= 2]
    return text[: ends[-1].end()] if ends else text
