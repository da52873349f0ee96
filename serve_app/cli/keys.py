"""``serve-app keys create|list|revoke``: tenants' API keys (used when the ingress runs with ``auth: keys``)."""

from __future__ import annotations

import argparse

from serve_app.cli.database import prepared_database_url
from serve_app.db.pool import create_pool
from serve_app.service.tenants import KeyStore
from serve_app.settings import Settings


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    async with prepared_database_url(settings) as url:
        pool = await create_pool(url, settings)
        try:
            store = KeyStore(pool)
            if args.keys_command == "create":
                adapters = [name.strip() for name in (args.adapters or "").split(",") if name.strip()]
                key, record = await store.create(args.tenant, adapters, args.rate, args.label)
                print(f"{key}\n(key {record.id} for tenant {record.tenant}; shown once: only its hash is stored)")
            elif args.keys_command == "list":
                for record in await store.list():
                    state = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "live"
                    rate = f"{record.rate_per_s:g}/s" if record.rate_per_s else "default rate"
                    allowed = ",".join(record.adapters) or "-"
                    label = record.label or "-"
                    print(f"{record.id}  {record.tenant:<20} {label:<16} {state:<24} {rate:<14} adapters {allowed}")
            elif not await store.revoke(args.id):
                print(f"no live key {args.id}")
                return 1
            else:
                print(f"revoked {args.id} (in effect within seconds on every ingress replica)")
        finally:
            await pool.close()
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="tenants' API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="a new key for a tenant (printed once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--adapters", help="comma-separated adapters the key may name (default: none)")
    create.add_argument("--rate", type=float, help="requests per second for the tenant (default: the service's)")
    create.add_argument("--label", help="who holds the key (a person or a program): decisions made with it say so")
    listing = keys.add_parser("list", help="every key: id, tenant, state, rate, adapters")
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id")
    for command in (create, listing, revoke):
        command.set_defaults(run=_keys)
