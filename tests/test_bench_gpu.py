"""`benchmarks/bench_gpu.py --tiny`: the CPU proxies of the GPU benchmark run end to end and write their results."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# Operators one mcg-base-structure training step dispatched in --tiny before the vision block was reworked (split
# instead of slices, masks once per forward, one MLP pass): the count must not grow back.
TINY_BASELINE = {"total": 11011, "compute": 3974}


def test_bench_gpu_tiny_runs_on_cpu_and_counts_fewer_operators_than_the_baseline(tmp_path):
    output = tmp_path / "gpu_tiny.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "bench_gpu.py", "--tiny", "--output", str(output)],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "OPERATORS PER TRAINING STEP" in run.stdout
    results = json.loads(output.read_text())
    (operators,) = results["operators"].values()
    assert 0 < operators["compute"] < operators["total"]
    assert operators["total"] < TINY_BASELINE["total"] and operators["compute"] < TINY_BASELINE["compute"], operators
    assert "aten.mm" in operators["top_compute"] and "aten.view" not in operators["top_compute"]
    assert results["mid_step"]["cpu"]["median_ms"] > 0
    assert "gpu_training" not in results  # CUDA only
