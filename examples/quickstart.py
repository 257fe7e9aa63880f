"""Quickstart, end to end in about a minute on a CPU: write 4 short clips with PyAV, build a tiny MCG and its
processor, overfit 8 (clip, question, answer) triples, then answer with `generate()` and rank candidates with
`score_choices()`. The answers depend on the clip: its colour (one frame tells) and its motion (needs several).

    python examples/quickstart.py
"""

import os
import tempfile

import av
import numpy as np
import torch

from modeling_mcg import MCGConfig, MCGForVideoQuestionAnswering, MCGProcessor, MCGVideoProcessor

COLORS = {"red": (230, 30, 30), "blue": (30, 60, 230)}


def write_clip(path, color, direction, frames=16, size=64, square=20):
    """A coloured square crossing a dark frame, left→right or right→left, as H.264."""
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for f in range(frames):
            image = np.full((size, size, 3), 20, dtype=np.uint8)
            x = round(f * (size - square) / (frames - 1))
            x = x if direction == "right" else size - square - x
            image[22 : 22 + square, x : x + square] = COLORS[color]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def main(steps: int = 300, seed: int = 0):
    torch.manual_seed(seed)
    folder = tempfile.mkdtemp()
    videos, questions, answers = [], [], []
    for color in COLORS:
        for direction in ("left", "right"):
            path = os.path.join(folder, f"{color}_{direction}.mp4")
            write_clip(path, color, direction)
            for question, answer in (("what color is the square?", color), ("which way does it move?", direction)):
                videos.append(path)
                questions.append(question)
                answers.append(answer)

    config = MCGConfig.from_json_file(os.path.join(os.path.dirname(__file__), "..", "hub_configs", "mcg-tiny.json"))
    config = MCGConfig(**{**config.to_dict(), "label_smoothing": 0.0})
    side = config.vision_config.image_size  # frames are resized to the size the patch embedding was built for
    words = sorted({w for text in questions + answers for w in text.replace("?", " ?").split()})
    processor = MCGProcessor.from_vocabulary(
        words, MCGVideoProcessor(num_frames=4, size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    )
    config.question_config.vocab_size = config.decoder.vocab_size = len(processor.tokenizer)
    model = MCGForVideoQuestionAnswering(config)

    inputs = processor(videos=videos, text=questions, answers=answers, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for step in range(steps):
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}")

    model.eval()
    question_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    generated = processor.batch_decode(model.generate(**question_inputs, max_new_tokens=4), skip_special_tokens=True)
    candidates = [list(COLORS) + ["left", "right"]] * len(questions)
    scores = model.score_choices(**processor(videos=videos, text=questions, choices=candidates, return_tensors="pt"))
    ranked = [candidates[i][j] for i, j in enumerate(scores.argmax(dim=1).tolist())]
    for video, question, answer, predicted, best in zip(videos, questions, answers, generated, ranked):
        print(f"{os.path.basename(video):16s} {question:28s} answer={answer:6s} generate={predicted:6s} choice={best}")
    accuracy = sum(p == a for p, a in zip(generated, answers)) / len(answers)
    print(f"generate() exact-match accuracy: {accuracy:.2f}")
    return accuracy


if __name__ == "__main__":
    main()
