"""Which of MCG's mechanisms earn their place on the synthetic long-video QA set? A seeded ablation table.

Each row of `ROWS` below is a named variant of the default training run (`make demo`: `examples/run_videoqa.py` on
the built-in synthetic set, mcg-tiny trained from scratch): the extra arguments it gives `examples/run_videoqa.py`
and, for the pretraining rows, the arguments of a first `examples/run_pretraining.py` stage on the synthetic
captions whose output folder is then fine-tuned (`--model_name_or_path`). Rows:
- **question-only** (all frames blank) and **default** (no extra arguments: whatever the tiny preset does);
- **motion input** of the video encoder (`vision_config.motion_input`), one row per variant;
- **patch embedding**: the paper's linear one or a convolutional stem in front of it
  (`vision_config.patch_embedding_type`);
- **temporal embedding at zero** at initialisation (`vision_config.temporal_embedding_init_std=0`, the official
  init; the tiny preset starts it at std 2.0);
- **frames** 4 / 8 / 16 / 32 and **training sampling** uniform / rand (random frame per segment) / headtail;
- **ICL / TCL as auxiliary losses** during fine-tuning (weight 0.1, as in examples/README.md);
- **caption pretraining then fine-tuning** with MLM only / + ICL / + ICL + TCL / + ICL + TCL + VTM, at equal total
  training epochs: pretraining epochs + fine-tuning epochs = the epochs of the fine-tune-only rows
  (`--pretraining_epochs`, default half).

Every (row, seed) pair runs in its own folder `<output_dir>/<row>/seed<seed>/` (`videoqa/`, plus `pretraining/`
for the pretraining rows; the output of every stage goes to `log.txt` there). A pair whose `videoqa/metrics.json`
exists is read back instead of run again (the table resumes where it stopped); so is a pair recorded in the
`ablation.json` already in `<output_dir>` by a table of the same sizes, epochs and row arguments on the same kind of
machine (`describe_cpu`, core count, torch: CPU training repeats exactly on one machine, not across machines) from the
same preset (`mcg-tiny.json`, by its hash: a row's arguments do not say which model they changed), so a table
extends from its committed results file after the run folders are gone; a run folder made from another preset is
reported as failed rather than read back; an interrupted stage resumes from its last
checkpoint; a failed pair is reported with its log and the others still run. The table gives, per row,
mean ± sample standard deviation over seeds of the test accuracy (open-ended exact match) overall and per question
family, the difference of the overall mean from the default row, and the number of seeds. It is printed and
written to `<output_dir>/ablation.json` and `ablation.md`. Run folders (weights, checkpoints) are not committed;
the two table files keep every run's numbers.

Sizes:
- full (the `make demo` defaults): 2400/100/100 synthetic videos, 16 epochs; about 9-24 minutes per run on a
  2-core CPU (benchmarks/README.md), so the full table (23 rows x 3 seeds) is one to two days of CPU time.
- `--quick`: 200 training and 50 test videos (1223 training and 299 test questions), 4 epochs (156 optimizer
  steps). Estimate, from single-seed quick runs timed by this script on the 2-core VM while another training job
  was using both cores (load average about 3): default 52 s, question-only 43 s, aux=icl+tcl 88 s (the
  contrastive losses halve the step rate), pretrain=mlm+icl+tcl+vtm 63 s (26 s pretraining + 37 s fine-tuning),
  and at 6 epochs frames=4 56 s and frames=32 84 s against 86 s for the default (that one while a test run shared the
  cores; start-up, decoding and the test answers weigh as much as the frame count). Per seed, with the rows not
  timed set between their timed neighbours: 10 plain 16-frame rows x 52 s + 43 s + three aux rows (aux=icl and
  aux=tcl put at 65 and 80 s, aux=icl+tcl 88 s) + frames 4/8/32 (6-epoch times x 4/6: 40, 45, 60 s) + four
  pretraining rows x 63 s = about 1190 s, so 3 seeds take about 60 minutes, plus 11 s to generate the set once. An
  idle machine trains the default about twice as fast (8 steps/s against 4.4 here), so that is an upper bound: the
  whole quick table (then 18 rows) took 17 min 25 s on an idle 2-core VM (benchmarks/README.md). Quick runs are
  far from converged (the default reaches about 0.32 where the full run reaches 0.76, question-only 0.24): the
  quick table says whether every variant runs and gives a first, noisy ordering, not the answer.

    python benchmarks/ablation.py --dry_run                 # every command of the full table, nothing run
    python benchmarks/ablation.py --quick                   # ≤ 60 min on 2 cores -> benchmarks/results/ablation_quick/
    python benchmarks/ablation.py                           # the full table (3 seeds) -> benchmarks/results/ablation/
    python benchmarks/ablation.py --rows default question-only frames=8 --seeds 0 1 2 3 4
    python benchmarks/ablation.py --collect_only            # the table of whatever has finished, nothing run
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from report import REPO, command_line


@dataclass(frozen=True)
class Variant:
    """A row of the table: extra arguments of `examples/run_videoqa.py`, and the arguments of a
    `examples/run_pretraining.py` stage before it (None: fine-tune from scratch)."""

    finetune: str = ""
    pretrain: str | None = None


# One line per row; a new motion variant, frame count or loss is one more line.
ROWS: dict[str, Variant] = {
    "question-only": Variant(finetune="--blank_video True"),
    "default": Variant(),
    "motion=none": Variant(finetune="--config_overrides vision_config.motion_input=none"),
    "motion=frame_difference": Variant(finetune="--config_overrides vision_config.motion_input=frame_difference"),
    "motion=frame_difference_tokens": Variant(
        finetune="--config_overrides vision_config.motion_input=frame_difference_tokens"
    ),
    "stem=linear": Variant(finetune="--config_overrides vision_config.patch_embedding_type=linear"),
    "stem=conv": Variant(finetune="--config_overrides vision_config.patch_embedding_type=conv_stem"),
    "temporal_init=0": Variant(finetune="--config_overrides vision_config.temporal_embedding_init_std=0.0"),
    "temporal_init=sinusoidal": Variant(
        finetune="--config_overrides vision_config.temporal_embedding_init=sinusoidal"
    ),
    "fusion_layers=2": Variant(finetune="--config_overrides num_fusion_layers=2"),
    "order=one_way": Variant(finetune="--synthetic_order_both_ways False"),
    "image=32,patch=8": Variant(finetune="--config_overrides vision_config.image_size=32,vision_config.patch_size=8"),
    "image=48,patch=12": Variant(
        finetune="--config_overrides vision_config.image_size=48,vision_config.patch_size=12"
    ),
    "frames=4": Variant(finetune="--num_frames 4"),
    "frames=8": Variant(finetune="--num_frames 8"),
    "frames=16": Variant(finetune="--num_frames 16"),
    "frames=32": Variant(finetune="--num_frames 32"),
    "sampling=uniform": Variant(finetune="--train_sampling uniform"),
    "sampling=rand": Variant(finetune="--train_sampling rand"),
    "sampling=headtail": Variant(finetune="--train_sampling headtail"),
    "aux=icl": Variant(finetune="--config_overrides icl_loss_weight=0.1"),
    "aux=tcl": Variant(finetune="--config_overrides tcl_loss_weight=0.1"),
    "aux=icl+tcl": Variant(finetune="--config_overrides icl_loss_weight=0.1,tcl_loss_weight=0.1"),
    "pretrain=mlm": Variant(pretrain="--mlm_loss_weight 1 --icl_loss_weight 0 --tcl_loss_weight 0"),
    "pretrain=mlm+icl": Variant(pretrain="--mlm_loss_weight 1 --icl_loss_weight 1 --tcl_loss_weight 0"),
    "pretrain=mlm+icl+tcl": Variant(pretrain="--mlm_loss_weight 1 --icl_loss_weight 1 --tcl_loss_weight 1"),
    "pretrain=mlm+icl+tcl+vtm": Variant(
        pretrain="--mlm_loss_weight 1 --icl_loss_weight 1 --tcl_loss_weight 1 --use_vtm True"
    ),
}
BASELINE_ROW = "default"

# (synthetic videos per split, epochs): full = the `make demo` defaults (modeling_mcg.training SYNTHETIC_TRAINING_DEFAULTS,
# modeling_mcg.data.synthetic.DEFAULT_NUM_VIDEOS); quick = sized for <= 60 minutes on 2 cores (see the docstring).
FULL = {"synthetic_num_videos": None, "num_train_epochs": 16}
QUICK = {"synthetic_num_videos": "train=200,test=50", "num_train_epochs": 4}
MIN_SEEDS = 3

# The synthetic set's question families in the order of benchmarks/README.md; families found in the metrics that
# are not listed here get columns after these.
FAMILIES = ("color", "shape", "direction", "count", "first", "last", "order")
OVERALL = "test_accuracy"
FAMILY_PREFIX = "test_accuracy_"

# The model every row starts from (the scripts' default preset): its row arguments alone do not identify a run.
PRESET_FILE = REPO / "modeling_mcg" / "hub_configs" / "mcg-tiny.json"
VIDEOQA_SCRIPT = REPO / "examples" / "run_videoqa.py"
PRETRAINING_SCRIPT = REPO / "examples" / "run_pretraining.py"
METRICS_FILE = "metrics.json"
PRETRAINING_DONE = "pretraining_loss_weights.json"  # the last file run_pretraining.py writes
RUN_FILE = "run.json"
LOG_FILE = "log.txt"
# The runs read only the synthetic set and build their tokenizer from it: nothing to download.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


# ----------------------------------------------------------------------------------------------------------------
# Aggregation
# ----------------------------------------------------------------------------------------------------------------


def families_in(runs: Mapping[str, Mapping[int, Mapping[str, float]]]) -> list[str]:
    """`FAMILIES`, then any other family that some run's metrics report, in first-seen order."""
    found = [
        key.removeprefix(FAMILY_PREFIX)
        for by_seed in runs.values()
        for metrics in by_seed.values()
        for key in metrics
        if key.startswith(FAMILY_PREFIX)
    ]
    return list(dict.fromkeys([*FAMILIES, *found]))


def mean_std(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (n - 1; None for a single value) and count."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def aggregate(runs: Mapping[str, Mapping[int, Mapping[str, float]]], baseline: str = BASELINE_ROW) -> list[dict]:
    """Rows of the table from the per-run metrics: `runs[row][seed]` is that run's `metrics.json` dict.

    Each row gets its seeds, and for "overall" (`test_accuracy`) and each family (`test_accuracy_<family>`) the mean,
    sample std and number of seeds over the runs that report it; a family no run of the row reports is left out
    (a small test split can miss one). `delta_overall` is the row's overall mean minus the `baseline` row's (None
    without a baseline row)."""
    families = families_in(runs)
    table = []
    for name, by_seed in runs.items():
        metrics = {}
        for column, key in [("overall", OVERALL), *((f, FAMILY_PREFIX + f) for f in families)]:
            values = [float(m[key]) for m in by_seed.values() if key in m]
            if values:
                metrics[column] = mean_std(values)
        table.append({"row": name, "seeds": sorted(by_seed), "num_seeds": len(by_seed), "metrics": metrics})
    base = next((row for row in table if row["row"] == baseline and "overall" in row["metrics"]), None)
    for row in table:
        overall = row["metrics"].get("overall")
        row["delta_overall"] = (
            overall["mean"] - base["metrics"]["overall"]["mean"] if base is not None and overall else None
        )
    return table


def format_cell(entry: dict | None, num_seeds: int) -> str:
    if entry is None:
        return "–"
    text = f"{entry['mean']:.3f}" + (f" ± {entry['std']:.3f}" if entry["std"] is not None else "")
    return text + (f" ({entry['n']} seeds)" if entry["n"] != num_seeds else "")


def markdown_table(table: list[dict]) -> str:
    """The aggregated rows as a markdown table (mean ± sample std over seeds)."""
    families = list(dict.fromkeys(f for row in table for f in row["metrics"] if f != "overall"))
    families = [f for f in FAMILIES if f in families] + [f for f in families if f not in FAMILIES]
    lines = [
        "| row | seeds | overall | Δ overall vs default | " + " | ".join(families) + " |",
        "|---" * (4 + len(families)) + "|",
    ]
    for row in table:
        delta = "–" if row["delta_overall"] is None else f"{row['delta_overall']:+.3f}"
        cells = [format_cell(row["metrics"].get(column), row["num_seeds"]) for column in ("overall", *families)]
        lines.append(f"| {row['row']} | {row['num_seeds']} | {cells[0]} | {delta} | " + " | ".join(cells[1:]) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What every run of the table shares."""

    num_train_epochs: int
    pretraining_epochs: int
    synthetic_num_videos: str | None
    synthetic_cache_dir: str | None
    extra_args: tuple[str, ...]


def run_dir(output_dir: Path, row: str, seed: int) -> Path:
    return output_dir / row / f"seed{seed}"


def stage_commands(row: str, seed: int, output_dir: Path, settings: Settings) -> list[tuple[str, list[str]]]:
    """The (stage, command) pairs of one run: ("pretraining", ...) for the pretraining rows, then ("videoqa", ...).
    The fine-tuning stage of a pretraining row gets the epochs its pretraining stage did not use."""
    variant = ROWS[row]
    folder = run_dir(output_dir, row, seed)
    common = ["--seed", str(seed)]
    if settings.synthetic_num_videos is not None:
        common += ["--synthetic_num_videos", settings.synthetic_num_videos]
    if settings.synthetic_cache_dir is not None:
        common += ["--synthetic_cache_dir", settings.synthetic_cache_dir]
    common += settings.extra_args
    stages = []
    finetune_epochs = settings.num_train_epochs
    start = []
    if variant.pretrain is not None:
        pretraining_dir = folder / "pretraining"
        stages.append(
            ("pretraining", [sys.executable, str(PRETRAINING_SCRIPT), *shlex.split(variant.pretrain),
                             "--num_train_epochs", str(settings.pretraining_epochs),
                             "--output_dir", str(pretraining_dir), *common])
        )  # fmt: skip
        finetune_epochs -= settings.pretraining_epochs
        start = ["--model_name_or_path", str(pretraining_dir)]
    stages.append(
        ("videoqa", [sys.executable, str(VIDEOQA_SCRIPT), *start, *shlex.split(variant.finetune),
                     "--num_train_epochs", str(finetune_epochs), "--output_dir", str(folder / "videoqa"), *common])
    )  # fmt: skip
    return stages


def stage_done(folder: Path, stage: str) -> bool:
    if stage == "pretraining":
        return (folder / "pretraining" / PRETRAINING_DONE).is_file()
    return read_metrics(folder) is not None


def read_metrics(folder: Path) -> dict | None:
    path = folder / "videoqa" / METRICS_FILE
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return metrics if OVERALL in metrics else None


def arguments_of(stages: list[tuple[str, list[str]]]) -> list[list[str]]:
    """The commands without the interpreter (a resumed table may run under another virtual environment)."""
    return [command[1:] for _, command in stages]


def settings_record(settings: Settings) -> dict:
    """`settings` as the results file stores them."""
    return {**settings.__dict__, "extra_args": list(settings.extra_args)}


def package_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# The widest vector extension decides which kernels oneDNN and ATen pick, and so the rounding of a run
VECTOR_EXTENSIONS = ("amx_tile", "avx512_bf16", "avx512f", "avx2")


def describe_cpu(cpuinfo: str, fallback: str = "unknown CPU") -> str:
    """Model name, family/model numbers and widest vector extension from /proc/cpuinfo text.

    The model name alone does not tell CPU generations apart ("AMD EPYC" is both Zen 3 and Zen 4 on some VMs), and
    training repeats exactly only where the same kernels run.
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:  # the first processor's entry
            fields[key.strip()] = value.strip()
    name = fields.get("model name", fallback)
    if "cpu family" not in fields or "model" not in fields:
        return name
    flags = set(fields.get("flags", "").split())
    widest = next((flag for flag in VECTOR_EXTENSIONS if flag in flags), "no avx2")
    return f"{name} (family {fields['cpu family']} model {fields['model']}, {widest})"


@functools.cache
def machine() -> str:
    """The kind of machine a run's numbers belong to: CPU (`describe_cpu`), core count and torch version."""
    fallback = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    model = describe_cpu(cpuinfo.read_text(), fallback) if cpuinfo.is_file() else fallback
    return f"{model}, {os.cpu_count()} cores, torch {package_version('torch')}"


@functools.cache
def preset_digest() -> str:
    """sha256 of the preset's config: a run made while the preset was another model (an edited `mcg-tiny.json`)
    has the same row arguments, so without it the table would reuse that model's numbers as today's."""
    config = json.loads(PRESET_FILE.read_text())
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def recorded_runs(report_path: Path, settings: Settings, on_machine: str, preset: str) -> dict[tuple[str, int], dict]:
    """{(row, seed): run} of the finished runs in an earlier results file, kept only where that table had these
    settings, the row had today's arguments and the run was made `on_machine` from `preset` (a `preset_digest()`);
    {} when there is no such file."""
    if not report_path.is_file():
        return {}
    report = json.loads(report_path.read_text())
    if report.get("settings") != settings_record(settings):
        return {}
    planned = report.get("rows_planned", {})
    return {
        (run["row"], run["seed"]): run
        for run in report.get("runs", [])
        if "metrics" in run
        and run.get("machine") == on_machine
        and run.get("preset") == preset
        and run["row"] in ROWS
        and planned.get(run["row"]) == asdict(ROWS[run["row"]])
    }


def run_one(
    row: str,
    seed: int,
    output_dir: Path,
    settings: Settings,
    env: dict,
    recorded: Mapping | None = None,
    collect_only: bool = False,
) -> dict:
    """Run (or read back, from its folder or from `recorded`) one (row, seed) pair; never raises for a failed
    stage. With `collect_only` a pair that is not finished is reported as missing instead of run."""
    folder = run_dir(output_dir, row, seed)
    stages = stage_commands(row, seed, output_dir, settings)
    record_path = folder / RUN_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    if record is not None and record["arguments"] != arguments_of(stages):
        return {"row": row, "seed": seed, "status": "failed", "log": str(folder / LOG_FILE),
                "error": f"{folder} holds a run made with other arguments ({record_path}); remove it or choose "
                         "another --output_dir"}  # fmt: skip
    if record is not None and record.get("preset") != preset_digest():
        return {"row": row, "seed": seed, "status": "failed", "log": str(folder / LOG_FILE),
                "error": f"{folder} holds a run made from another {PRESET_FILE.name} than today's, or from before "
                         f"runs recorded theirs ({record_path}); remove it or choose another --output_dir"}  # fmt: skip
    metrics = read_metrics(folder)
    if metrics is not None:
        return {
            "row": row,
            "seed": seed,
            "status": "reused",
            "metrics": metrics,
            "seconds": record and record.get("seconds"),
            "machine": record and record.get("machine"),
            "preset": record and record.get("preset"),
        }
    earlier = (recorded or {}).get((row, seed))
    if earlier is not None and record is None:
        return {"row": row, "seed": seed, "status": "recorded", "metrics": earlier["metrics"],
                "seconds": earlier.get("seconds"), "machine": earlier["machine"], "preset": earlier["preset"]}  # fmt: skip
    if collect_only:
        return {"row": row, "seed": seed, "status": "missing"}
    folder.mkdir(parents=True, exist_ok=True)
    record = {"row": row, "seed": seed, "arguments": arguments_of(stages), "seconds": {}, "machine": machine(),
              "preset": preset_digest()}  # fmt: skip
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    log = folder / LOG_FILE
    for stage, command in stages:
        if stage_done(folder, stage):
            continue
        started = time.perf_counter()
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"$ {shlex.join(command)}\n")
            handle.flush()
            done = subprocess.run(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
        record["seconds"][stage] = round(time.perf_counter() - started, 1)
        record_path.write_text(json.dumps(record, indent=1) + "\n")
        if done.returncode != 0:
            return {"row": row, "seed": seed, "status": "failed", "log": str(log),
                    "error": f"{stage} stage exited with {done.returncode}: {last_line(log)}"}  # fmt: skip
    metrics = read_metrics(folder)
    if metrics is None:
        return {"row": row, "seed": seed, "status": "failed", "log": str(log),
                "error": f"no {OVERALL} in {folder / 'videoqa' / METRICS_FILE}"}  # fmt: skip
    return {"row": row, "seed": seed, "status": "ran", "metrics": metrics, "seconds": record["seconds"],
            "machine": record["machine"], "preset": record["preset"]}  # fmt: skip


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "(empty log)"


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "torch": package_version("torch"),
        "transformers": package_version("transformers"),
        "platform": platform.platform(),
        "machine": machine(),
        "cpu_count": os.cpu_count(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average_start": os.getloadavg(),
    }


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"smaller set and fewer epochs: {QUICK}")
    parser.add_argument("--rows", nargs="+", default=None, help="subset of rows (default all): " + ", ".join(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default 0 1 2)")
    parser.add_argument(
        "--allow_fewer_seeds", action="store_true", help=f"allow fewer than {MIN_SEEDS} seeds (a partial table)"
    )
    parser.add_argument(
        "--output_dir",
        default=None,
        help="runs and table (default benchmarks/results/ablation/, with --quick benchmarks/results/ablation_quick/)",
    )
    parser.add_argument("--synthetic_num_videos", default=None, help="override the mode's, e.g. 'train=20,test=8'")
    parser.add_argument("--num_train_epochs", type=int, default=None, help="total training epochs of every row")
    parser.add_argument(
        "--pretraining_epochs", type=int, default=None, help="epochs of the pretraining stage (default half)"
    )
    parser.add_argument("--synthetic_cache_dir", default=None, help="synthetic set cache (default the scripts')")
    parser.add_argument(
        "--extra_args",
        default="",
        help="more arguments for every stage of every run (both scripts), e.g. '--dataloader_num_workers 0'",
    )
    parser.add_argument("--dry_run", action="store_true", help="print the planned runs and commands, run nothing")
    parser.add_argument(
        "--collect_only",
        action="store_true",
        help="write the table from the finished runs of these rows and seeds and run nothing (e.g. after several "
        "processes each ran some rows into one --output_dir); pairs not yet run are left out and listed as missing",
    )
    args = parser.parse_args(argv)

    rows = args.rows if args.rows is not None else list(ROWS)
    unknown = [name for name in rows if name not in ROWS]
    if unknown:
        parser.error(f"unknown --rows {', '.join(unknown)}; valid rows: {', '.join(ROWS)}")
    args.rows = list(dict.fromkeys(rows))
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds has repeated seeds: {args.seeds}")
    if len(args.seeds) < MIN_SEEDS and not args.allow_fewer_seeds:
        parser.error(
            f"--seeds gives {len(args.seeds)} seed(s) ({' '.join(map(str, args.seeds))}); the table needs at least "
            f"{MIN_SEEDS} for a standard deviation across seeds. Pass more seeds, or --allow_fewer_seeds for a "
            "partial table."
        )
    mode = QUICK if args.quick else FULL
    if args.num_train_epochs is None:
        args.num_train_epochs = mode["num_train_epochs"]
    if args.synthetic_num_videos is None:
        args.synthetic_num_videos = mode["synthetic_num_videos"]
    if args.pretraining_epochs is None:
        args.pretraining_epochs = args.num_train_epochs // 2
    pretraining = [name for name in args.rows if ROWS[name].pretrain is not None]
    if pretraining and not 1 <= args.pretraining_epochs < args.num_train_epochs:
        parser.error(
            f"--pretraining_epochs {args.pretraining_epochs} leaves no epoch for pretraining or for fine-tuning "
            f"({args.num_train_epochs} epochs in all, rows {', '.join(pretraining)}); it must be in "
            f"[1, {args.num_train_epochs - 1}]."
        )
    if args.output_dir is None:
        args.output_dir = str(REPO / "benchmarks" / "results" / ("ablation_quick" if args.quick else "ablation"))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_arguments(argv)
    output_dir = Path(args.output_dir).resolve()
    settings = Settings(
        num_train_epochs=args.num_train_epochs,
        pretraining_epochs=args.pretraining_epochs,
        synthetic_num_videos=args.synthetic_num_videos,
        synthetic_cache_dir=str(Path(args.synthetic_cache_dir).resolve()) if args.synthetic_cache_dir else None,
        extra_args=tuple(shlex.split(args.extra_args)),
    )
    pairs = [(row, seed) for seed in args.seeds for row in args.rows]  # seed by seed: a stopped table covers rows
    print(f"{len(args.rows)} rows x {len(args.seeds)} seeds ({' '.join(map(str, args.seeds))}) = {len(pairs)} runs, "
          f"{settings.num_train_epochs} epochs each (pretraining rows: {settings.pretraining_epochs} pretraining + "
          f"{settings.num_train_epochs - settings.pretraining_epochs} fine-tuning), synthetic videos "
          f"{settings.synthetic_num_videos or 'default'}; rows: {', '.join(args.rows)}", flush=True)  # fmt: skip
    if args.dry_run:
        for row, seed in pairs:
            for stage, command in stage_commands(row, seed, output_dir, settings):
                print(f"[{row} seed {seed} {stage}] {shlex.join(command)}")
        return {"rows": args.rows, "seeds": args.seeds, "failed": []}

    env = {**os.environ, **{k: v for k, v in OFFLINE_ENV.items() if k not in os.environ}}
    started = time.perf_counter()
    env_info = environment()
    recorded = recorded_runs(output_dir / "ablation.json", settings, machine(), preset_digest())
    results = []
    for index, (row, seed) in enumerate(pairs, 1):
        result = run_one(row, seed, output_dir, settings, env, recorded, args.collect_only)
        results.append(result)
        if result["status"] == "missing":
            print(f"[{index}/{len(pairs)}] {row} seed {seed}: not run yet, left out (--collect_only)", flush=True)
        elif result["status"] == "failed":
            print(f"[{index}/{len(pairs)}] {row} seed {seed}: FAILED ({result['error']}); log: {result['log']}",
                  flush=True)  # fmt: skip
        else:
            took = result.get("seconds") or {}
            print(f"[{index}/{len(pairs)}] {row} seed {seed}: {result['status']}, test accuracy "
                  f"{result['metrics'][OVERALL]:.3f}" + (f" ({sum(took.values()):.0f} s)" if took else ""),
                  flush=True)  # fmt: skip

    runs: dict[str, dict[int, dict]] = {row: {} for row in args.rows}
    for result in results:
        if "metrics" in result:
            runs[result["row"]][result["seed"]] = result["metrics"]
    table = aggregate({row: by_seed for row, by_seed in runs.items() if by_seed})
    markdown = markdown_table(table)
    failed = [r for r in results if r["status"] == "failed"]
    command = command_line("ablation.py", args.quick, argv)
    print("\n" + markdown)
    report = {
        "command": command,
        "quick": args.quick,
        "settings": settings_record(settings),
        "rows_planned": {row: asdict(ROWS[row]) for row in args.rows},
        "seeds": args.seeds,
        "environment": {**env_info, "load_average_end": os.getloadavg()},
        "wall_s": round(time.perf_counter() - started, 1),
        "table": table,
        "runs": [
            {key: value for key, value in r.items() if key != "metrics"}
            | ({"metrics": {k: v for k, v in r["metrics"].items() if k.startswith(OVERALL)}} if "metrics" in r else {})
            for r in results
        ],
        "failed": failed,
        "missing": [{"row": r["row"], "seed": r["seed"]} for r in results if r["status"] == "missing"],
        "markdown": markdown,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "ablation.json").write_text(json.dumps(report, indent=1) + "\n")
    (output_dir / "ablation.md").write_text(f"`{command}`\n\n{markdown}\n")
    print(f"\nwrote {output_dir / 'ablation.json'} and ablation.md")
    if failed:
        print(f"{len(failed)} of {len(pairs)} runs failed:")
        for r in failed:
            print(f"  {r['row']} seed {r['seed']}: {r['error']}\n    log: {r['log']}")
    return report


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
