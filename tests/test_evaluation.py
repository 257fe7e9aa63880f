"""`training.compute_metrics`: which predictions each evaluation mode scores, under which names, and how it marks
the records it writes to predictions.jsonl."""

import pytest

from modeling_mcg.training.evaluation import compute_metrics


def records():
    # open answers right on rows 0 and 2; chosen candidates right on rows 0 and 1
    rows = [
        ("red", "red", 1, 1, "color"),
        ("blue", "green", 2, 2, "color"),
        ("Left.", "left", 0, 3, "direction"),
    ]
    return [
        {"prediction": p, "answer": a, "choice_prediction": c, "correct_choice": cc, "answer_type": t}
        for p, a, c, cc, t in rows
    ]


def test_open_mode_scores_the_generated_answers_and_marks_them():
    rows = records()
    metrics = compute_metrics(rows, "open")
    assert metrics["test_accuracy"] == pytest.approx(2 / 3)
    assert metrics["test_accuracy_color"] == pytest.approx(1 / 2) and metrics["test_accuracy_direction"] == 1.0
    assert not any(key.startswith("test_mc_") for key in metrics)
    assert [r["correct"] for r in rows] == [True, False, True]


def test_mc_mode_makes_the_choice_accuracy_the_primary_number():
    rows = records()
    metrics = compute_metrics(rows, "mc", prefix="eval")
    assert metrics["eval_accuracy"] == metrics["eval_mc_accuracy"] == pytest.approx(2 / 3)
    assert metrics["eval_accuracy_direction"] == 0.0
    assert [r["correct"] for r in rows] == [True, True, False] and "mc_correct" not in rows[0]


def test_both_mode_keeps_open_answers_primary_and_choices_apart():
    rows = records()
    metrics = compute_metrics(rows, "both")
    assert metrics["test_accuracy_direction"] == 1.0 and metrics["test_mc_accuracy_direction"] == 0.0
    assert [r["correct"] for r in rows] == [True, False, True]
    assert [r["mc_correct"] for r in rows] == [True, True, False]


def test_no_records_give_no_metrics():
    assert compute_metrics([], "both") == {}
