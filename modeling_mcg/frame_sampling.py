"""Which frames to decode: one pure function per sampling strategy, numpy only.

Every function returns frame positions (int64, sorted, in `[0, total_frames)`) for `video_io.read_frames`.
The strategies follow the MCG code base, with its two sampling bugs fixed:
- `uniform` (evaluation) takes segment centres. The official code steps by a truncated `total // n`, so it
  under-samples the end of the clip (30 frames, 16 samples -> frames 0..15 only).
- `rand` (training) and `headtail` (the paper's pretraining sampler) never fail on short clips. The official code
  raised there and silently replaced the sample with another video.

Clips shorter than the requested count are padded in `sample_frame_indices` ("repeat" or "mask").
This module is copied next to saved models as remote code: numpy is its only import.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "PADDING_MODES",
    "SAMPLING_STRATEGIES",
    "sample_fps",
    "sample_frame_indices",
    "sample_headtail",
    "sample_rand",
    "sample_uniform",
]

SAMPLING_STRATEGIES = ("uniform", "rand", "headtail", "fps")
PADDING_MODES = ("repeat", "mask")


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    return int(value)


def _check_rate(name: str, value) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a positive number of frames per second, got {value!r}.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive, finite number of frames per second, got {value!r}.")
    return float(value)


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng() if rng is None else rng


def _every_frame_plus_random_repeats(count: int, start: int, stop: int, rng: np.random.Generator) -> np.ndarray:
    """`count` >= `stop - start` positions: every frame of [start, stop) once, the rest random repeats, sorted."""
    extra = rng.integers(start, stop, size=count - (stop - start))
    return np.sort(np.concatenate([np.arange(start, stop), extra])).astype(np.int64)


def _distinct_or_spread(count: int, start: int, stop: int, rng: np.random.Generator) -> np.ndarray:
    """`count` random distinct sorted positions in [start, stop), or all of them plus random repeats if too few."""
    if stop - start >= count:
        return np.sort(rng.choice(stop - start, size=count, replace=False)).astype(np.int64) + start
    return _every_frame_plus_random_repeats(count, start, stop, rng)


def sample_uniform(num_frames: int, total_frames: int) -> np.ndarray:
    """Centres of `num_frames` equal segments: `floor((k + 0.5) * total_frames / num_frames)`.

    Deterministic (evaluation). When `total_frames >= num_frames` the positions are distinct; otherwise every frame
    appears and the repeats are spread evenly.
    """
    num_frames = _check_int("num_frames", num_frames)
    total_frames = _check_int("total_frames", total_frames)
    k = np.arange(num_frames, dtype=np.int64)
    return ((2 * k + 1) * total_frames) // (2 * num_frames)  # integer form of floor((k + 0.5) * T / n): no rounding


def sample_rand(num_frames: int, total_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """One uniformly random frame from each of `num_frames` equal segments (training).

    The positions are distinct when `total_frames >= num_frames`. Shorter clips get every frame plus random
    repeats. `rng=None` draws fresh entropy; pass a seeded `np.random.Generator` for reproducible samples.
    """
    num_frames = _check_int("num_frames", num_frames)
    total_frames = _check_int("total_frames", total_frames)
    rng = _rng(rng)
    if total_frames < num_frames:
        return _every_frame_plus_random_repeats(num_frames, 0, total_frames, rng)
    bounds = (np.arange(num_frames + 1, dtype=np.int64) * total_frames) // num_frames  # (n + 1,) segment edges
    return rng.integers(bounds[:-1], bounds[1:]).astype(np.int64)  # every segment holds >= 1 frame


def sample_headtail(num_frames: int, total_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """The paper's head-tail sampler: ceil(n/2) random distinct frames from the first half, floor(n/2) from the second.

    The first half is `[0, ceil(total/2))`, so that for any clip with `total_frames >= num_frames` both halves have
    room for distinct frames (the official split at floor(total/2) fails for odd n on clips of exactly n frames).
    Shorter clips take every frame of a half plus random repeats; a 1-frame clip has no second half.
    """
    num_frames = _check_int("num_frames", num_frames)
    total_frames = _check_int("total_frames", total_frames)
    rng = _rng(rng)
    split = (total_frames + 1) // 2
    if split == total_frames:  # a 1-frame clip: everything comes from the head
        return _distinct_or_spread(num_frames, 0, total_frames, rng)
    head = _distinct_or_spread((num_frames + 1) // 2, 0, split, rng)
    tail = _distinct_or_spread(num_frames // 2, split, total_frames, rng)
    return np.concatenate([head, tail])


def _fps_count(total_frames: int, video_fps: float, target_fps: float, min_frames: int, max_frames: int | None) -> int:
    min_frames = _check_int("min_frames", min_frames)
    if max_frames is not None and _check_int("max_frames", max_frames) < min_frames:
        raise ValueError(f"`max_frames` ({max_frames}) must be >= `min_frames` ({min_frames}).")
    video_fps = _check_rate("video_fps", video_fps)
    target_fps = _check_rate("target_fps", target_fps)
    count = math.floor(total_frames * target_fps / video_fps + 0.5)  # duration * target rate, rounded half up
    count = min(count, total_frames)  # a higher target rate than the video's cannot give more distinct frames
    count = max(count, min_frames)
    return count if max_frames is None else min(count, max_frames)


def sample_fps(
    total_frames: int, video_fps: float, target_fps: float, min_frames: int = 1, max_frames: int | None = None
) -> np.ndarray:
    """Segment centres at about `target_fps`: round(duration * target_fps) frames, clamped.

    The count is capped at `total_frames` (sampling faster than the video gives no new frames), then clamped to
    `[min_frames, max_frames]`; a `min_frames` above `total_frames` repeats frames.
    """
    total_frames = _check_int("total_frames", total_frames)
    return sample_uniform(_fps_count(total_frames, video_fps, target_fps, min_frames, max_frames), total_frames)


def sample_frame_indices(
    strategy: str,
    num_frames: int | None,
    total_frames: int,
    *,
    video_fps: float | None = None,
    target_fps: float | None = None,
    min_frames: int = 1,
    max_frames: int | None = None,
    padding: str = "repeat",
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Frame positions for one video, and which of them are real frames.

    Args:
        strategy: one of `SAMPLING_STRATEGIES`: "uniform" (segment centres, evaluation), "rand" (one random frame
            per segment, training), "headtail" (half from each half of the clip, the paper's), "fps" (segment
            centres at `target_fps`).
        num_frames: frames to return for "uniform", "rand" and "headtail". Ignored by "fps" (may be None), whose
            count is round(duration * target_fps) clamped to `[min_frames, max_frames]`.
        total_frames: frames in the video (`VideoInfo.num_frames`).
        video_fps, target_fps: required for "fps".
        padding: for clips shorter than the count. "repeat" spreads repeats of the real frames (all of them
            appear; mask all True). "mask" takes every real frame once, then repeats the last one with mask False.
        rng: randomness for "rand" and "headtail"; None draws fresh entropy.

    Returns:
        `(indices, frame_mask)`: int64 positions (n,), sorted, in `[0, total_frames)`; bool (n,), False for padding.
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"`strategy` must be one of {SAMPLING_STRATEGIES}, got {strategy!r}.")
    if padding not in PADDING_MODES:
        raise ValueError(f"`padding` must be one of {PADDING_MODES}, got {padding!r}.")
    total_frames = _check_int("total_frames", total_frames)
    if strategy == "fps":
        if video_fps is None:
            raise ValueError(
                "strategy='fps' needs `video_fps`, the video's frame rate; it is unknown for this video (frame "
                "folders carry none: TVQA frames are 3 fps). Pass it, or use strategy='uniform' with `num_frames`."
            )
        if target_fps is None:
            raise ValueError("strategy='fps' needs `target_fps`, the sampling rate in frames per second.")
        count = _fps_count(total_frames, video_fps, target_fps, min_frames, max_frames)
    else:
        count = _check_int("num_frames", num_frames)

    if total_frames < count and padding == "mask":
        indices = np.concatenate([np.arange(total_frames), np.full(count - total_frames, total_frames - 1)])
        return indices.astype(np.int64), np.arange(count) < total_frames

    if strategy in ("uniform", "fps"):
        indices = sample_uniform(count, total_frames)
    elif strategy == "rand":
        indices = sample_rand(count, total_frames, rng)
    else:
        indices = sample_headtail(count, total_frames, rng)
    return indices.astype(np.int64), np.ones(count, dtype=bool)
