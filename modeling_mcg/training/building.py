"""Building a model to train: the named presets shipped with the package, config overrides, a tokenizer-matched
config, the video processor of a from-scratch model, and the vocabulary of a dataset."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
from transformers.utils import logging

from ..configuration_mcg import MCGConfig
from ..video_processing_mcg import MCGVideoProcessor

logger = logging.get_logger(__name__)

PRESET_DIR = Path(__file__).resolve().parent.parent / "hub_configs"


def preset_names() -> list[str]:
    """The named presets (`mcg-tiny`, `mcg-base`, ...) that ship in `modeling_mcg/hub_configs/`."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.json"))


def load_preset(name: str) -> MCGConfig:
    """The `MCGConfig` of a named preset (`mcg-tiny`) or of a config JSON file path."""
    path = Path(name)
    if not (name.endswith(".json") and path.is_file()):
        path = PRESET_DIR / (name if name.endswith(".json") else f"{name}.json")
    if not path.is_file():
        raise ValueError(f"Unknown preset {name!r}; choose one of {preset_names()} or pass a config .json file.")
    return MCGConfig.from_json_file(str(path))


def apply_config_overrides(config: MCGConfig, overrides: str | None) -> MCGConfig:
    """`a=1,vision_config.b=x`: values are parsed as JSON where they can be (numbers, booleans), else strings."""
    if not overrides:
        return config
    for item in overrides.split(","):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--config_overrides entries look like key=value; got {item!r}.")
        *path, name = key.strip().split(".")
        target = config
        for part in path:
            target = getattr(target, part, None)
            if target is None:
                raise ValueError(f"--config_overrides: the config has no sub-config {part!r} (in {key!r}).")
        if not hasattr(target, name):
            raise ValueError(f"--config_overrides: unknown config field {key!r}.")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        setattr(target, name, value)
    return MCGConfig.from_dict(config.to_dict())  # re-runs the config's own checks on the edited values


def match_config_to_tokenizer(config: MCGConfig, tokenizer) -> None:
    """A from-scratch model takes its vocabulary size and special ids from the tokenizer it will read."""
    vocab_size = len(tokenizer)
    config.question_config.vocab_size = vocab_size
    config.decoder.vocab_size = vocab_size
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "bos_token_id": tokenizer.convert_tokens_to_ids("[DEC]"),
        "decoder_start_token_id": tokenizer.convert_tokens_to_ids("[DEC]"),
        "enc_token_id": tokenizer.convert_tokens_to_ids("[ENC]"),
        "mask_token_id": tokenizer.mask_token_id,
    }
    for name, value in ids.items():
        if value is None:
            raise ValueError(f"The tokenizer has no token for {name}; MCG needs [PAD], [SEP], [MASK], [DEC], [ENC].")
        if getattr(config, name, None) != value:
            logger.info(f"config.{name}: {getattr(config, name, None)} -> {value} (from the tokenizer)")
            setattr(config, name, value)


def video_processor_for(vision) -> MCGVideoProcessor:
    """The video processor of a from-scratch model: the vision config's frame count and square frame size."""
    return MCGVideoProcessor(
        num_frames=vision.num_frames,
        size={"height": vision.image_size, "width": vision.image_size},
        do_center_crop=False,
        resample=2 if vision.image_size <= 64 else 3,  # bilinear for tiny frames; bicubic as in the paper
    )


def vocabulary_words(*splits: datasets.Dataset) -> list[str]:
    """Every word of the questions, answers, choices and subtitles, in first-seen order (stable ids)."""
    words: dict[str, None] = {}
    for ds in splits:
        for column in ("question", "answer", "subtitles"):
            for text in ds[column]:
                words.update(dict.fromkeys(text.lower().split()))
        for choices in ds["choices"]:
            for text in choices:
                words.update(dict.fromkeys(text.lower().split()))
    return list(words)
