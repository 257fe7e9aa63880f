"""CLEVRER reader: descriptive questions become open-ended rows, the other three kinds multi-label multiple choice.

Layout (`data_dir`): `train.json`, `validation.json`, `test.json` (directly or under `questions/`), each a JSON list
with one entry per video: `{"scene_index", "video_filename", "questions": [...]}`. Videos: `video_dir` (default
`<data_dir>/videos`) holding `video_10000.mp4` directly or in the official folders of 1000
(`video_10000-11000/video_10000.mp4`).

Explanatory, predictive and counterfactual questions list up to 4 options, any number of which can be right:
`correct_choices` lists all of them (each option is judged on its own; see the metric's multilabel mode) and
`answer` is the first right one ("" when none). `answer_type` is the question type; `question_id` is
`<scene_index>_<question_id>`. The test split has no answers: "" and [] then.
"""

import os

import datasets

from ._common import VideoIndex, check_choice, fail, find_annotation, finish, get_field, read_json_list, row

SPLITS = ("train", "validation", "test")
QUESTION_TYPES = ("descriptive", "explanatory", "predictive", "counterfactual")
_CHOICE_ANSWERS = {"correct": True, "wrong": False}


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
) -> datasets.Dataset:
    """CLEVRER `split` ("train", "validation"/"val", "test"); `question_types` keeps only those kinds."""
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
                rows.append(row(video, text, "" if answer is None else str(answer), question_type, question_id))
            else:
                choices, correct = _choices(question, q_where, has_answers)
                answer = choices[correct[0]] if correct else ""
                rows.append(row(video, text, answer, question_type, question_id, choices, correct))
    video_dir = video_dir or os.path.join(data_dir, "videos")
    return finish(rows, VideoIndex([video_dir]), on_missing, "CLEVRER", path)
