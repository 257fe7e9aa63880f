"""Video–caption pairs for pretraining: WebVid-style csv files, simple csv/jsonl/json lists, and the synthetic set.

Every reader returns a `datasets.Dataset` with `CAPTION_FEATURES` (`video`: an existing file, `caption`: non-empty
text). Accepted annotation files (`load_caption_dataset`):

* the WebVid csv, header `videoid,contentUrl,duration,page_dir,name`: the caption is `name` and the video is
  `<video_dir>/<page_dir>/<videoid>.mp4` (or `<video_dir>/<videoid>.mp4` when the files are not split by page);
* a csv with a `video` (path, relative to `video_dir`) and a `caption` column; `videoid` and `name` are accepted as
  the other spellings of the two columns, and `page_dir` is optional;
* a `.jsonl` file (one object per line) or a `.json` list of objects with the same fields.

Malformed rows raise a `ValueError` naming the file and line. Every video is looked up before anything is returned,
so a missing one is reported up front, with the count and the first five names (`on_missing="raise"`), or dropped
with one warning (`"skip"`).
"""

import csv
import os
from collections.abc import Mapping

import datasets
from transformers.utils import logging

from ._common import ON_MISSING, VideoIndex, check_choice, fail, get_field, inside_root, read_json_list, read_jsonl

logger = logging.get_logger(__name__)

CAPTION_FEATURES = datasets.Features({"video": datasets.Value("string"), "caption": datasets.Value("string")})
VIDEO_COLUMNS = ("video", "videoid")  # first match wins
CAPTION_COLUMNS = ("caption", "name")


def _pick_column(columns, candidates: tuple[str, ...], where: str, what: str) -> str:
    for name in candidates:
        if name in columns:
            return name
    raise fail(where, f"no {what} column: expected one of {list(candidates)}, found {list(columns)}")


def _candidates(video: str, page_dir: str | None, where: str) -> tuple[str, ...]:
    """Relative paths to try for one video: `<page_dir>/<video>` first when a page folder is given, then `<video>`.

    Each must stay inside `video_dir` (`inside_root`): a name or page folder that is absolute or climbs out with
    `..` raises, naming `where`.
    """
    candidates = (os.path.join(page_dir, video), video) if page_dir else (video,)
    for candidate in candidates:
        inside_root(candidate, where)
    return candidates


def _read_csv(path: str) -> list[tuple[str, tuple[str, ...], str]]:
    """(where, video candidates, caption) per data row of a csv with a header line."""
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        header = None
        try:
            for fields in reader:
                where = f"{path}:{reader.line_num}"
                if not fields or all(not field.strip() for field in fields):
                    continue  # blank line
                if header is None:
                    header = [field.strip() for field in fields]
                    video_column = header.index(_pick_column(header, VIDEO_COLUMNS, where, "video"))
                    caption_column = header.index(_pick_column(header, CAPTION_COLUMNS, where, "caption"))
                    page_column = header.index("page_dir") if "page_dir" in header else None
                    continue
                if len(fields) != len(header):
                    raise fail(
                        where,
                        f"expected {len(header)} fields ({','.join(header)}), got {len(fields)}; quote fields that "
                        "contain commas",
                    )
                video = fields[video_column].strip()
                caption = fields[caption_column].strip()
                if not video:
                    raise fail(where, f"empty {header[video_column]!r}")
                if not caption:
                    raise fail(where, f"empty {header[caption_column]!r} (every video needs a caption)")
                page_dir = fields[page_column].strip() if page_column is not None else None
                rows.append((where, _candidates(video, page_dir, where), caption))
        except csv.Error as error:
            raise fail(f"{path}:{reader.line_num}", f"malformed csv: {error}") from None
    if header is None:
        raise ValueError(f"{path}: empty file; expected a header line such as 'video,caption'")
    return rows


def _read_records(path: str) -> list[tuple[str, tuple[str, ...], str]]:
    """(where, video candidates, caption) per object of a jsonl file or a json list."""
    if path.endswith(".jsonl"):
        records = list(read_jsonl(path))
    else:
        records = []
        for i, record in enumerate(read_json_list(path)):
            where = f"{path}, record {i}"
            if not isinstance(record, dict):
                raise fail(where, f"expected a JSON object, got {type(record).__name__}")
            records.append((where, record))
    rows = []
    for where, record in records:
        video_key = _pick_column(record, VIDEO_COLUMNS, where, "video")
        caption_key = _pick_column(record, CAPTION_COLUMNS, where, "caption")
        video = str(get_field(record, video_key, (str, int), where)).strip()
        caption = get_field(record, caption_key, str, where).strip()
        page_dir = get_field(record, "page_dir", (str, int), where, optional=True)
        if not video:
            raise fail(where, f"empty {video_key!r}")
        if not caption:
            raise fail(where, f"empty {caption_key!r} (every video needs a caption)")
        rows.append((where, _candidates(video, None if page_dir is None else str(page_dir), where), caption))
    return rows


def load_caption_dataset(path: str, video_dir: str | None = None, on_missing: str = "raise") -> datasets.Dataset:
    """Read (video, caption) pairs from a `.csv`, `.jsonl` or `.json` annotation file (see the module docstring).

    Args:
        path: the annotation file.
        video_dir: the folder the video names are relative to (default: the annotation file's folder). Names
            without an extension are looked up as .mp4/.mkv/.webm/.avi/.mov. Names must stay inside this folder:
            an absolute path or one that climbs out with `..` raises, naming the row.
        on_missing: "raise" (default) fails when any video is missing, "skip" drops those pairs with a warning.
    """
    check_choice("on_missing", on_missing, ON_MISSING)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"caption file {path} does not exist")
    extension = os.path.splitext(path)[1].lower()
    if extension == ".csv":
        rows = _read_csv(path)
    elif extension in (".jsonl", ".json"):
        rows = _read_records(path)
    else:
        raise ValueError(f"{path}: unsupported caption file type {extension!r}; use .csv, .jsonl or .json")

    index = VideoIndex([video_dir if video_dir is not None else os.path.dirname(os.path.abspath(path))])
    resolved: dict[tuple[str, ...], str | None] = {}
    videos, captions, missing = [], [], []
    for where, candidates, caption in rows:
        if candidates not in resolved:
            resolved[candidates] = index.find(candidates)
        found = resolved[candidates]
        if found is None:
            missing.append((where, candidates))
        else:
            videos.append(found)
            captions.append(caption)
    if missing:
        first_seen: dict[tuple[str, ...], str] = {}
        for where, candidates in missing:
            first_seen.setdefault(candidates, where)
        examples = "; ".join(f"{' or '.join(c)} ({where})" for c, where in list(first_seen.items())[:5])
        summary = (
            f"{path}: {len(missing)} of {len(rows)} captions refer to {len(first_seen)} distinct videos that were "
            f"not found as {index.describe()}. First {min(5, len(first_seen))}: {examples}."
        )
        if on_missing == "raise":
            raise ValueError(f"{summary} Pass `video_dir` (--video_dir) pointing at the videos, or skip them.")
        logger.warning(f"{summary} Dropped them (on_missing='skip').")
    return datasets.Dataset.from_dict({"video": videos, "caption": captions}, features=CAPTION_FEATURES)


def synthetic_captions(
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    num_videos: Mapping[str, int] | int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """(video, caption) pairs of one split of the built-in synthetic set, generating the videos on first use.

    Each caption lists the video's objects in entry order with their motion, e.g. "a red circle moves left, then a
    blue square moves up". `num_videos` is the per-split mapping of `generate_synthetic_videoqa` (the same mapping
    reuses the cached videos of a VideoQA run) or an int, the number of videos of `split` alone.
    """
    from .synthetic import load_synthetic_captions

    if isinstance(num_videos, int):
        num_videos = {split: num_videos}
    return load_synthetic_captions(split=split, cache_dir=cache_dir, num_videos=num_videos, seed=seed)


__all__ = ["CAPTION_FEATURES", "load_caption_dataset", "synthetic_captions"]
