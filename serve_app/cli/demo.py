"""``serve-app make-demo-model``: build the demo base model and adapters, and register them."""

from __future__ import annotations

import argparse
import asyncio
import time

from serve_app.cli.database import database_url, prepare_database
from serve_app.db.pool import connect_admin, create_pool
from serve_app.settings import Settings


async def register_demo_model(settings: Settings, url: str, force: bool = False):
    """Build the demo model if missing (or ``force``) and register its adapters; return the ``DemoModel``."""
    from serve_app.models.adapters import AdapterRegistry
    from serve_app.models.demo import make_demo_model
    from serve_app.models.paths import ModelPaths

    demo = await asyncio.to_thread(make_demo_model, settings.models_dir, force)
    paths = ModelPaths.resolve(settings.models_dir)
    pool = await create_pool(url, settings)
    try:
        registry = AdapterRegistry(pool)
        for name in demo.adapters:
            await registry.upsert(paths.validate(name, name), name)
    finally:
        await pool.close()
    return demo


async def _make_demo_model(settings: Settings, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    async with database_url(settings) as url:
        conn = await connect_admin(url)
        try:
            await prepare_database(conn)
        finally:
            await conn.close()
        demo = await register_demo_model(settings, url, args.force)
    print(
        f"demo base model: {demo.base}\nadapters: {', '.join(demo.adapters)} under {demo.adapter_root} "
        f"(registered); {time.perf_counter() - started:.1f}s"
    )
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "make-demo-model",
        help="build a tiny local base model and the job_22/job_23 LoRA adapters, and register them",
    )
    demo.add_argument("--force", action="store_true", help="rebuild even if present")
    demo.set_defaults(run=_make_demo_model)
