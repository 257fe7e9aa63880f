#!/usr/bin/env python
"""Fine-tune and evaluate MCG on a VideoQA set with the Hugging Face `Trainer`.

With no arguments it trains the tiny preset on the built-in synthetic long-video QA set (generated once and cached)
on CPU, evaluates it on the test split and leaves a Hub-ready folder in `outputs/demo/`:

    python examples/run_videoqa.py
    python examples/run_videoqa.py --eval_strategy epoch --load_best_model_at_end True   # validate every epoch
    accelerate launch --config_file examples/accelerate_cpu_2proc.yaml examples/run_videoqa.py --max_train_samples 64
    accelerate launch examples/run_videoqa.py --dataset msrvtt-qa --data_dir /data/msrvtt --hub_config mcg-base \
        --tokenizer_name bert-base-uncased
    python examples/run_videoqa.py --use_lora True --model_name_or_path outputs/demo --output_dir outputs/lora

The collator, sampler, trainer, evaluation and plots live in `modeling_mcg.training`; the output folder is written by
`modeling_mcg.save_for_hub`, so it loads with the package and, through remote code, without it.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import transformers
from transformers import set_seed

from modeling_mcg import (
    MCGForVideoQuestionAnswering,
    MCGProcessor,
    add_mcg_special_tokens,
    build_wordpiece_tokenizer,
    save_for_hub,
)
from modeling_mcg.data import DATASET_NAMES, load_videoqa_dataset
from modeling_mcg.data.synthetic import load_synthetic_videoqa, num_videos_for_samples, parse_num_videos
from modeling_mcg.training import (
    SYNTHETIC_TRAINING_DEFAULTS,
    VIDEOQA_LOSS_PARTS,
    MCGTrainingArguments,
    VideoQACollator,
    VideoQATrainer,
    apply_config_overrides,
    check_output_dir_writable,
    check_room_for_checkpoint,
    command_line,
    compute_metrics,
    load_preset,
    match_config_to_tokenizer,
    parse_args,
    resolve_checkpoint,
    resolve_eval_mode,
    set_cpu_threads,
    training_summary,
    video_processor_for,
    vocabulary_words,
    write_accuracy_plot,
    write_loss_plot,
)

logger = logging.getLogger("run_videoqa")

DEFAULT_LORA_TARGETS = r".*(fusor|decoder)\..*(self_attn|cross_attn)\.(q_proj|v_proj)"

# Defaults of the plain `python examples/run_videoqa.py` run (tiny preset, synthetic set, 2-core CPU); every one can
# be overridden on the command line.
TRAINING_DEFAULTS = {
    **SYNTHETIC_TRAINING_DEFAULTS,
    "output_dir": "outputs/demo",
    "do_eval": True,
    "per_device_eval_batch_size": 64,
    "metric_for_best_model": "accuracy",  # answer accuracy on the validation split, for --load_best_model_at_end
}


@dataclass
class ModelArguments:
    """Which model to start from, and how to adapt it (full fine-tuning or LoRA)."""

    hub_config: str | None = field(
        default=None,
        metadata={"help": "Preset (mcg-tiny, mcg-base, ...; see modeling_mcg.training.preset_names()). Default: "
                  "mcg-tiny when neither --config_file nor --model_name_or_path is given."},
    )  # fmt: skip
    config_file: str | None = field(default=None, metadata={"help": "Path to an MCGConfig JSON (train from scratch)."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Checkpoint folder to fine-tune."})
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "BERT tokenizer for a from-scratch model (e.g. bert-base-uncased for mcg-base); [DEC]/[ENC] "
                  "are added. Default: a WordPiece vocabulary built from the training data."},
    )  # fmt: skip
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "From-scratch config edits, dotted for sub-configs, e.g. "
                  "'initializer_range=0.1,icl_loss_weight=0.1,vision_config.drop_path_rate=0.1'."},
    )  # fmt: skip
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

    dataset: str = field(default="synthetic", metadata={"help": f"One of: {', '.join(DATASET_NAMES)}."})
    data_dir: str | None = field(default=None, metadata={"help": "Dataset folder (not needed for synthetic)."})
    video_dir: str | None = field(
        default=None, metadata={"help": "Folder of the dataset's videos (default: <data_dir>/videos)."}
    )
    on_missing_video: str = field(
        default="raise",
        metadata={"help": "raise (default: fail when an annotation names a video that is not found) or skip (drop "
                  "those questions with one warning)."},
    )  # fmt: skip
    train_split: str = field(default="train")
    validation_split: str | None = field(
        default=None,
        metadata={"help": "Split evaluated during training (--eval_strategy); default validation (synthetic, "
                  "clevrer) or val."},
    )  # fmt: skip
    eval_split: str = field(default="test", metadata={"help": "Split of the final evaluation (--do_eval)."})
    synthetic_cache_dir: str | None = field(default=None, metadata={"help": "Synthetic set cache (default ~/.cache)."})
    synthetic_num_videos: str | None = field(
        default=None,
        metadata={"help": "Synthetic videos per split, e.g. 'train=20,test=8' (default 2400/100/100, or just enough "
                  "for --max_train_samples / --max_eval_samples)."},
    )  # fmt: skip
    synthetic_order_both_ways: bool = field(
        default=True,
        metadata={"help": "Synthetic set: ask each training video's order question both ways round (A before B, B "
                  "before A, opposite answers), so that only the order the question names the objects in tells the "
                  "answers apart. Evaluation questions are never changed."},
    )  # fmt: skip
    num_frames: int | None = field(default=None, metadata={"help": "Frames per clip (default: the model config's)."})
    train_sampling: str = field(
        default="rand", metadata={"help": "uniform, rand (new frames every epoch), headtail, fps."}
    )
    cache_clips: bool = field(
        default=False,
        metadata={"help": "Keep each training video's processed frames in memory after its first decode (needs uniform "
                  "sampling and no augmentation)."},
    )  # fmt: skip
    group_by_video: bool | None = field(
        default=None,
        metadata={"help": "Batches that keep each video's questions together, so each video is decoded and encoded "
                  "once per batch. Default: on for the synthetic set (about 6 questions per video), off otherwise."},
    )  # fmt: skip
    eval_sampling: str = field(default="uniform", metadata={"help": "uniform, rand, headtail or fps."})
    image_size: int | None = field(default=None, metadata={"help": "Frame side in px (default: the config's)."})
    do_augment: bool = field(default=False, metadata={"help": "Random resized crop + flip + jitter in training."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use the first N training questions."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use the first N validation/test questions."})
    on_corrupt_video: str = field(
        default="skip", metadata={"help": "skip (count and drop undecodable videos and their questions) or raise."}
    )
    blank_video: bool = field(default=False, metadata={"help": "Question-only baseline: all frames are zeros."})
    eval_mode: str = field(
        default="auto",
        metadata={"help": "open (generate), mc (score_choices), both, or auto: open when some question has no "
                  "candidates, else mc (both for the synthetic set, whose open-ended questions have choices)."},
    )  # fmt: skip
    num_beams: int = field(default=1, metadata={"help": "Beams for open-ended generation."})
    max_new_tokens: int = field(default=6, metadata={"help": "Answer length limit for generation."})

    def __post_init__(self):
        self.dataset = self.dataset.lower().replace("_", "-")  # the readers' spelling: MSRVTT_QA -> msrvtt-qa
        if self.dataset not in DATASET_NAMES:  # DATASET_NAMES includes synthetic
            raise ValueError(f"Unknown --dataset {self.dataset!r}; choose one of {DATASET_NAMES}.")
        if self.on_missing_video not in ("raise", "skip"):
            raise ValueError(f"--on_missing_video must be raise or skip, got {self.on_missing_video!r}.")
        if self.dataset == "synthetic" and self.video_dir is not None:
            raise ValueError("--video_dir applies to the dataset readers; the synthetic set keeps its videos in "
                             "--synthetic_cache_dir.")  # fmt: skip
        if self.group_by_video is None:
            self.group_by_video = self.dataset == "synthetic"
        if self.validation_split is None:
            self.validation_split = "validation" if self.dataset in ("synthetic", "clevrer") else "val"


def load_split(data_args: DataArguments, split: str, limit: int | None, training: bool = False) -> datasets.Dataset:
    """The first `limit` questions of `split`; for the synthetic set, only as many videos as they need are made."""
    if data_args.dataset == "synthetic":
        if data_args.synthetic_num_videos is not None:
            num_videos = parse_num_videos(data_args.synthetic_num_videos)
        elif data_args.max_train_samples or data_args.max_eval_samples:
            eval_limit = data_args.max_eval_samples
            num_videos = num_videos_for_samples(
                {"train": data_args.max_train_samples, "validation": eval_limit, "test": eval_limit}
            )
        else:
            num_videos = None
        ds = load_synthetic_videoqa(
            split,
            cache_dir=data_args.synthetic_cache_dir,
            num_videos=num_videos,
            order_both_ways=training and data_args.synthetic_order_both_ways,
        )
    elif data_args.data_dir is None:
        raise ValueError(f"--dataset {data_args.dataset} needs --data_dir (the folder with its annotations).")
    else:
        # CLEVRER: each multiple-choice option becomes a correct/wrong question of its own, as CLEVRER scores them
        options = {"options_as_questions": True} if data_args.dataset == "clevrer" else {}
        ds = load_videoqa_dataset(
            data_args.dataset, data_args.data_dir, split, video_dir=data_args.video_dir,
            on_missing=data_args.on_missing_video, **options,
        )  # fmt: skip
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def build_model_and_processor(model_args: ModelArguments, data_args: DataArguments, train_ds):
    attn = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if model_args.model_name_or_path is not None:
        if model_args.config_overrides:
            raise ValueError("--config_overrides applies to from-scratch models, not to --model_name_or_path.")
        processor = MCGProcessor.from_pretrained(model_args.model_name_or_path)
        model = MCGForVideoQuestionAnswering.from_pretrained(model_args.model_name_or_path, **attn)
        if data_args.image_size not in (None, model.config.vision_config.image_size):
            raise ValueError(f"--image_size {data_args.image_size} differs from the checkpoint's.")
        if len(processor.tokenizer) > model.config.decoder.vocab_size:
            raise ValueError("The checkpoint's tokenizer has more tokens than the model has embeddings.")
        if data_args.num_frames is not None:
            processor.video_processor.num_frames = data_args.num_frames
        return model, processor

    config = load_preset(model_args.config_file or model_args.hub_config or "mcg-tiny")
    config = apply_config_overrides(config, model_args.config_overrides)
    if data_args.num_frames is not None:
        config.vision_config.num_frames = data_args.num_frames
    if data_args.image_size is not None:
        config.vision_config.image_size = data_args.image_size
    if model_args.tokenizer_name is not None:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_args.tokenizer_name)
        add_mcg_special_tokens(tokenizer)
    else:
        tokenizer = build_wordpiece_tokenizer(vocabulary_words(train_ds))
    match_config_to_tokenizer(config, tokenizer)
    processor = MCGProcessor(video_processor=video_processor_for(config.vision_config), tokenizer=tokenizer)
    return MCGForVideoQuestionAnswering._from_config(config, **attn), processor


def apply_lora(model, model_args: ModelArguments):
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = model_args.lora_target_modules
    if "," in targets or targets.isidentifier():
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    lora_config = LoraConfig(
        r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
        target_modules=targets, task_type=None,
    )  # fmt: skip
    peft_model = get_peft_model(model, lora_config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info(f"LoRA: {trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.2f}%)")
    return peft_model


def data_lines(data_args: DataArguments, training_args: MCGTrainingArguments, processor) -> list[str]:
    """The model card's lines on the data of this run."""
    blank = " with all frames blanked (question-only baseline)" if data_args.blank_video else ""
    lines = [f"data: {data_args.dataset}{blank}, trained on split `{data_args.train_split}`"]
    if training_args.eval_strategy != "no":
        best = ", the checkpoint with the best accuracy kept" if training_args.load_best_model_at_end else ""
        lines.append(
            f"validated on split `{data_args.validation_split}` every {training_args.eval_strategy.value}{best}"
        )
    if training_args.do_eval:
        lines.append(f"evaluated on split `{data_args.eval_split}`")
    lines.append(
        f"frames: {processor.video_processor.num_frames} ({data_args.train_sampling} sampling in training, "
        f"{data_args.eval_sampling} in evaluation)"
    )
    return lines


def main(args: list[str] | None = None) -> dict[str, Any]:
    """Train and/or evaluate; returns the metrics, the final model, the trainer and the processor."""
    model_args, data_args, training_args = parse_args(
        (ModelArguments, DataArguments, MCGTrainingArguments), TRAINING_DEFAULTS, args
    )
    if data_args.blank_video and training_args.output_dir == TRAINING_DEFAULTS["output_dir"]:
        training_args.output_dir += "_blank_video"  # the baseline must not overwrite (or resume) the real run
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    if sum(x is not None for x in (model_args.hub_config, model_args.config_file, model_args.model_name_or_path)) > 1:
        raise ValueError("Pass only one of --hub_config, --config_file and --model_name_or_path.")
    if model_args.merge_lora and not model_args.use_lora:
        raise ValueError("--merge_lora needs --use_lora.")
    # 1. The output folder: never replace a finished model silently; resume an interrupted run; fail now, not at
    # the first checkpoint, when it cannot be written.
    checkpoint = resolve_checkpoint(training_args, model_args.model_name_or_path)
    output_dir = Path(training_args.output_dir)
    check_output_dir_writable(output_dir)
    set_cpu_threads(training_args)
    set_seed(training_args.seed)
    if data_args.cache_clips and training_args.dataloader_num_workers > 0:
        training_args.dataloader_persistent_workers = True  # the cache lives in the workers

    # 2. Data: training, validation (evaluated during training with --eval_strategy) and final evaluation splits.
    train_ds = load_split(data_args, data_args.train_split, data_args.max_train_samples, training=True)
    validating = training_args.do_train and training_args.eval_strategy != "no"
    validation_ds = (
        load_split(data_args, data_args.validation_split, data_args.max_eval_samples) if validating else None
    )
    eval_ds = (
        load_split(data_args, data_args.eval_split, data_args.max_eval_samples) if training_args.do_eval else None
    )
    sizes = {"training": train_ds, "validation": validation_ds, "evaluation": eval_ds}
    logger.info(f"{data_args.dataset} questions: " + ", ".join(f"{len(d)} {n}" for n, d in sizes.items() if d))

    # 3. Model and processor (from a folder, or from a preset with a tokenizer built from the training data).
    model, processor = build_model_and_processor(model_args, data_args, train_ds)
    needed = check_room_for_checkpoint(training_args, model)
    logger.info(f"{output_dir} has room for one checkpoint (about {needed / 2**20:.1f} MiB)")
    model.generation_config.max_new_tokens = data_args.max_new_tokens
    model.generation_config.num_beams = data_args.num_beams
    base_model = model_args.model_name_or_path
    if model_args.use_lora:
        if base_model is None:  # a from-scratch base is random: the adapter only works on these exact weights
            base_model = str((output_dir / "base_model").resolve())
            if training_args.should_save:
                save_for_hub(model, processor, base_model, preset=model_args.hub_config or "mcg-tiny")
        model = apply_lora(model, model_args)
        model.peft_config["default"].base_model_name_or_path = base_model

    # 4. Trainer: decoding collators, video-grouped batches, answer accuracy as the evaluation metric.
    shown = next(d for d in (eval_ds, validation_ds, train_ds) if d is not None)
    mode = resolve_eval_mode(data_args.eval_mode, shown, open_and_mc=data_args.dataset == "synthetic")
    collator_options = dict(on_corrupt_video=data_args.on_corrupt_video, blank_video=data_args.blank_video)
    trainer = VideoQATrainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=validation_ds,
        data_collator=VideoQACollator(processor, data_args.train_sampling, **collator_options,
                                      do_augment=data_args.do_augment, cache_clips=data_args.cache_clips),
        eval_collator=VideoQACollator(processor, data_args.eval_sampling, **collator_options,
                                      with_choices=mode in ("mc", "both"), with_meta=True),
        processing_class=processor,
        group_by_video=data_args.group_by_video,
        loss_parts=VIDEOQA_LOSS_PARTS,
        eval_mode=mode,
        generation_kwargs={"num_beams": data_args.num_beams, "max_new_tokens": data_args.max_new_tokens},
        multilabel=data_args.dataset == "clevrer",
    )  # fmt: skip

    # 5. Training (resumed from `checkpoint` when there is one).
    metrics: dict[str, Any] = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.gather_training_stats()  # skips after the last log
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
        metrics.update({f"train_{name}": count for name, count in trainer.skip_counts().items()})
        logger.info(
            f"Training done; {trainer.skipped_videos} undecodable training videos skipped, with "
            f"{trainer.skipped_questions} questions"
        )

    # 6. Final evaluation: every rank answers its shard; the records come back in dataset order on every rank.
    records: list[dict] = []
    if training_args.do_eval:
        records, skipped, _ = trainer.predict_answers(eval_ds)
        metrics.update(compute_metrics(records, mode, prefix="test", multilabel=trainer.multilabel))
        metrics.update(test_samples=len(records), **{f"test_{name}": count for name, count in skipped.items()})
        logger.info("Test metrics: " + json.dumps({k: round(v, 4) for k, v in metrics.items()}))

    # 7. The output folder (main process): predictions, plots, then weights + code + card through save_for_hub.
    final_model = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        if records:
            with open(output_dir / "predictions.jsonl", "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(record) + "\n" for record in records)
        plots = write_loss_plot(output_dir, trainer.state.log_history, VIDEOQA_LOSS_PARTS)
        plots += write_accuracy_plot(output_dir, records)
        if mode == "both":
            plots += write_accuracy_plot(output_dir, records, "mc_accuracy_per_type.png", "mc_correct",
                                         "Multiple-choice accuracy per answer type")  # fmt: skip
        card = dict(
            metrics=metrics or None, preset=model_args.model_name_or_path or model_args.config_file
            or model_args.hub_config or "mcg-tiny", dataset=data_args.dataset,
            command=command_line("run_videoqa.py", args), plots=plots,
            training=training_summary(training_args, data_lines(data_args, training_args, processor))
            if training_args.do_train else None,
        )  # fmt: skip
        if model_args.use_lora and model_args.merge_lora:
            save_for_hub(final_model, processor, output_dir / "adapter", base_model=base_model, **card)
            final_model = final_model.merge_and_unload()
            save_for_hub(final_model, processor, output_dir, base_model=model_args.model_name_or_path, **card)
        else:
            save_for_hub(final_model, processor, output_dir, base_model=base_model, **card)
    trainer.accelerator.wait_for_everyone()
    return {"metrics": metrics, "model": final_model, "trainer": trainer, "processor": processor, "records": records}


if __name__ == "__main__":
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    main()
