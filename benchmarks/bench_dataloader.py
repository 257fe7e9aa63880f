"""Is the default training run (`python examples/run_videoqa.py`) data-bound? Clips/s of decode + preprocess in the
DataLoader against the training step time.

The loader is exactly the default run's: `VideoQACollator` + `MCGProcessor` from `examples/run_videoqa.py` (imported,
not copied), built from the script's own defaults (`parse_args([])`: mcg-tiny, 8 frames at 32 px, batch 32, 1 worker,
and the training sampling `main()` resolves for the dataset), shuffled like `Trainer`'s, on
- the synthetic training set the default run uses (64x64 H.264 clips of 6-20 s), and
- a long video: a 640x360 H.264 clip of 10 minutes (`--quick`: 5 minutes) with a keyframe every 250 frames, written
  once with PyAV and cached in the temp dir (same material as bench_decode.py); every row of the batch reads it.

Configurations, each run once per repetition in a rotated order (medians shown):
- train step alone: the default model, fused AdamW (`Trainer`'s default), one fixed real batch of 32;
- loader alone, 0 / 1 / 2 workers: clips/s over the whole run, worker start-up included (`Trainer` restarts the
  workers every epoch), so prefetched batches cannot flatter it;
- loader + train (synthetic set): one train step per batch while the workers decode ahead, as in training;
- loader with a warm clip cache (when this run_videoqa's collator has `cache_clips`, with uniform sampling): every
  video's processed clip already cached, i.e. the per-batch cost of the epochs after the first in a persistent
  worker. All other rows decode and preprocess every clip (the cache off), the cost of a first epoch.
Training threads: the run's (2 on CPU unless OMP_NUM_THREADS is set) and 1, because on 2 cores the 2 OpenMP
threads of the step compete with the decoding worker. CPU time includes the workers (getrusage of the reaped
children). The run is data-bound when "loader + train" takes longer per batch than the train step alone.

    python benchmarks/bench_dataloader.py          # 3 repetitions, 10-min long clip (encoded once, ~3 min)
    python benchmarks/bench_dataloader.py --quick  # 2 repetitions, fewer batches, 5-min long clip
"""

from __future__ import annotations

import argparse
import inspect
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))
sys.path.insert(0, str(BENCH))

import run_videoqa  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from bench_decode import LONG_GOP, write_h264  # noqa: E402
from bench_generate import environment, pick_device, sync, write_results  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

WORKERS = (0, 1, 2)


def cpu_seconds() -> float:
    """This process plus its reaped children (DataLoader workers, once the iterator has shut them down)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def make_loader(dataset, collator, batch_size: int, workers: int, seed: int) -> DataLoader:
    """What `Trainer` builds for training: shuffled, prefetch_factor 2, no persistent workers."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collator,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        drop_last=False,
        timeout=600 if workers else 0,  # a stuck worker fails the run instead of hanging it
    )


def run_loader(dataset, collator, batch_size, workers, batches, seed, train_step=None) -> dict:
    """Iterate `batches` batches (optionally training on each). The rate covers the whole run, worker start-up
    included (`Trainer` restarts the workers every epoch), so prefetched batches cannot flatter it."""
    loader = make_loader(dataset, collator, batch_size, workers, seed)
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    iterator = iter(loader)
    first = None
    clips = 0
    for _ in range(batches):
        batch = next(iterator)
        if first is None:
            first = time.perf_counter() - wall0
        clips += int(batch["pixel_values_videos"].shape[0]) if "pixel_values_videos" in batch else 0
        if train_step is not None:
            train_step(batch)
    wall = time.perf_counter() - wall0
    del iterator  # shuts the workers down, so their CPU time shows up in RUSAGE_CHILDREN
    return {
        "batches": batches,
        "clips": clips,
        "wall_s": wall,
        "clips_per_s": clips / wall,
        "s_per_batch": wall / batches,
        "first_batch_s": first,
        "cpu_s": cpu_seconds() - cpu0,
        "cpu_s_per_batch": (cpu_seconds() - cpu0) / batches,
    }


def run_steps(train_step, batch, steps: int) -> dict:
    """The train step alone, on one fixed batch."""
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for _ in range(steps):
        train_step(batch)
    wall = time.perf_counter() - wall0
    return {
        "batches": steps,
        "clips": steps * int(batch["pixel_values_videos"].shape[0]),
        "wall_s": wall,
        "clips_per_s": steps * int(batch["pixel_values_videos"].shape[0]) / wall,
        "s_per_batch": wall / steps,
        "first_batch_s": 0.0,
        "cpu_s": cpu_seconds() - cpu0,
        "cpu_s_per_batch": (cpu_seconds() - cpu0) / steps,
    }


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k, v in runs[0].items() if isinstance(v, (int, float))}


def long_video_rows(train_ds, path: Path, count: int):
    """`count` training rows (real questions, answers) that all point at the long video."""
    rows = train_ds.select(range(count))
    return rows.map(lambda row: {"video": str(path)})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repetitions, fewer batches, 5-minute long clip")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, --quick 2)")
    parser.add_argument("--batches", type=int, default=None, help="synthetic batches per run (default 10, quick 6)")
    parser.add_argument(
        "--long-batches", type=int, default=None, help="long-video batches per run (default 6, quick 4)"
    )
    parser.add_argument(
        "--threads", default=None, help="training threads to compare, comma-separated (default: the run's, and 1)"
    )
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "modeling_mcg_bench"))
    parser.add_argument(
        "--output", default=None, help="JSON path (default benchmarks/results/dataloader[_quick].json)"
    )
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 3)
    batches = args.batches or (6 if args.quick else 10)
    long_batches = args.long_batches or (4 if args.quick else 6)
    minutes = 5 if args.quick else 10
    transformers.logging.set_verbosity_error()
    start = time.perf_counter()

    # the default run's configuration, from the script itself
    model_args, data_args, training_args = run_videoqa.parse_args([])
    run_threads = torch.get_num_threads() if os.environ.get("OMP_NUM_THREADS") else min(2, os.cpu_count() or 1)
    thread_counts = (
        [int(t) for t in args.threads.split(",")] if args.threads else sorted({run_threads, 1}, reverse=True)
    )
    batch_size = training_args.per_device_train_batch_size
    default_workers = training_args.dataloader_num_workers
    train_ds = run_videoqa.load_split(data_args, data_args.train_split)
    model, processor = run_videoqa.build_model_and_processor(model_args, data_args, train_ds)
    # run_videoqa.main() resolves an unset sampling (uniform on the synthetic set, else rand)
    sampling = data_args.train_sampling or ("uniform" if data_args.dataset == "synthetic" else "rand")
    collator_args = (processor, sampling, data_args.on_corrupt_video, data_args.blank_video, data_args.do_augment)
    # decode + preprocess on every call: the clip cache (if this run_videoqa has one) stays off here
    collator = run_videoqa.VideoQACollator(*collator_args)
    warm_collator = None
    if "cache_clips" in inspect.signature(run_videoqa.VideoQACollator).parameters and sampling == "uniform":
        # the default run keeps each video's processed clip in its persistent worker after the first decode; a
        # pre-filled cache in this process shows the per-batch cost of every later epoch (collate + tokenize)
        warm_collator = run_videoqa.VideoQACollator(*collator_args, cache_clips=True)
        first_row_of_video = list({row: i for i, row in reversed(list(enumerate(train_ds["video"])))}.values())
        for i in range(0, len(first_row_of_video), batch_size):
            warm_collator([train_ds[j] for j in first_row_of_video[i : i + batch_size]])
    video = processor.video_processor
    size = f"{video.size.height}x{video.size.width}" if getattr(video.size, "height", None) else str(video.size)
    print(f"default run: {model_args.hub_config or 'mcg-tiny'}, {video.num_frames} frames of {size} px, "
          f"sampling {sampling}, batch {batch_size}, {default_workers} worker(s), "
          f"{run_threads} training threads; {len(train_ds)} training rows", flush=True)  # fmt: skip

    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    long_path = write_h264(cache / f"long_{minutes}min_640x360_gop250.mp4", minutes * 60, 640, 360, 30, LONG_GOP)
    print(f"long clip ready in {time.perf_counter() - t0:.0f} s", flush=True)
    long_ds = long_video_rows(train_ds, long_path, batch_size * long_batches)

    # the default model's train step (Trainer's default optimizer: fused AdamW) on real batches
    device = pick_device("auto")  # the default run trains on the GPU when there is one
    model.to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=training_args.learning_rate, weight_decay=training_args.weight_decay, fused=True
    )

    def train_step(batch):
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        inputs = {k: v for k, v in inputs.items() if k not in ("num_skipped_videos", "meta")}
        optimizer.zero_grad(set_to_none=True)
        model(**inputs).loss.backward()
        optimizer.step()
        sync(device)

    fixed = collator([train_ds[i] for i in range(batch_size)])
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for _ in range(2):
            train_step(fixed)  # warm-up

    # (label, kind, dataset, batches, workers, threads): every configuration once per repetition, rotated
    synthetic, long_label = "synthetic", f"long {minutes}-min 640x360"
    configs = [("train step alone", "step", None, batches, None, t) for t in thread_counts]
    configs += [(synthetic, "loader", train_ds, batches, w, None) for w in WORKERS]
    if warm_collator is not None:
        configs += [(synthetic, "loader, clip cache warm", train_ds, batches, 0, None)]
    configs += [(synthetic, "loader + train", train_ds, batches, w, t) for t in thread_counts for w in WORKERS]
    configs += [(long_label, "loader", long_ds, long_batches, w, None) for w in WORKERS]
    raw = {i: [] for i in range(len(configs))}
    for rep in range(reps):
        order = list(range(len(configs)))
        order = order[rep % len(order) :] + order[: rep % len(order)]
        for i in order:
            label, kind, dataset, n, workers, threads = configs[i]
            torch.set_num_threads(threads or run_threads)
            if kind == "step":
                result = run_steps(train_step, fixed, n)
            else:
                step = train_step if kind == "loader + train" else None
                use = warm_collator if "cache warm" in kind else collator
                result = run_loader(dataset, use, batch_size, workers, n, seed=rep, train_step=step)
            raw[i].append(result)
            print(
                f"  rep {rep} {label} {kind} workers={workers} threads={threads}: "
                f"{result['clips_per_s']:.1f} clips/s, {result['s_per_batch'] * 1000:.0f} ms/batch",
                flush=True,
            )
    torch.set_num_threads(run_threads)

    rows = []
    for i, (label, kind, _, n, workers, threads) in enumerate(configs):
        rows.append({
            "source": label, "mode": kind, "workers": workers, "threads": threads, "batches": n,
            "median": median_of(raw[i]), "runs": raw[i],
        })  # fmt: skip
    steps = {row["threads"]: row["median"]["s_per_batch"] for row in rows if row["mode"] == "step"}
    for row in rows:
        row["vs_step_at_run_threads"] = row["median"]["s_per_batch"] / steps[run_threads]
    report = table(rows, steps, run_threads, batch_size, default_workers)
    print("\n" + report)
    command = "python benchmarks/bench_dataloader.py" + (" --quick" if args.quick else "")
    extra = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--quick"]
    results = {
        "command": " ".join([command, *extra]),
        "quick": args.quick,
        "repetitions": reps,
        "default_run": {
            "model": model_args.hub_config or "mcg-tiny",
            "num_frames": video.num_frames,
            "size": size,
            "sampling": sampling,
            "clip_cache_available": warm_collator is not None,
            "batch_size": batch_size,
            "dataloader_num_workers": default_workers,
            "training_threads": run_threads,
            "training_rows": len(train_ds),
        },
        "thread_counts": thread_counts,
        "long_video": {"minutes": minutes, "size": "640x360", "codec": "h264", "x264_params": LONG_GOP},
        "environment": environment(device),
        "load_average_end": os.getloadavg(),
        "train_step_s": steps,
        "rows": rows,
        "wall_s": round(time.perf_counter() - start, 1),
        "table": report,
    }
    write_results(results, "dataloader", args.quick, args.output)
    return results


def table(rows: list[dict], steps: dict, run_threads: int, batch_size: int, default_workers: int) -> str:
    step = steps[run_threads]
    lines = [
        "| videos | mode | workers | training threads | clips/s | s per batch of "
        f"{batch_size} | vs train step ({run_threads} threads) | first batch s | CPU s per batch (all processes) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        med = row["median"]
        workers = "–" if row["workers"] is None else str(row["workers"])
        if row["workers"] == default_workers and row["mode"] != "step":
            workers += " (default)"
        threads = "–" if row["threads"] is None else str(row["threads"])
        if row["threads"] == run_threads:
            threads += " (default)"
        lines.append(
            f"| {row['source'] if row['mode'] != 'step' else '–'} | {row['mode']} | {workers} | {threads} | "
            f"{med['clips_per_s']:.1f} | {med['s_per_batch']:.2f} | {med['s_per_batch'] / step:.2f}x | "
            f"{med['first_batch_s']:.2f} | {med['cpu_s_per_batch']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
