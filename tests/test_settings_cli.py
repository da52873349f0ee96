"""Settings validation and the ``serve-app db`` commands against a real database."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from serve_app.cli import main
from serve_app.normalize import normalize
from serve_app.settings import Settings


def test_settings_reject_wrong_url_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVE_APP_DATABASE_URL", "mysql://localhost/x")
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings()


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("SERVE_APP_HOME", str(tmp_path))
    monkeypatch.setenv("SERVE_APP_REDIS_URL", "redis://127.0.0.1:1/0")
    token = "s3cret-0123456789-abcdefghij"
    monkeypatch.setenv("SERVE_APP_ADMIN_TOKEN", token)
    settings = Settings()
    assert settings.home == tmp_path
    assert settings.admin_token.get_secret_value() == token
    assert token not in repr(settings)


@pytest.mark.parametrize(("token", "why"), [("s3cret", "at least 24"), ("change-me", "placeholder"),
                                            ("please-change-me-before-deploying", "placeholder")])  # fmt: skip
def test_a_short_or_placeholder_admin_token_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, token, why) -> None:
    monkeypatch.setenv("SERVE_APP_ADMIN_TOKEN", token)
    with pytest.raises(ValidationError, match=why):
        Settings()


def test_normalize_reads_messy_names() -> None:
    assert normalize("THE PEOPLE'S BANK OF CHINA 招商银行股份有限公 司长沙分行浏阳支行") == "招商银行长沙分行浏阳支行"
    assert normalize("華夏銀行（不对外营业）江油西山支行") == "华夏银行江油西山支行"
    assert normalize("ＩＣＢＣ\u200b北京\x00支行") == "ICBC北京支行"


def test_db_commands(monkeypatch: pytest.MonkeyPatch, empty_database_url: str, capsys) -> None:
    monkeypatch.setenv("SERVE_APP_DATABASE_URL", empty_database_url)
    assert main(["db", "migrate"]) == 0
    assert "applied: 0001_directory.sql" in capsys.readouterr().out
    assert main(["db", "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["db", "load", "--synthetic", "500"]) == 0
    assert "loaded 14793 branches" in capsys.readouterr().out
    assert main(["db", "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["branches_by_source"] == {"cnaps_sample": 14793, "synthetic": 500}


def test_db_load_reports_a_missing_file(monkeypatch: pytest.MonkeyPatch, empty_database_url: str, capsys) -> None:
    monkeypatch.setenv("SERVE_APP_DATABASE_URL", empty_database_url)
    assert main(["db", "load", "--file", "/nonexistent.csv"]) == 1
    assert "No such file" in capsys.readouterr().err


def test_an_ingress_mode_sets_its_switches_and_clears_the_others() -> None:
    from serve_app.ops.ingress_modes import INGRESS_MODES, ingress_environment

    inherited = {"PATH": "/bin", "RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    assert ingress_environment("proxy", inherited) == {"PATH": "/bin"}
    assert ingress_environment("haproxy", {"PATH": "/bin"}) == {"PATH": "/bin"} | INGRESS_MODES["haproxy"]


def test_keys_commands_create_list_and_revoke(monkeypatch: pytest.MonkeyPatch, empty_database_url: str, capsys) -> None:
    import asyncio

    from serve_app.db.pool import create_pool
    from serve_app.errors import Unauthorized
    from serve_app.service.tenants import KeyStore

    monkeypatch.setenv("SERVE_APP_DATABASE_URL", empty_database_url)
    assert main(["db", "migrate"]) == 0
    capsys.readouterr()
    assert main(["keys", "create", "--tenant", "acme", "--adapters", "job_22, job_23", "--rate", "5"]) == 0
    key, note = capsys.readouterr().out.splitlines()
    key_id = note.split()[1]
    assert key.startswith("sak_") and "shown once" in note
    assert main(["keys", "list"]) == 0
    (listed,) = capsys.readouterr().out.splitlines()
    assert listed.split()[:4] == [key_id, "acme", "-", "live"] and listed.endswith("adapters job_22,job_23")

    async def caller_of(store_key: str):
        pool = await create_pool(empty_database_url)
        try:
            return await KeyStore(pool, cache_ttl_s=0).caller(store_key)
        finally:
            await pool.close()

    caller = asyncio.run(caller_of(key))
    assert (caller.tenant, caller.adapters, caller.rate_per_s) == ("acme", frozenset({"job_22", "job_23"}), 5.0)
    assert main(["keys", "revoke", key_id]) == 0
    assert f"revoked {key_id}" in capsys.readouterr().out
    assert main(["keys", "revoke", key_id]) == 1  # no live key of that id any more
    assert "no live key" in capsys.readouterr().out
    with pytest.raises(Unauthorized):
        asyncio.run(caller_of(key))
    assert main(["keys", "list"]) == 0
    assert " revoked " in capsys.readouterr().out


def test_a_placeholder_database_password_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVE_APP_DATABASE_URL", "postgresql://serve_app:change-me@db:5432/serve_app")
    with pytest.raises(ValidationError, match="placeholder password"):
        Settings()
