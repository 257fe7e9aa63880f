"""The HF unimodal converters reproduce the source models exactly: TimeSformer → IVM, ViT → IVM (warm start),
BERT → question encoder and decoder + LM head. Source weights are perturbed away from their init so a swapped or
missing key cannot hide behind ones/zeros."""

import json

import pytest
import torch
from transformers import (
    BertConfig,
    BertLMHeadModel,
    BertModel,
    TimesformerConfig,
    TimesformerModel,
    ViTConfig,
    ViTModel,
)

from modeling_mcg import MCGConfig, MCGForPreTraining, MCGForVideoQuestionAnswering
from modeling_mcg.convert_hf_checkpoints import (
    convert_bert_state_dict,
    convert_timesformer_state_dict,
    from_unimodal_pretrained,
    load_unimodal_weights,
    main,
)

T, SIZE, PATCH, D = 4, 32, 8, 32
N = (SIZE // PATCH) ** 2
VOCAB = 97
TEXT = dict(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def _perturb(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def _mcg_config(**vision):
    vision_config = dict(
        image_size=SIZE,
        patch_size=PATCH,
        num_frames=T,
        hidden_size=D,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        temporal_pooling="none",
        drop_path_rate=0.0,
        layer_norm_eps=1e-6,
    )
    vision_config.update(vision)
    text = dict(TEXT, max_position_embeddings=48, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return MCGConfig(
        vision_config=vision_config,
        question_config=text,
        decoder=text,
        pad_token_id=0,
        eos_token_id=3,
        mask_token_id=4,
        bos_token_id=5,
        decoder_start_token_id=5,
        enc_token_id=6,
    )


def _timesformer():
    config = TimesformerConfig(
        image_size=SIZE,
        patch_size=PATCH,
        num_frames=T,
        hidden_size=D,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        attention_type="divided_space_time",
    )
    return _perturb(TimesformerModel(config))


def _bert_config(**kwargs):
    return BertConfig(
        **TEXT, max_position_embeddings=48, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kwargs
    )


def _hf_to_frame_major(states, t):
    """transformers' TimesformerModel orders patches (patch, frame) with time fastest; MCG frame-major."""
    b, _, d = states.shape
    patches = states[:, 1:].reshape(b, -1, t, d).transpose(1, 2).reshape(b, -1, d)
    return torch.cat([states[:, :1], patches], dim=1)


def test_timesformer_matches_transformers(tmp_path):
    hf = _timesformer()
    hf.save_pretrained(tmp_path / "timesformer")
    model = MCGForVideoQuestionAnswering(_mcg_config()).eval()
    report = load_unimodal_weights(model, vision=str(tmp_path / "timesformer"))
    assert not [k for k in report["missing"] if k.startswith("mcg.vision_model.")]
    assert report["unused"] == []
    pixels = torch.randn(2, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.mcg.vision_model(pixels).last_hidden_state
        theirs = hf(pixels).last_hidden_state
    assert ours.shape == (2, 1 + T * N, D)
    torch.testing.assert_close(ours, _hf_to_frame_major(theirs, T), atol=1e-5, rtol=1e-5)
    # the reordering matters: without it the patch tokens differ
    assert not torch.allclose(ours, theirs, atol=1e-3)


def test_timesformer_time_embeddings_resized_nearest():
    hf = _timesformer()
    config = _mcg_config(num_frames=8)
    converted = convert_timesformer_state_dict(hf.state_dict(), config)
    temporal = converted["mcg.vision_model.embeddings.temporal_embedding"]
    assert temporal.shape == (1, 8, D)
    torch.testing.assert_close(temporal[:, ::2], hf.embeddings.time_embeddings.detach())
    torch.testing.assert_close(temporal[:, 1::2], hf.embeddings.time_embeddings.detach())


def test_vit_warm_start_static_clip_matches_vit(tmp_path):
    hf = _perturb(
        ViTModel(ViTConfig(image_size=SIZE, patch_size=PATCH, **{k: v for k, v in TEXT.items() if k != "vocab_size"}))
    )
    hf.save_pretrained(tmp_path / "vit")
    config = _mcg_config(temporal_pooling="mean", layer_norm_eps=hf.config.layer_norm_eps)
    model = MCGForVideoQuestionAnswering(config).eval()
    report = load_unimodal_weights(model, vision=str(tmp_path / "vit"))
    assert not [k for k in report["missing"] if k.startswith("mcg.vision_model.")]
    layer = model.mcg.vision_model.layers[1]
    torch.testing.assert_close(layer.temporal_attn.q_proj.weight, layer.spatial_attn.q_proj.weight)
    torch.testing.assert_close(layer.temporal_layer_norm.bias, layer.layer_norm1.bias)
    assert layer.temporal_fc.weight.abs().sum() == 0
    assert model.mcg.vision_model.embeddings.temporal_embedding.abs().sum() == 0

    frame = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    clip = frame[:, None].expand(2, T, 3, SIZE, SIZE)
    with torch.no_grad():
        ours = model.mcg.vision_model(clip).last_hidden_state
        theirs = hf(frame).last_hidden_state
    torch.testing.assert_close(ours[:, 0], theirs[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[:, 1:], theirs[:, 1:], atol=1e-5, rtol=1e-5)  # patches mean-pooled over time
    # the equality rests on the zero temporal_fc: with it non-zero the temporal branch changes the [CLS]
    with torch.no_grad():
        layer.temporal_fc.weight.normal_(std=0.1, generator=torch.Generator().manual_seed(5))
        perturbed = model.mcg.vision_model(clip).last_hidden_state
    assert not torch.allclose(perturbed[:, 0], theirs[:, 0], atol=1e-3)


def test_bert_question_encoder_matches_bert_model():
    hf = _perturb(BertModel(_bert_config(), add_pooling_layer=False))
    model = MCGForVideoQuestionAnswering(_mcg_config()).eval()
    converted = convert_bert_state_dict(hf.state_dict(), model.config, target="question")
    assert all(k.startswith("mcg.question_model.") for k in converted)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert unexpected == []
    assert not [k for k in missing if k.startswith("mcg.question_model.")]
    g = torch.Generator().manual_seed(3)
    input_ids = torch.randint(1, VOCAB, (3, 9), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[-1, 6:] = 0
    with torch.no_grad():
        ours = model.mcg.encode_text(input_ids, attention_mask).last_hidden_state
        theirs = hf(input_ids, attention_mask=attention_mask).last_hidden_state
    real = attention_mask.bool()  # padded positions are masked out everywhere: MCG gives them no position of their own
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)


def test_bert_decoder_and_lm_head_match_bert_lm_head_model():
    hf = _perturb(BertLMHeadModel(_bert_config(is_decoder=True, add_cross_attention=True)))
    model = MCGForVideoQuestionAnswering(_mcg_config()).eval()
    converted, unused = convert_bert_state_dict(hf.state_dict(), model.config, target="decoder", return_unused=True)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert unexpected == []
    assert not [k for k in missing if k.startswith(("decoder.", "lm_head."))]
    g = torch.Generator().manual_seed(4)
    input_ids = torch.randint(1, VOCAB, (2, 7), generator=g)
    encoder_states = torch.randn(2, 5, D, generator=g)
    encoder_mask = torch.ones(2, 5, dtype=torch.long)
    encoder_mask[1, 3:] = 0
    with torch.no_grad():
        hidden = model.decoder(
            input_ids, encoder_hidden_states=encoder_states, encoder_attention_mask=encoder_mask
        ).last_hidden_state
        ours = model.lm_head(hidden)
        theirs = hf(input_ids, encoder_hidden_states=encoder_states, encoder_attention_mask=encoder_mask).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_from_unimodal_pretrained_report_and_cli(tmp_path):
    _timesformer().save_pretrained(tmp_path / "vision")
    bert = _perturb(BertLMHeadModel(_bert_config(is_decoder=True, add_cross_attention=True)))
    bert.save_pretrained(tmp_path / "text")
    config = _mcg_config()
    model, report = from_unimodal_pretrained(config, vision=str(tmp_path / "vision"), text=str(tmp_path / "text"))
    missing = set(report["missing"])
    assert "decoder.layers.0.cross_attn.q_proj.weight" in missing  # cross-attention stays at init
    assert "decoder.layers.0.self_attn.q_proj.weight" not in missing
    assert "mcg.question_model.layers.1.mlp.fc2.weight" not in missing
    assert "mcg.fusor.layers.0.self_attn.q_proj.weight" in missing
    assert not [k for k in missing if k.startswith(("mcg.vision_model.", "mcg.question_model."))]
    bert_cross = bert.bert.encoder.layer[0].crossattention.self.query.weight
    assert not torch.allclose(model.decoder.layers[0].cross_attn.q_proj.weight, bert_cross)
    torch.testing.assert_close(
        model.decoder.layers[0].self_attn.k_proj.weight, bert.bert.encoder.layer[0].attention.self.key.weight
    )

    config.to_json_file(tmp_path / "mcg.json")
    out = tmp_path / "out"
    main(
        [
            "--vision",
            str(tmp_path / "vision"),
            "--text",
            str(tmp_path / "text"),
            "--output",
            str(out),
            "--config",
            str(tmp_path / "mcg.json"),
        ]
    )
    # one entry point: the model class itself carries no converter (it travels as remote code without one)
    assert not hasattr(MCGForVideoQuestionAnswering, "from_unimodal_pretrained")
    pretraining, pretraining_report = from_unimodal_pretrained(
        config, vision=str(tmp_path / "vision"), text=str(tmp_path / "text"), model_class=MCGForPreTraining
    )
    assert isinstance(pretraining, MCGForPreTraining)
    assert not [k for k in pretraining_report["missing"] if k.startswith(("mcg.vision_model.", "mcg.question_model."))]

    saved = json.loads((out / "conversion_report.json").read_text())
    assert sorted(saved["missing"]) == sorted(report["missing"])
    reloaded = MCGForVideoQuestionAnswering.from_pretrained(out).eval()
    torch.testing.assert_close(
        reloaded.mcg.vision_model.layers[1].temporal_fc.weight, model.mcg.vision_model.layers[1].temporal_fc.weight
    )


def test_vocabulary_grows_and_shape_errors_are_clear():
    hf = _perturb(BertModel(_bert_config(), add_pooling_layer=False))
    config = _mcg_config()
    config.question_config.vocab_size = config.decoder.vocab_size = VOCAB + 2
    model = MCGForVideoQuestionAnswering(config)
    before = model.mcg.question_model.embeddings.embed_tokens.weight[VOCAB:].clone()
    report = load_unimodal_weights(model, text=hf)
    assert any("embed_tokens" in r for r in report["resized"])
    embed = model.mcg.question_model.embeddings.embed_tokens.weight
    torch.testing.assert_close(embed[:VOCAB], hf.embeddings.word_embeddings.weight)
    torch.testing.assert_close(embed[VOCAB:], before)  # [DEC]/[ENC] keep their init

    with pytest.raises(ValueError, match="num_hidden_layers"):
        one_layer = {k: v for k, v in hf.state_dict().items() if ".layer.1." not in k}
        convert_bert_state_dict(one_layer, _mcg_config(), target="question")
    with pytest.raises(ValueError, match="target"):
        convert_bert_state_dict(hf.state_dict(), _mcg_config(), target="fusor")
    with pytest.raises(ValueError, match="expects"):
        convert_timesformer_state_dict(_timesformer().state_dict(), _mcg_config(hidden_size=64))
