"""Speed and peak memory of our video encoder (`MCGVisionModel`) against transformers' `TimesformerModel`.

Both encoders have the same sizes and the same weights: a randomly initialised (and perturbed) `TimesformerModel`,
converted with `convert_timesformer_state_dict`, and they see the same clips. transformers' model only runs the frame
count it was configured with, so every frame count gets its own pair. Before anything is timed, for every frame
count, the outputs must agree to 1e-4 (after reordering transformers' time-fastest tokens into our frame-major order)
and every parameter gradient of one forward+backward must agree to 1e-4 relative to the largest gradient of its
tensor (transformers' gradients mapped onto ours with the same converter; key biases are left out: their gradient
is zero in exact arithmetic, so only rounding noise is left to compare). Our encoder runs with
`temporal_pooling="none"` (every token, like transformers' output) and SDPA attention, the default.

Measured for every frame count t (4, 8, 16, 32):
- **forward**: `model(clips)` under `torch.inference_mode()`, model in eval mode;
- **forward+backward**: `zero_grad(set_to_none=True)`, forward, `mean(last_hidden_state ** 2)` (a loss that does not
  depend on the token order), backward into every parameter; model in train mode (dropout and stochastic depth are 0,
  so both modes compute the same function).
Every repetition runs all (encoder, frame count, mode) cells in a rotated order so that load from other jobs hits
them alike; tables show medians of wall-clock and process-CPU time (CPU time is what other jobs on a shared machine
disturb least; on CUDA only wall time means anything). Throughput is clips per second; "ratio" is ours / transformers.

Peak memory of one step:
- CUDA: `torch.cuda.max_memory_allocated()` minus the memory allocated before the step (after a warm-up step).
- CPU: a fresh subprocess per (encoder, t, mode) builds the model, runs one warm-up step, frees everything it can
  (`gc.collect()`, glibc `malloc_trim(0)`), then measures one step two ways:
  * **tensor peak** (the number the targets use): the highest total of live bytes from torch's CPU allocator during
    the step, relative to its start, read from `torch.profiler` allocation/free events (`profile_memory=True`); the
    CPU counterpart of `max_memory_allocated`;
  * **RSS peak**: the process's peak resident set size during the step minus its resident size at the start (the
    kernel's high-water mark is reset through `/proc/self/clear_refs` first); it includes allocator behaviour
    (glibc keeps and reuses freed chunks), so it is noisier, but it is what the operating system sees.

Sizes: the default `cpu-small` preset is a TimeSformer 384 wide, 6 layers, 6 heads, MLP 1536, 112 px frames and
16 px patches (49 patches per frame), batch 2; `--preset mcg-base` uses the vision sizes of `hub_configs/mcg-base.json`
(TimeSformer-B/16, 768 wide, 12 layers) and `--image_size` overrides the resolution.

Targets, for ours against transformers: throughput ratio ≥ 1.3 and tensor peak ≤ transformers' at every frame count
(both modes), and time(32) / time(8) ≤ 4.5.

    OMP_NUM_THREADS=1 python benchmarks/bench_encoder.py           # CPU, 7 repetitions: benchmarks/results/encoder.json
    OMP_NUM_THREADS=1 python benchmarks/bench_encoder.py --quick   # 3 repetitions: encoder_quick.json
    python benchmarks/bench_encoder.py --preset mcg-base --image_size 224 --dtype bf16 --batch_size 8   # a GPU:
                                                                   # encoder_mcg-base_bf16.json
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

import transformers  # noqa: E402
from report import write_results  # noqa: E402
from transformers import TimesformerConfig, TimesformerModel  # noqa: E402

from modeling_mcg import MCGConfig  # noqa: E402
from modeling_mcg.convert_hf_checkpoints import VISION_PREFIX, convert_timesformer_state_dict  # noqa: E402
from modeling_mcg.modeling_mcg import MCGVisionModel  # noqa: E402

SIZE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "image_size",
    "patch_size",
)
PRESETS = {
    "cpu-small": dict(
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=6,
        intermediate_size=1536,
        image_size=112,
        patch_size=16,
    ),
}
IMPLS = ("ours", "transformers")
MODES = ("forward", "forward+backward")
TOLERANCE = 1e-4
TARGETS = {"throughput_ratio_min": 1.3, "memory_ratio_max": 1.0, "scaling_32_over_8_max": 4.5}
# the question encoder and decoder are not built here; MCGConfig still wants valid sub-configs and token ids
_TEXT = dict(vocab_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32)
_TOKENS = dict(
    pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, enc_token_id=3, mask_token_id=4
)


def preset_sizes(name: str, image_size: int | None) -> dict:
    if name == "mcg-base":
        vision = json.loads((REPO / "hub_configs" / "mcg-base.json").read_text())["vision_config"]
        sizes = {key: vision[key] for key in SIZE_KEYS}
    else:
        sizes = dict(PRESETS[name])
    if image_size:
        sizes["image_size"] = image_size
    return sizes


# ----------------------------------------------------------------------------------------------------------------
# The two encoders
# ----------------------------------------------------------------------------------------------------------------


def build_transformers(sizes: dict, frames: int, seed: int = 0) -> TimesformerModel:
    config = TimesformerConfig(
        **sizes,
        num_frames=frames,
        attention_type="divided_space_time",
        layer_norm_eps=1e-6,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        drop_path_rate=0,  # typed int in TimesformerConfig
    )
    torch.manual_seed(seed)
    model = TimesformerModel(config)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # move every weight off its init (zeros, ones) so a swapped key cannot hide
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    return model


def ours_config(sizes: dict, frames: int) -> MCGConfig:
    vision = dict(
        sizes, num_frames=frames, temporal_pooling="none", drop_path_rate=0.0, layer_norm_eps=1e-6, qkv_bias=True
    )
    config = MCGConfig(vision_config=vision, question_config=_TEXT, decoder=_TEXT, **_TOKENS)
    config._attn_implementation = "sdpa"  # what MCGModel / from_pretrained pick by default
    return config


def build_ours(sizes: dict, frames: int, source: TimesformerModel) -> MCGVisionModel:
    config = ours_config(sizes, frames)
    model = MCGVisionModel(config)
    converted = convert_timesformer_state_dict(source.state_dict(), config)
    model.load_state_dict({key[len(VISION_PREFIX) :]: value for key, value in converted.items()}, strict=True)
    return model


def last_hidden_state(model, clips: torch.Tensor) -> torch.Tensor:
    return model(clips).last_hidden_state


def to_frame_major(states: torch.Tensor, frames: int) -> torch.Tensor:
    """transformers orders the patch tokens (patch, frame) with time fastest; ours frame by frame."""
    b, _, d = states.shape
    patches = states[:, 1:].reshape(b, -1, frames, d).transpose(1, 2).reshape(b, -1, d)  # (b, t n, d)
    return torch.cat([states[:, :1], patches], dim=1)


def loss_of(states: torch.Tensor) -> torch.Tensor:
    return states.float().square().mean()  # token-order free, so both encoders get the same loss


@contextlib.contextmanager
def exact_fp32(device: torch.device):
    """No TF32 while checking equality on CUDA (cuDNN convolutions use it by default)."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def check_equal(ours, theirs, clips: torch.Tensor, frames: int, config: MCGConfig, device: torch.device) -> dict:
    """Outputs (after reordering) and all parameter gradients must agree; raises before any timing otherwise."""
    with exact_fp32(device):
        ours.eval(), theirs.eval()
        with torch.inference_mode():
            output_diff = last_hidden_state(ours, clips) - to_frame_major(last_hidden_state(theirs, clips), frames)
            output_diff = output_diff.abs().max().item()
        ours.train(), theirs.train()
        for model in (ours, theirs):
            model.zero_grad(set_to_none=True)
            loss_of(last_hidden_state(model, clips)).backward()
    their_grads = {name: p.grad for name, p in theirs.named_parameters()}
    mapped = {
        key[len(VISION_PREFIX) :]: value for key, value in convert_timesformer_state_dict(their_grads, config).items()
    }
    grad_diff, worst = 0.0, None
    for name, parameter in ours.named_parameters():
        if name.endswith("k_proj.bias"):
            continue  # exactly zero in exact arithmetic (softmax ignores a per-query constant): rounding noise only
        reference = mapped[name]
        diff = ((parameter.grad - reference).abs().max() / reference.abs().max().clamp_min(1e-12)).item()
        if diff > grad_diff:
            grad_diff, worst = diff, name
    for model in (ours, theirs):
        model.zero_grad(set_to_none=True)
    if not (output_diff <= TOLERANCE and grad_diff <= TOLERANCE):
        raise AssertionError(
            f"t={frames}: encoders disagree (output max abs diff {output_diff:.2e}, gradient max relative diff "
            f"{grad_diff:.2e} in {worst}); nothing was timed."
        )
    return {"output_max_abs_diff": output_diff, "grad_max_rel_diff": grad_diff, "grad_worst_parameter": worst}


# ----------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------


def autocast_context(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_step(model, clips: torch.Tensor, mode: str, device: torch.device, dtype: str):
    """One timed unit; sets the model's train/eval mode for it (outside the timed region)."""
    if mode == "forward":

        def step():
            with torch.inference_mode(), autocast_context(device, dtype):
                last_hidden_state(model, clips)

        prepare = model.eval
    else:

        def step():
            model.zero_grad(set_to_none=True)
            with autocast_context(device, dtype):
                states = last_hidden_state(model, clips)
            loss_of(states).backward()

        prepare = model.train
    return prepare, step


def timed(prepare, step, device: torch.device) -> tuple[float, float]:
    """Wall and process-CPU milliseconds of one step (CUDA: synchronised before and after)."""
    prepare()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def cuda_peak_memory(prepare, step, model, device: torch.device) -> dict:
    prepare()
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    model.zero_grad(set_to_none=True)
    return {"tensor_peak_mb": peak / 2**20, "rss_peak_mb": None}


# ----------------------------------------------------------------------------------------------------------------
# CPU peak memory: one fresh process per (encoder, frame count, mode)
# ----------------------------------------------------------------------------------------------------------------


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _tensor_peak_bytes(step) -> int:
    """Highest total of live CPU-allocator bytes during `step`, relative to its start (torch.profiler events)."""
    from torch.autograd import DeviceType

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == DeviceType.CPU
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def memory_worker(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    device = torch.device("cpu")
    sizes, frames = spec["sizes"], spec["frames"]
    theirs = build_transformers(sizes, frames)
    model = build_ours(sizes, frames, theirs) if spec["impl"] == "ours" else theirs
    del theirs
    clips = torch.randn(spec["batch_size"], frames, 3, sizes["image_size"], sizes["image_size"])
    prepare, step = make_step(model, clips, spec["mode"], device, spec["dtype"])
    prepare()
    step()  # warm-up: one-off allocations (oneDNN primitives, thread pool) stay out of the measurement
    model.zero_grad(set_to_none=True)  # gradients are allocated inside the measured step
    gc.collect()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)  # give freed heap pages back, so reusing them inside the step counts as growth
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset the peak resident set size (VmHWM) to the current one
    base = _proc_status_bytes("VmRSS")
    step()
    rss_peak = _proc_status_bytes("VmHWM") - base
    model.zero_grad(set_to_none=True)
    gc.collect()
    tensor_peak = _tensor_peak_bytes(step)
    return {"tensor_peak_mb": tensor_peak / 2**20, "rss_peak_mb": rss_peak / 2**20}


def cpu_peak_memory(impl: str, frames: int, mode: str, sizes: dict, args) -> dict:
    spec = dict(
        impl=impl, frames=frames, mode=mode, sizes=sizes, batch_size=args.batch_size, dtype=args.dtype,
        threads=torch.get_num_threads(),
    )  # fmt: skip
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", json.dumps(spec)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------


def summarise(cells: dict, batch_size: int) -> dict:
    for cell in cells.values():
        cell["median_wall_ms"] = statistics.median(cell["wall_ms"])
        cell["median_cpu_ms"] = statistics.median(cell["cpu_ms"])
        cell["clips_per_s"] = batch_size / (cell["median_wall_ms"] / 1000)
    return cells


def build_rows(cells: dict, memory: dict, frame_counts: list[int], tokens: dict) -> list[dict]:
    rows = []
    for mode in MODES:
        for frames in frame_counts:
            ours, theirs = cells[("ours", frames, mode)], cells[("transformers", frames, mode)]
            mem_ours, mem_theirs = memory.get(("ours", frames, mode)), memory.get(("transformers", frames, mode))
            row = {
                "mode": mode,
                "frames": frames,
                "tokens": tokens[frames],
                "ours_ms": ours["median_wall_ms"],
                "transformers_ms": theirs["median_wall_ms"],
                "ours_cpu_ms": ours["median_cpu_ms"],
                "transformers_cpu_ms": theirs["median_cpu_ms"],
                "ours_clips_per_s": ours["clips_per_s"],
                "transformers_clips_per_s": theirs["clips_per_s"],
                "throughput_ratio": theirs["median_wall_ms"] / ours["median_wall_ms"],
                "cpu_throughput_ratio": theirs["median_cpu_ms"] / ours["median_cpu_ms"],
            }
            if mem_ours and mem_theirs:
                row["ours_peak_mb"] = mem_ours["tensor_peak_mb"]
                row["transformers_peak_mb"] = mem_theirs["tensor_peak_mb"]
                row["memory_ratio"] = mem_ours["tensor_peak_mb"] / mem_theirs["tensor_peak_mb"]
                row["ours_rss_peak_mb"] = mem_ours["rss_peak_mb"]
                row["transformers_rss_peak_mb"] = mem_theirs["rss_peak_mb"]
            row["meets_throughput"] = row["throughput_ratio"] >= TARGETS["throughput_ratio_min"]
            row["meets_memory"] = row.get("memory_ratio", 0.0) <= TARGETS["memory_ratio_max"]
            rows.append(row)
    return rows


def scaling(cells: dict, frame_counts: list[int]) -> dict:
    out = {}
    if 8 in frame_counts and 32 in frame_counts:
        for impl in IMPLS:
            for mode in MODES:
                for kind in ("wall", "cpu"):
                    key = f"median_{kind}_ms"
                    ratio = cells[(impl, 32, mode)][key] / cells[(impl, 8, mode)][key]
                    out[f"{impl} {mode} {kind}"] = ratio
    return out


def _mb(value) -> str:
    return "–" if value is None else f"{value:.0f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| mode | frames | tokens | ours ms | transformers ms | ours clips/s | transformers clips/s | ratio (wall) | "
        "ratio (CPU) | peak MB ours / transformers (ratio) | RSS peak MB ours / transformers | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        memory = "–"
        if "memory_ratio" in row:
            memory = f"{row['ours_peak_mb']:.0f} / {row['transformers_peak_mb']:.0f} ({row['memory_ratio']:.2f})"
        rss = f"{_mb(row.get('ours_rss_peak_mb'))} / {_mb(row.get('transformers_rss_peak_mb'))}"
        verdict = []
        verdict.append("speed ok" if row["meets_throughput"] else "speed MISSED")
        if "memory_ratio" in row:
            verdict.append("memory ok" if row["meets_memory"] else "memory MISSED")
        lines.append(
            f"| {row['mode']} | {row['frames']} | {row['tokens']} | {row['ours_ms']:.0f} | {row['transformers_ms']:.0f} "
            f"| {row['ours_clips_per_s']:.2f} | {row['transformers_clips_per_s']:.2f} | {row['throughput_ratio']:.2f} "
            f"| {row['cpu_throughput_ratio']:.2f} | {memory} | {rss} | {', '.join(verdict)} |"
        )
    return "\n".join(lines)


def environment(device: torch.device, args) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "device": str(device),
        "dtype": args.dtype,
        "load_average_start": os.getloadavg(),
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            env["cpu_model"] = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 7 (same cells)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per cell (default 7, --quick 3)")
    parser.add_argument("--preset", choices=["cpu-small", "mcg-base"], default="cpu-small")
    parser.add_argument("--image_size", type=int, default=None, help="override the preset's frame size")
    parser.add_argument("--frames", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--batch_size", type=int, default=2, help="clips per step")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast for both encoders")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: OMP_NUM_THREADS or 1)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument(
        "--output",
        default=None,
        help="JSON path (default benchmarks/results/encoder[_PRESET][_DTYPE][_quick].json; preset and dtype only "
        "when not the defaults)",
    )
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_worker:  # internal: one CPU peak-memory measurement in a fresh process
        print(json.dumps(memory_worker(json.loads(args.memory_worker))))
        return {}

    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    reps = args.reps or (3 if args.quick else 7)
    sizes = preset_sizes(args.preset, args.image_size)
    frame_counts = sorted(set(args.frames))
    grid = (sizes["image_size"] // sizes["patch_size"]) ** 2
    tokens = {frames: 1 + frames * grid for frames in frame_counts}
    env = environment(device, args)
    print(f"{args.preset} {sizes}, batch {args.batch_size}, {args.dtype}, {device}, {threads} thread(s), {reps} reps")
    start = time.perf_counter()

    models, clips, checks = {}, {}, {}
    for frames in frame_counts:
        theirs = build_transformers(sizes, frames)
        ours = build_ours(sizes, frames, theirs)
        config = ours_config(sizes, frames)
        theirs, ours = theirs.to(device), ours.to(device)
        generator = torch.Generator().manual_seed(frames)
        clips[frames] = torch.randn(
            args.batch_size, frames, 3, sizes["image_size"], sizes["image_size"], generator=generator
        ).to(device)
        checks[frames] = check_equal(ours, theirs, clips[frames], frames, config, device)
        models[frames] = {"ours": ours, "transformers": theirs}
        print(
            f"t={frames}: outputs agree to {checks[frames]['output_max_abs_diff']:.1e}, gradients to "
            f"{checks[frames]['grad_max_rel_diff']:.1e} (relative)",
            flush=True,
        )
        if args.dtype == "bf16":  # information only: bf16 rounding is far above the fp32 tolerance
            with torch.inference_mode(), autocast_context(device, args.dtype):
                ours.eval(), theirs.eval()
                diff = last_hidden_state(ours, clips[frames]).float() - to_frame_major(
                    last_hidden_state(theirs, clips[frames]).float(), frames
                )
            checks[frames]["bf16_output_max_abs_diff"] = diff.abs().max().item()

    steps = {}
    for frames in frame_counts:
        for impl in IMPLS:
            for mode in MODES:
                steps[(impl, frames, mode)] = make_step(models[frames][impl], clips[frames], mode, device, args.dtype)
    for prepare, step in steps.values():  # warm-up (the checks above ran in fp32)
        prepare()
        step()
    cells = {key: {"wall_ms": [], "cpu_ms": []} for key in steps}
    order = list(steps)
    for rep in range(reps):
        shift = (rep * len(order)) // reps
        for key in order[shift:] + order[:shift]:  # rotate: no cell always runs first or after the same one
            wall, cpu = timed(*steps[key], device)
            cells[key]["wall_ms"].append(wall)
            cells[key]["cpu_ms"].append(cpu)
        print(f"repetition {rep + 1}/{reps} done at {time.perf_counter() - start:.0f} s", flush=True)
    summarise(cells, args.batch_size)

    memory = {}
    if not args.no_memory:
        for frames in frame_counts:
            for mode in MODES:
                for impl in IMPLS:
                    key = (impl, frames, mode)
                    if device.type == "cuda":
                        prepare, step = steps[key]
                        memory[key] = cuda_peak_memory(prepare, step, models[frames][impl], device)
                    else:
                        memory[key] = cpu_peak_memory(impl, frames, mode, sizes, args)
            print(f"memory t={frames} done at {time.perf_counter() - start:.0f} s", flush=True)

    rows = build_rows(cells, memory, frame_counts, tokens)
    scale = scaling(cells, frame_counts)
    report = table(rows)
    print("\n" + report)
    for name, ratio in scale.items():
        print(f"time(32)/time(8) {name}: {ratio:.2f}")
    verdict = {
        "throughput": all(row["meets_throughput"] for row in rows),
        "memory": all(row["meets_memory"] for row in rows) if memory else None,
        "scaling": all(v <= TARGETS["scaling_32_over_8_max"] for k, v in scale.items() if k.startswith("ours"))
        if scale
        else None,
    }
    print(f"targets met: {verdict}")

    command = "python benchmarks/bench_encoder.py" + (" --quick" if args.quick else "")
    for flag, value, default in [
        ("--reps", args.reps, None), ("--preset", args.preset, "cpu-small"), ("--image_size", args.image_size, None),
        ("--batch_size", args.batch_size, 2), ("--dtype", args.dtype, "fp32"), ("--device", args.device, "auto"),
        ("--threads", args.threads, None),
    ]:  # fmt: skip
        if value != default:
            command += f" {flag} {value}"
    if frame_counts != [4, 8, 16, 32]:
        command += " --frames " + " ".join(map(str, frame_counts))
    env["load_average_end"] = os.getloadavg()
    results = {
        "command": command,
        "quick": args.quick,
        "repetitions": reps,
        "preset": args.preset,
        "sizes": sizes,
        "batch_size": args.batch_size,
        "frames": frame_counts,
        "environment": env,
        "targets": TARGETS,
        "targets_met": verdict,
        "checks": {str(frames): check for frames, check in checks.items()},
        "wall_s": round(time.perf_counter() - start, 1),
        "cells": [
            {"impl": impl, "frames": frames, "mode": mode, **cell} for (impl, frames, mode), cell in cells.items()
        ],
        "memory": [
            {"impl": impl, "frames": frames, "mode": mode, **value} for (impl, frames, mode), value in memory.items()
        ],
        "rows": rows,
        "time_32_over_8": scale,
        "table": report,
    }
    name = "encoder" + "".join(
        f"_{part}" for part, default in [(args.preset, "cpu-small"), (args.dtype, "fp32")] if part != default
    )
    write_results(results, name, args.quick, args.output)
    return results


if __name__ == "__main__":
    main()
