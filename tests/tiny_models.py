"""Tiny MCG configs with deliberately odd sizes, so a transposed axis cannot hide behind a square tensor."""

import torch

from modeling_mcg import MCGConfig

VOCAB = 97
PAD, UNK, CLS, SEP, MASK, DEC, ENC = range(7)


def tiny_config(**overrides) -> MCGConfig:
    vision = dict(
        image_size=24,
        patch_size=8,
        num_frames=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        drop_path_rate=0.0,
    )
    text = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=48,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    vision.update(overrides.pop("vision", {}))
    question = {**text, **overrides.pop("question", {})}
    decoder = {**text, **overrides.pop("decoder", {})}
    kwargs = dict(
        vision_config=vision,
        question_config=question,
        decoder=decoder,
        num_fusion_layers=1,
        projection_dim=16,
        pad_token_id=PAD,
        bos_token_id=DEC,
        eos_token_id=SEP,
        decoder_start_token_id=DEC,
        enc_token_id=ENC,
        mask_token_id=MASK,
    )
    kwargs.update(overrides)
    return MCGConfig(**kwargs)


def tiny_inputs(config: MCGConfig, batch=3, frames=5, question_len=7, answer_len=4, pad_frames=False, seed=0):
    """Random (video, question, answer) inputs; the last sample has padded question tokens, answer and frames."""
    g = torch.Generator().manual_seed(seed)
    vc = config.vision_config
    pixels = torch.randn(batch, frames, 3, vc.image_size, vc.image_size, generator=g)
    input_ids = torch.randint(7, VOCAB, (batch, question_len), generator=g)
    input_ids[:, 0] = ENC
    attention_mask = torch.ones_like(input_ids)
    attention_mask[-1, question_len - 2 :] = 0
    input_ids[-1, question_len - 2 :] = PAD
    labels = torch.randint(7, VOCAB, (batch, answer_len), generator=g)
    labels[:, -1] = SEP
    labels[-1, 2:] = -100
    labels[-1, 1] = SEP
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=pixels, labels=labels)
    if pad_frames:
        mask = torch.ones(batch, frames, dtype=torch.long)
        mask[-1, frames - 2 :] = 0
        inputs["video_frame_mask"] = mask
    return inputs
