"""A training order that keeps each video's questions together."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


class VideoGroupedSampler(torch.utils.data.Sampler):
    """Training order that keeps each video's questions together: videos shuffled, then their questions shuffled.

    A batch then asks about a few videos several times each, and the collator decodes and the model encodes each of
    them once per batch instead of once per question. The order depends only on `seed` and the epoch, which
    `Trainer` (through accelerate) sets with `set_epoch` as for `DistributedSampler`: every process draws the same
    order before accelerate shards its batches, and a run resumed from a checkpoint replays the same order.
    """

    def __init__(self, videos: Sequence[str], seed: int = 0):
        groups: dict[str, list[int]] = {}
        for index, video in enumerate(videos):
            groups.setdefault(video, []).append(index)
        self.groups = [torch.tensor(rows) for rows in groups.values()]
        self.num_rows = len(videos)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_rows

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        for group in torch.randperm(len(self.groups), generator=generator).tolist():
            rows = self.groups[group]
            yield from rows[torch.randperm(len(rows), generator=generator)].tolist()
