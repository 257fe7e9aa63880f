"""transformers' model contract on MCGModel, MCGForVideoQuestionAnswering and MCGForPreTraining: config-driven
outputs, `return_dict=False` tuples, recorded hidden states (eager vs SDPA), the `get_*_features` convention,
one shared vocabulary under `resize_token_embeddings`, per-layer gradient checkpointing through transformers' own
switch, generation (left padding, scores, static cache, saved defaults), quiet normal loading, and the state-dict
keys of folders saved before the model file was redesigned."""

import ast
import copy
import json
import logging
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from tiny_models import ENC, PAD, VOCAB, tiny_config, tiny_inputs
from torch.nn.parallel import DistributedDataParallel
from torch.utils.flop_counter import FlopCounterMode
from transformers import AttentionInterface, AutoModelForSeq2SeqLM, TrainingArguments
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput
from transformers.utils import logging as hf_logging

import modeling_mcg
from modeling_mcg import MCGConfig, MCGForPreTraining, MCGForVideoQuestionAnswering, MCGModel
from modeling_mcg.training import MCGTrainer

CLASSES = [MCGModel, MCGForVideoQuestionAnswering, MCGForPreTraining]
FIXTURES = Path(__file__).parent / "fixtures"
SAME = dict(atol=1e-6, rtol=1e-6)


def _config(**overrides):
    return tiny_config(icl_loss_weight=0.5, tcl_loss_weight=0.5, vtm_loss_weight=0.5, **overrides)


def _inputs(model_class, config, **kwargs):
    inputs = tiny_inputs(config, pad_frames=True, **kwargs)
    if model_class is not MCGForVideoQuestionAnswering:
        inputs.pop("labels")
    return inputs


def _model(model_class, config, seed=0):
    torch.manual_seed(seed)
    return model_class(config).eval()


def _run(model, inputs, **kwargs):
    torch.manual_seed(0)  # MLM masking and VTM negatives draw from the global RNG
    with torch.no_grad():
        return model(**inputs, **kwargs)


# Recorded outputs of each class: name → number of entries (hidden states: layers + 1; attentions: layers).
# Tiny config: 2 vision, 2 question, 1 fusor and 2 decoder layers.
RECORDED = {
    MCGModel: {
        "hidden_states": 2,
        "attentions": 1,
        "cross_attentions": 1,
        "video_hidden_states": 3,
        "video_attentions": 2,
        "question_hidden_states": 3,
        "question_attentions": 2,
    },
    MCGForVideoQuestionAnswering: {
        "encoder_hidden_states": 2,
        "encoder_attentions": 1,
        "decoder_hidden_states": 3,
        "decoder_attentions": 2,
        "cross_attentions": 2,
    },
    MCGForPreTraining: {
        "hidden_states": 2,
        "attentions": 1,
        "cross_attentions": 1,
        "video_hidden_states": 3,
        "video_attentions": 2,
    },
}


def _recorded(output, model_class):
    return {name: getattr(output, name) for name in RECORDED[model_class]}


def _assert_recorded(output, model_class):
    for name, count in RECORDED[model_class].items():
        value = getattr(output, name)
        assert isinstance(value, tuple) and len(value) == count, (name, value if value is None else len(value))
        assert all(isinstance(x, torch.Tensor) for x in value), name


# ---------------------------------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("model_class", CLASSES, ids=lambda c: c.__name__)
def test_config_flags_give_the_same_outputs_as_call_arguments(model_class):
    config = _config(attn_implementation="eager")
    model = _model(model_class, config)
    inputs = _inputs(model_class, config)
    plain = _run(model, inputs)
    assert all(getattr(plain, name) is None for name in RECORDED[model_class])
    from_call = _run(model, inputs, output_hidden_states=True, output_attentions=True)
    _assert_recorded(from_call, model_class)

    model.config.output_hidden_states = True
    model.config.output_attentions = True
    from_config = _run(model, inputs)
    _assert_recorded(from_config, model_class)
    for name, expected in _recorded(from_call, model_class).items():
        for got, want in zip(getattr(from_config, name), expected):
            torch.testing.assert_close(got, want, msg=name)
    # the call argument wins over the config
    overridden = _run(model, inputs, output_hidden_states=False, output_attentions=False)
    assert all(getattr(overridden, name) is None for name in RECORDED[model_class])


@pytest.mark.parametrize("model_class", CLASSES, ids=lambda c: c.__name__)
def test_return_dict_false_gives_the_tuple_of_the_output(model_class):
    config = _config()
    model = _model(model_class, config)
    inputs = _inputs(model_class, config)
    expected = _run(model, inputs).to_tuple()
    for got in (_run(model, inputs, return_dict=False), _run(_with_config(model, return_dict=False), inputs)):
        assert type(got) is tuple and len(got) == len(expected)
        for x, y in zip(got, expected):
            if isinstance(y, torch.Tensor):
                torch.testing.assert_close(x, y)
    assert isinstance(_run(model, inputs, return_dict=True), ModelOutput)


def _with_config(model, **changes):
    model = copy.deepcopy(model)
    for name, value in changes.items():
        setattr(model.config, name, value)
    return model


@pytest.mark.parametrize("pooling", ["mean", "none"])
@pytest.mark.parametrize("model_class", CLASSES, ids=lambda c: c.__name__)
def test_eager_and_sdpa_agree_on_every_recorded_hidden_state(model_class, pooling):
    eager = _model(model_class, _config(vision={"temporal_pooling": pooling}, attn_implementation="eager"))
    sdpa = _model(model_class, _config(vision={"temporal_pooling": pooling}, attn_implementation="sdpa"))
    sdpa.load_state_dict(eager.state_dict())
    assert sdpa.config._attn_implementation == "sdpa"
    inputs = _inputs(model_class, eager.config)
    out_e = _run(eager, inputs, output_hidden_states=True)
    out_s = _run(sdpa, inputs, output_hidden_states=True)
    names = [name for name in RECORDED[model_class] if name.endswith("hidden_states")]
    for name in names:
        assert len(getattr(out_s, name)) == RECORDED[model_class][name]
        for got, want in zip(getattr(out_s, name), getattr(out_e, name)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=name)


_STACK_PREFIXES = {
    "vision_config": ("mcg.vision_model.",),
    "question_config": ("mcg.question_model.", "mcg.fusor."),  # the fusor is built from question_config
    "decoder": ("decoder.",),
}


def _recording_kernel(calls):
    """An attention function registered with transformers that records which module called it, then runs SDPA."""

    def kernel(module, *args, **kwargs):
        calls.append(module)
        return sdpa_attention_forward(module, *args, **kwargs)

    name = f"mcg_test_recording_{id(calls)}"
    AttentionInterface.register(name, kernel)
    return name


def _attention_modules(model, prefixes):
    return {
        name: module for name, module in model.named_modules() if name.endswith("attn") and name.startswith(prefixes)
    }


@pytest.mark.parametrize("key", list(_STACK_PREFIXES))
def test_an_attention_kernel_named_for_one_sub_config_runs_only_that_stack(key, tmp_path):
    calls = []
    kernel = _recording_kernel(calls)
    config = tiny_config()
    reference = _model(MCGForVideoQuestionAnswering, config)
    reference.save_pretrained(tmp_path)
    model = MCGForVideoQuestionAnswering.from_pretrained(tmp_path, attn_implementation={key: kernel}).eval()
    for other in _STACK_PREFIXES:
        assert getattr(model.config, other)._attn_implementation == (kernel if other == key else "sdpa")
    inputs = tiny_inputs(model.config)
    with torch.no_grad():
        got, want = model(**inputs).logits, reference(**inputs).logits
    torch.testing.assert_close(got, want)
    expected = _attention_modules(model, _STACK_PREFIXES[key])
    assert {id(m) for m in calls} == {id(m) for m in expected.values()}, sorted(expected)

    # switched in place, per stack or all at once
    calls.clear()
    model.set_attn_implementation("eager")
    with torch.no_grad():
        model(**inputs)
    assert calls == [] and model.config.vision_config._attn_implementation == "eager"
    model.set_attn_implementation({key: kernel})
    with torch.no_grad():
        model(**inputs)
    assert {id(m) for m in calls} == {id(m) for m in expected.values()}


def test_set_attn_implementation_rejects_an_unknown_sub_config_or_kernel_and_changes_nothing():
    model = _model(MCGForVideoQuestionAnswering, tiny_config())
    with pytest.raises(ValueError, match=r"\['vison_config'\] are not sub-configs of MCGConfig"):
        model.set_attn_implementation({"vison_config": "eager"})
    with pytest.raises(ValueError, match="does not support Flash Attention"):
        model.set_attn_implementation({"decoder": "eager", "vision_config": "flash_attention_2"})
    kernels = [model.config._attn_implementation] + [
        getattr(model.config, k)._attn_implementation for k in _STACK_PREFIXES
    ]
    assert kernels == ["sdpa"] * 4


def test_model_hidden_states_end_in_the_fused_evidence():
    config = _config()
    model = _model(MCGModel, config)
    out = _run(model, _inputs(MCGModel, config), output_hidden_states=True)
    torch.testing.assert_close(out.hidden_states[0], out.question_last_hidden_state)
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)
    qa = _model(MCGForVideoQuestionAnswering, config)
    out = _run(qa, _inputs(MCGForVideoQuestionAnswering, config), output_hidden_states=True)
    torch.testing.assert_close(out.encoder_hidden_states[-1], out.encoder_last_hidden_state)


@pytest.mark.parametrize("modality", ["video", "text"])
def test_get_features_follow_the_transformers_convention(modality):
    config = _config(attn_implementation="eager")
    model = _model(MCGModel, config)
    inputs = _inputs(MCGModel, config)
    if modality == "video":
        call, kwargs, layers = model.get_video_features, {"pixel_values_videos": inputs["pixel_values_videos"]}, 2
    else:
        call, layers = model.get_text_features, 2
        kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    with torch.no_grad():
        out = call(**kwargs)
        assert isinstance(out, ModelOutput) and out.last_hidden_state.shape[0] == 3
        assert out.pooler_output.shape == (3, 16)
        torch.testing.assert_close(out.pooler_output.norm(dim=-1), torch.ones(3))
        as_tuple = call(**kwargs, return_dict=False)
        assert type(as_tuple) is tuple
        torch.testing.assert_close(as_tuple[0], out.last_hidden_state)
        torch.testing.assert_close(as_tuple[1], out.pooler_output)
        recorded = call(**kwargs, output_hidden_states=True, output_attentions=True)
        assert len(recorded.hidden_states) == layers + 1 and len(recorded.attentions) == layers


# ---------------------------------------------------------------------------------------------------- vocabulary


@pytest.mark.parametrize("model_class", CLASSES, ids=lambda c: c.__name__)
def test_resize_token_embeddings_grows_the_one_vocabulary_everywhere(model_class):
    config = _config()
    model = _model(model_class, config)
    new_size = VOCAB + 3
    model.resize_token_embeddings(new_size)
    assert model.config.question_config.vocab_size == model.config.decoder.vocab_size == new_size
    embeddings = [m.embed_tokens for m in model.modules() if hasattr(m, "embed_tokens")]
    assert embeddings and all(e.num_embeddings == new_size for e in embeddings)
    if model_class is MCGForVideoQuestionAnswering:
        head = model.get_output_embeddings()
        assert head.out_features == new_size and head.bias.shape == (new_size,)
        assert head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # still tied
    if model_class is MCGForPreTraining:
        assert model.mlm_head.out_proj.out_features == new_size

    inputs = _inputs(model_class, model.config)
    inputs["input_ids"][:, 3] = new_size - 1  # the new token in the question
    if "labels" in inputs:
        inputs["labels"][0, 0] = new_size - 1
    out = _run(model, inputs)
    assert torch.isfinite(getattr(out, "loss", None) if model_class is not MCGModel else out.last_hidden_state).all()


def test_small_vocabulary_configs_get_valid_default_token_ids():
    config = MCGConfig(question_config={"vocab_size": 99}, decoder={"vocab_size": 99})
    ids = [config.pad_token_id, config.bos_token_id, config.eos_token_id, config.enc_token_id, config.mask_token_id]
    assert all(0 <= i < 99 for i in ids) and len(set(ids)) == len(ids)
    default = MCGConfig()  # bert-base-uncased + [DEC] + [ENC]
    assert (default.pad_token_id, default.eos_token_id, default.mask_token_id) == (0, 102, 103)
    assert (default.bos_token_id, default.decoder_start_token_id, default.enc_token_id) == (30522, 30522, 30523)
    assert default.decoder.bos_token_id == 30522


def test_past_key_values_is_a_deprecated_name_for_cache():
    config = _config()
    model = _model(MCGForVideoQuestionAnswering, config)
    inputs = _inputs(MCGForVideoQuestionAnswering, config)
    inputs.pop("labels")
    decoder_input_ids = torch.full((3, 1), config.decoder_start_token_id)
    first = _run(model, inputs, decoder_input_ids=decoder_input_ids, use_cache=True)
    with pytest.warns(FutureWarning, match="past_key_values"):
        second = _run(model, inputs, decoder_input_ids=decoder_input_ids, past_key_values=first.cache, use_cache=True)
    assert second.cache is first.cache and first.cache.get_seq_length() == 2


# ---------------------------------------------------------------------------------------------------- checkpointing


@pytest.mark.parametrize("model_class", CLASSES, ids=lambda c: c.__name__)
def test_gradient_checkpointing_enable_checkpoints_each_layer_call_once(model_class):
    """transformers' own switch reaches every layer, and each layer call goes through the checkpoint function
    once, as a whole (the contract its checkpointing instrumentation relies on)."""
    config = _config()
    plain = _model(model_class, config).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.gradient_checkpointing_enable()
    layers = [m for m in checkpointed.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert layers and all(layer.gradient_checkpointing for layer in layers)
    checkpoint_calls, layer_calls = [], []
    for layer in layers:

        def recording(function, *args, _checkpoint=layer._gradient_checkpointing_func, **kwargs):
            checkpoint_calls.append(function)
            return _checkpoint(function, *args, **kwargs)

        layer._gradient_checkpointing_func = recording
    for layer in plain.modules():
        if isinstance(layer, GradientCheckpointingLayer):
            layer.register_forward_pre_hook(lambda *_: layer_calls.append(1))

    inputs = _inputs(model_class, config)
    losses = []
    for model in (plain, checkpointed):
        torch.manual_seed(0)
        out = model(**inputs)
        loss = out.last_hidden_state.sum() if model_class is MCGModel else out.loss
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0])
    assert len(checkpoint_calls) == len(layer_calls) > 0
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)
    checkpointed.gradient_checkpointing_disable()
    assert not any(layer.gradient_checkpointing for layer in layers)


# ---------------------------------------------------------------------------------------------------- idle weights

LOSS_SETS = {
    "answer only": dict(),
    "ICL": dict(icl_loss_weight=0.5),
    "TCL": dict(tcl_loss_weight=0.5),
    "MLM": dict(mlm_loss_weight=1.0),
    "ICL+TCL, no fusion pass": dict(icl_loss_weight=0.5, tcl_loss_weight=0.5, mlm_loss_weight=0.0),
    "VTM": dict(mlm_loss_weight=0.0, vtm_loss_weight=0.5),
}


@pytest.mark.parametrize("losses", list(LOSS_SETS), ids=list(LOSS_SETS))
@pytest.mark.parametrize("model_class", [MCGForVideoQuestionAnswering, MCGForPreTraining], ids=lambda c: c.__name__)
def test_every_trainable_weight_gets_a_gradient_whichever_losses_are_on(model_class, losses):
    """Weights the configured losses leave idle (the contrastive heads with ICL/TCL off, the MLM head and fusor in
    contrastive-only pretraining) still get a gradient, of zeros, so DistributedDataParallel without
    find_unused_parameters can train the model; the loss value is the sum of its parts, unchanged."""
    config = tiny_config(**LOSS_SETS[losses])
    model = _model(model_class, config).train()
    inputs = _inputs(model_class, config)
    torch.manual_seed(0)
    out = model(**inputs)
    out.loss.backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    parts = [out.loss_lm] if model_class is MCGForVideoQuestionAnswering else []
    parts += [
        getattr(config, f"{name}_loss_weight") * getattr(out, f"loss_{name}")
        for name in ("icl", "tcl", "mlm", "vtm")
        if getattr(out, f"loss_{name}", None) is not None
    ]
    assert out.loss.item() == pytest.approx(sum(p.item() for p in parts), rel=1e-6)
    if losses == "answer only" and model_class is MCGForVideoQuestionAnswering:
        assert torch.equal(out.loss, out.loss_lm)
        assert model.mcg.vision_proj.weight.grad.abs().sum() == 0


def test_ddp_without_find_unused_parameters_trains_the_default_model_with_gradient_checkpointing(tmp_path):
    """What `Trainer` sets up on several GPUs with gradient checkpointing on: DDP with find_unused_parameters=False.
    Every step must give every weight a gradient, or the second step raises."""
    config = tiny_config()
    model = _model(MCGForVideoQuestionAnswering, config).train()
    model.gradient_checkpointing_enable()
    inputs = _inputs(MCGForVideoQuestionAnswering, config)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model, find_unused_parameters=False)
        optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
        losses = []
        for _ in range(3):
            optimizer.zero_grad()
            loss = ddp(**inputs).loss
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        dist.destroy_process_group()
    assert losses[-1] < losses[0]


def test_pretraining_evaluation_gives_a_sample_the_same_outputs_in_any_batch():
    """In evaluation each caption's MLM masks come from its own tokens: a sample's predictions and embeddings are
    those it gets alone, whatever else is in the batch (transformers' batching equivalence)."""
    config = tiny_config(icl_loss_weight=0.5)
    model = _model(MCGForPreTraining, config)
    inputs = _inputs(MCGForPreTraining, config)
    batch = _run(model, inputs)
    for row in range(3):
        alone = _run(model, {k: v[row : row + 1] for k, v in inputs.items()})
        for name in ("logits_mlm", "video_embeds", "text_embeds"):
            torch.testing.assert_close(getattr(alone, name)[0], getattr(batch, name)[row], atol=1e-5, rtol=1e-4)


def test_a_one_pair_pretraining_batch_skips_video_text_matching():
    """VTM draws its negatives from the other pairs of the batch: a batch of one pair (inference on one clip, or
    the last batch of an epoch) gets the other losses and no VTM, not an error."""
    config = tiny_config(vtm_loss_weight=0.5)
    model = _model(MCGForPreTraining, config)
    one = {k: v[:1] for k, v in _inputs(MCGForPreTraining, config).items()}
    out = _run(model, one, return_loss=False)
    assert out.loss is None and out.logits_vtm is None and out.video_embeds.shape[0] == 1
    model.train()
    out = model(**one)
    out.loss.backward()
    assert out.loss_vtm is None and torch.equal(out.loss, config.mlm_loss_weight * out.loss_mlm)
    assert model.vtm_head.weight.grad is not None


# ---------------------------------------------------------------------------------------------------- generation


def _left_padded_questions(config):
    """Three questions of different lengths, left-padded as a generation batch is."""
    torch.manual_seed(1)
    lengths = [7, 4, 5]
    inputs = tiny_inputs(config, batch=3, frames=4, pad_frames=True)
    ids = torch.full((3, 7), PAD)
    mask = torch.zeros(3, 7, dtype=torch.long)
    for i, length in enumerate(lengths):
        ids[i, 7 - length :] = torch.cat([torch.tensor([ENC]), torch.randint(7, VOCAB, (length - 1,))])
        mask[i, 7 - length :] = 1
    videos = {k: inputs[k] for k in ("pixel_values_videos", "video_frame_mask")}
    return {"input_ids": ids, "attention_mask": mask, **videos}, lengths


@pytest.mark.parametrize("num_beams", [1, 3])
def test_left_padded_batch_generates_the_answers_of_one_by_one_calls(num_beams):
    """Same answers and (greedy) the same next-token logits at every step: left padding shifts no position."""
    config = _config()
    model = _model(MCGForVideoQuestionAnswering, config)
    batch, lengths = _left_padded_questions(config)
    options = dict(num_beams=num_beams, max_new_tokens=6, return_dict_in_generate=True, output_logits=True)
    batched = model.generate(**batch, **options)
    for i, length in enumerate(lengths):
        single = {k: v[i : i + 1] for k, v in batch.items()}
        single["input_ids"] = single["input_ids"][:, -length:]
        single["attention_mask"] = single["attention_mask"][:, -length:]
        alone = model.generate(**single, **options)
        row, answer = batched.sequences[i], alone.sequences[0]
        assert torch.equal(row[: answer.shape[0]], answer), i
        assert (row[answer.shape[0] :] == config.pad_token_id).all(), i
        if num_beams == 1:
            for step, logits in enumerate(alone.logits):
                torch.testing.assert_close(batched.logits[step][i], logits[0], atol=1e-5, rtol=1e-5)


def test_return_dict_in_generate_gives_scores_and_logits():
    config = _config()
    model = _model(MCGForVideoQuestionAnswering, config)
    batch, _ = _left_padded_questions(config)
    out = model.generate(
        **batch,
        num_beams=1,
        max_new_tokens=4,
        min_new_tokens=4,
        return_dict_in_generate=True,
        output_scores=True,
        output_logits=True,
    )
    assert out.sequences.shape == (3, 5)
    assert len(out.scores) == len(out.logits) == 4
    assert out.logits[0].shape == (3, VOCAB)
    assert torch.equal(out.logits[0].argmax(-1), out.sequences[:, 1])


def test_static_cache_generates_what_the_dynamic_cache_does():
    config = _config()
    model = _model(MCGForVideoQuestionAnswering, config)
    batch, _ = _left_padded_questions(config)
    options = dict(num_beams=1, max_new_tokens=6, return_dict_in_generate=True, output_scores=True)
    dynamic = model.generate(**batch, **options)
    static = model.generate(**batch, cache_implementation="static", **options)
    assert type(static.cache.self_attention_cache).__name__ == "StaticCache"
    assert torch.equal(static.sequences, dynamic.sequences)
    for got, want in zip(static.scores, dynamic.scores):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager", {"decoder": "eager"}], ids=str)
def test_static_cache_generation_works_whatever_kernel_the_model_was_loaded_with(attn_implementation, tmp_path):
    """Loading with an explicit kernel gives the decoder's sub-config one, and transformers then hands a static-cache
    `generate()` a 4-D mask of its own making, which the decoder (building its own mask) used to choke on."""
    config = _config()
    _model(MCGForVideoQuestionAnswering, config).save_pretrained(tmp_path)
    model = MCGForVideoQuestionAnswering.from_pretrained(tmp_path, attn_implementation=attn_implementation).eval()
    batch, _ = _left_padded_questions(model.config)
    options = dict(num_beams=1, max_new_tokens=6)
    assert torch.equal(
        model.generate(**batch, cache_implementation="static", **options), model.generate(**batch, **options)
    )


def test_the_decoder_config_use_cache_switch_decides_whether_a_forward_keeps_a_cache():
    """`config.decoder.use_cache` (what transformers' generation utilities look up) is honoured: on, an inference
    forward returns the cache; off, it returns none and greedy decoding still gives the same answers; an explicit
    `use_cache` argument wins over the config, and training forwards (labels) never build one."""
    config = _config()
    assert config.decoder.use_cache is True
    model = _model(MCGForVideoQuestionAnswering, config)
    batch, _ = _left_padded_questions(config)
    start = torch.full((3, 1), config.decoder_start_token_id)
    assert _run(model, batch, decoder_input_ids=start).cache is not None
    cached = model.generate(**batch, num_beams=1, max_new_tokens=5)
    model.config.decoder.use_cache = False
    assert _run(model, batch, decoder_input_ids=start).cache is None
    assert _run(model, batch, decoder_input_ids=start, use_cache=True).cache is not None
    assert torch.equal(model.generate(**batch, num_beams=1, max_new_tokens=5, use_cache=False), cached)
    model.config.decoder.use_cache = True
    inputs = _inputs(MCGForVideoQuestionAnswering, config)
    assert _run(model, inputs).cache is None


def test_saved_folder_carries_the_official_generation_defaults(tmp_path, caplog):
    config = _config()
    model = _model(MCGForVideoQuestionAnswering, config)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert (saved["num_beams"], saved["max_new_tokens"]) == (3, 10)
    loaded = MCGForVideoQuestionAnswering.from_pretrained(tmp_path).eval()
    batch, _ = _left_padded_questions(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. the model-agnostic max_length default
        with caplog.at_level(logging.WARNING):
            hf_logging.enable_propagation()
            try:
                sequences = loaded.generate(**batch)
            finally:
                hf_logging.disable_propagation()
    assert not [r for r in caplog.records if "max_length" in r.getMessage()]
    assert sequences.shape[1] <= 11
    assert torch.equal(sequences, model.generate(**batch, num_beams=3, max_new_tokens=10))


# ---------------------------------------------------------------------------------------------------- loading


def _load_messages(caplog, load):
    caplog.clear()
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            result = load()
    finally:
        hf_logging.disable_propagation()
    return result, "\n".join(r.getMessage() for r in caplog.records)


def test_normal_loading_paths_print_no_false_alarms(tmp_path, caplog):
    config = _config()
    pretraining = tmp_path / "pretraining"
    _model(MCGForPreTraining, config).save_pretrained(pretraining)
    finetuned, messages = _load_messages(caplog, lambda: MCGForVideoQuestionAnswering.from_pretrained(pretraining))
    assert "corrupted" not in messages
    # tied to the decoder embedding: not a weight of its own (mlm_head.out_proj.weight is, and is reported unused)
    assert not re.search(r"(?<!m)lm_head\.out_proj\.weight", messages)
    assert "decoder.embeddings.embed_tokens.weight" in messages  # the answer generator is new: reported
    head = finetuned.lm_head.out_proj.weight
    assert head.data_ptr() == finetuned.decoder.embeddings.embed_tokens.weight.data_ptr()

    qa_folder = tmp_path / "qa"
    finetuned.save_pretrained(qa_folder)
    _, messages = _load_messages(caplog, lambda: MCGForVideoQuestionAnswering.from_pretrained(qa_folder))
    assert "missing" not in messages.lower() and "corrupted" not in messages
    # resuming (Trainer loads the saved weights into a built model): the tied head is not a missing key
    assert MCGForVideoQuestionAnswering._keys_to_ignore_on_save is None
    assert finetuned._keys_to_ignore_on_save == ["lm_head.out_proj.weight"]

    # a real problem is still reported
    weights = load_file(qa_folder / "model.safetensors")
    weights.pop("decoder.layers.0.cross_attn.k_proj.weight")
    from safetensors.torch import save_file

    save_file(weights, qa_folder / "model.safetensors", metadata={"format": "pt"})
    _, messages = _load_messages(caplog, lambda: AutoModelForSeq2SeqLM.from_pretrained(qa_folder))
    assert "decoder.layers.0.cross_attn.k_proj.weight" in messages


def test_folders_saved_before_the_redesign_load_with_identical_outputs():
    """Folders saved by the model file as it was before its outputs moved to transformers' recorders (state-dict
    keys unchanged): the same logits and embeddings. They are bit-identical at the thread count the references were
    made with; the tolerance only absorbs the summation order another thread count gives a matmul."""
    reference = load_file(FIXTURES / "mcg_v0_reference.safetensors")
    inputs = {k.removeprefix("input."): v for k, v in reference.items() if k.startswith("input.")}
    qa, info = MCGForVideoQuestionAnswering.from_pretrained(FIXTURES / "mcg_qa_v0", output_loading_info=True)
    assert not any(info.values()), info
    with torch.no_grad():
        out = qa.eval()(**inputs)
        torch.testing.assert_close(out.logits, reference["qa.logits"], **SAME)
        torch.testing.assert_close(out.loss.reshape(1), reference["qa.loss"], **SAME)
        # the fused evidence at real question tokens (padded positions are masked out everywhere downstream)
        real = inputs["attention_mask"].bool()
        fused = qa.mcg(**{k: v for k, v in inputs.items() if k != "labels"}).last_hidden_state
        torch.testing.assert_close(fused[real], reference["mcg.last_hidden_state"][real], **SAME)
    pretraining, info = MCGForPreTraining.from_pretrained(FIXTURES / "mcg_pretraining_v0", output_loading_info=True)
    assert not any(info.values()), info
    out = _run(pretraining.eval(), {k: v for k, v in inputs.items() if k != "labels"}, return_loss=False)
    torch.testing.assert_close(out.video_embeds, reference["pt.video_embeds"], **SAME)
    torch.testing.assert_close(out.text_embeds, reference["pt.text_embeds"], **SAME)


# ---------------------------------------------------------------------------------------------------- code


def _relative_imports(path: Path) -> set[str]:
    """Modules of the package that `path` imports, anywhere in the file (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.add((node.module or "").split(".")[0])
    return names


def test_package_import_graph_has_no_circle():
    root = Path(modeling_mcg.__file__).parent
    graph = {}
    for path in root.rglob("*.py"):
        module = path.relative_to(root).with_suffix("").parts[0]
        graph.setdefault(module, set()).update(_relative_imports(path) - {module})

    def reaches(start, goal, seen):
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    circles = [module for module in graph if reaches(module, module, {module})]
    assert not circles, {m: graph[m] for m in circles}
    assert _relative_imports(root / "modeling_mcg.py") <= {"configuration_mcg", "losses"}


def test_remote_code_is_exactly_the_model_files(tmp_path):
    _model(MCGForVideoQuestionAnswering, _config()).save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.glob("*.py")} == {"configuration_mcg.py", "modeling_mcg.py", "losses.py"}


def test_model_file_collects_no_outputs_by_hand():
    """Hidden states and attention maps come from transformers' output recorders, not from lists the forwards fill."""
    source = (Path(modeling_mcg.__file__).parent / "modeling_mcg.py").read_text()
    assert ".append(" not in source
    assert "_can_record_outputs" in source and "capture_outputs" in source


def _grouped_videos(inputs):
    """The first two questions ask about the same video: one clip fewer, `video_index` says which is whose."""
    return {
        **inputs,
        "pixel_values_videos": inputs["pixel_values_videos"][1:],
        "video_index": torch.tensor([0, 0, 1]),
    }


FLOP_CASES = {
    "answer loss": (MCGForVideoQuestionAnswering, {}, False),
    "answer loss with ICL and TCL": (
        MCGForVideoQuestionAnswering,
        dict(icl_loss_weight=0.5, tcl_loss_weight=0.5),
        False,
    ),
    "concatenation fusion": (MCGForVideoQuestionAnswering, dict(fusion_type="concat"), False),
    "convolutional stem, frame-difference tokens, shared videos": (
        MCGForVideoQuestionAnswering,
        dict(vision={"patch_embedding_type": "conv_stem", "motion_input": "frame_difference_tokens"}),
        True,
    ),
    "pre-training with every loss": (
        MCGForPreTraining,
        dict(icl_loss_weight=0.5, tcl_loss_weight=0.5, vtm_loss_weight=0.5),
        False,
    ),
}


@pytest.mark.parametrize("case", list(FLOP_CASES))
def test_the_flop_count_of_a_batch_is_close_to_what_torch_counts_in_its_training_step(case):
    """`floating_point_ops` (what `total_flos` adds up) against `FlopCounterMode` over forward + backward, attention
    scores left out as the estimate leaves them: within 20 %, where transformers' 6 x parameters x question tokens
    misses the video tokens."""
    model_class, overrides, grouped = FLOP_CASES[case]
    config = tiny_config(**overrides)
    model = _model(model_class, config).train()
    inputs = tiny_inputs(config)
    if model_class is MCGForPreTraining:
        inputs.pop("labels")
    if grouped:
        inputs = _grouped_videos(inputs)
    with FlopCounterMode(display=False) as counter:
        model(**inputs).loss.backward()
    measured = sum(n for op, n in counter.get_flop_counts()["Global"].items() if "scaled_dot_product" not in str(op))
    estimate = model.floating_point_ops(inputs)
    assert 0.95 < estimate / measured < 1.2, (estimate, measured)
    question_only = 6 * inputs["input_ids"].numel() * model.num_parameters(exclude_embeddings=True)
    assert question_only / measured < 0.5


def test_the_trainer_adds_up_the_models_flop_count(tmp_path):
    config = tiny_config()
    model = _model(MCGForVideoQuestionAnswering, config)
    inputs = _grouped_videos(tiny_inputs(config))
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = MCGTrainer(model=model, args=args)
    assert trainer.floating_point_ops(inputs) == model.floating_point_ops(inputs) > 0
    # one video fewer, fewer FLOPs: the count follows the distinct clips, not the questions
    assert model.floating_point_ops(inputs) < model.floating_point_ops(tiny_inputs(config))
