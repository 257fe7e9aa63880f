"""Frame sampling: property tests over counts 1..64 and clip lengths 1..1000, plus the official code's bugs."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_mcg.frame_sampling import (
    PADDING_MODES,
    SAMPLING_STRATEGIES,
    sample_fps,
    sample_frame_indices,
    sample_headtail,
    sample_rand,
    sample_uniform,
)

counts = st.integers(min_value=1, max_value=64)
lengths = st.integers(min_value=1, max_value=1000)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
fixed_count_strategies = ("uniform", "rand", "headtail")


def _check_basic(indices: np.ndarray, mask: np.ndarray, count: int, total: int) -> None:
    assert indices.dtype == np.int64 and indices.shape == (count,)
    assert mask.dtype == np.bool_ and mask.shape == (count,)
    assert np.all(np.diff(indices) >= 0), "indices must be sorted"
    assert indices.min() >= 0 and indices.max() < total


@settings(max_examples=300, deadline=None)
@given(
    strategy=st.sampled_from(fixed_count_strategies),
    padding=st.sampled_from(PADDING_MODES),
    n=counts,
    total=lengths,
    seed=seeds,
)
def test_fixed_count_strategies_properties(strategy, padding, n, total, seed):
    indices, mask = sample_frame_indices(strategy, n, total, padding=padding, rng=np.random.default_rng(seed))
    _check_basic(indices, mask, n, total)
    if total >= n:
        assert mask.all()
        assert len(np.unique(indices)) == n, "a clip long enough must give distinct frames"
    elif padding == "repeat":
        assert mask.all()
        assert set(indices.tolist()) == set(range(total)), "repeat padding must keep every real frame"
    else:
        assert mask.tolist() == [True] * total + [False] * (n - total)
        assert indices.tolist() == list(range(total)) + [total - 1] * (n - total)


@settings(max_examples=300, deadline=None)
@given(n=counts, total=lengths)
def test_uniform_is_segment_centres(n, total):
    expected = [int(Fraction(2 * k + 1, 2) * Fraction(total, n)) for k in range(n)]  # exact floor((k + 0.5) T / n)
    assert sample_uniform(n, total).tolist() == expected
    indices, _ = sample_frame_indices("uniform", n, total)
    assert indices.tolist() == expected


def test_uniform_fixes_truncated_step_of_official_code():
    # The official code gives frames 0..15 for 30 frames / 16 samples: the second half of the clip is never seen.
    official = np.arange(0, 30, 30 / 16, dtype=int)
    assert official.max() == 15
    ours = sample_uniform(16, 30)
    assert ours[0] == 0 and ours[-1] == 29
    assert sorted(set(ours.tolist())) == ours.tolist()
    assert sample_uniform(4, 100).tolist() == [12, 37, 62, 87]


@settings(max_examples=300, deadline=None)
@given(n=counts, total=lengths, seed=seeds)
def test_rand_takes_one_frame_per_segment(n, total, seed):
    indices = sample_rand(n, total, np.random.default_rng(seed))
    assert indices.shape == (n,)
    if total >= n:
        for k, index in enumerate(indices):
            assert k * total // n <= index < (k + 1) * total // n


def test_rand_is_random_and_reproducible():
    draws = {tuple(sample_rand(8, 1000, np.random.default_rng(seed)).tolist()) for seed in range(20)}
    assert len(draws) == 20
    assert np.array_equal(
        sample_rand(8, 1000, np.random.default_rng(3)), sample_rand(8, 1000, np.random.default_rng(3))
    )
    for _ in range(5):  # rng=None still gives a valid sample
        assert sample_rand(8, 1000).shape == (8,)


@settings(max_examples=300, deadline=None)
@given(n=counts, total=lengths, seed=seeds)
def test_headtail_takes_half_from_each_half(n, total, seed):
    indices = sample_headtail(n, total, np.random.default_rng(seed))
    assert indices.shape == (n,)
    assert np.all(np.diff(indices) >= 0)
    split = (total + 1) // 2
    head = int((indices < split).sum())
    if total >= 2:
        assert head == (n + 1) // 2, f"head got {head} of {n} frames"
        assert n - head == n // 2
    else:
        assert indices.tolist() == [0] * n
    if total >= n:
        assert len(np.unique(indices)) == n


def test_headtail_odd_count_and_clip_of_exactly_n_frames():
    # The official sampler returned T-1 frames for odd T and failed when floor(L/2) < floor(T/2).
    rng = np.random.default_rng(0)
    assert sample_headtail(5, 5, rng).tolist() == [0, 1, 2, 3, 4]
    assert sample_headtail(3, 3, rng).tolist() == [0, 1, 2]
    assert sample_headtail(7, 100, rng).shape == (7,)
    assert sample_headtail(1, 1, rng).tolist() == [0]
    assert sample_headtail(4, 1, rng).tolist() == [0, 0, 0, 0]


def test_fps_count_and_clamping():
    assert sample_fps(300, 30.0, 1.0).tolist() == sample_uniform(10, 300).tolist()  # 10 s at 1 fps
    assert len(sample_fps(300, 30.0, 1.0, min_frames=16)) == 16
    assert len(sample_fps(300, 30.0, 1.0, max_frames=4)) == 4
    assert len(sample_fps(10, 30.0, 1.0)) == 1  # 0.33 s rounds to 0, min_frames lifts it to 1
    assert len(sample_fps(45, 30.0, 1.0)) == 2  # 1.5 s rounds half up
    assert len(sample_fps(20, 10.0, 50.0)) == 20  # faster than the video: capped at the real frames
    indices, mask = sample_frame_indices(
        "fps", None, 20, video_fps=10.0, target_fps=50.0, min_frames=24, padding="mask"
    )
    assert len(indices) == 24 and mask.sum() == 20 and indices[-4:].tolist() == [19] * 4


@settings(max_examples=200, deadline=None)
@given(
    total=lengths,
    video_fps=st.floats(min_value=1.0, max_value=120.0),
    target_fps=st.floats(min_value=0.05, max_value=60.0),
    min_frames=st.integers(min_value=1, max_value=16),
    extra=st.integers(min_value=0, max_value=48),
    padding=st.sampled_from(PADDING_MODES),
)
def test_fps_properties(total, video_fps, target_fps, min_frames, extra, padding):
    max_frames = min_frames + extra
    indices, mask = sample_frame_indices(
        "fps", None, total, video_fps=video_fps, target_fps=target_fps, min_frames=min_frames,
        max_frames=max_frames, padding=padding,
    )  # fmt: skip
    by_rate = math.floor(total * target_fps / video_fps + 0.5)  # duration x target rate, rounded half up
    assert len(indices) == min(max(min(by_rate, total), min_frames), max_frames)
    _check_basic(indices, mask, len(indices), total)
    assert min_frames <= len(indices) <= max_frames
    assert mask.sum() == min(total, len(indices)) if padding == "mask" else mask.all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "middle", "num_frames": 4, "total_frames": 10}, r"strategy.*uniform.*rand.*headtail.*fps"),
        ({"strategy": "uniform", "num_frames": 4, "total_frames": 10, "padding": "zeros"}, r"padding.*repeat.*mask"),
        ({"strategy": "uniform", "num_frames": 0, "total_frames": 10}, r"num_frames.*>= 1"),
        ({"strategy": "rand", "num_frames": 4, "total_frames": 0}, r"total_frames.*>= 1"),
        ({"strategy": "fps", "num_frames": None, "total_frames": 10, "target_fps": 1.0}, r"video_fps"),
        ({"strategy": "fps", "num_frames": None, "total_frames": 10, "video_fps": 25.0}, r"target_fps"),
        (
            {"strategy": "fps", "num_frames": 4, "total_frames": 10, "video_fps": 25.0, "target_fps": -1.0},
            "target_fps",
        ),
        (
            {
                "strategy": "fps",
                "num_frames": 4,
                "total_frames": 10,
                "video_fps": 25.0,
                "target_fps": 1.0,
                "min_frames": 8,
                "max_frames": 4,
            },
            r"max_frames.*min_frames",
        ),  # fmt: skip
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_frame_indices(**kwargs)


def test_wrong_types_are_rejected():
    with pytest.raises(TypeError, match="num_frames"):
        sample_frame_indices("uniform", 4.5, 10)
    with pytest.raises(TypeError, match="total_frames"):
        sample_uniform(4, True)


def test_strategy_names_are_the_public_tuple():
    assert SAMPLING_STRATEGIES == ("uniform", "rand", "headtail", "fps")
    assert PADDING_MODES == ("repeat", "mask")
    for strategy in SAMPLING_STRATEGIES:
        indices, mask = sample_frame_indices(strategy, 8, 100, video_fps=25.0, target_fps=2.0)
        _check_basic(indices, mask, len(indices), 100)
