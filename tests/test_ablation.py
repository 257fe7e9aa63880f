"""`benchmarks/ablation.py`: the planned table (dry run), its argument checks, the mean ± std aggregation, and one
real run end to end on a few synthetic videos (two rows, two seeds, one epoch: wiring, not accuracy)."""

import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from example_scripts import load_example

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
}
REQUIRED_ROWS = [
    "question-only", "default", "motion=none", "motion=frame_difference", "motion=frame_difference_tokens",
    "stem=linear", "stem=conv", "temporal_init=0", "temporal_init=sinusoidal", "fusion_layers=2",
    "order=one_way",
    "image=32,patch=8", "image=48,patch=12", "frames=4", "frames=8", "frames=16",
    "frames=32", "sampling=uniform", "sampling=rand", "sampling=headtail", "aux=icl", "aux=tcl", "aux=icl+tcl",
    "pretrain=mlm", "pretrain=mlm+icl", "pretrain=mlm+icl+tcl", "pretrain=mlm+icl+tcl+vtm",
]  # fmt: skip
PLANNED = re.compile(r"^\[(?P<row>\S+) seed (?P<seed>\d+) (?P<stage>pretraining|videoqa)\] (?P<command>.+)$")


def run_ablation(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "ablation.py", *args], cwd=BENCHMARKS, env=ENV, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def ablation(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # benchmark scripts import their siblings (report) by plain name
    return importlib.import_module("ablation")


def planned_commands(stdout: str) -> dict:
    """{(row, seed): {stage: argv}} from the dry run's lines."""
    plan = {}
    for line in stdout.splitlines():
        match = PLANNED.match(line)
        if match:
            key = (match["row"], int(match["seed"]))
            plan.setdefault(key, {})[match["stage"]] = shlex.split(match["command"])
    return plan


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# ----------------------------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------------------------


def test_the_dry_run_plans_every_required_row_with_three_seeds_and_runs_nothing(tmp_path):
    out = tmp_path / "table"
    run = run_ablation("--dry_run", "--output_dir", str(out))
    assert run.returncode == 0, run.stderr
    plan = planned_commands(run.stdout)
    assert {row for row, _ in plan} == set(REQUIRED_ROWS)
    for row in REQUIRED_ROWS:
        assert sorted(seed for r, seed in plan if r == row) == [0, 1, 2]
    assert f"{len(REQUIRED_ROWS)} rows x 3 seeds (0 1 2) = {3 * len(REQUIRED_ROWS)} runs" in run.stdout
    assert not out.exists()  # nothing run, nothing written

    default = plan[("default", 1)]["videoqa"]
    assert default[1] == str(REPO / "examples" / "run_videoqa.py")
    assert option(default, "--seed") == "1" and option(default, "--output_dir") == str(out / "default/seed1/videoqa")
    # full mode = the `make demo` defaults: the script's epochs, its default set (no video counts passed)
    assert option(default, "--num_train_epochs") == str(
        load_example("run_videoqa").TRAINING_DEFAULTS["num_train_epochs"]
    )
    assert "--synthetic_num_videos" not in default
    assert option(plan[("question-only", 0)]["videoqa"], "--blank_video") == "True"
    overrides = option(plan[("motion=frame_difference", 2)]["videoqa"], "--config_overrides")
    assert overrides == "vision_config.motion_input=frame_difference"
    assert option(plan[("frames=32", 0)]["videoqa"], "--num_frames") == "32"
    assert option(plan[("sampling=headtail", 0)]["videoqa"], "--train_sampling") == "headtail"
    aux = option(plan[("aux=icl+tcl", 0)]["videoqa"], "--config_overrides")
    assert aux == "icl_loss_weight=0.1,tcl_loss_weight=0.1"
    assert set(plan[("default", 0)]) == {"videoqa"}


def test_pretraining_rows_run_two_stages_whose_epochs_add_up_to_the_fine_tune_only_rows(tmp_path):
    run = run_ablation("--dry_run", "--quick", "--output_dir", str(tmp_path), "--num_train_epochs", "7")
    assert run.returncode == 0, run.stderr
    plan = planned_commands(run.stdout)
    total = int(option(plan[("default", 0)]["videoqa"], "--num_train_epochs"))
    assert total == 7
    weights = {
        "pretrain=mlm": {"--mlm_loss_weight": "1", "--icl_loss_weight": "0", "--tcl_loss_weight": "0"},
        "pretrain=mlm+icl": {"--mlm_loss_weight": "1", "--icl_loss_weight": "1", "--tcl_loss_weight": "0"},
        "pretrain=mlm+icl+tcl": {"--mlm_loss_weight": "1", "--icl_loss_weight": "1", "--tcl_loss_weight": "1"},
        "pretrain=mlm+icl+tcl+vtm": {"--mlm_loss_weight": "1", "--icl_loss_weight": "1", "--tcl_loss_weight": "1",
                                     "--use_vtm": "True"},
    }  # fmt: skip
    for row, expected in weights.items():
        for seed in (0, 1, 2):
            stages = plan[(row, seed)]
            assert list(stages) == ["pretraining", "videoqa"]
            pretraining, videoqa = stages["pretraining"], stages["videoqa"]
            assert pretraining[1] == str(REPO / "examples" / "run_pretraining.py")
            assert {name: option(pretraining, name) for name in expected} == expected
            assert ("--use_vtm" in pretraining) == ("vtm" in row)
            assert option(videoqa, "--model_name_or_path") == option(pretraining, "--output_dir")
            epochs = int(option(pretraining, "--num_train_epochs")), int(option(videoqa, "--num_train_epochs"))
            assert epochs == (3, 4) and sum(epochs) == total
            for argv in (pretraining, videoqa):  # both stages on the same synthetic set, with the run's seed
                assert option(argv, "--synthetic_num_videos") == "train=200,test=50"
                assert option(argv, "--seed") == str(seed)


def test_an_unknown_row_fails_with_a_message_naming_the_valid_rows():
    run = run_ablation("--dry_run", "--rows", "default", "frames=64")
    assert run.returncode == 2
    assert "unknown --rows frames=64" in run.stderr
    for row in REQUIRED_ROWS:
        assert row in run.stderr


def test_fewer_than_three_seeds_fail_unless_a_partial_table_is_asked_for():
    run = run_ablation("--dry_run", "--seeds", "0")
    assert run.returncode == 2
    assert "at least 3" in run.stderr and "--allow_fewer_seeds" in run.stderr
    run = run_ablation("--dry_run", "--rows", "default", "--seeds", "0", "--allow_fewer_seeds")
    assert run.returncode == 0, run.stderr
    assert list(planned_commands(run.stdout)) == [("default", 0)]


def test_a_pretraining_split_that_leaves_no_fine_tuning_epoch_is_refused():
    run = run_ablation("--dry_run", "--rows", "pretrain=mlm", "--num_train_epochs", "4", "--pretraining_epochs", "4")
    assert run.returncode == 2
    assert "--pretraining_epochs 4" in run.stderr and "[1, 3]" in run.stderr


# ----------------------------------------------------------------------------------------------------------------
# Aggregation
# ----------------------------------------------------------------------------------------------------------------


def test_aggregation_gives_the_mean_and_sample_std_over_seeds_of_overall_and_each_family(ablation):
    runs = {
        "default": {
            0: {"test_accuracy": 0.60, "test_accuracy_color": 0.9, "test_accuracy_direction": 0.25, "test_wups_0": 1},
            1: {"test_accuracy": 0.64, "test_accuracy_color": 0.8, "test_accuracy_direction": 0.35},
            2: {"test_accuracy": 0.71, "test_accuracy_color": 0.7, "test_accuracy_direction": 0.30},
        },
        "question-only": {
            0: {"test_accuracy": 0.24, "test_accuracy_color": 0.25},
            5: {"test_accuracy": 0.22, "test_accuracy_color": 0.2, "test_accuracy_direction": 0.3},
        },
    }
    table = {row["row"]: row for row in ablation.aggregate(runs)}
    default = table["default"]
    assert default["seeds"] == [0, 1, 2] and default["num_seeds"] == 3
    for column, values in {
        "overall": [0.60, 0.64, 0.71],
        "color": [0.9, 0.8, 0.7],
        "direction": [0.25, 0.35, 0.3],
    }.items():
        entry = default["metrics"][column]
        assert entry["mean"] == pytest.approx(np.mean(values))
        assert entry["std"] == pytest.approx(np.std(values, ddof=1)) and entry["std"] == pytest.approx(
            statistics.stdev(values)
        )
        assert entry["n"] == 3
    assert set(default["metrics"]) == {"overall", "color", "direction"}  # only accuracy keys, only families present
    assert default["delta_overall"] == 0.0

    baseline = table["question-only"]
    assert baseline["seeds"] == [0, 5]
    assert baseline["delta_overall"] == pytest.approx(0.23 - np.mean([0.60, 0.64, 0.71]))
    # a family one seed's test split lacks: averaged over the seeds that have it, with its own count
    assert baseline["metrics"]["direction"] == {"mean": 0.3, "std": None, "n": 1}
    assert baseline["metrics"]["color"]["n"] == 2

    markdown = ablation.markdown_table(list(table.values()))
    lines = markdown.splitlines()
    assert lines[0].startswith("| row | seeds | overall | Δ overall vs default | color | direction |")
    assert (
        f"| default | 3 | {np.mean([0.60, 0.64, 0.71]):.3f} ± {np.std([0.60, 0.64, 0.71], ddof=1):.3f} |" in markdown
    )
    assert "| question-only | 2 | 0.230 ± 0.014 | -0.420 | 0.225 ± 0.035 | 0.300 (1 seeds) |" in markdown


def test_aggregation_without_a_default_row_leaves_the_difference_out_and_keeps_unknown_families(ablation):
    table = ablation.aggregate({"frames=4": {0: {"test_accuracy": 0.5, "test_accuracy_speed": 0.4}}})
    (row,) = table
    assert row["delta_overall"] is None
    assert row["metrics"]["speed"] == {"mean": 0.4, "std": None, "n": 1}
    assert "| frames=4 | 1 | 0.500 | – | 0.400 |" in ablation.markdown_table(table)


# ----------------------------------------------------------------------------------------------------------------
# A real run
# ----------------------------------------------------------------------------------------------------------------

SMOKE = [
    "--rows", "default", "question-only", "--seeds", "0", "1", "--allow_fewer_seeds",
    "--synthetic_num_videos", "train=6,test=3", "--num_train_epochs", "1",
    "--extra_args", "--per_device_train_batch_size 8 --per_device_eval_batch_size 32 --dataloader_num_workers 0 "
    "--save_strategy no --logging_steps 1",
]  # fmt: skip


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Two rows x two seeds on 6 training videos; one run is made to fail (its folder already holds a model)."""
    tmp = tmp_path_factory.mktemp("ablation")
    out = tmp / "table"
    blocker = out / "question-only" / "seed1" / "videoqa" / "model.safetensors"
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"not a model")
    args = [*SMOKE, "--output_dir", str(out), "--synthetic_cache_dir", str(tmp / "synthetic")]
    run = run_ablation(*args, timeout=600)
    return out, args, run


def test_a_real_run_writes_the_table_from_each_runs_metrics(smoke):
    out, _, run = smoke
    report = json.loads((out / "ablation.json").read_text())
    table = {row["row"]: row for row in report["table"]}
    assert set(table) == {"default", "question-only"}
    assert table["default"]["seeds"] == [0, 1]
    for seed in (0, 1):
        metrics = json.loads((out / "default" / f"seed{seed}" / "videoqa" / "metrics.json").read_text())
        assert 0.0 <= metrics["test_accuracy"] <= 1.0
        run_record = json.loads((out / "default" / f"seed{seed}" / "run.json").read_text())
        assert run_record["seconds"]["videoqa"] > 0
        assert "--seed" in run_record["arguments"][0] and str(seed) == option(run_record["arguments"][0], "--seed")
    values = [
        json.loads((out / "default" / f"seed{s}" / "videoqa" / "metrics.json").read_text())["test_accuracy"]
        for s in (0, 1)
    ]
    overall = table["default"]["metrics"]["overall"]
    assert overall["mean"] == pytest.approx(np.mean(values)) and overall["std"] == pytest.approx(
        np.std(values, ddof=1)
    )
    assert set(table["default"]["metrics"]) >= {"overall", "color", "count"}
    assert report["markdown"] in (out / "ablation.md").read_text()
    assert report["markdown"] in run.stdout
    assert report["settings"]["synthetic_num_videos"] == "train=6,test=3"
    assert report["command"].startswith("python benchmarks/ablation.py --rows default question-only")


def test_a_failed_run_is_reported_with_its_log_and_the_other_runs_still_run(smoke):
    out, _, run = smoke
    assert run.returncode == 1, run.stderr[-3000:]
    log = out / "question-only" / "seed1" / "log.txt"
    assert "question-only seed 1: FAILED" in run.stdout and str(log) in run.stdout
    assert "already holds a trained model" in log.read_text()
    report = json.loads((out / "ablation.json").read_text())
    assert [(r["row"], r["seed"]) for r in report["failed"]] == [("question-only", 1)]
    assert report["failed"][0]["log"] == str(log)
    statuses = {(r["row"], r["seed"]): r["status"] for r in report["runs"]}
    assert statuses == {("default", 0): "ran", ("question-only", 0): "ran", ("default", 1): "ran",
                        ("question-only", 1): "failed"}  # fmt: skip
    question_only = next(row for row in report["table"] if row["row"] == "question-only")
    assert question_only["seeds"] == [0] and question_only["metrics"]["overall"]["std"] is None


def test_a_second_invocation_reads_finished_runs_back_instead_of_training_again(smoke):
    out, args, _ = smoke
    first = json.loads((out / "ablation.json").read_text())
    rows = args.index("--rows")
    again = run_ablation(*args[:rows], "--rows", "default", *args[rows + 3 :], timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((out / "ablation.json").read_text())
    assert {r["status"] for r in report["runs"]} == {"reused"}
    (default,) = report["table"]
    assert default["metrics"] == next(row for row in first["table"] if row["row"] == "default")["metrics"]
    assert (out / "default" / "seed0" / "log.txt").read_text().count("$ ") == 1  # run once, read back once


def test_a_table_extends_from_its_results_file_once_the_run_folders_are_gone(smoke):
    out, args, _ = smoke
    rows = args.index("--rows")
    only_default = [*args[:rows], "--rows", "default", *args[rows + 3 :]]
    first = json.loads((out / "ablation.json").read_text())
    shutil.rmtree(out / "default")  # run folders are not committed; ablation.json is
    again = run_ablation(*only_default, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((out / "ablation.json").read_text())
    assert {(r["row"], r["seed"], r["status"]) for r in report["runs"]} == {("default", 0, "recorded"),
                                                                            ("default", 1, "recorded")}  # fmt: skip
    assert report["table"] == first["table"]
    assert {r["machine"] for r in report["runs"]} == {first["environment"]["machine"]}
    assert not (out / "default").exists()  # nothing trained again


def test_recorded_runs_are_reused_only_from_a_table_of_the_same_settings_row_arguments_machine_and_preset(
    ablation, tmp_path
):
    settings = ablation.Settings(8, 4, "train=600,test=100", None, ())
    metrics = {"test_accuracy": 0.5}
    here, elsewhere = "Some CPU, 2 cores, torch 2.13.0", "Another CPU, 2 cores, torch 2.13.0"
    preset, edited = "a" * 64, "b" * 64
    report = {
        "settings": ablation.settings_record(settings),
        "rows_planned": {
            "default": {"finetune": "", "pretrain": None},
            "motion=none": {"finetune": "--config_overrides vision_config.motion_input=tubelet", "pretrain": None},
        },
        "runs": [
            {"row": "default", "seed": 0, "status": "ran", "metrics": metrics, "machine": here, "preset": preset},
            {"row": "default", "seed": 1, "status": "failed", "error": "exit 1", "machine": here, "preset": preset},
            {"row": "default", "seed": 2, "status": "ran", "metrics": metrics, "machine": elsewhere, "preset": preset},
            {"row": "default", "seed": 3, "status": "ran", "metrics": metrics},  # from before machines were recorded
            {"row": "default", "seed": 4, "status": "ran", "metrics": metrics, "machine": here},  # no preset recorded
            {"row": "default", "seed": 5, "status": "ran", "metrics": metrics, "machine": here, "preset": edited},
            {"row": "motion=none", "seed": 0, "status": "ran", "metrics": metrics, "machine": here,
             "preset": preset},  # other arguments
            {"row": "a-row-since-removed", "seed": 0, "status": "ran", "metrics": metrics, "machine": here,
             "preset": preset},
        ],
    }  # fmt: skip
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps(report))
    assert set(ablation.recorded_runs(path, settings, here, preset)) == {("default", 0)}
    assert set(ablation.recorded_runs(path, settings, elsewhere, preset)) == {("default", 2)}
    assert set(ablation.recorded_runs(path, settings, here, edited)) == {("default", 5)}
    assert ablation.recorded_runs(path, ablation.Settings(16, 8, None, None, ()), here, preset) == {}
    assert ablation.recorded_runs(tmp_path / "missing.json", settings, here, preset) == {}


def test_two_generations_of_one_cpu_model_name_are_different_machines(ablation):
    def cpuinfo(model, flags):
        entry = (
            f"processor\t: {{}}\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: {model}\nflags\t\t: {flags}\n"
        )
        return "\n".join(entry.format(i) for i in range(2))

    zen3 = ablation.describe_cpu(cpuinfo(1, "fpu sse2 avx avx2 fma"))
    zen4 = ablation.describe_cpu(cpuinfo(17, "fpu sse2 avx avx2 fma avx512f avx512_bf16"))
    assert zen3 == "AMD EPYC (family 25 model 1, avx2)"
    assert zen4 == "AMD EPYC (family 25 model 17, avx512_bf16)"
    masked = ablation.describe_cpu(cpuinfo(17, "fpu sse2 avx avx2 fma"))  # a VM that hides AVX-512
    assert len({zen3, zen4, masked}) == 3
    # no family/model lines (other architectures): the name, or the fallback without one
    assert ablation.describe_cpu("processor\t: 0\nmodel name\t: Some ARM core\n") == "Some ARM core"
    assert ablation.describe_cpu("processor\t: 0\nBogoMIPS\t: 50.00\n", "aarch64") == "aarch64"


def test_a_run_folder_made_from_another_preset_is_reported_instead_of_read_back(ablation, tmp_path, monkeypatch):
    settings = ablation.Settings(4, 2, "train=6,test=3", None, ())
    folder = ablation.run_dir(tmp_path, "default", 0)
    (folder / "videoqa").mkdir(parents=True)
    (folder / "videoqa" / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9}))
    stages = ablation.stage_commands("default", 0, tmp_path, settings)
    record = {"row": "default", "seed": 0, "arguments": ablation.arguments_of(stages), "seconds": {"videoqa": 1.0},
              "machine": ablation.machine(), "preset": ablation.preset_digest()}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(record))
    same = ablation.run_one("default", 0, tmp_path, settings, env={}, collect_only=True)
    assert (same["status"], same["metrics"]["test_accuracy"], same["preset"]) == ("reused", 0.9, record["preset"])

    preset = tmp_path / "mcg-tiny.json"  # the preset edited since the run: same row arguments, another model
    preset.write_text(json.dumps({**json.loads(ablation.PRESET_FILE.read_text()), "projection_dim": 48}))
    monkeypatch.setattr(ablation, "PRESET_FILE", preset)
    ablation.preset_digest.cache_clear()
    try:
        edited = ablation.run_one("default", 0, tmp_path, settings, env={}, collect_only=True)
    finally:
        ablation.preset_digest.cache_clear()
    assert edited["status"] == "failed" and "metrics" not in edited
    assert "made from another mcg-tiny.json" in edited["error"] and str(folder) in edited["error"]


def test_collect_only_writes_the_table_of_the_finished_runs_and_trains_nothing(smoke):
    out, args, _ = smoke
    seeds = args.index("--seeds")
    collect = [*args[:seeds], "--seeds", "0", "1", "2", *args[seeds + 3 :], "--collect_only"]
    done = run_ablation(*collect, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "ablation.json").read_text())
    # question-only seed 1 failed earlier: not finished, so missing too
    assert {(m["row"], m["seed"]) for m in report["missing"]} == {
        ("default", 2), ("question-only", 1), ("question-only", 2)
    }  # fmt: skip
    assert "default seed 2: not run yet" in done.stdout
    assert not (out / "default" / "seed2").exists() and not (out / "question-only" / "seed2").exists()
    table = {row["row"]: row for row in report["table"]}
    assert table["default"]["seeds"] == [0, 1] and table["question-only"]["seeds"] == [0]
    assert report["failed"] == []
