"""VideoQA metrics: the offline `evaluate` metric `videoqa_accuracy` and the plain helpers it is built on.

`load_videoqa_metric()` loads the metric from the script shipped inside this package, so it needs no Hub access
(set `HF_EVALUATE_OFFLINE=1` as well: `evaluate` otherwise still probes the network for names it cannot resolve).
"""

import os

from .normalize import STOPWORDS, answer_words, normalize_answer
from .wups import load_wordnet, wordnet_unavailable_reason, wup, wups, wups_score

METRIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "videoqa_accuracy")


def load_videoqa_metric(**kwargs):
    """`evaluate.load` of the bundled `videoqa_accuracy` script; `kwargs` go to `evaluate.load` (experiment_id...)."""
    import evaluate

    return evaluate.load(METRIC_PATH, **kwargs)


def multihot(indices: list[int], num_choices: int) -> list[int]:
    """0/1 list of length `num_choices` with 1 at `indices`: the multilabel input (e.g. from `correct_choices`)."""
    bad = [i for i in indices if not 0 <= i < num_choices]
    if bad:
        raise ValueError(f"choice indices {bad} are outside 0..{num_choices - 1} (num_choices={num_choices})")
    chosen = set(indices)
    return [int(i in chosen) for i in range(num_choices)]


__all__ = [
    "METRIC_PATH",
    "STOPWORDS",
    "answer_words",
    "load_videoqa_metric",
    "load_wordnet",
    "multihot",
    "normalize_answer",
    "wordnet_unavailable_reason",
    "wup",
    "wups",
    "wups_score",
]
