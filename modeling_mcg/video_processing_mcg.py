"""Video processor for MCG: sample frames, resize, crop, normalise; pure torch so it runs without torchvision.

`BaseVideoProcessor` routes resizing, cropping, normalisation and path decoding through torchvision and torchcodec,
neither of which imports beside the pinned CPU torch. This class keeps the base class's declarative defaults,
serialisation and kwargs validation, and replaces the processing itself:

* inputs: a path, bytes, a binary file object, a `(t, h, w, c)` uint8 array or tensor, or a list of PIL images
  (or of `(h, w, c)` frames) is one video; a list of those (or a 5-d array) is a batch;
* frames are chosen by `frame_sampling.sample_frame_indices` (`uniform`, `rand`, `headtail`, `fps`) before any
  pixel work, so a path is decoded sparsely (`video_io.decode_video`) and a long array is only indexed;
* short clips are padded (`frame_padding="repeat"` or `"mask"`); `video_frame_mask` (b, t) marks real frames;
* resize (shortest edge or fixed height/width) with `F.interpolate(..., antialias=True)`, centre crop by slicing,
  rescale and normalise (CLIP mean/std by default);
* `do_augment=True`: one random resized crop, horizontal flip and colour jitter per clip, shared by all of its
  frames so motion is not corrupted (training only; seedable with `seed=`).

uint8 frames (decoded videos, uint8 arrays, PIL images) are resized and cropped as uint8, frame by frame, and become
float only at the output size for normalising. A decoded video is resized inside the reader as each frame comes out
of the decoder (`decode_video(..., frame_transform=...)`), so memory stays at the output plus a few source frames
however large the frames are, and repeated frames of a padded short clip are copied at the output size. Arrays and
decoded files go through the same per-frame computation, so a file and its decoded frames give identical outputs.
Float arrays keep a float resize.
"""

import math
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import validate_typed_dict
from PIL import Image
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import SizeDict
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.utils import logging
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata

from .frame_sampling import PADDING_MODES, SAMPLING_STRATEGIES, sample_frame_indices
from .video_io import decode_video

logger = logging.get_logger(__name__)

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# PIL resampling codes (what `resample` stores) -> F.interpolate modes; others have no torch equivalent.
_INTERPOLATION_MODES = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)


class MCGVideoProcessorKwargs(VideosKwargs, total=False):
    """Call-time options of `MCGVideoProcessor` beyond the standard video kwargs.

    sampling: one of `SAMPLING_STRATEGIES` ("uniform", "rand", "headtail", "fps").
    frame_padding: how a clip shorter than `num_frames` is filled: "repeat" frames or "mask" them out.
    target_fps / min_frames / max_frames: frame rate and frame-count bounds for `sampling="fps"`; transformers'
        standard `fps=x` is the same as `sampling="fps", target_fps=x`.
    do_augment: temporally consistent random resized crop + horizontal flip + colour jitter (training).
    augment_scale / augment_ratio: area fraction and aspect-ratio ranges of the random resized crop.
    augment_flip_prob: probability of the horizontal flip.
    augment_color_jitter: brightness/contrast/saturation factors are drawn from [1 - j, 1 + j].
    seed: makes `rand` sampling and augmentation reproducible; None draws from torch's global generator.
    autorotate: turn videos whose display matrix says so (phone videos) upright; False keeps the coded orientation.
    allow_images: accept a still image file (PNG, JPEG, ...) as a one-frame video instead of raising.
    """

    sampling: str
    frame_padding: str
    target_fps: int | float | None
    min_frames: int | None
    max_frames: int | None
    do_augment: bool | None
    augment_scale: list[float] | tuple[float, ...] | None
    augment_ratio: list[float] | tuple[float, ...] | None
    augment_flip_prob: float | None
    augment_color_jitter: float | None
    seed: int | None
    autorotate: bool | None
    allow_images: bool | None


def _is_url(source: Any) -> bool:
    return isinstance(source, str) and source.split("://", 1)[0].lower() in ("http", "https")


def _is_source(item: Any) -> bool:
    """True for inputs that must be decoded: paths, raw bytes, binary file objects."""
    return isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(item, "read")


def _is_frame(item: Any) -> bool:
    return isinstance(item, Image.Image) or (isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 3)


def _describe(item: Any) -> str:
    if isinstance(item, (np.ndarray, torch.Tensor)):
        return f"{type(item).__name__} of shape {tuple(item.shape)}"
    return type(item).__name__


def _random_resized_crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator
) -> tuple[int, int, int, int]:
    """Pick (top, left, crop_h, crop_w) covering a random area fraction and aspect ratio of the frame."""

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * torch.rand(1, generator=generator).item()

    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * uniform(*scale)
        aspect = math.exp(uniform(*log_ratio))
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
            return top, left, crop_h, crop_w
    # Rare fallback (extreme aspect ratios): the largest centred box within the ratio range.
    frame_ratio = width / height
    if frame_ratio < ratio[0]:
        crop_w, crop_h = width, round(width / ratio[0])
    elif frame_ratio > ratio[1]:
        crop_h, crop_w = height, round(height * ratio[1])
    else:
        crop_h, crop_w = height, width
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def _decoded_metadata(info, indices) -> VideoMetadata:
    """transformers' metadata for frames decoded by `video_io.decode_video` (`info` is its `VideoInfo`)."""
    return VideoMetadata(
        total_num_frames=info.num_frames,
        fps=info.fps,
        width=info.width,
        height=info.height,
        duration=info.duration,
        video_backend="pyav",
        frames_indices=np.asarray(indices).tolist(),
    )


def _channels_last_transform(fit):
    """`fit` on (t, 3, h, w) tensors as a `decode_video` frame transform: (h, w, 3) uint8 in and out."""

    def transform(rgb: np.ndarray) -> np.ndarray:
        frame = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]  # (1, 3, h, w), channels-last
        return fit(frame)[0].permute(1, 2, 0).numpy()

    return transform


def _grayscale(frames: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_GRAY_WEIGHTS, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    return (frames * weights).sum(dim=1, keepdim=True)  # (t, 1, h, w)


class MCGVideoProcessor(BaseVideoProcessor):
    r"""
    Turns videos into `pixel_values_videos` (b, t, 3, H, W) float32 and `video_frame_mask` (b, t) int64 for MCG.

    Defaults are class attributes (saved by `save_pretrained`); every one of them can be overridden in `__init__`
    or per call, e.g. `processor(videos, num_frames=16, sampling="rand", do_augment=True, seed=0)`.

    Args:
        num_frames (`int`, defaults to 8): frames per clip (the exact count except for `sampling="fps"`).
        sampling (`str`, defaults to `"uniform"`): `"uniform"` (segment centres, evaluation), `"rand"` (one random
            frame per segment, training), `"headtail"` (the paper's pretraining sampler) or `"fps"`.
        frame_padding (`str`, defaults to `"repeat"`): clips shorter than `num_frames` repeat frames (`"repeat"`)
            or are padded with masked-out frames (`"mask"`, `video_frame_mask` 0).
        target_fps, min_frames, max_frames: for `sampling="fps"`; `fps=x` (transformers' name for sampling by
            time) is `sampling="fps", target_fps=x`.
        size (`dict`, defaults to `{"shortest_edge": 224}`): `{"shortest_edge": s}` keeps the aspect ratio,
            `{"height": h, "width": w}` resizes exactly (the paper's QA setting, 224 x 224 with no crop).
        crop_size (`dict`, defaults to `{"height": 224, "width": 224}`): centre crop after resizing.
        resample (`int`, defaults to 3): PIL code of the filter: 0 nearest, 2 bilinear, 3 bicubic.
        image_mean, image_std: CLIP statistics by default.
        do_augment (`bool`, defaults to `False`): temporally consistent augmentation (replaces resize + centre
            crop with a random resized crop to the same output size, then flip and colour jitter).
        autorotate (`bool`, defaults to `True`): apply a video's display-matrix rotation (phone videos).
        allow_images (`bool`, defaults to `False`): accept still image files as one-frame videos.

    Memory: a video file is resized and cropped frame by frame as it is decoded, so the peak memory of a call is
    the output (b, t, 3, H, W) plus the decoder's buffers and about one source-size RGB frame, whatever the source
    resolution and however many padding repeats a short clip needs (a 2-frame 3840x2160 clip sampled to 8 frames
    peaks at about 66 MiB above the resident size, measured by a test).

    Example:

    ```python
    >>> import numpy as np
    >>> processor = MCGVideoProcessor(num_frames=4)
    >>> video = np.zeros((30, 120, 160, 3), dtype=np.uint8)  # (t, h, w, c)
    >>> out = processor(video)
    >>> out["pixel_values_videos"].shape, out["video_frame_mask"].shape
    (torch.Size([1, 4, 3, 224, 224]), torch.Size([1, 4]))
    ```
    """

    valid_kwargs = MCGVideoProcessorKwargs
    model_input_names = ["pixel_values_videos", "video_frame_mask"]

    num_frames = 8
    do_sample_frames = True
    sampling = "uniform"
    frame_padding = "repeat"
    target_fps = 2.0
    min_frames = 1
    max_frames = 64
    do_resize = True
    size = {"shortest_edge": 224}
    default_to_square = False
    resample = 3
    do_center_crop = True
    crop_size = {"height": 224, "width": 224}
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = list(OPENAI_CLIP_MEAN)
    image_std = list(OPENAI_CLIP_STD)
    do_convert_rgb = True
    do_augment = False
    augment_scale = [0.5, 1.0]
    augment_ratio = [3 / 4, 4 / 3]
    augment_flip_prob = 0.5
    augment_color_jitter = 0.2
    seed = None
    autorotate = True
    allow_images = False

    def __init__(self, **kwargs: Unpack[MCGVideoProcessorKwargs]):
        super().__init__(**kwargs)
        self._check_choices(self.sampling, self.frame_padding, self.resample)

    # ------------------------------------------------------------------ validation helpers

    @staticmethod
    def _check_choices(sampling: str, frame_padding: str, resample: Any) -> None:
        if sampling not in SAMPLING_STRATEGIES:
            raise ValueError(f"Unknown sampling={sampling!r}; expected one of {SAMPLING_STRATEGIES}.")
        if frame_padding not in PADDING_MODES:
            raise ValueError(f"Unknown frame_padding={frame_padding!r}; expected one of {PADDING_MODES}.")
        if resample is not None and int(resample) not in _INTERPOLATION_MODES:
            raise ValueError(
                f"Unsupported resample={resample!r}; MCGVideoProcessor resizes with torch and supports "
                f"{ {code: mode for code, mode in _INTERPOLATION_MODES.items()} } (PIL codes)."
            )

    def batch_videos(self, videos: Any) -> list:
        """Split `videos` into a list of single videos, so a processor can count and check the batch cheaply.

        One video: a path / bytes / file object, a 4-d array or tensor, or a list of frames (PIL images or 3-d
        arrays). A batch: a 5-d array or tensor, or a list/tuple of single videos. Nothing is decoded here.
        """
        if videos is None:
            raise ValueError("videos is None; pass a path, bytes, a (t, h, w, 3) array or a list of PIL images.")
        if _is_source(videos):
            if _is_url(videos):
                raise ValueError(f"URLs are not supported (no network access is assumed): {videos!r}; download it.")
            return [videos]
        if isinstance(videos, (np.ndarray, torch.Tensor)):
            if videos.ndim == 4:
                return [videos]
            if videos.ndim == 5:
                return list(videos)
            raise ValueError(
                f"A video array must be 4-d (t, h, w, 3) or a batch 5-d (b, t, h, w, 3); got shape "
                f"{tuple(videos.shape)}. For a single frame use frame[None]."
            )
        if isinstance(videos, Image.Image):
            raise TypeError("Got a single PIL image; a video is a list of PIL images (its frames): pass [image].")
        if isinstance(videos, (list, tuple)):
            if len(videos) == 0:
                raise ValueError("videos is an empty list; pass at least one video (or one frame for a frame list).")
            if all(_is_frame(item) for item in videos):
                return [list(videos)]
            if any(_is_frame(item) for item in videos):
                raise TypeError(
                    "videos mixes single frames with other inputs; pass either one list of frames (one video) or a "
                    "list of videos."
                )
            batch = []
            for index, item in enumerate(videos):
                if _is_source(item):
                    if _is_url(item):
                        raise ValueError(f"videos[{index}] is a URL ({item!r}); download it first.")
                    batch.append(item)
                elif isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 4:
                    batch.append(item)
                elif isinstance(item, (list, tuple)) and len(item) > 0 and all(_is_frame(f) for f in item):
                    batch.append(list(item))
                else:
                    raise TypeError(
                        f"videos[{index}] is a {_describe(item)}; each video must be a path, bytes, a binary file "
                        "object, a (t, h, w, 3) array/tensor or a non-empty list of PIL images."
                    )
            return batch
        raise TypeError(
            f"Unsupported videos type {_describe(videos)}; pass a path, bytes, a binary file object, a (t, h, w, 3) "
            "uint8 array/tensor, a list of PIL images, or a list of those for a batch."
        )

    # ------------------------------------------------------------------ frame selection

    def _sample(self, total_frames: int, video_fps: float | None, opts: dict, rng: np.random.Generator):
        """Indices (n,) int64 and mask (n,) bool of the frames to keep, from the configured strategy."""
        if total_frames < 1:
            raise ValueError("The video has no frames.")
        if not opts["do_sample_frames"]:
            return np.arange(total_frames, dtype=np.int64), np.ones(total_frames, dtype=bool)
        if opts["sampling"] == "fps" and not video_fps:
            raise ValueError(
                "sampling='fps' needs the video's frame rate, which is unknown for this input; for arrays and frame "
                "lists pass video_metadata={'fps': ...} or choose another sampling strategy."
            )
        indices, mask = sample_frame_indices(
            opts["sampling"],
            opts["num_frames"],
            total_frames,
            video_fps=video_fps,
            target_fps=opts["target_fps"],
            min_frames=opts["min_frames"] if opts["min_frames"] is not None else 1,
            max_frames=opts["max_frames"],
            padding=opts["frame_padding"],
            rng=rng,
        )
        return np.asarray(indices, dtype=np.int64), np.asarray(mask, dtype=bool)

    def sample_frames(self, metadata: VideoMetadata | dict, num_frames: int | None = None, **kwargs) -> np.ndarray:
        """Frame indices for a video described by `metadata` (base-class hook; uses MCG's strategies)."""
        opts = self._resolve_options({"num_frames": num_frames, **kwargs})
        seed = opts["seed"] if opts["seed"] is not None else int(torch.randint(0, 2**31 - 1, (1,)))
        return self._sample(metadata["total_num_frames"], metadata.get("fps"), opts, np.random.default_rng(seed))[0]

    def _load_clip(self, clip: Any, metadata: Any, opts: dict, rng: np.random.Generator, fit):
        """Decode (sparsely) or index one video: (t, h, w, c) tensor, mask (t,) bool, VideoMetadata, and whether
        `fit` (the per-clip resize and crop, or None) was already applied, as it is to decoded frames."""
        video_fps = None
        if metadata is not None:
            video_fps = metadata.get("fps") if isinstance(metadata, dict) else getattr(metadata, "fps", None)

        if _is_source(clip):
            chosen = {}

            def sample_indices_fn(info):
                # decode_video may call this twice (after recounting an unindexed file); the last call wins.
                chosen["indices"], chosen["mask"] = self._sample(info.num_frames, info.fps, opts, rng)
                return chosen["indices"]

            frames, info, positions = decode_video(  # frames in the order of the indices
                clip,
                sample_indices_fn,
                frame_transform=None if fit is None else _channels_last_transform(fit),
                autorotate=opts["autorotate"],
                allow_images=opts["allow_images"],
            )
            meta = _decoded_metadata(info, positions)
            return torch.from_numpy(frames), chosen["mask"], meta, fit is not None

        if isinstance(clip, list):  # frames: PIL images or (h, w, c) arrays; convert only the sampled ones
            indices, mask = self._sample(len(clip), video_fps, opts, rng)
            unique, inverse = np.unique(indices, return_inverse=True)
            selected = [self._frame_to_array(clip[i], int(i), opts["do_convert_rgb"]) for i in unique]
            shapes = {tuple(frame.shape) for frame in selected}
            if len(shapes) > 1:
                raise ValueError(f"All frames of a video must have the same size; got frame shapes {sorted(shapes)}.")
            video = torch.stack(selected)[torch.from_numpy(inverse.reshape(-1))]  # (t, h, w, c)
            backend = "pil"
        else:
            is_tensor = isinstance(clip, torch.Tensor)
            array = clip if is_tensor else np.asarray(clip)
            supported = (
                array.dtype == torch.uint8 or array.is_floating_point()
                if is_tensor
                else array.dtype == np.uint8 or np.issubdtype(array.dtype, np.floating)
            )
            if not supported:
                raise TypeError(f"Video arrays must be uint8 (0-255) or floating point; got dtype {array.dtype}.")
            indices, mask = self._sample(array.shape[0], video_fps, opts, rng)
            if is_tensor:
                video = array[torch.from_numpy(indices).to(array.device)]
            else:
                video = torch.from_numpy(array[indices])  # fancy indexing copies only the sampled frames
            video = self._to_channels_last(video, opts["input_data_format"])
            backend = "array"
        if video.is_floating_point() and not bool(torch.isfinite(video).all()):
            bad = sorted({int(indices[i]) for i in torch.nonzero(~torch.isfinite(video))[:, 0].tolist()})
            raise ValueError(
                f"Video frames {bad[:10]} contain NaN or infinite values; pass finite pixel values (uint8 0-255, or "
                "floats)."
            )
        meta = VideoMetadata(
            total_num_frames=len(clip),
            fps=video_fps,
            width=int(video.shape[2]),
            height=int(video.shape[1]),
            duration=len(clip) / video_fps if video_fps else None,
            video_backend=backend,
            frames_indices=indices.tolist(),
        )
        return video, mask, meta, False

    @staticmethod
    def _frame_to_array(frame: Any, index: int, do_convert_rgb: bool) -> torch.Tensor:
        if isinstance(frame, Image.Image):
            if frame.mode != "RGB":
                if not do_convert_rgb:
                    raise ValueError(f"Frame {index} is a {frame.mode} PIL image; set do_convert_rgb=True.")
                frame = frame.convert("RGB")
            return torch.from_numpy(np.array(frame))
        frame = frame if isinstance(frame, torch.Tensor) else torch.from_numpy(np.array(frame))
        if not (frame.dtype == torch.uint8 or frame.is_floating_point()):
            raise TypeError(f"Frame {index} has dtype {frame.dtype}; frames must be uint8 (0-255) or floating point.")
        if frame.shape[-1] not in (1, 3, 4):
            raise ValueError(f"Frame {index} has shape {tuple(frame.shape)}; expected (h, w, 3) channels-last.")
        return frame

    @staticmethod
    def _to_channels_last(video: torch.Tensor, input_data_format: Any) -> torch.Tensor:
        layout = getattr(input_data_format, "value", input_data_format)
        if layout is None:
            if video.shape[-1] in (1, 3, 4):
                layout = "channels_last"
            elif video.shape[1] in (1, 3, 4):
                layout = "channels_first"
            else:
                raise ValueError(
                    f"Cannot find the channel axis of a video of shape {tuple(video.shape)}; expected (t, h, w, 3) "
                    "(or (t, 3, h, w) with input_data_format='channels_first')."
                )
        if layout == "channels_first":
            video = video.permute(0, 2, 3, 1)  # (t, c, h, w) -> (t, h, w, c)
        elif layout != "channels_last":
            raise ValueError(f"input_data_format must be 'channels_last' or 'channels_first', got {layout!r}.")
        return video

    # ------------------------------------------------------------------ pixel operations (pure torch)

    def convert_to_rgb(self, video: torch.Tensor) -> torch.Tensor:
        """(t, c, h, w) with c in {1, 3, 4} -> (t, 3, h, w): grey is repeated, alpha dropped."""
        if video.shape[1] == 1:
            return video.expand(-1, 3, -1, -1)
        if video.shape[1] in (3, 4):
            return video[:, :3]
        raise ValueError(f"Expected 1, 3 or 4 colour channels, got {video.shape[1]} (shape {tuple(video.shape)}).")

    def resize(self, video: torch.Tensor, size: SizeDict, resample: Any = None, **kwargs) -> torch.Tensor:
        """Resize (t, c, h, w) frames to `size` (shortest edge or exact height/width).

        uint8 frames stay uint8 (rounded), which needs no float copy at the source resolution; float frames stay
        float and are not clamped.
        """
        height, width = video.shape[-2:]
        if size.shortest_edge is not None:
            short, long = (height, width) if height <= width else (width, height)
            new_long = int(size.shortest_edge * long / short)  # same rounding as transformers' image processors
            new_h, new_w = (size.shortest_edge, new_long) if height <= width else (new_long, size.shortest_edge)
        elif size.height is not None and size.width is not None:
            new_h, new_w = size.height, size.width
        else:
            raise ValueError(f"size must be {{'shortest_edge': s}} or {{'height': h, 'width': w}}; got {size}.")
        if (new_h, new_w) == (height, width):
            return video
        mode = _INTERPOLATION_MODES[int(resample) if resample is not None else 2]
        if mode == "nearest":
            return F.interpolate(video, size=(new_h, new_w), mode=mode)
        return F.interpolate(video, size=(new_h, new_w), mode=mode, align_corners=False, antialias=True)

    def center_crop(self, video: torch.Tensor, size: SizeDict, **kwargs) -> torch.Tensor:
        """Centre crop (t, c, h, w) frames by slicing; frames smaller than the crop are zero-padded first."""
        if size.height is None or size.width is None:
            raise ValueError(f"crop_size must have 'height' and 'width'; got {size}.")
        height, width = video.shape[-2:]
        pad_h, pad_w = max(size.height - height, 0), max(size.width - width, 0)
        if pad_h or pad_w:
            video = F.pad(video, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
            height, width = video.shape[-2:]
        top, left = (height - size.height) // 2, (width - size.width) // 2
        return video[..., top : top + size.height, left : left + size.width]

    def rescale_and_normalize(self, video, do_rescale, rescale_factor, do_normalize, image_mean, image_std):
        """(t, 3, h, w) → float: optionally scale to [0, 1], then subtract the mean and divide by the std.

        Done as one multiply and one in-place add per element, x · (factor / std) − mean / std, on one new tensor:
        three out-of-place passes over a 32-frame 224 px clip allocated 19 MB each and took 35 ms, as much as
        decoding a tenth of the frames of a sparse read.
        """
        if not do_normalize:
            return video * rescale_factor if do_rescale else video
        dtype = video.dtype if video.is_floating_point() else torch.float32
        factor = rescale_factor if do_rescale else 1.0
        mean = torch.as_tensor(image_mean, dtype=torch.float64).view(1, -1, 1, 1)
        std = torch.as_tensor(image_std, dtype=torch.float64).view(1, -1, 1, 1)
        scale, shift = (factor / std).to(video.device, dtype), (-mean / std).to(video.device, dtype)
        return video.mul(scale).add_(shift)  # mul allocates: the caller's tensor is never written

    def _frame_fitter(self, opts: dict, generator: torch.Generator):
        """The spatial step of one clip, `fit((t, 3, h, w)) -> (t, 3, H, W)`, or None when it changes nothing.

        Resize then centre crop, or with `do_augment` a random resized crop whose box is drawn from `generator` at
        the first call and shared by every later frame of the clip. uint8 frames stay uint8. Applied to a whole
        array or frame by frame (as the reader does), it gives the same pixels.
        """
        if opts["do_augment"]:
            height_out, width_out = self._output_size(opts)
            box = []

            def fit_augmented(video: torch.Tensor) -> torch.Tensor:
                if not box:
                    box.append(
                        _random_resized_crop_box(
                            *video.shape[-2:], tuple(opts["augment_scale"]), tuple(opts["augment_ratio"]), generator
                        )
                    )
                top, left, crop_h, crop_w = box[0]
                video = video[..., top : top + crop_h, left : left + crop_w]
                return self.resize(video, SizeDict(height=height_out, width=width_out), opts["resample"])

            return fit_augmented
        if not (opts["do_resize"] or opts["do_center_crop"]):
            return None

        def fit(video: torch.Tensor) -> torch.Tensor:
            if opts["do_resize"]:
                video = self.resize(video, opts["size"], opts["resample"])
                if video.is_floating_point():
                    video = video.clamp(0, 255)
            if opts["do_center_crop"]:
                video = self.center_crop(video, opts["crop_size"])
            return video

        return fit

    def _augment_photometric(self, video: torch.Tensor, opts: dict, generator: torch.Generator) -> torch.Tensor:
        """Flip and colour jitter, one draw per clip, for (t, 3, h, w) float in 0..255 (after the crop's draw)."""
        if torch.rand(1, generator=generator).item() < opts["augment_flip_prob"]:
            video = video.flip(-1)
        jitter = opts["augment_color_jitter"] or 0.0
        if jitter > 0:
            brightness, contrast, saturation = (1 + jitter * (2 * torch.rand(3, generator=generator) - 1)).tolist()
            video = (video * brightness).clamp(0, 255)
            mean_gray = _grayscale(video).mean(dim=(1, 2, 3), keepdim=True)  # (t, 1, 1, 1), per frame
            video = ((video - mean_gray) * contrast + mean_gray).clamp(0, 255)
            gray = _grayscale(video)
            video = ((video - gray) * saturation + gray).clamp(0, 255)
        return video

    def _output_size(self, opts: dict) -> tuple[int, int]:
        """Spatial size that resize + centre crop produce for a square frame (the augmentation's target)."""
        if opts["do_center_crop"]:
            return opts["crop_size"].height, opts["crop_size"].width
        size = opts["size"]
        if size.height is not None and size.width is not None:
            return size.height, size.width
        return size.shortest_edge, size.shortest_edge

    # ------------------------------------------------------------------ main entry point

    def _resolve_options(self, kwargs: dict) -> dict:
        unknown = set(kwargs) - set(self.valid_kwargs.__annotations__) - {"return_tensors"}
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s) {sorted(unknown)}; valid ones are "
                f"{sorted(self.valid_kwargs.__annotations__)}."
            )
        kwargs = {key: value for key, value in kwargs.items() if value is not None}  # None = the default
        validate_typed_dict(self.valid_kwargs, kwargs)
        opts = {name: kwargs.get(name, getattr(self, name, None)) for name in self.valid_kwargs.__annotations__}
        opts["return_tensors"] = kwargs.get("return_tensors")
        if opts["fps"] is not None:  # transformers' fps: frames to sample per second of video
            if isinstance(opts["fps"], bool) or not (
                isinstance(opts["fps"], (int, float)) and 0 < opts["fps"] < math.inf
            ):
                raise ValueError(f"fps must be a positive, finite number of frames per second; got {opts['fps']!r}.")
            if kwargs.get("sampling", "fps") != "fps" or {"target_fps", "num_frames"} & set(kwargs):
                raise ValueError(
                    f"fps={opts['fps']} samples frames by time (sampling='fps' with target_fps=fps, within "
                    "min_frames/max_frames); pass it without sampling=, target_fps= or num_frames=."
                )
            opts["sampling"], opts["target_fps"] = "fps", opts["fps"]
        self._check_choices(opts["sampling"], opts["frame_padding"], opts["resample"])
        standardized = self._standardize_kwargs(
            size=opts["size"],
            crop_size=opts["crop_size"],
            default_to_square=opts["default_to_square"],
            image_mean=opts["image_mean"],
            image_std=opts["image_std"],
        )
        for key in ("size", "crop_size", "image_mean", "image_std"):
            opts[key] = standardized[key]
        self._validate_preprocess_kwargs(**opts)
        return opts

    def preprocess(self, videos: Any, **kwargs: Unpack[MCGVideoProcessorKwargs]) -> BatchFeature:
        """Process one video or a batch (see the class docstring) into `pixel_values_videos` and `video_frame_mask`.

        Returns:
            `BatchFeature` with `pixel_values_videos` (b, t, 3, H, W) float32 and `video_frame_mask` (b, t) int64
            (1 = real frame); with `return_metadata=True` also `video_metadata`, one `VideoMetadata` per video.
        """
        opts = self._resolve_options(kwargs)
        clips = self.batch_videos(videos)
        metadata = opts["video_metadata"]
        if metadata is None or isinstance(metadata, (dict, VideoMetadata)):
            metadata = [metadata] * len(clips)
        elif len(metadata) and all(isinstance(entry, (list, tuple)) for entry in metadata):
            metadata = [entry for group in metadata for entry in group]  # nested per video, as transformers allows
        elif len(metadata) != len(clips):
            raise ValueError(f"Got {len(metadata)} video_metadata entries for {len(clips)} videos.")

        # One seed drives both sampling (numpy) and augmentation (torch), so `seed=` makes a call reproducible and
        # `transformers.set_seed` does too when no seed is given.
        needs_random = opts["do_augment"] or opts["sampling"] in ("rand", "headtail")
        seed = opts["seed"]
        if seed is None and needs_random:
            seed = int(torch.randint(0, 2**31 - 1, (1,)))
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed if seed is not None else 0)

        videos_out, masks, metas = [], [], []
        for clip, meta in zip(clips, metadata):
            fit = self._frame_fitter(opts, generator)
            video, mask, info, fitted = self._load_clip(clip, meta, opts, rng, fit)
            if opts["device"] is not None:
                video = video.to(opts["device"])
            video = video.permute(0, 3, 1, 2)  # (t, h, w, c) -> (t, c, h, w)
            if video.is_floating_point() and opts["do_rescale"] and video.numel() and video.max() <= 1:
                logger.warning_once(
                    "Video values are already in [0, 1] but do_rescale=True; pass do_rescale=False for such input."
                )
            if opts["do_convert_rgb"]:
                video = self.convert_to_rgb(video)
            elif video.shape[1] != 3:
                raise ValueError(f"Expected 3 colour channels, got {video.shape[1]}; set do_convert_rgb=True.")
            if fit is not None and not fitted:
                video = fit(video if video.dtype == torch.uint8 else video.float())
            if opts["do_augment"]:
                video = self._augment_photometric(video.float(), opts, generator)
            # made contiguous while still uint8 (a quarter of the bytes), so the float pass writes the final layout
            video = self.rescale_and_normalize(
                video.contiguous(),
                opts["do_rescale"],
                opts["rescale_factor"],
                opts["do_normalize"],
                opts["image_mean"],
                opts["image_std"],
            )
            videos_out.append(video.float())
            masks.append(torch.as_tensor(mask, dtype=torch.long))
            metas.append(info)

        shapes = {tuple(video.shape[1:]) for video in videos_out}
        if len(shapes) > 1:
            raise ValueError(
                f"Videos in a batch end with different frame sizes {sorted(shapes)}; enable do_resize with "
                "{'height', 'width'} or do_center_crop so they match."
            )
        # Clips with different frame counts (sampling="fps", do_sample_frames=False) are padded to the longest by
        # repeating their last frame, marked 0 in the mask so the model can ignore them.
        max_t = max(video.shape[0] for video in videos_out)
        for i, video in enumerate(videos_out):
            missing = max_t - video.shape[0]
            if missing:
                videos_out[i] = torch.cat([video, video[-1:].expand(missing, -1, -1, -1)])
                masks[i] = torch.cat([masks[i], masks[i].new_zeros(missing)])
        data = {
            "pixel_values_videos": torch.stack(videos_out),  # (b, t, 3, H, W)
            "video_frame_mask": torch.stack(masks),  # (b, t)
        }
        output = BatchFeature(data=data, tensor_type=opts["return_tensors"])
        if opts["return_metadata"]:
            output["video_metadata"] = metas
        return output

    def fetch_videos(self, video_url_or_urls: Any, sample_indices_fn=None):
        """Decode paths with PyAV (the base class needs torchcodec): (frames, VideoMetadata), or lists of them."""
        if isinstance(video_url_or_urls, list):
            return list(zip(*[self.fetch_videos(x, sample_indices_fn=sample_indices_fn) for x in video_url_or_urls]))

        def indices_fn(info):
            if sample_indices_fn is None:
                return np.arange(info.num_frames)
            return sample_indices_fn(metadata=VideoMetadata(total_num_frames=info.num_frames, fps=info.fps))

        frames, info, indices = decode_video(video_url_or_urls, indices_fn)
        meta = _decoded_metadata(info, indices)
        return frames, meta


__all__ = ["MCGVideoProcessor", "MCGVideoProcessorKwargs"]
