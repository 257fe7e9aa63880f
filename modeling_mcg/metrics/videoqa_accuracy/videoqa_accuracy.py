"""`videoqa_accuracy`: VideoQA accuracy (open-ended, multiple choice, multi-label) and WUPS, as an `evaluate` metric.

Load it offline with `modeling_mcg.metrics.load_videoqa_metric()` or `evaluate.load("<this folder>")`.

`evaluate` copies this script into its module cache before importing it, so relative imports would break; the
helpers are imported by absolute name from the installed `modeling_mcg` package instead (which ships this script as
package data, so whoever has the script has the package).
"""

import datasets
import evaluate
from transformers.utils import logging

from modeling_mcg.metrics.normalize import normalize_answer
from modeling_mcg.metrics.wups import load_wordnet, wordnet_unavailable_reason, wups_score

logger = logging.get_logger(__name__)

_DESCRIPTION = """
Accuracy for video question answering, overall and per answer type, in three modes chosen by the input type:

- open (predictions and references are strings): exact match after `modeling_mcg.metrics.normalize_answer`
  (NFKC, lowercase, collapse whitespace, strip trailing `.,;:!?`; leading articles only with `strip_articles=True`).
  A prediction is right when it matches the reference or any of its `extra_references`. With WordNet installed it
  also reports WUPS@0 and WUPS@0.9 by the NExT-OE rules (answer types in `wups_exact_types` are scored by exact
  match; max over references; threshold 0.9 really is 0.9).
- mc (integers): the predicted choice index against the correct one.
- multilabel (lists of 0/1, one per option, e.g. CLEVRER): per-option accuracy and per-question accuracy (a question
  counts only when every option is right).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of `str` (open), `int` (mc) or `list[int]` of 0/1 per option (multilabel).
    references: the same type as `predictions`: the answer, the correct index, or the 0/1 correctness of each option.
    answer_types (`list[str]`, optional): one per example; adds `<key>_<type>` for every output key.
    extra_references (`list[list[str]]`, optional, open mode): further acceptable answers per example (e.g. NExT-OE's
        second reference from `modeling_mcg.data.load_nextqa_references`); `[]` or None where there is none.
    mode (`str`, optional): "open", "mc" or "multilabel"; inferred from the type of `predictions` when not given.
    wups (`bool`, default True, open mode): also compute WUPS; without WordNet the keys are left out and a warning
        says how to install it.
    wups_exact_types (`list[str]`, default ["DB", "DC"]): answer types scored by exact match inside WUPS (NExT-OE's
        binary and count questions).
    strip_articles (`bool`, default False): also drop one leading "a", "an" or "the" before exact match.

`answer_types`, `extra_references` and the options are passed to `compute()` for all examples at once, also when
the predictions came in through `add_batch()`.

Returns (all values in [0, 1]):
    open: `accuracy`, `wups_0`, `wups_0.9`, and per type `accuracy_<type>`, `wups_0_<type>`, `wups_0.9_<type>`.
    mc: `accuracy`, `accuracy_<type>`.
    multilabel: `accuracy` (per question), `option_accuracy`, and per type `accuracy_<type>`, `option_accuracy_<type>`.

Examples:
    >>> metric = modeling_mcg.metrics.load_videoqa_metric()
    >>> metric.compute(predictions=["Dog.", "a cat"], references=["dog", "cat"], answer_types=["what", "what"])
    {'accuracy': 0.5, 'accuracy_what': 0.5, 'wups_0': ..., 'wups_0.9': ..., ...}
    >>> metric.compute(predictions=[2, 0], references=[2, 1])["accuracy"]
    0.5
    >>> metric.compute(predictions=[[1, 0, 0, 1]], references=[[1, 0, 1, 1]])
    {'accuracy': 0.0, 'option_accuracy': 0.75}
"""

_FEATURES = [
    datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
    datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
    datasets.Features(
        {
            "predictions": datasets.Sequence(datasets.Value("int64")),
            "references": datasets.Sequence(datasets.Value("int64")),
        }
    ),
]
_MODE_OF_TYPE = {str: "open", int: "mc", list: "multilabel"}


def _mean_by_type(key: str, scores: list[float], answer_types: list[str] | None) -> dict[str, float]:
    """`key`: mean over all; `key_<type>`: mean within each answer type, types in sorted order."""
    out = {key: sum(scores) / len(scores)}
    if answer_types is not None:
        for answer_type in sorted(set(answer_types)):
            selected = [s for s, t in zip(scores, answer_types) if t == answer_type]
            out[f"{key}_{answer_type}"] = sum(selected) / len(selected)
    return out


def _check_length(name: str, values: list | None, n: int) -> None:
    if values is not None and len(values) != n:
        raise ValueError(f"`{name}` has {len(values)} entries but there are {n} predictions: pass one per example")


class VideoqaAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=_FEATURES,
        )

    def _compute(
        self,
        predictions,
        references,
        answer_types=None,
        extra_references=None,
        mode=None,
        wups=True,
        wups_exact_types=("DB", "DC"),
        strip_articles=False,
    ):
        n = len(predictions)
        if n == 0:
            raise ValueError("videoqa_accuracy got no predictions: pass at least one prediction/reference pair")
        inferred = _MODE_OF_TYPE.get(type(predictions[0]))
        if mode is None:
            mode = inferred
        elif mode not in ("open", "mc", "multilabel"):
            raise ValueError(f"mode={mode!r} is not one of 'open', 'mc', 'multilabel'")
        elif mode != inferred:
            raise ValueError(
                f"mode={mode!r} but predictions are {type(predictions[0]).__name__}: open mode takes strings, "
                "mc takes choice indices (int), multilabel takes one 0/1 list per question"
            )
        _check_length("answer_types", answer_types, n)
        _check_length("extra_references", extra_references, n)
        if extra_references is not None and mode != "open":
            raise ValueError(f"`extra_references` only applies to open-ended answers, not to mode={mode!r}")

        if mode == "mc":
            return _mean_by_type("accuracy", [float(p == r) for p, r in zip(predictions, references)], answer_types)
        if mode == "multilabel":
            return self._multilabel(predictions, references, answer_types)
        if isinstance(wups_exact_types, str):  # one type given bare, e.g. "DC"
            wups_exact_types = [wups_exact_types]
        return self._open(
            predictions, references, answer_types, extra_references, wups, set(wups_exact_types), strip_articles
        )

    @staticmethod
    def _multilabel(predictions, references, answer_types):
        question_right, options_right, options = [], [], []
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            if len(pred) != len(ref) or not ref:
                raise ValueError(
                    f"example {i}: prediction has {len(pred)} options and reference {len(ref)}; multilabel mode needs "
                    "one 0/1 entry per option in both (modeling_mcg.metrics.multihot builds them from indices)"
                )
            if any(v not in (0, 1) for v in [*pred, *ref]):
                raise ValueError(f"example {i}: multilabel entries must be 0 or 1, got {pred} and {ref}")
            right = sum(p == r for p, r in zip(pred, ref))
            question_right.append(float(right == len(ref)))
            options_right.append(right)
            options.append(len(ref))
        out = _mean_by_type("accuracy", question_right, answer_types)
        # per-option accuracy pools all options (CLEVRER's definition): questions with more options weigh more
        groups = {"": range(len(options))}
        if answer_types is not None:
            groups.update(
                {f"_{t}": [i for i, u in enumerate(answer_types) if u == t] for t in sorted(set(answer_types))}
            )
        for suffix, idx in groups.items():
            out[f"option_accuracy{suffix}"] = sum(options_right[i] for i in idx) / sum(options[i] for i in idx)
        return out

    @staticmethod
    def _open(predictions, references, answer_types, extra_references, wups, wups_exact_types, strip_articles):
        extra_references = extra_references if extra_references is not None else [None] * len(references)
        all_refs = []
        for i, (ref, extra) in enumerate(zip(references, extra_references)):
            extra = [] if extra is None else extra
            if not isinstance(extra, (list, tuple)) or not all(isinstance(r, str) for r in extra):
                raise ValueError(
                    f"example {i}: extra_references entries must be lists of strings (or None), got {extra!r}"
                )
            all_refs.append([ref, *extra])
        norm_preds = [normalize_answer(p, strip_articles) for p in predictions]
        exact = [
            float(any(p == normalize_answer(r, strip_articles) for r in refs)) for p, refs in zip(norm_preds, all_refs)
        ]
        out = _mean_by_type("accuracy", exact, answer_types)
        if not wups:
            return out
        wordnet = load_wordnet()
        if wordnet is None:
            logger.warning_once(f"videoqa_accuracy: WUPS keys left out: {wordnet_unavailable_reason()}")
            return out
        for name, threshold in (("wups_0", 0.0), ("wups_0.9", 0.9)):
            scores = []
            for i, (pred, refs) in enumerate(zip(predictions, all_refs)):
                if answer_types is not None and answer_types[i] in wups_exact_types:
                    scores.append(exact[i])
                else:
                    scores.append(max(wups_score(pred, ref, threshold, wordnet) for ref in refs))
            out.update(_mean_by_type(name, scores, answer_types))
        return out
