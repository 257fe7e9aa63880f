"""Learning, end to end: a tiny MCG overfits 8 (clip, question, answer) triples whose answers depend on the clip —
its colour (one frame suffices) and its motion direction (needs several frames) — then answers each with
`generate()` and ranks the right answer first with `score_choices()`."""

import torch
from tiny_models import DEC, ENC, SEP, tiny_config

from modeling_mcg import MCGForVideoQuestionAnswering

COLOR_Q, DIRECTION_Q = 20, 21
RED, BLUE, LEFT, RIGHT = 30, 31, 32, 33
COLORS = {RED: (1.0, -1.0, -1.0), BLUE: (-1.0, -1.0, 1.0)}


def make_clip(color, direction, frames=4, size=24, square=8):
    clip = torch.full((frames, 3, size, size), -0.5)
    for f in range(frames):
        x = round(f * (size - square) / (frames - 1))
        x = x if direction == RIGHT else size - square - x
        clip[f, :, 8:16, x : x + square] = torch.tensor(COLORS[color])[:, None, None]
    return clip


def make_triples():
    clips, questions, answers = [], [], []
    for color in (RED, BLUE):
        for direction in (LEFT, RIGHT):
            for question, answer in ((COLOR_Q, color), (DIRECTION_Q, direction)):
                clips.append(make_clip(color, direction))
                questions.append([ENC, question, SEP])
                answers.append([answer, SEP])
    return torch.stack(clips), torch.tensor(questions), torch.tensor(answers)


def test_tiny_model_learns_clip_dependent_answers():
    torch.manual_seed(0)
    config = tiny_config(vision={"temporal_pooling": "none", "temporal_embedding_init_std": 1.0}, label_smoothing=0.0)
    model = MCGForVideoQuestionAnswering(config)
    pixels, input_ids, labels = make_triples()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(300):
        loss = model(input_ids=input_ids, pixel_values_videos=pixels, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    generated = model.generate(input_ids=input_ids, pixel_values_videos=pixels, max_new_tokens=4)
    assert generated[:, 0].eq(DEC).all()
    assert generated[:, 1:3].tolist() == labels.tolist(), f"final loss {loss.item():.4f}"

    candidates = torch.tensor([[[a, SEP]] for a in (RED, BLUE, LEFT, RIGHT)]).squeeze(1)  # (4, 2)
    choice_labels = candidates[None].expand(len(labels), -1, -1)  # (8, 4, 2)
    scores = model.score_choices(input_ids=input_ids, pixel_values_videos=pixels, choice_labels=choice_labels)
    best = candidates[scores.argmax(dim=1), 0]
    assert best.tolist() == labels[:, 0].tolist()
