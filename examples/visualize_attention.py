"""Where did MCG look? Generate the answer to one (video, question), then plot how much attention each sampled
frame received and, for the most attended frame, a heat map over its patch grid. One PNG (matplotlib, Agg).

    python examples/visualize_attention.py outputs/demo clip.mp4 "what color is the square?" --output attention.png

What is measured, per `fusion_type` (heads and layers averaged, then the answer positions: the decoder queries
that produce the answer tokens and the final [SEP]):

* `"cross"` (the paper's fusor): the answer generator cross-attends only to the fused *question* tokens, never to
  the video. Video attention is therefore read one step earlier, in the fusor, whose question tokens cross-attend to
  the video tokens (`fusion_cross_attentions`). The two are chained: video weight = sum over question tokens q of
  (decoder attention to q) x (fusor attention of q to the video token). Residual paths and the fusor's own
  self-attention are ignored (as in attention rollout), so the map is an approximation of what the answer used.
* `"concat"` (the official code): the decoder cross-attends to `[question tokens; video tokens]` directly, so the
  weights on the video positions are used (`cls_weight` and the patch maps are shares of that video part; the
  question part is dropped). After the joint re-encoding a video position also carries question information.

Video tokens are `[CLS, frame 0 patches, frame 1 patches, ...]`; the video [CLS] is left out of the maps (its
share is returned as `cls_weight`), so `frame_weights` sums to 1 and equals `patch_weights.sum((1, 2))`.

With `temporal_pooling="mean"` (the `mcg-base` preset) the video tokens are `[CLS, frame-averaged patches]`: no
token belongs to a frame, so per-frame attention does not exist. Then `frame_weights` is None, `patch_weights` is
(1, gh, gw) over the pooled patches and the heat map is drawn over the mean of the sampled frames.
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from modeling_mcg import MCGForVideoQuestionAnswering, MCGProcessor  # noqa: E402

_MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask")


def _model_frames(pixel_values: torch.Tensor, video_processor) -> np.ndarray:
    """Undo rescale + normalise: (t, 3, H, W) model input -> (t, H, W, 3) uint8, exactly the pixels the model saw."""
    video = pixel_values.float().cpu()
    if video_processor.do_normalize:
        mean = torch.tensor(video_processor.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(video_processor.image_std).view(1, 3, 1, 1)
        video = video * std + mean
    if video_processor.do_rescale:
        video = video / video_processor.rescale_factor
    return video.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()


@torch.no_grad()
def attention_maps(model, processor, video, question: str, num_frames: int | None = None, max_new_tokens: int = 10):
    """Answer `question` about `video`, then measure the answer's attention to the video (see the module docstring).

    Returns a dict: `frames` uint8 (t, H, W, 3) (the real frames as the model saw them), `frame_weights` (t,)
    summing to 1 (None with temporal pooling), `patch_weights` (t, gh, gw) (or (1, gh, gw) with temporal pooling),
    `cls_weight` (share on the video [CLS], left out of the maps), `answer`, `question` and `source` (a caption).
    """
    model.eval()
    video_kwargs = {} if num_frames is None else {"num_frames": num_frames}
    encoded = processor(videos=[video], text=[question], return_tensors="pt", **video_kwargs)
    inputs = {key: encoded[key].to(model.device) for key in _MODEL_INPUTS}
    sequence = model.generate(**inputs, max_new_tokens=max_new_tokens)[0]  # [DEC] answer [SEP] (pad)
    answer = processor.tokenizer.decode(sequence, skip_special_tokens=True).strip()
    ends = (sequence[1:] == processor.eos_token_id).nonzero()
    length = int(ends[0]) + 2 if len(ends) else len(sequence)  # up to and including the first [SEP]
    decoder_input_ids = sequence[None, : max(length - 1, 1)]  # the queries that predict answer tokens and [SEP]
    output = model(**inputs, decoder_input_ids=decoder_input_ids, output_attentions=True, use_cache=False)

    # decoder cross-attention: layers x (1, h, q, s_f) -> mean over layers, heads and answer queries -> (s_f,)
    to_evidence = torch.stack(output.cross_attentions).float().mean(dim=(0, 2, 3))[0]
    if model.config.fusion_type == "cross":
        # fusor cross-attention: layers x (1, h, s, k) -> (s, k); chain question-token weights through it
        fusor = torch.stack(output.encoder_outputs.fusion_cross_attentions).float().mean(dim=(0, 2))[0]
        to_video = to_evidence @ fusor  # (k,)
        source = "answer -> fused question tokens (decoder) -> video tokens (fusor cross-attention)"
    else:
        to_video = to_evidence[inputs["input_ids"].shape[1] :]  # (k,): [question; video] -> the video part
        source = "answer -> video positions of [question; video] (decoder cross-attention)"
    to_video = (to_video / to_video.sum()).cpu()

    pixels, frame_mask = inputs["pixel_values_videos"][0], inputs["video_frame_mask"][0].bool().cpu()
    t, (height, width), patch = pixels.shape[0], pixels.shape[-2:], model.config.vision_config.patch_size
    grid_h, grid_w = height // patch, width // patch
    frames = _model_frames(pixels, processor.video_processor)[frame_mask.numpy()]
    patches = to_video[1:]
    if model.config.vision_config.temporal_pooling == "mean":
        patch_weights, frame_weights = patches.view(1, grid_h, grid_w), None  # (1, gh, gw): pooled over frames
    else:
        patch_weights = patches.view(t, grid_h, grid_w)[frame_mask]  # token order [frame 0 patches, frame 1, ...]
        frame_weights = patch_weights.sum(dim=(1, 2)) / patches.sum()  # padded frames hold no attention
    patch_weights = patch_weights / patches.sum()
    return {
        "frames": frames,
        "frame_weights": None if frame_weights is None else frame_weights.numpy(),
        "patch_weights": patch_weights.numpy(),
        "cls_weight": float(to_video[0]),
        "answer": answer,
        "question": question,
        "source": source,
    }


def plot_attention(maps: dict, path) -> None:
    """Frame strip, attention per frame as bars under it, and the most attended frame with its patch heat map."""
    frames, frame_weights, patch_weights = maps["frames"], maps["frame_weights"], maps["patch_weights"]
    t = len(frames)
    figure = plt.figure(figsize=(max(8.0, 1.6 * t), 9.0), layout="constrained")
    figure.suptitle(f"Q: {maps['question']}   A: {maps['answer'] or '(empty)'}\n{maps['source']}", fontsize=10)
    strip, bars, detail = figure.subfigures(3, 1, height_ratios=[1.0, 1.2, 2.2])
    best = int(np.argmax(frame_weights)) if frame_weights is not None else None
    for index, axis in enumerate(strip.subplots(1, t, squeeze=False)[0]):
        axis.imshow(frames[index], interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(f"frame {index}", fontsize=8, color="red" if index == best else "black")
        for spine in axis.spines.values():
            spine.set(color="red" if index == best else "black", linewidth=3 if index == best else 0.5)

    axis = bars.subplots()
    if frame_weights is None:
        note = "no per-frame attention: temporal_pooling='mean' averages the frames before fusion"
        axis.text(0.5, 0.5, note, ha="center", va="center")
        axis.set_axis_off()
        image, label = frames.mean(axis=0).round().astype(np.uint8), "mean of the sampled frames"
        heat = patch_weights[0]
    else:
        axis.bar(np.arange(t), frame_weights, color=["tab:red" if i == best else "tab:blue" for i in range(t)])
        axis.set(xlim=(-0.5, t - 0.5), xticks=np.arange(t), xlabel="frame", ylabel="attention share")
        image, label, heat = frames[best], f"frame {best} (most attended)", patch_weights[best] / frame_weights[best]

    left, right = detail.subplots(1, 2)
    height, width = image.shape[:2]
    left.imshow(image, interpolation="nearest")
    left.set_title(label, fontsize=9)
    right.imshow(image, interpolation="nearest")
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)  # pixel centres at integers, as imshow(image) places them
    overlay = right.imshow(heat, cmap="inferno", alpha=0.6, extent=extent, interpolation="nearest")
    right.set_title("attention over its patches", fontsize=9)
    detail.colorbar(overlay, ax=right, label="share within the frame")
    for axis in (left, right):
        axis.set_xticks([])
        axis.set_yticks([])
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="folder with the model and its processor")
    parser.add_argument("video", help="video file (anything PyAV decodes)")
    parser.add_argument("question")
    parser.add_argument("--output", default="attention.png", help="PNG to write (default attention.png)")
    parser.add_argument("--num_frames", type=int, help="frames to sample (default: the processor's)")
    parser.add_argument("--max_new_tokens", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    model = MCGForVideoQuestionAnswering.from_pretrained(args.model).to(args.device)
    processor = MCGProcessor.from_pretrained(args.model)
    maps = attention_maps(model, processor, args.video, args.question, args.num_frames, args.max_new_tokens)
    plot_attention(maps, args.output)
    if maps["frame_weights"] is not None:
        print("attention per frame:", " ".join(f"{weight:.3f}" for weight in maps["frame_weights"]))
    print(f"answer: {maps['answer']!r}  -> {args.output}")
    return maps


if __name__ == "__main__":
    main()
