"""ActivityNet-QA reader: `{split}_q.json` and `{split}_a.json`, joined by `question_id`.

Layout (`data_dir`): the two files directly or under `dataset/` (as in the MILVLG/activitynet-qa repository).
Videos: `video_dir` (default `<data_dir>/videos`) holding `v_<id>.mp4|.mkv|.webm`; `video_name` may carry the
`v_` prefix or not, and files named either way are found.
"""

import os

import datasets

from ._common import VideoIndex, check_choice, fail, find_annotation, finish, get_field, read_json_list, row

SPLITS = ("train", "val", "test")
# `type` in the answer files: 0-2 are the structured question kinds, 3-8 the free questions by answer kind
ANSWER_TYPES = ("motion", "spatial", "temporal", "yes_no", "color", "object", "location", "number", "other")


def _records(path: str):
    for i, record in enumerate(read_json_list(path)):
        where = f"{path}, record {i}"
        if not isinstance(record, dict):
            raise fail(where, f"expected a JSON object, got {type(record).__name__}")
        yield where, record


def load_activitynet_qa(
    data_dir: str, split: str = "train", *, video_dir: str | None = None, on_missing: str = "raise"
) -> datasets.Dataset:
    """ActivityNet-QA `split` ("train", "val", "test") as open-ended rows; `answer_type` is named from `type`."""
    check_choice("split", split, SPLITS)
    q_path = find_annotation(
        data_dir, [f"{split}_q.json", f"dataset/{split}_q.json"], f"ActivityNet-QA {split} questions"
    )
    a_path = os.path.join(os.path.dirname(q_path), f"{split}_a.json")
    if not os.path.isfile(a_path):
        raise FileNotFoundError(f"{q_path} has no answer file beside it: expected {a_path}")

    answers: dict[str, tuple[str, str]] = {}
    for where, record in _records(a_path):
        qid = str(get_field(record, "question_id", (str, int), where))
        answer_type = get_field(record, "type", int, where)
        if not 0 <= answer_type < len(ANSWER_TYPES):
            raise fail(where, f"field 'type' should be 0..{len(ANSWER_TYPES) - 1}, got {answer_type}")
        if qid in answers:
            raise fail(where, f"question_id {qid!r} appears twice in the answer file")
        answers[qid] = (get_field(record, "answer", str, where), ANSWER_TYPES[answer_type])

    rows = []
    for where, record in _records(q_path):
        qid = str(get_field(record, "question_id", (str, int), where))
        if qid not in answers:
            raise fail(where, f"question_id {qid!r} has no answer in {a_path}")
        name = get_field(record, "video_name", str, where)
        bare = name[2:] if name.startswith("v_") else name
        answer, answer_type = answers[qid]
        rows.append(
            row((f"v_{bare}", bare), get_field(record, "question", str, where), answer, answer_type, qid, where=where)
        )
    video_dir = video_dir or os.path.join(data_dir, "videos")
    index = VideoIndex([video_dir], extensions=(".mp4", ".mkv", ".webm"))
    return finish(rows, index, on_missing, "ActivityNet-QA", q_path)
