"""The two on-disk shard formats and the folder index that lists them.

A shard folder holds numbered shards of one format and `index.json`:

    {"format": "webdataset", "num_samples": 200, "shards": [{"name": "shard-000000.tar", "num_samples": 64,
     "num_bytes": 1048576}, ...]}

* **webdataset** (`.tar`): per sample, consecutive members `<key>.<video extension>` (the file's bytes as they
  were), `<key>.txt` (the caption, UTF-8) and `<key>.json` (the caption and metadata). Keys contain no dot, so
  readers that follow WebDataset's naming (`datasets.load_dataset("webdataset", ...)`, the `webdataset` library)
  group the members into one sample.
* **parquet** (`.parquet`): one row per sample with the columns `key` (string), `video` (binary), `video_ext`
  (string), `caption` (string) and `metadata` (a JSON string), written in row groups of a bounded size so a
  reader never holds a whole shard; `datasets.load_dataset("parquet", ..., streaming=True)` reads it as is.

`read_shard(path, format, start, stop, wanted)` yields the samples of one shard in order; samples outside
`wanted` are skipped without reading their bytes (tar members are seeked over, parquet row groups not loaded).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .._common import VIDEO_EXTENSIONS

INDEX_FILE = "index.json"
FORMATS = ("webdataset", "parquet")
SHARD_SUFFIX = {"webdataset": ".tar", "parquet": ".parquet"}
VIDEO_FIELDS = tuple(ext.lstrip(".") for ext in VIDEO_EXTENSIONS)
PARQUET_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("video", pa.binary()),
        ("video_ext", pa.string()),
        ("caption", pa.string()),
        ("metadata", pa.string()),
    ]
)


def format_of(path: str) -> str:
    """The shard format a file name implies (its extension)."""
    for name, suffix in SHARD_SUFFIX.items():
        if path.endswith(suffix):
            return name
    raise ValueError(f"{path}: not a shard; expected a {' or '.join(SHARD_SUFFIX.values())} file")


def write_index(folder: str, format: str, shards: list[dict]) -> str:
    path = os.path.join(folder, INDEX_FILE)
    index = {"format": format, "num_samples": sum(s["num_samples"] for s in shards), "shards": shards}
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(index, handle, indent=1)
    os.replace(path + ".tmp", path)  # a reader never sees half an index
    return path


def read_index(folder: str) -> dict:
    path = os.path.join(folder, INDEX_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            index = json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{folder} has no {INDEX_FILE}: it is not a shard folder written by modeling_mcg.data.shards. Pass the "
            "shard files themselves (a list or a glob) to count their samples instead."
        ) from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); rewrite the shards or pass the shard files") from None
    if index.get("format") not in FORMATS or not isinstance(index.get("shards"), list):
        raise ValueError(f"{path}: expected {{'format': one of {FORMATS}, 'shards': [...]}}")
    return index


def split_member_name(name: str) -> tuple[str, str] | tuple[None, None]:
    """WebDataset's grouping rule: the key is the path up to the first dot of the base name, the field the rest."""
    folder, _, base = name.rpartition("/")
    if "." not in base:
        return None, None
    stem, field = base.split(".", 1)
    return (f"{folder}/{stem}" if folder else stem), field


def count_samples(path: str) -> int:
    """Samples in one shard, from the parquet footer or the tar member headers (no video bytes are read)."""
    if format_of(path) == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    count, last_key = 0, None
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            key, _ = split_member_name(member.name)
            if member.isfile() and key is not None and key != last_key:
                count, last_key = count + 1, key
    return count


def _tar_sample(key: str, fields: dict[str, bytes], where: str) -> dict:
    videos = [field for field in fields if field.lower() in VIDEO_FIELDS]
    if len(videos) != 1:
        raise ValueError(
            f"{where}: sample {key!r} has {len(videos)} video members ({', '.join(fields)}); expected exactly one "
            f"of {', '.join(VIDEO_FIELDS)}"
        )
    metadata = json.loads(fields["json"]) if "json" in fields else {}
    if "txt" in fields:
        caption = fields["txt"].decode("utf-8")
    elif "caption" in metadata:
        caption = metadata["caption"]
    else:
        raise ValueError(f"{where}: sample {key!r} has neither a .txt member nor a caption in its .json")
    return {"key": key, "video": fields[videos[0]], "video_ext": videos[0].lower(), "caption": caption,
            "metadata": metadata}  # fmt: skip


def _read_tar(path: str, start: int, stop: int, wanted: Callable[[int], bool]) -> Iterator[tuple[int, dict | None]]:
    with tarfile.open(path, mode="r:") as tar:
        position, key, fields = -1, None, None
        for member in tar:  # members whose data is not extracted are seeked over, not read
            member_key, field = split_member_name(member.name)
            if not member.isfile() or member_key is None:
                continue
            if member_key != key:
                if key is not None and position >= start:
                    yield position, (None if fields is None else _tar_sample(key, fields, path))
                position, key = position + 1, member_key
                if position >= stop:
                    return
                fields = {} if position >= start and wanted(position) else None
            if fields is not None:
                if field in fields:
                    raise ValueError(f"{path}: sample {key!r} has two {field!r} members")
                fields[field] = tar.extractfile(member).read()
        if key is not None and position >= start:
            yield position, (None if fields is None else _tar_sample(key, fields, path))


def _read_parquet(
    path: str, start: int, stop: int, wanted: Callable[[int], bool]
) -> Iterator[tuple[int, dict | None]]:
    parquet = pq.ParquetFile(path)
    missing = set(PARQUET_SCHEMA.names) - set(parquet.schema_arrow.names)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected {PARQUET_SCHEMA.names}")
    first = 0
    for group in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        lo, hi = max(start, first), min(stop, first + rows)
        if lo < hi:
            needed = [p for p in range(lo, hi) if wanted(p)]
            table = parquet.read_row_group(group, columns=PARQUET_SCHEMA.names) if needed else None
            needed = set(needed)
            for position in range(lo, hi):
                if position not in needed:
                    yield position, None
                    continue
                row = {name: table.column(name)[position - first].as_py() for name in PARQUET_SCHEMA.names}
                row["metadata"] = json.loads(row["metadata"]) if row["metadata"] else {}
                yield position, row
        first += rows
        if first >= stop:
            return


def read_shard(
    path: str, start: int = 0, stop: int | None = None, wanted: Callable[[int], bool] = lambda position: True
) -> Iterator[tuple[int, dict | None]]:
    """`(position, sample)` for the samples `start <= position < stop` of one shard, in order.

    A sample is `{"key", "video" (bytes), "video_ext", "caption", "metadata" (dict)}`, or None when
    `wanted(position)` is false (its bytes are not read).
    """
    stop = float("inf") if stop is None else stop
    reader = _read_parquet if format_of(path) == "parquet" else _read_tar
    yield from reader(path, start, stop, wanted)
