"""``serve-app make-demo-model``: build the demo base model and adapters, and register them."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from serve_app.cli.database import prepared_database_url
from serve_app.cli.train import print_progress, register_adapters
from serve_app.settings import Settings


async def register_demo_model(
    settings: Settings, url: str, force: bool = False, tiny: bool = False, on_progress: Callable | None = None
):
    """Build the demo model if missing (or ``force``) and register its adapters; return the ``DemoModel``.
    ``on_progress(adapter, Progress)`` while an adapter trains (default: a console line every 10 steps).

    ``tiny``: the random test model instead (seconds to build; its answers are noise)."""
    from serve_app.models.demo import make_demo_model
    from serve_app.models.tiny import make_tiny_model

    if tiny:
        demo = await asyncio.to_thread(make_tiny_model, settings.models_dir, force)
    else:
        print("demo model: SmolLM2-135M-Instruct and two adapters trained here (built once: minutes on a CPU) …")
        demo = await asyncio.to_thread(make_demo_model, settings.models_dir, force, on_progress or print_progress)
    await register_adapters(settings, url, list(demo.adapters))
    return demo


async def _make_demo_model(settings: Settings, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    async with prepared_database_url(settings) as url:
        demo = await register_demo_model(settings, url, args.force, args.tiny)
    print(
        f"demo base model: {demo.base}\nadapters: {', '.join(demo.adapters)} under {demo.adapter_root} "
        f"(registered); {time.perf_counter() - started:.1f}s"
    )
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "make-demo-model",
        help="build the demo base model (SmolLM2-135M-Instruct), train the job_22/job_23 adapters, register them",
    )
    demo.add_argument("--force", action="store_true", help="rebuild even if present")
    demo.add_argument("--tiny", action="store_true", help="a tiny random model instead (fast tests; answers noise)")
    demo.set_defaults(run=_make_demo_model)
