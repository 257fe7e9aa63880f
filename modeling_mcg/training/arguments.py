"""Command-line handling shared by the training scripts: argument parsing with script defaults, the output-folder
rules (writable and with room for a checkpoint before training starts; never replace a finished model silently;
resume an interrupted run from its last complete checkpoint) and the recorded command line."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy
from transformers.utils import logging

from .checkpoints import checkpoint_size_estimate, format_bytes, free_space, last_complete_checkpoint

logger = logging.get_logger(__name__)

FINISHED_MODEL_FILES = ("model.safetensors", "adapter_model.safetensors")

# What both example scripts train with when given no arguments: the tiny preset on the built-in synthetic set, on a
# 2-core CPU; each script adds its own output folder and evaluation settings.
SYNTHETIC_TRAINING_DEFAULTS: dict[str, Any] = dict(
    do_train=True,
    num_train_epochs=16,
    learning_rate=7e-4,
    weight_decay=0.01,
    warmup_steps=0.05,
    lr_scheduler_type="cosine",
    per_device_train_batch_size=32,
    logging_steps=20,
    save_strategy="epoch",
    save_total_limit=1,
    eval_strategy="no",
    report_to="none",
    remove_unused_columns=False,
    dataloader_num_workers=1,
    seed=42,
)


@dataclass
class MCGTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus `--overwrite_output_dir` (which transformers 5 dropped)."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a trained model already in --output_dir and start over instead of resuming its "
            "checkpoints."
        },
    )


def parse_args(argument_classes: tuple, defaults: dict[str, Any], args: list[str] | None = None):
    """The argument dataclasses from the command line (or a single .json file), with a script's training defaults."""
    parser = HfArgumentParser(argument_classes)
    parser.set_defaults(**defaults, use_cpu=not torch.cuda.is_available())
    if args is None:
        args = sys.argv[1:]
    if len(args) == 1 and args[0].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(args[0]))
    return parser.parse_args_into_dataclasses(args=args)


def resolve_checkpoint(training_args: MCGTrainingArguments, model_name_or_path: str | None = None) -> str | None:
    """The checkpoint to resume from, after checking that the run may write into `output_dir`.

    - `--resume_from_checkpoint last` resumes the folder's last complete checkpoint (an error when there is none);
      newer folders whose save never finished are skipped with a warning. An explicit checkpoint path is used as
      given.
    - A folder that already holds a finished model is not overwritten unless `--overwrite_output_dir` is given
      (evaluating the folder's own model in place, `--model_name_or_path` = `--output_dir`, is allowed).
    - A folder with checkpoints but no finished model (an interrupted run) resumes from its last checkpoint;
      `--overwrite_output_dir` starts over instead.
    """
    output_dir = Path(training_args.output_dir)
    checkpoint = training_args.resume_from_checkpoint
    last = last_complete_checkpoint(output_dir)
    if checkpoint == "last":
        if last is None:
            raise ValueError(f"--resume_from_checkpoint last: no complete checkpoint-* folder in {output_dir}.")
        return last
    if training_args.overwrite_output_dir and training_args.do_train and last is not None:
        if training_args.process_index == 0:  # the old run's checkpoints would outrank (and rotate away) the new ones
            for old in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
                shutil.rmtree(old, ignore_errors=True)
        logger.warning(f"--overwrite_output_dir: removed the checkpoints of the previous run in {output_dir}.")
    if checkpoint is not None or training_args.overwrite_output_dir or not output_dir.is_dir():
        return checkpoint
    finished = [name for name in FINISHED_MODEL_FILES if (output_dir / name).is_file()]
    in_place = model_name_or_path is not None and Path(model_name_or_path).resolve() == output_dir.resolve()
    if finished and not (in_place and not training_args.do_train):
        raise ValueError(
            f"{output_dir} already holds a trained model ({finished[0]}). Pass --overwrite_output_dir True to "
            "replace it, or choose another --output_dir."
        )
    if last is not None and training_args.do_train:
        logger.warning(
            f"{output_dir} holds an unfinished run: resuming from {last}. Pass --overwrite_output_dir True to start "
            "over, or --resume_from_checkpoint to pick a checkpoint."
        )
        return last
    return None


def check_output_dir_writable(output_dir: str | os.PathLike) -> None:
    """Create `output_dir` and write a file in it, so that a folder the run cannot write fails before training
    rather than at the first checkpoint or after training. The write is real (not a permission check), so it also
    catches read-only mounts and paths under a file, which `os.access` misses when running as root."""
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir) as probe:
            probe.write(b"0")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise OSError(
            f"--output_dir {output_dir} is not writable ({type(error).__name__}: {error}). Choose another "
            "--output_dir or make this one writable before training."
        ) from error


def check_room_for_checkpoint(training_args: TrainingArguments, model: torch.nn.Module) -> int:
    """Raise an `OSError` when `output_dir` has less free space than one checkpoint of `model` needs (its weights,
    plus the optimizer state when `--save_strategy` saves checkpoints with it); returns the estimate in bytes."""
    saves_optimizer = training_args.do_train and training_args.save_strategy != SaveStrategy.NO
    saves_optimizer = saves_optimizer and not training_args.save_only_model
    needed = checkpoint_size_estimate(model, with_optimizer=saves_optimizer)
    free = free_space(training_args.output_dir)
    if free is not None and free < needed:
        what = "weights + optimizer state" if saves_optimizer else "weights"
        raise OSError(
            f"--output_dir {training_args.output_dir} has {format_bytes(free)} free, but one checkpoint of this "
            f"model needs about {format_bytes(needed)} ({what}). Free some space or choose another --output_dir."
        )
    return needed


def command_line(script: str, args: list[str] | None) -> str:
    """The command that reproduces this run, as recorded in the model card."""
    argv = sys.argv[1:] if args is None else list(args)
    return " ".join([f"python examples/{script}", *(shlex.quote(a) for a in argv)])


def training_summary(training_args: TrainingArguments, extra: list[str] = ()) -> list[str]:
    """The model card's training lines."""
    steps = f", max_steps {training_args.max_steps}" if training_args.max_steps > 0 else ""
    return [
        *extra,
        f"epochs {training_args.num_train_epochs}{steps}, learning rate {training_args.learning_rate}, "
        f"{getattr(training_args.lr_scheduler_type, 'value', training_args.lr_scheduler_type)} schedule, weight decay {training_args.weight_decay}",
        f"batch size {training_args.per_device_train_batch_size} per device x {training_args.world_size} "
        f"process(es) x {training_args.gradient_accumulation_steps} accumulation step(s), seed {training_args.seed}",
    ]
