"""Kinds of local banking institution: words that name a kind of bank and not which one (农村商业银行城关支行).

The rules read such a word where no bank is, as the kind's CNAPS class (``Entities.bank_code``); retrieval
then searches the banks of that kind by how their names end (a 农商银行 converted from a 联社 keeps its 402
codes, so the class of a code does not say).
"""

from __future__ import annotations

import re

#: A kind written in a query → its CNAPS class.
WRITTEN_KINDS = {
    "农村信用合作联社": "402", "农村信用联社": "402", "信用合作联社": "402", "农村信用社": "402",
    "农村商业银行": "314", "农商银行": "314", "农商行": "314", "农村合作银行": "317", "农合行": "317",
    "村镇银行": "320", "农信社": "402",
}  # fmt: skip
WRITTEN_KIND = re.compile("|".join(sorted(WRITTEN_KINDS, key=len, reverse=True)))
#: A kind's class → how the names of the banks of that kind end.
NAME_ENDINGS = {
    "314": "(农村商业银行|农商银行)$",
    "317": "农村合作银行$",
    "320": "村镇银行$",
    "402": "(农村信用合作联社|农村信用联社|信用合作联社|信用联社|农村信用社)$",
}
