"""TVQA reader: `tvqa_{split}.jsonl` questions, subtitles from raw SRT files or the preprocessed jsonl.

Layout (`data_dir`): `tvqa_train.jsonl`, `tvqa_val.jsonl`, `tvqa_test_public.jsonl` (no answers: `answer` is "" and
`correct_choices` empty). Videos: `video_dir` (default `<data_dir>/videos`) holding `<vid_name>.mp4` (or another
video extension) or a non-empty frame folder `<vid_name>/` — TVQA ships 3 fps JPEG frames, not videos — directly or
inside the per-show `*_frames/` folders of the official frame archive.

Subtitles (`subtitles="auto"`): `<data_dir>/tvqa_preprocessed_subtitles.jsonl` if present, else the SRT folder
`<data_dir>/tvqa_subtitles/`; or pass either path, or None for none. Only the lines overlapping the question's
`ts` span widened by `subtitle_margin` seconds are kept (all lines when `ts` is NaN), joined by spaces, each as
"Speaker : text" (SRT's "(Speaker:) text" is rewritten to that form so both sources give the same string).

A `vid_name` names both a video (or frame folder) under `video_dir` and an SRT file in the subtitle folder, so one
that is absolute or climbs out with `..` raises, naming the line, before either is looked up.

`ts` "start-end" becomes `start`/`end`; a NaN `ts` leaves both None (the whole clip) rather than TVQA's stand-in
[10, 30]. `answer_type` is the question word (what, who, why, where, how, ...), as TVQA's results are broken down.
"""

import os
import re

import datasets
from transformers.utils import logging

from ._common import (
    VideoIndex,
    check_choice,
    fail,
    finish,
    get_field,
    parse_float,
    question_word_type,
    read_jsonl,
    row,
)

logger = logging.get_logger(__name__)

SPLIT_FILES = {"train": "tvqa_train.jsonl", "val": "tvqa_val.jsonl", "test": "tvqa_test_public.jsonl"}
NUM_CHOICES = 5
_SRT_TIME = re.compile(r"^(\d+):(\d{2}):(\d{2})[,.](\d{1,3})\s*-->\s*(\d+):(\d{2}):(\d{2})[,.](\d{1,3})(?:\s.*)?$")
_SRT_SPEAKER = re.compile(r"^\(([^()]*?):\)\s*")


def parse_ts(value, where: str) -> tuple[float | None, float | None]:
    """TVQA's `ts` ("76.01-84.2") → (start, end); NaN (a JSON NaN or "NaN-NaN") → (None, None)."""
    if isinstance(value, float):
        if value != value:  # NaN
            return None, None
        raise fail(where, f"field 'ts' should be a 'start-end' string, got the number {value}")
    if not isinstance(value, str):
        raise fail(where, f"field 'ts' should be a 'start-end' string, got {value!r}")
    parts = value.strip().split("-")
    if len(parts) == 1 and parts[0].lower() == "nan":
        return None, None
    if len(parts) != 2:
        raise fail(where, f"field 'ts' should look like '76.01-84.2', got {value!r}")
    start, end = (parse_float(p, where, "ts") for p in parts)
    if start is None or end is None:
        return None, None
    if start > end:
        raise fail(where, f"field 'ts' {value!r} ends before it starts")
    return start, end


def _speaker_form(text: str) -> str:
    return _SRT_SPEAKER.sub(lambda m: f"{m.group(1).strip()} : ", text, count=1)


def read_srt(path: str) -> list[tuple[float, float, str]]:
    """Cues of one TVQA SRT file (ISO-8859-1) as (start s, end s, text); a malformed cue names the file and line."""
    with open(path, encoding="iso-8859-1", newline=None) as fh:
        lines = fh.read().split("\n")
    cues, i = [], 0
    if lines and lines[0].startswith(("\ufeff", "ï»¿")):
        lines[0] = lines[0].lstrip("\ufeffï»¿")
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        if not lines[i].strip().isdigit():
            raise fail(f"{path}:{i + 1}", f"expected a cue number, got {lines[i].strip()!r}")
        match = _SRT_TIME.match(lines[i + 1].strip()) if i + 1 < len(lines) else None
        if match is None:
            got = lines[i + 1].strip() if i + 1 < len(lines) else "end of file"
            raise fail(f"{path}:{i + 2}", f"expected 'HH:MM:SS,mmm --> HH:MM:SS,mmm', got {got!r}")
        h1, m1, s1, ms1, h2, m2, s2, ms2 = match.groups()
        start = int(h1) * 3600 + int(m1) * 60 + int(s1) + int(ms1.ljust(3, "0")) / 1000
        end = int(h2) * 3600 + int(m2) * 60 + int(s2) + int(ms2.ljust(3, "0")) / 1000
        i += 2
        text = []
        while i < len(lines) and lines[i].strip():
            text.append(lines[i].strip())
            i += 1
        cues.append((start, end, _speaker_form(" ".join(text))))
    return cues


def read_preprocessed_subtitles(path: str, wanted: set[str]) -> dict[str, list[tuple[float, float, str]]]:
    """`{"vid_name", "sub": [{"start", "end", "text"}, ...]}` per line → {vid_name: cues}, for `wanted` clips only."""
    subtitles = {}
    for where, record in read_jsonl(path):
        vid_name = get_field(record, "vid_name", str, where)
        if vid_name not in wanted:
            continue
        cues = []
        for k, cue in enumerate(get_field(record, "sub", list, where)):
            if not isinstance(cue, dict):
                raise fail(where, f"sub[{k}] should be an object with start/end/text, got {cue!r}")
            cue_where = f"{where} (sub[{k}])"
            start = parse_float(get_field(cue, "start", (int, float, str), cue_where), cue_where, "start")
            end = parse_float(get_field(cue, "end", (int, float, str), cue_where), cue_where, "end")
            if start is None or end is None:
                raise fail(cue_where, "subtitle start/end must be numbers, not NaN")
            cues.append((start, end, get_field(cue, "text", str, cue_where).strip()))
        subtitles[vid_name] = cues
    return subtitles


def _subtitle_source(data_dir: str, subtitles: str | None) -> str | None:
    if subtitles != "auto":
        if subtitles is not None and not os.path.exists(subtitles):
            raise FileNotFoundError(
                f"subtitles={subtitles!r} does not exist (pass a jsonl file, an SRT folder or None)"
            )
        return subtitles
    for candidate in ("tvqa_preprocessed_subtitles.jsonl", "tvqa_subtitles"):
        if os.path.exists(os.path.join(data_dir, candidate)):
            return os.path.join(data_dir, candidate)
    logger.warning(f"TVQA: no subtitles found in {data_dir} (tvqa_preprocessed_subtitles.jsonl or tvqa_subtitles/)")
    return None


def _load_cues(source: str, vid_names: set[str]) -> dict[str, list[tuple[float, float, str]]]:
    if not os.path.isdir(source):
        return read_preprocessed_subtitles(source, vid_names)
    return {
        v: read_srt(os.path.join(source, f"{v}.srt"))
        for v in vid_names
        if os.path.isfile(os.path.join(source, f"{v}.srt"))
    }


def select_subtitles(
    cues: list[tuple[float, float, str]], start: float | None, end: float | None, margin: float
) -> str:
    """Text of the cues overlapping [start - margin, end + margin] (all cues when the span is unknown)."""
    if start is not None and end is not None:
        cues = [c for c in cues if c[1] >= start - margin and c[0] <= end + margin]
    return " ".join(c[2] for c in cues if c[2])


def load_tvqa(
    data_dir: str,
    split: str = "train",
    *,
    video_dir: str | None = None,
    subtitles: str | None = "auto",
    subtitle_margin: float = 1.0,
    on_missing: str = "raise",
) -> datasets.Dataset:
    """TVQA `split` ("train", "val", "test") as 5-way multiple-choice rows with subtitles and the `ts` span."""
    check_choice("split", split, tuple(SPLIT_FILES))
    if not subtitle_margin >= 0:
        raise ValueError(f"subtitle_margin must be a non-negative number of seconds, got {subtitle_margin!r}")
    path = os.path.join(data_dir, SPLIT_FILES[split])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no TVQA {split} annotations at {path}; check `data_dir` and `split`")
    rows = []
    for where, record in read_jsonl(path):
        choices = [get_field(record, f"a{i}", str, where).strip() for i in range(NUM_CHOICES)]
        answer_idx = get_field(record, "answer_idx", int, where, optional=split == "test")
        if answer_idx is not None and not 0 <= answer_idx < NUM_CHOICES:
            raise fail(where, f"field 'answer_idx' should be 0..{NUM_CHOICES - 1}, got {answer_idx}")
        if "ts" not in record:
            raise fail(where, f"missing field 'ts' (fields present: {sorted(record)})")
        start, end = parse_ts(record["ts"], where)
        vid_name = get_field(record, "vid_name", str, where)
        question = get_field(record, "q", str, where).strip()
        rows.append(
            row(
                (vid_name,),
                question,
                choices[answer_idx] if answer_idx is not None else "",
                question_word_type(question),
                str(get_field(record, "qid", (int, str), where)),
                choices=choices,
                correct_choices=[answer_idx] if answer_idx is not None else [],
                start=start,
                end=end,
                where=where,
            )
        )

    source = _subtitle_source(data_dir, subtitles)
    if source is not None:
        vid_names = {r["video"][0] for r in rows}
        cues = _load_cues(source, vid_names)
        lacking = sorted(vid_names - set(cues))
        if lacking:
            logger.warning(f"TVQA: {len(lacking)} clips have no subtitles in {source} (e.g. {lacking[:3]}); using ''")
        for r in rows:
            r["subtitles"] = select_subtitles(cues.get(r["video"][0], []), r["start"], r["end"], subtitle_margin)

    video_dir = video_dir or os.path.join(data_dir, "videos")
    roots = [video_dir]
    if os.path.isdir(video_dir):
        roots += sorted(e.path for e in os.scandir(video_dir) if e.is_dir() and e.name.endswith("_frames"))
    return finish(rows, VideoIndex(roots, allow_dirs=True), on_missing, "TVQA", path)
