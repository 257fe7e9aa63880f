"""Read sampled video frames with PyAV: exact frames, decoded only as far as the samples need, with clear errors.

A frame index is a position in the sequence of frames that a plain sequential decode yields
(`for frame in container.decode(video=0)`), so exact reads always equal the full decode at those positions.

How sparse reads stay exact and cheap:
1. One demux-only pass (no decoding, about 1-2% of a full decode) lists the video packets: their pts, which are
   keyframes, and how many there are. That count is the frame count; `stream.frames` and the container duration
   are not trusted (WebM reports 0 frames, AVI indexes count empty packets, raw streams have no duration). The
   same pass decodes the first packets up to the first frame, which gives the size and the display rotation.
2. Frame i is the packet with the i-th smallest pts. For each wanted frame we find the keyframe before it and
   seek there only when the decoder is not already at or past that keyframe (seeking per target would re-decode
   the same group of pictures again and again: up to 16x a full decode on one-keyframe clips). Then we decode
   forward and check every decoded frame's pts against the index. Packets between targets are sent with
   skip_frame=NONREF, so the decoder drops frames nothing else references (most B-frames) instead of decoding them.
   The decoder is always opened with skip_frame=DEFAULT: some decoders (libdav1d for AV1) read the option only when
   they open and then ignore later changes, and one opened while skipping would drop frames for good.
3. Whenever that bookkeeping does not hold (a seek raises, lands after the target, or a pts is missing), and for
   containers without a reliable seek index (AVI, MPEG-PS/TS, raw elementary streams, GIF, ...), we decode
   sequentially from the start, which is the definition of the indices. For an indexed file that sequential decode
   is checked against the index too: a frame that the index puts at a later position than the one it decoded at
   (frames were dropped), or fewer frames than packets, raises `VideoDecodeError` rather than shifting every later
   position.
4. A small file keeps the packets of step 1 in memory, and steps 2 and 3 decode those same packets: a seek is a
   jump in the list, and the file is neither opened nor demuxed a second time (which costs 0.5-1 ms, 15% of a full
   decode of a 176x144 clip). Larger files are opened again and seek in the container.
5. Frames come back upright: a display matrix (phone videos) rotating by 90/180/270 degrees is applied, and
   `VideoInfo.rotation` says by how much (`autorotate=False` keeps the coded orientation).
6. `frame_transform` (e.g. resize and crop) runs on each decoded frame before it is stored, so a read holds the
   transformed frames plus one source-size RGB frame at a time, never all sampled frames at source resolution.

This module is copied next to saved models as remote code: keep imports absolute for installed packages and
single-dot for siblings.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import av
import numpy as np

__all__ = ["VideoDecodeError", "VideoInfo", "decode_video", "probe_video", "read_frames"]

logger = logging.getLogger(__name__)

# Demuxers whose seek index and per-packet pts are reliable enough for keyframe seeking. Everything else is decoded
# sequentially (AVI seeks can land on neighbouring frames, MPEG-PS/ES packets lack pts, GIF frames are deltas).
_SEEKABLE_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
# Frame threading pays off only for large frames; below 720p on two cores it made decoding about 1.3x slower.
# Smaller frames get slice threads, as PyAV opens decoders by default: a file written with several slices per
# frame (x264 on a multi-core machine) then decodes on every core, and one with a single slice loses nothing.
_THREADING_MIN_HEIGHT = 720
# A seek flushes the decoder and restarts demuxing; skipping fewer frames than this is cheaper to decode through.
_MIN_FRAMES_SKIPPED_PER_SEEK = 4
# The index pass keeps the video packets for decoding while they total at most this much. Opening and demuxing
# the file a second time costs 0.5-1 ms plus 1-2% of a full decode, which matters on clips that decode in a few
# ms. 8 MiB covers every short clip in benchmarks/README.md (the largest has 1.6 MB of packets) and is less memory
# than two of the 1080p RGB frames a read returns (6 MB each); files above it decode for seconds.
_MAX_KEPT_PACKET_BYTES = 8 << 20
# A matroska file whose packets stop this much earlier than its own declared video duration is truncated.
_TRUNCATION_TOLERANCE_S = 1.0
_TRUNCATION_TOLERANCE_FRACTION = 0.05
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_NOT_VIDEO_FORMATS = {"tty": "a text file"}  # FFmpeg "decodes" text files as ANSI art
# FFmpeg's still-image demuxers: "image2" (chosen by file extension) and "<format>_pipe" (chosen by content, so a
# PNG named .mp4 lands here too). Animated GIF has its own demuxer ("gif") and stays a video.
_STILL_IMAGE_DEMUXER = "image2"
_STILL_IMAGE_DEMUXER_SUFFIX = "_pipe"
_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO), not a video file; read it yourself and pass the bytes"),
    (stat.S_ISCHR, "a character device (such as /dev/zero), not a video file"),
    (stat.S_ISBLK, "a block device, not a video file"),
    (stat.S_ISSOCK, "a socket, not a video file"),
)


class VideoDecodeError(ValueError):
    """A video could not be read; the message names the source and the reason."""


@dataclass
class VideoInfo:
    """What a reader knows about a video before decoding it.

    Attributes:
        num_frames: frames a full sequential decode yields (a frame folder: its image count).
        fps: average frame rate, or None when unknown (frame folders carry no rate; TVQA frames are 3 fps).
        width, height: size in pixels of the frames a read returns (before any `frame_transform`): upright, i.e.
            swapped against the coded size when a 90 or 270 degree rotation is applied.
        duration: seconds from the first to the end of the last frame, or None when unknown.
        codec: FFmpeg decoder name (e.g. "h264") or, for a frame folder, the image format (e.g. "jpeg").
        container: FFmpeg demuxer name (e.g. "mov,mp4,m4a,3gp,3g2,mj2") or "image-folder".
        rotation: clockwise degrees (0, 90, 180 or 270) by which the file's display matrix turns the coded frames
            upright (the convention of the old `rotate` tag: 90 for a phone held upright). Applied unless the read
            was asked for `autorotate=False`.
    """

    num_frames: int
    fps: float | None
    width: int
    height: int
    duration: float | None
    codec: str
    container: str
    rotation: int = 0


class _IndexMismatch(Exception):
    """The packet index and the decoder disagree; the caller falls back to sequential decoding."""


# --------------------------------------------------------------------------------------------------------------
# Sources: a path, a frame folder, bytes or a binary file object
# --------------------------------------------------------------------------------------------------------------


class _Source:
    """Opens the same input as often as needed (a failed seek reopens it) and names it in errors."""

    def __init__(self, source):
        self.path: str | None = None
        self.data: bytes | None = None
        self.fileobj = None
        self.is_folder = False
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.name = "<bytes>"
            self.data = bytes(source)
            if not self.data:
                raise VideoDecodeError("Could not read video <bytes>: the byte string is empty.")
        elif isinstance(source, (str, os.PathLike)):
            self.path = os.fspath(source)
            self.name = self.path
            try:
                mode = os.stat(self.path).st_mode  # never open() first: opening a FIFO blocks until a writer comes
            except FileNotFoundError:
                raise VideoDecodeError(f"Could not read video {self.name}: no such file or directory.") from None
            except OSError as exc:
                raise VideoDecodeError(f"Could not read video {self.name}: {exc.strerror or exc}.") from exc
            if stat.S_ISDIR(mode):
                self.is_folder = True
            for is_kind, what in _SPECIAL_FILES:
                if is_kind(mode):
                    raise VideoDecodeError(f"Could not read video {self.name}: it is {what}.")
            if not self.is_folder and os.path.getsize(self.path) == 0:
                raise VideoDecodeError(f"Could not read video {self.name}: the file is empty (0 bytes).")
        elif hasattr(source, "read"):
            if isinstance(source, io.TextIOBase):
                raise TypeError("`source` is a text-mode file object; open the video with mode 'rb'.")
            file_name = getattr(source, "name", None)
            self.name = f"<file object {file_name}>" if isinstance(file_name, str) else "<file object>"
            if getattr(source, "seekable", lambda: False)():
                self.fileobj = source
                self.start = source.tell()
                first = source.read(1)
                source.seek(self.start)
            else:  # a pipe or socket: we may need to open it more than once, so keep the bytes
                self.data = source.read()
                first = self.data[:1]
            if not first:
                raise VideoDecodeError(f"Could not read video {self.name}: the file object has no data left.")
        else:
            raise TypeError(
                f"`source` must be a path, a frame folder, bytes or a binary file object, got {type(source).__name__}."
            )

    def error(self, reason: str) -> VideoDecodeError:
        return VideoDecodeError(f"Could not read video {self.name}: {reason}")

    def open(self) -> av.container.InputContainer:
        if self.data is not None:
            target = io.BytesIO(self.data)
        elif self.fileobj is not None:
            self.fileobj.seek(self.start)
            target = self.fileobj if self.start == 0 else _FileWindow(self.fileobj, self.start)
        else:
            target = self.path
        try:
            return av.open(target, mode="r", metadata_errors="ignore")
        except av.error.FFmpegError as exc:
            hint = ""
            if isinstance(exc, av.error.InvalidDataError):
                hint = (
                    " It is not a video, or it is corrupt or truncated (an MP4 cut short loses its index). Check "
                    "that the file plays, or re-encode it, e.g. `ffmpeg -i in -c:v libx264 out.mp4`."
                )
            raise self.error(f"FFmpeg cannot open it ({_ffmpeg_reason(exc)}).{hint}") from exc


class _FileWindow:
    """A file object seen from `start` on: FFmpeg seeks to absolute offsets, but the video begins at `start`."""

    def __init__(self, fileobj, start: int):
        self._file, self._start = fileobj, start

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset + self._start if whence == io.SEEK_SET else offset, whence) - self._start

    def tell(self) -> int:
        return self._file.tell() - self._start

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def _codec_name(stream) -> str:
    return stream.codec_context.name if stream.codec_context is not None else "unknown codec"


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _video_stream(container, source: _Source, allow_images: bool = False):
    """The first real video stream (cover art in music files is a 'video' stream too, but not a video)."""
    if container.format.name in _NOT_VIDEO_FORMATS:
        raise source.error(f"it is {_NOT_VIDEO_FORMATS[container.format.name]}, not a video.")
    name = container.format.name
    if not allow_images and (name == _STILL_IMAGE_DEMUXER or name.endswith(_STILL_IMAGE_DEMUXER_SUFFIX)):
        codec = container.streams.video[0].codec_context.name if container.streams.video else name
        raise source.error(
            f"it is a still image ({codec}), not a video. Pass allow_images=True (MCGVideoProcessor: "
            "allow_images=True) to read a still image as a one-frame video."
        )
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            break
    else:
        found = ", ".join(f"{s.type} ({_codec_name(s)})" for s in container.streams) or "none"
        raise source.error(f"it contains no video stream (streams found: {found}).")
    if stream.codec_context is None:
        raise source.error("the FFmpeg bundled with PyAV has no decoder for its video codec; re-encode it to H.264.")
    for other in container.streams:
        if other.index != stream.index:
            other.discard = av.stream.Discard.all  # the demuxer may then skip audio/subtitle payloads
    return stream


# --------------------------------------------------------------------------------------------------------------
# The demux-only packet index
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _PacketIndex:
    """Frame-level facts from one demux pass; `sorted_pts[i]` is the pts of frame i when `seekable`."""

    num_packets: int
    seekable: bool  # pts-based seeking and frame counting from packets are reliable
    sorted_pts: np.ndarray  # (num_packets,) int64, only meaningful when seekable
    keyframes: np.ndarray  # (k,) int64 frame indices of keyframes, sorted, only meaningful when seekable
    duration: float | None
    # Every packet the demuxer yielded, in its order (flush and discarded ones too: decoding them must equal
    # decoding a fresh demux), or None when they exceed _MAX_KEPT_PACKET_BYTES.
    packets: list[av.Packet] | None
    # The frames the decoder returned with its first output (size and display rotation come from the first), decoded
    # during the pass, so a large file is not opened a second time just for them; empty if the pass produced none.
    first_frames: list[av.VideoFrame]
    # How many demuxed packets the decoder had consumed when they came out.
    first_frames_after: int


def _scan_packets(container, stream, source: _Source) -> _PacketIndex:
    """The demux-only pass; the stream's decoder, already open, also decodes the first packets until a frame comes."""
    codec = stream.codec_context
    first_frames: list[av.VideoFrame] = []
    demuxed = first_frames_after = 0
    pts_list: list[int | None] = []
    key_list: list[bool] = []
    end = None
    kept: list[av.Packet] | None = []
    kept_bytes = 0
    budget = _MAX_KEPT_PACKET_BYTES
    indexed_format = container.format.name in _SEEKABLE_FORMATS
    # One pass over every packet of a long file (18,000 for 10 minutes): attribute reads are hoisted into locals.
    try:
        for packet in container.demux(stream):
            size = packet.size
            demuxed += 1
            if not first_frames:
                first_frames, first_frames_after = _decode_first(codec, packet, source), demuxed
            if kept is not None:
                kept_bytes += size
                if kept_bytes <= budget:
                    kept.append(packet)
                else:
                    kept = None
            if size == 0 or packet.is_discard:  # flush packets, AVI "repeat previous frame" entries
                continue
            if indexed_format and packet.is_corrupt:  # MP4/MKV: a short read
                raise source.error(
                    f"packet {len(pts_list)} of the video stream is incomplete: the file is truncated or corrupt."
                )
            pts = packet.pts
            pts_list.append(pts)
            key_list.append(packet.is_keyframe)
            if pts is not None:
                duration = packet.duration
                if duration and (end is None or pts + duration > end):
                    end = pts + duration
    except av.error.FFmpegError as exc:
        raise source.error(
            f"demuxing failed after {len(pts_list)} video packets ({_ffmpeg_reason(exc)}): corrupt or truncated file."
        ) from exc
    if not pts_list:
        raise source.error("its video stream has no frames (empty, or its data is missing or corrupt).")

    time_base = stream.time_base
    known_pts = [p for p in pts_list if p is not None]
    duration = end_time = None
    if time_base and known_pts:
        last = max(known_pts) if end is None else max(end, max(known_pts))
        duration = float((last - min(known_pts)) * time_base) or None
        end_time = float(last * time_base)

    seekable = (
        container.format.name in _SEEKABLE_FORMATS
        and len(known_pts) == len(pts_list)
        and key_list[0]
        and len(set(known_pts)) == len(known_pts)
        and pts_list[0] == min(known_pts)  # no undecodable leading frames before the first keyframe
    )
    if seekable:
        sorted_pts = np.sort(np.asarray(known_pts, dtype=np.int64))
        key_pts = np.asarray([p for p, k in zip(pts_list, key_list) if k], dtype=np.int64)
        keyframes = np.unique(np.searchsorted(sorted_pts, key_pts))  # (k,) frame positions of the keyframes
    else:
        sorted_pts = keyframes = np.zeros(0, dtype=np.int64)
    _check_not_truncated(container, stream, source, end_time)
    return _PacketIndex(
        len(pts_list), seekable, sorted_pts, keyframes, duration, kept, first_frames, first_frames_after
    )


def _decode_first(codec, packet: av.Packet, source: _Source) -> list[av.VideoFrame]:
    try:
        return codec.decode(packet)
    except av.error.FFmpegError as exc:
        raise source.error(f"decoding the first frame failed ({_ffmpeg_reason(exc)}).") from exc


def _check_not_truncated(container, stream, source: _Source, end_time: float | None) -> None:
    """Matroska keeps demuxing a truncated file without complaint; its own DURATION tag tells us it was cut."""
    if end_time is None or not container.format.name.startswith("matroska"):
        return
    declared = _parse_hms(stream.metadata.get("DURATION") or stream.metadata.get("duration"))  # the track's end
    if declared is None:
        return
    missing = declared - end_time
    if missing > max(_TRUNCATION_TOLERANCE_S, _TRUNCATION_TOLERANCE_FRACTION * declared):
        raise source.error(
            f"its video packets end at {end_time:.2f} s but the file declares {declared:.2f} s: it looks "
            "truncated or corrupt (an interrupted download or copy?). Re-download or re-encode it."
        )


def _parse_hms(value: str | None) -> float | None:
    match = re.fullmatch(r"\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)\s*", value or "")
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _stream_fps(stream, num_frames: int, duration: float | None) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate and float(rate) > 0:
            return float(rate)
    if duration:
        return num_frames / duration
    return None


def _make_info(container, stream, num_frames: int, duration: float | None, size, rotation: int) -> VideoInfo:
    width, height = size
    fps = _stream_fps(stream, num_frames, duration)
    if duration is None and fps:
        duration = num_frames / fps
    return VideoInfo(
        num_frames=num_frames,
        fps=fps,
        width=int(width),
        height=int(height),
        duration=duration,
        codec=stream.codec_context.name,
        container=container.format.name,
        rotation=rotation,
    )


def _open_decoder(stream, height: int) -> None:
    """Configure threads and open the decoder now, with no frames skipped.

    Left to PyAV, the decoder opens at the first packet, after `_decode_all` may already have asked for
    skip_frame=NONREF; libdav1d (AV1) reads skip_frame only when it opens, and would then drop every non-reference
    frame for the decoder's whole life, sequential decodes included.
    """
    stream.thread_type = "AUTO" if height >= _THREADING_MIN_HEIGHT else "SLICE"
    stream.codec_context.thread_count = 0  # one per core
    stream.codec_context.skip_frame = "DEFAULT"
    stream.codec_context.open()


def _clockwise_degrees(frame: av.VideoFrame, source: _Source) -> int:
    """The rotation a frame's display matrix asks for, as clockwise degrees 0/90/180/270 (0 without one)."""
    counterclockwise = frame.rotation  # FFmpeg's av_display_rotation_get: degrees counterclockwise
    degrees = round(-counterclockwise) % 360
    if degrees % 90:
        logger.warning(
            "%s: its display matrix rotates by %s degrees, not a multiple of 90; frames are kept as coded.",
            source.name,
            degrees,
        )
        return 0
    return degrees


class _Frames:
    """The output array of a read, allocated at the first frame (a `frame_transform` decides the frame shape)."""

    def __init__(self, count: int):
        self.count = count
        self.array: np.ndarray | None = None

    def put(self, slot: int, frame: np.ndarray) -> None:
        if self.array is None:
            self.array = np.empty((self.count, *frame.shape), dtype=frame.dtype)
        elif frame.shape != self.array.shape[1:] or frame.dtype != self.array.dtype:
            raise ValueError(
                f"`frame_transform` returned a {frame.dtype} array of shape {frame.shape} after one of shape "
                f"{self.array.shape[1:]} ({self.array.dtype}); it must return one shape for every frame."
            )
        self.array[slot] = frame

    def repeat(self, slot: int, earlier: int) -> None:
        self.array[slot] = self.array[earlier]


# --------------------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------------------


class _DecodeFailure(Exception):
    """FFmpeg raised while demuxing or decoding; carries the original error."""

    def __init__(self, cause: Exception):
        super().__init__(str(cause))
        self.cause = cause


class _TooFewFrames(VideoDecodeError):
    """A requested position lies past the last decoded frame; `count` is the true frame count."""

    def __init__(self, message: str, count: int):
        super().__init__(message)
        self.count = count


class _Reader:
    """One video file plus its packet index; decodes exactly the requested frame positions."""

    def __init__(
        self,
        source: _Source,
        *,
        autorotate: bool = True,
        allow_images: bool = False,
        frame_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.source = source
        self.allow_images = allow_images
        self.frame_transform = frame_transform
        # What the last read did; tests use it to prove that seeking really happened.
        self.stats = {"method": None, "frames_decoded": 0, "seeks": 0}
        self.container = source.open()
        try:
            self.stream = _video_stream(self.container, source, allow_images)
            # Kept packets are decoded by this container's decoder (a reopened container is configured anew).
            _open_decoder(self.stream, self.stream.codec_context.height)
            self.index = _scan_packets(self.container, self.stream, source)
            self._next_packet = 0  # where decoding the kept packets starts
            # The first frame gives the size (raw streams only know it after decoding) and the display rotation,
            # which FFmpeg attaches to decoded frames only.
            # With kept packets the decoder stays as the pass left it, so the first read that starts from the
            # beginning continues from there instead of decoding the first packets twice (one keyframe: 2% of a
            # 720p clip's full decode).
            self._replay = list(self.index.first_frames) if self.index.packets is not None else []
            self._next_packet = self.index.first_frames_after if self._replay else 0
            first = self.index.first_frames[0] if self.index.first_frames else self._first_frame()
            self.coded_size = (first.width, first.height)
            rotation = _clockwise_degrees(first, source)
            self._quarter_turns = rotation // 90 if autorotate else 0  # clockwise, applied to every frame
            width, height = self.coded_size[:: -1 if self._quarter_turns % 2 else 1]
            self.info = _make_info(
                self.container, self.stream, self.index.num_packets, self.index.duration, (width, height), rotation
            )
        except BaseException:
            self.container.close()
            raise

    def close(self) -> None:
        self.container.close()

    def _rewind(self, height: int | None = None, fresh: bool = False) -> None:
        """Make `_decode_all` start at the first frame again, with the decoder as it was before any decoding, or,
        while nothing else has decoded since the index pass and `fresh` is not asked for, as that pass left it."""
        if fresh:
            self._replay = []
        if self.index.packets is None:  # the index pass consumed the container: open the file again
            self.container.close()
            self.container = self.source.open()
            self.stream = _video_stream(self.container, self.source, self.allow_images)
            _open_decoder(self.stream, self.coded_size[1] if height is None else height)
        elif not self._replay:  # else the decoder is still as the index pass left it: continue from there
            self.stream.codec_context.skip_frame = "DEFAULT"  # earlier reads may have left NONKEY or NONREF
            self._jump_to(0)

    def _jump_to(self, packet_number: int) -> None:
        """Decode the kept packets from `packet_number` on; like a container seek, drop what the decoder holds."""
        self.stream.codec_context.flush_buffers()
        self._next_packet = packet_number
        self._replay = []

    @functools.cached_property
    def _keyframe_packet_numbers(self) -> dict[int, int]:
        """pts -> position in the kept packets, for every keyframe (a seekable index has unique pts)."""
        return {
            packet.pts: number
            for number, packet in enumerate(self.index.packets)
            if packet.is_keyframe and packet.size and not packet.is_discard
        }

    def _first_frame(self) -> av.VideoFrame:
        self._rewind(height=self.stream.codec_context.height)
        try:
            for frame in self._decode_all():
                return frame
        except _DecodeFailure as exc:
            raise self.source.error(f"decoding the first frame failed ({_ffmpeg_reason(exc.cause)}).") from exc
        raise self.source.error("its video stream decodes to no frames.")

    def _decode_all(self, keep_pts: set[int] | None = None) -> Iterator[av.VideoFrame]:
        """Frames from the current position (of the kept packets, else of the demuxer) on; FFmpeg errors become
        `_DecodeFailure`.

        With `keep_pts`, every other packet is sent with skip_frame=NONREF: the decoder then drops frames that no
        other frame references (most B-frames), about a third of the work on typical H.264, and still decodes
        every frame that a kept one depends on. Frames in `keep_pts` are always decoded.
        """
        codec = self.stream.codec_context
        if self.index.packets is None:
            packets = self.container.demux(self.stream)
        else:
            packets = itertools.islice(self.index.packets, self._next_packet, None)
        replay, self._replay = self._replay, []  # frames the index pass decoded from the packets before these
        for frame in replay:
            self.stats["frames_decoded"] += 1
            yield frame
        skipping = None  # the first packet sets the mode, whatever an earlier pass left in the decoder
        try:
            for packet in packets:
                if keep_pts is not None:
                    skip = packet.size > 0 and packet.pts not in keep_pts
                    if skip != skipping:
                        codec.skip_frame, skipping = ("NONREF" if skip else "DEFAULT"), skip
                for frame in codec.decode(packet):
                    self.stats["frames_decoded"] += 1
                    yield frame
        except av.error.FFmpegError as exc:
            raise _DecodeFailure(exc) from exc

    def count_frames(self) -> int:
        """The true frame count; decodes the whole file when the packets cannot be trusted to be frames."""
        if self.index.seekable:
            return self.index.num_packets
        self._rewind()
        count = 0
        try:
            for _ in self._decode_all():
                count += 1
        except _DecodeFailure as exc:
            raise self.source.error(f"decoding failed at frame {count} ({_ffmpeg_reason(exc.cause)}).") from exc
        if count == 0:
            raise self.source.error("its video stream decodes to no frames.")
        return count

    def read(self, wanted: np.ndarray, approximate: bool) -> tuple[np.ndarray, np.ndarray, int | None]:
        """Decode the sorted unique positions `wanted`.

        Returns (frames (m, H, W, 3) uint8 RGB, or (m, ...) as `frame_transform` makes them; positions actually
        returned; the true frame count when it was learned by decoding to the end, else None).
        """
        self.stats = {"method": None, "frames_decoded": 0, "seeks": 0}
        if len(wanted) == 0:
            empty = np.zeros((self.info.height, self.info.width, 3), dtype=np.uint8)
            shape = empty.shape if self.frame_transform is None else np.asarray(self.frame_transform(empty)).shape
            return np.empty((0, *shape), dtype=np.uint8), wanted, None
        out = _Frames(len(wanted))
        if self.index.seekable:
            self._frame_of_pts = {int(p): i for i, p in enumerate(self.index.sorted_pts)}  # pts -> frame position
            try:
                if approximate:
                    self.stats["method"] = "keyframes"
                    positions = self._read_keyframes(wanted, out)
                    return out.array, positions, None
                self.stats["method"] = "seek"
                self._read_seeking(wanted, out)
                return out.array, wanted, None
            except (_IndexMismatch, _DecodeFailure) as exc:  # the sequential decode is the ground truth
                logger.debug("%s: %s; decoding sequentially instead", self.source.name, exc)
            self.stats["method"] = "sequential-fallback"
            out = _Frames(len(wanted))
            self._read_sequential(wanted, out, to_end=False)
            return out.array, wanted, None
        # Packet counts of these containers are only a guess: decode to the end to learn the true count.
        self.stats["method"] = "sequential"
        count = self._read_sequential(wanted, out, to_end=True)
        return out.array, wanted, count

    def _store(self, frame: av.VideoFrame, out: _Frames, slot: int) -> None:
        """Convert `frame` to upright RGB at the first frame's size, apply `frame_transform`, store it."""
        # A mid-stream resolution change is scaled back to the first size, so every clip has one array shape.
        # threads=1: swscale's default starts a pool of slice threads for every conversion, which cost 5-14 ms per
        # frame (more than decoding a small one) and cannot cross a fork into DataLoader workers.
        width, height = self.coded_size
        rgb = frame.reformat(format="rgb24", width=width, height=height, threads=1).to_ndarray()
        if self._quarter_turns:
            rgb = np.rot90(rgb, -self._quarter_turns)  # negative k: clockwise
        out.put(slot, rgb if self.frame_transform is None else np.asarray(self.frame_transform(rgb)))

    def _read_sequential(self, wanted: np.ndarray, out: _Frames, to_end: bool):
        """Decode from the start, keeping the frames at `wanted`; with `to_end`, return the frame count.

        For an indexed file every decoded frame must carry the pts the index puts at its position: a decoder that
        skipped a frame would otherwise shift every later position by one, silently.
        """
        self._rewind()
        slot, count = 0, 0
        indexed = self.index.seekable
        try:
            for frame in self._decode_all():
                if indexed:
                    self._check_position(frame, count)
                while slot < len(wanted) and wanted[slot] == count:
                    self._store(frame, out, slot)
                    slot += 1
                count += 1
                if slot == len(wanted) and not to_end:
                    return count
        except _DecodeFailure as exc:
            raise self.source.error(
                f"decoding failed at frame {count} ({_ffmpeg_reason(exc.cause)}): the file is corrupt."
            ) from exc
        if count == 0:
            raise self.source.error("its video stream decodes to no frames.")
        if slot < len(wanted) and indexed:
            raise self.source.error(
                f"its packet index lists {self.index.num_packets} frames but decoding from the start yields only {count} "
                f"(frame {int(wanted[slot])} was requested): the decoder dropped frames, so frame positions cannot "
                "be trusted. Re-encode the file, e.g. `ffmpeg -i in -c:v libx264 out.mp4`."
            )
        if slot < len(wanted):
            raise _TooFewFrames(
                f"Could not read video {self.source.name}: frame {int(wanted[slot])} was requested but the video "
                f"decodes to only {count} frames.",
                count,
            )
        return count

    def _check_position(self, frame: av.VideoFrame, position: int) -> None:
        """A frame that the index places after its decoded position means the decoder dropped frames before it."""
        indexed = self._frame_of_pts.get(frame.pts) if frame.pts is not None else None
        if indexed is not None and indexed > position:
            raise self.source.error(
                f"decoding from the start yields pts {frame.pts} as frame {position}, but its packet index puts that "
                f"pts at frame {indexed}: the decoder dropped {indexed - position} frame(s), so frame positions "
                "cannot be trusted. Re-encode the file, e.g. `ffmpeg -i in -c:v libx264 out.mp4`."
            )

    def _keyframe_before(self, position: int) -> int:
        keyframes = self.index.keyframes
        return int(keyframes[np.searchsorted(keyframes, position, side="right") - 1])

    def _seek_to(self, keyframe: int, keep_pts: set[int] | None = None) -> Iterator[av.VideoFrame]:
        self.stats["seeks"] += 1
        pts = int(self.index.sorted_pts[keyframe])
        if self.index.packets is None:
            try:
                self.container.seek(pts, stream=self.stream, backward=True)
            except av.error.FFmpegError as exc:
                raise _IndexMismatch(f"seek failed: {exc}") from exc
        elif pts in self._keyframe_packet_numbers:
            self._jump_to(self._keyframe_packet_numbers[pts])
        else:
            raise _IndexMismatch(f"no keyframe packet has pts {pts}")
        return self._decode_all(keep_pts)

    def _positions(self, frames: Iterator[av.VideoFrame], frame_of_pts: dict[int, int]):
        for frame in frames:
            position = frame_of_pts.get(frame.pts) if frame.pts is not None else None
            if position is None:
                raise _IndexMismatch(f"decoded pts {frame.pts} is not in the packet index")
            yield position, frame

    def _read_seeking(self, wanted: np.ndarray, out: _Frames) -> None:
        """Seek to the keyframe before a target only when the decoder is not already near it; decode forward.

        Non-reference frames between targets are skipped, so decoded positions may have gaps; they must still
        increase, and each target must appear exactly, or we fall back to the sequential decode.
        """
        self._rewind()
        frame_of_pts = self._frame_of_pts
        keep_pts = {int(p) for p in self.index.sorted_pts[wanted]}
        frames = None
        next_position = 0  # what `frames` yields next; a rewound reader starts at frame 0
        for slot, target in enumerate(wanted.tolist()):
            keyframe = self._keyframe_before(target)
            if keyframe - next_position >= _MIN_FRAMES_SKIPPED_PER_SEEK:
                frames, restart, previous = (
                    self._positions(self._seek_to(keyframe, keep_pts), frame_of_pts),
                    keyframe,
                    None,
                )
            elif frames is None:
                frames, restart, previous = self._positions(self._decode_all(keep_pts), frame_of_pts), 0, None
            for position, frame in frames:
                if previous is None:  # the first frame after a (re)start tells where the demuxer landed
                    if position > restart:
                        raise _IndexMismatch(f"decoding restarted at frame {position}, after frame {restart}")
                    if position < restart:
                        continue  # an earlier keyframe's GOP, or open-GOP leading frames: not ours to check
                elif position <= previous:
                    raise _IndexMismatch(f"frame {position} came after frame {previous}")
                if position > target:
                    raise _IndexMismatch(f"frame {target} was not decoded (next came frame {position})")
                previous = position
                if position == target:
                    self._store(frame, out, slot)
                    next_position = position + 1
                    break
            else:
                raise _IndexMismatch(f"the stream ended before frame {target}")

    def _read_keyframes(self, wanted: np.ndarray, out: _Frames) -> np.ndarray:
        """Approximate mode: each target gets the keyframe at or before it, and only keyframes are decoded."""
        self._rewind(fresh=True)  # the index pass decoded its first packets without skipping non-keyframes
        self.stream.codec_context.skip_frame = "NONKEY"
        frame_of_pts = self._frame_of_pts
        keyframes = np.asarray([self._keyframe_before(int(t)) for t in wanted], dtype=np.int64)  # sorted
        all_keyframes = self.index.keyframes
        frames, last = None, -1
        skips_non_keyframes = True  # some decoders (e.g. FFmpeg's VP9) ignore skip_frame and output every frame
        for slot, keyframe in enumerate(keyframes):
            if keyframe == last:
                out.repeat(slot, slot - 1)
                continue
            # Without a seek, a keyframes-only decoder yields the keyframe after `last` next.
            following = all_keyframes[np.searchsorted(all_keyframes, last, side="right")]
            if keyframe != following or (frames is not None and not skips_non_keyframes):
                frames = self._positions(self._seek_to(int(keyframe)), frame_of_pts)
            elif frames is None:
                frames = self._positions(self._decode_all(), frame_of_pts)
            for position, frame in frames:
                if position > keyframe:
                    raise _IndexMismatch(f"a keyframe decode gave frame {position}, expected {keyframe}")
                if not frame.key_frame:
                    skips_non_keyframes = False
                if position == keyframe:
                    self._store(frame, out, slot)
                    last = int(keyframe)
                    break
            else:
                raise _IndexMismatch(f"the stream ended before keyframe {keyframe}")
        return keyframes


# --------------------------------------------------------------------------------------------------------------
# Frame folders (TVQA ships JPEG frames)
# --------------------------------------------------------------------------------------------------------------


def _natural_key(name: str) -> tuple:
    # ("frame", 10) sorts after ("frame", 9); tagging each chunk keeps int/str comparisons apart
    return tuple(
        (0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk.lower()) for chunk in re.split(r"(\d+)", name)
    )


class _FrameFolder:
    def __init__(self, source: _Source, frame_transform: Callable[[np.ndarray], np.ndarray] | None = None):
        from PIL import Image

        self._image = Image
        self.source = source
        self.frame_transform = frame_transform
        names = [
            name
            for name in os.listdir(source.path)
            if name.lower().endswith(_IMAGE_EXTENSIONS)
            and not name.startswith(".")
            and os.path.isfile(os.path.join(source.path, name))
        ]
        if not names:
            raise source.error(
                f"it is a directory, and the folder contains no frame images (looked for "
                f"{', '.join(_IMAGE_EXTENSIONS)}). Pass a video file, or a folder of frames such as TVQA's 00001.jpg, "
                "00002.jpg, ..."
            )
        self.files = [os.path.join(source.path, name) for name in sorted(names, key=_natural_key)]
        with self._open(self.files[0]) as image:
            width, height = image.size
            codec = (image.format or "image").lower()
        self.info = VideoInfo(len(self.files), None, width, height, None, codec, "image-folder")

    def _open(self, path: str):
        try:
            return self._image.open(path)
        except (OSError, self._image.UnidentifiedImageError) as exc:
            raise self.source.error(f"frame image {path} is unreadable ({exc}).") from exc

    def read(self, wanted: np.ndarray) -> np.ndarray:
        if len(wanted) == 0:
            empty = np.zeros((self.info.height, self.info.width, 3), dtype=np.uint8)
            shape = empty.shape if self.frame_transform is None else np.asarray(self.frame_transform(empty)).shape
            return np.empty((0, *shape), dtype=np.uint8)
        out = _Frames(len(wanted))
        for slot, position in enumerate(wanted):
            path = self.files[int(position)]
            with self._open(path) as image:
                if image.size != (self.info.width, self.info.height):
                    raise self.source.error(
                        f"frame image {path} is {image.size[0]}x{image.size[1]} but the first frame is "
                        f"{self.info.width}x{self.info.height}; all frames of a folder must have one size."
                    )
                try:
                    rgb = np.asarray(image.convert("RGB"))
                except OSError as exc:
                    raise self.source.error(f"frame image {path} is corrupt or truncated ({exc}).") from exc
            out.put(slot, rgb if self.frame_transform is None else np.asarray(self.frame_transform(rgb)))
        return out.array


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------


def _as_positions(indices, num_frames: int | None, source: _Source, argument: str) -> np.ndarray:
    array = np.asarray(indices)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(
            f"`{argument}` must be a 1-D sequence of integer frame positions, got shape {array.shape} and dtype "
            f"{array.dtype} (for {source.name})."
        )
    array = array.astype(np.int64, copy=False)
    if array.size and array.min() < 0:
        raise ValueError(f"`{argument}` has a negative frame position {int(array.min())} (for {source.name}).")
    if num_frames is not None and array.size and array.max() >= num_frames:
        raise source.error(
            f"frame {int(array.max())} was requested (`{argument}`) but the video has {num_frames} frames "
            f"(positions 0..{num_frames - 1})."
        )
    return array


def _open_reader(source, **options) -> tuple[_Source, _Reader | _FrameFolder]:
    src = _Source(source)
    if src.is_folder:
        return src, _FrameFolder(src, options.get("frame_transform"))
    return src, _Reader(src, **options)


def probe_video(source, *, autorotate: bool = True, allow_images: bool = False) -> VideoInfo:
    """Frame count, rate, size, rotation and codec of a video file, bytes, file object or frame folder.

    The count is what a full sequential decode yields. For MP4/MOV/MKV/WebM it comes from a demux-only pass (cheap);
    for containers whose packets need not map one-to-one to frames (AVI, MPEG-PS/TS, raw streams, GIF) the video is
    decoded once to count, because their indexes are known to disagree with the decoder. The first frame is decoded
    in every case: FFmpeg reports the display rotation only on decoded frames.
    """
    src, reader = _open_reader(source, autorotate=autorotate, allow_images=allow_images)
    if isinstance(reader, _FrameFolder):
        return reader.info
    try:
        _set_count(reader.info, reader.count_frames())
        return reader.info
    finally:
        reader.close()


def read_frames(
    source,
    indices: Sequence[int] | np.ndarray,
    *,
    approximate: bool = False,
    frame_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    autorotate: bool = True,
    allow_images: bool = False,
) -> np.ndarray:
    """Decode the frames at `indices` (positions in the full sequential decode) as (len(indices), H, W, 3) uint8 RGB.

    Frames come back in the order of `indices`; duplicates are decoded once. With `approximate=True` each index
    is served by the keyframe at or before it (one keyframe decode per target, up to a GOP away from the request);
    files that cannot seek and frame folders ignore the flag and return exact frames. `frame_transform` maps each
    decoded (H, W, 3) uint8 RGB frame to the array that is stored instead (one shape for all frames), see
    `decode_video`.
    """
    src, reader = _open_reader(
        source, autorotate=autorotate, allow_images=allow_images, frame_transform=frame_transform
    )
    try:
        wanted = _as_positions(indices, None, src, "indices")
        if isinstance(reader, _FrameFolder):
            return reader.read(_as_positions(wanted, reader.info.num_frames, src, "indices"))
        if reader.index.seekable:  # the packet count is exact: reject bad indices before decoding
            _as_positions(wanted, reader.info.num_frames, src, "indices")
        unique, inverse = np.unique(wanted, return_inverse=True)  # (m,) sorted unique; (t,) back to request order
        frames, _, _ = reader.read(unique, approximate)
        return _in_request_order(frames, unique, inverse)
    finally:
        if isinstance(reader, _Reader):
            reader.close()


def decode_video(
    source,
    sample_indices_fn: Callable[[VideoInfo], Sequence[int] | np.ndarray] | None = None,
    *,
    approximate: bool = False,
    frame_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    autorotate: bool = True,
    allow_images: bool = False,
) -> tuple[np.ndarray, VideoInfo, np.ndarray]:
    """Open `source` once, choose frames with `sample_indices_fn(info)` (None: every frame) and decode only those.

    Returns `(frames, info, indices)`: frames (t, H, W, 3) uint8 RGB in the order of `indices`, the `VideoInfo`
    (whose `num_frames` bounds the indices), and the int64 positions actually returned (with `approximate=True`,
    the keyframe positions that served each request).

    `frame_transform`, when given, maps each decoded upright (H, W, 3) uint8 RGB frame (possibly a non-contiguous
    view) to the array stored in its place, e.g. a resize and crop to the model's input size. Every frame it
    returns must have the same shape. Each distinct position is decoded and transformed once, and repeated
    indices (padding of short clips) copy the transformed frame, so the memory a call needs is the t transformed
    frames plus the decoder's own buffers and one RGB frame at source size, independent of how large the source
    frames are.

    `autorotate=False` keeps the coded orientation instead of applying the display matrix's 90/180/270 degree
    rotation (`info.rotation` reports it either way). `allow_images=True` reads a still image (PNG, JPEG, ...) as a
    one-frame video instead of raising. `probe_video` and `read_frames` take the same two options.

    Raises:
        VideoDecodeError: the source is missing, empty, truncated, corrupt, has no video stream, is not a video
            (a still image without `allow_images=True`, a text file, a FIFO or device), or decodes to frames that
            disagree with its packet index.
    """
    src, reader = _open_reader(
        source, autorotate=autorotate, allow_images=allow_images, frame_transform=frame_transform
    )
    try:
        info = reader.info
        indices = _choose(sample_indices_fn, info, src)
        if isinstance(reader, _FrameFolder):
            unique, inverse = np.unique(indices, return_inverse=True)
            return _in_request_order(reader.read(unique), unique, inverse), info, indices
        unique, inverse = np.unique(indices, return_inverse=True)  # (m,) sorted unique; (t,) back to request order
        try:
            frames, positions, count = reader.read(unique, approximate)
        except _TooFewFrames as exc:  # an unindexed file has fewer frames than packets (indexed ones raise)
            count, frames = exc.count, None
        if count is not None and count != info.num_frames:
            # The packet count of an unindexed container was off: sample again from the true count.
            _set_count(info, count)
            indices = _choose(sample_indices_fn, info, src)
            unique, inverse = np.unique(indices, return_inverse=True)
            frames, positions, _ = reader.read(unique, approximate)
        return _in_request_order(frames, unique, inverse), info, positions[inverse]
    finally:
        if isinstance(reader, _Reader):
            reader.close()


def _in_request_order(frames: np.ndarray, unique: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """`frames[inverse]`, without copying when the request was already sorted and unique (32 HD frames: 200 MB)."""
    if len(unique) == len(inverse) and np.array_equal(inverse, np.arange(len(inverse))):
        return frames
    return frames[inverse]


def _set_count(info: VideoInfo, count: int) -> None:
    if count != info.num_frames:
        info.num_frames = count
        if info.fps:
            info.duration = count / info.fps


def _choose(sample_indices_fn, info: VideoInfo, source: _Source) -> np.ndarray:
    if sample_indices_fn is None:
        return np.arange(info.num_frames, dtype=np.int64)
    return _as_positions(sample_indices_fn(info), info.num_frames, source, "sample_indices_fn(info)")
