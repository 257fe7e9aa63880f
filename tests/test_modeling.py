"""MCG model: shapes, attention kernels, checkpointing, generation, multiple choice, save/load, input errors."""

import copy

import pytest
import torch
from tiny_models import DEC, SEP, VOCAB, tiny_config, tiny_inputs

from modeling_mcg import MCGForPreTraining, MCGForVideoQuestionAnswering, MCGModel


def _qa(config):
    return MCGForVideoQuestionAnswering(config).eval()


# ---------------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("pooling", ["mean", "none"])
@pytest.mark.parametrize("pad_frames", [False, True])
@pytest.mark.parametrize("fusion", ["cross", "concat"])
def test_output_shapes(pooling, pad_frames, fusion):
    config = tiny_config(vision={"temporal_pooling": pooling}, fusion_type=fusion)
    b, t, s, a = 3, 5, 7, 4  # 5 frames although config.num_frames == 4: the temporal embedding is interpolated
    n = (24 // 8) ** 2
    k = 1 + n if pooling == "mean" else 1 + t * n
    s_f = s if fusion == "cross" else s + k
    inputs = tiny_inputs(config, batch=b, frames=t, question_len=s, answer_len=a, pad_frames=pad_frames)

    base = MCGModel(config).eval()
    out = base(**{k_: v for k_, v in inputs.items() if k_ != "labels"}, return_cls_attention=True)
    assert out.last_hidden_state.shape == (b, s_f, 32)
    assert out.attention_mask.shape == (b, s_f)
    assert out.video_last_hidden_state.shape == (b, k, 32)
    assert out.question_last_hidden_state.shape == (b, s, 32)
    assert out.video_cls_attention.shape == (b, t, 4, n)
    text = base.encode_text(inputs["input_ids"], inputs["attention_mask"], return_cls_attention=True)
    assert text.cls_attention.shape == (b, 4, s)
    if pad_frames and pooling == "none":  # tokens of the two padded frames are masked out for the fusor
        assert out.video_attention_mask[-1].sum() == 1 + (t - 2) * n
    assert base.get_video_features(inputs["pixel_values_videos"]).pooler_output.shape == (b, 16)
    assert base.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output.shape == (b, 16)

    qa = _qa(config)
    out = qa(**inputs)
    assert out.logits.shape == (b, a, VOCAB)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.encoder_last_hidden_state.shape == (b, s_f, 32)

    pre = MCGForPreTraining(
        tiny_config(
            vision={"temporal_pooling": pooling},
            fusion_type=fusion,
            icl_loss_weight=1.0,
            tcl_loss_weight=1.0,
            vtm_loss_weight=1.0,
        )
    ).train()
    inputs.pop("labels")
    out = pre(**inputs)
    assert out.video_embeds.shape == out.text_embeds.shape == (b, 16)
    assert out.logits_mlm.shape == (b, s, VOCAB)
    assert out.logits_vtm.shape == (3 * b, 2)
    for part in (out.loss_icl, out.loss_tcl, out.loss_mlm, out.loss_vtm):
        assert part.ndim == 0 and torch.isfinite(part)
    torch.testing.assert_close(out.loss, out.loss_icl + out.loss_tcl + out.loss_mlm + out.loss_vtm)


@pytest.mark.parametrize("patch_embedding_type", ["linear", "conv_stem"])
@pytest.mark.parametrize("motion_input", ["none", "frame_difference", "frame_difference_tokens"])
def test_padded_frames_do_not_change_the_answer(motion_input, patch_embedding_type):
    """Whatever a padded frame contains, it must not reach the outputs of the real frames."""
    vision = {"temporal_pooling": "mean", "motion_input": motion_input, "patch_embedding_type": patch_embedding_type}
    config = tiny_config(vision=vision)
    model = _qa(config)
    inputs = tiny_inputs(config, pad_frames=True)
    reference = model(**inputs).logits
    inputs["pixel_values_videos"][-1, -2:] = torch.randn_like(inputs["pixel_values_videos"][-1, -2:]) * 10
    torch.testing.assert_close(model(**inputs).logits, reference)


def _square_sliding_right() -> torch.Tensor:
    """(2, 5, 3, 24, 24): a bright square moving right by 4 px per frame on a black background."""
    moving = torch.zeros(2, 5, 3, 24, 24)
    for t in range(5):
        moving[:, t, :, 8:14, 2 + 4 * t : 8 + 4 * t] = 3.0
    return moving


def test_frame_difference_input_is_silent_on_a_still_video_and_tells_a_motion_from_its_reverse():
    """With `motion_input="frame_difference"` the encoder adds the embedding of each patch's change since the last
    frame: nothing for a still video (the outputs are those of the same weights without it), and a motion and the
    same motion played backwards differ. Without it, and with the zero temporal embedding of the official init,
    the mean over frames cannot tell the two apart: that is what the option is for."""
    motion = MCGModel(tiny_config(vision={"motion_input": "frame_difference"})).eval()
    plain = MCGModel(tiny_config()).eval()
    missing, unexpected = plain.load_state_dict(motion.state_dict(), strict=False)
    assert unexpected == ["vision_model.embeddings.motion_embedding.weight"] and not missing
    assert motion.vision_model.embeddings.motion_embedding.weight.abs().sum() > 0

    g = torch.Generator().manual_seed(3)
    still = torch.randn(2, 1, 3, 24, 24, generator=g).expand(2, 5, 3, 24, 24).contiguous()
    with torch.no_grad():
        torch.testing.assert_close(
            motion.get_video_features(still).last_hidden_state, plain.get_video_features(still).last_hidden_state
        )
        moving = _square_sliding_right()
        backwards = moving.flip(1)
        torch.testing.assert_close(
            plain.get_video_features(moving).last_hidden_state, plain.get_video_features(backwards).last_hidden_state
        )
        forward_tokens = motion.get_video_features(moving).last_hidden_state
        assert (forward_tokens - motion.get_video_features(backwards).last_hidden_state).abs().max() > 1e-3


@pytest.mark.parametrize("patch_size, stem_strides", [(4, [2]), (8, [2, 2]), (12, [2, 2])])
def test_conv_stem_halves_the_frame_until_the_patch_embedding_takes_the_rest(patch_size, stem_strides):
    """`patch_embedding_type="conv_stem"`: 3x3 stride-2 convolutions (channels doubling from `conv_stem_width`) until
    the stride left is 2 or odd, then the patch embedding with that stride; the token grid is that of the linear
    patch embedding, and the frame difference enters the stem as extra input channels."""
    vision = {"image_size": 3 * patch_size, "patch_size": patch_size, "conv_stem_width": 5}
    config = tiny_config(vision={**vision, "patch_embedding_type": "conv_stem", "motion_input": "frame_difference"})
    embeddings = MCGModel(config).vision_model.embeddings
    convs = [layer for layer in embeddings.conv_stem if isinstance(layer, torch.nn.Conv2d)]
    assert [conv.stride[0] for conv in convs] == stem_strides
    assert [(conv.in_channels, conv.out_channels) for conv in convs] == [(6, 5), (5, 10)][: len(convs)]
    assert embeddings.patch_embedding.stride[0] == patch_size // 2 ** len(convs)
    assert embeddings.motion_embedding is None
    tokens = embeddings(torch.randn(2, 3, 3, 3 * patch_size, 5 * patch_size))
    assert tokens.shape == (2, 1 + 3 * 15, 32)  # 3 frames of 3x5 patches


def test_conv_stem_starts_fan_in_scaled_and_round_trips(tmp_path):
    """The stem's convolutions start at std sqrt(2 / fan-in) (the config's 0.2 would grow the activations at each),
    the patch embedding at the config's std; save/load restores the stem."""
    config = tiny_config(vision={"patch_embedding_type": "conv_stem", "conv_stem_width": 16}, initializer_range=0.2)
    model = _qa(config)
    embeddings = model.mcg.vision_model.embeddings
    first, second = embeddings.conv_stem[0], embeddings.conv_stem[2]
    assert first.weight.std().item() == pytest.approx((2 / (3 * 9)) ** 0.5, rel=0.15)
    assert second.weight.std().item() == pytest.approx((2 / (16 * 9)) ** 0.5, rel=0.15)
    assert embeddings.patch_embedding.weight.std().item() == pytest.approx(0.2, rel=0.15)
    model.save_pretrained(tmp_path)
    again = MCGForVideoQuestionAnswering.from_pretrained(tmp_path).eval()
    inputs = tiny_inputs(config)
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).logits, model(**inputs).logits)


def _reverse_gap(vision: dict) -> float:
    """Largest difference between the pooled video features of a motion and of the same motion played backwards."""
    moving = _square_sliding_right()
    model = MCGModel(tiny_config(vision=vision)).eval()
    with torch.no_grad():
        forward = model.get_video_features(moving).last_hidden_state
        backward = model.get_video_features(moving.flip(1)).last_hidden_state
    return (forward - backward).abs().max().item()


def test_conv_stem_tells_a_motion_from_its_reverse_only_with_the_frame_difference():
    gaps = {
        m: _reverse_gap({"patch_embedding_type": "conv_stem", "motion_input": m}) for m in ("none", "frame_difference")
    }
    assert gaps["none"] < 1e-5 and gaps["frame_difference"] > 1e-3


def test_frame_difference_tokens_keep_the_stem_on_the_frames_and_embed_the_change_apart():
    """`motion_input="frame_difference_tokens"`: the stem sees the frames alone (its first convolution takes 3
    channels, as without motion input) and the change has its own patch projection added to the tokens, so a still
    video gives the frames-only model's features and a motion differs from its reverse."""
    vision = {"patch_embedding_type": "conv_stem", "conv_stem_width": 5}
    tokens = MCGModel(tiny_config(vision={**vision, "motion_input": "frame_difference_tokens"})).eval()
    frames_only = MCGModel(tiny_config(vision={**vision, "motion_input": "none"})).eval()
    embeddings = tokens.vision_model.embeddings
    assert embeddings.conv_stem[0].in_channels == 3 and embeddings.motion_embedding.in_channels == 3
    missing, unexpected = frames_only.load_state_dict(tokens.state_dict(), strict=False)
    assert unexpected == ["vision_model.embeddings.motion_embedding.weight"] and not missing

    g = torch.Generator().manual_seed(5)
    still = torch.randn(2, 1, 3, 24, 24, generator=g).expand(2, 5, 3, 24, 24).contiguous()
    with torch.no_grad():
        torch.testing.assert_close(
            tokens.get_video_features(still).last_hidden_state, frames_only.get_video_features(still).last_hidden_state
        )
    assert _reverse_gap({**vision, "motion_input": "frame_difference_tokens"}) > 1e-3


def test_with_a_non_zero_temporal_embedding_frames_alone_tell_a_motion_from_its_reverse():
    """Without a frame-difference input the temporal embedding (started at std 2.0, as the tiny preset does) tells
    the frames apart, so the pooled video features of a motion and of the same motion played backwards differ."""
    vision = {"patch_embedding_type": "conv_stem", "motion_input": "none", "temporal_embedding_init_std": 2.0}
    assert _reverse_gap(vision) > 1e-3


@pytest.mark.parametrize("frames", [5, 16])
def test_a_sinusoidal_temporal_embedding_starts_ordered_at_the_configured_scale(frames):
    """`temporal_embedding_init="sinusoidal"`: the lowest frequency's cosine falls from the first frame to the last
    (so which frame came first is a linear read-out at step 0), the table's mean square is the configured std
    squared, and a std of 0 (the warm-start setting) still starts from zeros."""
    vision = {"num_frames": frames, "temporal_embedding_init_std": 2.0, "temporal_embedding_init": "sinusoidal"}
    table = MCGModel(tiny_config(vision=vision)).vision_model.embeddings.temporal_embedding.detach()[0]  # (t, d)
    assert table.shape == (frames, 32)
    assert (table[1:, 0] < table[:-1, 0]).all()
    assert table.pow(2).mean().item() == pytest.approx(4.0, rel=1e-5)
    assert torch.unique(table, dim=0).shape[0] == frames  # every frame its own vector
    warm = MCGModel(tiny_config(vision={**vision, "temporal_embedding_init_std": 0.0}))
    assert not warm.vision_model.embeddings.temporal_embedding.any()


def test_an_unknown_temporal_embedding_init_names_the_choices():
    with pytest.raises(ValueError, match=r"temporal_embedding_init must be one of \['normal', 'sinusoidal'\]"):
        tiny_config(vision={"temporal_embedding_init": "sine"})


def test_frame_count_is_free_at_run_time():
    model = _qa(tiny_config())
    for frames in (1, 2, 4, 9):
        out = model(**tiny_inputs(model.config, frames=frames))
        assert torch.isfinite(out.loss)


def test_resolution_is_free_at_run_time():
    model = _qa(tiny_config())
    inputs = tiny_inputs(model.config)
    inputs["pixel_values_videos"] = torch.randn(3, 5, 3, 32, 40)  # 4x5 patches instead of 3x3
    assert torch.isfinite(model(**inputs).loss)


# ---------------------------------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("pooling", ["mean", "none"])
def test_eager_and_sdpa_agree(pooling):
    torch.manual_seed(0)
    eager = _qa(tiny_config(vision={"temporal_pooling": pooling}, attn_implementation="eager"))
    sdpa = _qa(tiny_config(vision={"temporal_pooling": pooling}, attn_implementation="sdpa"))
    sdpa.load_state_dict(eager.state_dict())
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    inputs = tiny_inputs(eager.config, pad_frames=True)
    out_e, out_s = eager(**inputs), sdpa(**inputs)
    torch.testing.assert_close(out_s.logits, out_e.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_s.loss, out_e.loss, atol=1e-5, rtol=1e-5)


def test_default_attention_is_sdpa_and_attention_maps_come_from_eager():
    model = _qa(tiny_config())
    assert model.config._attn_implementation == "sdpa"
    inputs = tiny_inputs(model.config)
    out = model(**inputs, output_attentions=True)
    assert len(out.cross_attentions) == 2 and out.cross_attentions[0].shape == (3, 4, 4, 7)
    assert len(out.encoder_outputs.video_attentions) == 2
    torch.testing.assert_close(out.cross_attentions[0].sum(-1), torch.ones(3, 4, 4))


def _vision_layers(model):
    return model.get_encoder().vision_model.layers if hasattr(model, "get_encoder") else model.vision_model.layers


def _record_vision_checkpoints(model) -> list[str]:
    """Wrap each vision layer's checkpoint function so that every function it is given is recorded by name."""
    names = []
    for layer in _vision_layers(model):

        def recording(function, *args, _checkpoint=layer._gradient_checkpointing_func, **kwargs):
            names.append(getattr(function, "func", function).__name__)  # a partial of the layer's forward
            return _checkpoint(function, *args, **kwargs)

        layer._gradient_checkpointing_func = recording
    return names


def _count_vision_layer_calls(model) -> dict:
    """Calls of each vision layer's temporal attention, spatial attention and MLP. Pre-hooks: a non-reentrant
    recompute stops as soon as it has what the backward needs, which can be inside the last module it runs."""
    counts = {}
    for i, layer in enumerate(_vision_layers(model)):
        for part in ("temporal_attn", "spatial_attn", "mlp"):
            key = f"{i}.{part}"
            counts[key] = 0
            getattr(layer, part).register_forward_pre_hook(
                lambda *_, key=key: counts.__setitem__(key, counts[key] + 1)
            )
    return counts


def _check_checkpointing(plain, inputs, loss_of, use_reentrant, output_attentions=False):
    """Forward+backward of `plain` and of a checkpointed copy from the same RNG state (so dropout and stochastic depth
    draw the same masks): same loss, gradients and vision attention maps. Each vision layer is checkpointed once,
    as a whole (transformers' `GradientCheckpointingLayer` contract), and recomputed once in the backward."""
    checkpointed = copy.deepcopy(plain)
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
    assert all(layer.gradient_checkpointing for layer in _vision_layers(checkpointed))
    checkpointed_functions = _record_vision_checkpoints(checkpointed)
    plain_calls, checkpointed_calls = _count_vision_layer_calls(plain), _count_vision_layer_calls(checkpointed)

    outputs = []
    for model in (plain, checkpointed):
        torch.manual_seed(0)
        outputs.append(model(**inputs, output_attentions=output_attentions))
        loss_of(outputs[-1]).backward()

    out_plain, out_ckpt = outputs
    torch.testing.assert_close(loss_of(out_ckpt), loss_of(out_plain))
    if output_attentions:
        attentions = [getattr(out, "encoder_outputs", out).video_attentions for out in outputs]
        assert len(attentions[1]) == 2
        for got, expected in zip(attentions[1], attentions[0]):
            torch.testing.assert_close(got, expected)
    for (name, p), (_, q) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        if p.grad is None:
            assert q.grad is None, name
            continue
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)
    assert checkpointed_functions == ["forward"] * 2
    assert checkpointed_calls == {key: 2 * calls for key, calls in plain_calls.items()}  # forward + one recompute


def _dropout_config(dropout, **overrides):
    """The tiny config with dropout and stochastic depth at `dropout` in the video encoder; at 0 the vision layers
    run their fused temporal projection."""
    vision = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout, "drop_path_rate": dropout}
    return tiny_config(vision=vision, **overrides)


@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_gradient_checkpointing_gives_same_loss_and_gradients(attn_implementation, dropout):
    """The whole training loss (answer LM + ICL + TCL), with padded frames. Attention maps are compared in the eager
    runs only, where recording them does not change the kernel."""
    config = _dropout_config(
        dropout, icl_loss_weight=0.5, tcl_loss_weight=0.5, attn_implementation=attn_implementation
    )
    _check_checkpointing(
        MCGForVideoQuestionAnswering(config).train(),
        tiny_inputs(config, pad_frames=True),
        loss_of=lambda out: out.loss,
        use_reentrant=False,
        output_attentions=attn_implementation == "eager",
    )


@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["no-dropout", "dropout"])
def test_reentrant_gradient_checkpointing_of_the_video_encoder(dropout):
    """`use_reentrant=True` (the one kwarg that changes how inputs must be passed) through the vision layers."""
    config = _dropout_config(dropout)
    inputs = tiny_inputs(config, pad_frames=True)
    inputs.pop("labels")
    _check_checkpointing(
        MCGModel(config).train(),
        inputs,
        loss_of=lambda out: out.video_last_hidden_state.square().mean(),
        use_reentrant=True,
        output_attentions=True,
    )


def test_reentrant_gradient_checkpointing_trains_the_qa_model():
    """The fusor and decoder layers take the video / encoder states positionally: a reentrant checkpoint treats only
    positional tensors as inputs, and a keyword one made the backward run the encoder's graph twice."""
    torch.manual_seed(0)
    plain = MCGForVideoQuestionAnswering(tiny_config()).train()
    model = copy.deepcopy(plain)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    inputs = tiny_inputs(model.config, pad_frames=True)
    loss, reference = model(**inputs).loss, plain(**inputs).loss
    loss.backward()
    reference.backward()
    torch.testing.assert_close(loss, reference)
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_vision_layer_checkpointing_follows_the_switch():
    """Eval mode, no_grad and `gradient_checkpointing_disable()` run the vision layers without checkpointing."""
    model = MCGForVideoQuestionAnswering(tiny_config())
    model.gradient_checkpointing_enable()
    checkpointed_functions = _record_vision_checkpoints(model)
    inputs = tiny_inputs(model.config)
    model.eval()(**inputs).loss.backward()
    with torch.no_grad():
        model.train()(**inputs)
    assert checkpointed_functions == []
    model(**inputs)
    assert len(checkpointed_functions) == 2
    model.gradient_checkpointing_disable()
    assert not any(layer.gradient_checkpointing for layer in _vision_layers(model))
    model(**inputs)
    assert len(checkpointed_functions) == 2


def test_bf16_autocast_forward_backward():
    model = MCGForVideoQuestionAnswering(tiny_config(tcl_loss_weight=1.0, icl_loss_weight=1.0)).train()
    inputs = tiny_inputs(model.config, pad_frames=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inputs)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------------------------------------------- generation


def _question_inputs(config, **kw):
    inputs = tiny_inputs(config, pad_frames=True, **kw)
    inputs.pop("labels")
    return inputs


def test_cached_greedy_equals_uncached():
    model = _qa(tiny_config())
    inputs = _question_inputs(model.config)
    cached = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    uncached = model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
    assert cached.shape[0] == 3 and cached.shape[1] <= 9
    assert (cached[:, 0] == DEC).all()


def test_beam_search_and_return_sequences():
    model = _qa(tiny_config())
    inputs = _question_inputs(model.config)
    beams = model.generate(**inputs, num_beams=3, num_return_sequences=2, max_new_tokens=5)
    assert beams.shape[0] == 6 and beams.shape[1] <= 6
    out = model.generate(
        **inputs, num_beams=3, max_new_tokens=4, min_new_tokens=4, return_dict_in_generate=True, output_scores=True
    )
    assert out.sequences.shape == (3, 5)
    assert out.sequences_scores.shape == (3,)
    sampled = model.generate(**inputs, do_sample=True, top_k=5, max_new_tokens=3, min_new_tokens=3)
    assert sampled.shape == (3, 4)


def test_score_choices_matches_per_candidate_forward():
    model = _qa(tiny_config())
    inputs = _question_inputs(model.config)
    choices = torch.full((3, 3, 4), -100)
    choices[:, :, 0] = torch.tensor([[10, 11, 12], [13, 14, 15], [16, 17, 18]])
    choices[:, :, 1] = torch.tensor([[20, SEP, 21], [SEP, 22, 23], [24, 25, SEP]])
    choices[:, :, 2] = torch.where(choices[:, :, 1] == SEP, -100, SEP)
    choices[2, 2] = -100  # a question with only two candidates
    scores = model.score_choices(**inputs, choice_labels=choices)
    assert scores.shape == (3, 3) and scores[2, 2] == float("-inf")
    for i in range(3):
        for c in range(3):
            labels = choices[i, c][choices[i, c] != -100][None]
            if labels.numel() == 0:
                continue
            single = {k: v[i : i + 1] for k, v in inputs.items()}
            log_probs = model(**single, labels=labels).logits.log_softmax(-1)
            expected = log_probs.gather(-1, labels[..., None]).mean()
            torch.testing.assert_close(scores[i, c], expected, atol=1e-5, rtol=1e-5)


def _shared_video_inputs(config):
    """Four questions about two videos: once with each video repeated per question, once with `video_index`."""
    inputs = tiny_inputs(config, batch=4, pad_frames=True)
    video_index = torch.tensor([1, 0, 1, 1])
    videos = inputs["pixel_values_videos"][:2]
    frame_mask = inputs["video_frame_mask"][[0, 3]]  # video 1 has padded frames
    repeated = {**inputs, "pixel_values_videos": videos[video_index], "video_frame_mask": frame_mask[video_index]}
    shared = {**inputs, "pixel_values_videos": videos, "video_frame_mask": frame_mask, "video_index": video_index}
    return repeated, shared


@pytest.mark.parametrize("fusion_type", ["cross", "concat"])
def test_video_index_shares_one_video_pass_between_questions(fusion_type):
    model = _qa(tiny_config(icl_loss_weight=1.0, tcl_loss_weight=1.0, fusion_type=fusion_type))
    repeated, shared = _shared_video_inputs(model.config)
    expected = model(**repeated)
    projected = []
    if fusion_type == "cross":
        key_projection = model.mcg.fusor.layers[0].cross_attn.k_proj
        hook = key_projection.register_forward_hook(lambda module, args, out: projected.append(args[0].shape[0]))
    got = model(**shared)
    if fusion_type == "cross":
        hook.remove()
        assert projected == [2]  # keys of the 2 distinct videos, not of the 4 questions
    close = dict(atol=1e-4, rtol=1e-4)  # batches of 4 and 2 videos may take different matmul kernels
    torch.testing.assert_close(got.logits, expected.logits, **close)
    # the fusor projects each video's keys and values once: the gradients are those of one projection per question
    expected_grads = torch.autograd.grad(expected.loss, list(model.parameters()), allow_unused=True)
    got_grads = torch.autograd.grad(got.loss, list(model.parameters()), allow_unused=True)
    for (name, _), want, have in zip(model.named_parameters(), expected_grads, got_grads):
        assert (want is None) == (have is None), name
        if want is not None:
            torch.testing.assert_close(have, want, **close, msg=name)
    torch.testing.assert_close(got.loss_lm, expected.loss_lm, **close)
    torch.testing.assert_close(got.loss_tcl, expected.loss_tcl, **close)
    video = got.encoder_outputs.video_last_hidden_state
    torch.testing.assert_close(video, expected.encoder_outputs.video_last_hidden_state, **close)
    assert video.shape[0] == 4 and torch.equal(video[0], video[2])
    # ICL: a question's duplicate video scores exactly like its own, so sharing one copy leaves the loss unchanged
    torch.testing.assert_close(got.loss_icl, expected.loss_icl, **close)

    for inputs in (repeated, shared):
        inputs.pop("labels")
    torch.testing.assert_close(
        model.generate(**shared, num_beams=2, max_new_tokens=5),
        model.generate(**repeated, num_beams=2, max_new_tokens=5),
    )
    choices = torch.full((4, 2, 2), SEP)
    choices[:, :, 0] = torch.tensor([[10, 11], [12, 13], [14, 15], [16, 17]])
    torch.testing.assert_close(
        model.score_choices(**shared, choice_labels=choices),
        model.score_choices(**repeated, choice_labels=choices),
        **close,
    )


@pytest.mark.parametrize(
    "video_index, message",
    [(torch.tensor([0, 1, 2]), "shape \\(batch,\\) = \\(4,\\)"), (torch.tensor([0, 1, 2, 1]), "lie in \\[0, 2\\)")],
)
def test_bad_video_index_raises_value_error(video_index, message):
    model = _qa(tiny_config())
    _, shared = _shared_video_inputs(model.config)
    with pytest.raises(ValueError, match=message):
        model(**{**shared, "video_index": video_index})


# ---------------------------------------------------------------------------------------------------- save / load


def test_save_and_load_round_trip(tmp_path):
    model = _qa(tiny_config())
    inputs = tiny_inputs(model.config)
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "modeling_mcg.py",
        "configuration_mcg.py",
        "losses.py",
    } <= files
    reloaded, info = MCGForVideoQuestionAnswering.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)
    assert reloaded.lm_head.out_proj.weight.data_ptr() == reloaded.decoder.embeddings.embed_tokens.weight.data_ptr()
    assert reloaded.generation_config.decoder_start_token_id == DEC
    assert reloaded.generation_config.eos_token_id == SEP


def test_auto_classes_load_with_the_package_imported(tmp_path):
    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

    model = _qa(tiny_config())
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "MCGConfig"
    assert isinstance(AutoModelForSeq2SeqLM.from_pretrained(tmp_path), MCGForVideoQuestionAnswering)
    base = AutoModel.from_pretrained(tmp_path)
    assert isinstance(base, MCGModel)
    inputs = _question_inputs(model.config)
    torch.testing.assert_close(base(**inputs).last_hidden_state, model.mcg(**inputs).last_hidden_state)


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda x: x.update(pixel_values_videos=x["pixel_values_videos"][0]), "batch, frames, channels"),
        (lambda x: x.update(pixel_values_videos=x["pixel_values_videos"].transpose(2, 3)), "channels"),
        (lambda x: x.update(pixel_values_videos=x["pixel_values_videos"][..., :20, :20]), "multiple of patch_size"),
        (lambda x: x.update(pixel_values_videos=x["pixel_values_videos"][:2]), "batch size 2"),
        (
            lambda x: x.update(input_ids=x["input_ids"][:, :0], attention_mask=x["attention_mask"][:, :0]),
            "at least one",
        ),
        (lambda x: x["attention_mask"].__setitem__(0, 0), "empty"),
        (lambda x: x.update(video_frame_mask=torch.zeros(3, 5, dtype=torch.long)), "every frame"),
        (lambda x: x.update(video_frame_mask=torch.ones(3, 4, dtype=torch.long)), "video_frame_mask must have shape"),
        (lambda x: x.pop("pixel_values_videos"), "pixel_values_videos is required"),
        (
            lambda x: x.update(pixel_values_videos=(x["pixel_values_videos"] * 50).clamp(0, 255).to(torch.uint8)),
            "torch.uint8, not floating point: raw frames",
        ),
    ],
)
def test_bad_inputs_raise_value_error(mutate, message):
    model = _qa(tiny_config())
    inputs = tiny_inputs(model.config)
    mutate(inputs)
    with pytest.raises(ValueError, match=message):
        model(**inputs)
