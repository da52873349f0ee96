"""The prepared GPU check runs end to end without a GPU, with its GPU-only steps skipped and named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_dry_runs_on_cpu_and_says_what_it_skipped(tmp_path: Path) -> None:
    env = os.environ | {"PYTHON": sys.executable, "GPU_CHECK_TIMEOUT_S": "300"}
    done = subprocess.run(
        [str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path), "--open-requests", "8",
         "--new-tokens", "4"],
        env=env, capture_output=True, text=True, timeout=360,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no GPU: skipped vllm engine on the GPU" in done.stdout
    report = json.loads((tmp_path / "gpu_check_cpu_dry_run.json").read_text())
    assert report["device"] == "cpu"
    assert set(report["skipped"]) == {
        "vllm engine on the GPU", "memory-bandwidth share", "LoRA training on the GPU", "open loop through vllm"
    }  # fmt: skip
    assert [(row["engine"], row["batch"]) for row in report["engines"]] == [("hf", 1), ("hf", 32), ("hf", 128)]
    assert all(row["requests_per_s"] > 0 for row in report["engines"])
    rates = report["open_loop"]["paths"]["hf"]
    assert [row["rate_fraction"] for row in rates] == [0.5, 1.0] and all(row["p99_ms"] > 0 for row in rates)
