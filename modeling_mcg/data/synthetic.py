"""Built-in synthetic long-video QA set: coloured shapes that enter the frame, cross it and leave.

Why it exists: the main training job must run offline on any machine, and its data must need the whole video to
answer (what comes first, how many objects, where one goes), which single-frame toy sets do not. The videos are
tiny (64x64, 8 fps, 6-20 s, H.264) so the default set (2400 training videos) is generated in about a minute and
cached.

Each video holds 1-4 objects, each a distinct `"<color> <shape>"` (colors: red, green, blue, yellow; shapes: circle,
square, triangle, cross) of 20-22 px on a dark background (about a third of the frame side, so that a model sampling
frames at 32 px still sees each shape over a few 8 px patches). An object slides in from one edge, crosses the frame in a
straight line and leaves through the opposite edge. Objects enter and leave one after another, with at least 15% of
the video between consecutive entries (and between consecutive exits), each stays fully visible for at least 20%
of the video, and no two objects ever overlap, so 8 frames sampled uniformly see every object and its order.

Question templates (`answer_type`) and their answers:

    color      "what color is the circle?" (shape unique in the video)          red, green, blue, yellow
    shape      "what shape is the red object?" (color unique in the video)       circle, square, triangle, cross
    direction  "which direction does the red circle move?"                       left, right, up, down
    count      "how many objects appear in the video?"                            one, two, three, four
    first      "which object appears first?" (2+ objects)                         "<color> <shape>" (16 answers)
    last       "which object appears last?" (2+ objects)                          "<color> <shape>" (16 answers)
    order      "does the red circle appear before the blue square?" (2+ objects)  yes, no

Every row has multiple-choice candidates too: the four answers of its family (colors, shapes, directions, counts),
the right object plus three others for first/last (the other objects of the video first), and yes/no for order.
Answers are balanced per template within a split: the generator picks the least used answer first (the number of
objects, which object enters first or last, which object a question asks about, yes or no) and builds the video
or the question around it, so the question text alone predicts no better than chance.

Motion (per object, in annotation units): `size` s, `direction`, `lane` (centre on the axis across the motion) and
`t0 < t1` (frames, floats). The centre along the motion runs linearly from s/2 at `t0` to W - s/2 at `t1` for
right/down (mirrored for left/up), so the object is flush with the entry edge at `t0` and with the exit edge at
`t1`; its top-left pixel is floor(centre - s/2 + 0.5). `enter_frame`/`exit_frame` are the first/last frames with
any of its pixels on screen, `full_start_frame`/`full_end_frame` the first/last frames with all of them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import av
import datasets
import numpy as np
from transformers.utils import logging

from .schema import COLUMNS, VIDEOQA_FEATURES

logger = logging.get_logger(__name__)

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 90, 240),
    "yellow": (235, 215, 30),
}
BACKGROUND = (20, 20, 24)
SHAPES = ("circle", "square", "triangle", "cross")
DIRECTIONS = ("left", "right", "up", "down")
COUNT_WORDS = ("one", "two", "three", "four")
OBJECT_NAMES = tuple(f"{color} {shape}" for color in COLORS for shape in SHAPES)
TEMPLATES = ("color", "shape", "direction", "count", "first", "last", "order")
ANSWER_VOCABULARY: dict[str, tuple[str, ...]] = {
    "color": tuple(COLORS),
    "shape": SHAPES,
    "direction": DIRECTIONS,
    "count": COUNT_WORDS,
    "first": OBJECT_NAMES,
    "last": OBJECT_NAMES,
    "order": ("yes", "no"),
}
SPLITS = ("train", "validation", "test")
DEFAULT_NUM_VIDEOS = {"train": 2400, "validation": 100, "test": 100}
# Every video gets at least 4 questions (one object: color, shape, direction, count; more objects: direction, count,
# first, last, order and any unique color or shape), so n questions need at most ceil(n / 4) videos.
MIN_QUESTIONS_PER_VIDEO = 4
ANNOTATIONS_FILE = "annotations.json"

# Bump when the generated content changes. It is part of the cache key and seeds the generator (a bump draws new
# videos); encoder settings enter the key separately (`_X264_OPTIONS`).
GENERATOR_VERSION = 3
MAX_OBJECTS = len(COUNT_WORDS)
# Timing, as fractions of the video: entries (and exits) of consecutive objects are at least MIN_GAP apart, more than
# the 1/7 spacing of 8 uniformly sampled frames; each object is fully visible for at least MIN_FULL_VISIBLE and on
# screen for at most MAX_VISIBLE of the video.
MIN_GAP = 0.15
MIN_FULL_VISIBLE = 0.2
MAX_VISIBLE = 0.6
SIZE_RANGE = (20, 22)  # object size in px at a 64 px frame, scaled with `frame_size`
MIN_FRAME_SIZE = 32
_MAX_PLAN_TRIES = 10_000
_LANE_TRIES = 20
# Constant quantiser, one thread, no adaptive quantisation or macroblock tree: x264's CRF rate control (mbtree/AQ)
# gave different bytes for the same frames depending on what the process had run before (e.g. a Trainer run);
# with these settings the same seed gives the same files.
_X264_OPTIONS = {
    "qp": "18",
    "preset": "medium",
    "threads": "1",
    "x264-params": "sliced-threads=0:lookahead-threads=1:aq-mode=0:mbtree=0",
}


def num_videos_for_samples(max_samples: Mapping[str, int | None]) -> dict[str, int]:
    """Videos per split that give at least `max_samples[split]` questions (the default count where it is None).

    `{"train": 200, "test": 50}` gives `{"train": 50, "validation": 100, "test": 13}`: a run that uses 200 training
    and 50 evaluation questions generates 163 videos instead of 2,600.
    """
    unknown = set(max_samples) - set(SPLITS)
    if unknown:
        raise ValueError(f"max_samples has unknown splits {sorted(unknown)}; allowed: {list(SPLITS)}.")
    counts = dict(DEFAULT_NUM_VIDEOS)
    for split, limit in max_samples.items():
        if limit is not None:
            if limit < 1:
                raise ValueError(f"The sample limit of {split!r} must be positive, got {limit}.")
            counts[split] = min(DEFAULT_NUM_VIDEOS[split], -(-limit // MIN_QUESTIONS_PER_VIDEO))
    return counts


def parse_num_videos(spec: str) -> dict[str, int]:
    """`"train=20,test=8"` → `{"train": 20, "test": 8}` (the command-line form of `num_videos`)."""
    counts = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"Synthetic video counts look like 'train=20,test=8'; got {spec!r}.")
        counts[name.strip()] = int(value)
    return counts


def _default_cache_root() -> Path:
    """`$MCG_CACHE/synthetic`, else `~/.cache/modeling_mcg/synthetic`."""
    base = os.environ.get("MCG_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "modeling_mcg") / "synthetic"


def _generation_config(
    num_videos: Mapping[str, int] | None, seed: int, fps: int, frame_size: int, duration_range: Sequence[float]
) -> dict[str, Any]:
    """Validate the generation parameters and normalise them into the dict that keys the cache."""
    if num_videos is None:
        num_videos = DEFAULT_NUM_VIDEOS
    if not isinstance(num_videos, Mapping):
        raise TypeError(f"num_videos must be a dict like {DEFAULT_NUM_VIDEOS}, got {type(num_videos).__name__}.")
    unknown = set(num_videos) - set(SPLITS)
    if unknown:
        raise ValueError(f"num_videos has unknown splits {sorted(unknown)}; allowed: {list(SPLITS)}.")
    counts = {split: int(num_videos.get(split, 0)) for split in SPLITS}
    if any(count < 0 for count in counts.values()) or sum(counts.values()) == 0:
        raise ValueError(f"num_videos must be non-negative with at least one video, got {dict(num_videos)}.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if frame_size < MIN_FRAME_SIZE:
        raise ValueError(f"frame_size must be at least {MIN_FRAME_SIZE} px so the shapes stay recognisable.")
    if int(frame_size) % 2:
        raise ValueError(f"frame_size must be even (H.264 yuv420p), got {frame_size}.")
    low, high = (float(value) for value in duration_range)
    if not 0 < low <= high:
        raise ValueError(
            f"duration_range must be (min_seconds, max_seconds) with 0 < min <= max, got {duration_range}."
        )
    if int(fps) < 1 or low * fps < 40:
        raise ValueError(
            f"fps * min duration must give at least 40 frames, got fps={fps}, durations={duration_range}."
        )
    return {
        "version": GENERATOR_VERSION,
        "encoder": dict(_X264_OPTIONS),  # part of the cache key: other encoder settings give other files
        "num_videos": counts,
        "seed": int(seed),
        "fps": int(fps),
        "frame_size": int(frame_size),
        "duration_range": [low, high],
    }


def _cache_key(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@functools.cache
def _shape_mask(shape: str, size: int) -> np.ndarray:
    """(size, size) boolean mask of a filled shape: disc, square, upward triangle or plus-shaped cross; read-only, as
    it is shared by every object of that shape and size."""
    mask = _draw_shape_mask(shape, size)
    mask.setflags(write=False)
    return mask


def _draw_shape_mask(shape: str, size: int) -> np.ndarray:
    coords = np.arange(size) + 0.5
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    half = size / 2
    if shape == "circle":
        return (xs - half) ** 2 + (ys - half) ** 2 <= half**2
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "triangle":
        # apex at the top centre, base on the bottom row
        return np.abs(xs - half) <= half * (ys + 0.5) / size
    if shape == "cross":
        arm = size / 6
        return (np.abs(xs - half) <= arm) | (np.abs(ys - half) <= arm)
    raise ValueError(f"Unknown shape {shape!r}; allowed: {list(SHAPES)}.")


def object_top_left(obj: Mapping[str, Any], num_frames: int, frame_size: int) -> np.ndarray:
    """(num_frames, 2) int array of the object's top-left pixel (x, y) per frame, following the module's formula."""
    along, across = _along_track(obj, num_frames, frame_size), _across_track(obj)
    horizontal = obj["direction"] in ("left", "right")
    return np.stack([along, np.full(num_frames, across)] if horizontal else [np.full(num_frames, across), along], 1)


def _along_track(obj: Mapping[str, Any], num_frames: int, frame_size: int) -> np.ndarray:
    """(num_frames,) int top-left coordinate along the direction of motion; it does not depend on the lane."""
    size, t0, t1 = obj["size"], obj["t0"], obj["t1"]
    t = np.arange(num_frames, dtype=np.float64)
    along = size / 2 + (frame_size - size) * (t - t0) / (t1 - t0)
    if obj["direction"] in ("left", "up"):
        along = frame_size - along
    return np.floor(along - size / 2 + 0.5).astype(np.int64)


def _across_track(obj: Mapping[str, Any]) -> int:
    """The constant top-left coordinate across the direction of motion, from the lane."""
    return int(np.floor(obj["lane"] - obj["size"] / 2 + 0.5))


def _on_screen_pixels(mask: np.ndarray, top_left: np.ndarray, frame_size: int) -> np.ndarray:
    """Number of mask pixels inside the frame for each top-left position, without rendering."""
    size = mask.shape[0]
    # summed-area table of the mask, padded so any clipped window is a 4-term lookup
    table = np.zeros((size + 1, size + 1), dtype=np.int64)
    table[1:, 1:] = mask.cumsum(0).cumsum(1)
    x0 = np.clip(-top_left[:, 0], 0, size)
    x1 = np.clip(frame_size - top_left[:, 0], 0, size)
    y0 = np.clip(-top_left[:, 1], 0, size)
    y1 = np.clip(frame_size - top_left[:, 1], 0, size)
    x1, y1 = np.maximum(x1, x0), np.maximum(y1, y0)
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


def _sample_timing(
    rng: np.random.Generator, sizes: np.ndarray, num_frames: int, frame_size: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Enter and exit times (frames) of objects in entry order, with the gaps the templates need; None if no fit."""
    count = len(sizes)
    # between the first and the last pixel on screen an object travels W + s px, W - s of them fully visible
    min_span = MIN_FULL_VISIBLE * (frame_size + sizes) / (frame_size - sizes)
    # a frame or two of slack, for rounding to whole pixels: nothing on screen in the first and last frames
    margin = 1.5 / num_frames
    gap = MIN_GAP + 1 / num_frames
    high = 1 - margin - min_span[-1] - (count - 1) * gap
    if high < margin:
        return None
    enters = np.sort(rng.uniform(margin, high, count)) + np.arange(count) * gap
    exits = np.empty(count)
    for index in range(count):
        low = enters[index] + min_span[index]
        if index:
            low = max(low, exits[index - 1] + gap)
        top = min(enters[index] + MAX_VISIBLE, 1 - margin - (count - 1 - index) * gap)
        if low > top:
            return None
        exits[index] = rng.uniform(low, top)
    return enters * num_frames, exits * num_frames


def _try_layout(
    rng: np.random.Generator,
    shapes: Sequence[str],
    sizes: np.ndarray,
    directions: Sequence[str],
    num_frames: int,
    frame_size: int,
) -> list[dict[str, Any]] | None:
    """Draw timing and lanes for objects in entry order; None when the draw breaks a constraint."""
    timing = _sample_timing(rng, sizes, num_frames, frame_size)
    if timing is None:
        return None
    gap = MIN_GAP * num_frames
    objects = []
    for index, (enter, exit_) in enumerate(zip(*timing)):
        size = int(sizes[index])
        offscreen = size * (exit_ - enter) / (frame_size + size)  # frames spent partly on screen at each end
        obj = {
            "size": size,
            "direction": directions[index],
            "lane": frame_size / 2,  # drawn below; any lane keeps the object on screen across its motion
            "t0": round(float(enter + offscreen), 2),
            "t1": round(float(exit_ - offscreen), 2),
        }
        mask = _shape_mask(shapes[index], size)
        pixels = _on_screen_pixels(mask, object_top_left(obj, num_frames, frame_size), frame_size)
        visible = np.flatnonzero(pixels > 0)
        full = np.flatnonzero(pixels == mask.sum())
        if len(full) < MIN_FULL_VISIBLE * num_frames - 1 or visible[0] < 1 or visible[-1] > num_frames - 2:
            return None
        obj.update(
            enter_frame=int(visible[0]),
            exit_frame=int(visible[-1]),
            full_start_frame=int(full[0]),
            full_end_frame=int(full[-1]),
        )
        if objects and (
            obj["enter_frame"] - objects[-1]["enter_frame"] < gap
            or obj["exit_frame"] - objects[-1]["exit_frame"] < gap
        ):
            return None
        objects.append(obj)
    # only the lanes are redrawn: the motion along each object's direction, and so the frames where two objects are
    # both on screen, are computed once
    along = [_along_track(obj, num_frames, frame_size) for obj in objects]
    sizes = [obj["size"] for obj in objects]
    on_screen = [(track > -size) & (track < frame_size) for track, size in zip(along, sizes)]
    both_on_screen = {
        (i, j): on_screen[i] & on_screen[j] for i in range(len(objects)) for j in range(i + 1, len(objects))
    }
    for _ in range(_LANE_TRIES):
        for obj in objects:
            obj["lane"] = round(float(rng.uniform(obj["size"] / 2 + 1, frame_size - obj["size"] / 2 - 1)), 2)
        tracks = []  # (x, y): one is the along array, the other the across constant
        for obj, track in zip(objects, along):
            across = _across_track(obj)
            tracks.append((track, across) if obj["direction"] in ("left", "right") else (across, track))
        if not _any_overlap(tracks, sizes, both_on_screen):
            return objects
    return None


def _any_overlap(tracks: Sequence[tuple], sizes: Sequence[int], both_on_screen: Mapping[tuple[int, int], np.ndarray]):
    """Whether two objects' boxes, grown by a 2 px margin, meet in a frame where both are on screen.

    tracks: per object its top-left (x, y) per frame, each an array over frames or a constant (the lane);
    both_on_screen: per pair (i, j), i < j, the frames where both objects are on screen (the lanes always are).
    """
    for (i, j), both in both_on_screen.items():
        (ax, ay), (bx, by), size_a, size_b = tracks[i], tracks[j], sizes[i], sizes[j]
        apart_x = (ax + size_a + 2 <= bx) | (bx + size_b + 2 <= ax)
        apart_y = (ay + size_a + 2 <= by) | (by + size_b + 2 <= ay)
        if np.any(both & ~apart_x & ~apart_y):
            return True
    return False


def _pick_least_used(rng: np.random.Generator, candidates: Sequence[Any], answer_of, counter: Counter) -> Any:
    """The candidate whose answer has been used least so far in this template (ties broken at random)."""
    lowest = min(counter[answer_of(candidate)] for candidate in candidates)
    tied = [candidate for candidate in candidates if counter[answer_of(candidate)] == lowest]
    return tied[int(rng.integers(len(tied)))]


def _name(obj: Mapping[str, Any]) -> str:
    return f"{obj['color']} {obj['shape']}"


def _order_question(before: str, after: str) -> str:
    """The order template's wording; `ORDER_QUESTION` parses it back."""
    return f"does the {before} appear before the {after}?"


ORDER_QUESTION = re.compile(r"does the (?P<before>\w+ \w+) appear before the (?P<after>\w+ \w+)\?")


def _plan_video(
    rng: np.random.Generator, count: int, config: Mapping[str, Any], counters: dict[str, Counter]
) -> dict[str, Any]:
    """Objects (in entry order) and motion of one video with `count` objects, its first/last from the counters."""
    fps, frame_size = config["fps"], config["frame_size"]
    num_frames = int(round(rng.uniform(*config["duration_range"]) * fps))
    if count == 1:
        order = [OBJECT_NAMES[int(rng.integers(len(OBJECT_NAMES)))]]
    else:
        # answer first: the objects that enter first and last are the answers those templates have used least
        first = _pick_least_used(rng, OBJECT_NAMES, lambda name: name, counters["first"])
        rest = [name for name in OBJECT_NAMES if name != first]
        last = _pick_least_used(rng, rest, lambda name: name, counters["last"])
        rest.remove(last)
        order = [first, *[rest[i] for i in rng.choice(len(rest), size=count - 2, replace=False)], last]
    scale = frame_size / 64
    low, high = round(SIZE_RANGE[0] * scale), round(SIZE_RANGE[1] * scale)
    directions = [DIRECTIONS[i] for i in rng.integers(len(DIRECTIONS), size=count)]
    shapes = [name.split(" ")[1] for name in order]
    for _ in range(_MAX_PLAN_TRIES):
        sizes = rng.integers(low, high + 1, size=count)
        motion = _try_layout(rng, shapes, sizes, directions, num_frames, frame_size)
        if motion is not None:
            break
    else:
        raise RuntimeError(
            f"Could not lay out {count} objects in {num_frames} frames of {frame_size} px after {_MAX_PLAN_TRIES} "
            "tries; use longer videos or a larger frame_size."
        )
    objects = []
    for name, obj in zip(order, motion):
        color, shape = name.split(" ")
        objects.append({"color": color, "shape": shape, "rgb": list(COLORS[color]), **obj})
    return {"num_frames": num_frames, "fps": fps, "width": frame_size, "height": frame_size, "objects": objects}


def _choices(rng: np.random.Generator, answer: str, candidates: Sequence[str]) -> tuple[list[str], list[int]]:
    """Shuffle `candidates` (which contain `answer`) and return them with the index of the answer."""
    shuffled = [candidates[i] for i in rng.permutation(len(candidates))]
    return shuffled, [shuffled.index(answer)]


def _make_questions(
    rng: np.random.Generator, video: Mapping[str, Any], counters: dict[str, Counter]
) -> list[dict[str, Any]]:
    """One question per template that the video supports, each built around its least used answer."""
    objects = video["objects"]
    questions: list[dict[str, Any]] = []

    def add(template: str, question: str, answer: str, candidates: Sequence[str]) -> None:
        choices, correct = _choices(rng, answer, candidates)
        counters[template][answer] += 1
        questions.append(
            {
                "question_id": f"synthetic-{video['video_id']}-{template}",
                "video_id": video["video_id"],
                "question": question,
                "answer": answer,
                "answer_type": template,
                "choices": choices,
                "correct_choices": correct,
            }
        )

    shapes = Counter(obj["shape"] for obj in objects)
    unique_shape = [obj for obj in objects if shapes[obj["shape"]] == 1]
    if unique_shape:
        obj = _pick_least_used(rng, unique_shape, lambda o: o["color"], counters["color"])
        add("color", f"what color is the {obj['shape']}?", obj["color"], ANSWER_VOCABULARY["color"])
    colors = Counter(obj["color"] for obj in objects)
    unique_color = [obj for obj in objects if colors[obj["color"]] == 1]
    if unique_color:
        obj = _pick_least_used(rng, unique_color, lambda o: o["shape"], counters["shape"])
        add("shape", f"what shape is the {obj['color']} object?", obj["shape"], ANSWER_VOCABULARY["shape"])
    obj = _pick_least_used(rng, objects, lambda o: o["direction"], counters["direction"])
    add("direction", f"which direction does the {_name(obj)} move?", obj["direction"], DIRECTIONS)
    add("count", "how many objects appear in the video?", COUNT_WORDS[len(objects) - 1], COUNT_WORDS)
    if len(objects) < 2:
        return questions
    for template, obj in (("first", objects[0]), ("last", objects[-1])):
        # distractors: the video's other objects (they need the timing to rule out), then objects not in the video
        others = [_name(o) for o in objects if o is not obj]
        others = [others[i] for i in rng.permutation(len(others))][:3]
        absent = [name for name in OBJECT_NAMES if name not in {_name(o) for o in objects}]
        others += [absent[i] for i in rng.choice(len(absent), size=3 - len(others), replace=False)]
        add(template, f"which object appears {template}?", _name(obj), [_name(obj), *others])
    answer = _pick_least_used(rng, ["yes", "no"], lambda a: a, counters["order"])
    i, j = sorted(rng.choice(len(objects), size=2, replace=False))
    before, after = (objects[i], objects[j]) if answer == "yes" else (objects[j], objects[i])
    add("order", _order_question(_name(before), _name(after)), answer, ["yes", "no"])
    return questions


def _plan_split(split: str, config: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ground truth and questions of one split; sequential, because the answer balancing carries across videos."""
    num_videos = config["num_videos"][split]
    rng = np.random.default_rng([config["seed"], SPLITS.index(split), GENERATOR_VERSION])
    # the object count is the count template's answer: an exactly balanced schedule
    counts = np.resize(np.arange(1, MAX_OBJECTS + 1), num_videos)[rng.permutation(num_videos)]
    counters = {template: Counter() for template in TEMPLATES}
    videos, questions = [], []
    for index in range(num_videos):
        video_id = f"{split}-{index:05d}"
        video = {"video_id": video_id, "path": f"videos/{split}/{video_id}.mp4"}
        video.update(_plan_video(rng, int(counts[index]), config, counters))
        video["caption"] = synthetic_caption(video)
        videos.append(video)
        questions.extend(_make_questions(rng, video, counters))
    return videos, questions


def render_synthetic_video(video: Mapping[str, Any]) -> np.ndarray:
    """(num_frames, height, width, 3) uint8 RGB frames of one annotated video, before compression."""
    num_frames, size = video["num_frames"], video["width"]
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    for obj in video["objects"]:
        mask = _shape_mask(obj["shape"], obj["size"])
        top_left = object_top_left(obj, num_frames, size)
        for index in range(obj["enter_frame"], obj["exit_frame"] + 1):
            x, y = top_left[index]
            # clip the mask to the part of it that is on screen
            mx0, my0 = max(0, -x), max(0, -y)
            mx1, my1 = min(obj["size"], size - x), min(obj["size"], size - y)
            region = frames[index, y + my0 : y + my1, x + mx0 : x + mx1]
            region[mask[my0:my1, mx0:mx1]] = obj["rgb"]
    return frames


def _write_mp4(frames: np.ndarray, path: Path, fps: int) -> None:
    """Encode RGB frames as H.264/yuv420p with `_X264_OPTIONS`, which keep the bytes identical from run to run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=_X264_OPTIONS)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _render_and_write(video: Mapping[str, Any], path: Path, fps: int) -> None:
    _write_mp4(render_synthetic_video(video), path, fps)


def _generation_threads() -> int:
    """Encoding threads: one per core this process may use, at most 4 (the set is written once and cached)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def generate_synthetic_videoqa(
    cache_dir: str | os.PathLike | None = None,
    num_videos: Mapping[str, int] | None = None,
    seed: int = 0,
    *,
    fps: int = 8,
    frame_size: int = 64,
    duration_range: Sequence[float] = (6.0, 20.0),
) -> Path:
    """Generate the synthetic set once and return its folder (`annotations.json` + `videos/<split>/*.mp4`).

    The folder is `<cache_dir>/<hash of the parameters>`, with `cache_dir` defaulting to `$MCG_CACHE/synthetic` or
    `~/.cache/modeling_mcg/synthetic`. A finished folder is returned as is; a new one is written under a temporary
    name and renamed when complete, so an interrupted run or several processes at once never leave a half set.

    Args:
        cache_dir: root folder of the cache.
        num_videos: videos per split, e.g. `{"train": 2400, "validation": 100, "test": 100}` (the default); splits
            left out get none.
        seed: the same seed and parameters give byte-identical annotations and identical decoded frames.
        fps, frame_size, duration_range: frame rate, square frame side in px, and video length range in seconds.
    """
    config = _generation_config(num_videos, seed, fps, frame_size, duration_range)
    root = Path(cache_dir) if cache_dir is not None else _default_cache_root()
    target = root / _cache_key(config)
    if (target / ANNOTATIONS_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    logger.info(f"Generating the synthetic VideoQA set {config['num_videos']} into {target}")
    started = time.perf_counter()
    progress = logging.tqdm(total=sum(config["num_videos"].values()), desc="Generating synthetic videos", unit="video")
    try:
        annotations: dict[str, Any] = {"config": config, "splits": {}}
        for split in SPLITS:
            videos, questions = _plan_split(split, config)
            annotations["splits"][split] = {"videos": videos, "questions": questions}
        # Each file has its own single-threaded encoder, so the bytes do not depend on which thread wrote it; PyAV
        # releases the GIL while encoding, so the cores share the work.
        with ThreadPoolExecutor(max_workers=_generation_threads()) as pool:
            writes = [
                pool.submit(_render_and_write, video, staging / video["path"], config["fps"])
                for split in SPLITS
                for video in annotations["splits"][split]["videos"]
            ]
            for write in as_completed(writes):
                write.result()
                progress.update()
        with open(staging / ANNOTATIONS_FILE, "w", encoding="utf-8") as handle:
            json.dump(annotations, handle, sort_keys=True, separators=(",", ":"))
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a cache is for every user of the machine
        try:
            os.rename(staging, target)
        except OSError:
            # another process finished the same set first: keep theirs
            if not (target / ANNOTATIONS_FILE).is_file():
                raise
    finally:
        progress.close()
        shutil.rmtree(staging, ignore_errors=True)
    logger.info(f"Generated the synthetic VideoQA set in {time.perf_counter() - started:.1f} s")
    return target


def read_synthetic_annotations(directory: str | os.PathLike) -> dict[str, Any]:
    """The annotation dict of a generated set: `config` and, per split, `videos` (ground truth) and `questions`."""
    path = Path(directory) / ANNOTATIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; create the set with generate_synthetic_videoqa().")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _load_split(split: str, cache_dir, num_videos, seed) -> tuple[Path, dict[str, Any]]:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; allowed: {list(SPLITS)}.")
    directory = generate_synthetic_videoqa(cache_dir=cache_dir, num_videos=num_videos, seed=seed)
    annotations = read_synthetic_annotations(directory)["splits"][split]
    if not annotations["videos"]:
        raise ValueError(f"The synthetic set has no {split!r} videos; pass num_videos with a count for {split!r}.")
    return directory.resolve(), annotations


def reversed_order_question(row: Mapping[str, Any]) -> dict[str, Any]:
    """The same order question with its two objects swapped and the answer flipped ("does B appear before A?")."""
    match = ORDER_QUESTION.fullmatch(row["question"]) if row["answer_type"] == "order" else None
    if match is None:
        raise ValueError(f"Not a synthetic order question: {row['question']!r} ({row['answer_type']}).")
    answer = "no" if row["answer"] == "yes" else "yes"
    return {
        **row,
        "question": _order_question(match["after"], match["before"]),
        "answer": answer,
        "correct_choices": [row["choices"].index(answer)],
        "question_id": f"{row['question_id']}-reversed",
    }


def load_synthetic_videoqa(
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    num_videos: Mapping[str, int] | None = None,
    questions_per_video: int | None = None,
    seed: int = 0,
    order_both_ways: bool = False,
) -> datasets.Dataset:
    """The synthetic VideoQA rows of one split, generating the videos on first use, with `VIDEOQA_FEATURES`.

    Args:
        split: "train", "validation" or "test" (disjoint videos).
        cache_dir, num_videos, seed: passed to `generate_synthetic_videoqa`.
        questions_per_video: None keeps every question (one per template the video supports, about 6 per video).
            An int k keeps the questions of k templates drawn at random per video (fewer when the video does not
            support some of them); drawing among all templates rather than the supported ones keeps the answers
            balanced.
        order_both_ways: also ask each order question the other way round (`reversed_order_question`), right after
            it: the same two objects of the same video then get opposite answers, which only the order the
            question names them in tells apart. For training; leave it off for evaluation, so that scores stay
            comparable.
    """
    if questions_per_video is not None and not 1 <= questions_per_video <= len(TEMPLATES):
        raise ValueError(f"questions_per_video must be None or 1..{len(TEMPLATES)}, got {questions_per_video}.")
    directory, annotations = _load_split(split, cache_dir, num_videos, seed)
    paths = {video["video_id"]: str(directory / video["path"]) for video in annotations["videos"]}
    questions = annotations["questions"]
    if questions_per_video is not None:
        rng = np.random.default_rng([seed, SPLITS.index(split), questions_per_video])
        kept = {
            video_id: {TEMPLATES[i] for i in rng.choice(len(TEMPLATES), size=questions_per_video, replace=False)}
            for video_id in paths
        }
        questions = [row for row in questions if row["answer_type"] in kept[row["video_id"]]]
    if order_both_ways:
        questions = [
            asked
            for row in questions
            for asked in ((row, reversed_order_question(row)) if row["answer_type"] == "order" else (row,))
        ]
    rows: dict[str, list[Any]] = {column: [] for column in COLUMNS}
    for row in questions:
        rows["video"].append(paths[row["video_id"]])
        for column in ("question", "answer", "answer_type", "choices", "correct_choices", "question_id"):
            rows[column].append(row[column])
        rows["subtitles"].append("")
        rows["start"].append(None)
        rows["end"].append(None)
    return datasets.Dataset.from_dict(rows, features=VIDEOQA_FEATURES, split=datasets.NamedSplit(split))


def synthetic_caption(video: Mapping[str, Any]) -> str:
    """Describe a video record in entry order, e.g. "a red circle moves left, then a blue square moves up"."""
    return ", then ".join(f"a {_name(obj)} moves {obj['direction']}" for obj in video["objects"])


def load_synthetic_captions(
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    num_videos: Mapping[str, int] | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """(video, caption) pairs of one split, for video-caption pretraining on the same videos."""
    directory, annotations = _load_split(split, cache_dir, num_videos, seed)
    return datasets.Dataset.from_dict(
        {
            "video": [str(directory / video["path"]) for video in annotations["videos"]],
            "caption": [video["caption"] for video in annotations["videos"]],
        },
        features=datasets.Features({"video": datasets.Value("string"), "caption": datasets.Value("string")}),
        split=datasets.NamedSplit(split),
    )
