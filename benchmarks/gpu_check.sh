#!/usr/bin/env bash
# Everything that needs a GPU, in one command: under 8 minutes on one H100, nothing downloaded.
# Writes benchmarks/results/gpu/gpu_check.json (see benchmarks/gpu_check.py for the steps).
# Without CUDA, or with --cpu, it runs the same steps on the tiny model with the GPU-only ones skipped,
# and says so (benchmarks/results/gpu/gpu_check_cpu_dry_run.json).
#
#   benchmarks/gpu_check.sh [--cpu] [--out DIR] [--peak-gbps N] [--new-tokens N]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
WORK="$(mktemp -d -t serve-app-gpu-check-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
timeout "${GPU_CHECK_TIMEOUT_S:-480}" "$PYTHON" benchmarks/gpu_check.py --work "$WORK" "$@"
