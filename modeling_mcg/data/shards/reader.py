"""Stream video–caption shards: split across processes and DataLoader workers, buffer-shuffled, resumable mid-epoch.

Each epoch, every sample is read exactly once across the job. The `world_size * num_workers` readers (one per
DataLoader worker of each process) split the epoch's shards as `datasets.distributed.split_dataset_by_node` does:
whole shards when their count divides evenly, otherwise contiguous ranges of samples (so no sample is read twice
and no reader scans data it does not keep). The shard order is shuffled with `(seed, epoch)`, identical on every
process; each reader then shuffles its samples with a buffer of `shuffle_buffer` samples, seeded by
`(seed, epoch, reader)`.

The order is a pure function of `(seed, epoch, reader)`, which is what makes an exact resume cheap: the buffer's
decisions depend only on positions, not on the samples, so after `k` samples a reader can tell which positions are
in its buffer and where its read pointer stands without reading anything. Resuming re-reads just the buffered
samples (seeking over the rest) and goes on; nothing is replayed or skipped.

The state is what the training loop consumed, not what the workers produced (they run ahead by the prefetch
depth): `ShardBatchCollator` attaches each batch's sample positions in the worker, and the training loop hands the
batch to `ShardedVideoDataset.record_batch` when it trains on it. `state_dict()` then holds, per reader, the samples
consumed in the current epoch (with the shard and offset of its read pointer), which `load_state_dict` restores.

    dataset = ShardedVideoDataset("shards/", shuffle_buffer=1000, seed=42)   # rank/world from torch.distributed
    loader = shard_dataloader(dataset, batch_size=32, collate_fn=my_collator, num_workers=4)
    for batch in loader:
        dataset.record_batch(batch)          # pops `data_positions`/`data_seconds`, advances the state
        train_step(batch)
    torch.save(dataset.state_dict(), ...)   # per process; load_state_dict() before iterating again resumes
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from transformers.utils import logging

from .format import INDEX_FILE, count_samples, format_of, read_index, read_shard

logger = logging.get_logger(__name__)

# columns of `data_positions`: which epoch, which reader, and the sample's rank in that reader's epoch order
POSITION_FIELDS = ("epoch", "rank", "world_size", "worker", "num_workers", "index")
STATE_FILE = "data_state-rank{rank}.json"


def plan_epoch(num_samples: Sequence[int], epoch: int, seed: int, shuffle_shards: bool, num_readers: int):
    """Each reader's `(shard, start, stop)` ranges for one epoch, in read order.

    The shards are permuted with `(seed, epoch)` (the same on every process). With a shard count that divides by
    `num_readers`, reader r takes the permuted shards r, r + num_readers, ...; otherwise the permuted sequence of
    samples is cut into `num_readers` contiguous ranges whose sizes differ by at most one.
    """
    order = np.arange(len(num_samples))
    if shuffle_shards:
        order = np.random.default_rng([seed, epoch]).permutation(len(num_samples))
    if len(order) % num_readers == 0:
        return [[(int(s), 0, int(num_samples[s])) for s in order[r::num_readers]] for r in range(num_readers)]
    total = int(sum(num_samples))
    bounds = [total * r // num_readers for r in range(num_readers + 1)]
    plans, first = [[] for _ in range(num_readers)], 0
    for shard in order.tolist():
        last = first + int(num_samples[shard])
        for r in range(num_readers):
            lo, hi = max(first, bounds[r]), min(last, bounds[r + 1])
            if lo < hi:
                plans[r].append((shard, lo - first, hi - first))
        first = last
    return plans


def shuffle_order(num_samples: int, buffer_size: int, rng: np.random.Generator) -> np.ndarray:
    """The order in which a shuffle buffer of `buffer_size` yields a stream of `num_samples` (read positions).

    The buffer fills with the first `buffer_size` samples; then each new sample replaces a uniformly chosen one,
    which is yielded; at the end the rest comes out in random order. `buffer_size` 0 keeps the read order.
    """
    if buffer_size <= 0 or num_samples <= 1:
        return np.arange(num_samples, dtype=np.int64)
    buffer = list(range(min(buffer_size, num_samples)))
    out = []
    draws = rng.integers(0, len(buffer), size=max(num_samples - len(buffer), 0)).tolist()
    for position, slot in zip(range(len(buffer), num_samples), draws):
        out.append(buffer[slot])
        buffer[slot] = position
    out.extend(buffer[i] for i in rng.permutation(len(buffer)).tolist())
    return np.asarray(out, dtype=np.int64)


def reads_before(k: int, num_samples: int, buffer_size: int) -> int:
    """How many samples a shuffle buffer has read when it yields its k-th (0-based) sample."""
    return min(num_samples, max(buffer_size, 0) + k + 1)


def _resolve_shards(shards) -> list[tuple[str, int]]:
    """`(path, num_samples)` per shard from a shard folder, its index.json, a glob, or a list of shard files."""
    if isinstance(shards, (str, os.PathLike)):
        shards = os.fspath(shards)
        if os.path.isdir(shards) or os.path.basename(shards) == INDEX_FILE:
            folder = shards if os.path.isdir(shards) else os.path.dirname(shards)
            index = read_index(folder)
            entries = [(os.path.join(folder, s["name"]), int(s["num_samples"])) for s in index["shards"]]
            missing = [path for path, _ in entries if not os.path.isfile(path)]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} shard(s) listed in {os.path.join(folder, INDEX_FILE)} do not exist, e.g. "
                    f"{missing[0]}; copy the whole shard folder"
                )
            return entries
        paths = sorted(glob.glob(shards))
        if not paths:
            raise FileNotFoundError(f"no shard folder or shard files match {shards!r}")
    else:
        paths = [os.fspath(p) for p in shards]
        if not paths:
            raise ValueError("`shards` is an empty list")
    formats = {format_of(path) for path in paths}
    if len(formats) > 1:
        raise ValueError(f"the shards mix formats ({', '.join(sorted(formats))}); pass shards of one format")
    return [(path, count_samples(path)) for path in paths]


def _distributed_rank_and_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardedVideoDataset(IterableDataset):
    """Streams `{"key", "video" (bytes), "video_ext", "caption", "metadata", ...}` samples from shards.

    The video stays encoded: `MCGVideoProcessor` (or `video_io.decode_video`) decodes the bytes in memory, with the
    same exact-frame reader as for files, typically in the collator so that DataLoader workers do it.

    Args:
        shards: a shard folder written by `ShardWriter` (or its index.json), a glob such as "shards/*.tar", or a
            list of shard files (of one format; their samples are counted from their headers).
        shuffle_buffer: samples in each reader's shuffle buffer (0: no shuffling, shards in order).
        seed: the shuffling seed; it must be the same on every process.
        shuffle_shards: permute the shard order every epoch (default: when `shuffle_buffer` > 0).
        rank, world_size: this process and the number of processes (default: from `torch.distributed` when it is
            initialised, else the RANK/WORLD_SIZE environment variables that `accelerate launch` and `torchrun` set).

    The epoch advances by itself once every sample of the current one has been recorded (`record_batch`), so
    iterate through `shard_dataloader` (or wrap the collate function with `ShardBatchCollator`) and record each
    batch as it is trained on. Each yielded sample also carries `data_position` (see `POSITION_FIELDS`) and
    `read_seconds` (time spent reading it).
    """

    def __init__(
        self,
        shards: str | os.PathLike | Sequence[str | os.PathLike],
        shuffle_buffer: int = 1000,
        seed: int = 0,
        shuffle_shards: bool | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        entries = _resolve_shards(shards)
        self.shard_paths = [path for path, _ in entries]
        self.shard_sizes = [n for _, n in entries]
        self.num_samples = sum(self.shard_sizes)
        self.shuffle_buffer = shuffle_buffer
        self.seed = int(seed)
        self.shuffle_shards = shuffle_buffer > 0 if shuffle_shards is None else shuffle_shards
        default_rank, default_size = _distributed_rank_and_size()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_size if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
        if self.num_samples == 0:
            raise ValueError("the shards hold no samples")
        self._plans: dict[tuple[int, int], list] = {}
        self._epoch = 0
        self._num_workers: int | None = None  # learnt from the recorded positions
        self._consumed: dict[str, int] = {}  # "rank/worker" -> samples of the current epoch trained on
        self._generated_epoch: int | None = None  # last epoch this copy produced in full (persistent workers)
        self._clips = 0
        self._busy_seconds = 0.0
        self._first_record: float | None = None

    # ---------------------------------------------------------------------------------------------- iteration

    def _plan(self, epoch: int, num_readers: int) -> list[list[tuple[int, int, int]]]:
        key = (epoch, num_readers)
        if key not in self._plans:
            if len(self._plans) >= 4:
                self._plans.clear()
            self._plans[key] = plan_epoch(self.shard_sizes, epoch, self.seed, self.shuffle_shards, num_readers)
        return self._plans[key]

    def _order(self, epoch: int, reader: int, num_samples: int) -> np.ndarray:
        return shuffle_order(num_samples, self.shuffle_buffer, np.random.default_rng([self.seed, epoch, reader]))

    def _start(self, worker: int, num_workers: int) -> tuple[int, int]:
        """(epoch, samples already consumed) where this worker's next pass begins."""
        if self._generated_epoch is not None:  # a persistent worker or a second pass over this object
            return self._generated_epoch + 1, 0
        skip = self._consumed.get(f"{self.rank}/{worker}", 0)
        if self._consumed and self._num_workers is not None and self._num_workers != num_workers:
            raise ValueError(
                f"the data state was saved with {self._num_workers} DataLoader workers per process and is resumed "
                f"with {num_workers}; resume mid-epoch with the same number of workers (and processes)"
            )
        return self._epoch, skip

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, skip = self._start(worker, num_workers)
        reader = self.rank * num_workers + worker
        ranges = self._plan(epoch, self.world_size * num_workers)[reader]
        total = sum(stop - start for _, start, stop in ranges)
        order = self._order(epoch, reader, total)
        for index, sample in enumerate(self._samples(ranges, order, skip), start=skip):
            sample["data_position"] = (epoch, self.rank, self.world_size, worker, num_workers, index)
            yield sample
        self._generated_epoch = epoch

    def _samples(self, ranges: list[tuple[int, int, int]], order: np.ndarray, skip: int) -> Iterator[dict]:
        """The samples of `order[skip:]`: read sequentially, kept until their turn (at most the buffer's worth)."""
        total = len(order)
        if skip >= total:
            return
        read_limit = reads_before(skip, total, self.shuffle_buffer)
        rest = order[skip:]
        pending = set(rest[rest < read_limit].tolist())  # read but not yet yielded: the buffer when it stopped
        begin = min(pending) if pending else read_limit
        stream = self._read(ranges, begin, lambda position: position >= read_limit or position in pending)
        held: dict[int, dict] = {}
        clock = time.perf_counter()
        for k in range(skip, total):
            target = int(order[k])
            while target not in held:
                position, sample = next(stream, (None, None))
                if position is None:
                    raise ValueError(
                        f"the shards ended before read position {target} of {total}: they hold fewer samples than "
                        "their index lists (were they rewritten?); rewrite the shard folder or pass the shard files"
                    )
                if sample is not None:
                    held[position] = sample
            sample = held.pop(target)
            sample["read_seconds"] = time.perf_counter() - clock
            yield sample
            clock = time.perf_counter()

    def _read(self, ranges, begin: int, wanted: Callable[[int], bool]) -> Iterator[tuple[int, dict | None]]:
        """`(position, sample or None)` from read position `begin` on; positions count across `ranges`."""
        offset = 0
        for shard, start, stop in ranges:
            size = stop - start
            if offset + size > begin:
                first = start + max(begin - offset, 0)
                path = self.shard_paths[shard]
                for position, sample in read_shard(path, first, stop, lambda p, base=offset - start: wanted(base + p)):
                    if sample is not None:
                        sample["shard"] = os.path.basename(path)
                    yield offset + position - start, sample
            offset += size

    # ---------------------------------------------------------------------------------------------- state

    def record_batch(self, batch: dict) -> dict:
        """Mark a batch as trained on: pops `data_positions` and `data_seconds` from it and advances the state.

        Call it for every batch the training loop consumes (before the forward pass is fine: a checkpoint is only
        written between steps). Returns the batch without those keys.
        """
        positions = batch.pop("data_positions", None)
        seconds = batch.pop("data_seconds", None)
        if positions is None:
            raise KeyError(
                "the batch has no `data_positions`; build the DataLoader with `shard_dataloader` or wrap its "
                "collate_fn with `ShardBatchCollator`"
            )
        rows = positions.tolist() if hasattr(positions, "tolist") else list(positions)
        for epoch, rank, world_size, worker, num_workers, index in rows:
            if world_size != self.world_size:
                raise ValueError(
                    f"a batch from a {world_size}-process job reached a {self.world_size}-process dataset"
                )
            if epoch < self._epoch:
                continue  # an earlier epoch's stragglers, already counted as done
            if epoch > self._epoch:
                self._epoch, self._consumed = epoch, {}
            self._num_workers = num_workers
            reader = f"{rank}/{worker}"
            self._consumed[reader] = max(self._consumed.get(reader, 0), index + 1)
        self._clips += len(rows)
        if seconds is not None:
            self._busy_seconds += float(seconds)
        if self._first_record is None:
            self._first_record = time.perf_counter()
        if rows and self._epoch_done():
            self._epoch, self._consumed = self._epoch + 1, {}
        return batch

    def _reader_sizes(self, epoch: int, num_workers: int) -> dict[str, int]:
        plans = self._plan(epoch, self.world_size * num_workers)
        return {
            f"{self.rank}/{w}": sum(stop - start for _, start, stop in plans[self.rank * num_workers + w])
            for w in range(num_workers)
        }

    def _epoch_done(self) -> bool:
        sizes = self._reader_sizes(self._epoch, self._num_workers)
        return all(self._consumed.get(reader, 0) >= size for reader, size in sizes.items())

    def state_dict(self) -> dict:
        """This process's data position: the epoch, and per reader the samples consumed and its read pointer."""
        positions = {}
        if self._consumed:
            plans = self._plan(self._epoch, self.world_size * self._num_workers)
            for reader, consumed in self._consumed.items():
                worker = int(reader.split("/")[1])
                ranges = plans[self.rank * self._num_workers + worker]
                total = sum(stop - start for _, start, stop in ranges)
                pointer = reads_before(consumed - 1, total, self.shuffle_buffer) if consumed else 0
                positions[reader] = self._shard_offset(ranges, pointer)
        return {
            "epoch": self._epoch,
            "consumed": dict(self._consumed),
            "read_positions": positions,
            "num_workers": self._num_workers,
            "rank": self.rank,
            "world_size": self.world_size,
            "seed": self.seed,
            "shuffle_buffer": self.shuffle_buffer,
            "shuffle_shards": self.shuffle_shards,
            "num_samples": self.num_samples,
            "num_shards": len(self.shard_paths),
        }

    def _shard_offset(self, ranges, pointer: int) -> dict:
        """The shard and offset of read position `pointer` (the next sample to read; the end of the last shard)."""
        offset = 0
        for shard, start, stop in ranges:
            if pointer < offset + stop - start:
                return {"shard": os.path.basename(self.shard_paths[shard]), "offset": start + pointer - offset}
            offset += stop - start
        shard, _, stop = ranges[-1]
        return {"shard": os.path.basename(self.shard_paths[shard]), "offset": stop}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict()` of the same shards, seed, shuffling, process count and worker count."""
        for name, mine in (("seed", self.seed), ("shuffle_buffer", self.shuffle_buffer),
                           ("shuffle_shards", self.shuffle_shards), ("num_samples", self.num_samples),
                           ("num_shards", len(self.shard_paths)), ("world_size", self.world_size)):  # fmt: skip
            if state.get(name) != mine:
                raise ValueError(
                    f"cannot resume: the data state has {name}={state.get(name)!r} but this dataset has {mine!r}; "
                    "resume with the same shards, seed, shuffle settings and number of processes"
                )
        consumed = {str(k): int(v) for k, v in state.get("consumed", {}).items()}
        foreign = [k for k in consumed if int(k.split("/")[0]) != self.rank]
        if foreign:
            raise ValueError(
                f"the data state holds readers {foreign} of other processes; load each process's own state "
                f"(saved by rank {state.get('rank')}) into rank {self.rank}"
            )
        self._epoch = int(state["epoch"])
        self._consumed = consumed
        self._num_workers = state.get("num_workers")
        self._generated_epoch = None

    def throughput(self) -> dict:
        """Clips recorded so far, their rate (training's pace) and the loader's own rate per busy worker-second."""
        elapsed = time.perf_counter() - self._first_record if self._first_record is not None else 0.0
        return {
            "clips": self._clips,
            "clips_per_s": self._clips / elapsed if elapsed > 0 else 0.0,
            "worker_clips_per_s": self._clips / self._busy_seconds if self._busy_seconds > 0 else 0.0,
        }


class ShardBatchCollator:
    """Wraps a collate function for `ShardedVideoDataset` samples.

    Adds `data_positions` (b, 6) int64 (`POSITION_FIELDS` per sample, including samples the inner collator drops,
    e.g. undecodable videos) and `data_seconds` (time this worker spent reading and collating the batch), and logs
    this worker's clips/s every `log_every_s` seconds.
    """

    def __init__(self, collate_fn: Callable[[list[dict]], dict], log_every_s: float | None = 120.0):
        self.collate_fn = collate_fn
        self.log_every_s = log_every_s
        self._clips, self._seconds, self._last_log = 0, 0.0, None

    def __call__(self, samples: list[dict]) -> dict:
        start = time.perf_counter()
        positions = torch.tensor([sample["data_position"] for sample in samples], dtype=torch.long)
        read = sum(sample.get("read_seconds", 0.0) for sample in samples)
        batch = self.collate_fn(samples)
        if not isinstance(batch, dict):
            raise TypeError(f"the collate function must return a dict, got {type(batch).__name__}")
        seconds = read + time.perf_counter() - start
        batch["data_positions"] = positions
        batch["data_seconds"] = torch.tensor(seconds, dtype=torch.float64)
        self._clips += len(samples)
        self._seconds += seconds
        now = time.perf_counter()
        if self._last_log is None:
            self._last_log = now
        elif self.log_every_s is not None and now - self._last_log >= self.log_every_s:
            info = get_worker_info()
            who = f"worker {info.id}" if info is not None else "main process"
            logger.info(
                f"shard reader ({who}): {self._clips} clips, {self._clips / self._seconds:.1f} clips/s "
                "(reading + decoding)"
            )
            self._last_log = now
        return batch


def shard_dataloader(
    dataset: ShardedVideoDataset, batch_size: int, collate_fn: Callable, num_workers: int = 0, **kwargs
) -> DataLoader:
    """A DataLoader over `dataset` whose batches carry their positions (see `ShardBatchCollator`).

    Keep it out of `accelerator.prepare`: the dataset already splits the data across processes, and accelerate
    would either read everything on the main process and dispatch it, or split it a second time.
    """
    if kwargs.get("drop_last"):
        raise ValueError("drop_last=True would drop samples that the data state then waits for; leave it False")
    if not isinstance(collate_fn, ShardBatchCollator):
        collate_fn = ShardBatchCollator(collate_fn)
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn, num_workers=num_workers, **kwargs)


def save_shard_state(dataset: ShardedVideoDataset, folder: str | os.PathLike) -> str:
    """Write `dataset.state_dict()` to `<folder>/data_state-rank<r>.json` (atomically); returns the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, STATE_FILE.format(rank=dataset.rank))
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(dataset.state_dict(), handle, indent=1)
    os.replace(path + ".tmp", path)
    return path


def load_shard_state(dataset: ShardedVideoDataset, folder: str | os.PathLike) -> None:
    """Load this process's `data_state-rank<r>.json` from a checkpoint folder into `dataset`."""
    path = os.path.join(folder, STATE_FILE.format(rank=dataset.rank))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} does not exist: the checkpoint has no data state for rank {dataset.rank} (was it saved with "
            "ShardStateCallback, by the same number of processes?)"
        )
    with open(path, encoding="utf-8") as handle:
        dataset.load_state_dict(json.load(handle))
