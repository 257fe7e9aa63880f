"""MSVD-QA reader: the original `{split}_qa.json` + `youtube_mapping.txt`, and the ClipBERT/ALPRO `{split}.jsonl`.

Layout (`data_dir`): `{split}.jsonl` or `txt/{split}.jsonl` (ClipBERT/ALPRO; `video_id` is the clip name, with or
without `.avi`), else `{split}_qa.json` with integer `video_id`s that `youtube_mapping.txt` (`<clip_name> vid<N>`
per line; default `<data_dir>/youtube_mapping.txt`) maps to clip names. Videos: `video_dir` (default
`<data_dir>/videos`) holding `<clip_name>.avi` (other video extensions are accepted too), directly or in the
official `YouTubeClips/` subfolder.
"""

import os

import datasets

from ._common import (
    VIDEO_EXTENSIONS,
    VideoIndex,
    check_choice,
    fail,
    find_annotation,
    finish,
    get_field,
    question_word_type,
    read_clipbert_jsonl,
    read_json_list,
    row,
)

SPLITS = ("train", "val", "test")


def _clip_stem(video_id: str | int) -> str:
    if isinstance(video_id, int):
        raise ValueError(f"video_id should be the clip name (e.g. '-4wsuPCjDBc_5_15'), got the number {video_id}")
    return video_id[: -len(".avi")] if video_id.lower().endswith(".avi") else video_id


def read_youtube_mapping(path: str) -> dict[int, str]:
    """`youtube_mapping.txt`: `<clip_name> vid<N>` per line → {N: clip_name}."""
    mapping = {}
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].startswith("vid") or not parts[1][3:].isdigit():
                raise fail(f"{path}:{lineno}", f"expected '<clip_name> vid<N>', got {line.strip()!r}")
            mapping[int(parts[1][3:])] = parts[0]
    return mapping


def _read_original(path: str, mapping_file: str) -> list[dict]:
    if not os.path.isfile(mapping_file):
        raise FileNotFoundError(
            f"{path} uses integer video ids, which need youtube_mapping.txt; not found at {mapping_file}. "
            "Pass `mapping_file=` (it ships with MSVD-QA)."
        )
    mapping = read_youtube_mapping(mapping_file)
    rows = []
    for i, record in enumerate(read_json_list(path)):
        where = f"{path}, record {i}"
        if not isinstance(record, dict):
            raise fail(where, f"expected a JSON object, got {type(record).__name__}")
        question = get_field(record, "question", str, where)
        video_id = get_field(record, "video_id", int, where)
        if video_id not in mapping:
            raise fail(where, f"video_id {video_id} has no 'vid{video_id}' line in {mapping_file}")
        rows.append(
            row(
                (mapping[video_id],),
                question,
                get_field(record, "answer", str, where),
                question_word_type(question),
                str(get_field(record, "id", (int, str), where)),
                where=where,
            )
        )
    return rows


def load_msvd_qa(
    data_dir: str,
    split: str = "train",
    *,
    video_dir: str | None = None,
    mapping_file: str | None = None,
    on_missing: str = "raise",
) -> datasets.Dataset:
    """MSVD-QA `split` ("train", "val", "test") as open-ended rows of `VIDEOQA_FEATURES`."""
    check_choice("split", split, SPLITS)
    path = find_annotation(
        data_dir, [f"{split}.jsonl", os.path.join("txt", f"{split}.jsonl"), f"{split}_qa.json"], f"MSVD-QA {split}"
    )
    if path.endswith(".jsonl"):
        rows = read_clipbert_jsonl(path, _clip_stem)
    else:
        rows = _read_original(path, mapping_file or os.path.join(data_dir, "youtube_mapping.txt"))
    video_dir = video_dir or os.path.join(data_dir, "videos")
    index = VideoIndex([video_dir, os.path.join(video_dir, "YouTubeClips")], extensions=(".avi", *VIDEO_EXTENSIONS))
    return finish(rows, index, on_missing, "MSVD-QA", path)
