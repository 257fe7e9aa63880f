"""Every folder the training scripts write (full fine-tune, merged LoRA + its adapter, unmerged adapter + its base,
pretraining) is the one shareable layout: it loads in a process without the package (remote code) and, with the
package imported, through `pipeline()` without `trust_remote_code`; its model card carries metadata and honest
text. Tiny runs (2 optimizer steps) on a few synthetic videos."""

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from example_scripts import load_example
from isolated import run_without_package
from transformers import AutoModelForSeq2SeqLM, AutoProcessor, pipeline

from modeling_mcg import MCGForVideoQuestionAnswering, push_to_hub, save_for_hub
from modeling_mcg.data.synthetic import load_synthetic_videoqa
from modeling_mcg.pipeline_mcg import TASK, VideoQuestionAnsweringPipeline

REPO = Path(__file__).resolve().parent.parent
NUM_VIDEOS = {"train": 6, "validation": 3, "test": 3}


run_videoqa = load_example("run_videoqa")
run_pretraining = load_example("run_pretraining")


def base_args(cache, out, *extra):
    return [
        "--synthetic_cache_dir", str(cache), "--synthetic_num_videos", "train=6,validation=3,test=3",
        "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "8", "--logging_steps", "1", "--dataloader_num_workers", "0",
        "--max_eval_samples", "6", "--save_strategy", "no", "--use_cpu", "True", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache = tmp_path_factory.mktemp("synthetic")
    load_synthetic_videoqa("train", cache_dir=cache, num_videos=NUM_VIDEOS)
    root = tmp_path_factory.mktemp("runs")
    run_videoqa.main(base_args(cache, root / "full"))
    run_videoqa.main(base_args(cache, root / "merged", "--use_lora", "True", "--merge_lora", "True"))
    run_videoqa.main(base_args(cache, root / "adapter", "--use_lora", "True", "--do_eval", "False"))
    run_pretraining.main(base_args(cache, root / "pretrain", "--max_eval_samples", "3"))
    video = load_synthetic_videoqa("test", cache_dir=cache, num_videos=NUM_VIDEOS)[0]["video"]
    return {"root": root, "cache": cache, "video": video}


def card_metadata(folder):
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1]), text


REMOTE = textwrap.dedent(
    """
    import importlib.util, json, sys
    assert importlib.util.find_spec("modeling_mcg") is None, "the package must not be importable here"
    from transformers import AutoModelForSeq2SeqLM, AutoProcessor, pipeline
    video, *folders = sys.argv[1:]
    out = {}
    for folder in folders:
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        ids = model.generate(**processor(videos=video, text="how many objects appear in the video?"), max_new_tokens=3)
        pipe = pipeline("video-question-answering", model=folder, trust_remote_code=True)
        answer = pipe(video=video, question="how many objects appear in the video?", max_new_tokens=3)
        choices = pipe(video, question="what color is the circle?", candidate_answers=["red", "blue"])
        out[folder] = [type(model).__name__, type(pipe).__name__, ids.shape[0], answer[0]["answer"], len(choices)]
    print(json.dumps(out))
    """
)


def test_every_written_model_folder_loads_without_the_package(runs, tmp_path):
    folders = [runs["root"] / name for name in ("full", "merged", "pretrain", "adapter/base_model")]
    for folder in folders:
        config = json.loads((folder / "config.json").read_text())
        assert {"AutoProcessor", "AutoVideoProcessor", "AutoModelForSeq2SeqLM"} <= set(config["auto_map"])
        assert TASK in config["custom_pipelines"] and (folder / "pipeline_mcg.py").is_file()
        generation = json.loads((folder / "generation_config.json").read_text())
        assert generation["max_new_tokens"] > 0  # no call falls back to the model-agnostic max_length
    pretrain_generation = json.loads((runs["root"] / "pretrain" / "generation_config.json").read_text())
    assert (pretrain_generation["num_beams"], pretrain_generation["max_new_tokens"]) == (3, 10)
    result = run_without_package(REMOTE, [runs["video"], *folders], tmp_path, timeout=600)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for folder in folders:
        model_class, pipe_class, rows, answer, choices = out[str(folder)]
        assert (model_class, pipe_class, rows, choices) == (
            "MCGForVideoQuestionAnswering", "VideoQuestionAnsweringPipeline", 1, 2,
        )  # fmt: skip
        assert isinstance(answer, str)


@pytest.mark.parametrize("name", ["full", "merged", "pretrain"])
def test_with_the_package_the_pipeline_loads_without_trust_remote_code(runs, name):
    folder = str(runs["root"] / name)
    pipe = pipeline(TASK, model=folder)
    assert type(pipe) is VideoQuestionAnsweringPipeline and type(pipe.model) is MCGForVideoQuestionAnswering
    assert isinstance(pipe(video=runs["video"], question="how many objects appear in the video?")[0]["answer"], str)
    AutoModelForSeq2SeqLM.from_pretrained(folder)
    AutoProcessor.from_pretrained(folder)


def test_with_the_package_the_pipeline_loads_an_adapter_folder_on_its_base(runs):
    pipe = pipeline(TASK, model=str(runs["root"] / "adapter"))  # base from the adapter's base_model_name_or_path
    assert type(pipe.model) is MCGForVideoQuestionAnswering
    assert any("lora_" in name for name, _ in pipe.model.named_parameters())
    assert isinstance(pipe(video=runs["video"], question="how many objects appear in the video?")[0]["answer"], str)


def test_model_cards_carry_metadata_results_command_and_scope(runs):
    root = runs["root"]
    meta, card = card_metadata(root / "full")
    assert meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "video-question-answering"
    assert meta["datasets"] == ["synthetic"] and meta["metrics"] == ["accuracy"]
    assert "--max_steps 2" in card and "python examples/run_videoqa.py" in card
    assert "Per answer type:" in card and "| count |" in card  # per-type results
    assert "coloured shapes" in card and "No evaluation results" not in card
    assert "![accuracy_per_type.png](accuracy_per_type.png)" in card and "epochs" in card
    metrics = json.loads((root / "full" / "metrics.json").read_text())
    assert f"| test_accuracy | {metrics['test_accuracy']:.4f} |" in card

    # the merged folder names its adapter's base; the adapter card (not peft's template) points to a real base
    meta, card = card_metadata(root / "merged" / "adapter")
    assert meta["library_name"] == "peft" and Path(meta["base_model"]).is_dir()
    assert "PeftModel.from_pretrained" in card and "[More Information Needed]" not in card
    meta, card = card_metadata(root / "adapter")
    base = Path(meta["base_model"])
    assert base == (root / "adapter" / "base_model").resolve() and (base / "model.safetensors").is_file()
    assert (root / "adapter" / "processor_config.json").is_file()

    meta, card = card_metadata(root / "pretrain")
    assert "python examples/run_pretraining.py" in card and "answer decoder is untrained" in card


@pytest.mark.parametrize("name", ["full", "merged", "adapter", "pretrain"])
def test_push_to_hub_accepts_every_written_folder(runs, name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="Could not push"):  # past the folder check; offline, the upload fails
        push_to_hub(runs["root"] / name, "someone/mcg-test")


def test_an_eval_only_card_does_not_claim_training_and_save_for_hub_keeps_recorded_metrics(runs, tmp_path):
    out = tmp_path / "eval_only"
    full = runs["root"] / "full"
    run_videoqa.main(base_args(runs["cache"], out, "--model_name_or_path", str(full), "--do_train", "False"))
    _, card = card_metadata(out)
    assert "## Training\n" not in card and "epochs" not in card and "no training in this run" in card
    assert "test_accuracy" in card

    # save_for_hub on a trained folder shows the metrics.json it finds there
    model = MCGForVideoQuestionAnswering.from_pretrained(full)
    processor = AutoProcessor.from_pretrained(full)
    save_for_hub(model, processor, full)
    assert "No evaluation results" not in (full / "README.md").read_text()
    assert "test_accuracy" in (full / "README.md").read_text()


def test_a_finished_output_folder_is_not_overwritten_without_the_flag(runs, tmp_path):
    out = tmp_path / "twice"
    run_videoqa.main(base_args(runs["cache"], out, "--do_eval", "False"))
    weights = (out / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="already holds a trained model .* --overwrite_output_dir True"):
        run_videoqa.main(base_args(runs["cache"], out, "--do_eval", "False", "--learning_rate", "0.5"))
    assert (out / "model.safetensors").read_bytes() == weights
    run_videoqa.main(base_args(runs["cache"], out, "--do_eval", "False", "--learning_rate", "0.5",
                               "--overwrite_output_dir", "True"))  # fmt: skip
    assert (out / "model.safetensors").read_bytes() != weights


def test_an_interrupted_run_resumes_from_its_last_checkpoint(runs, tmp_path):
    out = tmp_path / "interrupted"
    args = ["--do_eval", "False", "--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "3"]
    run_videoqa.main(base_args(runs["cache"], out, *args))
    (out / "model.safetensors").unlink()  # as if the run had stopped before its final save
    shutil.rmtree(out / "checkpoint-2")
    result = run_videoqa.main(base_args(runs["cache"], out, *args[:1], "--max_steps", "3"))
    history = result["trainer"].state.log_history
    assert result["trainer"].state.global_step == 3
    assert [h["step"] for h in history if "loss" in h][-2:] == [2, 3]
