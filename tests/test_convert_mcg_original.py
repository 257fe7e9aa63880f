"""The official-checkpoint converter: OpenMICG/mcg key names (TimeSformer `visual_encoder.model.*`, BLIP-style BERT
`text_encoder.*` / `text_decoder.*`) → `MCGForVideoQuestionAnswering(fusion_type="concat")`.

Official state dicts are built here from a perturbed MCG model by the inverse mapping, written out independently of
the converter (fused qkv rows, (1, 1, d) [CLS], tied LM head with its bias alias, and the dead weights the official
model carries). `official_logits` re-implements the official QA forward from the official keys alone (time-fastest
video tokens, timm's fused-qkv split, BLIP's text → fusion → decoder passes), so a converter that loads the right
tensors into the wrong places fails here even if it round-trips.
"""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny_models import VOCAB, tiny_config

from modeling_mcg import MCGConfig, MCGForVideoQuestionAnswering
from modeling_mcg.convert_mcg_original import (
    config_from_mcg_original,
    convert_mcg_original_state_dict,
    load_mcg_original,
    main,
)

PRESET = Path(__file__).parent.parent / "hub_configs" / "mcg-base-concat.json"
VIDEO_OUT = {
    "temporal_norm1": "temporal_layer_norm",
    "temporal_attn.proj": "temporal_attn.out_proj",
    "temporal_fc": "temporal_fc",
    "norm1": "layer_norm1",
    "attn.proj": "spatial_attn.out_proj",
    "norm2": "layer_norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
BERT_OUT = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "layer_norm1",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "output.LayerNorm": "layer_norm2",
}
CROSS_OUT = {
    "crossattention.self.query": "cross_attn.q_proj",
    "crossattention.self.key": "cross_attn.k_proj",
    "crossattention.self.value": "cross_attn.v_proj",
    "crossattention.output.dense": "cross_attn.out_proj",
    "crossattention.output.LayerNorm": "cross_attn_layer_norm",
}


def concat_config(**overrides) -> MCGConfig:
    return tiny_config(fusion_type="concat", **overrides)


def perturbed_model(config, seed=0):
    """Random weights far from init (zero temporal_fc/embedding, unit LayerNorms would hide swapped keys)."""
    model = MCGForVideoQuestionAnswering(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():  # the tied LM head / decoder embeddings are one parameter
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def official_state_dict(model, seed=1):
    """MCG weights under the official key names (the converter's inverse), plus the official dead weights."""
    config, ours = model.config, model.state_dict()
    meta = next(iter(ours.values())).is_meta
    g = torch.Generator().manual_seed(seed)

    def dead(*shape):
        return torch.empty(shape, device="meta") if meta else torch.randn(shape, generator=g)

    vc, qc, dc = config.vision_config, config.question_config, config.decoder
    sd = {}
    ov, mv = "visual_encoder.model.", "mcg.vision_model."
    sd[ov + "cls_token"] = ours[mv + "embeddings.class_embedding"].view(1, 1, -1)  # (d,) → (1, 1, d)
    sd[ov + "pos_embed"] = ours[mv + "embeddings.position_embedding"]
    sd[ov + "time_embed"] = ours[mv + "embeddings.temporal_embedding"]
    for p in ("weight", "bias"):
        sd[f"{ov}patch_embed.proj.{p}"] = ours[f"{mv}embeddings.patch_embedding.{p}"]
        sd[f"{ov}norm.{p}"] = ours[f"{mv}post_layernorm.{p}"]
        for i in range(vc.num_hidden_layers):
            for theirs, mine in VIDEO_OUT.items():
                sd[f"{ov}blocks.{i}.{theirs}.{p}"] = ours[f"{mv}layers.{i}.{mine}.{p}"]
            for theirs, mine in (("temporal_attn", "temporal_attn"), ("attn", "spatial_attn")):
                rows = [ours[f"{mv}layers.{i}.{mine}.{x}_proj.{p}"] for x in "qkv"]
                sd[f"{ov}blocks.{i}.{theirs}.qkv.{p}"] = torch.cat(rows)  # (3d, d) or (3d,)
    sd[ov + "head.weight"], sd[ov + "head.bias"] = dead(400, vc.hidden_size), dead(400)

    def bert(theirs, mine, text_config, cross_from_model):
        d, v = text_config.hidden_size, text_config.vocab_size
        sd[theirs + "embeddings.word_embeddings.weight"] = ours[mine + "embeddings.embed_tokens.weight"]
        sd[theirs + "embeddings.position_embeddings.weight"] = ours[mine + "embeddings.position_embedding.weight"]
        sd[theirs + "embeddings.position_ids"] = torch.arange(text_config.max_position_embeddings)[None]
        for p in ("weight", "bias"):
            sd[f"{theirs}embeddings.LayerNorm.{p}"] = ours[f"{mine}embeddings.layer_norm.{p}"]
        for i in range(text_config.num_hidden_layers):
            for name, target in BERT_OUT.items():
                for p in ("weight", "bias"):
                    sd[f"{theirs}encoder.layer.{i}.{name}.{p}"] = ours[f"{mine}layers.{i}.{target}.{p}"]
            for name, target in CROSS_OUT.items():
                for p in ("weight", "bias"):
                    key = f"{theirs}encoder.layer.{i}.{name}.{p}"
                    if cross_from_model:
                        sd[key] = ours[f"{mine}layers.{i}.{target}.{p}"]
                    else:  # the text encoder's cross-attention: present, never run
                        sd[key] = dead(d, d) if p == "weight" and "LayerNorm" not in name else dead(d)
        # every official BertModel builds an (untied, unused) MLM head
        head = theirs + "cls.predictions."
        sd[head + "transform.dense.weight"], sd[head + "transform.dense.bias"] = dead(d, d), dead(d)
        sd[head + "transform.LayerNorm.weight"], sd[head + "transform.LayerNorm.bias"] = dead(d), dead(d)
        sd[head + "decoder.weight"], sd[head + "bias"] = dead(v, d), dead(v)
        sd[head + "decoder.bias"] = sd[head + "bias"]

    bert("text_encoder.", "mcg.question_model.", qc, cross_from_model=False)
    bert("text_decoder.bert.", "decoder.", dc, cross_from_model=True)
    head = "text_decoder.cls.predictions."
    for p in ("weight", "bias"):
        sd[f"{head}transform.dense.{p}"] = ours[f"lm_head.dense.{p}"]
        sd[f"{head}transform.LayerNorm.{p}"] = ours[f"lm_head.layer_norm.{p}"]
        sd[f"vision_proj.{p}"] = ours[f"mcg.vision_proj.{p}"]
        sd[f"text_proj.{p}"] = ours[f"mcg.text_proj.{p}"]
    sd[head + "decoder.weight"] = ours["lm_head.out_proj.weight"]  # tied to the word embeddings
    sd[head + "bias"] = sd[head + "decoder.bias"] = ours["lm_head.out_proj.bias"]
    sd["temp"] = ours["mcg.temperature"]
    return {k: v.clone() for k, v in sd.items()}


DEAD_PREFIXES = ("visual_encoder.model.head.", "text_encoder.cls.", "text_decoder.bert.cls.")


def is_dead(key):
    """Official weights the official QA forward never reads."""
    text_encoder_cross = key.startswith("text_encoder.encoder.") and ".crossattention." in key
    return key.startswith(DEAD_PREFIXES) or key.endswith("position_ids") or text_encoder_cross


# ----------------------------------------------------------------------------------------------------------------
# The official forward, re-implemented from the official keys
# ----------------------------------------------------------------------------------------------------------------


def _linear(sd, name, x):
    return F.linear(x, sd[name + ".weight"], sd[name + ".bias"])


def _norm(sd, name, x, eps):
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)


def _heads(x, h):
    b, length, d = x.shape
    return x.view(b, length, h, d // h).transpose(1, 2)  # (b, h, l, dh)


def _attend(q, k, v, h, additive_mask=None):
    """q (b, lq, d), k/v (b, lk, d) → (b, lq, d); BLIP adds (1 - mask) * -10000 to the scores."""
    b, lq, d = q.shape
    scores = _heads(q, h) @ _heads(k, h).transpose(-1, -2) / (d // h) ** 0.5  # (b, h, lq, lk)
    if additive_mask is not None:
        scores = scores + additive_mask
    return (scores.softmax(-1) @ _heads(v, h)).transpose(1, 2).reshape(b, lq, d)


def _timm_attention(sd, name, x, h):
    """timm's Attention: one qkv Linear, rows read as (3, heads, head_dim)."""
    b, length, d = x.shape
    qkv = _linear(sd, name + ".qkv", x).view(b, length, 3, h, d // h).permute(2, 0, 3, 1, 4)  # (3, b, h, l, dh)
    scores = (qkv[0] @ qkv[1].transpose(-1, -2)) * (d // h) ** -0.5
    out = (scores.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(b, length, d)
    return _linear(sd, name + ".proj", out)


def official_video(sd, pixels, vc):
    """TimeSformer `forward_features` + temporal pooling, tokens ordered [CLS, (patch, frame)] with time fastest."""
    pre, h, eps = "visual_encoder.model.", vc.num_attention_heads, vc.layer_norm_eps
    b, t = pixels.shape[:2]
    x = F.conv2d(
        pixels.flatten(0, 1),
        sd[pre + "patch_embed.proj.weight"],
        sd[pre + "patch_embed.proj.bias"],
        stride=vc.patch_size,
    )
    x = x.flatten(2).transpose(1, 2)  # (b t, n, d)
    n, d = x.shape[1:]
    pos = sd[pre + "pos_embed"]
    cls = sd[pre + "cls_token"] + pos[:, :1]  # (1, 1, d)
    x = (x + pos[:, 1:]).view(b, t, n, d).transpose(1, 2) + sd[pre + "time_embed"][:, None]  # (b, n, t, d)
    x = torch.cat([cls.expand(b, 1, d), x.reshape(b, n * t, d)], dim=1)  # (b, 1 + n t, d)
    for i in range(vc.num_hidden_layers):
        blk = f"{pre}blocks.{i}."
        cls_in, xt = x[:, :1], x[:, 1:]
        seq = xt.reshape(b * n, t, d)  # (b n, t, d): one patch location over frames
        temporal = _timm_attention(sd, blk + "temporal_attn", _norm(sd, blk + "temporal_norm1", seq, eps), h)
        xt = xt + _linear(sd, blk + "temporal_fc", temporal.reshape(b, n * t, d))
        xs = xt.view(b, n, t, d).transpose(1, 2).reshape(b * t, n, d)  # (b t, n, d): one frame
        xs = torch.cat([cls_in.expand(b, t, d).reshape(b * t, 1, d), xs], dim=1)  # (b t, 1 + n, d)
        spatial = _timm_attention(sd, blk + "attn", _norm(sd, blk + "norm1", xs, eps), h)
        cls_res = spatial[:, 0].view(b, t, d).mean(dim=1, keepdim=True)  # (b, 1, d)
        patch_res = spatial[:, 1:].view(b, t, n, d).transpose(1, 2).reshape(b, n * t, d)  # time fastest again
        x = torch.cat([cls_in, xt], dim=1) + torch.cat([cls_res, patch_res], dim=1)
        x = x + _linear(sd, blk + "mlp.fc2", F.gelu(_linear(sd, blk + "mlp.fc1", _norm(sd, blk + "norm2", x, eps))))
    x = _norm(sd, pre + "norm", x, eps)
    return torch.cat([x[:, :1], x[:, 1:].view(b, n, t, d).mean(dim=2)], dim=1)  # (b, 1 + n, d)


def _bert_embed(sd, pre, ids, eps):
    positions = sd[pre + "embeddings.position_embeddings.weight"][: ids.shape[1]]
    return _norm(
        sd,
        pre + "embeddings.LayerNorm",
        F.embedding(ids, sd[pre + "embeddings.word_embeddings.weight"]) + positions,
        eps,
    )


def _bert_layer(sd, pre, x, mask, h, eps, encoder_states=None):
    q, k, v = (_linear(sd, f"{pre}attention.self.{m}", x) for m in ("query", "key", "value"))
    x = _norm(
        sd,
        pre + "attention.output.LayerNorm",
        _linear(sd, pre + "attention.output.dense", _attend(q, k, v, h, mask)) + x,
        eps,
    )
    if encoder_states is not None:  # BLIP's decoder gets no encoder mask: every fused token is visible
        q = _linear(sd, pre + "crossattention.self.query", x)
        k, v = (_linear(sd, f"{pre}crossattention.self.{m}", encoder_states) for m in ("key", "value"))
        out = _linear(sd, pre + "crossattention.output.dense", _attend(q, k, v, h))
        x = _norm(sd, pre + "crossattention.output.LayerNorm", out + x, eps)
    ffn = _linear(sd, pre + "output.dense", F.gelu(_linear(sd, pre + "intermediate.dense", x)))
    return _norm(sd, pre + "output.LayerNorm", ffn + x, eps)


def _additive(mask):
    return (1.0 - mask.float())[:, None, None, :] * -10000.0  # (b, 1, 1, l)


def official_logits(sd, config, input_ids, attention_mask, pixels, answer_ids):
    qc, dc = config.question_config, config.decoder
    video = official_video(sd, pixels, config.vision_config)
    layers = [f"text_encoder.encoder.layer.{i}." for i in range(qc.num_hidden_layers)]
    x = _bert_embed(sd, "text_encoder.", input_ids, qc.layer_norm_eps)
    for layer in layers:  # mode="text"
        x = _bert_layer(sd, layer, x, _additive(attention_mask), qc.num_attention_heads, qc.layer_norm_eps)
    fused = torch.cat([x, video], dim=1)  # mode="fusion": [question; video] through the same layers
    fused_mask = _additive(torch.cat([attention_mask, torch.ones(video.shape[:2])], dim=1))
    for layer in layers:
        fused = _bert_layer(sd, layer, fused, fused_mask, qc.num_attention_heads, qc.layer_norm_eps)
    s = answer_ids.shape[1]
    causal = (1.0 - torch.ones(s, s).tril())[None, None] * -10000.0  # (1, 1, s, s)
    y = _bert_embed(sd, "text_decoder.bert.", answer_ids, dc.layer_norm_eps)
    for i in range(dc.num_hidden_layers):
        y = _bert_layer(
            sd, f"text_decoder.bert.encoder.layer.{i}.", y, causal, dc.num_attention_heads, dc.layer_norm_eps, fused
        )
    head = "text_decoder.cls.predictions."
    y = _norm(sd, head + "transform.LayerNorm", F.gelu(_linear(sd, head + "transform.dense", y)), dc.layer_norm_eps)
    return F.linear(y, sd[head + "decoder.weight"], sd[head + "bias"])


def qa_inputs(config, batch=2, frames=4, question_len=7, answer_len=5, seed=3):
    g = torch.Generator().manual_seed(seed)
    size = config.vision_config.image_size
    return dict(
        input_ids=torch.randint(7, VOCAB, (batch, question_len), generator=g),
        attention_mask=torch.ones(batch, question_len, dtype=torch.long),
        pixel_values_videos=torch.randn(batch, frames, 3, size, size, generator=g),
        decoder_input_ids=torch.randint(7, VOCAB, (batch, answer_len), generator=g),
    )


def logits_of(model, inputs):
    with torch.no_grad():
        return model(**inputs, use_cache=False).logits


# ----------------------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------------------


def test_converted_model_matches_the_official_forward():
    config = concat_config()
    sd = official_state_dict(perturbed_model(config))
    model = load_mcg_original(sd, config)
    inputs = qa_inputs(config)
    ours = logits_of(model, inputs)
    with torch.no_grad():
        theirs = official_logits(
            sd,
            config,
            inputs["input_ids"],
            inputs["attention_mask"],
            inputs["pixel_values_videos"],
            inputs["decoder_input_ids"],
        )
    assert ours.shape == (2, 5, VOCAB)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)

    # the one known difference: the official generator also reads padded question positions, MCG masks them
    padded = {**inputs, "attention_mask": inputs["attention_mask"].clone()}
    padded["attention_mask"][1, 5:] = 0
    ours = logits_of(model, padded)
    with torch.no_grad():
        theirs_padded = official_logits(
            sd,
            config,
            padded["input_ids"],
            padded["attention_mask"],
            padded["pixel_values_videos"],
            padded["decoder_input_ids"],
        )
    torch.testing.assert_close(ours[0], theirs_padded[0], atol=2e-5, rtol=1e-4)
    assert not torch.allclose(ours[1], theirs_padded[1], atol=1e-3)

    # the check is sensitive to the qkv row order: k and q swapped in one block gives other logits
    swapped = dict(sd)
    q, k, v = sd["visual_encoder.model.blocks.1.attn.qkv.weight"].chunk(3)
    swapped["visual_encoder.model.blocks.1.attn.qkv.weight"] = torch.cat([k, q, v])
    assert not torch.allclose(logits_of(load_mcg_original(swapped, config), inputs), theirs, atol=1e-3)


def test_round_trip_is_exact_and_complete():
    config = concat_config()
    source = perturbed_model(config, seed=4)
    sd = official_state_dict(source)
    converted, report = convert_mcg_original_state_dict(sd, config)
    assert report["missing"] == [] and report["unrecognised"] == [] and report["resized"] == []
    assert sorted(report["unused"]) == sorted(k for k in sd if is_dead(k))
    assert report["unused"]["visual_encoder.model.head.weight"].startswith("TimeSformer")
    expected = source.state_dict()
    assert set(converted) == set(expected)
    for key, value in expected.items():
        assert torch.equal(converted[key], value), key
    qkv = report["converted"]["visual_encoder.model.blocks.0.temporal_attn.qkv.bias"]
    assert qkv == [f"mcg.vision_model.layers.0.temporal_attn.{x}_proj.bias" for x in "qkv"]

    inputs = qa_inputs(config)
    torch.testing.assert_close(
        logits_of(load_mcg_original(sd, config), inputs), logits_of(source, inputs), rtol=0, atol=0
    )


def test_wrapped_prefixed_and_merged_checkpoints():
    config = concat_config()
    sd = official_state_dict(perturbed_model(config))
    reference, _ = convert_mcg_original_state_dict(sd, config)
    alpro = {k.replace("text_encoder.", "text_encoder.bert.", 1): v for k, v in sd.items()}
    layouts = [
        {"model": sd},
        {"global_step": 7, "model_state_dict": {f"module.{k}": v.half() for k, v in sd.items()}},
        {"state_dict": alpro},
    ]
    for layout in layouts:
        converted, report = convert_mcg_original_state_dict(layout, config)
        assert set(converted) == set(reference) and report["unrecognised"] == []
        for key, value in reference.items():
            torch.testing.assert_close(converted[key].float(), value, atol=1e-2, rtol=1e-2)

    # [pre-trained MCG, BLIP]: the later checkpoint replaces the text encoder, the video encoder survives
    other = official_state_dict(perturbed_model(config, seed=9))
    blip = {k: v for k, v in other.items() if k.startswith(("text_encoder.", "text_decoder."))}
    blip["visual_encoder.blocks.0.attn.qkv.weight"] = torch.zeros(1)  # BLIP's ViT names: not MCG's
    model, report = load_mcg_original([sd, {"model": blip}], config, return_report=True)
    q = model.mcg.question_model.layers[0].self_attn.q_proj.weight
    assert torch.equal(q, other["text_encoder.encoder.layer.0.attention.self.query.weight"])
    assert torch.equal(model.mcg.vision_model.post_layernorm.weight, sd["visual_encoder.model.norm.weight"])
    assert report["unrecognised"] == ["visual_encoder.blocks.0.attn.qkv.weight"]


def test_time_embedding_resized_nearest_to_the_config_frames():
    config = concat_config(vision={"num_frames": 4})
    sd = official_state_dict(perturbed_model(concat_config(vision={"num_frames": 2})))
    converted, report = convert_mcg_original_state_dict(sd, config)
    temporal = converted["mcg.vision_model.embeddings.temporal_embedding"]
    assert temporal.shape == (1, 4, 32)
    torch.testing.assert_close(temporal[:, ::2], sd["visual_encoder.model.time_embed"])
    torch.testing.assert_close(temporal[:, 1::2], sd["visual_encoder.model.time_embed"])
    assert report["resized"] == ["visual_encoder.model.time_embed: 2 → 4 frames (nearest)"]
    assert config_from_mcg_original(sd).vision_config.num_frames == 2


@pytest.mark.parametrize(
    "key, shape, message",
    [
        ("text_decoder.bert.encoder.layer.1.crossattention.self.key.weight", (32, 31), r"\(32, 31\).*\(32, 32\)"),
        ("visual_encoder.model.blocks.0.attn.qkv.weight", (95, 32), r"\(95, 32\).*\(96, 32\)"),
        ("visual_encoder.model.cls_token", (1, 2, 32), r"\(1, 2, 32\).*\(1, 1, 32\)"),
        ("visual_encoder.model.time_embed", (1, 4, 31), r"\(1, 4, 31\)"),
        ("text_encoder.embeddings.word_embeddings.weight", (VOCAB + 2, 32), r"\(99, 32\).*\(97, 32\)"),
    ],
)
def test_shape_errors_name_the_key_and_both_shapes(key, shape, message):
    config = concat_config()
    sd = official_state_dict(perturbed_model(config))
    sd[key] = torch.zeros(shape)
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + ".*" + message):
        convert_mcg_original_state_dict(sd, config)


def test_structural_mismatches_raise():
    config = concat_config()
    sd = official_state_dict(perturbed_model(config))
    with pytest.raises(ValueError, match="more layers"):
        convert_mcg_original_state_dict({**sd, "visual_encoder.model.blocks.2.norm1.weight": torch.ones(32)}, config)
    untied = {**sd, "text_decoder.cls.predictions.decoder.weight": torch.zeros(VOCAB, 32)}
    with pytest.raises(ValueError, match="ties"):
        convert_mcg_original_state_dict(untied, config)
    aliased = {**sd, "text_decoder.cls.predictions.decoder.bias": torch.zeros(VOCAB)}
    with pytest.raises(ValueError, match="differ"):
        convert_mcg_original_state_dict(aliased, config)
    with pytest.raises(ValueError, match="concat"):
        convert_mcg_original_state_dict(sd, tiny_config())
    with pytest.raises(ValueError, match="neither a state dict"):
        convert_mcg_original_state_dict({"step": 3, "weights": [1, 2]}, config)


def test_report_lists_unused_unrecognised_and_missing():
    config = concat_config()
    sd = official_state_dict(perturbed_model(config))
    pretraining = {k: v for k, v in sd.items() if not k.startswith("text_decoder.") and k != "text_proj.bias"}
    pretraining["itm_head.weight"] = torch.zeros(2, 32)
    _, report = convert_mcg_original_state_dict(pretraining, config)
    assert report["unrecognised"] == ["itm_head.weight"]
    assert report["unused"]["itm_head.weight"] == "unrecognised"
    assert report["unused"]["text_encoder.encoder.layer.1.crossattention.self.key.bias"].startswith("text-encoder")
    assert "mcg.text_proj.bias" in report["missing"]
    assert "decoder.layers.1.cross_attn.v_proj.weight" in report["missing"]
    assert {"lm_head.out_proj.weight", "decoder.embeddings.embed_tokens.weight"} <= set(report["missing"])
    assert not [k for k in report["missing"] if k.startswith("mcg.vision_model.")]

    with pytest.raises(ValueError, match="uninitialised"):
        load_mcg_original(pretraining, config, strict=True)
    model, again = load_mcg_original(pretraining, config, return_report=True)
    assert again["missing"] == report["missing"]
    assert torch.equal(model.mcg.vision_proj.weight, sd["vision_proj.weight"])


def test_cli_writes_a_folder_that_from_pretrained_loads(tmp_path, capsys):
    config = concat_config()
    sd = official_state_dict(perturbed_model(config))
    torch.save({"model": sd}, tmp_path / "mcg.pt")
    config.to_json_file(tmp_path / "config.json")
    out = tmp_path / "converted"
    report = main(
        ["--checkpoint", str(tmp_path / "mcg.pt"), "--config", str(tmp_path / "config.json"), "--output_dir", str(out)]
    )
    printed = capsys.readouterr().out
    assert "0 model keys missing" in printed and "MLM head" in printed
    saved = json.loads((out / "conversion_report.json").read_text())
    assert saved["missing"] == report["missing"] == []
    assert set(saved["unused"]) == {k for k in sd if is_dead(k)}

    reloaded = MCGForVideoQuestionAnswering.from_pretrained(out).eval()
    assert reloaded.config.fusion_type == "concat"
    inputs = qa_inputs(config)
    torch.testing.assert_close(logits_of(reloaded, inputs), logits_of(load_mcg_original(sd, config), inputs))

    partial = {k: v for k, v in sd.items() if not k.startswith("text_decoder.")}
    torch.save(partial, tmp_path / "pretrain.pt")
    args = ["--checkpoint", str(tmp_path / "pretrain.pt"), "--output_dir", str(tmp_path / "strict"), "--strict"]
    with pytest.raises(ValueError, match="uninitialised"):
        main([*args, "--config", str(tmp_path / "config.json")])


def test_base_concat_preset_has_the_official_sizes():
    preset = MCGConfig.from_json_file(PRESET)
    assert preset.fusion_type == "concat"
    vc, qc, dc = preset.vision_config, preset.question_config, preset.decoder
    assert (vc.image_size, vc.patch_size, vc.num_frames, vc.hidden_size, vc.num_hidden_layers) == (
        224,
        16,
        16,
        768,
        12,
    )
    assert (vc.attention_type, vc.temporal_pooling, vc.layer_norm_eps) == ("divided_space_time", "mean", 1e-6)
    assert (qc.hidden_size, qc.num_hidden_layers, qc.vocab_size, qc.max_position_embeddings) == (768, 12, 30524, 512)
    assert (dc.hidden_size, dc.num_hidden_layers, dc.vocab_size) == (768, 12, 30524)
    with torch.device("meta"):
        model = MCGForVideoQuestionAnswering(preset)
    total = sum(p.numel() for p in model.parameters())
    # the official QA model's active part: TimeSformer 121.26M (no head) + BERT encoder 108.85M (no cross-attention,
    # no MLM head) + decoder with tied LM head 137.88M + projections 0.39M
    assert 368.3e6 < total < 368.5e6, total

    # an official-layout checkpoint of these sizes converts with nothing missing, and the default config is the preset
    sd = official_state_dict(model)
    _, report = convert_mcg_original_state_dict(sd, preset)
    assert report["missing"] == [] and report["unrecognised"] == []
    assert config_from_mcg_original(sd).to_dict() == preset.to_dict()
