"""`benchmarks/bench_train.py --shared-videos` and `--tcl-loss`: each comparison runs end to end at mcg-tiny's size
and writes its results."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_bench_train(tmp_path, *arguments):
    output = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "bench_train.py", *arguments, "--models", "mcg-tiny", "--reps", "2"]
        + ["--devices", "cpu", "--output", str(output)],
        cwd=BENCHMARKS,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout, json.loads(output.read_text())


def test_shared_videos_benchmark_times_both_fusor_paths_and_writes_its_table(tmp_path):
    stdout, results = run_bench_train(tmp_path, "--shared-videos")
    (cell,) = results["cells"]
    assert (cell["model"], cell["questions"], cell["videos"], cell["video_tokens"]) == ("mcg-tiny", 32, 6, 257)
    for method in ("per_question", "per_video"):
        assert len(cell["times"][method]["wall_ms"]) == 2
    assert cell["speedup"] > 0
    assert "| mcg-tiny | cpu | 32 / 6 | 257 |" in stdout
    assert results["command"].startswith("python benchmarks/bench_train.py --shared-videos")


def test_tcl_loss_benchmark_checks_today_against_the_baseline_revision_and_times_both(tmp_path):
    stdout, results = run_bench_train(tmp_path, "--tcl-loss", "--baseline", "7677858")
    (cell,) = results["cells"]
    assert (cell["model"], cell["batch"], cell["video_tokens"], cell["words"]) == ("mcg-tiny", 32, 256, 12)
    for method in ("baseline", "today"):
        assert len(cell["times"][method]["wall_ms"]) == 2
    assert cell["speedup"] > 0
    assert "| mcg-tiny | cpu | 32 x 256 | 12 | 32 |" in stdout
    assert results["baseline"] == "7677858"
    (step,) = results["steps"]
    for method in ("no_tcl", "tcl_baseline", "tcl_today"):
        assert len(step["times"][method]["wall_ms"]) == 2
    assert "| mcg-tiny | cpu | 32 / 6 |" in stdout
