"""`benchmarks/bench_gpu.py --tiny`: the CPU proxies of the GPU benchmark run end to end and write their results."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# Operators one mcg-base-structure training step dispatched in --tiny before the vision block was reworked (split
# instead of slices, masks once per forward, one MLP pass): the count must not grow back.
TINY_BASELINE = {"total": 11011, "compute": 3974}


def run_bench_gpu(tmp_path, *flags: str, timeout: int) -> tuple[str, dict]:
    """`bench_gpu.py --tiny <flags>` on one CPU thread: its stdout and its results file."""
    output = tmp_path / "gpu_tiny.json"
    run = subprocess.run(
        [sys.executable, "bench_gpu.py", "--tiny", *flags, "--output", str(output)],
        cwd=BENCHMARKS,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout, json.loads(output.read_text())


def test_bench_gpu_tiny_runs_on_cpu_and_counts_fewer_operators_than_the_baseline_model_file(tmp_path):
    stdout, results = run_bench_gpu(tmp_path, timeout=300)
    assert "OPERATORS PER TRAINING STEP" in stdout
    (operators,) = results["operators"].values()
    assert 0 < operators["compute"] < operators["total"]
    assert operators["total"] < TINY_BASELINE["total"] and operators["compute"] < TINY_BASELINE["compute"], operators
    assert "aten.mm" in operators["top_compute"] and "aten.view" not in operators["top_compute"]
    programs = results["program_operators"]
    assert set(programs) == {"baseline", "eager", "compiled regions (aot_eager)"}, programs
    for count in programs.values():
        assert 0 < count["compute"] < count["total"], count
    assert programs["eager"]["total"] < programs["baseline"]["total"]
    assert programs["eager"]["compute"] < programs["baseline"]["compute"]
    assert "aten::mm" in programs["eager"]["top_compute"] and "aten::t" not in programs["eager"]["top_compute"]
    assert results["mid_step"]["cpu"]["median_ms"] > 0
    assert "device_training" not in results  # CUDA, or --device_part


@pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "c++")) is None, reason="inductor's CPU code generation needs a C++ compiler"
)
def test_a_training_step_with_regions_compiled_by_inductor_issues_at_most_half_the_baseline_operators(tmp_path):
    # the program count includes every kernel inductor generated, so fusing only moves work into fewer operators
    _, results = run_bench_gpu(tmp_path, "--count_backend", "inductor", timeout=600)
    programs = results["program_operators"]
    compiled = programs["compiled regions (inductor)"]
    assert compiled["top"].get("inductor kernels", 0) > 0, compiled
    assert compiled["total"] <= 0.5 * programs["baseline"]["total"], compiled
    assert compiled["compute"] < programs["eager"]["compute"], compiled


def test_bench_gpu_device_part_measures_training_generation_and_loading_on_the_cpu_at_tiny_sizes(tmp_path):
    _, results = run_bench_gpu(tmp_path, "--device_part", timeout=600)
    training = results["device_training"]
    assert "error" not in training and "stopped" not in training, training
    assert set(training) == {
        "frames=2 batch=1 ckpt=False compiled=False",
        "frames=2 batch=2 ckpt=False compiled=False",
        "frames=2 batch=2 ckpt=False compiled=True",
        "frames=2 batch=2 ckpt=True compiled=False",
    }
    for cell in training.values():
        assert cell["step_s"] > 0 and cell["tflop_per_clip"] > 0 and 0 < cell["mfu"] < 1
    generation = results["device_generation"]
    assert len(generation) == 6, generation
    for name, cell in generation.items():
        assert isinstance(cell, dict), (name, cell)  # a string is the error a variant raised
        assert cell["same_answers_as_dynamic"], name
    assert results["device_data_loading"]["workers=1"]["clips_per_s"] > 0
