"""Answer-generation and multiple-choice scoring speed of `MCGForVideoQuestionAnswering` (random weights).

Two questions:
1. What does the decoder KV cache buy in `generate()`? Greedy and 3-beam search, exactly 10 new tokens
   (`min_new_tokens = max_new_tokens = 10`, so every variant produces sequences of the same length), with the cache
   and with `use_cache=False`. The outputs must be identical before anything is timed. Two timings per variant:
   - end to end: `generate(pixel_values_videos=..., input_ids=...)`, which runs the video encoder, question encoder
     and fusor once per question, then 10 decoder steps;
   - decoding only: `generate(encoder_outputs=...)` with the encoder outputs computed beforehand, i.e. the part of
     generation that the cache can speed up.
   The encoder forward alone is timed next to them (it is the fixed cost inside the end-to-end numbers).
2. What does `score_choices()` (encoder once per question, every candidate of every question in one decoder batch)
   buy over one model forward per candidate? 5 candidates per question; scores must agree to 1e-5. A third variant,
   encoder once + one decoder pass per candidate, separates "share the encoder" from "batch the candidates".

A forward hook on the video encoder records the batch size of every call: one call of b questions per
`generate()` (beams included) and per `score_choices()`.

Every repetition runs all variants of a group in a rotated order (so load from other jobs hits them alike); the
table shows medians of wall-clock and process-CPU time; targets (cache >= 2x, batched scoring >= 2x) are judged on
CPU time on CPU and on wall time on CUDA. Batches of 4 and 32 questions (`--quick`: 4 and 16; the run_videoqa
evaluation uses 64). The model is a mid-size MCG (384 wide, 4 vision, 4 question, 2 fusion, 4 decoder layers, BERT
vocabulary, 112 px / 16 px patches, 8 frames, 55.6 M parameters) unless --tiny is given.

    OMP_NUM_THREADS=1 python benchmarks/bench_generate.py          # 7 repetitions, benchmarks/results/generate.json
    OMP_NUM_THREADS=1 python benchmarks/bench_generate.py --quick  # 3 repetitions, generate_quick.json (~4 min)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

import transformers  # noqa: E402
from report import command_line, write_results  # noqa: E402

from modeling_mcg import MCGConfig, MCGForVideoQuestionAnswering  # noqa: E402
from modeling_mcg.modeling_mcg import shift_tokens_right  # noqa: E402

PAD, SEP, MASK, DEC, ENC = 0, 3, 4, 5, 6
BERT_VOCAB = 30524  # bert-base-uncased + [DEC] + [ENC], as mcg-base
TARGETS = {"cache_speedup": 2.0, "batched_scoring_speedup": 2.0}
# Targets are judged on process-CPU time on CPU (a shared box's load inflates single wall-clock samples; with one
# thread CPU time is the compute the variant needs) and on wall-clock time on CUDA.
BASIS = {"key": "cpu"}


# ----------------------------------------------------------------------------------------------------------------
# Shared helpers (bench_train.py imports these)
# ----------------------------------------------------------------------------------------------------------------


def mid_config(image_size: int = 112, num_frames: int = 8, vocab_size: int = BERT_VOCAB, **overrides) -> MCGConfig:
    """A mid-size MCG between mcg-tiny (64 wide, 0.4 M parameters) and mcg-base (768 wide, 387 M)."""
    text = dict(
        vocab_size=vocab_size,
        hidden_size=384,
        num_hidden_layers=4,
        num_attention_heads=6,
        intermediate_size=1536,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    vision = dict(
        image_size=image_size,
        patch_size=16,
        num_frames=num_frames,
        hidden_size=384,
        num_hidden_layers=4,
        num_attention_heads=6,
        intermediate_size=1536,
        drop_path_rate=0.0,
    )
    kwargs = dict(
        vision_config=vision,
        question_config=text,
        decoder=dict(text),
        num_fusion_layers=2,
        projection_dim=256,
        pad_token_id=PAD,
        bos_token_id=DEC,
        eos_token_id=SEP,
        decoder_start_token_id=DEC,
        enc_token_id=ENC,
        mask_token_id=MASK,
    )
    kwargs.update(overrides)
    return MCGConfig(**kwargs)


def tiny_config() -> MCGConfig:
    return MCGConfig.from_json_file(str(REPO / "hub_configs" / "mcg-tiny.json"))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device):
    """(wall ms, process-CPU ms, result). CPU time is less disturbed by other jobs on a shared box."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    sync(device)
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000, result


def interleaved(methods: dict, reps: int, device: torch.device) -> dict:
    """Run every method once per repetition, in an order rotated per repetition; return the raw timings."""
    times = {name: {"wall_ms": [], "cpu_ms": []} for name in methods}
    names = list(methods)
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            wall, cpu, _ = timed(methods[name], device)
            times[name]["wall_ms"].append(wall)
            times[name]["cpu_ms"].append(cpu)
    for entry in times.values():
        entry["median_wall_ms"] = statistics.median(entry["wall_ms"])
        entry["median_cpu_ms"] = statistics.median(entry["cpu_ms"])
    return times


def environment(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "device": str(device),
        "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        # which model code was measured (the file changes; the hash identifies the version)
        "modeling_mcg_sha256": hashlib.sha256((REPO / "modeling_mcg" / "modeling_mcg.py").read_bytes()).hexdigest(),
    }
    if device.type == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


def question_inputs(config: MCGConfig, batch: int, frames: int, question_len: int, device, seed: int = 0) -> dict:
    """Random frames and questions `[ENC] ... [SEP]`; every other question is 6 tokens shorter (padding)."""
    g = torch.Generator().manual_seed(seed)
    vc = config.vision_config
    vocab = config.question_config.vocab_size
    pixels = torch.randn(batch, frames, 3, vc.image_size, vc.image_size, generator=g)
    input_ids = torch.randint(7, vocab, (batch, question_len), generator=g)
    input_ids[:, 0] = ENC
    attention_mask = torch.ones_like(input_ids)
    for i in range(batch):
        length = question_len - (6 if i % 2 else 0)
        input_ids[i, length - 1] = SEP
        input_ids[i, length:] = PAD
        attention_mask[i, length:] = 0
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=pixels)
    return {k: v.to(device) for k, v in inputs.items()}


def choice_labels(config: MCGConfig, batch: int, candidates: int, device, seed: int = 1) -> torch.Tensor:
    """(b, c, 5) candidates of 1-4 tokens + [SEP], padded with -100, as the processor builds for `choices=`."""
    g = torch.Generator().manual_seed(seed)
    vocab = config.decoder.vocab_size
    labels = torch.full((batch, candidates, 5), -100, dtype=torch.long)
    for i in range(batch):
        for c in range(candidates):
            length = 1 + (i + c) % 4
            labels[i, c, :length] = torch.randint(7, vocab, (length,), generator=g)
            labels[i, c, length] = SEP
    return labels.to(device)


def per_candidate_scores(model, inputs: dict, labels: torch.Tensor, encoder_outputs=None) -> torch.Tensor:
    """One forward per candidate (all questions of the batch at once): the naive way to rank answers."""
    config = model.config
    columns = []
    for c in range(labels.shape[1]):
        target = labels[:, c]  # (b, s_a)
        decoder_input_ids = shift_tokens_right(target, config.pad_token_id, config.decoder_start_token_id)
        if encoder_outputs is None:
            out = model(**inputs, decoder_input_ids=decoder_input_ids, use_cache=False)
        else:
            out = model(encoder_outputs=encoder_outputs, decoder_input_ids=decoder_input_ids, use_cache=False)
        log_probs = out.logits.float().log_softmax(-1)
        valid = target != -100
        token = log_probs.gather(-1, target.clamp_min(0)[..., None]).squeeze(-1) * valid
        columns.append(token.sum(1) / valid.sum(1).clamp_min(1))
    return torch.stack(columns, dim=1)


# ----------------------------------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------------------------------


class VisionCalls:
    """Records the batch size of every video-encoder forward (a forward hook): proof of "once per question"."""

    def __init__(self, model):
        self.batches: list[int] = []
        self._handle = model.mcg.vision_model.register_forward_hook(
            lambda module, args, output: self.batches.append(int(output.last_hidden_state.shape[0]))
        )

    def during(self, function) -> list[int]:
        self.batches = []
        function()
        return list(self.batches)

    def remove(self) -> None:
        self._handle.remove()


def bench_generation(model, inputs: dict, reps: int, device, new_tokens: int) -> dict:
    with torch.no_grad():
        encoder_outputs = model.get_encoder()(**inputs)
    text_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    batch = inputs["input_ids"].shape[0]
    calls = VisionCalls(model)
    rows = {}
    for label, beams in (("greedy", 1), ("beam 3", 3)):
        common = dict(num_beams=beams, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens)

        def run(use_cache, precomputed, common=common):
            # generate() expands encoder_outputs for the beams in place: hand it a fresh shallow copy every call
            fresh = {"encoder_outputs": type(encoder_outputs)(**encoder_outputs), **text_inputs}
            with torch.no_grad():
                return model.generate(**(fresh if precomputed else inputs), **common, use_cache=use_cache)

        outputs = {(cache, pre): run(cache, pre) for cache in (True, False) for pre in (False, True)}  # + warm-up
        reference = outputs[(True, False)]
        identical = all(torch.equal(reference, other) for other in outputs.values())
        if not identical:
            raise AssertionError(f"{label}: generate() outputs differ between cache / no cache / precomputed encoder")
        if reference.shape != (batch, 1 + new_tokens):
            raise AssertionError(f"{label}: expected {(batch, 1 + new_tokens)} tokens, got {tuple(reference.shape)}")
        vision_calls = {
            "cache": calls.during(lambda: run(True, False)),
            "no cache": calls.during(lambda: run(False, False)),
        }
        methods = {
            "cache": lambda: run(True, False),
            "no cache": lambda: run(False, False),
            "cache, decode only": lambda: run(True, True),
            "no cache, decode only": lambda: run(False, True),
        }
        if beams == 1:
            methods["encoder forward"] = lambda: model.get_encoder()(**inputs)
        with torch.no_grad():
            times = interleaved(methods, reps, device)
        rows[label] = {
            "num_beams": beams,
            "outputs_identical": identical,
            "output_shape": list(reference.shape),
            "vision_encoder_batches_per_generate": vision_calls,
            "times": times,
        }
        for key, unit in (("wall", "median_wall_ms"), ("cpu", "median_cpu_ms")):
            rows[label][f"speedup_{key}"] = times["no cache"][unit] / times["cache"][unit]
            rows[label][f"decode_only_speedup_{key}"] = (
                times["no cache, decode only"][unit] / times["cache, decode only"][unit]
            )
        print(_generation_line(batch, label, rows[label], rows.get("greedy")), flush=True)
    calls.remove()
    return rows


def bench_scoring(model, inputs: dict, labels: torch.Tensor, reps: int, device) -> dict:
    calls = VisionCalls(model)
    with torch.no_grad():
        batched = model.score_choices(**inputs, choice_labels=labels)
        looped = per_candidate_scores(model, inputs, labels)
        encoder_outputs = model.get_encoder()(**inputs)
        shared = per_candidate_scores(model, inputs, labels, encoder_outputs)
        vision_calls = {
            "batched score_choices": calls.during(lambda: model.score_choices(**inputs, choice_labels=labels)),
            "forward per candidate": calls.during(lambda: per_candidate_scores(model, inputs, labels)),
        }
    calls.remove()
    max_diff = float((batched - looped).abs().max())
    max_diff_shared = float((batched - shared).abs().max())
    if max_diff > 1e-5 or max_diff_shared > 1e-5:
        raise AssertionError(
            f"score_choices differs from per-candidate forwards by {max_diff:.2e} / {max_diff_shared:.2e}"
        )
    methods = {
        "batched score_choices": lambda: model.score_choices(**inputs, choice_labels=labels),
        "forward per candidate": lambda: per_candidate_scores(model, inputs, labels),
        "encoder once, decoder per candidate": lambda: per_candidate_scores(
            model, inputs, labels, model.get_encoder()(**inputs)
        ),
    }
    with torch.no_grad():
        times = interleaved(methods, reps, device)
    row = {
        "batch_questions": labels.shape[0],
        "candidates": labels.shape[1],
        "max_abs_diff": max_diff,
        "max_abs_diff_shared_encoder": max_diff_shared,
        "vision_encoder_batches": vision_calls,
        "times": times,
    }
    for key, unit in (("wall", "median_wall_ms"), ("cpu", "median_cpu_ms")):
        row[f"speedup_{key}"] = times["forward per candidate"][unit] / times["batched score_choices"][unit]
    print(_scoring_line(row), flush=True)
    return row


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------


def _ms(entry: dict) -> str:
    return f"{entry['median_wall_ms']:.0f} / {entry['median_cpu_ms']:.0f}"


def _verdict(row: dict, name: str, target: float) -> str:
    value = row[f"{name}_{BASIS['key']}"]
    return f"{'ok' if value >= target else 'MISSED'} (≥{target:.0f}x, {BASIS['key']})"


def _generation_line(batch: int, label: str, row: dict, greedy: dict | None) -> str:
    t = row["times"]
    encoder = (greedy or row)["times"].get("encoder forward")
    return (
        f"| {batch} | {label} | {_ms(t['cache'])} | {_ms(t['no cache'])} | "
        f"{row['speedup_wall']:.2f}x / {row['speedup_cpu']:.2f}x | "
        f"{_ms(t['cache, decode only'])} | {_ms(t['no cache, decode only'])} | "
        f"{row['decode_only_speedup_wall']:.2f}x / {row['decode_only_speedup_cpu']:.2f}x | "
        f"{_ms(encoder) if encoder else '–'} | {'yes' if row['outputs_identical'] else 'NO'} | "
        f"{_verdict(row, 'speedup', TARGETS['cache_speedup'])} | "
        f"{_verdict(row, 'decode_only_speedup', TARGETS['cache_speedup'])} |"
    )


def _scoring_line(row: dict) -> str:
    t = row["times"]
    return (
        f"| {row['batch_questions']} | {row['candidates']} | {_ms(t['batched score_choices'])} | "
        f"{_ms(t['forward per candidate'])} | {_ms(t['encoder once, decoder per candidate'])} | "
        f"{row['speedup_wall']:.2f}x / {row['speedup_cpu']:.2f}x | {row['max_abs_diff']:.1e} | "
        f"{_verdict(row, 'speedup', TARGETS['batched_scoring_speedup'])} |"
    )


def tables(runs: dict) -> str:
    gen = (
        "| questions | search | cache ms | no cache ms | speedup | cache, decode only ms | "
        "no cache, decode only ms | decode-only speedup | encoder forward ms | identical | "
        "target, end to end | target, decode only |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    score = (
        "| questions | candidates | batched score_choices ms | forward per candidate ms | "
        "encoder once, decoder per candidate ms | speedup | max abs diff | target |\n|---|---|---|---|---|---|---|---|"
    )
    gen_rows = [
        _generation_line(run["batch_questions"], label, row, run["generation"].get("greedy"))
        for run in runs.values()
        for label, row in run["generation"].items()
    ]
    score_rows = [_scoring_line(run["scoring"]) for run in runs.values()]
    return "\n".join([gen, *gen_rows, "", score, *score_rows])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions, batches of 4 and 16 questions")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per variant (default 7, --quick 3)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: OMP_NUM_THREADS)")
    parser.add_argument("--tiny", action="store_true", help="the mcg-tiny preset instead of the mid-size model")
    parser.add_argument(
        "--batches", default=None, help="questions per batch, comma-separated (default 4,32; --quick 4,16)"
    )
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/generate[_quick].json)")
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 7)
    batches = [int(b) for b in (args.batches or ("4,16" if args.quick else "4,32")).split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    device = pick_device(args.device)
    BASIS["key"] = "cpu" if device.type == "cpu" else "wall"
    start = time.perf_counter()

    torch.manual_seed(0)
    config = tiny_config() if args.tiny else mid_config(num_frames=args.frames)
    model = MCGForVideoQuestionAnswering(config).to(device).eval()
    vc = config.vision_config
    model_desc = (
        f"{'mcg-tiny' if args.tiny else 'mid'}: {count_parameters(model) / 1e6:.1f} M parameters, vision "
        f"{vc.hidden_size}x{vc.num_hidden_layers}, question {config.question_config.hidden_size}x"
        f"{config.question_config.num_hidden_layers}, fusor {config.num_fusion_layers}, decoder "
        f"{config.decoder.hidden_size}x{config.decoder.num_hidden_layers}, vocab {config.decoder.vocab_size}, "
        f"{args.frames} frames of {vc.image_size} px, temporal pooling {vc.temporal_pooling}"
    )
    env = environment(device)
    print(f"{model_desc}; {reps} repetitions on {device}, {torch.get_num_threads()} threads", flush=True)

    runs = {}
    for batch in batches:
        inputs = question_inputs(config, batch, args.frames, 24, device)
        labels = choice_labels(config, batch, args.candidates, device)
        runs[str(batch)] = {
            "batch_questions": batch,
            "generation": bench_generation(model, inputs, reps, device, args.new_tokens),
            "scoring": bench_scoring(model, inputs, labels, reps, device),
        }
    report = tables(runs)
    print("\nmedian ms: wall / process CPU\n\n" + report)

    results = {
        "command": command_line("bench_generate.py", args.quick, argv),
        "quick": args.quick,
        "repetitions": reps,
        "model": model_desc,
        "config": config.to_dict(),
        "new_tokens": args.new_tokens,
        "question_tokens": 24,
        "environment": env,
        "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "targets": TARGETS,
        "targets_judged_on": f"median {BASIS['key']} time",
        "runs": runs,
        "targets_met": {
            batch: {
                **{
                    f"cache_{label}_end_to_end": row[f"speedup_{BASIS['key']}"] >= TARGETS["cache_speedup"]
                    for label, row in run["generation"].items()
                },
                **{
                    f"cache_{label}_decode_only": row[f"decode_only_speedup_{BASIS['key']}"]
                    >= TARGETS["cache_speedup"]
                    for label, row in run["generation"].items()
                },
                "batched_scoring": run["scoring"][f"speedup_{BASIS['key']}"] >= TARGETS["batched_scoring_speedup"],
            }
            for batch, run in runs.items()
        },
        "wall_s": round(time.perf_counter() - start, 1),
        "table": report,
    }
    write_results(results, "generate", args.quick, args.output)
    return results


if __name__ == "__main__":
    main()
