"""Video–caption shards for pretraining at scale: WebDataset-style tar or Parquet, streamed and resumable.

* `ShardWriter` / `convert_caption_file` (also `python -m modeling_mcg.data.shards`): pack videos, captions and
  metadata into shards of a target size, skipping (and listing) videos the project's reader cannot decode.
* `ShardedVideoDataset`: an `IterableDataset` that splits the shards across processes and DataLoader workers,
  shuffles with a buffer, and saves/restores its position mid-epoch (`state_dict` / `load_state_dict`).
* `shard_dataloader`, `ShardBatchCollator`, `ShardStateCallback`: the training-loop side of that position.
"""

from .format import FORMATS, INDEX_FILE, count_samples, read_index, read_shard
from .reader import (
    POSITION_FIELDS,
    ShardBatchCollator,
    ShardedVideoDataset,
    load_shard_state,
    plan_epoch,
    save_shard_state,
    shard_dataloader,
    shuffle_order,
)
from .writer import REPORT_FILE, ConversionSummary, ShardWriter, convert_caption_file, parse_size


def __getattr__(name: str):
    if name == "ShardStateCallback":  # imported on first use: it pulls in the Trainer stack
        from .callback import ShardStateCallback

        return ShardStateCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMATS",
    "INDEX_FILE",
    "POSITION_FIELDS",
    "REPORT_FILE",
    "ConversionSummary",
    "ShardBatchCollator",
    "ShardStateCallback",
    "ShardWriter",
    "ShardedVideoDataset",
    "convert_caption_file",
    "count_samples",
    "load_shard_state",
    "parse_size",
    "plan_epoch",
    "read_index",
    "read_shard",
    "save_shard_state",
    "shard_dataloader",
    "shuffle_order",
]
