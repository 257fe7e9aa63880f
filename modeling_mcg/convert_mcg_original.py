"""Convert the official MCG checkpoints (OpenMICG/mcg `.pt` files of `McgForOpenEnded` after QA fine-tuning, or of
`McgForPretrain`) into [`MCGForVideoQuestionAnswering`] with `fusion_type="concat"`.

The official QA model encodes the question with its BERT text encoder, then runs `[question; video]` through the
same layers again with plain self-attention. `fusion_type="concat"` is that fusor: it owns no weights, so every
weight the official QA forward reads has exactly one place in MCG.

    python -m modeling_mcg.convert_mcg_original --checkpoint model_step_X.pt \
        --config hub_configs/mcg-base-concat.json --output_dir mcg-msrvtt-qa/

Key table (`KEY_TABLE`; `{n}` = block/layer index; `.weight`/`.bias` follow both names except on bare parameters;
`{q,k,v}_proj` = a fused `qkv` split by rows in q, k, v order):

| official                                                   | MCG                                                    |
|------------------------------------------------------------|--------------------------------------------------------|
| visual_encoder.model.cls_token (1, 1, d)                   | mcg.vision_model.embeddings.class_embedding (d,)       |
| visual_encoder.model.pos_embed (1, 1 + n, d)               | mcg.vision_model.embeddings.position_embedding         |
| visual_encoder.model.time_embed (1, T, d)                  | mcg.vision_model.embeddings.temporal_embedding (T resized to num_frames, nearest) |
| visual_encoder.model.patch_embed.proj                      | mcg.vision_model.embeddings.patch_embedding            |
| visual_encoder.model.blocks.{n}.temporal_norm1             | mcg.vision_model.layers.{n}.temporal_layer_norm        |
| visual_encoder.model.blocks.{n}.temporal_attn.qkv / .proj  | mcg.vision_model.layers.{n}.temporal_attn.{q,k,v}_proj / .out_proj |
| visual_encoder.model.blocks.{n}.temporal_fc                | mcg.vision_model.layers.{n}.temporal_fc                |
| visual_encoder.model.blocks.{n}.norm1                      | mcg.vision_model.layers.{n}.layer_norm1                |
| visual_encoder.model.blocks.{n}.attn.qkv / .proj           | mcg.vision_model.layers.{n}.spatial_attn.{q,k,v}_proj / .out_proj |
| visual_encoder.model.blocks.{n}.norm2                      | mcg.vision_model.layers.{n}.layer_norm2                |
| visual_encoder.model.blocks.{n}.mlp.fc1 / .fc2             | mcg.vision_model.layers.{n}.mlp.fc1 / .fc2             |
| visual_encoder.model.norm                                  | mcg.vision_model.post_layernorm                        |
| text_encoder.embeddings.word_embeddings / position_embeddings / LayerNorm | mcg.question_model.embeddings.embed_tokens / position_embedding / layer_norm |
| text_encoder.encoder.layer.{n}.attention.self.query / key / value | mcg.question_model.layers.{n}.self_attn.q_proj / k_proj / v_proj |
| text_encoder.encoder.layer.{n}.attention.output.dense / LayerNorm | mcg.question_model.layers.{n}.self_attn.out_proj / layer_norm1 |
| text_encoder.encoder.layer.{n}.intermediate.dense          | mcg.question_model.layers.{n}.mlp.fc1                  |
| text_encoder.encoder.layer.{n}.output.dense / LayerNorm    | mcg.question_model.layers.{n}.mlp.fc2 / layer_norm2    |
| text_decoder.bert.embeddings.* and .encoder.layer.{n}.* (as the text encoder) | decoder.embeddings.* and decoder.layers.{n}.* |
| text_decoder.bert.encoder.layer.{n}.crossattention.self.query / key / value | decoder.layers.{n}.cross_attn.q_proj / k_proj / v_proj |
| text_decoder.bert.encoder.layer.{n}.crossattention.output.dense / LayerNorm | decoder.layers.{n}.cross_attn.out_proj / cross_attn_layer_norm |
| text_decoder.cls.predictions.transform.dense / LayerNorm   | lm_head.dense / lm_head.layer_norm                     |
| text_decoder.cls.predictions.decoder.weight                | lm_head.out_proj.weight (tied: must equal the decoder word embeddings) |
| text_decoder.cls.predictions.bias (and its alias .decoder.bias) | lm_head.out_proj.bias                             |
| vision_proj / text_proj                                    | mcg.vision_proj / mcg.text_proj                        |
| temp ()                                                    | mcg.temperature ()                                     |

Official keys the official QA forward never reads are left out and reported as unused (`UNUSED_KEYS`): the
TimeSformer's 400-way `head`, the text encoder's cross-attention (the concat fusion never runs it), the MLM heads
`text_encoder.cls` (pre-training only) and `text_decoder.bert.cls` (built by the decoder's inner BERT, never called),
and the `position_ids` buffers. A pre-training checkpoint has no `text_decoder.*`: the answer generator is then
reported missing and keeps its initialisation (the official fine-tuning took it from BLIP; pass both checkpoints,
in that order, to reproduce that start).

Accepted layouts: a plain state dict (the official `ModelSaver`), `{"model": ...}` (BLIP), `{"model_state_dict":
...}` (the training restorer, fp16), `{"state_dict": ...}`, a `module.` prefix, and ALPRO's `text_encoder.bert.`.

Token order needs no weight change: the official TimeSformer orders video tokens `[CLS, (patch, frame) with time
fastest]`, MCG `[CLS, frame 0 patches, frame 1 patches, ...]`, but no weight is laid out along that axis (the
spatial position embedding is per patch, the temporal one per frame) and both hand `[CLS; frame-mean of the
patches]`, (b, 1 + n, d), to the fusion.

One behaviour differs from the official forward: its answer generator cross-attends to every fused token, padded
question positions included, where MCG masks them. With unpadded questions both give the same logits (tested).
"""

import argparse
import json
import os
import re
from collections.abc import Mapping, Sequence

import torch

from .configuration_mcg import MCGConfig
from .convert_hf_checkpoints import _resize_frames
from .modeling_mcg import MCGForVideoQuestionAnswering

QKV = "{q,k,v}"  # marks a target that receives a fused qkv split into q_proj, k_proj, v_proj
TIED_KEYS = ("lm_head.out_proj.weight", "decoder.embeddings.embed_tokens.weight")

_VISION_KEYS = {
    "cls_token": "embeddings.class_embedding",
    "pos_embed": "embeddings.position_embedding",
    "time_embed": "embeddings.temporal_embedding",
    "patch_embed.proj": "embeddings.patch_embedding",
    "blocks.{n}.temporal_norm1": "layers.{n}.temporal_layer_norm",
    "blocks.{n}.temporal_attn.qkv": "layers.{n}.temporal_attn.{q,k,v}_proj",
    "blocks.{n}.temporal_attn.proj": "layers.{n}.temporal_attn.out_proj",
    "blocks.{n}.temporal_fc": "layers.{n}.temporal_fc",
    "blocks.{n}.norm1": "layers.{n}.layer_norm1",
    "blocks.{n}.attn.qkv": "layers.{n}.spatial_attn.{q,k,v}_proj",
    "blocks.{n}.attn.proj": "layers.{n}.spatial_attn.out_proj",
    "blocks.{n}.norm2": "layers.{n}.layer_norm2",
    "blocks.{n}.mlp.fc1": "layers.{n}.mlp.fc1",
    "blocks.{n}.mlp.fc2": "layers.{n}.mlp.fc2",
    "norm": "post_layernorm",
}
_BERT_KEYS = {
    "embeddings.word_embeddings": "embeddings.embed_tokens",
    "embeddings.position_embeddings": "embeddings.position_embedding",
    "embeddings.LayerNorm": "embeddings.layer_norm",
    "encoder.layer.{n}.attention.self.query": "layers.{n}.self_attn.q_proj",
    "encoder.layer.{n}.attention.self.key": "layers.{n}.self_attn.k_proj",
    "encoder.layer.{n}.attention.self.value": "layers.{n}.self_attn.v_proj",
    "encoder.layer.{n}.attention.output.dense": "layers.{n}.self_attn.out_proj",
    "encoder.layer.{n}.attention.output.LayerNorm": "layers.{n}.layer_norm1",
    "encoder.layer.{n}.intermediate.dense": "layers.{n}.mlp.fc1",
    "encoder.layer.{n}.output.dense": "layers.{n}.mlp.fc2",
    "encoder.layer.{n}.output.LayerNorm": "layers.{n}.layer_norm2",
}
_BERT_CROSS_KEYS = {
    "encoder.layer.{n}.crossattention.self.query": "layers.{n}.cross_attn.q_proj",
    "encoder.layer.{n}.crossattention.self.key": "layers.{n}.cross_attn.k_proj",
    "encoder.layer.{n}.crossattention.self.value": "layers.{n}.cross_attn.v_proj",
    "encoder.layer.{n}.crossattention.output.dense": "layers.{n}.cross_attn.out_proj",
    "encoder.layer.{n}.crossattention.output.LayerNorm": "layers.{n}.cross_attn_layer_norm",
}

# official name (module or bare parameter, `{n}` = index) → MCG name; see the module docstring
KEY_TABLE: dict[str, str] = {
    **{f"visual_encoder.model.{k}": f"mcg.vision_model.{v}" for k, v in _VISION_KEYS.items()},
    **{f"text_encoder.{k}": f"mcg.question_model.{v}" for k, v in _BERT_KEYS.items()},
    **{f"text_decoder.bert.{k}": f"decoder.{v}" for k, v in {**_BERT_KEYS, **_BERT_CROSS_KEYS}.items()},
    "text_decoder.cls.predictions.transform.dense": "lm_head.dense",
    "text_decoder.cls.predictions.transform.LayerNorm": "lm_head.layer_norm",
    "text_decoder.cls.predictions.decoder": "lm_head.out_proj",
    "text_decoder.cls.predictions.bias": "lm_head.out_proj.bias",
    "vision_proj": "mcg.vision_proj",
    "text_proj": "mcg.text_proj",
    "temp": "mcg.temperature",
}
# official key prefixes (after `{n}` normalisation) that the official QA forward never reads → why
UNUSED_KEYS: dict[str, str] = {
    "visual_encoder.model.head.": "TimeSformer Kinetics-400 classifier, never used",
    "text_encoder.encoder.layer.{n}.crossattention.": "text-encoder cross-attention, never run by the concat fusion",
    "text_encoder.cls.": "text-encoder MLM head, pre-training only",
    "text_decoder.bert.cls.": "MLM head of the decoder's inner BERT, never called",
    "text_encoder.embeddings.position_ids": "buffer",
    "text_decoder.bert.embeddings.position_ids": "buffer",
}
_WRAPPER_KEYS = ("model", "model_state_dict", "state_dict")
_INDEX = re.compile(r"\.(\d+)\.")


# ----------------------------------------------------------------------------------------------------------------
# Reading checkpoints
# ----------------------------------------------------------------------------------------------------------------


def _normalise(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """Unwrap `{"model": ...}`-style containers and drop `module.`/ALPRO prefixes, so keys read as in the table."""
    while not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        inner = next((checkpoint[k] for k in _WRAPPER_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
        if inner is None:
            raise ValueError(
                "The checkpoint is neither a state dict nor a container of one under "
                f"{list(_WRAPPER_KEYS)}; its top-level keys are {sorted(checkpoint)[:10]}."
            )
        checkpoint = inner
    state_dict = dict(checkpoint)
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
    return {re.sub(r"^text_encoder\.bert\.", "text_encoder.", k): v for k, v in state_dict.items()}


def read_mcg_original(path_or_state_dict) -> dict[str, torch.Tensor]:
    """A `.pt` path, a (wrapped) state dict, or a list of them → one flat official state dict.

    With a list, later checkpoints override earlier ones key by key: the official fine-tuning start is
    `[mcg_pretrained.pt, blip_model_base_14M.pth]` (BLIP replaces the text encoder and brings the decoder).
    """
    sources = path_or_state_dict
    if isinstance(sources, (str, os.PathLike, Mapping)):
        sources = [sources]
    if not isinstance(sources, Sequence) or not sources:
        raise TypeError("Pass a checkpoint path, a state dict, or a non-empty list of them.")
    merged: dict[str, torch.Tensor] = {}
    for source in sources:
        if isinstance(source, (str, os.PathLike)):
            source = torch.load(source, map_location="cpu", weights_only=True)
        if not isinstance(source, Mapping):
            raise TypeError(f"A checkpoint must hold a dict of tensors, got {type(source).__name__}.")
        merged.update(_normalise(source))
    return merged


def config_from_mcg_original(state_dict: Mapping[str, torch.Tensor]) -> MCGConfig:
    """The official sizes (`MCGConfig` defaults, as `hub_configs/mcg-base-concat.json`) with `fusion_type="concat"`,
    and the frame count, patch size and resolution read from the checkpoint's shapes. Head counts cannot be read from
    shapes, so a checkpoint of other sizes needs an explicit config (a mismatch raises, naming the key)."""
    state_dict = _normalise(state_dict)
    vision = {}
    time_embed = state_dict.get("visual_encoder.model.time_embed")
    if time_embed is not None:
        vision["num_frames"] = time_embed.shape[1]
    patch = state_dict.get("visual_encoder.model.patch_embed.proj.weight")
    pos_embed = state_dict.get("visual_encoder.model.pos_embed")
    if patch is not None and pos_embed is not None:
        grid = round((pos_embed.shape[1] - 1) ** 0.5)
        vision.update(patch_size=patch.shape[-1], image_size=grid * patch.shape[-1])
    return MCGConfig(fusion_type="concat", vision_config=vision)


# ----------------------------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------------------------


def _template(key: str) -> tuple[str, str | None]:
    """`blocks.3.attn.qkv.weight` → (`blocks.{n}.attn.qkv.weight`, "3"): one table row serves every layer."""
    match = _INDEX.search(key)
    if match is None:
        return key, None
    return key[: match.start()] + ".{n}." + key[match.end() :], match.group(1)


def _lookup(template: str) -> tuple[str, str, str] | None:
    """(table entry, MCG name, parameter suffix) for a normalised official key, or None."""
    if template in KEY_TABLE:
        return template, KEY_TABLE[template], ""
    module, _, param = template.rpartition(".")
    if param in ("weight", "bias") and module in KEY_TABLE:
        return module, KEY_TABLE[module], "." + param
    return None


def _unused_reason(template: str) -> str | None:
    return next((why for prefix, why in UNUSED_KEYS.items() if template.startswith(prefix)), None)


def _check_shape(official_key, target, value_shape, expected_shape):
    if tuple(value_shape) != tuple(expected_shape):
        raise ValueError(
            f"{official_key} has shape {tuple(value_shape)} but {target} needs {tuple(expected_shape)}; build the "
            "MCG config with the checkpoint's sizes (e.g. hub_configs/mcg-base-concat.json for the official model)."
        )


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or a.is_meta or b.is_meta or (a.shape == b.shape and torch.equal(a, b))


def _expected_shapes(config: MCGConfig) -> dict[str, tuple[int, ...]]:
    """Every key and shape of the target model, from a model built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = MCGForVideoQuestionAnswering(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _check_config(config: MCGConfig) -> None:
    if config.fusion_type != "concat":
        raise ValueError(
            f'Official MCG checkpoints need fusion_type="concat" (the question encoder re-encodes [question; video]), '
            f"got {config.fusion_type!r}; use hub_configs/mcg-base-concat.json."
        )
    if config.vision_config.attention_type != "divided_space_time":
        raise ValueError(
            "Official MCG checkpoints use a divided space-time TimeSformer: set vision_config.attention_type="
            f'"divided_space_time" (got {config.vision_config.attention_type!r}).'
        )


def _convert(state_dict, config, expected):
    converted: dict[str, torch.Tensor] = {}
    source_of: dict[str, str] = {}
    report = {"converted": {}, "unused": {}, "unrecognised": [], "missing": [], "resized": [], "notes": []}

    def place(official_key, target, value):
        if target not in expected:
            raise ValueError(
                f"{official_key} maps to {target}, which the MCG model built from this config does not have: the "
                "checkpoint has more layers than the config (num_hidden_layers)."
            )
        _check_shape(official_key, target, value.shape, expected[target])
        if target in converted and not _same(converted[target], value):
            raise ValueError(f"{source_of[target]} and {official_key} both map to {target} but differ.")
        converted[target] = value
        source_of.setdefault(target, official_key)
        report["converted"].setdefault(official_key, []).append(target)

    for key, value in state_dict.items():
        template, index = _template(key)
        found = _lookup(template)
        if found is None:
            reason = _unused_reason(template)
            report["unused"][key] = reason or "unrecognised"
            if reason is None:
                report["unrecognised"].append(key)
            continue
        entry, target, param = found
        target = (target if index is None else target.replace("{n}", index)) + param
        if QKV in target:  # fused rows [q; k; v] → three projections
            q_target = target.replace(QKV, "q")
            if q_target in expected:
                q_shape = expected[q_target]
                _check_shape(key, target, value.shape, (3 * q_shape[0], *q_shape[1:]))
            for part, chunk in zip("qkv", value.chunk(3, dim=0)):
                place(key, target.replace(QKV, part), chunk.clone())  # (d, d) or (d,) each
        elif entry == "visual_encoder.model.cls_token":
            d = expected[target][0]
            _check_shape(key, target, value.shape, (1, 1, d))
            place(key, target, value.reshape(d))  # (1, 1, d) → (d,)
        elif entry == "visual_encoder.model.time_embed":
            want = expected[target]
            if value.ndim != 3 or value.shape[0] != 1 or value.shape[2] != want[2]:
                raise ValueError(
                    f"{key} has shape {tuple(value.shape)} but {target} needs (1, frames, {want[2]}) (stored as "
                    f"{want}; the frame count is resized)."
                )
            if value.shape[1] != want[1]:
                report["resized"].append(f"{key}: {value.shape[1]} → {want[1]} frames (nearest)")
                value = _resize_frames(value, want[1])  # (1, T, d) → (1, num_frames, d)
            place(key, target, value)
        else:
            place(key, target, value)

    # MCG ties the LM head to the decoder word embeddings: one fills the other, and both must agree
    head, embeddings = (converted.get(k) for k in TIED_KEYS)
    if head is not None and embeddings is not None and not _same(head, embeddings):
        raise ValueError(
            f"{source_of[TIED_KEYS[0]]} differs from {source_of[TIED_KEYS[1]]}: MCG ties the answer generator's "
            "output projection to its word embeddings, so an untied checkpoint cannot be represented."
        )
    for key, other in (TIED_KEYS, TIED_KEYS[::-1]):
        if key not in converted and other in converted:
            converted[key] = converted[other]
    if config.vision_config.temporal_pooling != "mean":
        report["notes"].append(
            'vision_config.temporal_pooling is not "mean": the official model fuses [CLS; frame-mean of the '
            "patches], so outputs will differ from the official ones."
        )
    report["missing"] = sorted(k for k in expected if k not in converted)
    report["unrecognised"].sort()
    report["unused"] = dict(sorted(report["unused"].items()))
    return converted, report


def convert_mcg_original_state_dict(state_dict, config: MCGConfig):
    """Official MCG state dict (any accepted layout, see the module docstring) → `(converted, report)`.

    `converted` maps [`MCGForVideoQuestionAnswering`] keys to tensors, shape-checked against `config` (a mismatch
    raises a `ValueError` naming the official key and both shapes). `report` holds `converted` (official key → MCG
    keys), `unused` (official key → why it is not needed), `unrecognised` (unused keys outside both tables: a hint
    of a different architecture), `missing` (model keys the checkpoint does not provide), `resized` and `notes`.
    """
    _check_config(config)
    return _convert(_normalise(state_dict), config, _expected_shapes(config))


def load_mcg_original(path_or_state_dict, config=None, *, strict=False, return_report=False):
    """Build [`MCGForVideoQuestionAnswering`] from official MCG weights (a `.pt` path, a state dict, or a list of
    them merged in order, see [`read_mcg_original`]).

    `config`: an `MCGConfig` or a JSON path; default: the official sizes with the checkpoint's frame count
    ([`config_from_mcg_original`]). `strict=True` raises when the checkpoint leaves model weights at their
    initialisation (e.g. a pre-training checkpoint without the answer generator). Returns the model in eval mode, or
    `(model, report)` with `return_report=True`. The official inference used `num_beams=3, max_length=10`.
    """
    state_dict = read_mcg_original(path_or_state_dict)
    if config is None:
        config = config_from_mcg_original(state_dict)
    elif isinstance(config, (str, os.PathLike)):
        config = MCGConfig.from_json_file(config)
    _check_config(config)
    model = MCGForVideoQuestionAnswering(config)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    converted, report = _convert(state_dict, config, expected)
    if strict and report["missing"]:
        raise ValueError(
            f"The checkpoint leaves {len(report['missing'])} model weights uninitialised, e.g. "
            f"{report['missing'][:3]}; pass strict=False to keep their random initialisation."
        )
    _, unexpected = model.load_state_dict(converted, strict=False)
    if unexpected:  # cannot happen: every target was checked against the model's own keys
        raise RuntimeError(f"Converted keys unknown to the model: {unexpected[:5]}")
    model.eval()
    return (model, report) if return_report else model


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def format_report(report: dict) -> str:
    """A short human-readable summary: counts, unused keys grouped by reason, every unrecognised and missing key."""
    lines = [
        f"converted {len(report['converted'])} official keys; {len(report['unused'])} unused, "
        f"{len(report['unrecognised'])} unrecognised, {len(report['missing'])} model keys missing"
    ]
    reasons: dict[str, int] = {}
    for why in report["unused"].values():
        reasons[why] = reasons.get(why, 0) + 1
    lines += [f"  unused ({count}): {why}" for why, count in sorted(reasons.items())]
    lines += [f"  unrecognised: {key}" for key in report["unrecognised"]]
    lines += [f"  missing (left at init): {key}" for key in report["missing"]]
    lines += [f"  resized: {entry}" for entry in report["resized"]]
    lines += [f"  note: {note}" for note in report["notes"]]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        required=True,
        action="append",
        help="official .pt checkpoint; repeat to merge several, later ones overriding earlier ones",
    )
    parser.add_argument("--config", default=None, help="MCGConfig JSON (default: official sizes, checkpoint frames)")
    parser.add_argument("--output_dir", required=True, help="folder for the save_pretrained model and the report")
    parser.add_argument("--strict", action="store_true", help="fail if any model weight is left at initialisation")
    args = parser.parse_args(argv)
    model, report = load_mcg_original(args.checkpoint, args.config, strict=args.strict, return_report=True)
    model.save_pretrained(args.output_dir)
    with open(os.path.join(args.output_dir, "conversion_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(format_report(report))
    print(f"Saved to {args.output_dir}")
    return report


if __name__ == "__main__":
    main()
