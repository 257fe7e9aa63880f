"""MCGVideoProcessor: input forms, sampling, geometry, normalisation, augmentation, padding, errors, round trip."""

import io
import os
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image
from video_factory import reference_frames, write_frame_folder, write_video

from modeling_mcg.frame_sampling import sample_frame_indices
from modeling_mcg.video_io import VideoDecodeError
from modeling_mcg.video_processing_mcg import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, MCGVideoProcessor

# No resize/crop/rescale/normalise: outputs are the sampled input pixels, so frame choice can be checked exactly.
RAW = {"do_resize": False, "do_center_crop": False, "do_rescale": False, "do_normalize": False}


def small_processor(**kwargs) -> MCGVideoProcessor:
    """Odd sizes so a transposed axis cannot hide: 4 frames, 12 x 12 output."""
    options = {"num_frames": 4, "size": {"shortest_edge": 12}, "crop_size": {"height": 12, "width": 12}}
    return MCGVideoProcessor(**{**options, **kwargs})


def counting_video(num_frames: int, height: int = 10, width: int = 14) -> np.ndarray:
    """Frame i is filled with the value i (t, h, w, 3) uint8: the output pixel says which frame was taken."""
    return np.broadcast_to(np.arange(num_frames, dtype=np.uint8)[:, None, None, None], (num_frames, height, width, 3))


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> str:
    return str(write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=24, width=40, height=30))


def test_class_defaults_match_the_paper_setup():
    processor = MCGVideoProcessor()
    assert processor.num_frames == 8 and processor.sampling == "uniform" and processor.frame_padding == "repeat"
    assert processor.size.shortest_edge == 224
    assert (processor.crop_size.height, processor.crop_size.width) == (224, 224)
    assert tuple(processor.image_mean) == OPENAI_CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert tuple(processor.image_std) == OPENAI_CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    assert processor.do_resize and processor.do_center_crop and processor.do_rescale and processor.do_normalize
    assert processor.do_convert_rgb and not processor.do_augment
    assert processor.model_input_names == ["pixel_values_videos", "video_frame_mask"]


def test_default_output_is_224_clip_normalised():
    out = MCGVideoProcessor()(np.zeros((20, 48, 64, 3), dtype=np.uint8))
    assert out["pixel_values_videos"].shape == (1, 8, 3, 224, 224)
    assert out["pixel_values_videos"].dtype == torch.float32
    expected = -torch.tensor(OPENAI_CLIP_MEAN) / torch.tensor(OPENAI_CLIP_STD)
    torch.testing.assert_close(out["pixel_values_videos"][0, 3, :, 100, 50], expected)


@pytest.mark.parametrize(
    "form", ["numpy", "torch", "pil", "frame_arrays", "path", "pathlib", "bytes", "file", "folder"]
)
def test_every_single_video_form(form, clip_path, tmp_path):
    video = np.stack(reference_frames(clip_path))  # (24, 30, 40, 3)
    if form == "folder":
        folder = write_frame_folder(tmp_path / "frames", num_frames=24, width=40, height=30)
        video = np.stack([np.asarray(Image.open(p)) for p in sorted(pathlib.Path(folder).glob("*.png"))])
    inputs = {
        "numpy": lambda: video,
        "torch": lambda: torch.from_numpy(video),
        "pil": lambda: [Image.fromarray(frame) for frame in video],
        "frame_arrays": lambda: list(video),
        "path": lambda: clip_path,
        "pathlib": lambda: pathlib.Path(clip_path),
        "bytes": lambda: pathlib.Path(clip_path).read_bytes(),
        "file": lambda: io.BytesIO(pathlib.Path(clip_path).read_bytes()),
        "folder": lambda: folder,
    }
    out = small_processor(**RAW)(inputs[form]())

    assert set(out.keys()) == {"pixel_values_videos", "video_frame_mask"}
    assert out["pixel_values_videos"].shape == (1, 4, 3, 30, 40) and out["pixel_values_videos"].dtype == torch.float32
    assert out["video_frame_mask"].tolist() == [[1, 1, 1, 1]] and out["video_frame_mask"].dtype == torch.int64
    indices, _ = sample_frame_indices("uniform", 4, 24)
    expected = torch.from_numpy(video[indices]).permute(0, 3, 1, 2).float()  # (t, 3, h, w)
    torch.testing.assert_close(out["pixel_values_videos"][0], expected, rtol=0, atol=0)


def test_processed_forms_share_one_geometry(clip_path):
    processor = small_processor()
    out = processor([clip_path, np.stack(reference_frames(clip_path))])
    assert out["pixel_values_videos"].shape == (2, 4, 3, 12, 12)
    torch.testing.assert_close(out["pixel_values_videos"][0], out["pixel_values_videos"][1])


def test_batch_forms():
    video = counting_video(10)
    processor = small_processor()
    batch = [video, torch.from_numpy(video.copy()), [Image.fromarray(frame) for frame in video], list(video)]
    out = processor(batch)
    assert out["pixel_values_videos"].shape == (4, 4, 3, 12, 12)
    assert out["video_frame_mask"].shape == (4, 4)
    for i in range(1, 4):
        torch.testing.assert_close(out["pixel_values_videos"][i], out["pixel_values_videos"][0])

    stacked = processor(np.stack([video, video[::-1]]))  # (b, t, h, w, c)
    assert stacked["pixel_values_videos"].shape == (2, 4, 3, 12, 12)

    as_numpy = processor(video, return_tensors="np")
    assert (
        isinstance(as_numpy["pixel_values_videos"], np.ndarray) and as_numpy["pixel_values_videos"].dtype == np.float32
    )


def test_constant_colour_normalises_exactly():
    colour = np.array([10, 128, 250], dtype=np.uint8)
    video = np.broadcast_to(colour, (6, 33, 47, 3)).copy()
    out = small_processor()(video)["pixel_values_videos"]
    expected = (torch.tensor(colour / 255.0, dtype=torch.float32) - torch.tensor(OPENAI_CLIP_MEAN)) / torch.tensor(
        OPENAI_CLIP_STD
    )
    torch.testing.assert_close(out, expected.view(1, 1, 3, 1, 1).expand_as(out), rtol=0, atol=1e-5)

    custom = small_processor(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.5, 1.0])(video)["pixel_values_videos"]
    torch.testing.assert_close(
        custom[0, 0, :, 0, 0],
        (torch.tensor(colour / 255.0, dtype=torch.float32) - 0.5) / torch.tensor([0.25, 0.5, 1.0]),
    )
    raw = small_processor(do_rescale=False, do_normalize=False)(video)["pixel_values_videos"]
    torch.testing.assert_close(raw[0, 0, :, 5, 5], torch.tensor([10.0, 128.0, 250.0]), rtol=0, atol=1e-3)


def test_shortest_edge_resize_and_centre_crop_geometry():
    # (h, w) = (40, 80) with distinct columns: with nearest resampling and an exact factor of 2, resized pixel (i, j)
    # is input pixel (2i, 2j); the 20 x 20 centre crop of the 20 x 40 resize is input columns 20..59.
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(40, 80, 3), dtype=np.uint8)
    frame[:, :20] = [255, 0, 0]  # a red marker band that a correct centre crop never shows
    video = np.stack([frame] * 2)
    processor = MCGVideoProcessor(
        num_frames=2, size={"shortest_edge": 20}, crop_size={"height": 20, "width": 20}, resample=0, **RAW
    )

    resized = processor(video, do_resize=True)["pixel_values_videos"]
    assert resized.shape == (1, 2, 3, 20, 40)  # aspect ratio kept, shortest edge 20
    torch.testing.assert_close(resized[0, 0], torch.from_numpy(frame[::2, ::2]).permute(2, 0, 1).float())

    cropped = processor(video, do_resize=True, do_center_crop=True)["pixel_values_videos"]
    assert cropped.shape == (1, 2, 3, 20, 20)
    torch.testing.assert_close(cropped[0, 0], torch.from_numpy(frame[::2, 20:60:2]).permute(2, 0, 1).float())
    assert not (cropped[0, 0, 0] == 255).logical_and(cropped[0, 0, 1] == 0).all(dim=0).any()

    tall = processor(video.transpose(0, 2, 1, 3), do_resize=True)["pixel_values_videos"]
    assert tall.shape == (1, 2, 3, 40, 20)
    exact = processor(video, do_resize=True, size={"height": 16, "width": 24})["pixel_values_videos"]
    assert exact.shape == (1, 2, 3, 16, 24)


def test_antialiased_resize_keeps_a_centred_marker_centred():
    frame = np.zeros((60, 100, 3), dtype=np.uint8)
    frame[24:36, 44:56] = 255  # a white square in the exact centre
    out = small_processor(do_normalize=False, do_rescale=False)(np.stack([frame] * 3))["pixel_values_videos"][0, 0, 0]
    assert out.shape == (12, 12)
    torch.testing.assert_close(out, out.flip(0), rtol=0, atol=1e-3)  # symmetric: the crop is centred
    torch.testing.assert_close(out, out.flip(1), rtol=0, atol=1e-3)
    assert out[5:7, 5:7].min() > 200 and out[0, 0] < 1 and out.min() >= 0 and out.max() <= 255


def test_sampling_long_array_uses_the_sampling_functions():
    video = counting_video(50)
    raw = small_processor(**RAW)

    def taken(**kwargs) -> list[int]:
        return raw(video, **kwargs)["pixel_values_videos"][0, :, 0, 0, 0].long().tolist()  # frame i holds value i

    assert taken(num_frames=6) == sample_frame_indices("uniform", 6, 50)[0].tolist()

    head_tail = taken(sampling="headtail", num_frames=6, seed=0)
    assert len(set(head_tail)) == 6 and all(i < 25 for i in head_tail[:3]) and all(i >= 25 for i in head_tail[3:])
    assert taken(sampling="headtail", num_frames=6, seed=0) == head_tail

    rand = taken(sampling="rand", seed=3)
    assert rand == taken(sampling="rand", seed=3)
    assert [i * 50 // 4 <= frame < (i + 1) * 50 // 4 for i, frame in enumerate(rand)] == [True] * 4  # one per segment
    assert len({tuple(taken(sampling="rand", seed=seed)) for seed in range(5)}) > 1


def test_call_time_overrides_do_not_change_the_instance():
    processor = small_processor()
    assert processor(counting_video(20), num_frames=7)["pixel_values_videos"].shape[1] == 7
    assert processor(counting_video(20))["pixel_values_videos"].shape[1] == 4
    assert processor.sampling == "uniform" and processor.num_frames == 4


def test_short_clip_padding_modes():
    video = counting_video(3)
    masked = small_processor(num_frames=6, frame_padding="mask", **RAW)(video)
    indices, mask = sample_frame_indices("uniform", 6, 3, padding="mask")
    assert masked["pixel_values_videos"].shape == (1, 6, 3, 10, 14)
    assert masked["video_frame_mask"][0].tolist() == mask.astype(int).tolist()
    assert masked["video_frame_mask"][0].sum() == 3
    assert masked["pixel_values_videos"][0, :, 0, 0, 0].tolist() == indices.tolist()

    repeated = small_processor(num_frames=6, frame_padding="repeat", **RAW)(video)
    indices, mask = sample_frame_indices("uniform", 6, 3, padding="repeat")
    assert repeated["video_frame_mask"][0].tolist() == mask.astype(int).tolist()
    assert sorted(set(repeated["pixel_values_videos"][0, :, 0, 0, 0].tolist())) == [0, 1, 2]


def test_fps_sampling_needs_a_frame_rate_and_pads_batches(clip_path):
    processor = small_processor(sampling="fps", target_fps=2.0, min_frames=1, max_frames=32, **RAW)
    with pytest.raises(ValueError, match="frame rate"):
        processor(counting_video(40))
    out = processor([counting_video(40), counting_video(16)], video_metadata=[{"fps": 8.0}, {"fps": 8.0}])
    long_idx, _ = sample_frame_indices("fps", 4, 40, video_fps=8.0, target_fps=2.0, min_frames=1, max_frames=32)
    short_idx, _ = sample_frame_indices("fps", 4, 16, video_fps=8.0, target_fps=2.0, min_frames=1, max_frames=32)
    assert len(long_idx) > len(short_idx)
    assert out["pixel_values_videos"].shape[1] == len(long_idx)
    assert out["video_frame_mask"][1].tolist() == [1] * len(short_idx) + [0] * (len(long_idx) - len(short_idx))

    from_file = processor(clip_path)  # 24 frames at 8 fps: the rate comes from the container
    expected, _ = sample_frame_indices("fps", 4, 24, video_fps=8.0, target_fps=2.0, min_frames=1, max_frames=32)
    assert from_file["pixel_values_videos"].shape[1] == len(expected)


def test_fps_samples_frames_per_second_of_video_as_in_transformers(clip_path):
    """`fps=` is transformers' name for sampling by time: the same frames as sampling="fps" at that target_fps."""
    processor = small_processor(**RAW)
    by_fps = processor(counting_video(40), fps=2.0, video_metadata={"fps": 8.0})
    by_name = processor(counting_video(40), sampling="fps", target_fps=2.0, video_metadata={"fps": 8.0})
    torch.testing.assert_close(by_fps["pixel_values_videos"], by_name["pixel_values_videos"])
    assert by_fps["pixel_values_videos"].shape[1] == 10  # 5 s at 2 frames per second
    nested = processor([counting_video(40)], fps=2.0, video_metadata=[[{"fps": 8.0}]])  # one list per video
    torch.testing.assert_close(nested["pixel_values_videos"], by_fps["pixel_values_videos"])
    assert processor(clip_path, fps=1.0)["pixel_values_videos"].shape[1] == 3  # 24 frames at 8 fps: 3 s
    assert processor.sample_frames({"total_num_frames": 8, "fps": 4}, fps=3).tolist() == [0, 2, 3, 4, 6, 7]
    with pytest.raises(ValueError, match="frame rate"):
        processor(counting_video(40), fps=2.0)


def test_augmentation_is_consistent_within_a_clip_and_seedable():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(30, 44, 3), dtype=np.uint8)
    video = np.stack([frame] * 5)  # static content: any per-frame difference would come from the augmentation
    processor = small_processor(do_augment=True, augment_flip_prob=0.5, augment_color_jitter=0.3)

    first = processor(video, seed=0)["pixel_values_videos"]
    assert first.shape == (1, 4, 3, 12, 12)
    for t in range(1, 4):
        torch.testing.assert_close(first[0, t], first[0, 0], rtol=0, atol=0)
    torch.testing.assert_close(processor(video, seed=0)["pixel_values_videos"], first, rtol=0, atol=0)
    others = [processor(video, seed=s)["pixel_values_videos"] for s in (1, 2, 3)]
    assert all(not torch.allclose(other, first) for other in others)
    plain = small_processor()(video)["pixel_values_videos"]
    assert not torch.allclose(plain, first)

    torch.manual_seed(5)
    global_a = processor(video)["pixel_values_videos"]
    torch.manual_seed(5)
    torch.testing.assert_close(processor(video)["pixel_values_videos"], global_a)  # set_seed makes it reproducible
    two = processor([video, video], seed=0)["pixel_values_videos"]
    assert not torch.allclose(two[0], two[1])  # each clip of a batch draws its own parameters


def test_grey_and_rgba_inputs_are_converted():
    grey = np.full((4, 16, 16, 1), 77, dtype=np.uint8)
    rgba = np.concatenate([np.full((4, 16, 16, 3), 77, dtype=np.uint8), np.zeros((4, 16, 16, 1), np.uint8)], -1)
    a = small_processor()(grey)["pixel_values_videos"]
    b = small_processor()(rgba)["pixel_values_videos"]
    torch.testing.assert_close(a, b)
    channels_first = small_processor()(rgba[..., :3].transpose(0, 3, 1, 2), input_data_format="channels_first")
    torch.testing.assert_close(channels_first["pixel_values_videos"], a)
    pil_grey = small_processor()([Image.fromarray(np.full((16, 16), 77, np.uint8))] * 4)["pixel_values_videos"]
    torch.testing.assert_close(pil_grey, a)
    with pytest.raises(ValueError, match="3 colour channels"):
        small_processor(do_convert_rgb=False)(rgba)


@pytest.mark.parametrize(
    ("videos", "error", "match"),
    [
        (np.zeros((16, 16, 3), np.uint8), ValueError, r"4-d \(t, h, w, 3\)"),
        (np.zeros((2, 3, 16, 16, 3, 1), np.uint8), ValueError, "4-d"),
        (np.zeros((4, 16, 16, 2), np.uint8), ValueError, "channel axis"),
        (np.zeros((4, 16, 16, 3), np.int32), TypeError, "uint8"),
        ([], ValueError, "empty list"),
        (None, ValueError, "videos is None"),
        (42, TypeError, "Unsupported videos type"),
        (Image.new("RGB", (8, 8)), TypeError, "list of PIL images"),
        ([np.zeros((4, 8, 8, 3), np.uint8), 3], TypeError, r"videos\[1\]"),
        ("https://example.com/a.mp4", ValueError, "URLs are not supported"),
    ],
)
def test_bad_inputs_say_what_was_expected(videos, error, match):
    with pytest.raises(error, match=match):
        small_processor()(videos)


def test_frames_with_nan_or_infinite_values_are_refused_not_passed_on():
    video = np.zeros((8, 6, 6, 3), dtype=np.float32)
    video[5, 2, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"Video frames \[5\] contain NaN or infinite values"):
        small_processor(num_frames=8)(video)
    frames = [torch.zeros(6, 6, 3) for _ in range(4)]
    frames[2][0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"Video frames \[2\]"):
        small_processor(num_frames=4)(frames)
    assert torch.isfinite(small_processor(num_frames=4)(video[:4])["pixel_values_videos"]).all()


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="Unknown sampling='middle'"):
        MCGVideoProcessor(sampling="middle")
    with pytest.raises(ValueError, match="Unknown sampling"):
        small_processor()(counting_video(8), sampling="middle")
    with pytest.raises(ValueError, match="frame_padding"):
        small_processor()(counting_video(8), frame_padding="zeros")
    with pytest.raises(TypeError, match="unexpected keyword"):
        small_processor()(counting_video(8), frames=4)
    with pytest.raises(ValueError, match="pass it without sampling=, target_fps= or num_frames="):
        small_processor()(counting_video(8), fps=2, num_frames=4, video_metadata={"fps": 8.0})
    with pytest.raises(ValueError, match="pass it without sampling="):
        small_processor()(counting_video(8), fps=2, sampling="rand", video_metadata={"fps": 8.0})
    with pytest.raises(ValueError, match="fps must be a positive, finite number"):
        small_processor()(counting_video(8), fps=0, video_metadata={"fps": 8.0})
    with pytest.raises(ValueError, match="resample"):
        small_processor(resample=1)


def test_undecodable_file_raises_video_decode_error_naming_it(tmp_path):
    broken = tmp_path / "broken_clip.mp4"
    broken.write_bytes(b"this is not a video" * 50)
    with pytest.raises(VideoDecodeError, match="broken_clip.mp4"):
        small_processor()(str(broken))
    with pytest.raises(VideoDecodeError):
        small_processor()(str(tmp_path / "missing.mp4"))


def test_metadata_is_returned_on_request(clip_path):
    out = small_processor()([clip_path, counting_video(9)], return_metadata=True)
    file_meta, array_meta = out["video_metadata"]
    assert file_meta.total_num_frames == 24 and file_meta.fps == pytest.approx(8.0)
    assert file_meta.frames_indices == sample_frame_indices("uniform", 4, 24)[0].tolist()
    assert array_meta.total_num_frames == 9 and array_meta.video_backend == "array"


def test_save_and_load_round_trip(tmp_path):
    processor = MCGVideoProcessor(
        num_frames=5,
        sampling="headtail",
        frame_padding="mask",
        size={"shortest_edge": 18},
        crop_size={"height": 14, "width": 16},
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.2, 0.3, 0.4],
        resample=2,
    )
    processor.save_pretrained(tmp_path)
    reloaded = MCGVideoProcessor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == processor.to_dict()
    assert reloaded.sampling == "headtail" and reloaded.frame_padding == "mask" and reloaded.num_frames == 5
    video = np.random.default_rng(0).integers(0, 256, size=(3, 20, 30, 3), dtype=np.uint8)
    expected = processor(video)
    actual = reloaded(video)
    assert actual["pixel_values_videos"].shape == (1, 5, 3, 14, 16)
    torch.testing.assert_close(actual["pixel_values_videos"], expected["pixel_values_videos"], rtol=0, atol=0)
    assert torch.equal(actual["video_frame_mask"], expected["video_frame_mask"])


def test_base_class_hooks_use_mcg_sampling_and_pyav(clip_path):
    """`sample_frames` / `fetch_videos` are what transformers' generic code calls; they must not need torchcodec."""
    processor = small_processor()
    indices = processor.sample_frames({"total_num_frames": 24, "fps": 8.0}, num_frames=5)
    assert indices.tolist() == sample_frame_indices("uniform", 5, 24)[0].tolist()
    assert processor.sample_frames({"total_num_frames": 24, "fps": 8.0}, sampling="fps", target_fps=1.0).tolist() == (
        sample_frame_indices("fps", None, 24, video_fps=8.0, target_fps=1.0, max_frames=64)[0].tolist()
    )

    frames, metadata = processor.fetch_videos(clip_path, sample_indices_fn=lambda metadata: np.array([1, 5, 20]))
    assert np.array_equal(frames, np.stack(reference_frames(clip_path))[[1, 5, 20]])
    assert metadata.frames_indices == [1, 5, 20] and metadata.total_num_frames == 24
    all_frames, _ = processor.fetch_videos([clip_path])
    assert all_frames[0].shape == (24, 30, 40, 3)


_PEAK_MEMORY_CHILD = """
import sys
from modeling_mcg.video_processing_mcg import MCGVideoProcessor


def status(field):  # bytes, from the kernel's per-process accounting
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field))


processor = MCGVideoProcessor(num_frames=8)
processor(sys.argv[2])  # load the codecs and torch kernels on a small clip
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS:")
out = processor(sys.argv[1])["pixel_values_videos"]
print(tuple(out.shape), status("VmHWM:") - before)
"""


def test_peak_memory_of_a_large_frame_clip_is_the_output_plus_a_few_source_frames(tmp_path, clip_path):
    """A 2-frame 3840x2160 clip sampled to 8 frames: the 6 padding repeats and the float conversion used to happen at
    source resolution (over 1 GB here); now each frame is resized as it is decoded."""
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident memory")
    import subprocess
    import sys

    path = write_video(tmp_path / "uhd.mp4", num_frames=2, width=3840, height=2160, options={"preset": "ultrafast"})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_MEMORY_CHILD, str(path), clip_path], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    shape, peak_growth = result.stdout.split(") ")
    assert shape + ")" == "(1, 8, 3, 224, 224)"
    source_frame = 3840 * 2160 * 3  # one RGB frame at source size: 24.9 MB
    assert int(peak_growth) < 6 * source_frame, f"peak RSS grew by {int(peak_growth) / 2**20:.0f} MiB"


def test_phone_videos_come_upright_unless_the_coded_orientation_is_asked_for(tmp_path):
    path = str(write_video(tmp_path / "portrait.mp4", num_frames=24, width=40, height=30, rotation=90))
    upright = np.stack([np.rot90(frame, -1) for frame in reference_frames(path)])  # (24, 40, 30, 3)
    raw = small_processor(**RAW)(path, return_metadata=True)
    assert raw["pixel_values_videos"].shape == (1, 4, 3, 40, 30)
    assert (raw["video_metadata"][0].height, raw["video_metadata"][0].width) == (40, 30)
    indices, _ = sample_frame_indices("uniform", 4, 24)
    expected = torch.from_numpy(upright[indices]).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(raw["pixel_values_videos"][0], expected, rtol=0, atol=0)
    assert small_processor(**RAW)(path, autorotate=False)["pixel_values_videos"].shape == (1, 4, 3, 30, 40)
    # resized and cropped frame by frame while decoding: the same pixels as the upright frames given as an array
    fitted_file = small_processor()(path)["pixel_values_videos"]
    torch.testing.assert_close(fitted_file, small_processor()(upright)["pixel_values_videos"], rtol=0, atol=0)


def test_still_images_need_allow_images(tmp_path):
    image_path = tmp_path / "photo.mp4"  # a PNG, whatever its name says
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(image_path, format="PNG")
    with pytest.raises(VideoDecodeError, match=r"photo.mp4.*still image.*allow_images=True"):
        small_processor()(str(image_path))
    out = small_processor(**RAW)(str(image_path), allow_images=True)
    assert out["pixel_values_videos"].shape == (1, 4, 3, 30, 40) and out["video_frame_mask"].tolist() == [[1] * 4]
    assert bool((out["pixel_values_videos"] == 90).all())


def test_decoded_frames_reach_the_processor_at_output_size_as_uint8(clip_path, monkeypatch):
    """The per-frame cost above decoding: each frame is resized and cropped in uint8 as it leaves the decoder, and
    becomes float only at the output size."""
    from modeling_mcg import video_processing_mcg

    seen = []
    original = video_processing_mcg.decode_video

    def recording_decode_video(*args, **kwargs):
        frames, info, positions = original(*args, **kwargs)
        seen.append((frames.shape, frames.dtype))
        return frames, info, positions

    monkeypatch.setattr(video_processing_mcg, "decode_video", recording_decode_video)
    out = small_processor(num_frames=6)(clip_path)["pixel_values_videos"]
    assert out.shape == (1, 6, 3, 12, 12)
    assert seen == [((6, 12, 12, 3), np.uint8)]


def test_normalising_a_float_video_leaves_the_callers_tensor_untouched():
    processor = small_processor(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.3, 0.4])
    video = torch.rand(4, 3, 9, 11) * 255
    before = video.clone()
    out = processor.rescale_and_normalize(video, True, 1 / 255, True, processor.image_mean, processor.image_std)
    assert torch.equal(video, before)
    expected = (before / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.3, 0.4]).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    uint8 = before.to(torch.uint8)
    assert processor.rescale_and_normalize(uint8, True, 1 / 255, True, [0.5] * 3, [0.5] * 3).dtype == torch.float32
