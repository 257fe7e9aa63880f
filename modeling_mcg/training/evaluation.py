"""Answering an evaluation set (generation and/or candidate scoring) on every rank, and its metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasets
import torch
from accelerate.utils import gather_object

from ..data.clevrer import multilabel_records
from ..metrics import load_videoqa_metric, normalize_answer

EVAL_MODES = ("auto", "open", "mc", "both")
MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask", "video_index")


def resolve_eval_mode(mode: str, eval_ds: datasets.Dataset, open_and_mc: bool = False) -> str:
    """`open` (generate), `mc` (score_choices) or `both`. `auto` is open when some question has no candidates, else
    mc, or both when `open_and_mc` (open-ended questions that also come with candidates, as in the synthetic set)."""
    if mode not in EVAL_MODES:
        raise ValueError(f"--eval_mode must be one of {', '.join(EVAL_MODES)}; got {mode!r}.")
    all_have_choices = all(len(c) > 0 for c in eval_ds["choices"])
    if mode == "auto":
        if not all_have_choices:
            return "open"
        return "both" if open_and_mc else "mc"
    if mode in ("mc", "both") and not all_have_choices:
        raise ValueError(f"--eval_mode {mode} needs candidate answers for every question; some rows have none.")
    return mode


@torch.no_grad()
def predict_answers(
    accelerator,
    model,
    dataloader,
    question_ids: Sequence[str],
    mode: str,
    tokenizer,
    generation_kwargs: dict[str, Any] | None = None,
    with_loss: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, int], float | None]:
    """Answer each rank's shard of `dataloader` (a collator `with_meta=True`), then gather every record on every rank.

    Returns the records in dataset order (`question_ids` is the dataset's column; the repeats that pad the last
    batch of some ranks are dropped), the skips (`{"skipped_videos": undecodable videos met, once per batch that
    asks about them, "skipped_questions": questions dropped with them}`), and the mean
    answer loss when `with_loss`. Collective: call it on every rank.
    """
    model = accelerator.unwrap_model(model)
    was_training = model.training
    model.eval()
    records, skipped, loss_sum, loss_rows = [], [0, 0], 0.0, 0
    try:
        for batch in dataloader:
            meta = batch.pop("meta")
            skipped[0] += int(batch.pop("num_skipped_videos"))
            skipped[1] += int(batch.pop("num_skipped_questions"))
            if not meta:
                continue
            inputs = {k: batch[k] for k in MODEL_INPUTS}
            if with_loss:
                loss_sum += float(model(**inputs, labels=batch["labels"]).loss) * len(meta)
                loss_rows += len(meta)
            generated = choice_index = None
            if mode in ("open", "both"):
                ids = model.generate(**inputs, **(generation_kwargs or {}))
                generated = [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
            if mode in ("mc", "both"):
                scores = model.score_choices(**inputs, choice_labels=batch["choice_labels"])
                choice_index = scores.argmax(dim=1).tolist()
            for i, row in enumerate(meta):
                record = {k: row[k] for k in ("question_id", "question", "answer", "answer_type")}
                if generated is not None:
                    record["prediction"] = generated[i]
                if choice_index is not None:
                    record["choices"] = row["choices"]
                    record["choice_prediction"] = choice_index[i]
                    record["correct_choice"] = row["correct_choices"][0]
                    record.setdefault("prediction", row["choices"][choice_index[i]])
                records.append(record)
    finally:
        model.train(was_training)
    records = gather_object(records)
    videos, questions = (sum(values) for values in zip(*gather_object([tuple(skipped)])))
    skipped = {"skipped_videos": videos, "skipped_questions": questions}
    loss_sum, loss_rows = (sum(values) for values in zip(*gather_object([(loss_sum, loss_rows)])))
    position = {question_id: index for index, question_id in enumerate(question_ids)}
    unique: dict[str, dict] = {}
    for record in records:  # the last batch is padded with repeats on some ranks
        unique.setdefault(record["question_id"], record)
    ordered = sorted(unique.values(), key=lambda record: position[record["question_id"]])
    return ordered, skipped, (loss_sum / loss_rows if with_loss and loss_rows else None)


def compute_metrics(
    records: list[dict], mode: str, prefix: str = "test", multilabel: bool = False
) -> dict[str, float]:
    """Accuracy of `records` (overall and per answer type) under `prefix`; marks each record `correct`.

    `mode` "open" scores the generated answers, "mc" the chosen candidates (then `{prefix}_accuracy` is the choice
    accuracy), "both" both (`{prefix}_mc_accuracy` for the choices); `multilabel` adds the per-question scores of
    CLEVRER's option rows.
    """
    if not records:
        return {}
    metric = load_videoqa_metric()
    types = [r["answer_type"] for r in records]
    out: dict[str, float] = {}

    def score(predicted: str, reference: str, metric_mode: str, names: tuple[str, ...]) -> None:
        result = metric.compute(
            predictions=[r[predicted] for r in records],
            references=[r[reference] for r in records],
            answer_types=types,
            mode=metric_mode,
        )
        for name in names:
            out.update({f"{prefix}_{name}{k}": v for k, v in result.items()})

    if mode in ("open", "both"):
        score("prediction", "answer", "open", ("",))
        for r in records:
            r["correct"] = normalize_answer(r["prediction"]) == normalize_answer(r["answer"])
    if mode in ("mc", "both"):
        # the primary number of a multiple-choice set is its choice accuracy
        score("choice_prediction", "correct_choice", "mc", ("mc_", "") if mode == "mc" else ("mc_",))
        for r in records:
            r["correct" if mode == "mc" else "mc_correct"] = r["choice_prediction"] == r["correct_choice"]
    if multilabel:
        # option rows regrouped per question: `accuracy` counts a question only when every option is judged right
        predictions, references, multilabel_types = multilabel_records(records)
        if predictions:
            result = metric.compute(
                predictions=predictions, references=references, answer_types=multilabel_types, mode="multilabel"
            )
            out.update({f"{prefix}_multilabel_{k}": v for k, v in result.items()})
    return out


def chance_per_type(records: list[dict]) -> dict[str, float]:
    """Per answer type, the accuracy of guessing: 1 / number of candidates when the questions have candidates,
    else the share of the type's most frequent answer (always answering it)."""
    by_type: dict[str, list[dict]] = {}
    for record in records:
        by_type.setdefault(record["answer_type"], []).append(record)
    chance = {}
    for answer_type, rows in by_type.items():
        if all(row.get("choices") for row in rows):
            chance[answer_type] = sum(1 / len(row["choices"]) for row in rows) / len(rows)
        else:
            counts = Counter(normalize_answer(row["answer"]) for row in rows)
            chance[answer_type] = counts.most_common(1)[0][1] / len(rows)
    return chance
