"""save_for_hub writes a folder that loads with the package (no remote code) and without it (remote code)."""

import json
import textwrap
from pathlib import Path

import pytest
from isolated import run_without_package
from test_pipeline import QUESTION, tiny_model, tiny_processor
from transformers import pipeline
from video_factory import write_video

import modeling_mcg
from modeling_mcg.hub import push_to_hub, save_for_hub
from modeling_mcg.pipeline_mcg import TASK, VideoQuestionAnsweringPipeline, register_pipeline

CANDIDATES = ["cooking", "running", "red dog"]

REMOTE = textwrap.dedent(
    """
    import importlib.util, json, sys
    assert importlib.util.find_spec("modeling_mcg") is None, "the package must not be importable here"
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoProcessor, pipeline
    folder, video, question, candidates = sys.argv[1:]
    candidates = json.loads(candidates)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    inputs = processor(videos=video, text=question)
    ids = model.generate(**inputs, max_new_tokens=4)
    direct = processor.tokenizer.decode(ids[0], skip_special_tokens=True).strip()
    pipe = pipeline("video-question-answering", model=folder, trust_remote_code=True)
    answers = pipe(video, question=question, top_k=2, max_new_tokens=4)
    choices = pipe(video, question=question, candidate_answers=candidates)
    names = [type(x).__name__ for x in (config, model, processor, pipe)]
    print(json.dumps({"names": names, "direct": direct, "answers": answers, "choices": choices}))
    """
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    processor = tiny_processor()
    model = tiny_model(processor, seed=3)
    folder = save_for_hub(
        model,
        processor,
        tmp_path_factory.mktemp("hub") / "mcg-tiny",
        metrics={"accuracy": 0.4321, "wups": 0.5},
        preset="mcg-tiny",
        model_card_extra="Trained on synthetic clips.",
    )
    return model, processor, Path(folder)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return str(write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=12, width=40, height=30))


def test_folder_layout_auto_map_and_custom_pipeline(saved):
    _, _, folder = saved
    names = {path.name for path in folder.iterdir()}
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "processor_config.json",
        "tokenizer.json",
        "README.md",
        "pipeline_mcg.py",
        "configuration_mcg.py",
        "modeling_mcg.py",
        "processing_mcg.py",
        "video_processing_mcg.py",
    ):
        assert name in names, name
    assert not any(name.endswith((".bin", ".pt")) for name in names)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_mcg.MCGConfig",
        "AutoModel": "modeling_mcg.MCGModel",
        "AutoModelForSeq2SeqLM": "modeling_mcg.MCGForVideoQuestionAnswering",
        "AutoModelForPreTraining": "modeling_mcg.MCGForPreTraining",
        "AutoProcessor": "processing_mcg.MCGProcessor",
        "AutoVideoProcessor": "video_processing_mcg.MCGVideoProcessor",
    }
    assert config["custom_pipelines"] == {
        TASK: {
            "impl": "pipeline_mcg.VideoQuestionAnsweringPipeline",
            "pt": ["AutoModelForSeq2SeqLM"],
            "tf": [],
            "type": "multimodal",
        }
    }
    source = Path(modeling_mcg.__file__).parent / "pipeline_mcg.py"
    assert (folder / "pipeline_mcg.py").read_text() == source.read_text()
    # every .py in the folder imports its siblings by single-dot relative imports only
    for path in folder.glob("*.py"):
        assert "from .." not in path.read_text() and "import modeling_mcg" not in path.read_text(), path.name
    card = (folder / "README.md").read_text()
    for expected in (
        "| accuracy | 0.4321 |",
        "`mcg-tiny`",
        "## Intended use",
        "## Limitations",
        "trust_remote_code=True",
        "license: apache-2.0",
        "Trained on synthetic clips.",
    ):
        assert expected in card, expected


def test_local_load_without_trust_remote_code(saved, clip):
    model, processor, folder = saved
    register_pipeline()
    in_memory = pipeline(TASK, model=model, processor=processor)
    expected = in_memory(clip, question=QUESTION, top_k=2, max_new_tokens=4)
    # the folder declares the pipeline as remote code, yet with the package imported neither trust_remote_code
    # nor pipeline_class is needed: the registered local class is used
    loaded = pipeline(TASK, model=str(folder))
    assert type(loaded) is VideoQuestionAnsweringPipeline and type(loaded.model) is type(model)
    assert loaded(clip, question=QUESTION, top_k=2, max_new_tokens=4) == expected
    explicit = pipeline(TASK, model=str(folder), pipeline_class=VideoQuestionAnsweringPipeline)
    assert explicit(clip, question=QUESTION, top_k=2, max_new_tokens=4) == expected


def test_remote_code_load_without_the_package(saved, clip, tmp_path):
    model, processor, folder = saved
    register_pipeline()
    in_memory = pipeline(TASK, model=model, processor=processor)
    expected_answers = in_memory(clip, question=QUESTION, top_k=2, max_new_tokens=4)
    expected_choices = in_memory(clip, question=QUESTION, candidate_answers=CANDIDATES)
    result = run_without_package(REMOTE, [folder, clip, QUESTION, json.dumps(CANDIDATES)], tmp_path)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["names"] == [
        "MCGConfig",
        "MCGForVideoQuestionAnswering",
        "MCGProcessor",
        "VideoQuestionAnsweringPipeline",
    ]
    assert [item["answer"] for item in out["answers"]] == [item["answer"] for item in expected_answers]
    assert [item["score"] for item in out["answers"]] == pytest.approx([item["score"] for item in expected_answers])
    assert out["direct"] == in_memory(clip, question=QUESTION, max_new_tokens=4)[0]["answer"]
    assert [item["answer"] for item in out["choices"]] == [item["answer"] for item in expected_choices]
    assert [item["score"] for item in out["choices"]] == pytest.approx([item["score"] for item in expected_choices])


def test_save_refuses_a_model_smaller_than_the_tokenizer(tmp_path):
    processor = tiny_processor()
    from tiny_models import tiny_config

    from modeling_mcg import MCGForVideoQuestionAnswering

    small = MCGForVideoQuestionAnswering(tiny_config())  # 97 tokens, the tokenizer has more
    with pytest.raises(ValueError, match="resize"):
        save_for_hub(small, processor, tmp_path / "bad")


def test_push_to_hub_needs_a_saved_folder_and_fails_clearly_offline(saved, tmp_path, monkeypatch):
    _, _, folder = saved
    with pytest.raises(FileNotFoundError, match="save_for_hub"):
        push_to_hub(tmp_path, "someone/mcg-tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="someone/mcg-tiny"):
        push_to_hub(folder, "someone/mcg-tiny", token="hf_not_a_real_token")
