"""Warm-start MCG from unimodal Hugging Face checkpoints: a TimeSformer or ViT for the IVM, a BERT for the question
encoder and the answer generator.

Each converter maps a transformers state dict onto MCG key names (as in [`MCGForVideoQuestionAnswering`]) and checks
shapes against the target config first, so a wrong checkpoint fails with a message instead of a silent partial load.

    python -m modeling_mcg.convert_hf_checkpoints --vision PATH_OR_ID --text PATH_OR_ID --output DIR [--config JSON]

Key tables (`N` = block index; "q|k|v" = the fused `qkv` rows split in that order):

TimesformerModel (`timesformer.` prefix stripped) → `mcg.vision_model.`

| transformers                                       | MCG                                              |
|----------------------------------------------------|--------------------------------------------------|
| embeddings.cls_token (1, 1, d)                     | embeddings.class_embedding (d,)                  |
| embeddings.position_embeddings (1, 1 + n, d)       | embeddings.position_embedding                    |
| embeddings.time_embeddings (1, T, d)               | embeddings.temporal_embedding (nearest-resized)  |
| embeddings.patch_embeddings.projection             | embeddings.patch_embedding                       |
| encoder.layer.N.temporal_layernorm                 | layers.N.temporal_layer_norm                     |
| encoder.layer.N.temporal_attention.attention.qkv   | layers.N.temporal_attn.{q,k,v}_proj              |
| encoder.layer.N.temporal_attention.output.dense    | layers.N.temporal_attn.out_proj                  |
| encoder.layer.N.temporal_dense                     | layers.N.temporal_fc                             |
| encoder.layer.N.layernorm_before                   | layers.N.layer_norm1                             |
| encoder.layer.N.attention.attention.qkv            | layers.N.spatial_attn.{q,k,v}_proj               |
| encoder.layer.N.attention.output.dense             | layers.N.spatial_attn.out_proj                   |
| encoder.layer.N.layernorm_after                    | layers.N.layer_norm2                             |
| encoder.layer.N.intermediate.dense / output.dense  | layers.N.mlp.fc1 / mlp.fc2                       |
| layernorm                                          | post_layernorm                                   |

ViTModel (`vit.` prefix stripped; transformers-5 names and the legacy `encoder.layer.N.attention.attention.query`
names both accepted) → `mcg.vision_model.`, with the TimeSformer warm-start rules (paper §2.1): the temporal
attention and `temporal_layer_norm` are copies of the same block's spatial attention and `layer_norm1`,
`temporal_fc` and the temporal embedding are zero, so a static clip reproduces the image model at step 0.

| transformers (new / legacy)                                  | MCG                                          |
|--------------------------------------------------------------|----------------------------------------------|
| embeddings.cls_token / position_embeddings / patch_embeddings | as for TimeSformer                          |
| layers.N.attention.{q,k,v,o}_proj / encoder.layer.N.attention.attention.{query,key,value}, .attention.output.dense | layers.N.spatial_attn.{q,k,v,out}_proj and a copy in layers.N.temporal_attn |
| layers.N.layernorm_before                                    | layers.N.layer_norm1 and layers.N.temporal_layer_norm |
| layers.N.layernorm_after                                     | layers.N.layer_norm2                         |
| layers.N.mlp.fc1 / encoder.layer.N.intermediate.dense         | layers.N.mlp.fc1                             |
| layers.N.mlp.fc2 / encoder.layer.N.output.dense               | layers.N.mlp.fc2                             |
| layernorm                                                    | post_layernorm                               |
| (none)                                                       | layers.N.temporal_fc = 0, temporal_embedding = 0 |

BertModel / BertLMHeadModel / BertForPreTraining (`bert.` prefix stripped; LayerNorm `gamma`/`beta` accepted) →
`mcg.question_model.` (target "question") or `decoder.` + `lm_head.` (target "decoder")

| transformers                                        | MCG                                          |
|-----------------------------------------------------|----------------------------------------------|
| embeddings.word_embeddings                          | embeddings.embed_tokens                      |
| embeddings.position_embeddings + token_type_embeddings[0] | embeddings.position_embedding (folded) |
| embeddings.LayerNorm                                | embeddings.layer_norm                        |
| encoder.layer.N.attention.self.{query,key,value}    | layers.N.self_attn.{q,k,v}_proj              |
| encoder.layer.N.attention.output.dense / .LayerNorm | layers.N.self_attn.out_proj / layer_norm1    |
| encoder.layer.N.crossattention.self.{query,key,value} | layers.N.cross_attn.{q,k,v}_proj (decoder)  |
| encoder.layer.N.crossattention.output.dense / .LayerNorm | layers.N.cross_attn.out_proj / cross_attn_layer_norm |
| encoder.layer.N.intermediate.dense                  | layers.N.mlp.fc1                             |
| encoder.layer.N.output.dense / .LayerNorm           | layers.N.mlp.fc2 / layer_norm2               |
| cls.predictions.transform.dense / .LayerNorm        | lm_head.dense / lm_head.layer_norm (decoder) |
| cls.predictions.decoder.weight, cls.predictions.bias | lm_head.out_proj.weight / .bias (decoder)   |

Why the token-type fold is exact: BERT embeds `word + position + token_type`, and without `token_type_ids` every
token has type 0, so adding `token_type_embeddings[0]` to every position row gives the same sum before the LayerNorm.
MCG (as BLIP's MED BERT) has no token types; inputs with type 1 segments cannot be reproduced.

Known differences from transformers' `TimesformerModel` (none change the outputs at the checkpoint's own resolution
and frame count): transformers orders the video tokens `[CLS, (patch, frame) with time fastest]`, MCG
`[CLS, frame 0 patches, frame 1 patches, ...]`; transformers resizes the spatial position embedding by nearest
interpolation, MCG bicubic (only for other resolutions); transformers only runs its configured `num_frames`, MCG any.
The per-frame [CLS] is averaged over frames identically in both.
"""

import argparse
import json
import os
import re

import torch
import torch.nn.functional as F

from .configuration_mcg import MCGConfig
from .modeling_mcg import MCGForVideoQuestionAnswering

VISION_PREFIX = "mcg.vision_model."
QUESTION_PREFIX = "mcg.question_model."

# per-block tables: source suffix (without .weight/.bias) → MCG suffixes (several = copies; "qkv" = fused rows split)
TIMESFORMER_LAYER_KEYS = {
    "temporal_layernorm": ["temporal_layer_norm"],
    "temporal_attention.attention.qkv": ["temporal_attn.qkv"],
    "temporal_attention.output.dense": ["temporal_attn.out_proj"],
    "temporal_dense": ["temporal_fc"],
    "layernorm_before": ["layer_norm1"],
    "attention.attention.qkv": ["spatial_attn.qkv"],
    "attention.output.dense": ["spatial_attn.out_proj"],
    "layernorm_after": ["layer_norm2"],
    "intermediate.dense": ["mlp.fc1"],
    "output.dense": ["mlp.fc2"],
}
VIT_LAYER_KEYS = {
    # transformers >= 5 names
    "attention.q_proj": ["spatial_attn.q_proj", "temporal_attn.q_proj"],
    "attention.k_proj": ["spatial_attn.k_proj", "temporal_attn.k_proj"],
    "attention.v_proj": ["spatial_attn.v_proj", "temporal_attn.v_proj"],
    "attention.o_proj": ["spatial_attn.out_proj", "temporal_attn.out_proj"],
    "mlp.fc1": ["mlp.fc1"],
    "mlp.fc2": ["mlp.fc2"],
    # legacy names (checkpoints saved before transformers 5)
    "attention.attention.query": ["spatial_attn.q_proj", "temporal_attn.q_proj"],
    "attention.attention.key": ["spatial_attn.k_proj", "temporal_attn.k_proj"],
    "attention.attention.value": ["spatial_attn.v_proj", "temporal_attn.v_proj"],
    "attention.output.dense": ["spatial_attn.out_proj", "temporal_attn.out_proj"],
    "intermediate.dense": ["mlp.fc1"],
    "output.dense": ["mlp.fc2"],
    # both
    "layernorm_before": ["layer_norm1", "temporal_layer_norm"],
    "layernorm_after": ["layer_norm2"],
}
VISION_EMBEDDING_KEYS = {
    "embeddings.patch_embeddings.projection.weight": "embeddings.patch_embedding.weight",
    "embeddings.patch_embeddings.projection.bias": "embeddings.patch_embedding.bias",
    "embeddings.position_embeddings": "embeddings.position_embedding",
    "layernorm.weight": "post_layernorm.weight",
    "layernorm.bias": "post_layernorm.bias",
}
BERT_LAYER_KEYS = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "layer_norm1",
    "crossattention.self.query": "cross_attn.q_proj",
    "crossattention.self.key": "cross_attn.k_proj",
    "crossattention.self.value": "cross_attn.v_proj",
    "crossattention.output.dense": "cross_attn.out_proj",
    "crossattention.output.LayerNorm": "cross_attn_layer_norm",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "output.LayerNorm": "layer_norm2",
}
BERT_EMBEDDING_KEYS = {
    "embeddings.word_embeddings.weight": "embeddings.embed_tokens.weight",
    "embeddings.LayerNorm.weight": "embeddings.layer_norm.weight",
    "embeddings.LayerNorm.bias": "embeddings.layer_norm.bias",
}
BERT_LM_HEAD_KEYS = {
    "cls.predictions.transform.dense.weight": "lm_head.dense.weight",
    "cls.predictions.transform.dense.bias": "lm_head.dense.bias",
    "cls.predictions.transform.LayerNorm.weight": "lm_head.layer_norm.weight",
    "cls.predictions.transform.LayerNorm.bias": "lm_head.layer_norm.bias",
    "cls.predictions.decoder.weight": "lm_head.out_proj.weight",
    "cls.predictions.bias": "lm_head.out_proj.bias",
    "cls.predictions.decoder.bias": "lm_head.out_proj.bias",
}
# rows of these may differ in count from the target (vocabulary grown by [DEC]/[ENC], fewer positions): the leading
# rows are copied and the rest keep their initialisation
ROW_RESIZABLE_SUFFIXES = (
    "embed_tokens.weight",
    "position_embedding.weight",
    "lm_head.out_proj.weight",
    "lm_head.out_proj.bias",
)

_LAYER_RE = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")


def _sub_config(config, name):
    """Accept the composite `MCGConfig` or the sub-config itself."""
    return getattr(config, name, config)


def _strip_prefix(state_dict, prefixes):
    """Drop a task-head wrapper prefix (`vit.`, `timesformer.`, `bert.`) and rename old LayerNorm gamma/beta."""
    out = {}
    for key, value in state_dict.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
        out[key] = value
    return out


def _check_shape(name, tensor, expected):
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)} but the MCG config expects {tuple(expected)}; build the MCG "
            "config with the checkpoint's sizes (hidden_size, intermediate_size, patch_size, image_size, layers)."
        )


def _count_layers(state_dict):
    indices = {int(m.group(1)) for m in map(_LAYER_RE.match, state_dict) if m}
    return max(indices) + 1 if indices else 0


def _finish(converted, unused, return_unused):
    return (converted, sorted(unused)) if return_unused else converted


# ----------------------------------------------------------------------------------------------------------------
# Vision
# ----------------------------------------------------------------------------------------------------------------


def _convert_vision(state_dict, config, layer_keys, source):
    vc = _sub_config(config, "vision_config")
    d, n = vc.hidden_size, vc.num_patches
    depth = _count_layers(state_dict)
    if depth != vc.num_hidden_layers:
        raise ValueError(
            f"The {source} checkpoint has {depth} blocks but vision_config.num_hidden_layers is "
            f"{vc.num_hidden_layers}."
        )
    converted, unused = {}, []
    for key, value in state_dict.items():
        if key in VISION_EMBEDDING_KEYS:
            converted[VISION_PREFIX + VISION_EMBEDDING_KEYS[key]] = value
        elif key == "embeddings.cls_token":
            _check_shape(key, value, (1, 1, d))
            converted[VISION_PREFIX + "embeddings.class_embedding"] = value.reshape(d)
        elif key == "embeddings.time_embeddings":
            converted[VISION_PREFIX + "embeddings.temporal_embedding"] = _resize_frames(value, vc.num_frames)
        elif (match := _LAYER_RE.match(key)) and match.group(2) in layer_keys:
            index, suffix, kind = match.groups()
            for target in layer_keys[suffix]:
                prefix = f"{VISION_PREFIX}layers.{index}."
                if target.endswith(".qkv"):
                    _check_shape(key, value, (3 * d, d) if kind == "weight" else (3 * d,))
                    module = target[: -len(".qkv")]
                    for part, chunk in zip("qkv", value.chunk(3, dim=0)):
                        converted[f"{prefix}{module}.{part}_proj.{kind}"] = chunk.clone()
                else:
                    converted[f"{prefix}{target}.{kind}"] = value.clone()
        else:
            unused.append(key)  # classifier, pooler, mask token, buffers

    position = converted.get(VISION_PREFIX + "embeddings.position_embedding")
    if position is not None:
        _check_shape("embeddings.position_embeddings", position, (1, 1 + n, d))
    patch = converted.get(VISION_PREFIX + "embeddings.patch_embedding.weight")
    if patch is not None:
        _check_shape("patch_embeddings.projection.weight", patch, (d, vc.num_channels, vc.patch_size, vc.patch_size))
    return converted, unused


def _resize_frames(time_embeddings, num_frames):
    """(1, T, d) → (1, num_frames, d) by nearest interpolation, as the official code resizes at load time."""
    if time_embeddings.ndim != 3 or time_embeddings.shape[0] != 1:
        raise ValueError(f"time_embeddings must be (1, T, d), got {tuple(time_embeddings.shape)}.")
    if time_embeddings.shape[1] == num_frames:
        return time_embeddings.clone()
    resized = F.interpolate(time_embeddings.transpose(1, 2).float(), size=num_frames, mode="nearest")
    return resized.transpose(1, 2).to(time_embeddings.dtype)


def _add_warm_start(converted, config):
    """TimeSformer rules for an image-only source: temporal_fc and the temporal embedding start at zero."""
    vc = _sub_config(config, "vision_config")
    d = vc.hidden_size
    converted.setdefault(VISION_PREFIX + "embeddings.temporal_embedding", torch.zeros(1, vc.num_frames, d))
    for i in range(vc.num_hidden_layers):
        prefix = f"{VISION_PREFIX}layers.{i}."
        converted.setdefault(prefix + "temporal_fc.weight", torch.zeros(d, d))
        converted.setdefault(prefix + "temporal_fc.bias", torch.zeros(d))
        # a space-only TimeSformer has no temporal attention: copy the spatial one, as for ViT
        for part in ("q_proj", "k_proj", "v_proj", "out_proj"):
            for kind in ("weight", "bias"):
                spatial = converted.get(f"{prefix}spatial_attn.{part}.{kind}")
                if spatial is not None:
                    converted.setdefault(f"{prefix}temporal_attn.{part}.{kind}", spatial.clone())
        for kind in ("weight", "bias"):
            norm = converted.get(f"{prefix}layer_norm1.{kind}")
            if norm is not None:
                converted.setdefault(f"{prefix}temporal_layer_norm.{kind}", norm.clone())
    return converted


def convert_timesformer_state_dict(hf_state_dict, config, return_unused=False):
    """transformers `TimesformerModel` (or `TimesformerForVideoClassification`) weights → MCG IVM keys.

    Returns `{mcg key: tensor}`, or `(dict, unused source keys)` with `return_unused=True`. A space-only source gets
    the ViT warm-start rules for the temporal modules.
    """
    state_dict = _strip_prefix(hf_state_dict, ("timesformer.",))
    converted, unused = _convert_vision(state_dict, config, TIMESFORMER_LAYER_KEYS, "TimeSformer")
    return _finish(_add_warm_start(converted, config), unused, return_unused)


def convert_vit_state_dict(hf_vit_state_dict, config, return_unused=False):
    """transformers `ViTModel` weights → MCG IVM keys with the TimeSformer warm-start rules (see module docstring)."""
    state_dict = _strip_prefix(hf_vit_state_dict, ("vit.",))
    converted, unused = _convert_vision(state_dict, config, VIT_LAYER_KEYS, "ViT")
    return _finish(_add_warm_start(converted, config), unused, return_unused)


# ----------------------------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------------------------


def convert_bert_state_dict(hf_bert_state_dict, config, target="question", return_unused=False):
    """transformers BERT weights → the MCG question encoder (`target="question"`) or decoder + LM head
    (`target="decoder"`). The token-type-0 embedding is folded into the position embeddings (exact, see above)."""
    if target not in ("question", "decoder"):
        raise ValueError(f'target must be "question" or "decoder", got {target!r}.')
    tc = _sub_config(config, "question_config" if target == "question" else "decoder")
    prefix = QUESTION_PREFIX if target == "question" else "decoder."
    state_dict = _strip_prefix(hf_bert_state_dict, ("bert.",))
    depth = _count_layers(state_dict)
    if depth != tc.num_hidden_layers:
        raise ValueError(
            f"The BERT checkpoint has {depth} layers but the MCG {target} config has num_hidden_layers="
            f"{tc.num_hidden_layers}."
        )
    word = state_dict.get("embeddings.word_embeddings.weight")
    if word is not None and word.shape[1] != tc.hidden_size:
        raise ValueError(f"BERT hidden size is {word.shape[1]} but the MCG {target} hidden_size is {tc.hidden_size}.")

    converted, unused = {}, []
    for key, value in state_dict.items():
        if key in BERT_EMBEDDING_KEYS:
            converted[prefix + BERT_EMBEDDING_KEYS[key]] = value
        elif key == "embeddings.position_embeddings.weight":
            token_type = state_dict.get("embeddings.token_type_embeddings.weight")
            folded = value + token_type[0] if token_type is not None else value
            converted[prefix + "embeddings.position_embedding.weight"] = folded
        elif key in BERT_LM_HEAD_KEYS and target == "decoder":
            converted[BERT_LM_HEAD_KEYS[key]] = value
        elif (match := _LAYER_RE.match(key)) and match.group(2) in BERT_LAYER_KEYS:
            index, suffix, kind = match.groups()
            if suffix.startswith("crossattention") and target == "question":
                unused.append(key)  # the question encoder has no cross-attention
                continue
            converted[f"{prefix}layers.{index}.{BERT_LAYER_KEYS[suffix]}.{kind}"] = value
        elif key == "embeddings.token_type_embeddings.weight":
            if "embeddings.position_embeddings.weight" not in state_dict:
                unused.append(key)
        else:
            unused.append(key)  # pooler, NSP head, position_ids buffer, or the MLM head for the question encoder
    return _finish(converted, unused, return_unused)


# ----------------------------------------------------------------------------------------------------------------
# Loading into a model
# ----------------------------------------------------------------------------------------------------------------


def _read_checkpoint(path_or_id):
    """(config, state dict) of a transformers checkpoint: a local folder or a Hub id, safetensors or bin, sharded."""
    from transformers import AutoConfig
    from transformers.utils import cached_file

    hf_config = AutoConfig.from_pretrained(path_or_id)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = cached_file(path_or_id, index_name, _raise_exceptions_for_missing_entries=False)
        if index is not None:
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            files = [cached_file(path_or_id, shard) for shard in shards]
            break
    else:
        files = []
        for name in ("model.safetensors", "pytorch_model.bin"):
            found = cached_file(path_or_id, name, _raise_exceptions_for_missing_entries=False)
            if found is not None:
                files = [found]
                break
    if not files:
        raise FileNotFoundError(f"No model.safetensors or pytorch_model.bin found for {path_or_id!r}.")
    state_dict = {}
    for file in files:
        if file.endswith(".safetensors"):
            from safetensors.torch import load_file

            state_dict.update(load_file(file))
        else:
            state_dict.update(torch.load(file, map_location="cpu", weights_only=True))
    return hf_config, state_dict


def _as_state_dict(source):
    """A checkpoint path/id, a loaded transformers model, or a state dict → (model_type or None, state dict)."""
    if isinstance(source, (str, os.PathLike)):
        hf_config, state_dict = _read_checkpoint(str(source))
        return hf_config, state_dict
    if hasattr(source, "state_dict") and hasattr(source, "config"):
        return source.config, source.state_dict()
    return None, dict(source)


def _load_converted(model, converted, report, skip=()):
    """Copy converted tensors into `model` with shape checks; vocabulary/position rows may be fewer or more."""
    params = model.state_dict()
    has_mcg_prefix = any(k.startswith("mcg.") for k in params)
    with torch.no_grad():
        for key, value in converted.items():
            name = key if has_mcg_prefix or not key.startswith("mcg.") else key[len("mcg.") :]
            if name not in params or any(name.startswith(s) for s in skip):
                report["unused"].append(key)
                continue
            target = params[name]
            if tuple(value.shape) != tuple(target.shape):
                resizable = name.endswith(ROW_RESIZABLE_SUFFIXES) and value.shape[1:] == target.shape[1:]
                if not resizable:
                    raise ValueError(
                        f"{key}: converted shape {tuple(value.shape)} does not fit the model's {tuple(target.shape)}."
                    )
                rows = min(value.shape[0], target.shape[0])
                target[:rows].copy_(value[:rows])
                report["resized"].append(f"{name}: {value.shape[0]} → {target.shape[0]} rows")
            else:
                target.copy_(value)
            report["loaded"].append(name)


def load_unimodal_weights(model, vision=None, text=None, load_cross_attention=False):
    """Load a vision (TimeSformer or ViT) and/or a BERT checkpoint into an MCG model, in place.

    `vision`/`text`: a path or Hub id, a transformers model, or a state dict (then the vision type is guessed from
    its keys). The BERT weights go to the question encoder and to the decoder's embeddings, self-attention and FFN
    (plus the LM head when the checkpoint has one); cross-attention keeps its initialisation unless
    `load_cross_attention=True`. Returns `{"loaded", "missing", "unused", "resized"}` key lists.
    """
    config = model.config
    report = {"loaded": [], "missing": [], "unused": [], "resized": []}
    if vision is not None:
        hf_config, state_dict = _as_state_dict(vision)
        model_type = getattr(hf_config, "model_type", None)
        if model_type is None:
            model_type = "timesformer" if any("time_embeddings" in k for k in state_dict) else "vit"
        if model_type == "timesformer":
            converted, unused = convert_timesformer_state_dict(state_dict, config, return_unused=True)
        elif model_type in ("vit", "deit"):
            converted, unused = convert_vit_state_dict(state_dict, config, return_unused=True)
        else:
            raise ValueError(f"Unsupported vision checkpoint type {model_type!r}: use a TimeSformer or a ViT.")
        report["unused"] += [f"vision:{k}" for k in unused]
        _load_converted(model, converted, report)
    if text is not None:
        hf_config, state_dict = _as_state_dict(text)
        if getattr(hf_config, "position_embedding_type", "absolute") not in (None, "absolute"):
            raise ValueError("Only BERT checkpoints with absolute position embeddings can be loaded into MCG.")
        question, unused = convert_bert_state_dict(state_dict, config, "question", return_unused=True)
        report["unused"] += [f"text:{k}" for k in unused]
        _load_converted(model, question, report)
        if hasattr(model, "decoder") and hasattr(model, "lm_head"):
            decoder, _ = convert_bert_state_dict(state_dict, config, "decoder", return_unused=True)
            skip = (
                ()
                if load_cross_attention
                else tuple(f"decoder.layers.{i}.cross_attn" for i in range(config.decoder.num_hidden_layers))
            )
            _load_converted(model, decoder, report, skip=skip)
    loaded = set(report["loaded"])
    report["missing"] = [k for k in model.state_dict() if k not in loaded]
    return report


def mcg_config_from_unimodal(vision_config, text_config, **overrides):
    """An `MCGConfig` sized after a transformers vision config and a BERT config; the vocabulary grows by `[DEC]`
    and `[ENC]` (as bert-base-uncased → 30524), whose ids are the two new rows."""
    vision = dict(
        image_size=vision_config.image_size,
        patch_size=vision_config.patch_size,
        num_channels=vision_config.num_channels,
        num_frames=getattr(vision_config, "num_frames", 8),
        hidden_size=vision_config.hidden_size,
        num_hidden_layers=vision_config.num_hidden_layers,
        num_attention_heads=vision_config.num_attention_heads,
        intermediate_size=vision_config.intermediate_size,
        hidden_act=vision_config.hidden_act,
        layer_norm_eps=vision_config.layer_norm_eps,
        qkv_bias=vision_config.qkv_bias,
    )
    vocab = text_config.vocab_size
    text = dict(
        vocab_size=vocab + 2,
        hidden_size=text_config.hidden_size,
        num_hidden_layers=text_config.num_hidden_layers,
        num_attention_heads=text_config.num_attention_heads,
        intermediate_size=text_config.intermediate_size,
        hidden_act=text_config.hidden_act,
        max_position_embeddings=text_config.max_position_embeddings,
        layer_norm_eps=text_config.layer_norm_eps,
    )
    kwargs = dict(
        vision_config={**vision, **overrides.pop("vision_config", {})},
        question_config={**text, **overrides.pop("question_config", {})},
        decoder={**text, **overrides.pop("decoder", {})},
        bos_token_id=vocab,
        decoder_start_token_id=vocab,
        enc_token_id=vocab + 1,
    )
    kwargs.update(overrides)
    return MCGConfig(**kwargs)


def from_unimodal_pretrained(config=None, vision=None, text=None, load_cross_attention=False, model_class=None):
    """Build `MCGForVideoQuestionAnswering` (or `model_class`) warm-started from unimodal checkpoints →
    `(model, report)`.

    With `config=None` it is derived from the checkpoints' configs ([`mcg_config_from_unimodal`]).
    """
    model_class = model_class or MCGForVideoQuestionAnswering

    if config is None:
        if vision is None or text is None or not all(isinstance(s, (str, os.PathLike)) for s in (vision, text)):
            raise ValueError("Without a config, pass both vision and text as checkpoint paths or Hub ids.")
        from transformers import AutoConfig

        config = mcg_config_from_unimodal(AutoConfig.from_pretrained(vision), AutoConfig.from_pretrained(text))
    model = model_class(config)
    report = load_unimodal_weights(model, vision=vision, text=text, load_cross_attention=load_cross_attention)
    model.eval()
    return model, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vision", required=True, help="TimeSformer or ViT checkpoint (folder or Hub id)")
    parser.add_argument("--text", required=True, help="BERT checkpoint (folder or Hub id)")
    parser.add_argument("--output", required=True, help="folder to save the MCG model and conversion_report.json")
    parser.add_argument("--config", default=None, help="MCGConfig JSON; default: sized after the checkpoints")
    parser.add_argument("--load-cross-attention", action="store_true", help="also load BERT cross-attention")
    args = parser.parse_args(argv)
    config = MCGConfig.from_json_file(args.config) if args.config else None
    model, report = from_unimodal_pretrained(
        config, vision=args.vision, text=args.text, load_cross_attention=args.load_cross_attention
    )
    model.save_pretrained(args.output)
    with open(os.path.join(args.output, "conversion_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(
        f"Saved to {args.output}: {len(report['loaded'])} loaded, {len(report['missing'])} left at init, "
        f"{len(report['unused'])} unused, {len(report['resized'])} resized."
    )
    return report


if __name__ == "__main__":
    main()
