"""Directory sources (pure) and loading them into a real PostgreSQL."""

from __future__ import annotations

import csv
from collections import Counter

from serve_app.db.migrate import apply_migrations
from serve_app.db.pool import connect_admin
from serve_app.directory.banks import parse_institution
from serve_app.directory.gazetteer import Gazetteer
from serve_app.directory.loader import directory_stats, load_directory
from serve_app.directory.records import PlaceResolver, demo_cnaps_path, read_cnaps
from serve_app.directory.spellings import filed_as
from serve_app.directory.synthetic import check_digit, synthetic_branches
from serve_app.normalize import normalize
from tests.conftest import SCALE_SYNTHETIC_ROWS

SEED_CODE = "304659715925"


def _sample_rows() -> list[dict]:
    with demo_cnaps_path().open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_sample_code_has_a_valid_check_digit() -> None:
    codes = [row["BankCode"] for row in _sample_rows()]
    assert len(codes) == 14_907
    assert all(check_digit(code[:11]) == code[11] for code in codes)


def test_gazetteer_places_the_seed_branch() -> None:
    place = PlaceResolver().place("6597", "江油市", "四川省")
    assert (place.province, place.city, place.district) == ("四川省", "绵阳市", "江油市")


def test_gazetteer_knows_short_historical_and_autonomous_names() -> None:
    gazetteer = Gazetteer.default()
    hubei = gazetteer.province_named("湖北")
    assert gazetteer.resolve("襄樊", hubei).name == "襄阳市"
    assert gazetteer.resolve("恩施州", hubei).name == "恩施土家族苗族自治州"
    assert gazetteer.resolve("江油", gazetteer.province_named("四川省"), prefer="district").name == "江油市"
    assert gazetteer.resolve("江油", gazetteer.province_named("北京市")) is None


def test_institution_is_parsed_from_the_official_name() -> None:
    cases = {
        "华夏银行股份有限公司江油西山支行": "华夏银行",
        "河北邢台农村商业银行股份有限公司襄都支行": "河北邢台农村商业银行",
        "漳州市长泰区农村信用合作联社积山信用社": "漳州市长泰区农村信用合作联社",
        "上海浦东发展银行长沙三湘支行": "上海浦东发展银行",
    }
    for name, institution in cases.items():
        assert parse_institution(normalize(name)) == institution


def test_records_read_from_the_sample() -> None:
    records = {r.code: r for r in read_cnaps(demo_cnaps_path())}
    seed = records[SEED_CODE]
    assert seed.bank_name == "华夏银行"
    assert seed.bank_code == "304"
    assert seed.search_name == "华夏银行江油西山支行"
    assert seed.branch == "江油西山支行"
    # A village bank listed under its sponsor bank is still its own institution.
    village = [r for r in records.values() if r.bank_code == "320"]
    assert village and all("村镇银行" in r.bank_name for r in village)


def test_an_institution_spelled_two_ways_in_one_file_is_filed_under_one_name() -> None:
    # The sample publishes 29 of 长治漳泽农村商业银行's rows under that name and 2 as 长治漳泽农商银行…: one bank.
    banks = Counter(record.bank_name for record in read_cnaps(demo_cnaps_path()))
    assert (banks["长治漳泽农村商业银行"], banks["长治漳泽农商银行"]) == (31, 0)
    assert banks["成都农商银行"] > 0 and banks["成都农村商业银行"] == 0  # spelled one way: its registered name
    # The spelling with more branches wins, the full form on a tie; a chain ends where the most are.
    assert filed_as(Counter({"甲农商银行": 2, "甲农村商业银行": 5})) == {"甲农商银行": "甲农村商业银行"}
    assert filed_as(Counter({"甲农商银行": 3, "甲农村商业银行": 3})) == {"甲农商银行": "甲农村商业银行"}
    assert filed_as(Counter({"乙农商行": 1, "乙农村商业银行": 2, "乙农商银行": 4})) == {
        "乙农商行": "乙农商银行",
        "乙农村商业银行": "乙农商银行",
    }
    assert filed_as(Counter({"丙农商银行": 1, "丁农村商业银行": 9})) == {}


def test_synthetic_branches_are_deterministic_valid_and_new() -> None:
    real = list(read_cnaps(demo_cnaps_path()))
    taken_codes, taken_names = {r.code for r in real}, {r.name for r in real}
    first = list(synthetic_branches(2_000, taken_codes, taken_names))
    again = list(synthetic_branches(2_000, taken_codes, taken_names))
    assert first == again
    assert len({r.code for r in first}) == 2_000
    assert not {r.code for r in first} & taken_codes
    assert all(r.source == "synthetic" and check_digit(r.code[:11]) == r.code[11] for r in first)
    assert all(r.city and r.province and r.branch for r in first)


async def test_loader_counts_equal_the_file_and_reload_is_idempotent(empty_database_url: str) -> None:
    rows = _sample_rows()
    distinct_codes = {row["BankCode"] for row in rows}
    conn = await connect_admin(empty_database_url)
    try:
        await apply_migrations(conn)
        report = await load_directory(conn, demo_cnaps_path())
        count = await conn.fetchval("SELECT count(*) FROM branches")
        again = await load_directory(conn, demo_cnaps_path())
        count_again = await conn.fetchval("SELECT count(*) FROM branches")
        seed = await conn.fetchrow("SELECT * FROM branches WHERE code = $1", SEED_CODE)
        stats = await directory_stats(conn)
    finally:
        await conn.close()
    assert report.rows_read == len(rows)
    assert report.branches_loaded == len(distinct_codes) == count == count_again
    assert report.duplicates == len(rows) - len(distinct_codes)
    assert again.data_version == report.data_version + 1
    assert dict(seed) | {"code": SEED_CODE} == {
        "code": SEED_CODE, "bank_code": "304", "bank_name": "华夏银行",
        "name": "华夏银行股份有限公司江油西山支行", "search_name": "华夏银行江油西山支行",
        "branch": "江油西山支行", "province": "四川省", "city": "绵阳市", "district": "江油市",
        "city_code": "6597", "source": "cnaps_sample", "clearing_code": "304100040000",
        "retired_on": None, "retired_version": None, "added_version": report.data_version,
    }  # fmt: skip
    assert stats["banks"] == len({r.bank_name for r in read_cnaps(demo_cnaps_path())})
    assert stats["regions"] == len({r.key for r in Gazetteer.default().regions})
    assert stats["ctype"] == "C.UTF-8"


async def test_scale_directory_has_150k_synthetic_rows(scale_database_url: str) -> None:
    conn = await connect_admin(scale_database_url)
    try:
        stats = await directory_stats(conn)
    finally:
        await conn.close()
    assert stats["branches_by_source"]["synthetic"] == SCALE_SYNTHETIC_ROWS
    assert stats["branches"] >= 150_000 + 14_793
