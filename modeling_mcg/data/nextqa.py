"""NExT-QA reader: multiple choice (doc-doc/NExT-QA) and open-ended (doc-doc/NExT-OE) csv files.

Layout (`data_dir`): `{split}.csv` — MC header `video,frame_count,width,height,question,answer,qid,type,a0,...,a4`
with `answer` the index of the right option; OE header without `a0..a4` and a free-text `answer`. The video id maps
through `map_vid_vidorID.json` (`{"4010069381": "1025/4010069381"}`, default `<data_dir>/map_vid_vidorID.json`) to
`<video_dir>/1025/4010069381.mp4`; without that file, or for ids it lacks, `<video_dir>/<id>.mp4` is tried.
`video_dir` defaults to `<data_dir>/videos`. `question_id` is `<video>_<qid>` (qid counts within a video).

The schema has one answer per row, so NExT-OE's second reference answers (`add_reference_answer_{val,test}.json`)
come from `load_nextqa_references`, keyed by `question_id`, for the metric's `extra_references`.
"""

import csv
import os

import datasets
from transformers.utils import logging

from ._common import VideoIndex, check_choice, fail, finish, inside_root, read_json, row

logger = logging.get_logger(__name__)

SPLITS = ("train", "val", "test")
TASKS = ("mc", "oe")
NUM_CHOICES = 5
_COLUMNS = ("video", "question", "answer", "qid", "type")
_CHOICE_COLUMNS = tuple(f"a{i}" for i in range(NUM_CHOICES))


def _read_csv(path: str, task: str) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        required = _COLUMNS + (_CHOICE_COLUMNS if task == "mc" else ())
        missing = [c for c in required if c not in header]
        if missing:
            hint = " (an open-ended csv: use task='oe')" if task == "mc" and "a0" not in header else ""
            raise fail(f"{path}:1", f"header lacks columns {missing}{hint}; header is {header}")
        rows, seen = [], set()
        for record in reader:
            where = f"{path}:{reader.line_num}"
            if None in record or any(record[c] is None for c in header):
                raise fail(where, f"expected {len(header)} comma-separated fields as in the header")
            video, qid, answer = record["video"].strip(), record["qid"].strip(), record["answer"].strip()
            if not video or not qid.isdigit():
                raise fail(where, f"need a video id and an integer qid, got video={video!r} qid={qid!r}")
            question_id = f"{video}_{qid}"
            if question_id in seen:
                raise fail(where, f"(video, qid) = ({video}, {qid}) appears twice")
            seen.add(question_id)
            common = {"question": record["question"].strip(), "answer_type": record["type"].strip()}
            if task == "mc":
                if not answer.isdigit() or int(answer) >= NUM_CHOICES:
                    raise fail(where, f"MC answer should be an option index 0..{NUM_CHOICES - 1}, got {answer!r}")
                choices = [record[c].strip() for c in _CHOICE_COLUMNS]
                rows.append(
                    row(
                        (video,),
                        answer=choices[int(answer)],
                        question_id=question_id,
                        choices=choices,
                        correct_choices=[int(answer)],
                        where=where,
                        **common,
                    )
                )
            else:
                if not answer:
                    raise fail(where, "empty answer")
                rows.append(row((video,), answer=answer, question_id=question_id, where=where, **common))
    return rows


def load_nextqa(
    data_dir: str,
    split: str = "train",
    *,
    task: str = "mc",
    video_dir: str | None = None,
    map_file: str | None = None,
    on_missing: str = "raise",
) -> datasets.Dataset:
    """NExT-QA `split` ("train", "val", "test"); `task="mc"`: 5-way multiple choice, `"oe"`: open-ended."""
    check_choice("split", split, SPLITS)
    check_choice("task", task, TASKS)
    path = os.path.join(data_dir, f"{split}.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no NExT-QA {split} csv at {path}; check `data_dir` and `split`")
    rows = _read_csv(path, task)

    if map_file is None and os.path.isfile(os.path.join(data_dir, "map_vid_vidorID.json")):
        map_file = os.path.join(data_dir, "map_vid_vidorID.json")
    if map_file is not None:
        mapping = read_json(map_file)
        if not isinstance(mapping, dict):
            raise ValueError(f"{map_file}: expected a JSON object {{video id: 'folder/video id'}}")
        for r in rows:
            if r["video"][0] in mapping:
                mapped = inside_root(
                    str(mapping[r["video"][0]]), f"{map_file}, video {r['video'][0]!r}", "mapped path"
                )
                r["video"] = (mapped, r["video"][0])
    video_dir = video_dir or os.path.join(data_dir, "videos")
    return finish(rows, VideoIndex([video_dir]), on_missing, f"NExT-QA ({task})", path)


def load_nextqa_references(data_dir: str, split: str, *, reference_file: str | None = None) -> dict[str, list[str]]:
    """NExT-OE's extra reference answers as {question_id: [answer, ...]} (same ids as `load_nextqa`).

    Reads `add_reference_answer_{split}.json` (`{video: {qid: answer}}`). Use with the metric as
    `extra_references=[refs.get(q, []) for q in dataset["question_id"]]`. A split without such a file (train, or val
    in MCG's archive) gives {} and a warning.
    """
    check_choice("split", split, SPLITS)
    path = reference_file or os.path.join(data_dir, f"add_reference_answer_{split}.json")
    if not os.path.isfile(path):
        logger.warning(f"no extra NExT-OE reference answers for {split}: {path} does not exist")
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{video: {{qid: answer}}}}, got {type(data).__name__}")
    references = {}
    for video, per_question in data.items():
        if not isinstance(per_question, dict):
            raise ValueError(f"{path}, video {video!r}: expected {{qid: answer}}, got {per_question!r}")
        for qid, answer in per_question.items():
            answers = [answer] if isinstance(answer, str) else answer
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise ValueError(f"{path}, video {video!r}, qid {qid!r}: expected an answer string, got {answer!r}")
            references[f"{video}_{qid}"] = [a.strip() for a in answers]
    return references
