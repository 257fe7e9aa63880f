#!/usr/bin/env python
"""Pretrain MCG on video–caption pairs (ICL + TCL + MLM, optionally VTM) with the Hugging Face `Trainer`.

With no arguments it pretrains the tiny preset on captions of the built-in synthetic videos ("a red circle moves
left, then a blue square moves up"; generated once and cached) on CPU and leaves the folder in `outputs/pretrain/`,
ready for `examples/run_videoqa.py --model_name_or_path outputs/pretrain`:

    python examples/run_pretraining.py
    accelerate launch examples/run_pretraining.py --train_file /data/webvid/results_2M_train.csv \
        --video_dir /data/webvid/videos --hub_config mcg-base --tokenizer_name bert-base-uncased --num_frames 4 \
        --train_sampling headtail --learning_rate 1e-4 --per_device_train_batch_size 16

The output folder holds an `MCGForPreTraining` checkpoint and the processor. `MCGForVideoQuestionAnswering` loads
it directly (both keep the video encoder, question encoder, fusor and projections under `mcg.`); its answer
decoder is new and the pretraining heads (`mlm_head`, `vtm_head`) are left out. Videos are decoded in the
DataLoader workers by the collator, as in `run_videoqa.py`, whose argument handling, collator and trainer this
script reuses.
"""

import json
import logging
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from transformers import TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run_videoqa.py sits next to this file

from run_videoqa import TRAINING_DEFAULTS as VIDEOQA_TRAINING_DEFAULTS  # noqa: E402
from run_videoqa import (  # noqa: E402
    VideoQACollator,
    VideoQATrainer,
    _limit,
    _parse_num_videos,
    apply_config_overrides,
    check_one_model_source,
    match_config_to_tokenizer,
    model_card_parts,
    parse_script_args,
    resolve_config,
    set_cpu_threads,
    stack_clips,
    video_processor_for,
    vocabulary_words,
)

from modeling_mcg import (  # noqa: E402
    MCGConfig,
    MCGForPreTraining,
    MCGProcessor,
    add_mcg_special_tokens,
    build_wordpiece_tokenizer,
)
from modeling_mcg.data.captions import load_caption_dataset, synthetic_captions  # noqa: E402

logger = logging.getLogger("run_pretraining")

LOSS_PARTS = ("loss_icl", "loss_tcl", "loss_mlm", "loss_vtm")
LOSS_WEIGHTS = ("icl_loss_weight", "tcl_loss_weight", "mlm_loss_weight", "vtm_loss_weight")

# Defaults of the plain `python examples/run_pretraining.py` run (tiny preset, synthetic captions, 2-core CPU);
# every one can be overridden on the command line.
TRAINING_DEFAULTS = {
    **VIDEOQA_TRAINING_DEFAULTS,
    "output_dir": "outputs/pretrain",
    "do_eval": False,
    "per_device_eval_batch_size": 32,
    "prediction_loss_only": True,  # evaluation reports the losses; no logits are gathered
}


@dataclass
class ModelArguments:
    """Which model to start from, and the pretraining objectives."""

    hub_config: str | None = field(
        default=None,
        metadata={
            "help": "Preset name from the repo's hub_configs/ (mcg-tiny, mcg-base). Default: mcg-tiny when "
            "neither --config_file nor --model_name_or_path is given."
        },
    )
    config_file: str | None = field(default=None, metadata={"help": "Path to an MCGConfig JSON (train from scratch)."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Checkpoint folder (model + processor) to continue from; its heads are kept when present."},
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={
            "help": "BERT tokenizer folder/name for a from-scratch model (e.g. bert-base-uncased for mcg-base); "
            "[DEC]/[ENC] are added. Default: a WordPiece vocabulary built from the captions (and, for the "
            "synthetic captions, the synthetic questions and answers, so the folder fine-tunes on them)."
        },
    )
    max_vocabulary_words: int = field(
        default=20000, metadata={"help": "Most frequent caption words kept in a vocabulary built from the data."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "For a from-scratch model: comma-separated config edits, dotted for sub-configs, e.g. "
            "'initializer_range=0.1,mlm_probability=0.2'."
        },
    )
    attn_implementation: str | None = field(default=None, metadata={"help": "eager, sdpa, ... (default: sdpa)."})
    icl_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the instance-level contrast (ICL)."})
    tcl_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the token-level contrast (TCL)."})
    mlm_loss_weight: float = field(default=1.0, metadata={"help": "Weight of masked language modelling (MLM)."})
    use_vtm: bool = field(
        default=False,
        metadata={"help": "Add video-text matching with in-batch hard negatives (needs >= 2 pairs per batch)."},
    )
    vtm_loss_weight: float = field(default=1.0, metadata={"help": "Weight of VTM when --use_vtm is on."})


@dataclass
class DataArguments:
    """Which captions, and how videos are sampled."""

    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Caption file: a WebVid csv (videoid,contentUrl,duration,page_dir,name), a csv with video and "
            "caption columns, or a .jsonl/.json list of {video, caption}. Default: the synthetic set's captions."
        },
    )
    validation_file: str | None = field(default=None, metadata={"help": "Caption file for --do_eval."})
    video_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder the video names are relative to; WebVid videos are <video_dir>/<page_dir>/<videoid>.mp4 "
            "(or <video_dir>/<videoid>.mp4). Default: the caption file's folder."
        },
    )
    on_missing_video: str = field(
        default="raise", metadata={"help": "raise: fail when a listed video does not exist; skip: drop those pairs."}
    )
    train_split: str = field(default="train", metadata={"help": "Synthetic split to pretrain on."})
    eval_split: str = field(default="validation", metadata={"help": "Synthetic split for --do_eval."})
    synthetic_cache_dir: str | None = field(
        default=None, metadata={"help": "Cache folder of the synthetic set (default $MCG_CACHE or ~/.cache)."}
    )
    synthetic_num_videos: str | None = field(
        default=None, metadata={"help": "Synthetic videos per split, e.g. 'train=20,test=8' (default 2400/100/100)."}
    )
    num_frames: int | None = field(default=None, metadata={"help": "Frames per clip (default: the model config's)."})
    train_sampling: str = field(default="rand", metadata={"help": "uniform, rand, headtail (official) or fps."})
    eval_sampling: str = field(default="uniform", metadata={"help": "uniform, rand, headtail or fps."})
    image_size: int | None = field(default=None, metadata={"help": "Frame side in px (default: the config's)."})
    do_augment: bool = field(
        default=False, metadata={"help": "Random resized crop + flip + jitter in training (mirrors left/right!)."}
    )
    max_caption_length: int = field(
        default=30, metadata={"help": "Tokens per caption including [ENC] and [SEP] (the official 30)."}
    )
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    on_corrupt_video: str = field(
        default="skip", metadata={"help": "skip: drop a pair whose video cannot be decoded (counted); raise."}
    )


def parse_args(args: list[str] | None):
    return parse_script_args((ModelArguments, DataArguments, TrainingArguments), TRAINING_DEFAULTS, args)


# ---------------------------------------------------------------------------------------------------- data


def load_captions(data_args: DataArguments, split: str) -> datasets.Dataset:
    """The (video, caption) pairs of `split` ("train" or "eval") from the caption file or the synthetic set."""
    path = data_args.train_file if split == "train" else data_args.validation_file
    if data_args.train_file is None:
        if path is not None:
            raise ValueError("--validation_file needs --train_file (without it both come from the synthetic set).")
        return synthetic_captions(
            split=data_args.train_split if split == "train" else data_args.eval_split,
            cache_dir=data_args.synthetic_cache_dir,
            num_videos=_parse_num_videos(data_args.synthetic_num_videos),
        )
    if path is None:
        raise ValueError("--do_eval with --train_file needs --validation_file.")
    return load_caption_dataset(path, video_dir=data_args.video_dir, on_missing=data_args.on_missing_video)


def caption_words(captions: list[str], max_words: int) -> list[str]:
    """The `max_words` most frequent lower-cased caption words (ties in first-seen order)."""
    counts = Counter(word.strip(".,;:!?\"'()") for text in captions for word in text.lower().split())
    counts.pop("", None)
    return [word for word, _ in counts.most_common(max_words)]


class CaptionCollator(VideoQACollator):
    """Decodes a batch's videos (in the DataLoader worker) and tokenises the captions.

    Captions become `[ENC] caption [SEP]`, the layout of a question, so that the question encoder reads the same
    first token in pretraining and in fine-tuning; `word_ids` maps every token to its word for TCL (sub-word
    pieces share one word, `[SEP]` is a word of its own, `[ENC]` and padding are -1). Undecodable videos are
    skipped and counted or re-raised as in `VideoQACollator`. With `min_pairs` (2 for VTM, whose negatives are
    in-batch), a batch left with fewer pairs is dropped (the trainer turns it into a zero-loss step).
    """

    def __init__(
        self, processor, sampling, max_caption_length=30, on_corrupt_video="skip", do_augment=False, min_pairs=1
    ):
        super().__init__(processor, sampling, on_corrupt_video=on_corrupt_video, do_augment=do_augment)
        if max_caption_length < 3:
            raise ValueError(f"max_caption_length must be >= 3 ([ENC], a token, [SEP]); got {max_caption_length}.")
        self.max_caption_length = max_caption_length
        self.min_pairs = min_pairs

    def encode_captions(self, captions: list[str]) -> dict[str, torch.Tensor]:
        processor = self.processor
        encoded = processor.tokenizer(
            captions, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False
        )
        keep = self.max_caption_length - 2
        sequences, words = [], []
        for i, ids in enumerate(encoded["input_ids"]):
            word_of = [-1 if w is None else w for w in encoded.word_ids(i)[:keep]]
            sequences.append([processor.enc_token_id, *ids[:keep], processor.eos_token_id])
            words.append([-1, *word_of, max(word_of, default=-1) + 1])  # [SEP]: the word after the last one
        length = max(len(s) for s in sequences)
        pad = processor.pad_token_id
        return {
            "input_ids": torch.tensor([s + [pad] * (length - len(s)) for s in sequences]),
            "attention_mask": torch.tensor([[1] * len(s) + [0] * (length - len(s)) for s in sequences]),
            "word_ids": torch.tensor([w + [-1] * (length - len(w)) for w in words]),
        }

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        kept, clips, video_index = self.decode_rows(rows)
        clips = [clips[i] for i in video_index.tolist()]  # one clip per caption: pre-training pairs are per row
        skipped = torch.tensor(len(rows) - len(kept))
        if len(kept) < self.min_pairs:
            if kept:
                logger.warning(
                    f"Dropped a batch with {len(kept)} decodable pair(s): video-text matching needs "
                    f"{self.min_pairs} per batch."
                )
            return {"num_skipped_videos": skipped}
        pixels, frame_mask = stack_clips(clips)
        batch = self.encode_captions([row["caption"] for row in kept])
        batch.update(pixel_values_videos=pixels, video_frame_mask=frame_mask, num_skipped_videos=skipped)
        return batch


# ---------------------------------------------------------------------------------------------------- model


def pretraining_loss_weights(model_args: ModelArguments) -> dict[str, float]:
    return {
        "icl_loss_weight": model_args.icl_loss_weight,
        "tcl_loss_weight": model_args.tcl_loss_weight,
        "mlm_loss_weight": model_args.mlm_loss_weight,
        "vtm_loss_weight": model_args.vtm_loss_weight if model_args.use_vtm else 0.0,
    }


def build_model_and_processor(model_args: ModelArguments, data_args: DataArguments, train_ds: datasets.Dataset):
    """The model with the pretraining loss weights set, its processor, and the loss weights of the starting config
    (written back into the saved config, so that fine-tuning starts with them)."""
    attn = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    weights = pretraining_loss_weights(model_args)
    if model_args.model_name_or_path is not None:
        if model_args.config_overrides:
            raise ValueError("--config_overrides applies to from-scratch models, not to --model_name_or_path.")
        start = MCGConfig.from_pretrained(model_args.model_name_or_path)
        processor = MCGProcessor.from_pretrained(model_args.model_name_or_path)
        model = MCGForPreTraining.from_pretrained(model_args.model_name_or_path, **weights, **attn)
        vision = model.config.vision_config
        if data_args.image_size not in (None, vision.image_size):
            raise ValueError(f"--image_size {data_args.image_size} differs from the checkpoint's {vision.image_size}.")
        if data_args.num_frames is not None:
            processor.video_processor.num_frames = data_args.num_frames
    else:
        start = apply_config_overrides(resolve_config(model_args), model_args.config_overrides)
        vision = start.vision_config
        if data_args.num_frames is not None:
            vision.num_frames = data_args.num_frames
        if data_args.image_size is not None:
            vision.image_size = data_args.image_size
        if model_args.tokenizer_name is not None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model_args.tokenizer_name)
            add_mcg_special_tokens(tokenizer)
        else:
            words = caption_words(train_ds["caption"], model_args.max_vocabulary_words)
            if data_args.train_file is None:  # the folder will be fine-tuned on the synthetic questions
                from modeling_mcg.data.synthetic import load_synthetic_videoqa

                qa = load_synthetic_videoqa(
                    data_args.train_split,
                    cache_dir=data_args.synthetic_cache_dir,
                    num_videos=_parse_num_videos(data_args.synthetic_num_videos),
                )
                words = list(dict.fromkeys([*words, *vocabulary_words(qa)]))
            tokenizer = build_wordpiece_tokenizer(words)
        match_config_to_tokenizer(start, tokenizer)
        processor = MCGProcessor(video_processor=video_processor_for(vision), tokenizer=tokenizer)
        config = MCGConfig.from_dict({**start.to_dict(), **weights})  # re-validates
        model = MCGForPreTraining._from_config(config, **attn)
    max_positions = model.config.question_config.max_position_embeddings
    if data_args.max_caption_length > max_positions:
        raise ValueError(
            f"--max_caption_length {data_args.max_caption_length} exceeds the question encoder's "
            f"{max_positions} positions."
        )
    return model, processor, {name: getattr(start, name) for name in LOSS_WEIGHTS}


# ---------------------------------------------------------------------------------------------------- trainer


class PretrainingTrainer(VideoQATrainer):
    """`VideoQATrainer` with the pretraining loss parts; evaluation logs them too (`eval_loss_icl`, ...)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, loss_parts=LOSS_PARTS, **kwargs)
        self._eval_sums = torch.zeros(len(LOSS_PARTS), dtype=torch.float64)
        self._eval_counts = torch.zeros(len(LOSS_PARTS), dtype=torch.float64)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if not model.training and outputs is not None:
            for i, name in enumerate(LOSS_PARTS):
                if outputs.get(name) is not None:
                    self._eval_sums[i] += outputs[name].detach().float().item()
                    self._eval_counts[i] += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "eval_loss" in logs:
            local = torch.cat([self._eval_sums, self._eval_counts])
            total = self.accelerator.gather(local.to(self.accelerator.device)[None]).sum(0).cpu()
            self._eval_sums.zero_()
            self._eval_counts.zero_()
            n = len(LOSS_PARTS)
            for name, value, count in zip(LOSS_PARTS, total[:n].tolist(), total[n:].tolist()):
                if count:
                    logs[f"eval_{name}"] = round(value / count, 4)
        super().log(logs, start_time)


# ---------------------------------------------------------------------------------------------------- outputs


def write_loss_plot(output_dir: Path, log_history: list[dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [entry for entry in log_history if "loss" in entry and "step" in entry]
    if not logs:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [entry["step"] for entry in logs]
    ax.plot(steps, [entry["loss"] for entry in logs], label="loss", marker=".")
    for part in LOSS_PARTS:
        if any(part in entry for entry in logs):
            ax.plot(steps, [entry.get(part, math.nan) for entry in logs], label=part, linestyle="--")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Pretraining loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output_dir / "loss_curve.png", dpi=100)
    plt.close(fig)
    return ["loss_curve.png"]


def write_model_card(output_dir: Path, model_args, data_args, training_args, weights, metrics, plots, argv) -> None:
    preset, command, rows, images = model_card_parts("run_pretraining.py", model_args, argv, metrics, plots)
    data = data_args.train_file or f"synthetic captions ({data_args.train_split} split)"
    objectives = ", ".join(f"{name.removesuffix('_loss_weight').upper()} × {w}" for name, w in weights.items() if w)
    card = f"""---
library_name: transformers
tags:
- mcg
- video-text-pretraining
---

# MCG pretrained on video–caption pairs

MCG (arXiv 2410.09379) pretrained with `examples/run_pretraining.py` from `{preset}` on {data}: {objectives}.
The folder is an `MCGForPreTraining` checkpoint with its processor. `config.json` carries the loss weights of
the starting config (the fine-tuning defaults), not the pretraining weights above.

## Fine-tune

```bash
python examples/run_videoqa.py --model_name_or_path path/to/this/folder
```

`MCGForVideoQuestionAnswering.from_pretrained` takes the video encoder, question encoder, fusor and projections
from here; the answer decoder starts from scratch (its keys are reported as newly initialised).

## Training

- frames: {data_args.num_frames or "config default"} ({data_args.train_sampling} sampling), captions up to
  {data_args.max_caption_length} tokens
- epochs {training_args.num_train_epochs}, max_steps {training_args.max_steps}, learning rate
  {training_args.learning_rate}, batch size {training_args.per_device_train_batch_size} per device, seed
  {training_args.seed}
- command: `{command}`

| metric | value |
|---|---|
{rows}

{images}
"""
    (output_dir / "README.md").write_text(card, encoding="utf-8")


# ---------------------------------------------------------------------------------------------------- main


def main(args: list[str] | None = None) -> dict[str, Any]:
    """Pretrain (and optionally evaluate the losses); returns the metrics, the model and the trainer."""
    model_args, data_args, training_args = parse_args(args)
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    check_one_model_source(model_args)
    if model_args.use_vtm and training_args.per_device_train_batch_size < 2:
        raise ValueError("--use_vtm draws in-batch negatives: use --per_device_train_batch_size >= 2.")
    set_cpu_threads(training_args)
    set_seed(training_args.seed)
    output_dir = Path(training_args.output_dir)

    train_ds = _limit(load_captions(data_args, "train"), data_args.max_train_samples)
    eval_ds = _limit(load_captions(data_args, "eval"), data_args.max_eval_samples) if training_args.do_eval else None
    logger.info(f"{len(train_ds)} training pairs" + (f", {len(eval_ds)} evaluation pairs" if eval_ds else ""))

    model, processor, finetune_weights = build_model_and_processor(model_args, data_args, train_ds)
    min_pairs = 2 if model_args.use_vtm else 1

    def collator(sampling: str, do_augment: bool = False) -> CaptionCollator:
        return CaptionCollator(
            processor, sampling, data_args.max_caption_length, data_args.on_corrupt_video, do_augment, min_pairs
        )

    trainer = PretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        data_collator=collator(data_args.train_sampling, data_args.do_augment),
        processing_class=processor,
    )

    metrics: dict[str, Any] = {}
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint
        if checkpoint == "last":
            checkpoint = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
            if checkpoint is None:
                raise ValueError(f"--resume_from_checkpoint last: no checkpoint-* folder in {output_dir}.")
            logger.info(f"Resuming from {checkpoint}")
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.gather_training_stats()  # skips after the last log
        metrics.update(train_result.metrics, train_skipped_videos=trainer.skipped_videos)
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()

    if training_args.do_eval:
        trainer.data_collator = collator(data_args.eval_sampling)
        eval_metrics = trainer.evaluate(eval_ds)
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)

    # The saved config gets the starting config's loss weights back: the folder is for fine-tuning, where they
    # switch the auxiliary contrast of MCGForVideoQuestionAnswering (off in the presets). Continuing pretraining
    # with this script sets the pretraining weights again from its arguments.
    pretraining_weights = {name: getattr(model.config, name) for name in LOSS_WEIGHTS}
    for name, value in finetune_weights.items():
        setattr(model.config, name, value)
    trainer.save_model(str(output_dir))  # every rank (it may synchronise); the main process writes
    for name, value in pretraining_weights.items():
        setattr(model.config, name, value)
    if trainer.is_world_process_zero():
        plots = write_loss_plot(output_dir, trainer.state.log_history)
        argv = sys.argv[1:] if args is None else list(args)
        write_model_card(output_dir, model_args, data_args, training_args, pretraining_weights, metrics, plots, argv)
        with open(output_dir / "pretraining_loss_weights.json", "w", encoding="utf-8") as handle:
            json.dump(pretraining_weights, handle, indent=2)
    trainer.accelerator.wait_for_everyone()
    return {"metrics": metrics, "model": model, "trainer": trainer, "processor": processor}


if __name__ == "__main__":
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    main()
