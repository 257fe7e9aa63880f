"""Is the default training run (`python examples/run_videoqa.py`) data-bound? Questions/s and videos decoded/s of
the DataLoader (decode + preprocess + tokenise) against the training step.

The loader is exactly the default run's: `VideoQACollator` + `MCGProcessor` from `modeling_mcg.training`, built
with the defaults of `examples/run_videoqa.py` (mcg-tiny, 16 frames at its frame size, `rand` sampling, no clip
cache, batch 32, 1 worker; `DEFAULT_RUN` below), in the default run's training order: `VideoGroupedSampler` when
`group_by_video` is on (its default on the synthetic set), else `Trainer`'s shuffle.
The collator decodes each distinct video of a batch once and the model encodes it once (`video_index`), so a batch
of 32 questions costs as many decodes as it has distinct videos (about 5-6 on the synthetic set). Rates are given
both ways: questions/s (training throughput, what the train step is compared on) and videos decoded/s (decoder
throughput). Two sources:
- the synthetic training set of the default run (64x64 H.264 clips of 6-20 s, about 6 questions per video), and
- a long video: a 640x360 H.264 clip of 10 minutes (`--quick`: 5 minutes) with a keyframe every 250 frames, written
  once with PyAV and cached in the temp dir (same material as bench_decode.py). Each row reads it through its own
  symbolic link, so the collator sees 32 distinct videos per batch and decodes each (one decode per question). This
  is a long-video dataset without `group_by_video` (the default off the synthetic set), where a shuffled batch of
  32 questions almost never shares a video. Rows reading one path would be decoded once per batch.

Configurations, each run once per repetition in a rotated order (medians shown):
- train step alone: the default model, fused AdamW (`Trainer`'s default), on one fixed real batch (the first batch
  of the default run's order: 32 questions on a handful of videos, with `video_index`);
- loader alone, 0 / 1 / 2 workers: the rate over the whole run, worker start-up included (`Trainer` restarts the
  workers every epoch), so prefetched batches cannot flatter it;
- loader + train (synthetic set): one train step per batch while the workers decode ahead, as in training.
Every row decodes and preprocesses every clip: `cache_clips` is off by default and needs uniform sampling.
Training threads: the run's own (`modeling_mcg.training.set_cpu_threads`: on CPU, the cores the DataLoader workers leave
free, unless OMP_NUM_THREADS is set; an empty OMP_NUM_THREADS counts as unset) and 1. CPU time includes the workers
(getrusage of the reaped children). The run is data-bound when "loader + train" trains fewer questions per second
than the train step alone.

    python benchmarks/bench_dataloader.py          # 3 repetitions, 10-min long clip (encoded once, ~3 min)
    python benchmarks/bench_dataloader.py --quick  # 2 repetitions, fewer batches, 5-min long clip
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

import torch  # noqa: E402
import transformers  # noqa: E402
from bench_decode import LONG_GOP, write_h264  # noqa: E402
from bench_generate import environment, pick_device, sync  # noqa: E402
from report import command_line, write_results  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler  # noqa: E402

from modeling_mcg import MCGForVideoQuestionAnswering, MCGProcessor  # noqa: E402
from modeling_mcg.data.synthetic import load_synthetic_videoqa  # noqa: E402
from modeling_mcg.processing_mcg import build_wordpiece_tokenizer  # noqa: E402
from modeling_mcg.training import (  # noqa: E402
    SYNTHETIC_TRAINING_DEFAULTS,
    MCGTrainingArguments,
    VideoGroupedSampler,
    VideoQACollator,
    load_preset,
    match_config_to_tokenizer,
    set_cpu_threads,
    video_processor_for,
    vocabulary_words,
)

# The settings of the plain `python examples/run_videoqa.py` run that the loader depends on (the scripts' shared
# training defaults, and run_videoqa's data-argument defaults).
DEFAULT_RUN = dict(
    preset="mcg-tiny",
    train_sampling="rand",
    group_by_video=True,
    cache_clips=False,
    batch_size=SYNTHETIC_TRAINING_DEFAULTS["per_device_train_batch_size"],
    workers=SYNTHETIC_TRAINING_DEFAULTS["dataloader_num_workers"],
    learning_rate=SYNTHETIC_TRAINING_DEFAULTS["learning_rate"],
    weight_decay=SYNTHETIC_TRAINING_DEFAULTS["weight_decay"],
)

WORKERS = (0, 1, 2)


def cpu_seconds() -> float:
    """This process plus its reaped children (DataLoader workers, once the iterator has shut them down)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def training_order(dataset, grouped: bool, seed: int) -> list[int]:
    """One epoch of the default run's training order, drawn up front (so training steps cannot shift it):
    `VideoGroupedSampler` (each video's questions together) or, without `group_by_video`, `Trainer`'s shuffle."""
    if grouped:
        return list(VideoGroupedSampler(dataset["video"], seed=seed))
    return list(RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)))


def make_loader(dataset, collator, batch_size: int, workers: int, order: list[int]) -> DataLoader:
    """What `Trainer` builds for training: the given order, prefetch_factor 2, no persistent workers."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order,
        collate_fn=collator,
        num_workers=workers,
        drop_last=False,
        timeout=600 if workers else 0,  # a stuck worker fails the run instead of hanging it
    )


def rates(batches: int, questions: int, videos: int, wall: float, first: float, cpu: float) -> dict:
    return {
        "batches": batches,
        "questions": questions,
        "videos": videos,  # distinct videos: decoded by the loader, encoded by the train step
        "videos_per_batch": videos / batches,
        "wall_s": wall,
        "questions_per_s": questions / wall,
        "videos_per_s": videos / wall,
        "s_per_batch": wall / batches,
        "first_batch_s": first,
        "cpu_s": cpu,
        "cpu_s_per_batch": cpu / batches,
    }


def run_loader(dataset, collator, batch_size, workers, batches, order, train_step=None) -> dict:
    """Iterate `batches` batches (optionally training on each). The rate covers the whole run, worker start-up
    included (`Trainer` restarts the workers every epoch), so prefetched batches cannot flatter it."""
    loader = make_loader(dataset, collator, batch_size, workers, order)
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    iterator = iter(loader)
    first = None
    questions = videos = 0
    for _ in range(batches):
        batch = next(iterator)
        if first is None:
            first = time.perf_counter() - wall0
        if "video_index" in batch:  # an all-undecodable batch carries neither
            questions += int(batch["video_index"].shape[0])
            videos += int(batch["pixel_values_videos"].shape[0])
        if train_step is not None:
            train_step(batch)
    wall = time.perf_counter() - wall0
    del iterator  # shuts the workers down, so their CPU time shows up in RUSAGE_CHILDREN
    return rates(batches, questions, videos, wall, first, cpu_seconds() - cpu0)


def run_steps(train_step, batch, steps: int) -> dict:
    """The train step alone, on one fixed batch."""
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for _ in range(steps):
        train_step(batch)
    wall = time.perf_counter() - wall0
    questions, videos = int(batch["video_index"].shape[0]), int(batch["pixel_values_videos"].shape[0])
    return rates(steps, steps * questions, steps * videos, wall, 0.0, cpu_seconds() - cpu0)


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k, v in runs[0].items() if isinstance(v, (int, float))}


def long_video_rows(train_ds, path: Path, count: int):
    """`count` training rows (real questions and answers), each reading the long video through its own symbolic
    link: distinct paths, so the collator decodes the video once per row (one path would be decoded once per batch).
    """
    links = path.parent / f"{path.stem}_links"
    links.mkdir(exist_ok=True)
    videos = []
    for i in range(count):
        link = links / f"{i:04d}{path.suffix}"
        if not link.is_symlink():
            link.symlink_to(path)
        videos.append(str(link))
    return train_ds.select(range(count)).map(lambda row, i: {"video": videos[i]}, with_indices=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repetitions, fewer batches, 5-minute long clip")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, --quick 2)")
    parser.add_argument("--batches", type=int, default=None, help="synthetic batches per run (default 100, quick 50)")
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
    batches = args.batches or (50 if args.quick else 100)
    long_batches = args.long_batches or (4 if args.quick else 6)
    minutes = 5 if args.quick else 10
    transformers.logging.set_verbosity_error()
    start = time.perf_counter()

    # the default run's configuration, from the script itself
    training_args = MCGTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=DEFAULT_RUN["workers"],
        report_to="none",
    )
    omp_env = os.environ.get("OMP_NUM_THREADS")
    if omp_env == "":  # libgomp ignores an empty value (invalid): the run then behaves as if it were unset
        del os.environ["OMP_NUM_THREADS"]
    set_cpu_threads(training_args)  # the run's training threads
    run_threads = torch.get_num_threads()
    thread_counts = (
        [int(t) for t in args.threads.split(",")] if args.threads else sorted({run_threads, 1}, reverse=True)
    )
    device = pick_device("auto")  # the default run trains on the GPU when there is one
    env = environment(device)
    batch_size = DEFAULT_RUN["batch_size"]
    default_workers = DEFAULT_RUN["workers"]
    grouped = DEFAULT_RUN["group_by_video"]
    sampling = DEFAULT_RUN["train_sampling"]
    t0 = time.perf_counter()
    train_ds = load_synthetic_videoqa("train")
    config = load_preset(DEFAULT_RUN["preset"])
    tokenizer = build_wordpiece_tokenizer(vocabulary_words(train_ds))
    match_config_to_tokenizer(config, tokenizer)
    processor = MCGProcessor(video_processor=video_processor_for(config.vision_config), tokenizer=tokenizer)
    model = MCGForVideoQuestionAnswering(config)
    print(f"synthetic set and model ready in {time.perf_counter() - t0:.0f} s", flush=True)
    collator = VideoQACollator(processor, sampling, cache_clips=DEFAULT_RUN["cache_clips"])
    video = processor.video_processor
    size = f"{video.size.height}x{video.size.width}" if getattr(video.size, "height", None) else str(video.size)
    num_videos = len(set(train_ds["video"]))
    print(f"default run: {DEFAULT_RUN['preset']}, {video.num_frames} frames of {size} px, "
          f"sampling {sampling}, cache_clips {DEFAULT_RUN['cache_clips']}, group_by_video {grouped}, batch {batch_size}, "
          f"{default_workers} worker(s), {run_threads} training threads; {len(train_ds)} training questions on "
          f"{num_videos} videos", flush=True)  # fmt: skip

    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    long_path = write_h264(cache / f"long_{minutes}min_640x360_gop250.mp4", minutes * 60, 640, 360, 30, LONG_GOP)
    print(f"long clip ready in {time.perf_counter() - t0:.0f} s", flush=True)
    long_ds = long_video_rows(train_ds, long_path, batch_size * long_batches)

    # the default model's train step (Trainer's default optimizer: fused AdamW) on real batches
    model.to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=DEFAULT_RUN["learning_rate"], weight_decay=DEFAULT_RUN["weight_decay"], fused=True
    )

    def train_step(batch):
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        inputs = {k: v for k, v in inputs.items() if k not in ("num_skipped_videos", "num_skipped_questions", "meta")}
        optimizer.zero_grad(set_to_none=True)
        model(**inputs).loss.backward()  # with video_index: each distinct video encoded once
        optimizer.step()
        sync(device)

    first_order = training_order(train_ds, grouped, seed=0)
    fixed = collator([train_ds[i] for i in first_order[:batch_size]])
    fixed_videos = int(fixed["pixel_values_videos"].shape[0])
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for _ in range(2):
            train_step(fixed)  # warm-up

    # (label, kind, dataset, grouped order, batches, workers, threads): every configuration once per repetition
    synthetic, long_label = "synthetic", f"long {minutes}-min 640x360"
    configs = [("–", "train step alone", None, None, batches, None, t) for t in thread_counts]
    configs += [(synthetic, "loader", train_ds, grouped, batches, w, None) for w in WORKERS]
    configs += [
        (synthetic, "loader + train", train_ds, grouped, batches, w, t) for t in thread_counts for w in WORKERS
    ]
    # one distinct video per row: the order does not change what a batch decodes; Trainer's shuffle, as off synthetic
    configs += [(long_label, "loader", long_ds, False, long_batches, w, None) for w in WORKERS]
    raw = {i: [] for i in range(len(configs))}
    for rep in range(reps):
        order = list(range(len(configs)))
        order = order[rep % len(order) :] + order[: rep % len(order)]
        for i in order:
            label, kind, dataset, group, n, workers, threads = configs[i]
            torch.set_num_threads(threads or run_threads)
            if kind == "train step alone":
                result = run_steps(train_step, fixed, n)
            else:
                step = train_step if kind == "loader + train" else None
                rows_order = training_order(dataset, group, seed=rep)
                result = run_loader(dataset, collator, batch_size, workers, n, rows_order, train_step=step)
            raw[i].append(result)
            print(
                f"  rep {rep} {label} {kind} workers={workers} threads={threads}: "
                f"{result['questions_per_s']:.1f} questions/s, {result['videos_per_s']:.1f} videos/s, "
                f"{result['s_per_batch'] * 1000:.0f} ms/batch",
                flush=True,
            )
    torch.set_num_threads(run_threads)

    rows = []
    for i, (label, kind, _, group, n, workers, threads) in enumerate(configs):
        rows.append({
            "source": label, "mode": kind, "workers": workers, "threads": threads, "batches": n,
            "order": None if group is None else ("VideoGroupedSampler" if group else "shuffle"),
            "median": median_of(raw[i]), "runs": raw[i],
        })  # fmt: skip
    steps = {row["threads"]: row["median"]["questions_per_s"] for row in rows if row["mode"] == "train step alone"}
    for row in rows:
        row["step_questions_per_s_over_this"] = steps[run_threads] / row["median"]["questions_per_s"]
    report = table(rows, steps, run_threads, batch_size, default_workers)
    print("\n" + report)
    results = {
        "command": command_line("bench_dataloader.py", args.quick, argv),
        "quick": args.quick,
        "repetitions": reps,
        "default_run": {
            "model": DEFAULT_RUN["preset"],
            "num_frames": video.num_frames,
            "size": size,
            "sampling": sampling,
            "cache_clips": DEFAULT_RUN["cache_clips"],
            "group_by_video": grouped,
            "batch_size": batch_size,
            "dataloader_num_workers": default_workers,
            "training_threads": run_threads,
            "training_questions": len(train_ds),
            "training_videos": num_videos,
        },
        "fixed_batch": {"questions": int(fixed["video_index"].shape[0]), "videos": fixed_videos},
        "thread_counts": thread_counts,
        "long_video": {
            "minutes": minutes,
            "size": "640x360",
            "codec": "h264",
            "x264_params": LONG_GOP,
            "rows": "one symbolic link per row: a distinct video per question",
        },
        "OMP_NUM_THREADS_given": omp_env,
        "environment": env,
        "load_average_end": os.getloadavg(),
        "train_step_questions_per_s": steps,
        "rows": rows,
        "wall_s": round(time.perf_counter() - start, 1),
        "table": report,
    }
    write_results(results, "dataloader", args.quick, args.output)
    return results


def table(rows: list[dict], steps: dict, run_threads: int, batch_size: int, default_workers: int) -> str:
    step = steps[run_threads]
    lines = [
        f"| videos | mode | workers | training threads | questions/s | videos decoded/s | videos per batch of "
        f"{batch_size} | s per batch | train step alone ({run_threads} threads) is x faster | first batch s | "
        "CPU s per batch (all processes) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        med = row["median"]
        is_step = row["mode"] == "train step alone"
        workers = "–" if row["workers"] is None else str(row["workers"])
        if row["workers"] == default_workers and not is_step:
            workers += " (default)"
        threads = "–" if row["threads"] is None else str(row["threads"])
        if row["threads"] == run_threads:
            threads += " (default)"
        decoded = "–" if is_step else f"{med['videos_per_s']:.1f}"
        lines.append(
            f"| {row['source']} | {row['mode']} | {workers} | {threads} | {med['questions_per_s']:.1f} | {decoded} | "
            f"{med['videos_per_batch']:.1f} | {med['s_per_batch']:.3f} | {step / med['questions_per_s']:.2f}x | "
            f"{med['first_batch_s']:.2f} | {med['cpu_s_per_batch']:.3f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# Streamed shards against files (`--shards`)
# --------------------------------------------------------------------------------------------------------------
# The same 640x360 H.264 clips read three ways, each decoded to 8 frames and resized to 224x224 by MCGVideoProcessor
# in the DataLoader workers: from files (a map-style dataset of paths, shuffled), from WebDataset tar shards and from
# Parquet shards of 4 MB (ShardedVideoDataset, shuffle buffer 16, video bytes decoded in memory). Each configuration runs
# once per repetition in a rotated order; medians. The rate covers the whole pass, worker start-up included.
#
#     python benchmarks/bench_dataloader.py --shards            # 5 repetitions, 32 clips of 8 s (about 5 min)
#     python benchmarks/bench_dataloader.py --shards --quick    # 3 repetitions, 16 clips


class FileClips(torch.utils.data.Dataset):
    def __init__(self, paths: list[str], captions: list[str]):
        self.paths, self.captions = paths, captions

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.paths[i], "caption": self.captions[i]}


class ClipCollator:
    """What the pretraining collator does to the videos: sample 8 frames, resize and crop to 224 px."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, rows: list[dict]) -> dict:
        pixels = self.processor([row["video"] for row in rows], sampling="uniform", return_tensors="pt")
        return {"pixel_values_videos": pixels["pixel_values_videos"], "captions": [row["caption"] for row in rows]}


def write_shard_clips(cache: Path, count: int, distinct: int = 8, seconds: float = 8.0) -> tuple[Path, list[str]]:
    """`count` clips (copies of `distinct` encodes at x264's defaults, 30 fps) and a caption csv listing them."""
    import shutil

    folder = cache / f"shard_clips_{count}"
    folder.mkdir(parents=True, exist_ok=True)
    encodes = [
        write_h264(cache / f"clip_{seconds:g}s_640x360_{i}.mp4", seconds + i / 10, 640, 360, 30, None)
        for i in range(distinct)
    ]
    names = []
    for i in range(count):
        name = f"{i:05d}.mp4"
        if not (folder / name).exists():
            shutil.copyfile(encodes[i % distinct], folder / name)
        names.append(name)
    lines = ["video,caption"] + [f"{name},clip number {i}" for i, name in enumerate(names)]
    (folder / "captions.csv").write_text("\n".join(lines) + "\n")
    return folder, names


def run_clip_loader(loader, clips: int) -> dict:
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    seen = 0
    for batch in loader:
        seen += int(batch["pixel_values_videos"].shape[0])
    wall = time.perf_counter() - wall0
    if seen != clips:
        raise RuntimeError(f"the loader gave {seen} clips, expected {clips}")
    return {"clips": seen, "wall_s": wall, "clips_per_s": seen / wall, "cpu_s_per_clip": (cpu_seconds() - cpu0) / seen}


def shards_main(argv: list[str] | None = None) -> dict:
    from modeling_mcg import MCGVideoProcessor
    from modeling_mcg.data.shards import ShardedVideoDataset, convert_caption_file, shard_dataloader

    parser = argparse.ArgumentParser(description="clips/s from tar and Parquet shards against files")
    parser.add_argument("--shards", action="store_true", required=True)
    parser.add_argument("--quick", action="store_true", help="3 repetitions, 32 clips")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5, --quick 3)")
    parser.add_argument("--clips", type=int, default=None, help="clips per pass (default 32, --quick 16)")
    parser.add_argument("--workers", default="1,2", help="DataLoader workers to compare, comma-separated")
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "modeling_mcg_bench"))
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/dataloader_shards.json)")
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 5)
    clips = args.clips or (16 if args.quick else 32)
    workers = [int(w) for w in args.workers.split(",")]
    batch_size = 8
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)  # the workers decode; each keeps to one core as on a shared node
    start, load_start = time.perf_counter(), os.getloadavg()

    cache = Path(args.cache_dir)
    t0 = time.perf_counter()
    folder, names = write_shard_clips(cache, clips)
    shard_dirs = {}
    for fmt in ("webdataset", "parquet"):
        out = folder / f"shards_{fmt}_4MB"
        if not (out / "index.json").exists():
            if out.exists():
                import shutil

                shutil.rmtree(out)
            convert_caption_file(folder / "captions.csv", out, format=fmt, max_shard_bytes="4MB", progress=False)
        shard_dirs[fmt] = out
    shard_count = {fmt: len(list(d.glob("shard-*"))) for fmt, d in shard_dirs.items()}
    print(f"{clips} clips and their shards ready in {time.perf_counter() - t0:.0f} s ({shard_count})", flush=True)

    processor = MCGVideoProcessor(
        num_frames=8, size={"height": 224, "width": 224}, crop_size={"height": 224, "width": 224}
    )
    collator = ClipCollator(processor)
    files = FileClips([str(folder / name) for name in names], [f"clip number {i}" for i in range(clips)])

    def make_loader(source: str, num_workers: int, rep: int):
        if source == "files":
            order = torch.randperm(clips, generator=torch.Generator().manual_seed(rep)).tolist()
            return DataLoader(
                files, batch_size=batch_size, sampler=order, collate_fn=collator, num_workers=num_workers
            )
        dataset = ShardedVideoDataset(shard_dirs[source], shuffle_buffer=16, seed=rep)
        return shard_dataloader(dataset, batch_size, collator, num_workers=num_workers)

    configs = [(source, w) for w in workers for source in ("files", "webdataset", "parquet")]
    raw = {config: [] for config in configs}
    for rep in range(reps):
        order = configs[rep % len(configs) :] + configs[: rep % len(configs)]
        for source, w in order:
            result = run_clip_loader(make_loader(source, w, rep), clips)
            raw[(source, w)].append(result)
            print(f"  rep {rep} {source} workers={w}: {result['clips_per_s']:.2f} clips/s", flush=True)

    rows = []
    for source, w in configs:
        med = {k: statistics.median(r[k] for r in raw[(source, w)]) for k in ("clips_per_s", "cpu_s_per_clip")}
        files = {k: statistics.median(r[k] for r in raw[("files", w)]) for k in ("clips_per_s", "cpu_s_per_clip")}
        rows.append({"source": source, "workers": w, "median": med, "runs": raw[(source, w)],
                     "over_files": med["clips_per_s"] / files["clips_per_s"],
                     "cpu_over_files": files["cpu_s_per_clip"] / med["cpu_s_per_clip"]})  # fmt: skip
    # On a shared machine the wall-clock rate depends on the other jobs; CPU time per clip does not, and one
    # worker on a free core reads 1 / (CPU s per clip) clips per second.
    lines = [
        "| source | workers | clips/s | clips/s per worker | vs files | CPU s per clip (all processes) | "
        "clips per CPU-second | vs files |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {"files": "files (paths)", "webdataset": "WebDataset tar shards", "parquet": "Parquet shards"}
    for row in rows:
        med = row["median"]
        lines.append(
            f"| {labels[row['source']]} | {row['workers']} | {med['clips_per_s']:.2f} | "
            f"{med['clips_per_s'] / row['workers']:.2f} | {row['over_files']:.2f}x | {med['cpu_s_per_clip']:.3f} | "
            f"{1 / med['cpu_s_per_clip']:.2f} | {row['cpu_over_files']:.2f}x |"
        )
    report = "\n".join(lines)
    print("\n" + report)
    results = {
        "command": command_line("bench_dataloader.py", args.quick, argv),
        "repetitions": reps,
        "clips": clips,
        "clip": "640x360 H.264 (x264 defaults, 30 fps, 8.0-8.7 s), 8 frames uniform, 224x224, batch 8",
        "shards": shard_count,
        "environment": environment(torch.device("cpu")),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "rows": rows,
        "wall_s": round(time.perf_counter() - start, 1),
        "table": report,
    }
    write_results(results, "dataloader_shards", args.quick, args.output)
    return results


if __name__ == "__main__":
    if "--shards" in sys.argv[1:]:
        shards_main()
    else:
        main()
