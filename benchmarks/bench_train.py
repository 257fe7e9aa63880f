"""Training-step time and peak memory of `MCGForVideoQuestionAnswering`: frames x resolution, gradient checkpointing
on/off, fp32 and bf16 autocast.

A step is what `Trainer` does per batch: `zero_grad(set_to_none=True)`, forward with labels (answer loss), backward,
fused AdamW step (`Trainer`'s default optimizer, `adamw_torch_fused`). Models, random weights and random inputs
(16 question tokens, 4 answer tokens):
- **mcg-tiny** (`hub_configs/mcg-tiny.json`, 0.4 M parameters) at the default training batch of 32, 32 and 64 px;
- **mid** (384 wide, 4 vision / 4 question / 2 fusion / 4 decoder layers, BERT vocabulary, 16 px patches, 55.6 M
  parameters; the model of bench_generate.py) at batch 8, 64 and 112 px.
Frames 4, 8, 16, 32 (the temporal embedding is interpolated).

Peak memory, per step, above the memory held just before the step (weights, AdamW states and the inputs; gradients
are freed by `zero_grad`), i.e. activations + gradients + temporaries:
- CPU: allocator accounting. `torch.profiler` with `profile_memory=True` records every allocation and free of
  PyTorch's CPU allocator with a timestamp; the running sum over one step gives the exact peak of live tensor bytes.
  The same accounting gives the bytes still live when the forward returns (what autograd saved for the backward)
  and the phase (forward, backward, optimizer) the peak falls in.
  Cross-check (`--rss-frames`): one fresh subprocess per cell with glibc's mmap threshold pinned at 128 KiB (so freed
  large buffers go back to the OS and RSS follows live memory), a warm-up step, then the peak RSS (VmHWM, reset
  through /proc/self/clear_refs) of one step minus the RSS before it. Also recorded: peak RSS of the whole process
  minus the RSS after the model build (adds the AdamW states), and the raw ru_maxrss, which is useless for this on
  Linux: a child started with fork+exec inherits the parent's peak RSS in ru_maxrss, so every cell reads the same.
- CUDA: `torch.cuda.max_memory_allocated()` minus `memory_allocated()` before the step.
Timing: every (checkpointing, precision) variant of a cell runs once per repetition in a rotated order after one
warm-up step each; medians of wall-clock and process-CPU time.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py          # every cell timed, 3 repetitions (~20 min, 1 core)
    OMP_NUM_THREADS=1 python benchmarks/bench_train.py --quick  # fp32 memory for every cell, 4 variants timed at
                                                                # 16 frames only, RSS cross-check fp32 only (~8 min)

`--shared-videos` times instead the fusor's forward+backward on questions that share videos, as in the grouped
batches of the synthetic run (mcg-tiny: 32 questions about 6 videos; mid: 8 about 2; 16 frames): the video states
passed once with `video_index`, so the cross-attention projects keys and values once per video, against the same
states repeated per question.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py --shared-videos --reps 30  # (~1 min)

`--tcl-loss` times `losses.token_contrastive_loss` forward+backward, today's against the one in `losses.py` at git
revision `--baseline`, on the tokens of those batches (one sample per question: mcg-tiny 32 x 256 video tokens,
mid 8 x 784; 12 words, 3 of them padding in half the samples; the models' projection sizes), and checks that both
give the same loss and gradients; then mcg-tiny's whole training step on that batch without TCL, with TCL by the
baseline's loss and with today's.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py --tcl-loss --reps 30  # (~1 min)
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import transformers  # noqa: E402
from bench_generate import (  # noqa: E402
    count_parameters,
    environment,
    interleaved,
    mid_config,
    pick_device,
    sync,
    tiny_config,
)
from report import command_line, module_at, write_results  # noqa: E402

from modeling_mcg import MCGForVideoQuestionAnswering  # noqa: E402

MODELS = {
    "mcg-tiny": {"batch": 32, "resolutions": (32, 64)},
    "mid": {"batch": 8, "resolutions": (64, 112)},
}
FRAMES = (4, 8, 16, 32)
VARIANTS = [(False, "fp32"), (True, "fp32"), (False, "bf16"), (True, "bf16")]  # (checkpointing, precision)
TARGETS = {"frames": 16, "memory_ratio": 2.0, "time_ratio": 1.4}
MIB = 2**20


def build(name: str, image_size: int, device: torch.device, frames: int = 8):
    torch.manual_seed(0)
    if name == "mcg-tiny":
        config = tiny_config()
        config.vision_config.image_size = image_size
        config.vision_config.num_frames = frames
    else:
        config = mid_config(image_size=image_size, num_frames=frames)
    model = MCGForVideoQuestionAnswering(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    return model, optimizer


def make_batch(config, batch: int, frames: int, image_size: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    vocab = config.decoder.vocab_size
    input_ids = torch.randint(7, vocab, (batch, 16), generator=g)
    input_ids[:, 0], input_ids[:, -1] = config.enc_token_id, config.eos_token_id
    labels = torch.randint(7, vocab, (batch, 4), generator=g)
    labels[:, -1] = config.eos_token_id
    inputs = dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        pixel_values_videos=torch.randn(batch, frames, 3, image_size, image_size, generator=g),
        labels=labels,
    )
    return {k: v.to(device) for k, v in inputs.items()}


def set_checkpointing(model, enabled: bool) -> None:
    """Per-layer activation checkpointing on or off (only on a change: enabling also registers embedding hooks)."""
    if getattr(model, "_bench_checkpointing", False) == enabled:
        return
    if enabled:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    else:
        disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
        disable()
    model._bench_checkpointing = enabled


def checkpointed_layers(model) -> dict:
    """How many of each component's layers will be recomputed in backward (per-layer checkpointing)."""
    parts = {
        "vision": model.mcg.vision_model.layers,
        "question": model.mcg.question_model.layers,
        "fusor": model.mcg.fusor.layers if model.mcg.fusor is not None else [],
        "decoder": model.decoder.layers,
    }
    return {
        name: f"{sum(bool(getattr(layer, 'gradient_checkpointing', False)) for layer in layers)}/{len(layers)}"
        for name, layers in parts.items()
    }


PHASES = ("mcg_forward", "mcg_backward", "mcg_optimizer")


def train_step(model, optimizer, inputs: dict, precision: str, device, after_forward=None) -> None:
    """One optimisation step; the phases are profiler ranges so the memory accounting can split them."""
    optimizer.zero_grad(set_to_none=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    with torch.profiler.record_function(PHASES[0]), autocast:
        loss = model(**inputs).loss
    if after_forward is not None:
        after_forward()
    with torch.profiler.record_function(PHASES[1]):
        loss.backward()
    with torch.profiler.record_function(PHASES[2]):
        optimizer.step()


def profiled_peak(step, device) -> dict:
    """Peak of live tensor bytes during `step()` above the bytes live when it starts; the bytes live when the forward
    returns (saved activations + outputs); the phase the peak falls in; what is left after the step (gradients)."""
    if device.type == "cuda":
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        after_forward = {}

        def snapshot():
            sync(device)
            after_forward["bytes"] = torch.cuda.memory_allocated(device) - before

        step(after_forward=snapshot)
        sync(device)
        return {
            "method": "torch.cuda.max_memory_allocated",
            "peak_mib": (torch.cuda.max_memory_allocated(device) - before) / MIB,
            "after_forward_mib": after_forward["bytes"] / MIB,
            "left_after_step_mib": (torch.cuda.memory_allocated(device) - before) / MIB,
        }
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    raw = prof.profiler.kineto_results.events()
    ranges = {e.name(): (e.start_ns(), e.end_ns()) for e in raw if e.name() in PHASES}
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in raw if e.name() == "[memory]" and e.device_type().name == "CPU"
    )
    live = peak = 0
    peak_at = after_forward = None
    forward_end = ranges.get(PHASES[0], (None, None))[1]
    for when, nbytes in events:
        if forward_end is not None and after_forward is None and when > forward_end:
            after_forward = live
        live += nbytes
        if live > peak:
            peak, peak_at = live, when
    phase = next((name for name, (a, b) in ranges.items() if peak_at is not None and a <= peak_at <= b), None)
    return {
        "method": "torch.profiler profile_memory (CPU allocator events)",
        "peak_mib": peak / MIB,
        "after_forward_mib": (after_forward if after_forward is not None else live) / MIB,
        "peak_phase": phase.removeprefix("mcg_") if phase else None,
        "left_after_step_mib": live / MIB,
        "allocator_events": len(events),
    }


# ----------------------------------------------------------------------------------------------------------------
# RSS cross-check: one fresh process per cell
# ----------------------------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_cell(spec: dict) -> dict:
    """Runs inside the fresh subprocess: build, warm up, then the peak RSS of one step."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    transformers.logging.set_verbosity_error()
    device = torch.device("cpu")
    model, optimizer = build(spec["model"], spec["resolution"], device)
    set_checkpointing(model, spec["checkpointing"])
    inputs = make_batch(model.config, spec["batch"], spec["frames"], spec["resolution"], device)
    gc.collect()
    rss_after_build = _status_kib("VmRSS")
    train_step(model, optimizer, inputs, spec["precision"], device)  # warm-up: allocates the AdamW states
    optimizer.zero_grad(set_to_none=True)
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    peak_so_far = _status_kib("VmHWM")  # build + warm-up step
    rss_before = _status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM (peak RSS) to the current RSS
        hwm_reset = True
    except OSError:
        hwm_reset = False
    train_step(model, optimizer, inputs, spec["precision"], device)
    hwm = _status_kib("VmHWM")
    result = {
        "rss_after_build_mib": rss_after_build / 1024,
        "rss_before_step_mib": rss_before / 1024,
        # the literal "peak RSS minus RSS after the model build": includes the AdamW states (warm-up step)
        "process_peak_minus_build_mib": (max(peak_so_far, hwm) - rss_after_build) / 1024,
        # ru_maxrss is NOT usable here: Linux carries the parent's peak RSS into a fork+exec'ed child
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if hwm_reset:
        result["step_peak_rss_mib"] = (hwm - rss_before) / 1024
    return result


def run_rss_cell(spec: dict) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    command = [sys.executable, str(Path(__file__).resolve()), "--_rss-cell", json.dumps(spec)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------------------------------


def bench_cell(
    model, optimizer, name, batch, frames, resolution, device, variants, reps, rss: bool, threads, quick: bool
) -> dict:
    inputs = make_batch(model.config, batch, frames, resolution, device)
    cell = {"model": name, "batch": batch, "frames": frames, "resolution": resolution, "device": str(device)}
    cell["variants"] = {}
    steps = {}
    for checkpointing, precision in variants:
        key = f"{'ckpt' if checkpointing else 'no ckpt'}, {precision}"

        def step(checkpointing=checkpointing, precision=precision, after_forward=None):
            set_checkpointing(model, checkpointing)
            train_step(model, optimizer, inputs, precision, device, after_forward)

        step()  # warm-up (kernels, autocast caches)
        optimizer.zero_grad(set_to_none=True)
        entry = {"checkpointing": checkpointing, "precision": precision, "memory": profiled_peak(step, device)}
        if checkpointing:
            entry["checkpointed_layers"] = checkpointed_layers(model)
        optimizer.zero_grad(set_to_none=True)
        if rss and device.type == "cpu" and (precision == "fp32" or not quick):
            entry["rss"] = run_rss_cell(
                {"model": name, "resolution": resolution, "batch": batch, "frames": frames,
                 "checkpointing": checkpointing, "precision": precision, "threads": threads}
            )  # fmt: skip
        cell["variants"][key] = entry
        steps[key] = step
    if reps:
        times = interleaved(steps, reps, device)
        for key, entry in cell["variants"].items():
            entry["time"] = times[key]
    set_checkpointing(model, False)
    optimizer.zero_grad(set_to_none=True)
    print(_cell_line(cell), flush=True)
    return cell


SHARED_VIDEOS = {
    "mcg-tiny": {"questions": 32, "videos": 6, "resolution": 32},
    "mid": {"questions": 8, "videos": 2, "resolution": 112},
}


def shared_videos_cell(name: str, device: torch.device, reps: int, frames: int = 16) -> dict:
    """Fusor forward+backward with each video's states once (`video_index`) against the states per question."""
    spec = SHARED_VIDEOS[name]
    model, _ = build(name, spec["resolution"], device, frames)
    config, mcg = model.config, model.mcg
    g = torch.Generator().manual_seed(0)
    tokens = 1 + frames * (spec["resolution"] // config.vision_config.patch_size) ** 2
    videos = torch.randn(spec["videos"], tokens, config.vision_config.hidden_size, generator=g)
    questions = torch.randn(spec["questions"], 16, config.question_config.hidden_size, generator=g)
    videos, questions = videos.to(device).requires_grad_(), questions.to(device).requires_grad_()
    video_mask = torch.ones(videos.shape[:2], dtype=torch.long, device=device)
    question_mask = torch.ones(questions.shape[:2], dtype=torch.long, device=device)
    index = torch.arange(spec["questions"], device=device) % spec["videos"]

    def per_question():
        model.zero_grad(set_to_none=True)
        fused, _ = mcg.fuse(questions, question_mask, videos[index], video_mask[index])
        fused.last_hidden_state.square().mean().backward()

    def per_video():
        model.zero_grad(set_to_none=True)
        fused, _ = mcg.fuse(questions, question_mask, videos, video_mask, video_index=index)
        fused.last_hidden_state.square().mean().backward()

    methods = {"per_question": per_question, "per_video": per_video}
    for method in methods.values():
        method()  # warm-up
    times = interleaved(methods, reps, device)
    question_ms, video_ms = times["per_question"]["median_wall_ms"], times["per_video"]["median_wall_ms"]
    return {
        "model": name,
        "device": str(device),
        **spec,
        "frames": frames,
        "video_tokens": tokens,
        "times": times,
        "speedup": question_ms / video_ms,
    }


def shared_videos_table(cells: list[dict]) -> str:
    lines = [
        "| model | device | questions / videos | video tokens | keys/values per question, ms | per video, ms | speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        t = c["times"]
        lines.append(
            f"| {c['model']} | {c['device']} | {c['questions']} / {c['videos']} | {c['video_tokens']} | "
            f"{t['per_question']['median_wall_ms']:.2f} | {t['per_video']['median_wall_ms']:.2f} | "
            f"{c['speedup']:.2f}x |"
        )
    return "\n".join(lines)


def _fmt_time(entry: dict) -> str:
    t = entry.get("time")
    return f"{t['median_wall_ms']:.0f} / {t['median_cpu_ms']:.0f}" if t else "–"


def _cell_line(cell: dict) -> str:
    parts = [f"{cell['model']} b{cell['batch']} {cell['frames']}f {cell['resolution']}px {cell['device']}:"]
    for key, entry in cell["variants"].items():
        rss = entry.get("rss", {}).get("step_peak_rss_mib")
        parts.append(
            f"[{key}] peak {entry['memory']['peak_mib']:.0f} MiB"
            + (f" (RSS {rss:.0f})" if rss is not None else "")
            + f", {_fmt_time(entry)} ms"
        )
    return " ".join(parts)


def memory_table(cells: list[dict], device: str, metric: str = "peak_mib") -> str:
    """frames x resolution -> MiB (fp32), checkpointing off / on (ratio)."""
    lines = []
    for name in MODELS:
        mine = [c for c in cells if c["model"] == name and c["device"] == device]
        if not mine:
            continue
        resolutions = sorted({c["resolution"] for c in mine})
        header = f"| {name}, batch {mine[0]['batch']}: frames | " + " | ".join(
            f"{r} px: no ckpt / ckpt MiB (ratio)" for r in resolutions
        )
        lines += [header + " |", "|---" * (1 + len(resolutions)) + "|"]
        for frames in sorted({c["frames"] for c in mine}):
            row = [str(frames)]
            for r in resolutions:
                cell = next((c for c in mine if c["frames"] == frames and c["resolution"] == r), None)
                off = cell and cell["variants"].get("no ckpt, fp32")
                on = cell and cell["variants"].get("ckpt, fp32")
                if off and on:
                    a, b = off["memory"][metric], on["memory"][metric]
                    row.append(f"{a:.0f} / {b:.0f} ({a / b:.2f}x)")
                else:
                    row.append("–")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def time_table(cells: list[dict]) -> str:
    header = (
        "| model | batch | frames | px | device | variant | step ms (wall / CPU) | vs no ckpt (wall / CPU) | "
        "peak MiB (allocator) | peak phase | peak MiB (RSS) | saved after forward MiB | peak ratio no ckpt / ckpt |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for cell in cells:
        if not any("time" in v for v in cell["variants"].values()):
            continue
        for key, entry in cell["variants"].items():
            base = cell["variants"].get(f"no ckpt, {entry['precision']}")
            slow = mem = "–"
            if entry["checkpointing"] and base and "time" in entry and "time" in base:
                w = entry["time"]["median_wall_ms"] / base["time"]["median_wall_ms"]
                c = entry["time"]["median_cpu_ms"] / base["time"]["median_cpu_ms"]
                slow = f"{w:.2f}x / {c:.2f}x"
                mem = f"{base['memory']['peak_mib'] / entry['memory']['peak_mib']:.2f}x"
            rss = entry.get("rss", {}).get("step_peak_rss_mib")
            m = entry["memory"]
            lines.append(
                f"| {cell['model']} | {cell['batch']} | {cell['frames']} | {cell['resolution']} | {cell['device']} | "
                f"{key} | {_fmt_time(entry)} | {slow} | {m['peak_mib']:.0f} | {m.get('peak_phase') or '–'} | "
                f"{f'{rss:.0f}' if rss is not None else '–'} | {m['after_forward_mib']:.0f} | {mem} |"
            )
    return "\n".join(lines)


def verdicts(cells: list[dict]) -> list[dict]:
    out = []
    for cell in cells:
        if cell["frames"] != TARGETS["frames"]:
            continue
        for precision in ("fp32", "bf16"):
            off, on = cell["variants"].get(f"no ckpt, {precision}"), cell["variants"].get(f"ckpt, {precision}")
            if not (off and on):
                continue
            verdict = {
                "model": cell["model"], "resolution": cell["resolution"], "device": cell["device"],
                "precision": precision,
                "memory_ratio": off["memory"]["peak_mib"] / on["memory"]["peak_mib"],
            }  # fmt: skip
            if "time" in off and "time" in on:
                verdict["time_ratio_wall"] = on["time"]["median_wall_ms"] / off["time"]["median_wall_ms"]
                verdict["time_ratio_cpu"] = on["time"]["median_cpu_ms"] / off["time"]["median_cpu_ms"]
                timing = verdict["time_ratio_cpu" if cell["device"] == "cpu" else "time_ratio_wall"]
                verdict["met"] = verdict["memory_ratio"] >= TARGETS["memory_ratio"] and timing <= TARGETS["time_ratio"]
            out.append(verdict)
    return out


def verdict_table(rows: list[dict]) -> str:
    lines = [
        "| model | px | device | precision | peak memory no ckpt / ckpt | step time ckpt / no ckpt (wall / CPU) | "
        f"target (≥{TARGETS['memory_ratio']:.0f}x memory, ≤{TARGETS['time_ratio']}x time) |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in rows:
        t = f"{v['time_ratio_wall']:.2f}x / {v['time_ratio_cpu']:.2f}x" if "time_ratio_wall" in v else "–"
        met = "–" if "met" not in v else ("ok" if v["met"] else "MISSED")
        lines.append(
            f"| {v['model']} | {v['resolution']} | {v['device']} | {v['precision']} | {v['memory_ratio']:.2f}x | "
            f"{t} | {met} |"
        )
    return "\n".join(lines)


def tcl_loss_cell(name: str, device: torch.device, reps: int, baseline, frames: int = 16, words: int = 12) -> dict:
    """TCL forward+backward on one batch's tokens: today's `token_contrastive_loss` against `baseline`'s."""
    from modeling_mcg import losses

    spec = SHARED_VIDEOS[name]
    model, _ = build(name, spec["resolution"], device, frames)
    config = model.config
    del model
    b, e = spec["questions"], config.projection_dim
    k = frames * (spec["resolution"] // config.vision_config.patch_size) ** 2
    g = torch.Generator().manual_seed(0)
    video = torch.nn.functional.normalize(torch.randn(b, k, e, generator=g), dim=-1).to(device)
    text = torch.nn.functional.normalize(torch.randn(b, words, e, generator=g), dim=-1).to(device)
    word_mask = torch.ones(b, words, dtype=torch.bool, device=device)
    word_mask[::2, -3:] = False
    video_mask = torch.ones(b, k, dtype=torch.bool, device=device)
    video_weights = losses.clipped_importance(torch.rand(b, k, generator=g).to(device), video_mask)
    word_weights = losses.clipped_importance(torch.rand(b, words, generator=g).to(device), word_mask)

    def method(module):
        def step():
            v, t = video.clone().requires_grad_(), text.clone().requires_grad_()
            loss = module.token_contrastive_loss(v, t, video_weights, word_weights, video_mask, word_mask, 0.1)
            loss.backward()
            return loss.detach(), v.grad, t.grad

        return step

    methods = {"baseline": method(baseline), "today": method(losses)}
    results = {label: m() for label, m in methods.items()}  # warm-up, and the values compared below
    for today, before in zip(results["today"], results["baseline"]):
        torch.testing.assert_close(today, before, rtol=1e-5, atol=1e-6)
    times = interleaved(methods, reps, device)
    return {
        "model": name,
        "device": str(device),
        "batch": b,
        "video_tokens": k,
        "words": words,
        "projection_dim": e,
        "times": times,
        "speedup": times["baseline"]["median_wall_ms"] / times["today"]["median_wall_ms"],
    }


def tcl_step_cell(name: str, device: torch.device, reps: int, baseline, frames: int = 16) -> dict:
    """The whole training step (forward, backward, AdamW) on questions that share videos (`SHARED_VIDEOS`) without
    TCL, with TCL (weight 0.1) computed by `baseline`'s loss, and with today's."""
    import modeling_mcg.modeling_mcg as modeling

    spec = SHARED_VIDEOS[name]
    model, optimizer = build(name, spec["resolution"], device, frames)
    config = model.config
    inputs = make_batch(config, spec["questions"], frames, spec["resolution"], device)
    inputs["pixel_values_videos"] = inputs["pixel_values_videos"][: spec["videos"]]
    inputs["video_index"] = torch.arange(spec["questions"], device=device) % spec["videos"]
    today = modeling.token_contrastive_loss

    def method(weight, loss_function):
        def step():
            config.tcl_loss_weight = weight
            modeling.token_contrastive_loss = loss_function
            try:
                train_step(model, optimizer, inputs, "fp32", device)
            finally:
                modeling.token_contrastive_loss = today

        return step

    methods = {
        "no_tcl": method(0.0, today),
        "tcl_baseline": method(0.1, baseline.token_contrastive_loss),
        "tcl_today": method(0.1, today),
    }
    for step in methods.values():
        step()  # warm-up
    times = interleaved(methods, reps, device)
    return {"model": name, "device": str(device), **spec, "frames": frames, "times": times}


def tcl_loss(args, argv: list[str] | None, reps: int, devices: list[str]) -> dict:
    start = time.perf_counter()
    env = environment(pick_device("auto"))
    baseline = module_at(args.baseline, "modeling_mcg/losses.py", "losses_baseline")
    cells = [
        tcl_loss_cell(name, pick_device(device), reps, baseline)
        for device in devices
        for name in args.models.split(",")
    ]
    lines = [
        f"| model | device | samples x video tokens | words | projection | {args.baseline}, ms | today, ms | speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        t = c["times"]
        lines.append(
            f"| {c['model']} | {c['device']} | {c['batch']} x {c['video_tokens']} | {c['words']} | "
            f"{c['projection_dim']} | {t['baseline']['median_wall_ms']:.2f} | {t['today']['median_wall_ms']:.2f} | "
            f"{c['speedup']:.2f}x |"
        )
    steps = [
        tcl_step_cell(name, pick_device(device), reps, baseline)
        for device in devices
        for name in args.models.split(",")
        if name == "mcg-tiny"  # the model of the runs that train with TCL (the ablation's aux rows, pretraining)
    ]
    lines += [
        "",
        f"| model | device | questions / videos | step without TCL, ms | with TCL ({args.baseline}), ms "
        "| with TCL (today), ms |",
        "|---|---|---|---|---|---|",
    ]
    for c in steps:
        t = c["times"]
        lines.append(
            f"| {c['model']} | {c['device']} | {c['questions']} / {c['videos']} | {t['no_tcl']['median_wall_ms']:.1f} "
            f"| {t['tcl_baseline']['median_wall_ms']:.1f} | {t['tcl_today']['median_wall_ms']:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    extra = {"baseline": args.baseline, "steps": steps}
    return write_comparison("train_tcl_loss", args, argv, reps, env, start, cells, table, **extra)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="time only the 16-frame cells (memory for all)")
    parser.add_argument("--reps", type=int, default=None, help="timed steps per variant (default 3)")
    parser.add_argument("--devices", default=None, help="comma-separated (default: cpu, plus cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: OMP_NUM_THREADS)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: " + ", ".join(MODELS))
    parser.add_argument("--frames", default=",".join(map(str, FRAMES)))
    parser.add_argument("--time-frames", default=None, help="frames whose cells are timed (default all; --quick 16)")
    parser.add_argument("--rss-frames", default="16", help="frames with the RSS cross-check on CPU ('' for none)")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/train[_quick].json)")
    parser.add_argument(
        "--shared-videos", action="store_true", help="time the fusor on questions sharing videos (see the docstring)"
    )
    parser.add_argument(
        "--tcl-loss", action="store_true", help="time the TCL loss against --baseline's (see the docstring)"
    )
    parser.add_argument("--baseline", default="7677858", help="git revision of losses.py that --tcl-loss compares to")
    parser.add_argument("--_rss-cell", dest="rss_cell", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_cell:
        print(json.dumps(rss_cell(json.loads(args.rss_cell))))
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    reps = args.reps or 3
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.shared_videos:
        return shared_videos(args, argv, reps, devices)
    if args.tcl_loss:
        return tcl_loss(args, argv, reps, devices)
    frames = [int(f) for f in args.frames.split(",")]
    time_frames = {int(f) for f in (args.time_frames or ("16" if args.quick else args.frames)).split(",") if f}
    rss_frames = {int(f) for f in args.rss_frames.split(",") if f}
    start = time.perf_counter()
    env = environment(pick_device("auto"))

    cells, models = [], {}
    for device_name in devices:
        device = pick_device(device_name)
        for name in args.models.split(","):
            spec = MODELS[name]
            for resolution in spec["resolutions"]:
                model, optimizer = build(name, resolution, device)
                models[name] = {
                    "parameters_m": count_parameters(model) / 1e6,
                    "batch": spec["batch"],
                    "resolutions": list(spec["resolutions"]),
                    "fp32_weights_mib": count_parameters(model) * 4 / MIB,
                    "config": model.config.to_dict(),
                }
                print(
                    f"{name}: {models[name]['parameters_m']:.2f} M parameters, batch {spec['batch']}, "
                    f"{resolution} px, {device}, {torch.get_num_threads()} threads",
                    flush=True,
                )
                for f in frames:
                    timed = f in time_frames
                    variants = VARIANTS if timed or not args.quick else VARIANTS[:2]  # quick: fp32 memory only
                    cells.append(
                        bench_cell(model, optimizer, name, spec["batch"], f, resolution, device, variants,
                                   reps if timed else 0, f in rss_frames, args.threads, args.quick)
                    )  # fmt: skip
                del model, optimizer
                gc.collect()

    v_rows = verdicts(cells)
    report = "\n\n".join(
        [f"Peak memory per training step ({d}, fp32), MiB above the pre-step baseline:\n\n" + memory_table(cells, d)
         for d in devices]
        + [f"Saved for backward (live when the forward returns; {d}, fp32), MiB:\n\n"
           + memory_table(cells, d, "after_forward_mib") for d in devices]
        + ["Step time (median ms) and peak memory of the timed cells:\n\n" + time_table(cells),
           f"Targets at {TARGETS['frames']} frames:\n\n" + verdict_table(v_rows)]
    )  # fmt: skip
    print("\n" + report)
    results = {
        "command": command_line("bench_train.py", args.quick, argv),
        "quick": args.quick,
        "repetitions": reps,
        "models": models,
        "environment": env,
        "load_average_end": os.getloadavg(),
        "memory_method": {
            "cpu": "torch.profiler(profile_memory=True): running sum of the CPU allocator's alloc/free events during "
            "one step; peak above the bytes live at step start (weights, AdamW states, inputs).",
            "cpu_rss_cross_check": "fresh subprocess per cell, MALLOC_MMAP_THRESHOLD_=131072, warm-up step, "
            "VmHWM reset via /proc/self/clear_refs, step_peak_rss = VmHWM - VmRSS before the step; "
            "process_peak_minus_build = max VmHWM - VmRSS after model build (includes AdamW states); ru_maxrss is "
            "recorded raw only: after fork+exec Linux reports max(parent's RSS at fork, own peak).",
            "cuda": "torch.cuda.max_memory_allocated() - memory_allocated() before the step",
        },
        "targets": TARGETS,
        "verdicts": v_rows,
        "cells": cells,
        "wall_s": round(time.perf_counter() - start, 1),
        "table": report,
    }
    write_results(results, "train", args.quick, args.output)
    return results


def shared_videos(args, argv: list[str] | None, reps: int, devices: list[str]) -> dict:
    start = time.perf_counter()
    env = environment(pick_device("auto"))
    cells = [
        shared_videos_cell(name, pick_device(device), reps) for device in devices for name in args.models.split(",")
    ]
    table = shared_videos_table(cells)
    print(table)
    return write_comparison("train_shared_videos", args, argv, reps, env, start, cells, table)


def write_comparison(name, args, argv, reps, env, start, cells, table, **extra) -> dict:
    """The results file of `--shared-videos` and `--tcl-loss`."""
    results = {
        "command": command_line("bench_train.py", args.quick, argv),
        **extra,
        "repetitions": reps,
        "environment": env,
        "load_average_end": os.getloadavg(),
        "cells": cells,
        "wall_s": round(time.perf_counter() - start, 1),
        "table": table,
    }
    write_results(results, name, args.quick, args.output)
    return results


if __name__ == "__main__":
    main()
