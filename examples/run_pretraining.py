#!/usr/bin/env python
"""Pretrain MCG on video–caption pairs (ICL + TCL + MLM, optionally VTM) with the Hugging Face `Trainer`.

With no arguments it pretrains the tiny preset on captions of the built-in synthetic videos ("a red circle moves
left, then a blue square moves up"; generated once and cached) on CPU and leaves the folder in `outputs/pretrain/`,
ready for `examples/run_videoqa.py --model_name_or_path outputs/pretrain`:

    python examples/run_pretraining.py
    accelerate launch examples/run_pretraining.py --train_file /data/webvid/results_2M_train.csv \
        --video_dir /data/webvid/videos --hub_config mcg-base --tokenizer_name bert-base-uncased --num_frames 4 \
        --train_sampling headtail --learning_rate 1e-4 --per_device_train_batch_size 16

At scale, stream shards written by `python -m modeling_mcg.data.shards` (WebDataset tar or Parquet) instead: each
process reads its own share of the shards, and a checkpoint resumes mid-epoch (see examples/README.md):

    accelerate launch --config_file examples/accelerate_multi_gpu.yaml examples/run_pretraining.py \
        --train_shards /data/webvid/shards --hub_config mcg-base --tokenizer_name bert-base-uncased \
        --num_train_epochs 5 --per_device_train_batch_size 32 --dataloader_num_workers 8 --save_steps 2000

The output folder is an `MCGForPreTraining` checkpoint written by `modeling_mcg.save_for_hub` (processor, remote code,
pipeline, model card). `MCGForVideoQuestionAnswering` (and `AutoModelForSeq2SeqLM`) load it directly: the video
encoder, question encoder, fusor and projections come from here, the answer decoder is new and the pretraining heads
(`mlm_head`, `vtm_head`) are left out.
"""

import itertools
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import transformers
from transformers import set_seed

from modeling_mcg import (
    MCGConfig,
    MCGForPreTraining,
    MCGProcessor,
    add_mcg_special_tokens,
    build_wordpiece_tokenizer,
    save_for_hub,
)
from modeling_mcg.data.captions import load_caption_dataset, synthetic_captions
from modeling_mcg.data.shards import ShardedVideoDataset
from modeling_mcg.data.synthetic import load_synthetic_videoqa, num_videos_for_samples, parse_num_videos
from modeling_mcg.training import (
    PRETRAINING_LOSS_PARTS,
    SYNTHETIC_TRAINING_DEFAULTS,
    CaptionCollator,
    MCGTrainingArguments,
    PretrainingTrainer,
    apply_config_overrides,
    check_output_dir_writable,
    check_room_for_checkpoint,
    command_line,
    load_preset,
    match_config_to_tokenizer,
    parse_args,
    resolve_checkpoint,
    set_cpu_threads,
    training_summary,
    video_processor_for,
    vocabulary_words,
    write_loss_plot,
)

logger = logging.getLogger("run_pretraining")

LOSS_WEIGHTS = ("icl_loss_weight", "tcl_loss_weight", "mlm_loss_weight", "vtm_loss_weight")

# Defaults of the plain `python examples/run_pretraining.py` run (tiny preset, synthetic captions, 2-core CPU); every
# one can be overridden on the command line.
TRAINING_DEFAULTS = {
    **SYNTHETIC_TRAINING_DEFAULTS,
    "output_dir": "outputs/pretrain",
    "do_eval": False,
    "per_device_eval_batch_size": 32,
    "prediction_loss_only": True,  # evaluation reports the losses; no logits are gathered
}


@dataclass
class ModelArguments:
    """Which model to start from, and the pretraining objectives."""

    hub_config: str | None = field(
        default=None, metadata={"help": "Preset (mcg-tiny, mcg-base, ...). Default: mcg-tiny without a model source."}
    )
    config_file: str | None = field(default=None, metadata={"help": "Path to an MCGConfig JSON (train from scratch)."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Checkpoint folder to continue from; its heads are kept when present."}
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "BERT tokenizer for a from-scratch model; [DEC]/[ENC] are added. Default: a WordPiece "
                  "vocabulary built from the captions (and, for the synthetic captions, the synthetic questions and "
                  "answers, so the folder fine-tunes on them)."},
    )  # fmt: skip
    max_vocabulary_words: int = field(default=20000, metadata={"help": "Most frequent caption words kept."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "From-scratch config edits, e.g. 'initializer_range=0.1,mlm_probability=0.2'."}
    )
    attn_implementation: str | None = field(default=None, metadata={"help": "eager, sdpa, ... (default: sdpa)."})
    icl_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the instance-level contrast (ICL)."})
    tcl_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the token-level contrast (TCL)."})
    mlm_loss_weight: float = field(default=1.0, metadata={"help": "Weight of masked language modelling (MLM)."})
    use_vtm: bool = field(default=False, metadata={"help": "Add video-text matching (in-batch hard negatives)."})
    vtm_loss_weight: float = field(default=1.0, metadata={"help": "Weight of VTM when --use_vtm is on."})


@dataclass
class DataArguments:
    """Which captions, and how videos are sampled."""

    train_file: str | None = field(
        default=None,
        metadata={"help": "Caption file: a WebVid csv, a csv with video and caption columns, or a .jsonl/.json list of "
                  "{video, caption}. Default: the synthetic set's captions."},
    )  # fmt: skip
    train_shards: str | None = field(
        default=None,
        metadata={"help": "Shard folder written by `python -m modeling_mcg.data.shards` (tar or Parquet, read from its "
                  "index.json), or a glob of shard files: streamed, split across processes, resumable mid-epoch."},
    )  # fmt: skip
    shuffle_buffer: int = field(default=1000, metadata={"help": "Streaming: samples in each reader's shuffle buffer."})
    vocabulary_samples: int = field(
        default=10000, metadata={"help": "Streaming without --tokenizer_name: captions read to build the vocabulary."}
    )
    log_trained_samples: bool = field(
        default=False,
        metadata={"help": "Streaming: write {step, epoch, key} of every trained sample to "
                  "<output_dir>/trained_samples-rank<r>.jsonl (an audit of the data order)."},
    )  # fmt: skip
    validation_file: str | None = field(default=None, metadata={"help": "Caption file for evaluation."})
    video_dir: str | None = field(
        default=None, metadata={"help": "Folder the video names are relative to (default: the caption file's)."}
    )
    on_missing_video: str = field(default="raise", metadata={"help": "raise or skip pairs whose video is missing."})
    train_split: str = field(default="train", metadata={"help": "Synthetic split to pretrain on."})
    eval_split: str = field(default="validation", metadata={"help": "Synthetic split for evaluation."})
    synthetic_cache_dir: str | None = field(default=None, metadata={"help": "Synthetic set cache (default ~/.cache)."})
    synthetic_num_videos: str | None = field(
        default=None, metadata={"help": "Synthetic videos per split, e.g. 'train=20,test=8' (default 2400/100/100)."}
    )
    num_frames: int | None = field(default=None, metadata={"help": "Frames per clip (default: the model config's)."})
    train_sampling: str = field(default="rand", metadata={"help": "uniform, rand, headtail (official) or fps."})
    eval_sampling: str = field(default="uniform", metadata={"help": "uniform, rand, headtail or fps."})
    image_size: int | None = field(default=None, metadata={"help": "Frame side in px (default: the config's)."})
    do_augment: bool = field(default=False, metadata={"help": "Random resized crop + flip + jitter in training."})
    max_caption_length: int = field(default=30, metadata={"help": "Tokens per caption incl. [ENC] and [SEP]."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use the first N training pairs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use the first N evaluation pairs."})
    on_corrupt_video: str = field(default="skip", metadata={"help": "skip (count and drop) or raise."})

    def synthetic_num_videos_dict(self) -> dict[str, int] | None:
        if self.synthetic_num_videos is not None:
            return parse_num_videos(self.synthetic_num_videos)
        if self.max_train_samples or self.max_eval_samples:  # one caption per video
            counts = num_videos_for_samples({})
            for split, limit in ((self.train_split, self.max_train_samples), (self.eval_split, self.max_eval_samples)):
                if limit:
                    counts[split] = min(counts[split], limit)
            return counts
        return None


def load_captions(data_args: DataArguments, split: str, limit: int | None) -> datasets.Dataset:
    """The first `limit` (video, caption) pairs of `split` ("train" or "eval"), from the files or the synthetic set."""
    path = data_args.train_file if split == "train" else data_args.validation_file
    if data_args.train_file is None and data_args.train_shards is None:
        if path is not None:
            raise ValueError("--validation_file needs --train_file (without it both come from the synthetic set).")
        ds = synthetic_captions(
            split=data_args.train_split if split == "train" else data_args.eval_split,
            cache_dir=data_args.synthetic_cache_dir,
            num_videos=data_args.synthetic_num_videos_dict(),
        )
    elif path is None:
        raise ValueError("Evaluation with --train_file or --train_shards needs --validation_file.")
    else:
        ds = load_caption_dataset(path, video_dir=data_args.video_dir, on_missing=data_args.on_missing_video)
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def caption_words(captions: list[str], max_words: int) -> list[str]:
    """The `max_words` most frequent lower-cased caption words (ties in first-seen order)."""
    counts = Counter(word.strip(".,;:!?\"'()") for text in captions for word in text.lower().split())
    counts.pop("", None)
    return [word for word, _ in counts.most_common(max_words)]


def stream_training_data(data_args: DataArguments, training_args: MCGTrainingArguments) -> ShardedVideoDataset:
    """The shards as a stream of this process's share; sizes `max_steps` from `num_train_epochs` when it is unset."""
    if data_args.train_file is not None:
        raise ValueError("Pass --train_file or --train_shards, not both.")
    if data_args.max_train_samples is not None:
        raise ValueError("--max_train_samples does not apply to --train_shards; set --max_steps instead.")
    train_ds = ShardedVideoDataset(
        data_args.train_shards,
        shuffle_buffer=data_args.shuffle_buffer,
        seed=training_args.data_seed if training_args.data_seed is not None else training_args.seed,
        rank=training_args.process_index,
        world_size=training_args.world_size,
    )
    if training_args.max_steps <= 0:  # a stream has no length: one epoch is the samples over the global batch
        global_batch = (
            training_args.per_device_train_batch_size
            * training_args.world_size
            * training_args.gradient_accumulation_steps
        )
        training_args.max_steps = math.ceil(training_args.num_train_epochs * train_ds.num_samples / global_batch)
        logger.info(f"--max_steps {training_args.max_steps}: {training_args.num_train_epochs} epoch(s) of "
                    f"{train_ds.num_samples} samples in global batches of {global_batch}")  # fmt: skip
    training_args.ignore_data_skip = True  # the stream resumes from the data position saved with the checkpoint
    return train_ds


def shard_captions(shards: ShardedVideoDataset, limit: int) -> list[str]:
    """The captions of the first `limit` samples in shard order: the same on every process."""
    if limit < 1:
        raise ValueError(f"--vocabulary_samples must be at least 1, got {limit}.")
    reader = ShardedVideoDataset(shards.shard_paths, shuffle_buffer=0, rank=0, world_size=1)
    return [sample["caption"] for sample in itertools.islice(reader, limit)]


def build_model_and_processor(model_args: ModelArguments, data_args: DataArguments, captions):
    """The model with the pretraining loss weights set, its processor, and the loss weights of the starting config
    (written back into the saved config, so that fine-tuning starts with them). `captions()` gives the captions
    a from-scratch vocabulary is built from (called only then)."""
    attn = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    weights = {
        "icl_loss_weight": model_args.icl_loss_weight,
        "tcl_loss_weight": model_args.tcl_loss_weight,
        "mlm_loss_weight": model_args.mlm_loss_weight,
        "vtm_loss_weight": model_args.vtm_loss_weight if model_args.use_vtm else 0.0,
    }
    if model_args.model_name_or_path is not None:
        if model_args.config_overrides:
            raise ValueError("--config_overrides applies to from-scratch models, not to --model_name_or_path.")
        start = MCGConfig.from_pretrained(model_args.model_name_or_path)
        processor = MCGProcessor.from_pretrained(model_args.model_name_or_path)
        model = MCGForPreTraining.from_pretrained(model_args.model_name_or_path, **weights, **attn)
        if data_args.image_size not in (None, model.config.vision_config.image_size):
            raise ValueError(f"--image_size {data_args.image_size} differs from the checkpoint's.")
        if data_args.num_frames is not None:
            processor.video_processor.num_frames = data_args.num_frames
    else:
        start = apply_config_overrides(
            load_preset(model_args.config_file or model_args.hub_config or "mcg-tiny"), model_args.config_overrides
        )
        if data_args.num_frames is not None:
            start.vision_config.num_frames = data_args.num_frames
        if data_args.image_size is not None:
            start.vision_config.image_size = data_args.image_size
        if model_args.tokenizer_name is not None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model_args.tokenizer_name)
            add_mcg_special_tokens(tokenizer)
        else:
            words = caption_words(captions(), model_args.max_vocabulary_words)
            if data_args.train_file is None and data_args.train_shards is None:  # fine-tuned on synthetic questions
                qa = load_synthetic_videoqa(
                    data_args.train_split,
                    cache_dir=data_args.synthetic_cache_dir,
                    num_videos=data_args.synthetic_num_videos_dict(),
                )
                words = list(dict.fromkeys([*words, *vocabulary_words(qa)]))
            tokenizer = build_wordpiece_tokenizer(words)
        match_config_to_tokenizer(start, tokenizer)
        processor = MCGProcessor(video_processor=video_processor_for(start.vision_config), tokenizer=tokenizer)
        model = MCGForPreTraining._from_config(MCGConfig.from_dict({**start.to_dict(), **weights}), **attn)
    max_positions = model.config.question_config.max_position_embeddings
    if data_args.max_caption_length > max_positions:
        raise ValueError(f"--max_caption_length {data_args.max_caption_length} exceeds the {max_positions} positions.")
    return model, processor, {name: getattr(start, name) for name in LOSS_WEIGHTS}


def main(args: list[str] | None = None) -> dict[str, Any]:
    """Pretrain (and optionally evaluate the losses); returns the metrics, the model, the trainer and the processor."""
    model_args, data_args, training_args = parse_args(
        (ModelArguments, DataArguments, MCGTrainingArguments), TRAINING_DEFAULTS, args
    )
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    if sum(x is not None for x in (model_args.hub_config, model_args.config_file, model_args.model_name_or_path)) > 1:
        raise ValueError("Pass only one of --hub_config, --config_file and --model_name_or_path.")
    if model_args.use_vtm and training_args.per_device_train_batch_size < 2:
        raise ValueError("--use_vtm draws in-batch negatives: use --per_device_train_batch_size >= 2.")
    # 1. The output folder: never replace a finished model silently; resume an interrupted run; fail now, not at
    # the first checkpoint, when it cannot be written.
    checkpoint = resolve_checkpoint(training_args, model_args.model_name_or_path)
    output_dir = Path(training_args.output_dir)
    check_output_dir_writable(output_dir)
    set_cpu_threads(training_args)
    set_seed(training_args.seed)

    # 2. Data: (video, caption) pairs; evaluation pairs for --do_eval or --eval_strategy.
    # Streamed shards: each process reads its share; the vocabulary comes from a sample of their captions.
    if data_args.train_shards is not None:
        train_ds = stream_training_data(data_args, training_args)
        num_train = train_ds.num_samples
        captions = lambda: shard_captions(train_ds, data_args.vocabulary_samples)  # noqa: E731
    else:
        train_ds = load_captions(data_args, "train", data_args.max_train_samples)
        num_train = len(train_ds)
        captions = lambda: train_ds["caption"]  # noqa: E731
    evaluating = training_args.do_eval or training_args.eval_strategy != "no"
    eval_ds = load_captions(data_args, "eval", data_args.max_eval_samples) if evaluating else None
    logger.info(f"{num_train} training pairs" + (f", {len(eval_ds)} evaluation pairs" if eval_ds else ""))

    # 3. Model and processor, with the pretraining loss weights.
    model, processor, finetune_weights = build_model_and_processor(model_args, data_args, captions)
    check_room_for_checkpoint(training_args, model)
    min_pairs = 2 if model_args.use_vtm else 1

    # 4. Trainer: decoding collators (training sampling + augmentation; evaluation sampling), loss parts logged.
    trainer = PretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=CaptionCollator(processor, data_args.train_sampling, data_args.max_caption_length,
                                      data_args.on_corrupt_video, data_args.do_augment, min_pairs),
        eval_collator=CaptionCollator(processor, data_args.eval_sampling, data_args.max_caption_length,
                                      data_args.on_corrupt_video, False, min_pairs),
        processing_class=processor,
        trained_samples_file=str(output_dir / "trained_samples-rank{rank}.jsonl")
        if data_args.log_trained_samples else None,
    )  # fmt: skip

    # 5. Training (resumed from `checkpoint` when there is one), then the evaluation losses.
    metrics: dict[str, Any] = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.gather_training_stats()  # skips after the last log
        metrics.update(train_result.metrics, train_skipped_videos=trainer.skipped_videos)
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
    if training_args.do_eval:
        eval_metrics = trainer.evaluate(eval_ds)
        trainer.log_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)

    # 6. The output folder (main process). The saved config gets the starting config's loss weights back: the folder
    # is for fine-tuning, where they switch the auxiliary contrast of MCGForVideoQuestionAnswering (off in the
    # presets). Continuing pretraining with this script sets the pretraining weights again from its arguments.
    final_model = trainer.accelerator.unwrap_model(trainer.model)
    pretraining_weights = {name: getattr(final_model.config, name) for name in LOSS_WEIGHTS}
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        plots = write_loss_plot(output_dir, trainer.state.log_history, PRETRAINING_LOSS_PARTS, "Pretraining loss")
        objectives = ", ".join(
            f"{n.removesuffix('_loss_weight').upper()} x {w}" for n, w in pretraining_weights.items() if w
        )
        data = data_args.train_file or data_args.train_shards or f"synthetic captions ({data_args.train_split} split)"
        lines = [f"pretraining on {data}: {objectives}; `config.json` holds the fine-tuning loss weights",
                 f"frames: {processor.video_processor.num_frames} ({data_args.train_sampling} sampling), captions "
                 f"up to {data_args.max_caption_length} tokens"]  # fmt: skip
        for name, value in finetune_weights.items():
            setattr(final_model.config, name, value)
        save_for_hub(
            final_model,
            processor,
            output_dir,
            metrics=metrics or None,
            preset=model_args.model_name_or_path or model_args.config_file or model_args.hub_config or "mcg-tiny",
            dataset="synthetic" if data_args.train_file is None and data_args.train_shards is None else None,
            base_model=model_args.model_name_or_path,
            command=command_line("run_pretraining.py", args),
            training=training_summary(training_args, lines) if training_args.do_train else None,
            plots=plots,
            model_card_extra="A pretrained checkpoint: its answer decoder is untrained, so fine-tune it "
            "(`python examples/run_videoqa.py --model_name_or_path FOLDER`) before using its answers.",
        )
        for name, value in pretraining_weights.items():
            setattr(final_model.config, name, value)
        with open(output_dir / "pretraining_loss_weights.json", "w", encoding="utf-8") as handle:
            json.dump(pretraining_weights, handle, indent=2)
    trainer.accelerator.wait_for_everyone()
    return {"metrics": metrics, "model": final_model, "trainer": trainer, "processor": processor}


if __name__ == "__main__":
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    main()
