"""The synthetic long-video QA set: cached and deterministic, balanced, and its videos show what it says.

The pixel checks decode the written mp4 files and recompute where each object must be from the motion formula in
the module docstring, so a renderer, encoder or annotation bug shows up as a colour in the wrong place or time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import av
import numpy as np
import pytest

from modeling_mcg.data import synthetic
from modeling_mcg.data.schema import VIDEOQA_FEATURES
from modeling_mcg.data.synthetic import (
    ANNOTATIONS_FILE,
    ANSWER_VOCABULARY,
    BACKGROUND,
    COLORS,
    COUNT_WORDS,
    MIN_FULL_VISIBLE,
    MIN_GAP,
    OBJECT_NAMES,
    SPLITS,
    TEMPLATES,
    generate_synthetic_videoqa,
    load_synthetic_captions,
    load_synthetic_videoqa,
    read_synthetic_annotations,
    render_synthetic_video,
    synthetic_caption,
)

NUM_VIDEOS = {"train": 160, "validation": 12, "test": 80}
TINY = {"train": 6, "validation": 2, "test": 2}
# share of its box each shape fills: disc, full square, triangle, plus with arms a third of the side wide


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="module")
def dataset_dir(cache_root) -> Path:
    return generate_synthetic_videoqa(cache_root, NUM_VIDEOS, seed=3)


@pytest.fixture(scope="module")
def annotations(dataset_dir) -> dict:
    return read_synthetic_annotations(dataset_dir)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def shape_mask(shape: str, size: int) -> np.ndarray:
    """The documented shapes, sampled at pixel centres: disc, full square, upward triangle (apex at the top centre,
    base on the bottom row), plus-shaped cross with arms size/3 wide."""
    centres = np.arange(size) + 0.5
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    half = size / 2
    return {
        "circle": (xs - half) ** 2 + (ys - half) ** 2 <= half**2,
        "square": np.ones((size, size), dtype=bool),
        "triangle": np.abs(xs - half) <= half * (ys + 0.5) / size,
        "cross": (np.abs(xs - half) <= size / 6) | (np.abs(ys - half) <= size / 6),
    }[shape]


def expected_top_left(obj: dict, frame: int, frame_size: int) -> tuple[int, int]:
    """Top-left (x, y) of an object's box, from the motion formula written in the module docstring."""
    size = obj["size"]
    centre = size / 2 + (frame_size - size) * (frame - obj["t0"]) / (obj["t1"] - obj["t0"])
    if obj["direction"] in ("left", "up"):
        centre = frame_size - centre
    along = int(np.floor(centre - size / 2 + 0.5))
    across = int(np.floor(obj["lane"] - size / 2 + 0.5))
    return (along, across) if obj["direction"] in ("left", "right") else (across, along)


def color_mask(frames: np.ndarray, rgb) -> np.ndarray:
    return np.all(np.abs(frames.astype(np.int32) - np.asarray(rgb)) <= 50, axis=-1)


def foreground_mask(frames: np.ndarray) -> np.ndarray:
    """Pixels that differ from the background: luma edges survive H.264 better than chroma, so shapes stay crisp."""
    return np.abs(frames.astype(np.int32) - np.asarray(BACKGROUND)).max(axis=-1) > 80


def classify_color(rgb: np.ndarray) -> str:
    """Name a decoded colour from its channels alone, independently of the module's palette."""
    red, green, blue = (int(value) for value in rgb)
    high, low = 150, 110
    if red > high and green > high and blue < low:
        return "yellow"
    if red > high and green < low and blue < low:
        return "red"
    if green > high and red < low and blue < low:
        return "green"
    if blue > high and red < low and green < low + 20:
        return "blue"
    return f"unnamed {red, green, blue}"


def classify_shape(mask: np.ndarray) -> str:
    """Tell the four shapes apart from a box-sized mask: taper, fill, and probes a quarter in from each corner."""
    size = mask.shape[0]
    quarter = size // 4
    if mask[:quarter].sum() < 0.5 * mask[-quarter:].sum():
        return "triangle"
    if mask.mean() > 0.9:
        return "square"
    # inside a disc of diameter `size`, outside the arms of a cross
    near, far = quarter - 1, size - quarter
    probes = mask[[near, near, far, far], [near, far, near, far]]
    return "circle" if probes.mean() > 0.5 else "cross"


def test_same_seed_gives_identical_sets_and_a_second_call_rewrites_nothing(tmp_path):
    first = generate_synthetic_videoqa(tmp_path / "a", TINY, seed=5)
    second = generate_synthetic_videoqa(tmp_path / "b", TINY, seed=5)
    assert first.name == second.name  # the folder is keyed by the parameters, not by where it lives
    assert (first / ANNOTATIONS_FILE).read_bytes() == (second / ANNOTATIONS_FILE).read_bytes()
    videos = sorted(path.relative_to(first) for path in first.rglob("*.mp4"))
    assert len(videos) == sum(TINY.values())
    for relative in videos:
        np.testing.assert_array_equal(decode(first / relative), decode(second / relative))

    mtimes = {path: path.stat().st_mtime_ns for path in first.rglob("*") if path.is_file()}
    assert generate_synthetic_videoqa(tmp_path / "a", TINY, seed=5) == first
    assert {path: path.stat().st_mtime_ns for path in first.rglob("*") if path.is_file()} == mtimes
    assert [path.name for path in (tmp_path / "a").iterdir()] == [first.name]  # no staging folder left behind

    other = generate_synthetic_videoqa(tmp_path / "a", TINY, seed=6)
    assert other != first
    assert (other / ANNOTATIONS_FILE).read_bytes() != (first / ANNOTATIONS_FILE).read_bytes()


def test_annotations_of_a_seed_stay_byte_identical_while_the_generator_version_is_unchanged(tmp_path):
    # the cache key holds GENERATOR_VERSION, not the code: a change in what the planner draws must bump it, or a
    # cached set and a freshly generated one would differ under the same key
    directory = generate_synthetic_videoqa(tmp_path, TINY, seed=5)
    digest = hashlib.sha256((directory / ANNOTATIONS_FILE).read_bytes()).hexdigest()
    assert synthetic.GENERATOR_VERSION == 3
    assert digest == "e4ff8c253aca53e433698b583e0264621ae2b864add64a410f7147095fe9b3e2"


@pytest.mark.parametrize("threads", [1, 3])
def test_encoding_threads_write_the_same_bytes(tmp_path, monkeypatch, threads):
    reference = generate_synthetic_videoqa(tmp_path / "reference", TINY, seed=5)
    monkeypatch.setattr(synthetic, "_generation_threads", lambda: threads)
    directory = generate_synthetic_videoqa(tmp_path / "other", TINY, seed=5)
    videos = sorted(path.relative_to(reference) for path in reference.rglob("*.mp4"))
    assert len(videos) == sum(TINY.values())
    for relative in videos:
        assert (directory / relative).read_bytes() == (reference / relative).read_bytes(), relative


def test_default_cache_is_under_mcg_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MCG_CACHE", str(tmp_path))
    directory = generate_synthetic_videoqa(num_videos={"test": 1})
    assert directory.parent == tmp_path / "synthetic"
    assert read_synthetic_annotations(directory)["config"]["num_videos"] == {"train": 0, "validation": 0, "test": 1}


def test_rows_follow_the_videoqa_schema(cache_root, dataset_dir):
    all_ids, videos_by_split = [], {}
    for split in SPLITS:
        dataset = load_synthetic_videoqa(split, cache_dir=cache_root, num_videos=NUM_VIDEOS, seed=3)
        assert dataset.features == VIDEOQA_FEATURES
        assert dataset.split == split
        assert set(dataset["subtitles"]) == {""}
        assert set(dataset["start"]) == {None} and set(dataset["end"]) == {None}
        assert set(dataset["answer_type"]) <= set(TEMPLATES)
        paths = set(dataset["video"])
        assert all(Path(path).is_absolute() and Path(path).is_file() for path in paths)
        assert all(Path(path).is_relative_to(dataset_dir.resolve()) for path in paths)
        videos_by_split[split] = paths
        all_ids += dataset["question_id"]
    assert len(all_ids) == len(set(all_ids))
    assert not videos_by_split["train"] & videos_by_split["validation"]
    assert not videos_by_split["train"] & videos_by_split["test"]
    assert not videos_by_split["validation"] & videos_by_split["test"]
    assert len(videos_by_split["test"]) == NUM_VIDEOS["test"]


def test_every_answer_is_its_correct_choice(annotations):
    for split in SPLITS:
        for row in annotations["splits"][split]["questions"]:
            template = row["answer_type"]
            assert row["answer"] in ANSWER_VOCABULARY[template]
            assert len(row["correct_choices"]) == 1
            assert row["choices"][row["correct_choices"][0]] == row["answer"]
            assert len(set(row["choices"])) == len(row["choices"]) == (2 if template == "order" else 4)
            assert set(row["choices"]) <= set(ANSWER_VOCABULARY[template])


def test_answers_match_the_ground_truth(annotations):
    """Recompute every answer from the per-video objects, parsing the question text."""
    for split in SPLITS:
        videos = {video["video_id"]: video for video in annotations["splits"][split]["videos"]}
        for row in annotations["splits"][split]["questions"]:
            objects = videos[row["video_id"]]["objects"]
            by_name = {f"{obj['color']} {obj['shape']}": obj for obj in objects}
            assert len(by_name) == len(objects)
            assert [obj["enter_frame"] for obj in objects] == sorted(obj["enter_frame"] for obj in objects)
            question, template = row["question"], row["answer_type"]
            if template == "color":
                shape = re.fullmatch(r"what color is the (\w+)\?", question).group(1)
                (match,) = [obj for obj in objects if obj["shape"] == shape]
                assert row["answer"] == match["color"]
            elif template == "shape":
                color = re.fullmatch(r"what shape is the (\w+) object\?", question).group(1)
                (match,) = [obj for obj in objects if obj["color"] == color]
                assert row["answer"] == match["shape"]
            elif template == "direction":
                name = re.fullmatch(r"which direction does the (\w+ \w+) move\?", question).group(1)
                assert row["answer"] == by_name[name]["direction"]
            elif template == "count":
                assert row["answer"] == COUNT_WORDS[len(objects) - 1]
            elif template in ("first", "last"):
                pick = min if template == "first" else max
                expected = pick(objects, key=lambda obj: obj["enter_frame"])
                assert row["answer"] == f"{expected['color']} {expected['shape']}"
                # the last to appear is also the last to leave, so "last" has one reading
                assert pick(objects, key=lambda obj: obj["exit_frame"]) is expected
            else:
                a, b = re.fullmatch(r"does the (\w+ \w+) appear before the (\w+ \w+)\?", question).groups()
                before = by_name[a]["enter_frame"] < by_name[b]["enter_frame"]
                assert row["answer"] == ("yes" if before else "no")


def test_answers_are_balanced_so_the_question_alone_is_chance(annotations):
    train = annotations["splits"]["train"]["questions"]
    test = annotations["splits"]["test"]["questions"]
    for template in TEMPLATES:
        answers = Counter(row["answer"] for row in train if row["answer_type"] == template)
        chance = 1 / len(ANSWER_VOCABULARY[template])
        assert set(answers) == set(ANSWER_VOCABULARY[template]), template
        assert max(answers.values()) / answers.total() <= chance * 1.25, (template, answers)
        # the train-majority answer of the template, scored on the test split
        majority = answers.most_common(1)[0][0]
        test_rows = [row for row in test if row["answer_type"] == template]
        accuracy = np.mean([row["answer"] == majority for row in test_rows])
        assert accuracy <= chance + 0.06, (template, accuracy, chance)

    # a blind model that memorises the majority answer of each exact question text does no better than chance
    by_text = defaultdict(Counter)
    by_template = defaultdict(Counter)
    for row in train:
        by_text[row["question"]][row["answer"]] += 1
        by_template[row["answer_type"]][row["answer"]] += 1
    hits, chance = [], []
    for row in test:
        prior = by_text.get(row["question"]) or by_template[row["answer_type"]]
        hits.append(prior.most_common(1)[0][0] == row["answer"])
        chance.append(1 / len(ANSWER_VOCABULARY[row["answer_type"]]))
    assert np.mean(hits) <= np.mean(chance) + 0.06, (np.mean(hits), np.mean(chance))


def test_timing_lets_eight_uniform_frames_see_every_object_in_order(annotations):
    counts = Counter()
    for split in SPLITS:
        for video in annotations["splits"][split]["videos"]:
            frames, objects = video["num_frames"], video["objects"]
            counts[len(objects)] += 1
            sampled = np.linspace(0, frames - 1, 8).round().astype(int)
            first_seen, last_seen = [], []
            for obj in objects:
                assert 1 <= obj["enter_frame"] < obj["full_start_frame"] <= obj["full_end_frame"] < obj["exit_frame"]
                assert obj["exit_frame"] <= frames - 2
                assert obj["full_end_frame"] - obj["full_start_frame"] + 1 >= MIN_FULL_VISIBLE * frames - 1
                fully = np.flatnonzero((sampled >= obj["full_start_frame"]) & (sampled <= obj["full_end_frame"]))
                assert len(fully) >= 1, (video["video_id"], obj)
                seen = np.flatnonzero((sampled >= obj["enter_frame"]) & (sampled <= obj["exit_frame"]))
                first_seen.append(seen[0])
                last_seen.append(seen[-1])
            assert first_seen == sorted(set(first_seen)), video["video_id"]
            assert last_seen == sorted(set(last_seen)), video["video_id"]
            for earlier, later in zip(objects, objects[1:]):
                assert later["enter_frame"] - earlier["enter_frame"] >= MIN_GAP * frames
                assert later["exit_frame"] - earlier["exit_frame"] >= MIN_GAP * frames
    assert set(counts) == {1, 2, 3, 4}


def test_videos_show_the_annotated_objects(dataset_dir, annotations):
    """Each sampled object's colour fills its box while fully visible and is absent when no such object is on."""
    videos = annotations["splits"]["test"]["videos"][:24]
    checked = Counter()
    for video in videos:
        frames = decode(dataset_dir / video["path"])
        assert frames.shape == (video["num_frames"], video["height"], video["width"], 3)
        size = video["width"]
        assert np.abs(frames.astype(np.int32) - render_synthetic_video(video)).mean() < 4
        foreground = foreground_mask(frames)
        for obj in video["objects"]:
            same_color = [other for other in video["objects"] if other["color"] == obj["color"]]
            mask = color_mask(frames, COLORS[obj["color"]])
            for frame in range(video["num_frames"]):
                on_screen = [o for o in same_color if o["enter_frame"] <= frame <= o["exit_frame"]]
                if not on_screen:
                    assert mask[frame].sum() <= 2, (video["video_id"], obj["color"], frame)
                    continue
                # nothing of this colour outside the boxes of this colour's objects (grown by 2 px for bleeding)
                allowed = np.zeros((size, size), dtype=bool)
                for other in on_screen:
                    x, y = expected_top_left(other, frame, size)
                    allowed[
                        max(0, y - 2) : max(0, y + other["size"] + 2), max(0, x - 2) : max(0, x + other["size"] + 2)
                    ] = True
                assert (mask[frame] & ~allowed).sum() <= 2, (video["video_id"], obj, frame)
                if obj["enter_frame"] <= frame <= obj["exit_frame"]:
                    # its colour fills its box, or the part of the box on screen while it enters or leaves
                    x, y = expected_top_left(obj, frame, size)
                    x0, y0 = max(0, x), max(0, y)
                    x1, y1 = min(size, x + obj["size"]), min(size, y + obj["size"])
                    area = max(0, x1 - x0) * max(0, y1 - y0)
                    full = obj["full_start_frame"] <= frame <= obj["full_end_frame"]
                    assert full == (area == obj["size"] ** 2)
                    if area >= obj["size"] ** 2 / 4:
                        # pixels of the shape inside the frame (a corner of a triangle can be nearly empty)
                        expected = shape_mask(obj["shape"], obj["size"])[y0 - y : y1 - y, x0 - x : x1 - x].sum()
                        drawn = foreground[frame, y0:y1, x0:x1].sum() / expected
                        # chroma is stored at half resolution, so thin parts lose their exact colour at the edges
                        colored = mask[frame, y0:y1, x0:x1].sum() / expected
                        assert drawn >= (0.7 if full else 0.6), (video["video_id"], obj, frame)
                        assert colored >= (0.4 if full else 0.05), (video["video_id"], obj, frame)
            # the shape, in every fully visible frame (no other object comes within 2 px of the box)
            for frame in range(obj["full_start_frame"], obj["full_end_frame"] + 1):
                x, y = expected_top_left(obj, frame, size)
                box = foreground[frame, y : y + obj["size"], x : x + obj["size"]]
                assert classify_shape(box) == obj["shape"], (video["video_id"], obj, frame)
                pixels = frames[frame, y : y + obj["size"], x : x + obj["size"]][box]
                assert classify_color(np.median(pixels, axis=0)) == obj["color"], (video["video_id"], obj, frame)
            checked[obj["shape"]] += 1
    assert set(checked) == {"circle", "square", "triangle", "cross"}


def test_questions_per_video_keeps_a_balanced_subset(cache_root, annotations):
    full = load_synthetic_videoqa("train", cache_dir=cache_root, num_videos=NUM_VIDEOS, seed=3)
    subset = load_synthetic_videoqa(
        "train", cache_dir=cache_root, num_videos=NUM_VIDEOS, seed=3, questions_per_video=2
    )
    again = load_synthetic_videoqa("train", cache_dir=cache_root, num_videos=NUM_VIDEOS, seed=3, questions_per_video=2)
    assert subset["question_id"] == again["question_id"]
    assert set(subset["question_id"]) < set(full["question_id"])
    per_video = Counter(subset["video"])
    assert max(per_video.values()) <= 2
    counts = Counter(answer for answer, kind in zip(subset["answer"], subset["answer_type"]) if kind == "count")
    assert max(counts.values()) / counts.total() < 0.4  # 4 answers: no count leaks through the subsampling


def test_order_both_ways_asks_each_order_question_reversed_right_after_it(cache_root, annotations):
    once = load_synthetic_videoqa("train", cache_dir=cache_root, num_videos=NUM_VIDEOS, seed=3).to_list()
    both = load_synthetic_videoqa(
        "train", cache_dir=cache_root, num_videos=NUM_VIDEOS, seed=3, order_both_ways=True
    ).to_list()
    orders = [row for row in once if row["answer_type"] == "order"]
    assert orders and len(both) == len(once) + len(orders)
    assert [row for row in both if not row["question_id"].endswith("-reversed")] == once
    entry = {
        v["video_id"]: [f"{o['color']} {o['shape']}" for o in v["objects"]]
        for v in annotations["splits"]["train"]["videos"]
    }
    for k, row in enumerate(both):
        if not row["question_id"].endswith("-reversed"):
            continue
        original = both[k - 1]  # right after it: batches grouped by video see both
        assert row["question_id"] == original["question_id"] + "-reversed" and row["video"] == original["video"]
        first, second = synthetic.ORDER_QUESTION.fullmatch(row["question"]).groups()
        assert original["question"] == f"does the {second} appear before the {first}?"
        assert {row["answer"], original["answer"]} == {"yes", "no"}
        assert row["choices"][row["correct_choices"][0]] == row["answer"]
        names = entry[original["question_id"].split("-order")[0].removeprefix("synthetic-")]
        assert row["answer"] == ("yes" if names.index(first) < names.index(second) else "no")
    answers = Counter(row["answer"] for row in both if row["answer_type"] == "order")
    assert answers["yes"] == answers["no"]  # both ways round: exactly balanced


def test_a_question_that_is_not_an_order_question_cannot_be_reversed():
    row = {"question": "what color is the circle?", "answer_type": "color", "answer": "red", "choices": ["red"]}
    with pytest.raises(ValueError, match="Not a synthetic order question: 'what color is the circle\\?'"):
        synthetic.reversed_order_question(row)


def test_captions_list_objects_in_entry_order(cache_root, annotations):
    captions = load_synthetic_captions("validation", cache_dir=cache_root, num_videos=NUM_VIDEOS, seed=3)
    videos = annotations["splits"]["validation"]["videos"]
    assert captions.num_rows == len(videos) and captions.column_names == ["video", "caption"]
    for row, video in zip(captions, videos):
        assert row["video"].endswith(video["path"])
        parts = row["caption"].split(", then ")
        assert parts == [f"a {obj['color']} {obj['shape']} moves {obj['direction']}" for obj in video["objects"]]
    record = {"objects": [{"color": "red", "shape": "circle", "direction": "left"}]}
    record["objects"].append({"color": "blue", "shape": "square", "direction": "up"})
    assert synthetic_caption(record) == "a red circle moves left, then a blue square moves up"


def test_annotation_records_vocabulary_and_config(annotations):
    assert annotations["config"]["num_videos"] == NUM_VIDEOS
    assert annotations["config"]["seed"] == 3
    names = {
        f"{obj['color']} {obj['shape']}"
        for split in SPLITS
        for v in annotations["splits"][split]["videos"]
        for obj in v["objects"]
    }
    assert names <= set(OBJECT_NAMES)
    # the annotation is plain JSON: reading and re-dumping it round-trips
    assert json.loads(json.dumps(annotations)) == annotations


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "dev"}, "Unknown split"),
        ({"num_videos": {"training": 3}}, "unknown splits"),
        ({"num_videos": {"train": 0, "test": 0}}, "at least one video"),
        ({"questions_per_video": 0}, "questions_per_video"),
        ({"num_videos": {"train": 1}, "split": "test"}, "no 'test' videos"),
    ],
)
def test_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_synthetic_videoqa(cache_dir=tmp_path, **kwargs)


def test_synthetic_set_is_reachable_through_the_dataset_dispatcher(tmp_path):
    from modeling_mcg.data import DATASET_NAMES, VIDEOQA_FEATURES, load_videoqa_dataset

    assert "synthetic" in DATASET_NAMES
    dataset = load_videoqa_dataset("synthetic", str(tmp_path), "test", num_videos={"test": 2})
    assert dataset.features == VIDEOQA_FEATURES and len(dataset) > 0
    assert all(path.startswith(str(tmp_path)) for path in dataset["video"])


def test_sample_limits_shrink_generation_and_generation_shows_progress(tmp_path, capfd):
    from modeling_mcg.data.synthetic import num_videos_for_samples

    assert num_videos_for_samples({"train": 200, "validation": 50, "test": 50}) == {
        "train": 50, "validation": 13, "test": 13,
    }  # fmt: skip
    assert num_videos_for_samples({"train": None}) == {"train": 2400, "validation": 100, "test": 100}
    with pytest.raises(ValueError, match="must be positive"):
        num_videos_for_samples({"train": 0})

    spec = importlib.util.spec_from_file_location(
        "run_videoqa", Path(__file__).parent.parent / "examples" / "run_videoqa.py"
    )
    run_videoqa = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_videoqa)
    cache = tmp_path / "cache"
    run_videoqa.main(
        ["--synthetic_cache_dir", str(cache), "--output_dir", str(tmp_path / "out"), "--max_train_samples", "12",
         "--max_eval_samples", "5", "--max_steps", "1", "--per_device_train_batch_size", "4",
         "--dataloader_num_workers", "0", "--save_strategy", "no", "--do_eval", "False"]
    )  # fmt: skip
    videos = sorted(path.parent.name for path in cache.rglob("*.mp4"))
    assert videos == ["test"] * 2 + ["train"] * 3 + ["validation"] * 2  # not the 2,600 of the default set
    assert "Generating synthetic videos: 100%" in capfd.readouterr().err
