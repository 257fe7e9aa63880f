"""Hooks `ShardedVideoDataset`'s position into `Trainer` checkpoints (kept apart: it imports the Trainer stack)."""

import os

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .reader import ShardedVideoDataset, save_shard_state


class ShardStateCallback(TrainerCallback):
    """Saves the dataset's state into every `Trainer` checkpoint, one `data_state-rank<r>.json` per process.

    Resume with `load_shard_state(dataset, checkpoint_dir)` before `trainer.train(resume_from_checkpoint=...)`, and
    set `ignore_data_skip=True` (the dataset resumes itself; `Trainer` would otherwise drop more batches).
    """

    def __init__(self, dataset: ShardedVideoDataset):
        self.dataset = dataset

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        save_shard_state(self.dataset, folder)
