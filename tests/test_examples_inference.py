"""examples/inference.py and examples/visualize_attention.py, run through `main()` on saved tiny models and a real
PyAV clip: the printed answers are the pipeline's, and the attention maps match a naive per-token recomputation."""

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_pipeline import QUESTION, tiny_processor
from tiny_models import tiny_config
from transformers import pipeline
from video_factory import pattern_index, write_video

from modeling_mcg import MCGForVideoQuestionAnswering, save_for_hub
from modeling_mcg.pipeline_mcg import TASK, VideoQuestionAnsweringPipeline

EXAMPLES = Path(__file__).parent.parent / "examples"
# (fusion_type, temporal_pooling, how the folder is written)
VARIANTS = {
    "cross": ("cross", "none", "hub"),
    "concat": ("concat", "none", "plain"),
    "cross-mean": ("cross", "mean", "plain"),
}
FRAMES, GRID = 4, 3  # tiny_processor: 4 frames of 24 x 24; tiny_config: 8 x 8 patches


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


inference = _example("inference")
visualize_attention = _example("visualize_attention")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return str(write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=12, width=40, height=30))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Per variant: (in-memory model, processor, folder). A larger init than the preset's, so attention is peaked."""
    processor = tiny_processor()
    vocab = {"vocab_size": len(processor.tokenizer)}
    out = {}
    for name, (fusion_type, pooling, kind) in VARIANTS.items():
        torch.manual_seed(1)
        config = tiny_config(
            question=vocab,
            decoder=vocab,
            vision={"temporal_pooling": pooling, "temporal_embedding_init_std": 1.0},
            fusion_type=fusion_type,
            initializer_range=0.3,
        )
        model = MCGForVideoQuestionAnswering(config).eval()
        folder = tmp_path_factory.mktemp(name)
        if kind == "hub":  # config names the remote-code pipeline: inference.py must still use the local class
            save_for_hub(model, processor, folder)
        else:
            model.save_pretrained(folder)
            processor.save_pretrained(folder)
        out[name] = (model, processor, str(folder))
    return out


def _run(module, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    return module.main()


LINE = re.compile(r"^(\d+)\. '(.*)'  score=(\d\.\d{4})$")


def _printed(capsys) -> list[tuple[str, float]]:
    lines = capsys.readouterr().out.strip().splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [int(m.group(1)) for m in matches] == list(range(1, len(lines) + 1))
    return [(m.group(2), float(m.group(3))) for m in matches]


@pytest.mark.parametrize("name", ["cross", "concat"])
def test_inference_prints_the_pipelines_top_k(saved, clip, name, monkeypatch, capsys):
    model, processor, folder = saved[name]
    pipe = pipeline(TASK, model=model, processor=processor, pipeline_class=VideoQuestionAnsweringPipeline)

    _run(inference, [folder, clip, QUESTION, "--max_new_tokens", "4"], monkeypatch)
    printed = _printed(capsys)
    expected = pipe(clip, question=QUESTION, top_k=3, max_new_tokens=4)
    assert len(printed) == 3  # --top_k defaults to 3
    assert [answer for answer, _ in printed] == [item["answer"] for item in expected]
    assert [score for _, score in printed] == pytest.approx([item["score"] for item in expected], abs=1e-4)

    candidates = ["cooking", "running", "red dog"]
    argv = [folder, clip, QUESTION, "--candidates", *candidates, "--top_k", "2", "--num_frames", "2"]
    _run(inference, argv, monkeypatch)
    printed = _printed(capsys)
    expected = pipe(clip, question=QUESTION, candidate_answers=candidates, top_k=2, num_frames=2)
    assert [answer for answer, _ in printed] == [item["answer"] for item in expected]
    assert [score for _, score in printed] == pytest.approx([item["score"] for item in expected], abs=1e-4)
    all_frames = pipe(clip, question=QUESTION, candidate_answers=candidates, top_k=2)
    assert [item["score"] for item in expected] != pytest.approx([item["score"] for item in all_frames], abs=1e-4)


def _reference_patch_weights(model, processor, clip, answer: str) -> np.ndarray:
    """(t, gh, gw) recomputed with explicit loops over layers, heads and queries and the documented token order
    `[CLS, frame 0 patches, frame 1 patches, ...]` (concat: after the question tokens)."""
    encoded = processor(videos=[clip], text=[QUESTION], return_tensors="pt")
    inputs = {k: encoded[k] for k in ("input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask")}
    sequence = model.generate(**inputs, max_new_tokens=10)[0].tolist()
    assert processor.tokenizer.decode(sequence, skip_special_tokens=True).strip() == answer
    end = sequence.index(processor.eos_token_id, 1) if processor.eos_token_id in sequence[1:] else len(sequence) - 1
    decoder_input_ids = torch.tensor([sequence[:end]])  # [DEC] + answer tokens: they predict answer + [SEP]
    with torch.no_grad():
        out = model(**inputs, decoder_input_ids=decoder_input_ids, output_attentions=True, use_cache=False)
    s, n = inputs["input_ids"].shape[1], GRID * GRID
    decoder = [layer[0].numpy() for layer in out.cross_attentions]  # (h, q, s_f) each
    evidence = np.zeros(decoder[0].shape[-1])
    for layer in decoder:
        for head in layer:
            for query in head:
                evidence += query / (len(decoder) * len(layer) * len(head))
    if model.config.fusion_type == "cross":
        fusor = [layer[0].numpy() for layer in out.encoder_outputs.fusion_cross_attentions]  # (h, s, k) each
        video = np.zeros(fusor[0].shape[-1])
        for layer in fusor:
            for head in layer:
                for q in range(s):
                    video += evidence[q] * head[q] / (len(fusor) * len(layer))
    else:
        video = evidence[s:]
    weights = np.zeros((FRAMES, GRID, GRID))
    for frame in range(FRAMES):
        for patch in range(n):
            weights[frame, patch // GRID, patch % GRID] = video[1 + frame * n + patch]
    return weights / weights.sum()


def _check_png(path: Path) -> None:
    assert path.exists()
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    assert pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # frames and a heat map, not only text and lines


@pytest.mark.parametrize("name", ["cross", "concat"])
def test_visualize_attention_per_frame_and_patch(saved, clip, name, tmp_path, monkeypatch, capsys):
    model, processor, folder = saved[name]
    png = tmp_path / "attention.png"
    maps = _run(visualize_attention, [folder, clip, QUESTION, "--output", str(png)], monkeypatch)
    assert f"-> {png}" in capsys.readouterr().out
    _check_png(png)

    frames, frame_weights, patch_weights = maps["frames"], maps["frame_weights"], maps["patch_weights"]
    assert frames.dtype == np.uint8 and frames.shape == (FRAMES, 24, 24, 3)
    sampled = processor.video_processor(clip, return_metadata=True)["video_metadata"][0].frames_indices
    assert [pattern_index(frame) for frame in frames] == list(sampled)  # the sampled frames, in order
    unnormalised = processor.video_processor(clip, do_rescale=False, do_normalize=False)["pixel_values_videos"][0]
    np.testing.assert_allclose(frames, unnormalised.permute(0, 2, 3, 1).round().numpy(), atol=1)  # what it saw
    assert frame_weights.shape == (FRAMES,) and patch_weights.shape == (FRAMES, GRID, GRID)
    assert frame_weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert frame_weights.max() - frame_weights.min() > 1e-3
    np.testing.assert_allclose(patch_weights.sum(axis=(1, 2)), frame_weights, atol=1e-6)
    reference = _reference_patch_weights(model, processor, clip, maps["answer"])
    np.testing.assert_allclose(patch_weights, reference, atol=1e-5)
    assert 0.0 <= maps["cls_weight"] < 1.0


def test_visualize_attention_with_temporal_pooling_has_only_a_patch_map(saved, clip, tmp_path, monkeypatch):
    _, _, folder = saved["cross-mean"]
    png = tmp_path / "pooled.png"
    maps = _run(visualize_attention, [folder, clip, QUESTION, "--output", str(png), "--num_frames", "3"], monkeypatch)
    _check_png(png)
    assert maps["frame_weights"] is None
    assert maps["frames"].shape == (3, 24, 24, 3)
    assert maps["patch_weights"].shape == (1, GRID, GRID)
    assert maps["patch_weights"].sum() == pytest.approx(1.0, abs=1e-5)
