"""What the training scripts share: collators, the video-grouped sampler, the `Trainer` subclasses, prediction with
`generate` / `score_choices` and its metrics, plots, model building, the output-folder rules and checkpoint folders
that survive a full disk.

Nothing here is imported by the model files, so it never travels as remote code. Output folders are written by
`modeling_mcg.save_for_hub`.
"""

from .arguments import (
    SYNTHETIC_TRAINING_DEFAULTS,
    MCGTrainingArguments,
    check_output_dir_writable,
    check_room_for_checkpoint,
    command_line,
    parse_args,
    resolve_checkpoint,
    training_summary,
)
from .building import (
    PRESET_DIR,
    apply_config_overrides,
    load_preset,
    match_config_to_tokenizer,
    preset_names,
    video_processor_for,
    vocabulary_words,
)
from .checkpoints import checkpoint_size_estimate, is_complete_checkpoint, last_complete_checkpoint
from .collator import CaptionCollator, VideoQACollator, stack_clips
from .evaluation import chance_per_type, compute_metrics, predict_answers, resolve_eval_mode
from .plots import write_accuracy_plot, write_loss_plot
from .sampler import VideoGroupedSampler
from .trainer import (
    PRETRAINING_LOSS_PARTS,
    VIDEOQA_LOSS_PARTS,
    MCGTrainer,
    PretrainingTrainer,
    VideoQATrainer,
    set_cpu_threads,
)

__all__ = [
    "SYNTHETIC_TRAINING_DEFAULTS",
    "CaptionCollator",
    "MCGTrainer",
    "MCGTrainingArguments",
    "PRESET_DIR",
    "PRETRAINING_LOSS_PARTS",
    "PretrainingTrainer",
    "VIDEOQA_LOSS_PARTS",
    "VideoGroupedSampler",
    "VideoQACollator",
    "VideoQATrainer",
    "apply_config_overrides",
    "check_output_dir_writable",
    "check_room_for_checkpoint",
    "checkpoint_size_estimate",
    "chance_per_type",
    "command_line",
    "compute_metrics",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "load_preset",
    "match_config_to_tokenizer",
    "parse_args",
    "predict_answers",
    "preset_names",
    "resolve_checkpoint",
    "resolve_eval_mode",
    "set_cpu_threads",
    "stack_clips",
    "training_summary",
    "video_processor_for",
    "vocabulary_words",
    "write_accuracy_plot",
    "write_loss_plot",
]
