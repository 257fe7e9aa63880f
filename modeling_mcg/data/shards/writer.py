"""Pack (video bytes, caption, metadata) into shards, and convert a caption file plus its video folder into shards.

`ShardWriter` starts a new shard before one would pass `max_shard_bytes` (or `max_shard_samples`), writes each
shard under a temporary name and renames it when complete (an interrupted conversion never leaves a truncated
shard that looks whole), and writes `index.json` on `close()`.

`convert_caption_file` streams a WebVid-style csv (or a csv/jsonl/json caption list, see
`modeling_mcg.data.captions`) row by row, reads each video's bytes and decodes them with the project's reader
(`video_io.decode_video`, `check_frames` uniformly sampled frames, the same reader training uses) before packing
them. Rows whose video is missing or fails to decode are skipped and listed, with the reason, in
`unreadable.jsonl` next to the shards and in the returned summary.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context

import pyarrow as pa
import pyarrow.parquet as pq
from transformers.utils import logging

from ...frame_sampling import sample_frame_indices
from ...video_io import VideoDecodeError, decode_video
from .._common import VideoIndex, fail
from ..captions import CAPTION_COLUMNS, VIDEO_COLUMNS
from .format import FORMATS, PARQUET_SCHEMA, SHARD_SUFFIX, VIDEO_FIELDS, write_index

logger = logging.get_logger(__name__)

REPORT_FILE = "unreadable.jsonl"
_TAR_BLOCK = 512
_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: str | int) -> int:
    """Bytes from an int or a string such as "512MB", "1.5G" or "2GiB" (binary units)."""
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(value), flags=re.IGNORECASE)
        if match is None:
            raise ValueError(f"cannot read a size from {value!r}; write e.g. 512MB, 1GB or 1073741824")
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
    if size <= 0:
        raise ValueError(f"a shard size must be positive, got {value!r}")
    return size


def _tar_bytes(size: int) -> int:
    return _TAR_BLOCK + -(-size // _TAR_BLOCK) * _TAR_BLOCK  # header + data padded to whole blocks


class ShardWriter:
    """Writes samples into numbered shards of one format in `output_dir`.

    Args:
        output_dir: folder for the shards and `index.json` (created; it must not already hold shards).
        format: "webdataset" (tar) or "parquet".
        max_shard_bytes: size target of one shard; a shard is closed before a sample would take it past the
            target (a single larger sample gets a shard of its own). An int or a string such as "512MB".
        max_shard_samples: optional cap on the samples of one shard.
        prefix: shard file names are `<prefix>-000000.tar`, `<prefix>-000001.tar`, ...
        row_group_bytes: parquet only: rows are flushed as a row group at this size, which bounds what a reader
            loads at once.

    Example:

    ```python
    with ShardWriter("shards/", format="webdataset", max_shard_bytes="256MB") as writer:
        writer.write(open("clip.mp4", "rb").read(), "a dog runs on the beach", {"videoid": "1066674784"})
    ```
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        format: str = "webdataset",
        max_shard_bytes: int | str = "512MB",
        max_shard_samples: int | None = None,
        prefix: str = "shard",
        row_group_bytes: int | str = "64MB",
    ):
        if format not in FORMATS:
            raise ValueError(f"unknown shard format {format!r}; choose one of {', '.join(FORMATS)}")
        if max_shard_samples is not None and max_shard_samples < 1:
            raise ValueError(f"max_shard_samples must be at least 1, got {max_shard_samples}")
        if not prefix or "." in prefix or "/" in prefix:
            raise ValueError(f"prefix {prefix!r} must be a non-empty file name stem without dots or slashes")
        self.output_dir = os.fspath(output_dir)
        os.makedirs(self.output_dir, exist_ok=True)
        suffix = SHARD_SUFFIX[format]
        existing = sorted(name for name in os.listdir(self.output_dir) if name.endswith(suffix))
        if existing:
            raise FileExistsError(
                f"{self.output_dir} already holds {len(existing)} shard(s) ({existing[0]}, ...); write to an empty "
                "folder so the index lists every shard exactly once"
            )
        self.format = format
        self.max_shard_bytes = parse_size(max_shard_bytes)
        self.max_shard_samples = max_shard_samples
        self.prefix = prefix
        self.row_group_bytes = parse_size(row_group_bytes)
        self.shards: list[dict] = []
        self.num_samples = 0
        self._open = None  # the tar file or parquet writer of the current shard
        self._shard_samples = self._shard_bytes = 0
        self._rows: list[dict] = []
        self._rows_bytes = 0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close()

    @property
    def _current_name(self) -> str:
        return f"{self.prefix}-{len(self.shards):06d}{SHARD_SUFFIX[self.format]}"

    def write(self, video: bytes, caption: str, metadata: dict | None = None, video_ext: str = "mp4") -> str:
        """Append one sample; returns its key (the running sample number, zero-padded)."""
        if not isinstance(video, (bytes, bytearray, memoryview)) or not len(video):
            raise ValueError("`video` must be the non-empty bytes of a video file")
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError("`caption` must be a non-empty string")
        video_ext = video_ext.lower().lstrip(".")
        if video_ext not in VIDEO_FIELDS:
            raise ValueError(f"video_ext {video_ext!r} is not one of {', '.join(VIDEO_FIELDS)}")
        key = f"{self.num_samples:09d}"
        meta = json.dumps({**(metadata or {}), "key": key, "caption": caption}, ensure_ascii=False).encode("utf-8")
        text = caption.encode("utf-8")
        size = (
            _tar_bytes(len(video)) + _tar_bytes(len(text)) + _tar_bytes(len(meta))
            if self.format == "webdataset"
            else len(video) + len(text) + len(meta) + len(key)
        )
        full = self._shard_samples and (
            self._shard_bytes + size > self.max_shard_bytes
            or (self.max_shard_samples is not None and self._shard_samples >= self.max_shard_samples)
        )
        if full:
            self._finish_shard()
        if self._open is None:
            self._start_shard()
        if self.format == "webdataset":
            for name, data in ((f"{key}.{video_ext}", bytes(video)), (f"{key}.txt", text), (f"{key}.json", meta)):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0  # byte-identical shards for identical input
                self._open.addfile(info, io.BytesIO(data))
        else:
            self._rows.append({"key": key, "video": bytes(video), "video_ext": video_ext, "caption": caption,
                               "metadata": meta.decode("utf-8")})  # fmt: skip
            self._rows_bytes += size
            if self._rows_bytes >= self.row_group_bytes:
                self._flush_rows()
        self._shard_samples += 1
        self._shard_bytes += size
        self.num_samples += 1
        return key

    def _start_shard(self) -> None:
        path = os.path.join(self.output_dir, self._current_name + ".tmp")
        if self.format == "webdataset":
            self._open = tarfile.open(path, mode="w", format=tarfile.GNU_FORMAT)
        else:
            # Video bytes are already compressed: compressing, dictionary-encoding or computing statistics of them
            # again costs time and saves nothing.
            self._open = pq.ParquetWriter(
                path,
                PARQUET_SCHEMA,
                compression={"key": "SNAPPY", "video": "NONE", "video_ext": "SNAPPY", "caption": "SNAPPY",
                             "metadata": "SNAPPY"},
                use_dictionary=["video_ext"],
                write_statistics=["key"],
            )  # fmt: skip

    def _flush_rows(self) -> None:
        if self._rows:
            self._open.write_table(pa.Table.from_pylist(self._rows, schema=PARQUET_SCHEMA))
            self._rows, self._rows_bytes = [], 0

    def _finish_shard(self) -> None:
        if self._open is None:
            return
        if self.format == "parquet":
            self._flush_rows()
        self._open.close()
        name = self._current_name
        path = os.path.join(self.output_dir, name)
        os.replace(path + ".tmp", path)
        self.shards.append({"name": name, "num_samples": self._shard_samples, "num_bytes": os.path.getsize(path)})
        self._open, self._shard_samples, self._shard_bytes = None, 0, 0

    def close(self) -> list[dict]:
        """Finish the last shard and write `index.json`; returns the shard entries of the index."""
        self._finish_shard()
        write_index(self.output_dir, self.format, self.shards)
        return self.shards


# --------------------------------------------------------------------------------------------------------------
# Caption file + video folder -> shards
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Row:
    where: str
    candidates: tuple[str, ...]
    caption: str
    fields: dict


@dataclass
class ConversionSummary:
    """What `convert_caption_file` did.

    Attributes:
        num_rows: caption rows read.
        num_written: samples written to shards.
        unreadable: one `{"where", "video", "reason"}` per skipped row (missing or undecodable video), in file order.
        shards: the shard entries of `index.json` (`name`, `num_samples`, `num_bytes`).
        output_dir, report_path: the shard folder and the `unreadable.jsonl` file listing `unreadable`.
    """

    num_rows: int
    num_written: int
    unreadable: list[dict] = field(default_factory=list)
    shards: list[dict] = field(default_factory=list)
    output_dir: str = ""
    report_path: str = ""

    def __str__(self) -> str:
        lines = [
            f"{self.num_written} of {self.num_rows} caption rows written to {len(self.shards)} shard(s) in "
            f"{self.output_dir}; {len(self.unreadable)} skipped as unreadable (listed in {self.report_path})"
        ]
        lines += [f"  {u['where']}: {u['video']}: {u['reason']}" for u in self.unreadable[:10]]
        if len(self.unreadable) > 10:
            lines.append(f"  ... and {len(self.unreadable) - 10} more")
        return "\n".join(lines)


def _csv_rows(path: str) -> Iterator[_Row]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        header = None
        try:
            for values in reader:
                where = f"{path}:{reader.line_num}"
                if not values or all(not value.strip() for value in values):
                    continue
                if header is None:
                    header = [value.strip() for value in values]
                    continue
                if len(values) != len(header):
                    raise fail(where, f"expected {len(header)} fields ({','.join(header)}), got {len(values)}")
                yield _record_row(dict(zip(header, (value.strip() for value in values))), where)
        except csv.Error as error:
            raise fail(f"{path}:{reader.line_num}", f"malformed csv: {error}") from None
    if header is None:
        raise ValueError(f"{path}: empty file; expected a header line such as 'videoid,name,page_dir'")


def _json_rows(path: str) -> Iterator[_Row]:
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    where = f"{path}:{number}"
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise fail(where, f"not valid JSON ({error})") from None
                    yield _record_row(record, where)
    else:
        with open(path, encoding="utf-8") as handle:
            records = json.load(handle)
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of {{video, caption}} objects")
        for i, record in enumerate(records):
            yield _record_row(record, f"{path}, record {i}")


def _record_row(record, where: str) -> _Row:
    if not isinstance(record, dict):
        raise fail(where, f"expected an object with video and caption fields, got {type(record).__name__}")
    video_key = next((k for k in VIDEO_COLUMNS if k in record), None)
    caption_key = next((k for k in CAPTION_COLUMNS if k in record), None)
    if video_key is None or caption_key is None:
        raise fail(where, f"expected a video column ({'/'.join(VIDEO_COLUMNS)}) and a caption column "
                          f"({'/'.join(CAPTION_COLUMNS)}), found {', '.join(record)}")  # fmt: skip
    video, caption = str(record[video_key]).strip(), str(record[caption_key]).strip()
    if not video or not caption:
        raise fail(where, f"empty {video_key if not video else caption_key!r}")
    page_dir = str(record.get("page_dir") or "").strip()
    candidates = (os.path.join(page_dir, video), video) if page_dir else (video,)
    fields = {k: v for k, v in record.items() if k != caption_key}  # kept as metadata, e.g. WebVid's contentUrl
    return _Row(where, candidates, caption, fields)


def read_caption_rows(path: str) -> Iterator[_Row]:
    """Stream the rows of a caption file (.csv, .jsonl or .json), without looking the videos up."""
    extension = os.path.splitext(path)[1].lower()
    if extension == ".csv":
        return _csv_rows(path)
    if extension in (".jsonl", ".json"):
        return _json_rows(path)
    raise ValueError(f"{path}: unsupported caption file type {extension!r}; use .csv, .jsonl or .json")


def _load_and_check(job: tuple[str, int]) -> tuple[bytes | None, dict | None, str | None]:
    """Read a video's bytes and decode `check_frames` of them with the project's reader (in a pool worker)."""
    path, check_frames = job
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        return None, None, f"cannot read the file ({error})"
    try:
        _, info, _ = decode_video(
            data, lambda info: sample_frame_indices("uniform", min(check_frames, info.num_frames), info.num_frames)[0]
        )
    except VideoDecodeError as error:
        return None, None, str(error).replace("Could not read video <bytes>: ", "")
    info_dict = {"num_frames": info.num_frames, "fps": info.fps, "width": info.width, "height": info.height,
            "duration": info.duration, "codec": info.codec}  # fmt: skip
    return data, info_dict, None


def convert_caption_file(
    annotation: str | os.PathLike,
    output_dir: str | os.PathLike,
    video_dir: str | os.PathLike | None = None,
    format: str = "webdataset",
    max_shard_bytes: int | str = "512MB",
    max_shard_samples: int | None = None,
    check_frames: int = 8,
    num_proc: int = 1,
    progress: bool = True,
) -> ConversionSummary:
    """Convert a caption file and its videos into shards (see the module docstring).

    Args:
        annotation: a WebVid csv (`videoid,contentUrl,duration,page_dir,name`: video `<video_dir>/<page_dir>/
            <videoid>.mp4` or `<video_dir>/<videoid>.mp4`), a csv with `video` and `caption` columns, or a
            .jsonl/.json list of such objects. Columns other than the caption are kept in each sample's metadata.
        output_dir: an empty (or new) folder for the shards, `index.json` and `unreadable.jsonl`.
        video_dir: the folder video names are relative to (default: the annotation file's folder).
        format, max_shard_bytes, max_shard_samples: see `ShardWriter`.
        check_frames: frames decoded per video to check it is readable (uniformly spread, as evaluation samples).
        num_proc: processes that read and check videos (the order of the shards does not depend on it).
        progress: show a progress bar.

    Returns:
        a `ConversionSummary`; its `unreadable` entries are also written to `<output_dir>/unreadable.jsonl`.
    """
    from tqdm.auto import tqdm

    annotation = os.fspath(annotation)
    if not os.path.isfile(annotation):
        raise FileNotFoundError(f"caption file {annotation} does not exist")
    if check_frames < 1:
        raise ValueError(f"check_frames must be at least 1, got {check_frames}")
    if num_proc < 1:
        raise ValueError(f"num_proc must be at least 1, got {num_proc}")
    root = os.fspath(video_dir) if video_dir is not None else os.path.dirname(os.path.abspath(annotation))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"video folder {root} does not exist; pass the folder holding the videos")
    index = VideoIndex([root])
    with open(annotation, "rb") as handle:
        approximate_rows = max(sum(1 for _ in handle) - 1, 0)  # for the progress bar only

    summary = ConversionSummary(num_rows=0, num_written=0, output_dir=os.fspath(output_dir))
    writer = ShardWriter(output_dir, format, max_shard_bytes, max_shard_samples)
    summary.report_path = os.path.join(writer.output_dir, REPORT_FILE)
    rows = read_caption_rows(annotation)
    pool = get_context().Pool(num_proc) if num_proc > 1 else None
    chunk_size = 64 * num_proc  # bounds the videos in flight (the pool returns their bytes)
    with tqdm(total=approximate_rows, unit="video", desc="packing", disable=not progress) as bar:
        try:
            while chunk := list(itertools.islice(rows, chunk_size)):
                summary.num_rows += len(chunk)
                skipped, found = [], []  # (row number in the chunk, ...): the report keeps the file's order
                for number, row in enumerate(chunk):
                    path = index.find(row.candidates)
                    if path is None:
                        video, reason = " or ".join(row.candidates), f"not found as {index.describe()}"
                        skipped.append((number, {"where": row.where, "video": video, "reason": reason}))
                        bar.update(1)
                    else:
                        found.append((number, row, path))
                jobs = [(path, check_frames) for _, _, path in found]
                results = pool.imap(_load_and_check, jobs) if pool else map(_load_and_check, jobs)
                for (number, row, path), (data, info, error) in zip(found, results):
                    bar.update(1)
                    if error is not None:
                        skipped.append((number, {"where": row.where, "video": path, "reason": error}))
                        continue
                    metadata = {**row.fields, "source": os.path.relpath(path, root), "video_info": info}
                    writer.write(data, row.caption, metadata, video_ext=os.path.splitext(path)[1])
                    summary.num_written += 1
                summary.unreadable += [entry for _, entry in sorted(skipped, key=lambda item: item[0])]
        finally:
            if pool is not None:
                pool.terminate()
            summary.shards = writer.close()
    with open(summary.report_path, "w", encoding="utf-8") as handle:
        for entry in summary.unreadable:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
    if summary.unreadable:
        logger.warning(str(summary))
    return summary
