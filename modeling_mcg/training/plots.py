"""Plots of a training run: the loss curves (training, its parts, evaluation) and accuracy per answer type."""

from __future__ import annotations

import math
from pathlib import Path

from .evaluation import chance_per_type


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_loss_plot(
    output_dir: Path, log_history: list[dict], loss_parts=(), title: str = "Training loss"
) -> list[str]:
    """`loss_curve.png`: the training loss, each logged loss part, and `eval_loss` at each evaluation."""
    train_logs = [entry for entry in log_history if "loss" in entry and "step" in entry]
    eval_logs = [entry for entry in log_history if "eval_loss" in entry and "step" in entry]
    eval_logs = [entry for entry in eval_logs if entry["eval_loss"] is not None]
    if not train_logs and not eval_logs:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [entry["step"] for entry in train_logs]
    if train_logs:
        ax.plot(steps, [entry["loss"] for entry in train_logs], label="training loss", marker=".")
    for part in loss_parts:
        if any(part in entry for entry in train_logs):
            ax.plot(steps, [entry.get(part, math.nan) for entry in train_logs], label=part, linestyle="--")
    if eval_logs:
        ax.plot(
            [entry["step"] for entry in eval_logs],
            [entry["eval_loss"] for entry in eval_logs],
            label="evaluation loss",
            marker="o",
            color="tab:red",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output_dir / "loss_curve.png", dpi=100)
    plt.close(fig)
    return ["loss_curve.png"]


def write_accuracy_plot(
    output_dir: Path,
    records: list[dict],
    filename: str = "accuracy_per_type.png",
    correct_key: str = "correct",
    title: str = "Accuracy per answer type",
) -> list[str]:
    """Bars of accuracy per answer type labelled with their question counts, the overall accuracy as a line and
    the chance level of each type (1 / candidates, or the most frequent answer's share) as a marker."""
    rows = [record for record in records if correct_key in record]
    if not rows:
        return []
    by_type: dict[str, list[bool]] = {}
    for record in rows:
        by_type.setdefault(record["answer_type"], []).append(bool(record[correct_key]))
    types = list(by_type)
    accuracy = [sum(values) / len(values) for values in by_type.values()]
    overall = sum(sum(values) for values in by_type.values()) / len(rows)
    chance = chance_per_type(rows)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(types) + 2.5), 4))
    bars = ax.bar(types, accuracy, color="tab:blue", label="accuracy")
    for bar, answer_type in zip(bars, types):
        ax.annotate(
            f"n={len(by_type[answer_type])}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.scatter(types, [chance[t] for t in types], marker="_", s=600, color="black", zorder=3, label="chance")
    ax.axhline(overall, color="tab:orange", linestyle="--", label=f"overall {overall:.3f} (n={len(rows)})")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(output_dir / filename, dpi=100)
    plt.close(fig)
    return [filename]
