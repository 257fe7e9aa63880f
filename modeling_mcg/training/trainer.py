"""`Trainer` subclasses: loss parts in the logs, skip counts kept across resumes, checkpoints that a full disk
cannot leave half-written, video-grouped batches, and answer-accuracy evaluation (generation or candidate scoring) that `--eval_strategy`, `--load_best_model_at_end` and
`metric_for_best_model="accuracy"` use."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..data.shards import ShardedVideoDataset, load_shard_state, shard_dataloader
from ..modeling_mcg import MCGPreTrainedModel
from .checkpoints import last_complete_checkpoint, removed_on_failure
from .evaluation import compute_metrics, predict_answers
from .sampler import VideoGroupedSampler

VIDEOQA_LOSS_PARTS = ("loss_lm", "loss_icl", "loss_tcl")
SKIP_COUNTS = ("skipped_videos", "skipped_questions")
SKIP_COUNTS_NAME = "skip_counts.json"
PRETRAINING_LOSS_PARTS = ("loss_icl", "loss_tcl", "loss_mlm", "loss_vtm")


class MCGTrainer(Trainer):
    """`Trainer` that logs the running mean of every loss part next to `loss`, and totals the skipped training
    videos (`skipped_videos`: undecodable videos met, once per batch that asks about them) and the questions dropped
    with them (`skipped_questions`). The totals are saved with each checkpoint and restored on resume, so a resumed
    run reports what an uninterrupted one does. A checkpoint save that fails (full disk) removes its partial folder
    and raises an `OSError` naming it.

    A part is logged when the model returns it, i.e. when its weight is non-zero, and only when there are at least
    two parts (a single part equals `loss`). Steps only accumulate local sums; `log()` (which every rank calls at
    the same steps) gathers them, so ranks never disagree on the number of collective calls, even when one of them
    meets an all-corrupt batch. With `group_by_video` the training order keeps each video's questions together
    (`VideoGroupedSampler`). `eval_collator` replaces the training collator for evaluation (other frame sampling,
    no augmentation). `torch_compile=True` compiles the repeated layers in place (`compile_regions`, with
    `torch_compile_backend` and `torch_compile_mode`) instead of the whole model: the compile time is that of a few
    layers however deep the model is.
    """

    def __init__(self, *args, loss_parts=VIDEOQA_LOSS_PARTS, group_by_video=False, eval_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.torch_compile:
            options = {"backend": self.args.torch_compile_backend}
            if self.args.torch_compile_mode is not None:
                options["mode"] = self.args.torch_compile_mode
            self.mcg_model().compile_regions(**options)
        self.group_by_video = group_by_video
        self.eval_collator = eval_collator
        self.loss_parts = tuple(loss_parts)
        self._sums = torch.zeros(len(self.loss_parts), dtype=torch.float64)
        self._counts = torch.zeros(len(self.loss_parts), dtype=torch.float64)
        self._local_skips = torch.zeros(len(SKIP_COUNTS), dtype=torch.float64)
        self.skipped_videos = 0  # all ranks, up to the last log or checkpoint
        self.skipped_questions = 0

    def mcg_model(self) -> MCGPreTrainedModel:
        """The MCG model inside `self.model` (which may be a PEFT wrapper)."""
        for module in self.model.modules():
            if isinstance(module, MCGPreTrainedModel):
                return module
        raise TypeError(f"{type(self).__name__} trains MCG models; got {type(self.model).__name__}")

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The model's count (`MCGPreTrainedModel.floating_point_ops`), which includes the video tokens, for
        `total_flos`; `Trainer`'s own multiplies every parameter by the question tokens only."""
        return self.mcg_model().floating_point_ops(inputs)

    def _build_accelerator_args(self, **kwargs):
        accelerator_args = super()._build_accelerator_args(**kwargs)
        if self.args.torch_compile:  # compiled regions instead: accelerate must not compile the whole model too
            accelerator_args.pop("dynamo_plugin", None)
        return accelerator_args

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.group_by_video:
            return VideoGroupedSampler(dataset["video"], seed=self.args.data_seed or self.args.seed)
        return super()._get_train_sampler(train_dataset)

    @contextlib.contextmanager
    def evaluation_collator(self):
        """Use `eval_collator` (when set) for the dataloaders built inside the block."""
        train_collator = self.data_collator
        if self.eval_collator is not None:
            self.data_collator = self.eval_collator
        try:
            yield
        finally:
            self.data_collator = train_collator

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        skipped = [inputs.pop(f"num_{name}", None) for name in SKIP_COUNTS]
        inputs.pop("meta", None)
        if model.training:
            for i, count in enumerate(skipped):
                if count is not None:
                    self._local_skips[i] += int(count)
        if "input_ids" not in inputs:  # the collator dropped every sample (undecodable videos)
            # zero loss over the trainable weights keeps every rank's backward (and DDP's all-reduce) in step
            loss = sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)
            return (loss, None) if return_outputs else loss
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            for i, name in enumerate(self.loss_parts):
                value = outputs.get(name)
                if value is not None:
                    self._sums[i] += value.detach().float().mean().item()
                    self._counts[i] += 1
        return (loss, outputs) if return_outputs else loss

    def gather_training_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum the local loss-part sums, counts and skips over all ranks (a collective call) and reset them."""
        local = torch.cat([self._sums, self._counts, self._local_skips])
        total = self.accelerator.gather(local.to(self.accelerator.device)[None]).sum(0).cpu()
        self._sums.zero_()
        self._counts.zero_()
        self.add_skips(total[-len(SKIP_COUNTS) :])
        n = len(self.loss_parts)
        return total[:n], total[n : 2 * n]

    def add_skips(self, gathered: torch.Tensor) -> None:
        self._local_skips.zero_()
        for name, count in zip(SKIP_COUNTS, gathered.tolist()):
            setattr(self, name, getattr(self, name) + int(count))

    def skip_counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in SKIP_COUNTS}

    def resolve_checkpoint(self, resume_from_checkpoint):
        """`True` means the last complete checkpoint of the output folder (one cut short by a crash is passed over
        with a warning); a path or None is returned as given."""
        if resume_from_checkpoint is not True:
            return resume_from_checkpoint
        checkpoint = last_complete_checkpoint(self.args.output_dir)
        if checkpoint is None:
            raise ValueError(f"resume_from_checkpoint=True: no complete checkpoint in {self.args.output_dir}.")
        return checkpoint

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        resume_from_checkpoint = self.resolve_checkpoint(resume_from_checkpoint)
        if resume_from_checkpoint:
            self.restore_checkpoint_state(Path(resume_from_checkpoint))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def restore_checkpoint_state(self, checkpoint: Path) -> None:
        """Restore what this trainer keeps in a checkpoint besides `Trainer`'s state: the skip counts."""
        counts = checkpoint / SKIP_COUNTS_NAME
        if counts.is_file():
            for name, value in json.loads(counts.read_text()).items():
                setattr(self, name, int(value))

    def _save_checkpoint(self, model, trial):
        # every rank saves, so the skips can be gathered (a collective call) into the totals the checkpoint keeps
        self.add_skips(self.accelerator.gather(self._local_skips.to(self.accelerator.device)[None]).sum(0).cpu())
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        with removed_on_failure(folder):
            if self.args.should_save:  # written before trainer_state.json, which marks the checkpoint complete
                folder.mkdir(parents=True, exist_ok=True)
                (folder / SKIP_COUNTS_NAME).write_text(json.dumps(self.skip_counts()))
            super()._save_checkpoint(model, trial)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log (evaluation logs carry eval_loss)
            sums, counts = self.gather_training_stats()
            if int((counts > 0).sum()) > 1:
                for name, total, count in zip(self.loss_parts, sums.tolist(), counts.tolist()):
                    if count:
                        logs[name] = round(total / count, 4)
            logs.update(self.skip_counts())
        super().log(logs, start_time)

    def get_eval_dataloader(self, eval_dataset=None):
        with self.evaluation_collator():
            return super().get_eval_dataloader(eval_dataset)


class VideoQATrainer(MCGTrainer):
    """`MCGTrainer` whose `evaluate()` answers every question (generation and/or candidate scoring) and reports
    `eval_accuracy` (overall and per answer type) and `eval_loss`, so that validation during training,
    `load_best_model_at_end` and `metric_for_best_model="accuracy"` work.

    Args (besides `MCGTrainer`'s):
        eval_mode: "open" (generate), "mc" (score_choices) or "both".
        generation_kwargs: passed to `generate` (num_beams, max_new_tokens).
        multilabel: the eval set's option rows are regrouped per question (CLEVRER).
    """

    def __init__(self, *args, eval_mode="open", generation_kwargs=None, multilabel=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_mode = eval_mode
        self.generation_kwargs = dict(generation_kwargs or {})
        self.multilabel = multilabel

    def predict_answers(self, dataset: datasets.Dataset, with_loss: bool = False):
        """(records in dataset order, skip counts, mean answer loss or None) over all ranks."""
        with self.evaluation_collator():
            dataloader = self.get_test_dataloader(dataset)
        return predict_answers(
            self.accelerator,
            self.model,
            dataloader,
            dataset["question_id"],
            self.eval_mode,
            self.processing_class.tokenizer,
            self.generation_kwargs,
            with_loss=with_loss,
        )

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if dataset is None:
            raise ValueError("evaluate() needs an eval_dataset: pass one to the trainer or to evaluate().")
        started = time.perf_counter()
        records, skips, loss = self.predict_answers(dataset, with_loss=True)
        metrics = compute_metrics(records, self.eval_mode, prefix=metric_key_prefix, multilabel=self.multilabel)
        metrics[f"{metric_key_prefix}_loss"] = loss
        metrics[f"{metric_key_prefix}_samples"] = len(records)
        metrics.update({f"{metric_key_prefix}_{name}": count for name, count in skips.items()})
        metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - started, 4)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class PretrainingTrainer(MCGTrainer):
    """`MCGTrainer` with the pretraining loss parts; evaluation logs them too (`eval_loss_icl`, ...).

    With a `ShardedVideoDataset` as `train_dataset` it streams the shards: the DataLoader stays out of
    `accelerator.prepare` (the dataset splits the shards across processes itself), every trained batch is recorded
    (`record_batch`), each checkpoint holds the data position of every process (`data_state-rank<r>.json`), and
    `train(resume_from_checkpoint=...)` continues from it mid-epoch. That needs `max_steps` (a stream has no length)
    and `ignore_data_skip=True`. Training logs then also carry `data_clips_per_s` (this process's loader rate per
    busy worker-second). With ICL on, every training log carries `icl_batch_size`: the pairs the last ICL step
    contrasted, i.e. the local batches of all processes when `torch.distributed` runs (ICL all-gathers them).

    Args (besides `MCGTrainer`'s):
        trained_samples_file: when set (streaming only), every process appends `{"step", "epoch", "key"}` per trained
            sample to this path, with `{rank}` replaced by its rank: an audit of the data order.
    """

    def __init__(self, *args, trained_samples_file: str | None = None, **kwargs):
        kwargs.setdefault("loss_parts", PRETRAINING_LOSS_PARTS)
        super().__init__(*args, **kwargs)
        self._eval_sums = torch.zeros(len(self.loss_parts), dtype=torch.float64)
        self._eval_counts = torch.zeros(len(self.loss_parts), dtype=torch.float64)
        self._local_batch_size = 0
        self.trained_samples_file = None
        if self.streaming:
            from ..data.shards import ShardStateCallback  # the Trainer stack is loaded by now

            if not self.args.ignore_data_skip:
                raise ValueError(
                    "Streaming shards resume by themselves: set ignore_data_skip=True (Trainer would skip more batches)."
                )
            if self.args.dataloader_drop_last:
                raise ValueError("dataloader_drop_last=True would drop samples the data position waits for.")
            self.add_callback(ShardStateCallback(self.train_dataset))
            if trained_samples_file is not None:
                self.trained_samples_file = trained_samples_file.format(rank=self.args.process_index)
        elif trained_samples_file is not None:
            raise ValueError("trained_samples_file needs a ShardedVideoDataset train_dataset.")

    @property
    def streaming(self) -> bool:
        return isinstance(self.train_dataset, ShardedVideoDataset)

    def get_train_dataloader(self):
        if not self.streaming:
            return super().get_train_dataloader()
        collate = self.data_collator
        if self.trained_samples_file is not None:
            collate = SampleKeysCollator(collate)
        workers = self.args.dataloader_num_workers
        return shard_dataloader(
            self.train_dataset,
            self._train_batch_size,
            collate,
            num_workers=workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and workers > 0,
            prefetch_factor=self.args.dataloader_prefetch_factor if workers > 0 else None,
        )

    def restore_checkpoint_state(self, checkpoint: Path) -> None:
        """Also the read position of each shard stream (streaming only)."""
        super().restore_checkpoint_state(checkpoint)
        if self.streaming:
            load_shard_state(self.train_dataset, checkpoint)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training and self.streaming:
            positions = inputs.get("data_positions")
            keys = inputs.pop("sample_keys", None)
            self.train_dataset.record_batch(inputs)  # first: dropped (all-corrupt) batches count as read too
            if keys is not None:
                self.write_trained_samples(keys, positions)
        if model.training and "input_ids" in inputs:
            self._local_batch_size = len(inputs["input_ids"])
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if not model.training and outputs is not None:
            for i, name in enumerate(self.loss_parts):
                if outputs.get(name) is not None:
                    self._eval_sums[i] += outputs[name].detach().float().item()
                    self._eval_counts[i] += 1
        return (loss, outputs) if return_outputs else loss

    def write_trained_samples(self, keys: list[str], positions: torch.Tensor) -> None:
        step = self.state.global_step + 1  # the optimizer step this batch belongs to
        with open(self.trained_samples_file, "a", encoding="utf-8") as handle:
            for key, position in zip(keys, positions.tolist()):
                handle.write(json.dumps({"step": step, "epoch": position[0], "key": key}) + "\n")

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "eval_loss" in logs:
            local = torch.cat([self._eval_sums, self._eval_counts])
            total = self.accelerator.gather(local.to(self.accelerator.device)[None]).sum(0).cpu()
            self._eval_sums.zero_()
            self._eval_counts.zero_()
            n = len(self.loss_parts)
            for name, value, count in zip(self.loss_parts, total[:n].tolist(), total[n:].tolist()):
                if count:
                    logs[f"eval_{name}"] = round(value / count, 4)
        if "loss" in logs and self.model.config.icl_loss_weight > 0:
            # ICL all-gathers the embeddings of every process when torch.distributed runs (losses.py), else local
            local = torch.tensor([self._local_batch_size], device=self.accelerator.device)
            gathered = self.accelerator.gather(local[None]).sum() if torch.distributed.is_initialized() else local
            logs["icl_batch_size"] = int(gathered.sum())
        if "loss" in logs and self.streaming:
            logs["data_clips_per_s"] = round(self.train_dataset.throughput()["worker_clips_per_s"], 2)
        super().log(logs, start_time)


class SampleKeysCollator:
    """Wraps a collate function so that the batch also carries its samples' `key`s (`sample_keys`)."""

    def __init__(self, collate_fn):
        self.collate_fn = collate_fn

    def __call__(self, samples: list[dict]) -> dict:
        batch = self.collate_fn(samples)
        batch["sample_keys"] = [sample["key"] for sample in samples]
        return batch


def set_cpu_threads(training_args: TrainingArguments) -> None:
    """On CPU (unless OMP_NUM_THREADS says otherwise), train with the cores the DataLoader workers leave free:
    oversubscribed OpenMP threads spin at their barriers, which made the default loop on 2 cores 12x slower with 2
    training threads next to a decoding worker than with 1 (benchmarks/bench_dataloader.py --threads 2,1). An empty
    OMP_NUM_THREADS counts as unset, as OpenMP itself ignores it."""
    if training_args.use_cpu and not os.environ.get("OMP_NUM_THREADS"):
        workers = training_args.dataloader_num_workers
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
