"""video_io: exact sparse reads equal a plain sequential decode, in every container we write; clear errors."""

import fractions
import io
import os
import shutil
import threading
import time

import av
import numpy as np
import pytest
from video_factory import (
    frame_pattern,
    pattern_index,
    reference_frames,
    reference_keyframes,
    write_audio,
    write_frame_folder,
    write_video,
)

from modeling_mcg import video_io
from modeling_mcg.frame_sampling import sample_uniform
from modeling_mcg.video_io import VideoDecodeError, VideoInfo, decode_video, probe_video, read_frames

SPARSE_GOP = {"x264-params": "keyint=50:min-keyint=50:scenecut=0"}
VFR_PTS = [i * 40 + (i % 3) * 13 + (i // 7) * 50 for i in range(30)]  # irregular gaps, in milliseconds
MS = fractions.Fraction(1, 1000)
AVI_GAPS = [0, 1, 2, 5, 6, 9, 10, 11, 15, 16, 17, 18, 25, 26, 27, 30]

# name -> write_video keyword arguments; every file the readers must handle exactly
VIDEOS = {
    "h264.mp4": dict(num_frames=60, options={"g": "10"}),
    "h264_audio.mkv": dict(num_frames=40, options={"g": "10"}, with_audio=True),
    "vp9.webm": dict(num_frames=40, codec="libvpx-vp9", options={"g": "10"}),
    "mpeg4.avi": dict(num_frames=40, codec="mpeg4", options={"g": "10"}),
    # gaps in the timestamps: the AVI index announces 31 frames (stream.frames) for 16 real ones
    "vfr.avi": dict(num_frames=16, codec="mpeg4", pts=AVI_GAPS, options={"g": "5"}),
    "mjpeg.mov": dict(num_frames=20, codec="mjpeg", pix_fmt="yuvj422p"),
    "anim.gif": dict(num_frames=20, codec="gif", pix_fmt="rgb8"),
    "odd_33x17.mkv": dict(num_frames=12, width=33, height=17, pix_fmt="yuv444p"),
    "one_frame.mp4": dict(num_frames=1),
    "vfr.mkv": dict(num_frames=30, pts=VFR_PTS, time_base=MS, options={"g": "8"}),
    "vfr.mp4": dict(num_frames=30, pts=VFR_PTS, time_base=MS, options={"g": "8"}),
    "first_pts_1000.mp4": dict(num_frames=30, pts=[1000 + i for i in range(30)], options={"g": "8"}),
    "first_pts_1000.mkv": dict(num_frames=30, pts=[1000 + i for i in range(30)], options={"g": "8"}),
    "sparse_keyframes.mp4": dict(num_frames=300, width=96, height=64, options=SPARSE_GOP),
    "sparse_keyframes.mkv": dict(num_frames=300, width=96, height=64, options=SPARSE_GOP),
    "raw_stream.h264": dict(num_frames=30, options={"g": "10"}),
    "yuv410p.avi": dict(num_frames=10, codec="rawvideo", pix_fmt="yuv410p"),
    "hevc_10bit.mkv": dict(
        num_frames=10, codec="libx265", pix_fmt="yuv420p10le", options={"x265-params": "log-level=none"}
    ),
    "gray.avi": dict(num_frames=10, codec="ffv1", pix_fmt="gray"),
}
NOT_SEEKABLE = {
    "mpeg4.avi",
    "vfr.avi",
    "anim.gif",
    "raw_stream.h264",
    "yuv410p.avi",
    "gray.avi",
}  # decoded sequentially


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {name: str(write_video(folder / name, **kwargs)) for name, kwargs in VIDEOS.items()}


@pytest.fixture(scope="module")
def references(videos):
    return {name: reference_frames(path) for name, path in videos.items()}


@pytest.fixture(params=["kept packets", "reopened file"])
def packet_source(request, monkeypatch):
    """Run a test on both decoding paths. Every test video is small enough to decode from the packets kept by the
    index pass; a zero budget forces the path of large files, which reopen the file and seek in the container."""
    if request.param == "reopened file":
        monkeypatch.setattr(video_io, "_MAX_KEPT_PACKET_BYTES", 0)
    return request.param


def _index_sets(total: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    sets = [[0], [total - 1], list(range(total)), [int((k + 0.5) * total / 8) for k in range(8)]]
    sets.append(sorted(rng.integers(0, total, size=min(12, 2 * total)).tolist()))  # with duplicates
    sets.append(sorted(rng.choice(total, size=min(5, total), replace=False).tolist()))
    return sets


@pytest.mark.usefixtures("packet_source")
@pytest.mark.parametrize("name", list(VIDEOS))
def test_sparse_reads_equal_sequential_decode(name, videos, references):
    reference = references[name]
    assert len(reference) == VIDEOS[name]["num_frames"]
    info = probe_video(videos[name])
    assert info.num_frames == len(reference)
    assert (info.height, info.width) == reference[0].shape[:2]
    for seed, indices in enumerate(_index_sets(len(reference), seed=len(name))):
        frames = read_frames(videos[name], indices)
        assert frames.shape == (len(indices), *reference[0].shape) and frames.dtype == np.uint8
        for got, index in zip(frames, indices):
            np.testing.assert_array_equal(got, reference[index], err_msg=f"{name}: frame {index} (set {seed})")


@pytest.mark.parametrize("name", list(VIDEOS))
def test_seekable_containers_seek_without_falling_back(name, videos, references, packet_source):
    reader = video_io._Reader(video_io._Source(videos[name]))
    try:
        assert reader.index.seekable == (name not in NOT_SEEKABLE)
        assert (reader.index.packets is not None) == (packet_source == "kept packets")
        for indices in _index_sets(len(references[name]), seed=1):
            wanted = np.unique(indices)
            frames, _, _ = reader.read(wanted, approximate=False)
            assert reader.stats["method"] == ("sequential" if name in NOT_SEEKABLE else "seek")
            np.testing.assert_array_equal(frames, np.stack([references[name][i] for i in wanted]))
    finally:
        reader.close()


@pytest.mark.parametrize("name", list(VIDEOS))
def test_small_files_decode_the_kept_packets_without_reopening(name, videos, references, monkeypatch):
    """Short clips decode in a few ms; opening and demuxing one a second time cost up to 15% of a full decode."""
    opened = []
    open_source = video_io._Source.open
    monkeypatch.setattr(video_io._Source, "open", lambda source: opened.append(source.name) or open_source(source))
    reference = references[name]
    reader = video_io._Reader(video_io._Source(videos[name]))
    try:
        assert reader.index.packets is not None
        wanted = np.unique(_index_sets(len(reference), seed=2)[3])  # the 8 uniform segment centres
        for approximate in (True, False):  # the approximate read must not leave the decoder skipping frames
            frames, positions, _ = reader.read(wanted, approximate)
            np.testing.assert_array_equal(frames, np.stack([reference[i] for i in positions]))
        assert reader.stats["method"] == ("sequential" if name in NOT_SEEKABLE else "seek")
    finally:
        reader.close()
    assert opened == [videos[name]]


@pytest.mark.parametrize("name", [name for name in VIDEOS if name != "gray.avi"])
def test_test_videos_show_their_frame_index(name, references):
    # Sanity check of the fixture itself: every decoded frame is distinct, so a wrong frame cannot pass.
    assert [pattern_index(frame) for frame in references[name]] == list(range(len(references[name])))


def test_gray_and_high_bit_depth_become_rgb(videos, references):
    gray = read_frames(videos["gray.avi"], [3])[0]
    assert gray.shape == (48, 64, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_array_equal(gray, references["gray.avi"][3])
    ten_bit = read_frames(videos["hevc_10bit.mkv"], [4])
    assert ten_bit.dtype == np.uint8 and pattern_index(ten_bit[0]) == 4


@pytest.mark.usefixtures("packet_source")
@pytest.mark.parametrize("name", ["sparse_keyframes.mp4", "sparse_keyframes.mkv"])
def test_seeking_decodes_only_what_the_samples_need(name, videos, references):
    reader = video_io._Reader(video_io._Source(videos[name]))
    try:
        assert reader.index.seekable and reader.index.keyframes.tolist() == [0, 50, 100, 150, 200, 250]
        targets = np.array([10, 60, 120, 260, 299])
        frames, positions, _ = reader.read(targets, approximate=False)
        assert reader.stats["method"] == "seek"
        # 0..10, seek 50..60, seek 100..120, seek 250..260, then on to 299 without a seek
        assert reader.stats["seeks"] == 3
        # Decoding every frame from each keyframe would output 11 + 11 + 21 + 11 + 39 = 93 frames; non-reference
        # B-frames between targets are skipped, so fewer come out.
        assert reader.stats["frames_decoded"] < 93
        for got, index in zip(frames, targets):
            np.testing.assert_array_equal(got, references[name][index])

        # one seek to 50; 57 and 99 are ahead of the decoder, and at 99 the decoder is already at keyframe 100
        frames, _, _ = reader.read(np.array([55, 57, 99, 101]), approximate=False)
        assert reader.stats["seeks"] == 1 and reader.stats["frames_decoded"] < 52
        for got, index in zip(frames, [55, 57, 99, 101]):
            np.testing.assert_array_equal(got, references[name][index])
    finally:
        reader.close()


def test_uniform_eight_frames_decode_far_less_than_everything(videos, references):
    reader = video_io._Reader(video_io._Source(videos["sparse_keyframes.mp4"]))
    try:
        targets = np.array([int((k + 0.5) * 300 / 8) for k in range(8)])
        frames, _, _ = reader.read(targets, approximate=False)
        assert reader.stats["frames_decoded"] < 200
        np.testing.assert_array_equal(frames, np.stack([references["sparse_keyframes.mp4"][i] for i in targets]))
    finally:
        reader.close()


def test_unindexed_containers_decode_sequentially(videos, references):
    for name in ("mpeg4.avi", "raw_stream.h264", "anim.gif"):
        reader = video_io._Reader(video_io._Source(videos[name]))
        try:
            assert not reader.index.seekable
            frames, _, count = reader.read(np.array([2, 7]), approximate=False)
            assert reader.stats["method"] == "sequential" and count == len(references[name])
            np.testing.assert_array_equal(frames, np.stack([references[name][2], references[name][7]]))
        finally:
            reader.close()


@pytest.mark.usefixtures("packet_source")
def test_index_disagreeing_with_decoder_falls_back_to_sequential(videos, references):
    reader = video_io._Reader(video_io._Source(videos["sparse_keyframes.mp4"]))
    try:
        reader.read(np.array([120]), approximate=True)  # leaves the decoder skipping non-keyframes
        reader.index.sorted_pts = reader.index.sorted_pts + 1  # no decoded pts matches the index any more
        frames, _, _ = reader.read(np.array([120, 260]), approximate=False)
        assert reader.stats["method"] == "sequential-fallback"
        np.testing.assert_array_equal(frames, np.stack([references["sparse_keyframes.mp4"][i] for i in (120, 260)]))
    finally:
        reader.close()


@pytest.mark.usefixtures("packet_source")
@pytest.mark.parametrize("name", ["sparse_keyframes.mp4", "sparse_keyframes.mkv", "vp9.webm", "mjpeg.mov"])
def test_approximate_returns_the_keyframe_at_or_before_each_target(name, videos, references):
    reference = references[name]
    is_key = reference_keyframes(videos[name])
    targets = [3, len(reference) // 3, len(reference) // 3 + 1, len(reference) - 1]
    frames, info, positions = decode_video(videos[name], lambda info: targets, approximate=True)
    for got, target, position in zip(frames, targets, positions):
        assert position <= target and is_key[position]
        assert not any(is_key[position + 1 : target + 1]), "must be the nearest keyframe before the target"
        np.testing.assert_array_equal(got, reference[position])
    # unindexed files ignore the hint and stay exact
    frames, _, positions = decode_video(videos["mpeg4.avi"], lambda info: [5, 30], approximate=True)
    assert positions.tolist() == [5, 30]
    np.testing.assert_array_equal(frames[1], references["mpeg4.avi"][30])


@pytest.mark.usefixtures("packet_source")
def test_approximate_decodes_one_keyframe_per_target(videos):
    reader = video_io._Reader(video_io._Source(videos["sparse_keyframes.mp4"]))
    try:
        _, positions, _ = reader.read(np.array([10, 60, 120, 260, 299]), approximate=True)
        assert positions.tolist() == [0, 50, 100, 250, 250]
        assert reader.stats["frames_decoded"] <= 5
    finally:
        reader.close()


def test_decode_video_passes_info_and_keeps_request_order(videos, references):
    seen = []

    def pick(info):
        seen.append(info)
        return [info.num_frames - 1, 0, 20, 20]

    frames, info, indices = decode_video(videos["h264_audio.mkv"], pick)
    assert isinstance(seen[0], VideoInfo) and seen[0].num_frames == 40
    assert info.fps == 8.0 and info.duration == pytest.approx(5.0) and info.codec == "h264"
    assert info.container == "matroska,webm" and (info.width, info.height) == (64, 48)
    assert indices.dtype == np.int64 and indices.tolist() == [39, 0, 20, 20]
    for got, index in zip(frames, indices):
        np.testing.assert_array_equal(got, references["h264_audio.mkv"][index])
    everything, _, all_indices = decode_video(videos["h264_audio.mkv"])
    assert all_indices.tolist() == list(range(40))
    np.testing.assert_array_equal(everything, np.stack(references["h264_audio.mkv"]))


def test_vfr_and_offset_metadata(videos):
    vfr = probe_video(videos["vfr.mkv"])
    assert vfr.num_frames == 30 and vfr.duration == pytest.approx((VFR_PTS[-1] - VFR_PTS[0]) / 1000, abs=0.2)
    offset = probe_video(videos["first_pts_1000.mp4"])
    assert offset.num_frames == 30 and offset.duration == pytest.approx(30 / 8)
    with av.open(videos["vfr.avi"]) as container:  # the metadata we must not trust
        assert container.streams.video[0].frames == 31
    with av.open(videos["vp9.webm"]) as container:
        assert container.streams.video[0].frames == 0
    assert probe_video(videos["vfr.avi"]).num_frames == 16
    assert probe_video(videos["vp9.webm"]).num_frames == 40


def test_bytes_and_file_objects(videos, references):
    path = videos["sparse_keyframes.mp4"]
    indices = [7, 150, 299]
    expected = np.stack([references["sparse_keyframes.mp4"][i] for i in indices])
    with open(path, "rb") as handle:
        data = handle.read()
    np.testing.assert_array_equal(read_frames(data, indices), expected)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(read_frames(handle, indices), expected)
    stream = io.BytesIO(b"junk" + data)
    stream.seek(4)  # reading starts where the file object stands
    np.testing.assert_array_equal(read_frames(stream, indices), expected)

    class Pipe(io.RawIOBase):  # a non-seekable stream such as a socket or stdin
        def __init__(self, payload):
            self._payload = io.BytesIO(payload)

        def readable(self):
            return True

        def readinto(self, buffer):
            return self._payload.readinto(buffer)

    np.testing.assert_array_equal(read_frames(Pipe(data), indices), expected)
    assert probe_video(data).num_frames == 300
    with pytest.raises(VideoDecodeError, match="<bytes>"):
        read_frames(data[: len(data) // 3], [0])


def test_frame_folder(tmp_path):
    folder = write_frame_folder(tmp_path / "frames", num_frames=12, width=40, height=30)
    info = probe_video(folder)
    assert info == VideoInfo(
        num_frames=12, fps=None, width=40, height=30, duration=None, codec="png", container="image-folder"
    )
    frames, _, indices = decode_video(folder, lambda info: [0, 5, 11])
    assert [pattern_index(frame) for frame in frames] == [0, 5, 11]
    np.testing.assert_array_equal(frames[1], frame_pattern(5, 30, 40))  # PNG is lossless

    # natural sort: frame_2 before frame_10, non-image files ignored
    natural = tmp_path / "natural"
    natural.mkdir()
    for number in (10, 2, 1):
        shutil.copy(os.path.join(folder, f"{number:05d}.png"), natural / f"frame_{number}.png")
    (natural / "notes.txt").write_text("not a frame")
    assert [pattern_index(frame) for frame in read_frames(natural, [0, 1, 2])] == [0, 1, 9]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoDecodeError, match="no frame images"):
        probe_video(empty)
    from PIL import Image

    Image.fromarray(frame_pattern(0, 20, 20)).save(natural / "frame_3.png")
    with pytest.raises(VideoDecodeError, match="frame_3.png is 20x20"):
        read_frames(natural, [0, 1, 2, 3])


def _broken_files(folder, videos) -> dict[str, str]:
    with open(videos["sparse_keyframes.mp4"], "rb") as handle:
        mp4 = handle.read()
    with open(videos["sparse_keyframes.mkv"], "rb") as handle:
        mkv = handle.read()
    files = {
        "zero_bytes.mp4": b"",
        "truncated.mp4": mp4[: len(mp4) // 2],  # the moov index is at the end: unreadable
        "truncated.mkv": mkv[: len(mkv) // 2],  # matroska demuxes a cut file quietly
        "random_bytes.mp4": np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        "notes.txt": b"this is a text file, not a video\n" * 40,
    }
    paths = {}
    for name, payload in files.items():
        paths[name] = os.path.join(folder, name)
        with open(paths[name], "wb") as handle:
            handle.write(payload)
    paths["audio_only.m4a"] = write_audio(os.path.join(folder, "audio_only.m4a"))
    paths["missing.mp4"] = os.path.join(folder, "missing.mp4")
    return paths


@pytest.fixture(scope="module")
def broken(tmp_path_factory, videos):
    return _broken_files(tmp_path_factory.mktemp("broken"), videos)


REASONS = {
    "zero_bytes.mp4": "empty",
    "truncated.mp4": "cannot open",
    "truncated.mkv": "truncated",
    "random_bytes.mp4": "cannot open",
    "notes.txt": "text file",
    "audio_only.m4a": r"no video stream \(streams found: audio \(aac\)\)",
    "missing.mp4": "no such file",
}


@pytest.mark.parametrize("name", list(REASONS))
@pytest.mark.parametrize("call", ["probe_video", "read_frames", "decode_video"])
def test_broken_files_raise_a_clear_error_quickly(name, call, broken):
    path = broken[name]
    run = {
        "probe_video": lambda: probe_video(path),
        "read_frames": lambda: read_frames(path, [0, 1]),
        "decode_video": lambda: decode_video(path),
    }[call]
    start = time.perf_counter()
    with pytest.raises(VideoDecodeError, match=REASONS[name]) as caught:
        run()
    assert path in str(caught.value)
    assert time.perf_counter() - start < 5.0
    assert isinstance(caught.value, ValueError)


def test_truncated_faststart_mp4_raises(tmp_path):
    # With the index at the front, the cut shows up as an incomplete packet rather than a failed open.
    path = str(tmp_path / "faststart.mp4")
    container = av.open(path, mode="w", options={"movflags": "faststart"})
    stream = container.add_stream("libx264", rate=8, options=SPARSE_GOP)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for i in range(120):
        frame = av.VideoFrame.from_ndarray(frame_pattern(i, 48, 64), format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    assert probe_video(path).num_frames == 120
    with open(path, "rb") as handle:
        data = handle.read()
    cut = str(tmp_path / "faststart_cut.mp4")
    with open(cut, "wb") as handle:
        handle.write(data[: int(len(data) * 0.8)])
    with pytest.raises(VideoDecodeError, match="faststart_cut.mp4.*truncated or corrupt"):
        read_frames(cut, [0])


def test_bad_indices(videos):
    path = videos["h264.mp4"]
    with pytest.raises(VideoDecodeError, match=r"frame 60 was requested.*has 60 frames"):
        read_frames(path, [0, 60])
    with pytest.raises(ValueError, match="negative"):
        read_frames(path, [-1])
    with pytest.raises(ValueError, match="1-D"):
        read_frames(path, [[0, 1]])
    with pytest.raises(ValueError, match="integer"):
        read_frames(path, [0.5])
    with pytest.raises(VideoDecodeError, match=r"sample_indices_fn.*60 frames"):
        decode_video(path, lambda info: [info.num_frames])
    # an unindexed file finds out while decoding
    with pytest.raises(VideoDecodeError, match=r"frame 45 was requested.*only 40 frames"):
        read_frames(videos["mpeg4.avi"], [1, 45])
    assert read_frames(path, []).shape == (0, 48, 64, 3)


def test_wrong_source_types():
    with pytest.raises(TypeError, match="path, a frame folder, bytes or a binary file object"):
        probe_video(12)
    with pytest.raises(TypeError, match="mode 'rb'"):
        probe_video(io.StringIO("text"))


def test_frame_threads_for_large_frames_and_slice_threads_below(tmp_path):
    path = write_video(tmp_path / "hd.mp4", num_frames=6, width=1280, height=720, options={"preset": "ultrafast"})
    reference = reference_frames(path)
    reader = video_io._Reader(video_io._Source(str(path)))
    try:
        frames, _, _ = reader.read(np.array([1, 5]), approximate=False)
        assert reader.stream.codec_context.thread_count != 1 and "AUTO" in str(reader.stream.thread_type)
        np.testing.assert_array_equal(frames[1], reference[5])
    finally:
        reader.close()
    small = video_io._Reader(video_io._Source(str(write_video(tmp_path / "small.mp4", num_frames=6))))
    try:
        small.read(np.array([1]), approximate=False)
        assert small.stream.codec_context.thread_count != 1 and str(small.stream.thread_type).endswith("SLICE")
    finally:
        small.close()


def _decode_in_child(path, queue):
    frames, _, _ = decode_video(path, lambda info: np.arange(info.num_frames))
    queue.put(frames.shape)


def test_decoding_works_in_a_process_forked_after_the_parent_decoded(tmp_path):
    """DataLoader workers are forked from a process that may have decoded already (e.g. a first evaluation batch);
    a converter state inherited through the fork must not hang the child."""
    import multiprocessing

    path = write_video(tmp_path / "clip.mp4", num_frames=6, width=48, height=32)
    expected = decode_video(path, lambda info: np.arange(info.num_frames))[0].shape
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_decode_in_child, args=(path, queue))
    child.start()
    child.join(timeout=60)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung, "decoding hung in a forked child"
    assert child.exitcode == 0 and queue.get(timeout=5) == expected


# ---------------------------------------------------------------------------------------------------- AV1

AV1_ENCODERS = {"libsvtav1": {"preset": "12"}, "libaom-av1": {"cpu-used": "8"}, "librav1e": {"speed": "10"}}


@pytest.fixture(scope="module")
def av1_clip(tmp_path_factory):
    """30 frames of AV1 with hierarchical mini-GOPs: a third of the frames are never referenced."""
    encoder = next((name for name in AV1_ENCODERS if name in av.codecs_available), None)
    if encoder is None or not {"libdav1d", "av1"} & set(av.codecs_available):
        pytest.skip(f"the FFmpeg bundled with PyAV {av.__version__} has no AV1 encoder or decoder")
    path = tmp_path_factory.mktemp("av1") / "clip_av1.mp4"
    return str(write_video(path, num_frames=30, fps=25, codec=encoder, options=AV1_ENCODERS[encoder]))


@pytest.mark.usefixtures("packet_source")
def test_av1_sparse_reads_are_exact_and_count_every_frame(av1_clip):
    """libdav1d reads skip_frame only when it opens: opened while skipping non-reference frames, it returned 16
    frames of 30 and labelled frame 2 as frame 1."""
    reference = reference_frames(av1_clip)
    assert len(reference) == 30
    frames, info, positions = decode_video(av1_clip, lambda info: sample_uniform(8, info.num_frames))
    assert info.num_frames == 30 and info.duration == pytest.approx(1.2)
    assert positions.tolist() == sample_uniform(8, 30).tolist() == [1, 5, 9, 13, 16, 20, 24, 28]
    for got, index in zip(frames, positions):
        np.testing.assert_array_equal(got, reference[index], err_msg=f"frame {index}")
    for indices in _index_sets(30, seed=3):
        np.testing.assert_array_equal(read_frames(av1_clip, indices), np.stack([reference[i] for i in indices]))
    assert probe_video(av1_clip).num_frames == 30


@pytest.mark.usefixtures("packet_source")
def test_a_decoder_that_drops_frames_raises_instead_of_shifting_positions(av1_clip, monkeypatch):
    def open_skipping(stream, height):  # what PyAV did when the first packet sent set skip_frame=NONREF
        stream.codec_context.skip_frame = "NONREF"
        stream.codec_context.open()

    monkeypatch.setattr(video_io, "_open_decoder", open_skipping)
    with pytest.raises(VideoDecodeError, match=r"clip_av1.mp4.*packet index.*dropped") as caught:
        decode_video(av1_clip, lambda info: sample_uniform(8, info.num_frames))
    assert isinstance(caught.value, ValueError)


# ---------------------------------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("degrees", [90, 180, 270])
@pytest.mark.parametrize("extension", ["mp4", "mkv"])
def test_display_matrix_rotation_is_applied_and_reported(degrees, extension, tmp_path, packet_source):
    path = str(write_video(tmp_path / f"phone.{extension}", num_frames=12, width=64, height=48, rotation=degrees))
    coded = reference_frames(path)  # a plain decode keeps the coded orientation
    upright = [np.rot90(frame, -degrees // 90) for frame in coded]  # negative: clockwise
    info = probe_video(path)
    assert info.rotation == degrees
    assert (info.height, info.width) == upright[0].shape[:2] == ((64, 48) if degrees % 180 else (48, 64))
    frames, decoded_info, _ = decode_video(path, lambda info: [0, 5, 11])
    assert decoded_info.rotation == degrees and frames.shape == (3, *upright[0].shape)
    for got, index in zip(frames, [0, 5, 11]):
        np.testing.assert_array_equal(got, upright[index])

    kept = read_frames(path, [5], autorotate=False)
    np.testing.assert_array_equal(kept[0], coded[5])
    coded_info = probe_video(path, autorotate=False)
    assert coded_info.rotation == degrees and (coded_info.height, coded_info.width) == (48, 64)


def test_unrotated_video_reports_rotation_zero(videos):
    assert probe_video(videos["h264.mp4"]).rotation == 0


# ---------------------------------------------------------------------------------------------------- not videos


@pytest.fixture(scope="module")
def still_images(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("stills")
    image = Image.fromarray(frame_pattern(3, 48, 64))
    paths = {}
    for name, image_format in [("photo.png", "PNG"), ("photo.jpg", "JPEG"), ("png_named.mp4", "PNG")]:
        paths[name] = str(folder / name)
        image.save(paths[name], format=image_format)
    return paths


@pytest.mark.parametrize("name", ["photo.png", "photo.jpg", "png_named.mp4"])
@pytest.mark.parametrize("call", ["probe_video", "read_frames", "decode_video"])
def test_still_images_are_not_videos_unless_asked(name, call, still_images):
    path = still_images[name]
    run = {
        "probe_video": lambda **kw: probe_video(path, **kw),
        "read_frames": lambda **kw: read_frames(path, [0], **kw),
        "decode_video": lambda **kw: decode_video(path, lambda info: [0] * 8, **kw)[0],
    }[call]
    with pytest.raises(VideoDecodeError, match=r"still image.*allow_images=True") as caught:
        run()
    assert path in str(caught.value)
    allowed = run(allow_images=True)
    if call == "probe_video":
        assert allowed.num_frames == 1 and (allowed.width, allowed.height) == (64, 48)
    else:
        assert allowed.shape[1:] == (48, 64, 3) and pattern_index(allowed[0]) == 3


def test_animated_gif_is_still_a_video(videos):
    assert probe_video(videos["anim.gif"]).num_frames == 20


def _returns_within(function, seconds: float):
    """Run `function` in a daemon thread; (finished, raised exception). A blocked open() cannot hang the suite."""
    outcome = {}

    def target():
        try:
            function()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), outcome.get("error")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="the platform has no named pipes")
@pytest.mark.parametrize("call", ["probe_video", "read_frames", "decode_video"])
def test_a_fifo_is_named_and_never_blocks(call, tmp_path):
    fifo = str(tmp_path / "stream.mp4")
    os.mkfifo(fifo)  # no writer: opening it for reading would block forever
    run = {"probe_video": probe_video, "read_frames": lambda p: read_frames(p, [0]), "decode_video": decode_video}
    finished, error = _returns_within(lambda: run[call](fifo), seconds=10)
    assert finished, "reading a FIFO blocked"
    assert isinstance(error, VideoDecodeError) and fifo in str(error) and "named pipe (FIFO)" in str(error)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="the platform has no /dev/zero")
def test_a_device_is_named_as_one():
    finished, error = _returns_within(lambda: probe_video("/dev/zero"), seconds=10)
    assert finished and isinstance(error, VideoDecodeError)
    assert "/dev/zero" in str(error) and "character device" in str(error)


def test_a_directory_without_frames_says_it_is_a_directory(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(VideoDecodeError, match=r"empty_dir: it is a directory.*no frame images"):
        decode_video(str(tmp_path / "empty_dir"))
