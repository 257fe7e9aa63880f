"""Shared plumbing of the VideoQA readers: file reading with located errors, video lookup, Dataset building.

Every reader builds plain row dicts whose `video` is a tuple of candidate relative paths, then calls `finish`, which
resolves all videos at once and reports the missing ones before any training starts (`on_missing="raise"`), or drops
them with one warning (`"skip"`).

Ids from annotation files become paths, so each one is checked to stay inside the folder it is looked up in
(`inside_root`): an absolute path or one that climbs out with `..` raises, naming the row, whatever `on_missing`
says. Symbolic links inside a data folder are followed: video folders are commonly links to the storage that holds
the files, and only whoever controls the folder can create them, not the annotation file.
"""

import json
import math
import os
from collections.abc import Iterable, Iterator

import datasets
from transformers.utils import logging

from .schema import COLUMNS, VIDEOQA_FEATURES

logger = logging.get_logger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
ON_MISSING = ("raise", "skip")


def fail(where: str, message: str) -> ValueError:
    """The error for a malformed record: `where` is "file:line" or "file, record i"; `message` says what is wrong."""
    return ValueError(f"{where}: {message}")


def inside_root(name: str, where: str, what: str = "video id") -> str:
    """`name` if, joined to any folder, it stays inside that folder; else a ValueError naming `where`."""
    normalized = os.path.normpath(name) if name else ""
    if (
        "\0" in name
        or os.path.isabs(name)
        or normalized in ("", ".", os.pardir)
        or normalized.startswith(os.pardir + os.sep)
    ):
        raise fail(
            where,
            f"{what} {name!r} does not name a file inside the data folder: ids must be relative paths that do not "
            "climb out with '..' (an absolute path or '../' would read files outside the folder the reader was "
            "given). Fix the annotation, or move the file under the folder.",
        )
    return name


def check_choice(name: str, value: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {allowed}")
    return value


def find_annotation(data_dir: str, candidates: Iterable[str], what: str) -> str:
    """The first of `candidates` (relative to `data_dir`) that exists, or a FileNotFoundError listing all tried."""
    tried = [os.path.join(data_dir, c) for c in candidates]
    for path in tried:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"no {what} found; looked for: {', '.join(tried)}. Check `data_dir` and `split`.")


def read_json(path: str):
    """Parse a whole JSON file; a syntax error names the file, line and column."""
    with open(path, encoding="utf-8-sig") as fh:
        text = fh.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None


def read_json_list(path: str) -> list:
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got a {type(data).__name__}")
    return data


def read_jsonl(path: str) -> Iterator[tuple[str, dict]]:
    """Yield ("file:line", record) for each non-empty line; a line that is not a JSON object raises there."""
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise fail(where, f"invalid JSON: {err.msg} (column {err.colno})") from None
            if not isinstance(record, dict):
                raise fail(where, f"expected a JSON object, got {type(record).__name__}")
            yield where, record


def get_field(record: dict, key: str, types: type | tuple[type, ...], where: str, optional: bool = False):
    """`record[key]`, checked against `types`; a missing or mistyped field raises naming the place and the field."""
    if key not in record or record[key] is None:
        if optional:
            return None
        raise fail(where, f"missing field {key!r} (fields present: {sorted(record)})")
    value = record[key]
    # bool is an int subclass: a true/false where a number belongs is a data error, not 1/0
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        names = "/".join(t.__name__ for t in _as_tuple(types))
        raise fail(where, f"field {key!r} should be {names}, got {type(value).__name__} {value!r}")
    return value


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def parse_float(value, where: str, field: str) -> float | None:
    """A number from a JSON/CSV field; NaN becomes None (unknown)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise fail(where, f"field {field!r} should be a number, got {value!r}") from None
    return None if math.isnan(number) else number


def question_word_type(question: str) -> str:
    """Answer type from the question word, as MSRVTT-QA/MSVD-QA results are broken down (what/who/how/where/when).

    "color" when the question mentions a colour, "other" when no question word leads.
    """
    words = question.lower().replace("?", " ").split()
    if "color" in words or "colour" in words:
        return "color"
    if words and words[0] in ("what", "who", "how", "where", "when", "why", "which"):
        return words[0]
    return "other"


def row(
    video: tuple[str, ...],
    question: str,
    answer: str,
    answer_type: str,
    question_id: str,
    choices: list[str] | None = None,
    correct_choices: list[int] | None = None,
    subtitles: str = "",
    start: float | None = None,
    end: float | None = None,
    *,
    where: str,
) -> dict:
    """One row in `VIDEOQA_FEATURES` order; `video` holds candidate relative paths until `finish` resolves them.

    `where` ("file:line" or "file, record i") names the row in the error raised when a candidate would leave the
    video folder.
    """
    for candidate in video:
        inside_root(candidate, where)
    return {
        "video": video,
        "question": question,
        "answer": answer,
        "answer_type": answer_type,
        "choices": choices or [],
        "correct_choices": correct_choices or [],
        "subtitles": subtitles,
        "start": start,
        "end": end,
        "question_id": question_id,
    }


class VideoIndex:
    """Finds videos (or frame folders) under one or more roots, listing each directory once.

    A candidate is a relative path with or without extension ("video7020", "1025/4010069381", "clip.avi"). Without
    a known extension each of `extensions` is tried; with `allow_dirs`, a non-empty folder of that name also counts
    (TVQA ships frames, not videos).
    """

    def __init__(self, roots: list[str], extensions: tuple[str, ...] = VIDEO_EXTENSIONS, allow_dirs: bool = False):
        self.roots = [os.path.abspath(r) for r in roots]
        self.extensions = extensions
        self.allow_dirs = allow_dirs
        self._listing: dict[str, tuple[set[str], set[str]]] = {}

    def _list(self, directory: str) -> tuple[set[str], set[str]]:
        if directory not in self._listing:
            files, dirs = set(), set()
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        (dirs if entry.is_dir() else files).add(entry.name)
            except (FileNotFoundError, NotADirectoryError):
                pass
            self._listing[directory] = (files, dirs)
        return self._listing[directory]

    def find(self, candidates: tuple[str, ...]) -> str | None:
        for root in self.roots:
            for candidate in candidates:
                path = os.path.normpath(os.path.join(root, candidate))
                if os.path.commonpath([root, path]) != root:  # readers check ids with `inside_root` already
                    continue
                directory, name = os.path.split(path)
                files, dirs = self._list(directory)
                if os.path.splitext(name)[1].lower() in self.extensions and name in files:
                    return os.path.join(directory, name)
                for ext in self.extensions:
                    if name + ext in files:
                        return os.path.join(directory, name + ext)
                if self.allow_dirs and name in dirs and any(self._list(os.path.join(directory, name))[0]):
                    return os.path.join(directory, name)
        return None

    def describe(self) -> str:
        kinds = "/".join(self.extensions) + (" files or non-empty frame folders" if self.allow_dirs else " files")
        return f"{kinds} under {', '.join(self.roots)}"


def finish(rows: list[dict], index: VideoIndex, on_missing: str, dataset: str, annotation: str) -> datasets.Dataset:
    """Resolve every row's video, handle the missing ones per `on_missing`, and build the Dataset."""
    check_choice("on_missing", on_missing, ON_MISSING)
    resolved: dict[tuple[str, ...], str | None] = {}
    kept, missing = [], []
    for r in rows:
        if r["video"] not in resolved:
            resolved[r["video"]] = index.find(r["video"])
        path = resolved[r["video"]]
        if path is None:
            missing.append(r)
        else:
            kept.append({**r, "video": path})
    if missing:
        videos = list(dict.fromkeys(r["video"] for r in missing))
        examples = "; ".join(" or ".join(v) for v in videos[:5])
        summary = (
            f"{dataset}: {len(missing)} of {len(rows)} questions in {annotation} refer to {len(videos)} distinct "
            f"videos that were not found as {index.describe()}. First {min(5, len(videos))}: {examples}."
        )
        if on_missing == "raise":
            raise ValueError(
                f"{summary} Pass the folder that holds them (--video_dir in examples/run_videoqa.py, `video_dir=` "
                "in Python), or drop these questions (--on_missing_video skip, `on_missing='skip'`)."
            )
        logger.warning(f"{summary} Dropped them (on_missing='skip').")
    columns = {name: [r[name] for r in kept] for name in COLUMNS}
    return datasets.Dataset.from_dict(columns, features=VIDEOQA_FEATURES)


def read_clipbert_jsonl(path: str, video_stem) -> list[dict]:
    """Rows from the ClipBERT/ALPRO jsonl shared by MSRVTT-QA and MSVD-QA.

    `{"answer", "question", "video_id", "answer_type"}` per line; `video_stem(video_id)` gives the file name without
    extension (a ValueError from it is reported at the line). The format has no question ids: a `question_id`
    field is used when present, else `<video stem>_<k>` with k counting that video's questions in file order. A
    missing `answer_type` is derived from the question word.
    """
    rows, per_video = [], {}
    for where, record in read_jsonl(path):
        question = get_field(record, "question", str, where)
        answer = get_field(record, "answer", str, where)
        try:
            stem = video_stem(get_field(record, "video_id", (str, int), where))
        except ValueError as err:
            raise fail(where, str(err)) from None
        answer_type = get_field(record, "answer_type", str, where, optional=True) or question_word_type(question)
        qid = get_field(record, "question_id", (str, int), where, optional=True)
        if qid is None:
            qid = f"{stem}_{per_video.get(stem, 0)}"
            per_video[stem] = per_video.get(stem, 0) + 1
        rows.append(row((stem,), question, answer, answer_type, str(qid), where=where))
    return rows
