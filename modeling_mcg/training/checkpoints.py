"""Checkpoint folders that survive a full disk or a crash: which `checkpoint-N` folders are complete, the room one
checkpoint needs, and a save that never leaves a half-written `checkpoint-N` behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

import torch
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

logger = logging.get_logger(__name__)

CHECKPOINT_PATTERN = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
# Adam keeps two moments per trainable weight; the scheduler, RNG and trainer state are small next to them.
OPTIMIZER_STATES_PER_PARAMETER = 2


def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a readable `trainer_state.json`, which `Trainer` writes after everything else."""
    try:
        json.loads((Path(folder) / TRAINER_STATE_NAME).read_text())
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The `checkpoint-N` folder of `output_dir` with the highest N that is complete, or None.

    Newer folders without a readable `trainer_state.json` (a save cut short by a crash or a full disk) are passed
    over with a warning naming each of them.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = sorted(
        (int(match.group(1)), path)
        for path in output_dir.iterdir()
        if (match := CHECKPOINT_PATTERN.match(path.name)) and path.is_dir()
    )
    for _, path in reversed(steps):
        if is_complete_checkpoint(path):
            return str(path)
        logger.warning(
            f"Skipping {path}: it has no readable {TRAINER_STATE_NAME}, so its save did not finish (a crash or a "
            "full disk). Resuming from an earlier checkpoint; delete the folder to silence this warning."
        )
    return None


def checkpoint_size_estimate(model: torch.nn.Module, with_optimizer: bool) -> int:
    """Bytes one checkpoint of `model` needs: its weights, plus Adam's two moments per trainable weight when the
    checkpoint carries the optimizer state."""
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    if with_optimizer:
        trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        size += OPTIMIZER_STATES_PER_PARAMETER * trainable
    return size


def format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def free_space(folder: str | os.PathLike) -> int | None:
    """Bytes free in the file system of `folder`, or None when it cannot be told."""
    with contextlib.suppress(OSError):
        return shutil.disk_usage(folder).free
    return None


@contextlib.contextmanager
def removed_on_failure(folder: str | os.PathLike):
    """Run a checkpoint save into `folder`; if it fails, delete the partial folder and raise an `OSError` that names
    the folder, the cause and the free space left.

    A full disk shows up as `OSError(ENOSPC)` from Python writers but as a `RuntimeError` from `torch.save`'s zip
    writer ("unexpected pos"), so both are turned into the same clear error.
    """
    folder = Path(folder)
    try:
        yield
    except (OSError, RuntimeError) as error:
        if is_complete_checkpoint(folder):  # the failure came after the save (e.g. rotating old checkpoints)
            raise
        shutil.rmtree(folder, ignore_errors=True)
        free = free_space(folder.parent)
        room = f"{format_bytes(free)} free there now" if free is not None else "free space unknown"
        message = (
            f"Saving checkpoint {folder} failed: {type(error).__name__}: {error} ({room}). The partial folder was "
            "removed; free some space (or lower --save_total_limit) and rerun with --resume_from_checkpoint last to "
            "continue from the last complete checkpoint."
        )
        code = getattr(error, "errno", None)
        raise (OSError(code, message) if code is not None else OSError(message)) from error
