"""Collators: decode a batch's videos in the DataLoader worker and tokenise its text with the `MCGProcessor`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.utils import logging

from ..video_io import VideoDecodeError

logger = logging.get_logger(__name__)

META_COLUMNS = ("question_id", "question", "answer", "answer_type", "choices", "correct_choices")


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


class VideoQACollator:
    """Decodes a batch's videos (in the DataLoader worker) and tokenises it with the processor.

    Each distinct video of a batch is decoded and sent once: `pixel_values_videos` (v, t, 3, h, w) and
    `video_index` (b,), the row's video, which the model uses to encode each video once for all its questions.
    A video that fails to decode is dropped with its questions (`skip`, counted and logged) or re-raised (`raise`).
    The batch carries `num_skipped_videos` (distinct videos of the batch that failed) and `num_skipped_questions`
    (the rows dropped with them) so the trainer can total the skips across workers;
    with `with_meta` it also carries the rows' metadata for writing predictions.

    Args:
        processor: the model's `MCGProcessor`.
        sampling: frame sampling of the video processor (uniform, rand, headtail, fps).
        on_corrupt_video: "skip" or "raise".
        blank_video: replace every clip by zeros (the question-only baseline).
        do_augment: random resized crop + flip + colour jitter.
        with_choices: add `choice_labels` (multiple-choice scoring).
        with_meta: add each kept row's `META_COLUMNS` under `meta`.
        cache_clips: keep each video's processed clip after its first decode (uniform sampling, no augmentation).
    """

    def __init__(
        self,
        processor,
        sampling: str,
        on_corrupt_video: str = "skip",
        blank_video: bool = False,
        do_augment: bool = False,
        with_choices: bool = False,
        with_meta: bool = False,
        cache_clips: bool = False,
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
        self._blank: dict[str, torch.Tensor] | None = None

    def blank_clip(self) -> dict[str, torch.Tensor]:
        """A clip of zeros with the processor's output shape (the question-only baseline)."""
        if self._blank is None:
            video_processor = self.processor.video_processor
            frames = np.zeros((video_processor.num_frames, 64, 64, 3), dtype=np.uint8)
            shape = video_processor([frames], sampling="uniform")["pixel_values_videos"].shape[1:]
            self._blank = {
                "pixel_values_videos": torch.zeros(shape),
                "video_frame_mask": torch.ones(shape[0], dtype=torch.long),
            }
        return self._blank

    def decode(self, row: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """The processed clip of `row["video"]`, or None when it cannot be decoded and `on_corrupt_video="skip"`."""
        if self.blank_video:
            return self.blank_clip()
        cacheable = self.clip_cache is not None and isinstance(row["video"], str)
        if cacheable and row["video"] in self.clip_cache:
            return self.clip_cache[row["video"]]
        try:
            out = self.processor.video_processor([row["video"]], sampling=self.sampling, do_augment=self.do_augment)
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

    @staticmethod
    def failed_videos(rows: list[dict[str, Any]], kept: list[dict[str, Any]] = ()) -> torch.Tensor:
        """How many distinct videos of `rows` failed to decode (those with no row in `kept`)."""
        kept_ids = {id(row) for row in kept}
        failed = {
            row["video"] if isinstance(row["video"], str) else id(row) for row in rows if id(row) not in kept_ids
        }
        return torch.tensor(len(failed))

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
                clip = self.decode(row)
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
            skips = {"num_skipped_videos": self.failed_videos(rows), "num_skipped_questions": torch.tensor(len(rows))}
            return {**skips, **({"meta": []} if self.with_meta else {})}
        pixels, frame_mask = stack_clips(clips)  # (v, t, 3, h, w): each distinct video once
        has_subtitles = any(row.get("subtitles") for row in kept)
        text = self.processor(
            text=[row["question"] for row in kept],
            answers=[row["answer"] for row in kept],
            subtitles=[row["subtitles"] or None for row in kept] if has_subtitles else None,
            choices=[row["choices"] for row in kept] if self.with_choices else None,
        )
        batch = dict(text)
        batch.update(pixel_values_videos=pixels, video_frame_mask=frame_mask, video_index=video_index)
        batch["num_skipped_videos"] = self.failed_videos(rows, kept)
        batch["num_skipped_questions"] = torch.tensor(len(rows) - len(kept))  # dropped with their video
        if self.with_meta:
            batch["meta"] = [{k: row[k] for k in META_COLUMNS} for row in kept]
        return batch


class CaptionCollator(VideoQACollator):
    """Decodes a batch's videos (in the DataLoader worker) and tokenises the captions for pretraining.

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
