"""Deterministic synthetic branches for scale tests, built from the gazetteer and PBOC city codes.

Synthetic rows look like real ones (official name with company form, bank class prefix, PBOC city code,
valid ISO 7064 MOD 11,10 check digit) and are flagged ``source = 'synthetic'``. The same ``count`` and
``seed`` over the same real codes always give the same rows, and never reuse a real code or name.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from serve_app.directory.banks import ALIASES
from serve_app.directory.gazetteer import stem
from serve_app.directory.records import BranchRecord, PlaceResolver, make_record, pboc_cities

#: Street and landmark words that branch names are made of.
_WORDS = (
    "人民路 解放路 中山路 建设路 新华路 东风路 胜利路 和平路 文化路 公园路 长江路 黄河路 滨江路 青年路 "
    "朝阳路 光明路 幸福路 迎宾路 学府路 科技路 世纪大道 金融街 商贸城 火车站 汽车站 开发区 高新区 工业园 "
    "城东 城西 城南 城北 新区 老城 中心 广场 步行街 体育馆 大学城 医院 港口 机场 东门 西门 南门 北门 "
    "桥头 河畔 湖滨 山前 花园 锦绣 华府 万达 国贸 银河 星光 春华 秋实 丰收 振兴 繁荣 友谊 团结"
).split()
_SUFFIXES = ("支行", "支行", "支行", "分理处", "营业部", "储蓄所")
#: National banks and their CNAPS classes; local rural banks (class 314) are named after the region.
_NATIONAL = {
    "中国工商银行": "102", "中国农业银行": "103", "中国银行": "104", "中国建设银行": "105",
    "交通银行": "301", "中信银行": "302", "中国光大银行": "303", "华夏银行": "304", "中国民生银行": "305",
    "平安银行": "307", "招商银行": "308", "兴业银行": "309", "上海浦东发展银行": "310",
    "中国邮政储蓄银行": "403",
}  # fmt: skip
assert set(_NATIONAL) <= set(ALIASES)


def check_digit(digits: str) -> str:
    """ISO 7064 MOD 11,10 check digit, as used by CNAPS codes."""
    product = 10
    for digit in digits:
        total = (product + int(digit)) % 10 or 10
        product = (2 * total) % 11
    return str((11 - product) % 10)


def synthetic_branches(
    count: int, taken_codes: set[str], taken_names: set[str], seed: int = 20261122
) -> Iterator[BranchRecord]:
    """Yield ``count`` synthetic branches whose codes and names avoid the ``taken`` ones."""
    rng = random.Random(seed)
    resolver = PlaceResolver()
    city_codes = sorted(pboc_cities())
    national = sorted(_NATIONAL)
    codes, names = set(taken_codes), set(taken_names)
    produced = 0
    while produced < count:
        city_code = rng.choice(city_codes)
        entry = pboc_cities()[city_code]
        place = resolver.place(city_code, entry["CityName"], entry["ProvinceName"])
        local = stem(place.district or place.city)
        if rng.random() < 0.75:
            bank = rng.choice(national)
            bank_class = _NATIONAL[bank]
        else:
            bank, bank_class = f"{stem(place.city)}农村商业银行", "314"
        branch = f"{local}{rng.choice(_WORDS)}{rng.choice(_SUFFIXES)}"
        if rng.random() < 0.3:  # a second-level unit under a 支行, as real names have
            branch = f"{local}{rng.choice(_WORDS)}支行{rng.choice(_WORDS)}分理处"
        official = f"{bank}股份有限公司{branch}"
        body = f"{bank_class}{city_code}{rng.randrange(10_000):04d}"
        code = body + check_digit(body)
        if code in codes or official in names:
            continue
        codes.add(code)
        names.add(official)
        produced += 1
        yield make_record(
            code=code,
            official_name=official,
            bank_hint=bank,
            place=place,
            city_code=city_code,
            source="synthetic",
        )
