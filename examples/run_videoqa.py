#!/usr/bin/env python
"""Fine-tune and evaluate MCG on a VideoQA set with the Hugging Face `Trainer`.

With no arguments it trains the tiny preset on the built-in synthetic long-video QA set (generated once and cached)
on CPU, evaluates it on the test split and leaves a Hub-ready folder in `outputs/demo/`:

    python examples/run_videoqa.py
    accelerate launch examples/run_videoqa.py --dataset msrvtt-qa --data_dir /data/msrvtt --hub_config mcg-base \
        --tokenizer_name bert-base-uncased
    python examples/run_videoqa.py --use_lora --model_name_or_path outputs/demo --output_dir outputs/lora

Videos are decoded in the DataLoader workers by the collator (the dataset rows hold paths); the evaluation
generates open-ended answers with `generate()` or ranks candidates with `score_choices()`, and runs on every rank.
"""

import json
import logging
import math
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from accelerate.utils import gather_object
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from modeling_mcg import (
    MCGConfig,
    MCGForVideoQuestionAnswering,
    MCGProcessor,
    MCGVideoProcessor,
    VideoDecodeError,
    add_mcg_special_tokens,
)
from modeling_mcg.data import DATASET_NAMES, load_videoqa_dataset, multilabel_records
from modeling_mcg.metrics import load_videoqa_metric

logger = logging.getLogger("run_videoqa")

REPO_ROOT = Path(__file__).resolve().parent.parent
HUB_CONFIG_DIR = REPO_ROOT / "hub_configs"
LOSS_PARTS = ("loss_lm", "loss_icl", "loss_tcl")
DEFAULT_LORA_TARGETS = r".*(fusor|decoder)\..*(self_attn|cross_attn)\.(q_proj|v_proj)"

# Defaults of the plain `python examples/run_videoqa.py` run (tiny preset, synthetic set, 2-core CPU); every one
# can be overridden on the command line.
TRAINING_DEFAULTS = dict(
    output_dir="outputs/demo",
    do_train=True,
    do_eval=True,
    num_train_epochs=20,
    learning_rate=7e-4,
    weight_decay=0.01,
    warmup_steps=0.05,
    lr_scheduler_type="cosine",
    per_device_train_batch_size=32,
    per_device_eval_batch_size=64,
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
class ModelArguments:
    """Which model to start from, and how to adapt it (full fine-tuning or LoRA)."""

    hub_config: str | None = field(
        default=None,
        metadata={
            "help": "Preset name from the repo's hub_configs/ (mcg-tiny, mcg-base). Default: mcg-tiny when "
            "neither --config_file nor --model_name_or_path is given."
        },
    )
    config_file: str | None = field(default=None, metadata={"help": "Path to an MCGConfig JSON (train from scratch)."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Checkpoint folder (model + processor) to fine-tune."}
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={
            "help": "BERT tokenizer folder/name for a from-scratch model (e.g. bert-base-uncased for "
            "mcg-base); [DEC]/[ENC] are added. Default: a WordPiece vocabulary built from the training data."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "For a from-scratch model: comma-separated config edits, dotted for sub-configs, e.g. "
            "'initializer_range=0.1,label_smoothing=0.0,vision_config.drop_path_rate=0.1'."
        },
    )
    attn_implementation: str | None = field(default=None, metadata={"help": "eager, sdpa, ... (default: sdpa)."})
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (peft) instead of all weights."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default=DEFAULT_LORA_TARGETS,
        metadata={"help": "Regex over full module names (or a comma-separated list of leaf names) to adapt."},
    )
    merge_lora: bool = field(
        default=False,
        metadata={"help": "After LoRA training, save the merged plain model in output_dir (adapter in adapter/)."},
    )


@dataclass
class DataArguments:
    """Which data, how videos are sampled, and how the evaluation answers."""

    dataset: str = field(default="synthetic", metadata={"help": f"One of: synthetic, {', '.join(DATASET_NAMES)}."})
    data_dir: str | None = field(default=None, metadata={"help": "Dataset folder (not needed for synthetic)."})
    train_split: str = field(default="train")
    eval_split: str = field(default="test")
    synthetic_cache_dir: str | None = field(
        default=None, metadata={"help": "Cache folder of the synthetic set (default $MCG_CACHE or ~/.cache)."}
    )
    synthetic_num_videos: str | None = field(
        default=None, metadata={"help": "Synthetic videos per split, e.g. 'train=20,test=8' (default 2400/100/100)."}
    )
    num_frames: int | None = field(default=None, metadata={"help": "Frames per clip (default: the model config's)."})
    train_sampling: str = field(
        default="rand",
        metadata={"help": "uniform, rand (a random frame per segment: new frames every epoch), headtail or fps."},
    )
    cache_clips: bool = field(
        default=False,
        metadata={
            "help": "Keep each training video's processed frames in memory after its first decode (needs uniform "
            "sampling and no augmentation; about frames x 3 x size^2 x 4 bytes per video, kept by persistent "
            "DataLoader workers)."
        },
    )
    group_by_video: bool | None = field(
        default=None,
        metadata={
            "help": "Train on batches that keep each video's questions together, so each video is decoded and "
            "encoded once per batch instead of once per question (faster; less varied batches when videos have "
            "many questions). Default: on for the synthetic set (about 6 questions per video), off otherwise."
        },
    )
    eval_sampling: str = field(default="uniform", metadata={"help": "uniform, rand, headtail or fps."})
    image_size: int | None = field(default=None, metadata={"help": "Frame side in px (default: the config's)."})
    do_augment: bool = field(
        default=False, metadata={"help": "Random resized crop + flip + jitter in training (mirrors left/right!)."}
    )
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    on_corrupt_video: str = field(
        default="skip", metadata={"help": "skip: drop a sample whose video cannot be decoded (counted); raise."}
    )
    blank_video: bool = field(
        default=False, metadata={"help": "Question-only baseline: all frames are zeros (train and eval)."}
    )
    eval_mode: str = field(
        default="auto",
        metadata={
            "help": "open (generate), mc (score_choices), both, or auto: open when some eval question has no "
            "candidates, else mc (both for the synthetic set, whose questions are open-ended with choices)."
        },
    )
    num_beams: int = field(default=1, metadata={"help": "Beams for open-ended generation."})
    max_new_tokens: int = field(default=6, metadata={"help": "Answer length limit for generation."})

    def __post_init__(self):
        self.dataset = self.dataset.lower().replace("_", "-")  # the readers' spelling: MSRVTT_QA -> msrvtt-qa
        if self.group_by_video is None:  # the dataset-dependent default, resolved once for main() and benchmarks
            self.group_by_video = self.dataset == "synthetic"


def parse_script_args(argument_classes: tuple, defaults: dict[str, Any], args: list[str] | None):
    """The argument dataclasses from the command line (or a single .json file), with a script's training defaults."""
    parser = HfArgumentParser(argument_classes)
    parser.set_defaults(**defaults, use_cpu=not torch.cuda.is_available())
    if args is None:
        args = sys.argv[1:]
    if len(args) == 1 and args[0].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(args[0]))
    return parser.parse_args_into_dataclasses(args=args)


def parse_args(args: list[str] | None):
    return parse_script_args((ModelArguments, DataArguments, TrainingArguments), TRAINING_DEFAULTS, args)


def check_one_model_source(model_args) -> None:
    if sum(x is not None for x in (model_args.hub_config, model_args.config_file, model_args.model_name_or_path)) > 1:
        raise ValueError("Pass only one of --hub_config, --config_file and --model_name_or_path.")


# ---------------------------------------------------------------------------------------------------- data


def _parse_num_videos(spec: str | None) -> dict[str, int] | None:
    if spec is None:
        return None
    counts = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"--synthetic_num_videos must look like 'train=20,test=8'; got {spec!r}.")
        counts[name.strip()] = int(value)
    return counts


def load_split(data_args: DataArguments, split: str) -> datasets.Dataset:
    if data_args.dataset == "synthetic":
        from modeling_mcg.data.synthetic import load_synthetic_videoqa

        return load_synthetic_videoqa(
            split=split,
            cache_dir=data_args.synthetic_cache_dir,
            num_videos=_parse_num_videos(data_args.synthetic_num_videos),
        )
    if data_args.data_dir is None:
        raise ValueError(f"--dataset {data_args.dataset} needs --data_dir (the folder with its annotations).")
    # CLEVRER: each multiple-choice option becomes a correct/wrong question of its own, as CLEVRER scores them
    options = {"options_as_questions": True} if is_multilabel(data_args) else {}
    return load_videoqa_dataset(data_args.dataset, data_args.data_dir, split, **options)


def is_multilabel(data_args: DataArguments) -> bool:
    """Whether the dataset's multiple-choice questions can have several right options (CLEVRER)."""
    return data_args.dataset == "clevrer"


def _limit(ds: datasets.Dataset, n: int | None) -> datasets.Dataset:
    return ds.select(range(min(n, len(ds)))) if n is not None else ds


def vocabulary_words(*splits: datasets.Dataset) -> list[str]:
    """Every word of the questions, answers, choices and subtitles, in first-seen order (stable ids)."""
    words: dict[str, None] = {}
    for ds in splits:
        for column in ("question", "answer", "subtitles"):
            for text in ds[column]:
                words.update(dict.fromkeys(text.lower().split()))
        for choices in ds["choices"]:
            for text in choices:
                words.update(dict.fromkeys(text.lower().split()))
    return list(words)


def stack_clips(clips: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad clips to the longest → pixel_values_videos (b, t, 3, h, w) and video_frame_mask (b, t)."""
    frames = max(c["pixel_values_videos"].shape[0] for c in clips)
    pixels = torch.zeros(len(clips), frames, *clips[0]["pixel_values_videos"].shape[1:])
    frame_mask = torch.zeros(len(clips), frames, dtype=torch.long)
    for i, clip in enumerate(clips):  # clips differ in length only with sampling="fps"
        t = clip["pixel_values_videos"].shape[0]
        pixels[i, :t] = clip["pixel_values_videos"]
        frame_mask[i, :t] = clip["video_frame_mask"]
    return pixels, frame_mask


def video_processor_for(vision) -> MCGVideoProcessor:
    """The video processor of a from-scratch model: the vision config's frame count and square frame size."""
    return MCGVideoProcessor(
        num_frames=vision.num_frames,
        size={"height": vision.image_size, "width": vision.image_size},
        do_center_crop=False,
        resample=2 if vision.image_size <= 64 else 3,  # bilinear for tiny frames; bicubic as in the paper
    )


class VideoQACollator:
    """Decodes a batch's videos (in the DataLoader worker) and tokenises it with the processor.

    Each distinct video of a batch is decoded and sent once: `pixel_values_videos` (v, t, 3, h, w) and
    `video_index` (b,), the row's video, which the model uses to encode each video once for all its questions.
    A video that fails to decode is dropped with its questions (`skip`, counted and logged) or re-raised (`raise`).
    The batch carries `num_skipped_videos` (questions dropped) so the trainer can total the skips across workers;
    with `with_meta` it also carries the rows' metadata for writing predictions.
    """

    def __init__(
        self,
        processor,
        sampling,
        on_corrupt_video="skip",
        blank_video=False,
        do_augment=False,
        with_choices=False,
        with_meta=False,
        cache_clips=False,
    ):
        if on_corrupt_video not in ("skip", "raise"):
            raise ValueError(f"on_corrupt_video must be 'skip' or 'raise', got {on_corrupt_video!r}.")
        if cache_clips and (sampling != "uniform" or do_augment):
            raise ValueError(
                "cache_clips keeps one fixed clip per video, so it needs sampling='uniform' and no augmentation; "
                f"got sampling={sampling!r}, do_augment={do_augment}."
            )
        self.processor = processor
        self.sampling = sampling
        self.on_corrupt_video = on_corrupt_video
        self.blank_video = blank_video
        self.do_augment = do_augment
        self.with_choices = with_choices
        self.with_meta = with_meta
        self.num_skipped = 0  # per process: each DataLoader worker counts its own
        # video path -> processed clip; per process, so it lives as long as its (persistent) DataLoader worker. A
        # video asked by several questions is then decoded once per run instead of once per question and epoch.
        self.clip_cache: dict[str, dict[str, torch.Tensor]] | None = {} if cache_clips else None

    def _decode(self, row) -> dict[str, torch.Tensor] | None:
        video_processor = self.processor.video_processor
        if self.blank_video:
            size = video_processor._output_size(video_processor._resolve_options({}))
            return {
                "pixel_values_videos": torch.zeros(video_processor.num_frames, 3, *size),
                "video_frame_mask": torch.ones(video_processor.num_frames, dtype=torch.long),
            }
        cacheable = self.clip_cache is not None and isinstance(row["video"], str)
        if cacheable and row["video"] in self.clip_cache:
            return self.clip_cache[row["video"]]
        try:
            out = video_processor([row["video"]], sampling=self.sampling, do_augment=self.do_augment)
        except VideoDecodeError as error:
            if self.on_corrupt_video == "raise":
                raise
            self.num_skipped += 1
            logger.warning(f"Skipped an undecodable video ({self.num_skipped} so far in this worker): {error}")
            return None
        clip = {"pixel_values_videos": out["pixel_values_videos"][0], "video_frame_mask": out["video_frame_mask"][0]}
        if cacheable:
            self.clip_cache[row["video"]] = clip
        return clip

    def decode_rows(
        self, rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, torch.Tensor]], torch.Tensor]:
        """The rows whose video decoded, the batch's distinct clips, and each kept row's clip position (b,).

        Undecodable videos are skipped (with their rows) or raised, as configured. A video that several rows ask
        about is decoded once per batch, and the model encodes it once (`video_index`).
        """
        kept, clips, video_index = [], [], []
        position: dict[Any, int | None] = {}  # video path -> clip position, None if it failed to decode
        for row in rows:
            key = row["video"] if isinstance(row["video"], str) else id(row)
            if key not in position:
                clip = self._decode(row)
                position[key] = None if clip is None else len(clips)
                if clip is not None:
                    clips.append(clip)
            if position[key] is not None:
                kept.append(row)
                video_index.append(position[key])
        return kept, clips, torch.tensor(video_index, dtype=torch.long)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        kept, clips, video_index = self.decode_rows(rows)
        if not kept:  # every video failed: an empty batch, which the trainer turns into a zero-loss step
            return {"num_skipped_videos": torch.tensor(len(rows)), **({"meta": []} if self.with_meta else {})}
        pixels, frame_mask = stack_clips(clips)  # (v, t, 3, h, w): each distinct video once
        has_subtitles = any(row["subtitles"] for row in kept)
        text = self.processor(
            text=[row["question"] for row in kept],
            answers=[row["answer"] for row in kept],
            subtitles=[row["subtitles"] or None for row in kept] if has_subtitles else None,
            choices=[row["choices"] for row in kept] if self.with_choices else None,
        )
        batch = dict(text)
        batch.update(pixel_values_videos=pixels, video_frame_mask=frame_mask, video_index=video_index)
        batch["num_skipped_videos"] = torch.tensor(len(rows) - len(kept))  # questions dropped with their video
        if self.with_meta:
            batch["meta"] = [
                {k: row[k] for k in ("question_id", "question", "answer", "answer_type", "choices", "correct_choices")}
                for row in kept
            ]
        return batch


# ---------------------------------------------------------------------------------------------------- model


def resolve_config(model_args: ModelArguments) -> MCGConfig:
    if model_args.config_file is not None:
        return MCGConfig.from_json_file(model_args.config_file)
    name = model_args.hub_config or "mcg-tiny"
    path = HUB_CONFIG_DIR / (name if name.endswith(".json") else f"{name}.json")
    if not path.is_file():
        presets = sorted(p.stem for p in HUB_CONFIG_DIR.glob("*.json"))
        raise ValueError(f"Unknown --hub_config {name!r}; presets in {HUB_CONFIG_DIR}: {presets}.")
    return MCGConfig.from_json_file(str(path))


def apply_config_overrides(config: MCGConfig, overrides: str | None) -> MCGConfig:
    """`a=1,vision_config.b=x`: values are parsed as JSON where they can be (numbers, booleans), else strings."""
    if not overrides:
        return config
    for item in overrides.split(","):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--config_overrides entries look like key=value; got {item!r}.")
        *path, name = key.strip().split(".")
        target = config
        for part in path:
            target = getattr(target, part, None)
            if target is None:
                raise ValueError(f"--config_overrides: the config has no sub-config {part!r} (in {key!r}).")
        if not hasattr(target, name):
            raise ValueError(f"--config_overrides: unknown config field {key!r}.")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        setattr(target, name, value)
    return MCGConfig.from_dict(config.to_dict())  # re-runs the config's own checks on the edited values


def match_config_to_tokenizer(config: MCGConfig, tokenizer) -> None:
    """A from-scratch model takes its vocabulary size and special ids from the tokenizer it will read."""
    vocab_size = len(tokenizer)
    config.question_config.vocab_size = vocab_size
    config.decoder.vocab_size = vocab_size
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "bos_token_id": tokenizer.convert_tokens_to_ids("[DEC]"),
        "decoder_start_token_id": tokenizer.convert_tokens_to_ids("[DEC]"),
        "enc_token_id": tokenizer.convert_tokens_to_ids("[ENC]"),
        "mask_token_id": tokenizer.mask_token_id,
    }
    for name, value in ids.items():
        if value is None:
            raise ValueError(f"The tokenizer has no token for {name}; MCG needs [PAD], [SEP], [MASK], [DEC], [ENC].")
        if getattr(config, name, None) != value:
            logger.info(f"config.{name}: {getattr(config, name, None)} -> {value} (from the tokenizer)")
            setattr(config, name, value)


def build_model_and_processor(model_args: ModelArguments, data_args: DataArguments, train_ds):
    attn = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if model_args.model_name_or_path is not None:
        if model_args.config_overrides:
            raise ValueError("--config_overrides applies to from-scratch models, not to --model_name_or_path.")
        processor = MCGProcessor.from_pretrained(model_args.model_name_or_path)
        model = MCGForVideoQuestionAnswering.from_pretrained(model_args.model_name_or_path, **attn)
        vision = model.config.vision_config
        if data_args.image_size not in (None, vision.image_size):
            raise ValueError(f"--image_size {data_args.image_size} differs from the checkpoint's {vision.image_size}.")
        if len(processor.tokenizer) > model.config.decoder.vocab_size:
            raise ValueError(
                f"The checkpoint's tokenizer has {len(processor.tokenizer)} tokens but the model only "
                f"{model.config.decoder.vocab_size} embeddings."
            )
        if data_args.num_frames is not None:
            processor.video_processor.num_frames = data_args.num_frames
        return model, processor

    config = resolve_config(model_args)
    config = apply_config_overrides(config, model_args.config_overrides)
    vision = config.vision_config
    if data_args.num_frames is not None:
        vision.num_frames = data_args.num_frames
    if data_args.image_size is not None:
        vision.image_size = data_args.image_size
    if model_args.tokenizer_name is not None:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_args.tokenizer_name)
        add_mcg_special_tokens(tokenizer)
    else:
        from modeling_mcg import build_wordpiece_tokenizer

        tokenizer = build_wordpiece_tokenizer(vocabulary_words(train_ds))
    match_config_to_tokenizer(config, tokenizer)
    processor = MCGProcessor(video_processor=video_processor_for(vision), tokenizer=tokenizer)
    model = MCGForVideoQuestionAnswering._from_config(config, **attn)
    return model, processor


def apply_lora(model, model_args: ModelArguments):
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = model_args.lora_target_modules
    if "," in targets or targets.isidentifier():
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    lora_config = LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=targets,
        task_type=None,
    )
    peft_model = get_peft_model(model, lora_config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info(f"LoRA: {trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.2f}%)")
    return peft_model


# ---------------------------------------------------------------------------------------------------- trainer


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


class VideoQATrainer(Trainer):
    """`Trainer` that logs the running mean of every loss part next to `loss`, and totals skipped videos.

    Steps only accumulate local sums; `log()` (which every rank calls at the same steps) gathers them, so ranks
    never disagree on the number of collective calls, even when one of them meets an all-corrupt batch. With
    `group_by_video` the training order keeps each video's questions together (`VideoGroupedSampler`).
    """

    def __init__(self, *args, loss_parts=LOSS_PARTS, group_by_video=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_by_video = group_by_video
        self._parts = loss_parts
        self._sums = torch.zeros(len(loss_parts), dtype=torch.float64)
        self._counts = torch.zeros(len(loss_parts), dtype=torch.float64)
        self._local_skipped = 0
        self.skipped_videos = 0  # all ranks, up to the last log

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.group_by_video:
            return VideoGroupedSampler(dataset["video"], seed=self.args.data_seed or self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        skipped = inputs.pop("num_skipped_videos", None)
        inputs.pop("meta", None)
        if skipped is not None and model.training:
            self._local_skipped += int(skipped)
        if "input_ids" not in inputs:  # the collator dropped every sample (undecodable videos)
            # zero loss over the trainable weights keeps every rank's backward (and DDP's all-reduce) in step
            loss = sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)
            return (loss, None) if return_outputs else loss
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            for i, name in enumerate(self._parts):
                value = outputs.get(name)
                if value is not None:
                    self._sums[i] += value.detach().float().mean().item()
                    self._counts[i] += 1
        return (loss, outputs) if return_outputs else loss

    def gather_training_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum the local loss-part sums, counts and skips over all ranks (a collective call) and reset them."""
        local = torch.cat([self._sums, self._counts, torch.tensor([float(self._local_skipped)], dtype=torch.float64)])
        total = self.accelerator.gather(local.to(self.accelerator.device)[None]).sum(0).cpu()
        self._sums.zero_()
        self._counts.zero_()
        self._local_skipped = 0
        self.skipped_videos += int(total[-1])
        n = len(self._parts)
        return total[:n], total[n : 2 * n]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log (evaluation logs carry eval_loss)
            sums, counts = self.gather_training_stats()
            for name, total, count in zip(self._parts, sums.tolist(), counts.tolist()):
                if count:
                    logs[name] = round(total / count, 4)
            logs["skipped_videos"] = self.skipped_videos
        super().log(logs, start_time)


def set_cpu_threads(training_args: TrainingArguments) -> None:
    """On CPU (unless OMP_NUM_THREADS says otherwise), train with the cores the DataLoader workers leave free:
    oversubscribed OpenMP threads spin at their barriers, which made the default loop on 2 cores 12x slower with 2
    training threads next to a decoding worker than with 1 (benchmarks/bench_dataloader.py --threads 2,1). An empty
    OMP_NUM_THREADS counts as unset, as OpenMP itself ignores it."""
    if training_args.use_cpu and not os.environ.get("OMP_NUM_THREADS"):
        workers = training_args.dataloader_num_workers
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))


def resolve_eval_mode(data_args: DataArguments, eval_ds: datasets.Dataset) -> str:
    mode = data_args.eval_mode
    if mode not in ("auto", "open", "mc", "both"):
        raise ValueError(f"--eval_mode must be auto, open, mc or both; got {mode!r}.")
    all_have_choices = all(len(c) > 0 for c in eval_ds["choices"])
    if mode == "auto":
        if not all_have_choices:
            return "open"
        return "both" if data_args.dataset == "synthetic" else "mc"
    if mode in ("mc", "both") and not all_have_choices:
        raise ValueError(f"--eval_mode {mode} needs candidate answers for every question; some rows have none.")
    return mode


@torch.no_grad()
def predict(trainer: VideoQATrainer, eval_ds, collator: VideoQACollator, mode: str, data_args: DataArguments):
    """Answer every eval question on every rank (each its shard), then gather all records everywhere."""
    trainer.data_collator = collator
    dataloader = trainer.get_test_dataloader(eval_ds)
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.eval()
    tokenizer = trainer.processing_class.tokenizer
    records, skipped = [], 0
    for batch in dataloader:
        meta = batch.pop("meta")
        skipped += int(batch.pop("num_skipped_videos"))
        if not meta:
            continue
        inputs = {
            k: batch[k]
            for k in ("input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask", "video_index")
        }
        generated = choice_index = None
        if mode in ("open", "both"):
            ids = model.generate(**inputs, num_beams=data_args.num_beams, max_new_tokens=data_args.max_new_tokens)
            generated = [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        if mode in ("mc", "both"):
            scores = model.score_choices(**inputs, choice_labels=batch["choice_labels"])
            choice_index = scores.argmax(dim=1).tolist()
        for i, row in enumerate(meta):
            record = {k: row[k] for k in ("question_id", "question", "answer", "answer_type")}
            if generated is not None:
                record["prediction"] = generated[i]
            if choice_index is not None:
                record["choices"] = row["choices"]
                record["choice_prediction"] = choice_index[i]
                record["correct_choice"] = row["correct_choices"][0]
                record.setdefault("prediction", row["choices"][choice_index[i]])
            records.append(record)
    records = gather_object(records)
    skipped = sum(gather_object([skipped]))
    unique: dict[str, dict] = {}
    for record in records:  # the last batch is padded with repeats on some ranks
        unique.setdefault(record["question_id"], record)
    return list(unique.values()), skipped


def compute_metrics(
    records: list[dict], mode: str, prefix: str = "test", multilabel: bool = False
) -> dict[str, float]:
    """Accuracy of `records` (per row, per answer type); `multilabel` adds the per-question scores of option rows."""
    metric = load_videoqa_metric()
    types = [r["answer_type"] for r in records]
    out: dict[str, float] = {}
    if mode in ("open", "both"):
        result = metric.compute(
            predictions=[r["prediction"] for r in records],
            references=[r["answer"] for r in records],
            answer_types=types,
            mode="open",
        )
        out.update({f"{prefix}_{k}": v for k, v in result.items()})
        for r in records:
            r["correct"] = metric_exact(r["prediction"], r["answer"])
    if mode in ("mc", "both"):
        result = metric.compute(
            predictions=[r["choice_prediction"] for r in records],
            references=[r["correct_choice"] for r in records],
            answer_types=types,
            mode="mc",
        )
        out.update({f"{prefix}_mc_{k}": v for k, v in result.items()})
        if mode == "mc":  # the primary number of a multiple-choice set is its choice accuracy
            out.update({f"{prefix}_{k}": v for k, v in result.items()})
            for r in records:
                r["correct"] = r["choice_prediction"] == r["correct_choice"]
        else:
            for r in records:
                r["mc_correct"] = r["choice_prediction"] == r["correct_choice"]
    if multilabel:
        # option rows regrouped per question: `accuracy` counts a question only when every option is judged right
        predictions, references, types = multilabel_records(records)
        if predictions:
            result = metric.compute(
                predictions=predictions, references=references, answer_types=types, mode="multilabel"
            )
            out.update({f"{prefix}_multilabel_{k}": v for k, v in result.items()})
    return out


def metric_exact(prediction: str, answer: str) -> bool:
    from modeling_mcg.metrics import normalize_answer

    return normalize_answer(prediction) == normalize_answer(answer)


# ---------------------------------------------------------------------------------------------------- outputs


def write_plots(output_dir: Path, log_history: list[dict], metrics: dict[str, float]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    train_logs = [entry for entry in log_history if "loss" in entry and "step" in entry]
    if train_logs:
        fig, ax = plt.subplots(figsize=(6, 4))
        steps = [entry["step"] for entry in train_logs]
        ax.plot(steps, [entry["loss"] for entry in train_logs], label="loss", marker=".")
        for part in LOSS_PARTS:
            if any(part in entry for entry in train_logs):
                ax.plot(steps, [entry.get(part, math.nan) for entry in train_logs], label=part, linestyle="--")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title("Training loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(output_dir / "loss_curve.png", dpi=100)
        plt.close(fig)
        written.append("loss_curve.png")
    for key, title, filename in (
        ("test_accuracy_", "Test accuracy per answer type", "accuracy_per_type.png"),
        ("test_mc_accuracy_", "Multiple-choice accuracy per answer type", "mc_accuracy_per_type.png"),
    ):
        per_type = {k[len(key) :]: v for k, v in metrics.items() if k.startswith(key)}
        if not per_type or (
            key == "test_mc_accuracy_"
            and "accuracy_per_type.png" in written
            and metrics.get("test_accuracy") == metrics.get("test_mc_accuracy")
        ):
            continue
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(per_type) + 2), 4))
        ax.bar(list(per_type), list(per_type.values()), color="tab:blue")
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(title)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
        fig.tight_layout()
        fig.savefig(output_dir / filename, dpi=100)
        plt.close(fig)
        written.append(filename)
    return written


def model_card_parts(script: str, model_args, argv: list[str], metrics: dict, plots: list[str]):
    """(starting point, reproducing command, metric table rows, plot images) of a script's model card."""
    preset = model_args.model_name_or_path or model_args.config_file or model_args.hub_config or "mcg-tiny"
    command = " ".join([f"python examples/{script}", *(shlex.quote(a) for a in argv)])
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
    images = "\n".join(f"![{p}]({p})" for p in plots)
    return preset, command, rows, images


def write_model_card(
    output_dir: Path, model_args, data_args, training_args, metrics, plots, lora_layout, argv: list[str]
) -> None:
    preset, command, rows, images = model_card_parts("run_videoqa.py", model_args, argv, metrics, plots)
    baseline = " (question-only baseline: frames replaced by zeros)" if data_args.blank_video else ""
    card = f"""---
library_name: transformers
pipeline_tag: video-question-answering
tags:
- mcg
- video-question-answering
- {data_args.dataset}
---

# MCG video question answering — {data_args.dataset}{baseline}

MCG (arXiv 2410.09379): a video encoder, a question encoder and a cross-modal fusor whose evidence conditions a
generative answer decoder. This folder was trained with `examples/run_videoqa.py` from `{preset}`{lora_layout}.

## Intended use

Research and demonstration of generative video QA. Models trained on the synthetic set only know coloured shapes
moving across a dark frame; they say nothing about real video.

## Use

```python
import modeling_mcg  # registers MCG with the Auto classes and the video-question-answering pipeline
from modeling_mcg import MCGForVideoQuestionAnswering, MCGProcessor

processor = MCGProcessor.from_pretrained("path/to/this/folder")
model = MCGForVideoQuestionAnswering.from_pretrained("path/to/this/folder")
inputs = processor(videos="clip.mp4", text="which object appears first?")
print(processor.batch_decode(model.generate(**inputs, max_new_tokens={data_args.max_new_tokens}), skip_special_tokens=True))
```

## Training

- data: `{data_args.dataset}` (train split `{data_args.train_split}`, evaluated on `{data_args.eval_split}`)
- frames: {data_args.num_frames or "config default"} ({data_args.train_sampling} sampling in training,
  {data_args.eval_sampling} in evaluation)
- epochs {training_args.num_train_epochs}, max_steps {training_args.max_steps}, learning rate
  {training_args.learning_rate}, batch size {training_args.per_device_train_batch_size} per device, seed
  {training_args.seed}
- command: `{command}`

## Evaluation

| metric | value |
|---|---|
{rows}

{images}
"""
    (output_dir / "README.md").write_text(card, encoding="utf-8")


# ---------------------------------------------------------------------------------------------------- main


def main(args: list[str] | None = None) -> dict[str, Any]:
    """Train and/or evaluate; returns the metrics, the trained model and the trainer (for tests and notebooks)."""
    model_args, data_args, training_args = parse_args(args)
    if data_args.blank_video and training_args.output_dir == TRAINING_DEFAULTS["output_dir"]:
        # the baseline must not overwrite (or resume from) the real run's folder
        training_args.output_dir = TRAINING_DEFAULTS["output_dir"] + "_blank_video"
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    check_one_model_source(model_args)
    if data_args.dataset not in DATASET_NAMES:  # DATASET_NAMES includes synthetic
        raise ValueError(f"Unknown --dataset {data_args.dataset!r}; choose one of {DATASET_NAMES}.")
    if model_args.merge_lora and not model_args.use_lora:
        raise ValueError("--merge_lora needs --use_lora.")
    set_cpu_threads(training_args)
    set_seed(training_args.seed)
    output_dir = Path(training_args.output_dir)
    if data_args.cache_clips and training_args.dataloader_num_workers > 0:
        training_args.dataloader_persistent_workers = True  # the cache lives in the workers

    train_ds = _limit(load_split(data_args, data_args.train_split), data_args.max_train_samples)
    eval_ds = _limit(load_split(data_args, data_args.eval_split), data_args.max_eval_samples)
    logger.info(f"{data_args.dataset}: {len(train_ds)} training and {len(eval_ds)} evaluation questions")

    model, processor = build_model_and_processor(model_args, data_args, train_ds)
    model.config.use_cache = True
    base_model = model
    if model_args.use_lora:
        if model_args.model_name_or_path is None and training_args.should_save:
            # a from-scratch base is random: the adapter is only usable together with these exact weights
            base_dir = output_dir / "base_model"
            base_model.save_pretrained(base_dir)
            processor.save_pretrained(base_dir)
        model = apply_lora(model, model_args)
        base_path = model_args.model_name_or_path or str((output_dir / "base_model").resolve())
        model.peft_config["default"].base_model_name_or_path = base_path

    train_collator = VideoQACollator(
        processor,
        data_args.train_sampling,
        data_args.on_corrupt_video,
        data_args.blank_video,
        data_args.do_augment,
        cache_clips=data_args.cache_clips,
    )
    trainer = VideoQATrainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        data_collator=train_collator,
        processing_class=processor,
        group_by_video=data_args.group_by_video,
    )

    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint
        if checkpoint == "last":
            checkpoint = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
            if checkpoint is None:
                raise ValueError(f"--resume_from_checkpoint last: no checkpoint-* folder in {output_dir}.")
            logger.info(f"Resuming from {checkpoint}")
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
        trainer.gather_training_stats()  # skips after the last log
        logger.info(f"Training done; {trainer.skipped_videos} undecodable training videos skipped")

    metrics: dict[str, Any] = {}
    records: list[dict] = []
    if training_args.do_eval:
        mode = resolve_eval_mode(data_args, eval_ds)
        eval_collator = VideoQACollator(
            processor,
            data_args.eval_sampling,
            data_args.on_corrupt_video,
            data_args.blank_video,
            with_choices=mode in ("mc", "both"),
            with_meta=True,
        )
        records, skipped = predict(trainer, eval_ds, eval_collator, mode, data_args)
        metrics = compute_metrics(records, mode, multilabel=is_multilabel(data_args))
        metrics["test_samples"] = len(records)
        metrics["test_skipped_videos"] = skipped
        if training_args.do_train:
            metrics["train_skipped_videos"] = trainer.skipped_videos
        logger.info("Test metrics: " + json.dumps({k: round(v, 4) for k, v in metrics.items()}))

    # saving: save_model runs on every rank (it may synchronise); files are written by the main process only
    final_model = model
    lora_layout = ""
    if model_args.use_lora and model_args.merge_lora:
        trainer.save_model(str(output_dir / "adapter"))
        final_model = trainer.accelerator.unwrap_model(model).merge_and_unload()
        if trainer.is_world_process_zero():
            final_model.save_pretrained(output_dir)
            processor.save_pretrained(output_dir)
        lora_layout = " with LoRA, merged into the weights (the adapter is in `adapter/`)"
    else:
        trainer.save_model(str(output_dir))
        if model_args.use_lora:
            lora_layout = " with LoRA: this folder is a peft adapter on the base model in `base_model/`"
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        plots = write_plots(output_dir, trainer.state.log_history, metrics)
        if training_args.do_eval:
            with open(output_dir / "metrics.json", "w", encoding="utf-8") as handle:
                json.dump(metrics, handle, indent=2, sort_keys=True)
            with open(output_dir / "predictions.jsonl", "w", encoding="utf-8") as handle:
                for record in records:
                    handle.write(json.dumps(record) + "\n")
        argv = sys.argv[1:] if args is None else list(args)
        write_model_card(output_dir, model_args, data_args, training_args, metrics, plots, lora_layout, argv)
    trainer.accelerator.wait_for_everyone()
    return {"metrics": metrics, "model": final_model, "trainer": trainer, "processor": processor}


if __name__ == "__main__":
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    main()
