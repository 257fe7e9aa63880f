"""MSRVTT-QA reader: the original `{split}_qa.json` lists and the ClipBERT/ALPRO `{split}.jsonl` files.

Layout (`data_dir`): `{split}.jsonl` or `txt/{split}.jsonl` (ClipBERT/ALPRO, the files MCG fine-tunes on), else
`{split}_qa.json` (Xu et al.). Videos: `video_dir` (default `<data_dir>/videos`) holding `video<N>.mp4`, directly or
in the official `TrainValVideo/` and `TestVideo/` subfolders.
"""

import os

import datasets

from ._common import (
    VideoIndex,
    check_choice,
    find_annotation,
    finish,
    get_field,
    question_word_type,
    read_clipbert_jsonl,
    read_json_list,
    row,
)

SPLITS = ("train", "val", "test")


def _video_stem(video_id: str | int) -> str:
    """`video7020`, `video7020.mp4` and 7020 all name `video7020`."""
    if isinstance(video_id, int):
        return f"video{video_id}"
    return video_id[: -len(".mp4")] if video_id.endswith(".mp4") else video_id


def _read_original(path: str) -> list[dict]:
    """`[{"answer", "category_id", "id", "question", "video_id": int}, ...]`; types come from the question word."""
    rows = []
    for i, record in enumerate(read_json_list(path)):
        where = f"{path}, record {i}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        question = get_field(record, "question", str, where)
        rows.append(
            row(
                (_video_stem(get_field(record, "video_id", int, where)),),
                question,
                get_field(record, "answer", str, where),
                question_word_type(question),
                str(get_field(record, "id", (int, str), where)),
                where=where,
            )
        )
    return rows


def load_msrvtt_qa(
    data_dir: str, split: str = "train", *, video_dir: str | None = None, on_missing: str = "raise"
) -> datasets.Dataset:
    """MSRVTT-QA `split` ("train", "val", "test") as open-ended rows of `VIDEOQA_FEATURES`."""
    check_choice("split", split, SPLITS)
    path = find_annotation(
        data_dir, [f"{split}.jsonl", os.path.join("txt", f"{split}.jsonl"), f"{split}_qa.json"], f"MSRVTT-QA {split}"
    )
    rows = read_clipbert_jsonl(path, _video_stem) if path.endswith(".jsonl") else _read_original(path)
    video_dir = video_dir or os.path.join(data_dir, "videos")
    roots = [video_dir, os.path.join(video_dir, "TrainValVideo"), os.path.join(video_dir, "TestVideo")]
    return finish(rows, VideoIndex(roots), on_missing, "MSRVTT-QA", path)
