"""torch.compile: the video encoder compiles as one graph (fullgraph=True) and gives eager's outputs and gradients;
the full question-answering forward compiles and gives eager's loss, logits and gradients.
Regional compilation (`compile_regions`) of a training step gives eager's loss and gradients with one graph per layer
kind.

Backend "aot_eager": it runs TorchDynamo (the graph capture that fullgraph=True checks: no graph break, no host
sync, no unsupported Python) and AOTAutograd (the traced forward and backward graphs), but generates no code.
Inductor would also compile C++ kernels, which took about 40 s for the forward of this tiny encoder alone on a 2-core
CPU, too slow for the test suite; the graph it would compile is the same one captured here.
"""

import pytest
import torch
from tiny_models import tiny_config, tiny_inputs

from modeling_mcg import MCGForVideoQuestionAnswering, MCGModel


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_vision_encoder_compiles_fullgraph_and_matches_eager():
    config = tiny_config(vision={"temporal_pooling": "none"})
    encoder = MCGModel(config).vision_model.eval()
    inputs = tiny_inputs(config, pad_frames=True)
    pixels, frame_mask = inputs["pixel_values_videos"], inputs["video_frame_mask"]
    compiled = torch.compile(encoder, backend="aot_eager", fullgraph=True)

    with torch.no_grad():
        expected = encoder(pixels, frame_mask, return_cls_attention=True)
        got = compiled(pixels, frame_mask, return_cls_attention=True)
        torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.cls_attention, expected.cls_attention, atol=1e-5, rtol=1e-5)
        assert torch.equal(got.attention_mask, expected.attention_mask)
        # another frame count, no mask: recompiled (shapes are guarded), still one graph
        short = pixels[:, :3]
        torch.testing.assert_close(
            compiled(short).last_hidden_state, encoder(short).last_hidden_state, atol=1e-5, rtol=1e-5
        )

    encoder.train()  # dropout and stochastic depth are 0 in the tiny config: same function, training graph
    encoder(pixels, frame_mask).last_hidden_state.square().mean().backward()
    expected_grads = _grads(encoder)
    encoder.zero_grad(set_to_none=True)
    compiled(pixels, frame_mask).last_hidden_state.square().mean().backward()
    got_grads = _grads(encoder)
    assert got_grads.keys() == expected_grads.keys() and len(got_grads) > 0
    for name, grad in expected_grads.items():
        torch.testing.assert_close(got_grads[name], grad, atol=1e-5, rtol=1e-5, msg=name)


def test_full_qa_forward_compiles_and_matches_eager():
    """The answer-generation objective (the default: LM loss only). The auxiliary contrastive losses are not covered:
    ICL on question-answer pairs packs ragged rows and TCL clips per-row quantiles and aggregates words, both with
    data-dependent shapes that break graphs."""
    config = tiny_config()
    model = MCGForVideoQuestionAnswering(config).train()
    inputs = tiny_inputs(config, pad_frames=True)

    # the input checks read masks on the host only in eager mode, so the whole forward is one graph
    explanation = torch._dynamo.explain(model)(**inputs)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)

    expected = model(**inputs)
    expected.loss.backward()
    expected_grads = _grads(model)
    model.zero_grad(set_to_none=True)
    got = compiled(**inputs)
    got.loss.backward()
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-5)
    got_grads = _grads(model)
    assert got_grads.keys() == expected_grads.keys()
    for name, grad in expected_grads.items():
        torch.testing.assert_close(got_grads[name], grad, atol=1e-5, rtol=1e-5, msg=name)


def _regional_training_step(config, inputs):
    """Eager and regionally compiled training steps of one model → (eager loss, grads), (compiled loss, grads)."""
    torch.manual_seed(0)
    model = MCGForVideoQuestionAnswering(config).train()
    loss = model(**inputs).loss
    loss.backward()
    expected = loss.detach(), _grads(model)
    model.zero_grad(set_to_none=True)
    model.compile_regions(backend="aot_eager")
    loss = model(**inputs).loss
    loss.backward()
    return expected, (loss.detach(), _grads(model))


def test_regionally_compiled_training_step_matches_eager_with_one_graph_per_layer_kind():
    counters = torch._dynamo.utils.counters
    counters.clear()
    depth = 3
    config = tiny_config(
        vision={"num_hidden_layers": depth},
        question={"num_hidden_layers": depth},
        decoder={"num_hidden_layers": depth},
    )
    inputs = tiny_inputs(config, pad_frames=True)
    (expected_loss, expected_grads), (loss, grads) = _regional_training_step(config, inputs)
    torch.testing.assert_close(loss, expected_loss, atol=1e-5, rtol=1e-5)
    assert grads.keys() == expected_grads.keys() and len(grads) > 0
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=1e-5, msg=name)
    assert not counters["graph_break"], dict(counters["graph_break"])
    # the layers of a kind share their compiled code: the vision block, and the text layer as question encoder,
    # fusor and answer generator (three code paths), not one graph per layer (3 + 3 + 1 + 3 layers here)
    assert counters["stats"]["unique_graphs"] == 4, dict(counters["stats"])


def _train_two_steps(tmp_path, torch_compile: bool):
    from transformers import TrainingArguments, default_data_collator

    from modeling_mcg.training import MCGTrainer

    torch.manual_seed(0)
    config = tiny_config()
    model = MCGForVideoQuestionAnswering(config)
    batch = tiny_inputs(config, batch=3)
    samples = [{key: value[i] for key, value in batch.items()} for i in range(3)]
    args = TrainingArguments(
        output_dir=str(tmp_path / f"compile{torch_compile}"),
        max_steps=2,
        per_device_train_batch_size=3,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        torch_compile=torch_compile,
        torch_compile_backend="aot_eager" if torch_compile else None,
    )
    trainer = MCGTrainer(model=model, args=args, train_dataset=samples, data_collator=default_data_collator)
    trainer.train()
    return trainer, [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_trainer_torch_compile_compiles_each_layer_in_place_and_trains_as_eager_does(tmp_path):
    """`TrainingArguments(torch_compile=True)` (`--torch_compile` in the example scripts) compiles the repeated layers
    (`compile_regions`), not the whole model, and the compiled training steps lose what eager ones do."""
    _, eager_losses = _train_two_steps(tmp_path, torch_compile=False)
    trainer, losses = _train_two_steps(tmp_path, torch_compile=True)
    assert len(losses) == len(eager_losses) == 2
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(eager_losses), atol=1e-4, rtol=1e-4)
    layers = trainer.model.mcg.vision_model.layers
    assert all(layer._compiled_call_impl is not None for layer in layers)
    assert not isinstance(trainer.model_wrapped, torch._dynamo.eval_frame.OptimizedModule)
    assert trainer.model.mcg._compiled_call_impl is None  # the model itself stays eager around its layers
