"""How fast is a training step of mcg-base, and what makes it slow? One script, three parts.

CPU proxies (run everywhere; `--tiny` runs the first two at the smallest sizes, in seconds):
- **operators**: the ATen operators one training step dispatches (zero_grad, forward with labels, backward, fused
  AdamW step), counted with a `TorchDispatchMode` after one warm-up step, for the mcg-base layer structure (12 vision,
  12 question, 2 fusion and 12 decoder layers, read from `hub_configs/mcg-base.json`) at small widths. On a GPU each
  of these operators is at least one kernel launch, so the count predicts the host cost of a step. Also listed: the
  most frequent operators.
- **program operators**: the same step counted from the profiler's event tree, so that a compiled step is counted
  too: the operators the program issues (from Python, autograd, the optimizer or a compiled region's wrapper) plus
  the kernels inductor generated, for the model file at `--baseline` (the model before this work), today's model
  eager, and today's with compiled regions (inductor; `aot_eager` with `--tiny`, which generates no kernels).
- **mid step**: wall time of one training step of the mid model (`bench_generate.mid_config`), median of
  repetitions after a warm-up.
- **compile**: time to the first compiled training step (forward + backward) of the mcg-base structure with regional
  compilation (`MCGPreTrainedModel.compile_regions`: each repeated layer class compiled once, reused by every layer)
  and with `torch.compile` of the whole model; backend "aot_eager" on CPU (graph capture and autograd tracing, no
  code generation: the part that grows with depth), "inductor" on CUDA, or `--compile_backend`.

Device part (with `--device cuda`): mcg-base at 224 px, bf16 autocast with fp32 weights, fused AdamW:
training steps (eager at batch 8/16/32 and 16 frames first, then compiled regions, 8 frames, checkpointing;
median of 5 steps after a warm-up, peak memory, MFU from `FlopCounterMode` FLOPs against `--peak_tflops`, time of
the first step, compilation included); generation at batch 32 (greedy and beam 3; dynamic cache, static cache
eager, static cache compiled with CUDA graphs; ms per new token from 10 against 1 new tokens); data loading
(16 frames of 640x360 H.264 clips written here with PyAV, 8 DataLoader workers, clips/s). Each part stops starting
new measurements once its own time limit is spent, and the results file is rewritten after every measurement.
`--tiny --device_part` runs the same code on the CPU at the smallest sizes (the test suite does, to keep it working).

    python benchmarks/bench_gpu.py --tiny         # CPU, seconds (the test suite runs this)
    OMP_NUM_THREADS=1 python benchmarks/bench_gpu.py   # CPU proxies at the default sizes (~2 min)
    python benchmarks/bench_gpu.py --device cuda --skip_compile  # + device part (~6 min on an H200)
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from bench_generate import environment, mid_config
from report import REPO, command_line, module_at
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from modeling_mcg import MCGConfig, MCGForVideoQuestionAnswering

PAD, SEP, ENC, DEC = 0, 102, 30523, 30522


class OperatorCounter(TorchDispatchMode):
    """Counts every ATen operator call that reaches the kernels (after autograd and autocast); `compute` leaves out
    the views (view, transpose, t, expand, detach, split...), which change metadata only and launch no kernel."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()
        self.compute = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        if not func.is_view:
            self.compute[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def structure_config(width: int, image_size: int, frames: int, vocab_size: int = 1031, depth=None) -> MCGConfig:
    """mcg-base's layer structure (depths, fusion, vision design) with `width` channels and small inputs; `depth`
    overrides the layers per stack."""
    base = json.loads((REPO / "hub_configs" / "mcg-base.json").read_text())
    if depth is not None:
        for key in ("vision_config", "question_config", "decoder"):
            base[key]["num_hidden_layers"] = depth
    sizes = dict(hidden_size=width, num_attention_heads=max(1, width // 32), intermediate_size=4 * width)
    base["vision_config"].update(sizes, image_size=image_size, num_frames=frames, drop_path_rate=0.0)
    for key in ("question_config", "decoder"):
        base[key].update(sizes, vocab_size=vocab_size, max_position_embeddings=64)
    base["projection_dim"] = min(base["projection_dim"], width)
    base.update(bos_token_id=vocab_size - 2, decoder_start_token_id=vocab_size - 2, enc_token_id=vocab_size - 1)
    base.pop("model_type")
    return MCGConfig(**base)


def training_inputs(config: MCGConfig, batch: int, frames: int, device, question_len=16, answer_len=6) -> dict:
    g = torch.Generator().manual_seed(0)
    vc, vocab = config.vision_config, config.decoder.vocab_size
    input_ids = torch.randint(200, vocab - 2, (batch, question_len), generator=g)
    input_ids[:, 0] = config.enc_token_id
    labels = torch.randint(200, vocab - 2, (batch, answer_len), generator=g)
    labels[:, -1] = config.eos_token_id
    inputs = dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        pixel_values_videos=torch.randn(batch, frames, 3, vc.image_size, vc.image_size, generator=g),
        video_frame_mask=torch.ones(batch, frames, dtype=torch.long),
        labels=labels,
    )
    return {k: v.to(device) for k, v in inputs.items()}


def make_step(model, inputs: dict, autocast_dtype=None, forward=None):
    """A `Trainer`-like step: zero_grad, forward with labels, backward, fused AdamW."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    device_type = next(model.parameters()).device.type
    forward = forward or model

    def step():
        optimizer.zero_grad(set_to_none=True)
        context = torch.autocast(device_type, autocast_dtype) if autocast_dtype else nullcontext()
        with context:
            loss = forward(**inputs).loss
        loss.backward()
        optimizer.step()
        return loss

    return step


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def count_operators(config: MCGConfig, batch: int, frames: int, device="cpu") -> dict:
    torch.manual_seed(0)
    model = MCGForVideoQuestionAnswering(config).to(device).train()
    step = make_step(model, training_inputs(config, batch, frames, device))
    step()  # warm-up: the optimizer states are created on the first step
    with OperatorCounter() as counter:
        step()
    return {
        "total": sum(counter.counts.values()),
        "compute": sum(counter.compute.values()),
        "top": dict(counter.counts.most_common(12)),
        "top_compute": dict(counter.compute.most_common(12)),
    }


def _is_kernel(name: str) -> bool:
    """Code generated by inductor: C++ kernels on the CPU (`..._cpp_fused_...`), Triton kernels on a GPU."""
    return "cpp_fused" in name or name.startswith("triton_")


def _is_view(name: str) -> bool:
    packet = getattr(torch.ops.aten, name.removeprefix("aten::"), None)
    overloads = packet.overloads() if packet is not None else []
    return bool(overloads) and getattr(packet, overloads[0]).is_view


def _reaches_compute(event) -> bool:
    if _is_kernel(event.name) or (event.name.startswith("aten::") and not _is_view(event.name)):
        return True
    return any(_reaches_compute(child) for child in event.cpu_children)


def count_program_operators(
    config: MCGConfig, batch: int, frames: int, model_class=MCGForVideoQuestionAnswering, backend: str | None = None
) -> dict:
    """Operators one training step issues from its program, eager or compiled alike: every ATen operator called by
    Python, the autograd engine, the optimizer or a compiled region's generated wrapper (not those nested inside
    another operator), and every kernel inductor generated. `TorchDispatchMode` cannot count a compiled step (compiled
    code does not run under the mode), so this reads the profiler's event tree instead. `compute` leaves out the
    operators that reach no non-view operator (a `reshape` that only views, `t`, `detach`...).

    `backend` compiles the repeated layers (`compile_regions`); on the CPU inductor's kernels are recorded by
    `cpp.enable_kernel_profile`."""
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = model_class(config).train()
    if backend is not None:
        model.compile_regions(backend=backend)
    with inductor_config.patch({"cpp.enable_kernel_profile": True}):
        step = make_step(model, training_inputs(config, batch, frames, "cpu"))
        step()  # warm-up: compilation, and the optimizer states created on the first step
        step()
        with profile(activities=[ProfilerActivity.CPU]) as trace:
            step()
    counts, compute = collections.Counter(), collections.Counter()
    for event in trace.events():
        if not (event.name.startswith("aten::") or _is_kernel(event.name)):
            continue
        parent, nested = event.cpu_parent, False
        while parent is not None and not nested:
            nested = parent.name.startswith("aten::") or _is_kernel(parent.name)
            parent = parent.cpu_parent
        if nested:
            continue
        name = "inductor kernels" if _is_kernel(event.name) else event.name
        counts[name] += 1
        if _reaches_compute(event):
            compute[name] += 1
    torch._dynamo.reset()
    return {
        "total": sum(counts.values()),
        "compute": sum(compute.values()),
        "top": dict(counts.most_common(12)),
        "top_compute": dict(compute.most_common(12)),
    }


def baseline_model_class(revision: str):
    """`MCGForVideoQuestionAnswering` as defined by `modeling_mcg/modeling_mcg.py` at git `revision`, imported beside
    today's package (its relative imports resolve to today's configuration and losses)."""
    module = module_at(revision, "modeling_mcg/modeling_mcg.py", "modeling_mcg.modeling_mcg_baseline")
    return module.MCGForVideoQuestionAnswering


def time_steps(step, reps: int, device) -> list[float]:
    step()
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def first_compiled_step_seconds(config, batch, frames, mode: str, backend: str, device="cpu") -> float:
    """Seconds from a fresh compiler state to the end of the first compiled forward + backward."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = MCGForVideoQuestionAnswering(config).to(device).train()
    inputs = training_inputs(config, batch, frames, device)
    start = time.perf_counter()
    if mode == "regions":
        model.compile_regions(backend=backend)
        forward = model
    else:
        forward = torch.compile(model, backend=backend)
    forward(**inputs).loss.backward()
    sync(device)
    seconds = time.perf_counter() - start
    torch._dynamo.reset()
    return seconds


class Results:
    """The results dictionary, rewritten to disk after every measurement."""

    def __init__(self, path: Path | None, data: dict):
        self.path, self.data = path, data

    def add(self, section: str, key: str, value) -> None:
        self.data.setdefault(section, {})[key] = value
        print(f"[{section}] {key}: {value}", flush=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data, indent=1, default=float) + "\n")


def over(deadline: float) -> bool:
    return time.perf_counter() > deadline


@dataclass
class DeviceSetup:
    """What the device part measures: mcg-base on a GPU, or the tiny structure on the CPU (`--tiny --device_part`,
    which checks the code path in seconds; its numbers mean nothing)."""

    device: str
    config: MCGConfig
    training_cells: list  # (frames, batch, checkpointing, compiled), in the order they are measured
    compile_backend: str
    peak_tflops: float
    reps: int = 5
    dtype: torch.dtype = torch.bfloat16
    training_s: float = 240.0
    generation_batch: int = 32
    generation_frames: int = 16
    generation_s: float = 100.0
    loading_s: float = 45.0
    clip_frames: int = 300
    workers: int = 8

    def compile_config(self, cls):
        config = cls(backend=self.compile_backend)
        if torch.device(self.device).type != "cuda":
            config._compile_all_devices = True  # transformers compiles generation on accelerators only by default
            config.mode = None  # "reduce-overhead" means CUDA graphs
        return config

    @classmethod
    def for_device(cls, device: str, tiny: bool, compile_backend: str | None, peak_tflops: float) -> DeviceSetup:
        if tiny:
            return cls(
                device=device,
                config=structure_config(32, 16, 2, depth=2),
                training_cells=[(2, 1, False, False), (2, 2, False, False), (2, 2, False, True), (2, 2, True, False)],
                compile_backend=compile_backend or "aot_eager",
                peak_tflops=peak_tflops,
                reps=2,
                generation_batch=2,
                generation_frames=2,
                clip_frames=30,
                workers=1,
            )
        return cls(
            device=device,
            config=MCGConfig.from_json_file(str(REPO / "hub_configs" / "mcg-base.json")),
            training_cells=[
                (16, 8, False, False),
                (16, 16, False, False),
                (16, 32, False, False),
                (16, 16, False, True),
                (8, 16, False, False),
                (16, 32, True, False),
                (16, 8, False, True),
                (16, 32, False, True),
            ],  # fmt: skip
            compile_backend=compile_backend or "inductor",
            peak_tflops=peak_tflops,
        )


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.device(device).type == "cuda" else None


def reset_peak(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def device_training(results: Results, setup: DeviceSetup) -> None:
    """Training steps in priority order: the targets first (eager 16 frames at batch 8/16/32, then compiled regions
    at batch 16), so that a short time limit still measures what matters."""
    from torch.utils.flop_counter import FlopCounterMode

    deadline = time.perf_counter() + setup.training_s
    flops_per_clip: dict[int, float] = {}
    for frames, batch, checkpointing, compiled in setup.training_cells:
        if over(deadline):
            results.add("device_training", "stopped", f"time limit {setup.training_s:.0f} s")
            return
        key = f"frames={frames} batch={batch} ckpt={checkpointing} compiled={compiled}"
        torch._dynamo.reset()
        torch.manual_seed(0)
        with torch.device(setup.device):  # initialised in place: 387 M parameters are slow to create on the host
            model = MCGForVideoQuestionAnswering(setup.config).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        inputs = training_inputs(setup.config, batch, frames, setup.device)
        if frames not in flops_per_clip:  # FLOPs grow linearly with the batch: count once per frame count
            with FlopCounterMode(display=False) as flops:
                with torch.autocast(torch.device(setup.device).type, setup.dtype):
                    model(**inputs).loss.backward()
            flops_per_clip[frames] = flops.get_total_flops() / batch
            model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        if compiled:
            model.compile_regions(backend=setup.compile_backend)
        step = make_step(model, inputs, setup.dtype)
        try:
            step()
            sync(setup.device)
            first = time.perf_counter() - start
            reset_peak(setup.device)
            times = time_steps(step, setup.reps, setup.device)[1:]
        except torch.OutOfMemoryError:
            results.add("device_training", key, "out of memory")
            continue
        finally:
            del model
        seconds = statistics.median(times)
        results.add(
            "device_training",
            key,
            {
                "step_s": seconds,
                "clips_per_s": batch / seconds,
                "peak_gib": peak_gib(setup.device),
                "tflop_per_clip": flops_per_clip[frames] / 1e12,
                "mfu": flops_per_clip[frames] * batch / seconds / (setup.peak_tflops * 1e12),
                "first_step_s": first,
            },
        )
        if torch.device(setup.device).type == "cuda":
            torch.cuda.empty_cache()


def device_generation(results: Results, setup: DeviceSetup) -> None:
    """`generate()` at batch 32: dynamic cache, static cache eager, static cache compiled (transformers compiles the
    decoding step by itself for a static cache on a GPU; CUDA graphs). The time per new token is the difference
    between 10 and 1 new tokens, over 9."""
    from transformers import CompileConfig

    deadline = time.perf_counter() + setup.generation_s
    torch.manual_seed(0)
    with torch.device(setup.device):
        model = MCGForVideoQuestionAnswering(setup.config).eval()
    inputs = training_inputs(setup.config, setup.generation_batch, setup.generation_frames, setup.device)
    inputs.pop("labels")
    reference = {}
    variants = {
        "dynamic": {},
        "static eager": {"cache_implementation": "static", "disable_compile": True},
        "static compiled": {"cache_implementation": "static", "compile_config": setup.compile_config(CompileConfig)},
    }
    for beams in (1, 3):
        for name, extra in variants.items():
            if over(deadline):
                results.add("device_generation", "stopped", f"time limit {setup.generation_s:.0f} s")
                return
            torch._dynamo.reset()
            seconds = {}
            try:
                with torch.no_grad(), torch.autocast(torch.device(setup.device).type, setup.dtype):
                    for new_tokens in (10, 1):
                        kwargs = dict(num_beams=beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **extra)
                        call = lambda kwargs=kwargs: model.generate(**inputs, **kwargs)  # noqa: E731
                        call()  # compiled variants capture their graphs on the first calls
                        seconds[new_tokens] = statistics.median(time_steps(call, setup.reps, setup.device))
                    answers = model.generate(**inputs, num_beams=beams, max_new_tokens=10, min_new_tokens=10, **extra)
            except Exception as error:  # a variant that fails must not stop the others
                results.add("device_generation", f"beams={beams} {name}", f"{type(error).__name__}: {error}"[:2000])
                continue
            same = reference.setdefault(beams, answers).equal(answers)
            results.add(
                "device_generation",
                f"beams={beams} {name}",
                {
                    "generate_s": seconds[10],
                    "ms_per_new_token": 1000 * (seconds[10] - seconds[1]) / 9,
                    "same_answers_as_dynamic": same,
                },
            )


def device_data_loading(results: Results, setup: DeviceSetup) -> None:
    import av
    import numpy as np

    from modeling_mcg.frame_sampling import sample_uniform
    from modeling_mcg.video_io import decode_video

    deadline = time.perf_counter() + setup.loading_s
    folder = Path(tempfile.mkdtemp(prefix="bench_gpu_clips_"))
    paths = []
    for i in range(8):
        path = folder / f"clip{i}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("h264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
            for j in range(setup.clip_frames):
                image = np.full((360, 640, 3), (i * 29 + j) % 256, dtype=np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
        paths.append(str(path))

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return 256

        def __getitem__(self, index):
            frames, _, _ = decode_video(paths[index % len(paths)], lambda info: sample_uniform(16, info.num_frames))
            return torch.from_numpy(frames)

    loader = torch.utils.data.DataLoader(Clips(), batch_size=8, num_workers=setup.workers)
    start, clips = time.perf_counter(), 0
    for batch in loader:
        clips += batch.shape[0]
        if over(deadline):
            break
    results.add(
        "device_data_loading", f"workers={setup.workers}", {"clips_per_s": clips / (time.perf_counter() - start)}
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smallest sizes, CPU proxies only (seconds)")
    parser.add_argument("--device", default="cpu", help="cuda adds the GPU part")
    parser.add_argument("--width", type=int, default=None, help="channels of the mcg-base structure")
    parser.add_argument("--reps", type=int, default=None, help="timed mid-model steps")
    parser.add_argument("--skip_compile", action="store_true")
    parser.add_argument("--compile_backend", default=None)
    parser.add_argument(
        "--baseline",
        default="da8b2b7",
        help="git revision whose modeling_mcg.py is counted as the baseline (the model before this work); none: skip",
    )
    parser.add_argument(
        "--count_backend",
        default=None,
        help="compiled regions' backend when counting (inductor; aot_eager with --tiny)",
    )
    parser.add_argument("--peak_tflops", type=float, default=790.0, help="bf16 matmul rate for MFU (H200: 790)")
    parser.add_argument("--output", default=None)
    parser.add_argument(
        "--device_part", action="store_true", help="run the device part on --device even without CUDA (with --tiny)"
    )
    args = parser.parse_args(argv)

    width = args.width or (32 if args.tiny else 64)
    image, frames, batch = (16, 2, 1) if args.tiny else (32, 4, 2)
    reps = args.reps or (2 if args.tiny else 9)
    name = "gpu_tiny" if args.tiny else "gpu"
    path = Path(args.output) if args.output else REPO / "benchmarks" / "results" / f"{name}.json"
    results = Results(
        path, {"command": command_line("bench_gpu.py", False, argv), "env": environment(torch.device(args.device))}
    )

    structure = structure_config(width, image, frames)
    counted = count_operators(structure, batch, frames)
    results.add("operators", f"mcg-base structure, width {width}, batch {batch}, {frames} frames", counted)
    print(f"OPERATORS PER TRAINING STEP: {counted['total']} dispatched, {counted['compute']} not views")

    # the same step as a program: the baseline's model file, today's eager, today's with compiled regions
    programs = {}
    if args.baseline != "none":
        try:
            programs["baseline"] = count_program_operators(
                structure, batch, frames, baseline_model_class(args.baseline)
            )
        except (subprocess.CalledProcessError, FileNotFoundError) as error:  # no git history: no baseline
            results.add("program_operators", "baseline", f"not counted: {error}")
    programs["eager"] = count_program_operators(structure, batch, frames)
    count_backend = args.count_backend or ("aot_eager" if args.tiny else "inductor")
    programs[f"compiled regions ({count_backend})"] = count_program_operators(
        structure, batch, frames, backend=count_backend
    )
    reference = programs.get("baseline")
    for name, count in programs.items():
        if reference is not None:
            count["total_vs_baseline"] = count["total"] / reference["total"]
            count["compute_vs_baseline"] = count["compute"] / reference["compute"]
        results.add("program_operators", name, count)
        ratio = (
            f" ({count['total_vs_baseline']:.0%} / {count['compute_vs_baseline']:.0%} of the baseline)"
            if (reference is not None)
            else ""
        )
        print(f"PROGRAM OPERATORS {name}: {count['total']} issued, {count['compute']} compute{ratio}")

    mid = (
        structure_config(width, image, frames)
        if args.tiny
        else mid_config(image_size=64, num_frames=8, hidden_dropout_prob=0.0)
    )
    torch.manual_seed(0)
    model = MCGForVideoQuestionAnswering(mid).train()
    times = time_steps(make_step(model, training_inputs(mid, batch, 4 if args.tiny else 8, "cpu")), reps, "cpu")
    results.add(
        "mid_step",
        "cpu",
        {"reps": reps, "median_ms": 1000 * statistics.median(times), "ms": [1000 * t for t in times]},
    )
    print(f"MID STEP MEDIAN MS: {1000 * statistics.median(times):.1f}")
    del model

    if not (args.skip_compile or args.tiny):  # compiler start-up alone takes longer than the --tiny budget
        backend = args.compile_backend or "aot_eager"
        seconds = {
            mode: first_compiled_step_seconds(structure, batch, frames, mode, backend) for mode in ("regions", "whole")
        }
        seconds["ratio"] = seconds["regions"] / seconds["whole"]
        results.add("compile", f"backend {backend}, first step s", seconds)
        print(f"COMPILE regions {seconds['regions']:.1f} s, whole {seconds['whole']:.1f} s")

    if torch.device(args.device).type == "cuda" or args.device_part:
        setup = DeviceSetup.for_device(args.device, args.tiny, args.compile_backend, args.peak_tflops)
        for part in (device_training, device_generation, device_data_loading):
            try:
                part(results, setup)
            except Exception as error:  # one broken part must not lose the others' measurements
                results.add(part.__name__, "error", f"{type(error).__name__}: {error}"[:2000])
    return results.data


if __name__ == "__main__":
    main()
