"""The bank catalogue: CNAPS bank classes, institution names parsed from branch names, common aliases."""

from __future__ import annotations

import re

#: A local bank's type written in full and short (长治漳泽农村商业银行, 长治漳泽农商银行): one institution.
TYPE_FORMS = (
    ("农村商业银行", "农商银行"),
    ("农村商业银行", "农商行"),
    ("农村合作银行", "农合行"),
    ("农村信用合作联社", "农村信用社"),
    ("农村信用合作联社", "信用联社"),
    ("农村信用合作联社", "农信社"),
    ("城市商业银行", "城商行"),
)
#: CNAPS bank class (行别代码, the first three digits of every branch code) → class name.
CATEGORY_NAMES: dict[str, str] = {
    "001": "中国人民银行",
    "102": "中国工商银行",
    "103": "中国农业银行",
    "104": "中国银行",
    "105": "中国建设银行",
    "201": "国家开发银行",
    "202": "中国进出口银行",
    "203": "中国农业发展银行",
    "301": "交通银行",
    "302": "中信银行",
    "303": "中国光大银行",
    "304": "华夏银行",
    "305": "中国民生银行",
    "306": "广发银行",
    "307": "平安银行",
    "308": "招商银行",
    "309": "兴业银行",
    "310": "上海浦东发展银行",
    "313": "城市商业银行",
    "314": "农村商业银行",
    "315": "恒丰银行",
    "316": "浙商银行",
    "317": "农村合作银行",
    "318": "渤海银行",
    "319": "徽商银行",
    "320": "村镇银行",
    "402": "农村信用社",
    "403": "中国邮政储蓄银行",
}

#: What people write instead of the official name. Aliases must be unambiguous on their own.
ALIASES: dict[str, tuple[str, ...]] = {
    "中国工商银行": ("工商银行", "工行", "ICBC"),
    "中国农业银行": ("农业银行", "农行", "ABC"),
    "中国银行": ("中行", "BOC"),
    "中国建设银行": ("建设银行", "建行", "CCB"),
    "中国农业发展银行": ("农业发展银行", "农发行", "ADBC"),
    "交通银行": ("交行", "BOCOM"),
    "中信银行": ("中信", "CITIC"),
    "中国光大银行": ("光大银行", "光大", "CEB"),
    "华夏银行": ("华夏", "HXB"),
    "中国民生银行": ("民生银行", "民生", "CMBC"),
    "招商银行": ("招行", "CMB"),
    "兴业银行": ("兴业", "CIB"),
    "上海浦东发展银行": ("浦发银行", "浦发", "SPDB"),
    "恒丰银行": ("恒丰",),
    "浙商银行": ("浙商",),
    "渤海银行": ("渤海",),
    "中国邮政储蓄银行": ("邮政储蓄银行", "邮储银行", "邮储", "PSBC", "邮政银行", "邮政储蓄", "中国邮政"),
    "国家开发银行": ("国开行", "国开银行"),
    "中国进出口银行": ("进出口银行",),
    "中国人民银行": ("人民银行",),
    # Local and private banks by the short names they trade and print under (the listed ones' stock names).
    "江苏常熟农村商业银行": ("常熟银行",),
    "江苏张家港农村商业银行": ("张家港行",),
    "江苏江阴农村商业银行": ("江阴银行",),
    "无锡农村商业银行": ("无锡银行",),
    "江苏苏州农村商业银行": ("苏农银行",),
    "江苏紫金农村商业银行": ("紫金银行",),
    "浙江绍兴瑞丰农村商业银行": ("瑞丰银行",),
    "上海农村商业银行": ("沪农商行",),
    "重庆农村商业银行": ("渝农商行",),
    "青岛农村商业银行": ("青农商行",),
    "深圳前海微众银行": ("微众银行",),
    "武汉众邦银行": ("众邦银行",),
    "中信百信银行": ("百信银行",),
    # Former names still printed on old statements and cheques.
    "广发银行": ("广发", "CGB", "广东发展银行"),
    "平安银行": ("平安", "PAB", "深圳发展银行", "深发展"),
}

# The institution is the name up to the first institution word: 银行, or the credit-cooperative forms.
_INSTITUTION = re.compile(r"^(.+?(?:银行|信用合作联社|农村信用联社|信用联社|合作联社|信用社))")


def parse_institution(name: str) -> str | None:
    """The institution part of a normalized official branch name (华夏银行江油西山支行 → 华夏银行)."""
    match = _INSTITUTION.match(name)
    return match.group(1) if match else None


#: Classes shared by many institutions (city, rural, village banks, credit cooperatives): the class does
#: not say which bank a code belongs to.
SHARED_CLASSES = frozenset({"313", "314", "317", "320", "402"})


def national_bank(code: str) -> str | None:
    """The institution a code's class stands for when the class is one bank's own (102 → 中国工商银行)."""
    bank_class = code[:3]
    return None if bank_class in SHARED_CLASSES else CATEGORY_NAMES.get(bank_class)


def category_name(bank_code: str) -> str:
    return CATEGORY_NAMES.get(bank_code, "其他")
