"""CLEVRER reader: descriptive questions become open-ended rows, the other three kinds multi-label multiple choice.

Layout (`data_dir`): `train.json`, `validation.json`, `test.json` (directly or under `questions/`), each a JSON list
with one entry per video: `{"scene_index", "video_filename", "questions": [...]}`. Videos: `video_dir` (default
`<data_dir>/videos`) holding `video_10000.mp4` directly or in the official folders of 1000
(`video_10000-11000/video_10000.mp4`).

Explanatory, predictive and counterfactual questions list up to 4 options, any number of which can be right:
`correct_choices` lists all of them (each option is judged on its own; see the metric's multilabel mode) and
`answer` is the first right one ("" when none). `answer_type` is the question type; `question_id` is
`<scene_index>_<question_id>`. The test split has no answers: "" and [] then.

`options_as_questions=True` makes each of those questions one correct/wrong row per option instead, the form a
generative model trains and answers on, and `multilabel_records` regroups the judged options for the metric's
multilabel mode (CLEVRER's per-option and per-question accuracy); `examples/run_videoqa.py --dataset clevrer` does
both.
"""

import os

import datasets

from ._common import VideoIndex, check_choice, fail, find_annotation, finish, get_field, read_json_list, row

SPLITS = ("train", "validation", "test")
QUESTION_TYPES = ("descriptive", "explanatory", "predictive", "counterfactual")
_CHOICE_ANSWERS = {"correct": True, "wrong": False}
OPTION_VERDICTS = ("correct", "wrong")  # an option row's answer, in CLEVRER's own words
_OPTION_ID_SEPARATOR = "/option"


def _video_candidates(scene_index: int, filename: str) -> tuple[str, ...]:
    low = scene_index // 1000 * 1000
    return (f"video_{low:05d}-{low + 1000:05d}/{filename}", filename)


def _choices(question: dict, where: str, has_answers: bool) -> tuple[list[str], list[int]]:
    texts, correct = [], []
    options = get_field(question, "choices", list, where)
    if not options:
        raise fail(where, "a multiple-choice question with no choices")
    for k, option in enumerate(options):
        option_where = f"{where}, choice {k}"
        if not isinstance(option, dict):
            raise fail(option_where, f"expected an object with 'choice' and 'answer', got {option!r}")
        texts.append(get_field(option, "choice", str, option_where))
        verdict = get_field(option, "answer", str, option_where, optional=not has_answers)
        if verdict is not None:
            if verdict not in _CHOICE_ANSWERS:
                raise fail(option_where, f"field 'answer' should be 'correct' or 'wrong', got {verdict!r}")
            if _CHOICE_ANSWERS[verdict]:
                correct.append(k)
    return texts, correct


def load_clevrer(
    data_dir: str,
    split: str = "train",
    *,
    video_dir: str | None = None,
    question_types: tuple[str, ...] | list[str] | None = None,
    on_missing: str = "raise",
    options_as_questions: bool = False,
) -> datasets.Dataset:
    """CLEVRER `split` ("train", "validation"/"val", "test"); `question_types` keeps only those kinds.

    `options_as_questions=True` turns every multiple-choice question into one row per option: `"<question>
    <option>"`, answered "correct" or "wrong" (`OPTION_VERDICTS`, also its two choices; "" and no correct choice in
    the test split), with question id `<question_id>/option<k>`. Why: CLEVRER judges each option on its own and any
    number can be right, so ranking the options against each other (`score_choices`) can only ever pick one; as
    rows of their own, an answer generator learns and predicts each verdict, and `multilabel_records` regroups them
    into CLEVRER's per-option and per-question scores.
    """
    split = "validation" if split == "val" else split
    check_choice("split", split, SPLITS)
    wanted = set(QUESTION_TYPES if question_types is None else question_types)
    for question_type in wanted:
        check_choice("question_types entry", question_type, QUESTION_TYPES)
    path = find_annotation(data_dir, [f"{split}.json", os.path.join("questions", f"{split}.json")], f"CLEVRER {split}")
    has_answers = split != "test"
    rows = []
    for i, entry in enumerate(read_json_list(path)):
        where = f"{path}, record {i}"
        if not isinstance(entry, dict):
            raise fail(where, f"expected a JSON object, got {type(entry).__name__}")
        scene = get_field(entry, "scene_index", int, where)
        video = _video_candidates(scene, get_field(entry, "video_filename", str, where))
        for j, question in enumerate(get_field(entry, "questions", list, where)):
            q_where = f"{where}, question {j}"
            if not isinstance(question, dict):
                raise fail(q_where, f"expected a JSON object, got {type(question).__name__}")
            question_type = get_field(question, "question_type", str, q_where)
            if question_type not in QUESTION_TYPES:
                raise fail(q_where, f"question_type should be one of {QUESTION_TYPES}, got {question_type!r}")
            if question_type not in wanted:
                continue
            text = get_field(question, "question", str, q_where)
            question_id = f"{scene}_{get_field(question, 'question_id', (int, str), q_where)}"
            if question_type == "descriptive":
                answer = get_field(question, "answer", (str, int), q_where, optional=not has_answers)
                rows.append(
                    row(video, text, "" if answer is None else str(answer), question_type, question_id, where=where)
                )
            else:
                choices, correct = _choices(question, q_where, has_answers)
                if not options_as_questions:
                    answer = choices[correct[0]] if correct else ""
                    rows.append(row(video, text, answer, question_type, question_id, choices, correct, where=where))
                    continue
                for k, option in enumerate(choices):
                    verdict = OPTION_VERDICTS[0] if k in correct else OPTION_VERDICTS[1]
                    option_id = f"{question_id}{_OPTION_ID_SEPARATOR}{k}"
                    answer, right = (verdict, [OPTION_VERDICTS.index(verdict)]) if has_answers else ("", [])
                    rows.append(
                        row(
                            video,
                            f"{text} {option}",
                            answer,
                            question_type,
                            option_id,
                            list(OPTION_VERDICTS),
                            right,
                            where=where,
                        )
                    )
    video_dir = video_dir or os.path.join(data_dir, "videos")
    return finish(rows, VideoIndex([video_dir]), on_missing, "CLEVRER", path)


def multilabel_records(records: list[dict]) -> tuple[list[list[int]], list[list[int]], list[str]]:
    """Regroup judged option rows into one multi-label record per question: (predictions, references, types).

    `records` are evaluation records of option rows (`load_clevrer(..., options_as_questions=True)`; other rows are
    ignored), each with `question_id`, `answer` ("correct"/"wrong"), `answer_type` and a boolean `correct` (the
    verdict was predicted right). Returns 0/1 lists per question, option order kept, for the `videoqa_accuracy`
    metric's multilabel mode.
    """
    questions: dict[str, dict[int, tuple[int, int]]] = {}
    types: dict[str, str] = {}
    for record in records:
        question_id, separator, k = record["question_id"].rpartition(_OPTION_ID_SEPARATOR)
        if not separator or not k.isdigit():
            continue
        if record["answer"] not in OPTION_VERDICTS:
            raise ValueError(
                f"option {record['question_id']!r} has answer {record['answer']!r}, not one of {OPTION_VERDICTS}: "
                "its split has no verdicts (CLEVRER's test split), so it cannot be scored"
            )
        reference = int(record["answer"] == OPTION_VERDICTS[0])
        prediction = reference if record["correct"] else 1 - reference
        questions.setdefault(question_id, {})[int(k)] = (prediction, reference)
        types[question_id] = record["answer_type"]
    predictions, references = [], []
    for options in questions.values():
        ordered = [options[k] for k in sorted(options)]
        predictions.append([p for p, _ in ordered])
        references.append([r for _, r in ordered])
    return predictions, references, list(types.values())
