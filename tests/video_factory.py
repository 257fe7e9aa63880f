"""Write small test videos with PyAV, so tests never depend on downloaded media.

Every frame carries its own index: a 3x3 grid of cells whose red channel spells the index in binary (one bit per
cell, so 512 distinct frames), a green level that steps with the index and a blue square that moves. A test that
gets the wrong frame therefore sees different pixels, and `pattern_index(frame)` reads the index back even after
lossy compression.

    from video_factory import write_video, reference_frames

    path = write_video(tmp_path / "clip.mp4", num_frames=30, codec="libx264", options={"g": "10"})
    frames = reference_frames(path)  # plain sequential decode, the ground truth for exact sampling

The functions are plain helpers (no pytest fixtures) so tests, benchmarks and other test modules can share them.
"""

from __future__ import annotations

import fractions
import io
import os
from collections.abc import Sequence

import av
import numpy as np

GRID = 3  # cells per side; GRID * GRID bits encode the frame index
MAX_PATTERN_FRAMES = 2 ** (GRID * GRID)


def frame_pattern(index: int, height: int, width: int) -> np.ndarray:
    """Return the (height, width, 3) uint8 RGB frame that encodes `index`."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    bits = index % MAX_PATTERN_FRAMES
    for cell in range(GRID * GRID):
        row, col = divmod(cell, GRID)
        y0, y1 = row * height // GRID, (row + 1) * height // GRID
        x0, x1 = col * width // GRID, (col + 1) * width // GRID
        frame[y0:y1, x0:x1, 0] = 220 if (bits >> cell) & 1 else 35
    frame[..., 1] = 30 + (index * 23) % 190
    side = max(2, min(height, width) // 4)
    x = (index * 3) % max(1, width - side)
    frame[: side + 1, x : x + side, 2] = 255
    return frame


def pattern_index(frame: np.ndarray) -> int:
    """Read back the index (modulo 512) that `frame_pattern` wrote, from a decoded (H, W, 3) RGB frame."""
    height, width = frame.shape[:2]
    bits = 0
    for cell in range(GRID * GRID):
        row, col = divmod(cell, GRID)
        y0, y1 = row * height // GRID, (row + 1) * height // GRID
        x0, x1 = col * width // GRID, (col + 1) * width // GRID
        # the cell centre, away from chroma bleeding at the edges
        cy0, cy1 = y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4
        cx0, cx1 = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
        if frame[cy0 : max(cy1, cy0 + 1), cx0 : max(cx1, cx0 + 1), 0].mean() > 127:
            bits |= 1 << cell
    return bits


def write_video(
    path: str | os.PathLike | io.BytesIO,
    num_frames: int = 24,
    *,
    width: int = 64,
    height: int = 48,
    fps: int | fractions.Fraction = 8,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    options: dict[str, str] | None = None,
    container_format: str | None = None,
    pts: Sequence[int] | None = None,
    time_base: fractions.Fraction | None = None,
    frames: Sequence[np.ndarray] | None = None,
    bit_rate: int | None = None,
    with_audio: bool = False,
    rotation: int | None = None,
) -> str | os.PathLike | io.BytesIO:
    """Encode `num_frames` pattern frames (or the given RGB `frames`) and return `path`.

    Args:
        path: output file; its extension picks the container unless `container_format` is given (required for
            a `BytesIO`).
        codec: PyAV encoder name, e.g. "libx264", "mpeg4", "libvpx-vp9", "mjpeg", "gif".
        pix_fmt: encoder pixel format; defaults to the encoder's first supported one.
        options: encoder options, e.g. `{"x264-params": "keyint=50:min-keyint=50:scenecut=0"}` or `{"g": "10"}`.
        pts: explicit presentation timestamps in `time_base` units, for variable frame rates or a first pts that
            is not 0. Without it frames are spaced 1 / fps apart starting at 0.
        time_base: time base of `pts`; defaults to 1 / fps.
        with_audio: also write an AAC tone track, so readers must pick the video stream out of several.
        rotation: clockwise degrees that a player must turn the coded frames by, written as the stream's display
            matrix (what phones write for portrait video; FFmpeg's own API counts counterclockwise).
    """
    if frames is None:
        frames = [frame_pattern(i, height, width) for i in range(num_frames)]
    height, width = frames[0].shape[:2]
    if pts is not None and len(pts) != len(frames):
        raise ValueError(f"pts has {len(pts)} entries for {len(frames)} frames")
    rate = fractions.Fraction(fps)
    if time_base is None:
        time_base = 1 / rate
    container = av.open(path, mode="w", format=container_format)
    try:
        stream = container.add_stream(codec, rate=rate, options=dict(options or {}))
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or stream.codec_context.codec.video_formats[0].name
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        if rotation:
            stream.set_display_rotation(-rotation)
        if with_audio:
            _write_tone(container, seconds=float(len(frames) / rate))
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts = pts[i] if pts is not None else i * int(round(1 / (rate * time_base)))
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return path


def _write_tone(container, seconds: float, codec: str = "aac", rate: int = 16000) -> None:
    """Encode a 440 Hz tone into a new audio stream of an open output container."""
    stream = container.add_stream(codec, rate=rate)
    samples = int(seconds * rate)
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate)).astype(np.float32)
    frame_size = stream.codec_context.frame_size or 1024
    for start in range(0, samples, frame_size):
        chunk = tone[start : start + frame_size]
        if stream.format.name == "fltp":
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_audio(path: str | os.PathLike, seconds: float = 0.5, codec: str = "aac") -> str:
    """Write an audio-only file (a sine tone), for the 'no video stream' error path."""
    container = av.open(str(path), mode="w")
    try:
        _write_tone(container, seconds, codec)
    finally:
        container.close()
    return str(path)


def write_frame_folder(folder: str | os.PathLike, num_frames: int = 12, *, width: int = 40, height: int = 30) -> str:
    """Write pattern frames as PNG images named like TVQA's (`00001.png`, ...); returns the folder."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for i in range(num_frames):
        Image.fromarray(frame_pattern(i, height, width)).save(os.path.join(folder, f"{i + 1:05d}.png"))
    return str(folder)


def reference_frames(source: str | os.PathLike | bytes) -> list[np.ndarray]:
    """Decode every frame with a plain sequential loop: the ground truth that exact sampling must match."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    with av.open(source if isinstance(source, io.IOBase) else str(source)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def reference_keyframes(source: str | os.PathLike) -> list[bool]:
    """Whether each decoded frame (in sequential order) is a keyframe."""
    with av.open(str(source)) as container:
        return [bool(frame.key_frame) for frame in container.decode(video=0)]
