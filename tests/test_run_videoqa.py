"""End to end runs of `examples/run_videoqa.py` on a few synthetic videos: what it writes, LoRA, resume, corrupt
videos and `accelerate launch`. Every run is 1-3 optimizer steps, so these check wiring, not accuracy."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from example_scripts import load_example, offline_env
from safetensors.torch import load_file
from video_factory import write_video

from modeling_mcg import MCGForVideoQuestionAnswering, MCGProcessor, MCGVideoProcessor, VideoDecodeError
from modeling_mcg.data.synthetic import load_synthetic_videoqa
from modeling_mcg.training import (
    MCGTrainingArguments,
    VideoGroupedSampler,
    VideoQACollator,
    apply_config_overrides,
    load_preset,
    parse_args,
    set_cpu_threads,
    vocabulary_words,
)

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "run_videoqa.py"
NUM_VIDEOS = "train=6,test=3"


run_videoqa = load_example("run_videoqa")


def parse_script_args(args):
    classes = (run_videoqa.ModelArguments, run_videoqa.DataArguments, MCGTrainingArguments)
    return parse_args(classes, run_videoqa.TRAINING_DEFAULTS, args)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    cache = tmp_path_factory.mktemp("synthetic")
    load_synthetic_videoqa("train", cache_dir=cache, num_videos={"train": 6, "test": 3})
    return cache


def base_args(cache, out, *extra):
    return [
        "--synthetic_cache_dir",
        str(cache),
        "--synthetic_num_videos",
        NUM_VIDEOS,
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "8",
        "--logging_steps",
        "1",
        "--dataloader_num_workers",
        "0",
        "--max_eval_samples",
        "8",
        "--save_strategy",
        "no",
        "--use_cpu",
        "True",
        *extra,
    ]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_open_ended_run_writes_a_loadable_hub_folder(synthetic_dir, tmp_path):
    out = tmp_path / "out"
    result = run_videoqa.main(base_args(synthetic_dir, out, "--learning_rate", "1e-2"))
    for name in (
        "metrics.json",
        "predictions.jsonl",
        "loss_curve.png",
        "accuracy_per_type.png",
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "processor_config.json",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = read_jsonl(out / "predictions.jsonl")
    assert metrics["test_samples"] == len(predictions) == 8
    assert metrics["test_accuracy"] == pytest.approx(sum(p["correct"] for p in predictions) / len(predictions))
    types = {p["answer_type"] for p in predictions}
    assert {f"test_accuracy_{t}" for t in types} <= set(metrics)
    assert set(predictions[0]) >= {"question_id", "question", "prediction", "answer", "answer_type", "correct"}
    history = result["trainer"].state.log_history
    # with the fine-tuning defaults (ICL/TCL weights 0) the answer loss is the only part: no duplicate of `loss`
    assert [h["step"] for h in history if "loss" in h] == [1, 2]
    assert not any(part in h for h in history for part in ("loss_lm", "loss_icl", "loss_tcl"))
    assert isinstance(result["trainer"]._get_train_sampler(), VideoGroupedSampler)  # synthetic default
    card = (out / "README.md").read_text()
    assert "test_accuracy" in card and "--max_steps 2" in card and "pipeline_tag: video-question-answering" in card

    # the folder reloads and reproduces a saved prediction
    model = MCGForVideoQuestionAnswering.from_pretrained(out).eval()
    processor = MCGProcessor.from_pretrained(out)
    test = load_synthetic_videoqa("test", cache_dir=synthetic_dir, num_videos={"train": 6, "test": 3})
    row = test[0]
    assert row["question_id"] == predictions[0]["question_id"]
    inputs = processor(videos=row["video"], text=row["question"])
    ids = model.generate(**inputs, max_new_tokens=6)
    assert processor.batch_decode(ids, skip_special_tokens=True)[0].strip() == predictions[0]["prediction"]


def test_multiple_choice_run_reports_mc_accuracy(synthetic_dir, tmp_path):
    out = tmp_path / "mc"
    run_videoqa.main(base_args(synthetic_dir, out, "--eval_mode", "mc"))
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = read_jsonl(out / "predictions.jsonl")
    assert 0.0 <= metrics["test_mc_accuracy"] <= 1.0
    right = [p["choice_prediction"] == p["correct_choice"] for p in predictions]
    assert metrics["test_mc_accuracy"] == pytest.approx(sum(right) / len(right))
    assert all(p["prediction"] == p["choices"][p["choice_prediction"]] for p in predictions)


def test_clevrer_run_judges_each_option_and_scores_per_question(tmp_path):
    """CLEVRER's multi-label questions train and evaluate as one correct/wrong row per option, and the metrics
    regroup them: per-option and per-question accuracy as the benchmark defines them."""
    data = tmp_path / "clevrer"
    (data / "videos").mkdir(parents=True)
    options = [("The cube collides with the sphere", "correct"), ("The cylinder exits", "wrong"), ("A", "correct")]
    for split, first in (("train", 0), ("validation", 10000)):
        entries = []
        for scene in (first, first + 1):
            write_video(data / "videos" / f"video_{scene}.mp4", num_frames=16)
            questions = [
                {"question_id": 0, "question": "how many cubes are moving?", "question_type": "descriptive",
                 "answer": "2"},
                {"question_id": 1, "question": "which of the following will happen next?",
                 "question_type": "predictive",
                 "choices": [{"choice_id": k, "choice": text, "answer": verdict}
                             for k, (text, verdict) in enumerate(options)]},
            ]  # fmt: skip
            entries.append({"scene_index": scene, "video_filename": f"video_{scene}.mp4", "questions": questions})
        (data / f"{split}.json").write_text(json.dumps(entries))
    out = tmp_path / "out"
    run_videoqa.main(
        [*base_args(tmp_path, out), "--dataset", "clevrer", "--data_dir", str(data), "--eval_split", "validation"]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = read_jsonl(out / "predictions.jsonl")
    assert metrics["test_samples"] == len(predictions) == 8  # per video: 1 descriptive + 3 option rows
    option_rows = [p for p in predictions if p["answer_type"] == "predictive"]
    assert sorted(p["question_id"] for p in option_rows) == [
        f"{s}_1/option{k}" for s in (10000, 10001) for k in range(3)
    ]
    assert {p["answer"] for p in option_rows} == {"correct", "wrong"}
    per_question = {}
    for p in option_rows:
        per_question.setdefault(p["question_id"].split("/")[0], []).append(p["correct"])
    assert metrics["test_multilabel_option_accuracy"] == pytest.approx(
        sum(p["correct"] for p in option_rows) / len(option_rows)
    )
    assert metrics["test_multilabel_accuracy"] == pytest.approx(
        sum(all(v) for v in per_question.values()) / len(per_question)
    )
    assert metrics["test_multilabel_accuracy_predictive"] == metrics["test_multilabel_accuracy"]
    assert "test_multilabel_accuracy_descriptive" not in metrics  # descriptive questions are plain open-ended rows
    assert metrics["test_accuracy_descriptive"] == pytest.approx(
        sum(p["correct"] for p in predictions if p["answer_type"] == "descriptive") / 2
    )


def test_lora_trains_only_the_adapter_and_reloads(synthetic_dir, tmp_path):
    from peft import PeftModel

    out = tmp_path / "lora"
    result = run_videoqa.main(base_args(synthetic_dir, out, "--use_lora", "True", "--learning_rate", "5e-2"))
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter and all("lora_" in key for key in adapter)
    assert all(("fusor" in key or "decoder" in key) and ("q_proj" in key or "v_proj" in key) for key in adapter)
    assert any(value.abs().sum() > 0 for key, value in adapter.items() if "lora_B" in key)  # B starts at zero

    trained = result["model"]
    before = MCGForVideoQuestionAnswering.from_pretrained(out / "base_model").state_dict()
    after = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v
        for k, v in trained.state_dict().items()
        if "lora_" not in k
    }
    assert set(after) == set(before)
    for key, value in before.items():
        assert torch.equal(value, after[key]), key

    reloaded = PeftModel.from_pretrained(MCGForVideoQuestionAnswering.from_pretrained(out / "base_model"), out).eval()
    trained.eval()
    inputs = VideoQACollator(result["processor"], "uniform")(
        list(
            load_synthetic_videoqa("test", cache_dir=synthetic_dir, num_videos={"train": 6, "test": 3}).select(
                range(3)
            )
        )
    )
    inputs = {
        k: inputs[k]
        for k in ("input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask", "video_index", "labels")
    }
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, trained(**inputs).logits, rtol=1e-5, atol=1e-5)


def test_merge_lora_writes_a_plain_checkpoint(synthetic_dir, tmp_path):
    out = tmp_path / "merged"
    run_videoqa.main(
        base_args(
            synthetic_dir,
            out,
            "--use_lora",
            "True",
            "--merge_lora",
            "True",
            "--learning_rate",
            "5e-2",
            "--do_eval",
            "False",
        )
    )
    assert (out / "adapter" / "adapter_config.json").is_file()
    merged = load_file(out / "model.safetensors")
    assert not any("lora_" in key for key in merged)
    base = load_file(out / "base_model" / "model.safetensors")
    changed = {key for key in base if not torch.equal(base[key], merged[key])}
    assert changed, "merging a trained adapter must change the targeted weights"
    assert all(("fusor" in k or "decoder" in k) and k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    MCGForVideoQuestionAnswering.from_pretrained(out)  # loads as a plain model


def test_resume_from_checkpoint_continues_at_the_saved_step(synthetic_dir, tmp_path):
    first = tmp_path / "first"
    run_videoqa.main(
        base_args(
            synthetic_dir,
            first,
            "--save_strategy",
            "steps",
            "--save_steps",
            "1",
            "--save_total_limit",
            "3",
            "--do_eval",
            "False",
        )
    )
    assert (first / "checkpoint-1").is_dir() and (first / "checkpoint-2").is_dir()
    second = tmp_path / "second"
    result = run_videoqa.main(
        base_args(
            synthetic_dir,
            second,
            "--max_steps",
            "3",
            "--do_eval",
            "False",
            "--resume_from_checkpoint",
            str(first / "checkpoint-1"),
        )
    )
    state = result["trainer"].state
    assert state.global_step == 3
    steps = [entry["step"] for entry in state.log_history if "loss" in entry]
    assert steps[-2:] == [2, 3] and 1 not in steps[steps.index(2) :]


def _corrupt_copy(synthetic_dir, tmp_path):
    """A copy of the synthetic cache whose first train and first test video are garbage bytes."""
    cache = tmp_path / "corrupt"
    shutil.copytree(synthetic_dir, cache)
    (root,) = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for split in ("train", "test"):
        (root / "videos" / split / f"{split}-00000.mp4").write_bytes(b"this is not an mp4 file" * 50)
    return cache


def test_corrupt_videos_are_skipped_and_counted(synthetic_dir, tmp_path, caplog):
    cache = _corrupt_copy(synthetic_dir, tmp_path)
    out = tmp_path / "skip"
    args = [*base_args(cache, out), "--max_train_samples", "8"]
    data_args = parse_script_args(args)[1]  # the rows as the script reads them
    train = run_videoqa.load_split(data_args, "train", data_args.max_train_samples, training=True)
    test = run_videoqa.load_split(data_args, "test", data_args.max_eval_samples)
    bad_train = sum(row["video"].endswith("train-00000.mp4") for row in train)
    bad_test = [row["question_id"] for row in test if row["video"].endswith("test-00000.mp4")]
    assert len(train) == len(test) == 8 and bad_train and bad_test
    with caplog.at_level(logging.WARNING, logger="run_videoqa"):
        # 8 rows, batch 4, 2 steps: one pass over all training rows, so every corrupt one is met once
        run_videoqa.main(args)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_skipped_questions"] == bad_train
    assert 1 <= metrics["train_skipped_videos"] <= 2  # one corrupt video, in one or both of the 2 batches
    assert metrics["test_skipped_questions"] == len(bad_test)
    assert metrics["test_skipped_videos"] == 1  # one corrupt video, in the only evaluation batch
    assert metrics["test_samples"] == 8 - len(bad_test)
    assert not {p["question_id"] for p in read_jsonl(out / "predictions.jsonl")} & set(bad_test)
    warnings = [r.getMessage() for r in caplog.records if "Skipped an undecodable video" in r.getMessage()]
    # one warning per failed decode: a corrupt video asked about twice in one batch is decoded (and fails) once
    assert 2 <= len(warnings) <= bad_train + len(bad_test) and "train-00000.mp4" in warnings[0]
    assert all("train-00000.mp4" in w or "test-00000.mp4" in w for w in warnings)

    with pytest.raises(VideoDecodeError, match="00000.mp4"):
        run_videoqa.main([*base_args(cache, tmp_path / "raise"), "--on_corrupt_video", "raise"])


def test_accelerate_launch_single_process(synthetic_dir, tmp_path):
    accelerate = Path(sys.executable).with_name("accelerate")
    out = tmp_path / "accel"
    env = offline_env(tmp_path)
    proc = subprocess.run(
        [
            str(accelerate),
            "launch",
            "--num_processes",
            "1",
            "--cpu",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--num_machines",
            "1",
            str(SCRIPT),
            *base_args(synthetic_dir, out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test_accuracy" in json.loads((out / "metrics.json").read_text())
    assert (out / "model.safetensors").is_file()


def test_dataset_names_are_spelled_as_the_readers_and_unknown_ones_fail_early(tmp_path):
    data_args = parse_script_args(["--dataset", "CLEVRER"])[1]
    assert data_args.dataset == "clevrer" and data_args.validation_split == "validation"
    assert parse_script_args(["--dataset", "MSRVTT_QA"])[1].dataset == "msrvtt-qa"
    assert parse_script_args(["--dataset", "Synthetic"])[1].group_by_video is True
    with pytest.raises(ValueError, match="Unknown --dataset 'msr-vtt'; choose one of"):
        run_videoqa.main(["--dataset", "msr-vtt", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path)])


def test_config_overrides_edit_nested_fields_and_reject_unknown_ones():
    config = load_preset("mcg-tiny")
    edited = apply_config_overrides(config, "initializer_range=0.1,vision_config.drop_path_rate=0.05")
    assert edited.initializer_range == 0.1 and edited.vision_config.drop_path_rate == 0.05
    with pytest.raises(ValueError, match="unknown config field"):
        apply_config_overrides(config, "vision_config.no_such_field=1")
    with pytest.raises(ValueError, match="Unknown preset 'mcg-huge'; choose one of"):
        load_preset("mcg-huge")


def test_clip_cache_decodes_each_video_once(synthetic_dir, tmp_path):
    cache = tmp_path / "cached"
    shutil.copytree(synthetic_dir, cache)
    rows = load_synthetic_videoqa("train", cache_dir=cache, num_videos={"train": 6, "test": 3}).to_list()
    video = rows[0]["video"]
    same_video = [row for row in rows if row["video"] == video]
    assert len(same_video) > 1  # several questions per video: the case the cache is for
    processor = MCGProcessor.from_vocabulary(
        vocabulary_words(load_synthetic_videoqa("train", cache_dir=cache, num_videos={"train": 6, "test": 3})),
        MCGVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, do_center_crop=False),
    )
    cached = VideoQACollator(processor, "uniform", cache_clips=True)
    plain = VideoQACollator(processor, "uniform")
    first = cached(same_video[:1])["pixel_values_videos"]
    torch.testing.assert_close(first, plain(same_video[:1])["pixel_values_videos"])  # caching changes nothing
    Path(video).write_bytes(b"gone")  # the cached clip is served without touching the file again
    torch.testing.assert_close(cached(same_video[1:2])["pixel_values_videos"], first)
    assert plain(same_video[1:2])["num_skipped_videos"] == 1  # ... which an uncached collator can no longer read
    assert list(cached.clip_cache) == [video]

    with pytest.raises(ValueError, match="uniform"):
        VideoQACollator(processor, "rand", cache_clips=True)
    with pytest.raises(ValueError, match="augmentation"):
        VideoQACollator(processor, "uniform", do_augment=True, cache_clips=True)


def test_grouped_batches_decode_and_send_each_video_once(synthetic_dir):
    rows = load_synthetic_videoqa("train", cache_dir=synthetic_dir, num_videos={"train": 6, "test": 3}).to_list()
    videos = [row["video"] for row in rows]
    sampler = VideoGroupedSampler(videos, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(len(rows)))
    # the order is a function of (seed, epoch): every process of a distributed run draws the same one
    assert list(VideoGroupedSampler(videos, seed=3)) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == sorted(first) and second != first  # reshuffled every epoch
    # on by default for the synthetic set only (a real dataset's video may have dozens of questions)
    assert parse_script_args([])[1].group_by_video is True
    assert parse_script_args(["--dataset", "msrvtt-qa"])[1].group_by_video is False
    assert parse_script_args(["--group_by_video", "False"])[1].group_by_video is False
    runs = [videos[i] for j, i in enumerate(first) if j == 0 or videos[i] != videos[first[j - 1]]]
    assert len(runs) == len(set(videos)) == 6  # each video's questions are consecutive

    processor = MCGProcessor.from_vocabulary(
        vocabulary_words(load_synthetic_videoqa("train", cache_dir=synthetic_dir, num_videos={"train": 6, "test": 3})),
        MCGVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, do_center_crop=False),
    )
    collator = VideoQACollator(processor, "uniform")
    batch_rows = [rows[i] for i in first[:10]]
    batch = collator(batch_rows)
    distinct = list(dict.fromkeys(row["video"] for row in batch_rows))
    assert batch["pixel_values_videos"].shape[0] == len(distinct) < len(batch_rows)
    assert batch["video_index"].tolist() == [distinct.index(row["video"]) for row in batch_rows]
    for i, row in enumerate(batch_rows):  # each row still reads its own video's frames
        own = collator([row])["pixel_values_videos"][0]
        torch.testing.assert_close(batch["pixel_values_videos"][batch["video_index"][i]], own)


def test_training_asks_synthetic_order_questions_both_ways_and_evaluation_as_generated(synthetic_dir):
    data = ["--synthetic_cache_dir", str(synthetic_dir), "--synthetic_num_videos", NUM_VIDEOS]
    data_args = parse_script_args(data)[1]
    training = run_videoqa.load_split(data_args, "train", None, training=True)
    as_generated = run_videoqa.load_split(data_args, "train", None)
    assert len(training) - len(as_generated) == as_generated["answer_type"].count("order") > 0
    assert sum(qid.endswith("-reversed") for qid in training["question_id"]) == as_generated["answer_type"].count(
        "order"
    )
    off = parse_script_args([*data, "--synthetic_order_both_ways", "False"])[1]
    assert run_videoqa.load_split(off, "train", None, training=True)["question_id"] == as_generated["question_id"]


@pytest.mark.parametrize("omp", [None, "", "3"])
def test_cpu_threads_leave_the_dataloader_workers_their_cores(monkeypatch, omp):
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    args = MCGTrainingArguments(output_dir="unused", use_cpu=True, dataloader_num_workers=1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        set_cpu_threads(args)
        # unset or empty: 4 cores - 1 worker; an explicit OMP_NUM_THREADS is the user's choice and stays
        assert torch.get_num_threads() == (1 if omp == "3" else 3)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synthetic_with_validation(tmp_path_factory):
    cache = tmp_path_factory.mktemp("synthetic_validation")
    load_synthetic_videoqa("train", cache_dir=cache, num_videos={"train": 4, "validation": 2, "test": 2})
    return cache


def validation_args(cache, out, *extra):
    return [
        *base_args(cache, out),
        "--synthetic_num_videos", "train=4,validation=2,test=2", "--max_steps", "-1", "--num_train_epochs", "2",
        "--max_train_samples", "8", "--max_eval_samples", "6", "--eval_strategy", "epoch",
        "--save_strategy", "epoch", "--load_best_model_at_end", "True", *extra,
    ]  # fmt: skip


def test_validation_every_epoch_keeps_the_best_model_by_answer_accuracy(synthetic_with_validation, tmp_path):
    out = tmp_path / "validated"
    result = run_videoqa.main(validation_args(synthetic_with_validation, out, "--learning_rate", "5e-3"))
    trainer = result["trainer"]
    evaluations = [h for h in trainer.state.log_history if "eval_accuracy" in h]
    assert [h["epoch"] for h in evaluations] == [1.0, 2.0]
    assert all(h["eval_samples"] == 6 and h["eval_loss"] > 0 for h in evaluations)
    assert trainer.args.metric_for_best_model == "accuracy" and trainer.args.greater_is_better
    assert trainer.state.best_metric == max(h["eval_accuracy"] for h in evaluations)
    assert trainer.state.best_model_checkpoint is not None
    # validation and test are different videos; the final test evaluation still runs on the test split
    validation = load_synthetic_videoqa(
        "validation", cache_dir=synthetic_with_validation, num_videos={"train": 4, "validation": 2, "test": 2}
    )
    predictions = read_jsonl(out / "predictions.jsonl")
    assert not {p["question_id"] for p in predictions} & set(validation["question_id"])
    assert (out / "loss_curve.png").is_file()
    card = (out / "README.md").read_text()
    assert "validated on split `validation` every epoch, the checkpoint with the best accuracy kept" in card

    # --eval_split validation: the final evaluation on the validation split works too
    out = tmp_path / "on_validation"
    run_videoqa.main(validation_args(synthetic_with_validation, out, "--eval_split", "validation"))
    predictions = read_jsonl(out / "predictions.jsonl")
    assert [p["question_id"] for p in predictions] == validation["question_id"][:6]  # dataset order


def test_validation_on_an_msrvtt_qa_fixture(tmp_path):
    data = tmp_path / "msrvtt"
    answers = ["guitar", "man", "red", "dog"]
    (data / "videos").mkdir(parents=True)
    for split, first in (("train", 0), ("val", 10), ("test", 20)):
        rows = []
        for v in range(first, first + 2):
            write_video(data / "videos" / f"video{v}.mp4", num_frames=12, width=40, height=32)
            for k, (question, answer_type) in enumerate((("what is he playing?", "what"), ("who plays?", "who"))):
                rows.append({"question": question, "answer": answers[(v + k) % 4], "video_id": f"video{v}",
                             "answer_type": answer_type})  # fmt: skip
        (data / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    result = run_videoqa.main(
        [*base_args(tmp_path, out), "--dataset", "msrvtt-qa", "--data_dir", str(data), "--max_steps", "-1",
         "--num_train_epochs", "2", "--eval_strategy", "epoch", "--save_strategy", "epoch",
         "--load_best_model_at_end", "True", "--num_frames", "4"]
    )  # fmt: skip
    evaluations = [h for h in result["trainer"].state.log_history if "eval_accuracy" in h]
    assert len(evaluations) == 2 and all(h["eval_samples"] == 4 for h in evaluations)
    assert {"eval_accuracy_what", "eval_accuracy_who"} <= set(evaluations[0])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_samples"] == 4 and "test_mc_accuracy" not in metrics  # open-ended set: generation
    _, card = (out / "README.md").read_text().split("---\n", 2)[1:]
    assert "MSRVTT-QA" in card and "coloured shapes" not in card


def _saved_figures(monkeypatch):
    import matplotlib.figure

    figures = []
    original = matplotlib.figure.Figure.savefig

    def savefig(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return figures


def test_loss_plot_shows_the_evaluation_curve(tmp_path, monkeypatch):
    from modeling_mcg.training import write_loss_plot

    figures = _saved_figures(monkeypatch)
    history = [{"loss": 3.0, "step": 1}, {"loss": 2.0, "step": 2}, {"eval_loss": 2.5, "eval_accuracy": 0.1, "step": 2}]
    assert write_loss_plot(tmp_path, history, ("loss_lm", "loss_icl")) == ["loss_curve.png"]
    labels = {line.get_label(): list(line.get_ydata()) for line in figures[0].axes[0].get_lines()}
    assert labels == {"training loss": [3.0, 2.0], "evaluation loss": [2.5]}  # no part logged, none drawn


def test_accuracy_plot_has_counts_an_overall_line_and_chance(tmp_path, monkeypatch):
    from modeling_mcg.training import write_accuracy_plot

    figures = _saved_figures(monkeypatch)
    records = [
        {"answer_type": "color", "answer": "red", "choices": ["red", "blue", "green", "yellow"], "correct": True},
        {"answer_type": "color", "answer": "blue", "choices": ["red", "blue", "green", "yellow"], "correct": False},
        {"answer_type": "order", "answer": "yes", "choices": ["yes", "no"], "correct": True},
    ]
    assert write_accuracy_plot(tmp_path, records) == ["accuracy_per_type.png"]
    ax = figures[0].axes[0]
    assert sorted(text.get_text() for text in ax.texts) == ["n=1", "n=2"]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "chance" in legend and any(label.startswith("overall 0.667 (n=3)") for label in legend)
    chance = ax.collections[0].get_offsets()[:, 1].tolist()
    assert chance == pytest.approx([0.25, 0.5])


def test_auxiliary_loss_parts_are_logged_when_their_weights_are_on(synthetic_dir, tmp_path, monkeypatch):
    figures = _saved_figures(monkeypatch)
    overrides = "icl_loss_weight=0.1,tcl_loss_weight=0.1"
    result = run_videoqa.main(base_args(synthetic_dir, tmp_path / "aux", "--config_overrides", overrides))
    history = [h for h in result["trainer"].state.log_history if "loss" in h]
    assert [h["step"] for h in history] == [1, 2]
    for h in history:
        assert h["loss"] == pytest.approx(h["loss_lm"] + 0.1 * h["loss_icl"] + 0.1 * h["loss_tcl"], abs=2e-3)
    labels = {line.get_label() for line in figures[0].axes[0].get_lines()}  # loss_curve.png is drawn first
    assert labels == {"training loss", "loss_lm", "loss_icl", "loss_tcl"}


def test_output_folder_rules(tmp_path):
    from modeling_mcg.training import resolve_checkpoint

    def args(out, **kwargs):
        return MCGTrainingArguments(
            output_dir=str(out), use_cpu=True, report_to="none", **{"do_train": True, **kwargs}
        )

    out = tmp_path / "run"
    assert resolve_checkpoint(args(out)) is None  # a new folder
    with pytest.raises(ValueError, match="no complete checkpoint-\\* folder"):
        resolve_checkpoint(args(out, resume_from_checkpoint="last"))
    (out / "checkpoint-3").mkdir(parents=True)
    (out / "checkpoint-3" / "trainer_state.json").write_text("{}")
    assert resolve_checkpoint(args(out)) == str(out / "checkpoint-3")  # an interrupted run resumes
    assert resolve_checkpoint(args(out, resume_from_checkpoint="last")) == str(out / "checkpoint-3")
    (out / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(ValueError, match="already holds a trained model \\(model.safetensors\\)"):
        resolve_checkpoint(args(out))
    # evaluating the folder's own model in place is allowed; training into it is not
    assert resolve_checkpoint(args(out, do_train=False), model_name_or_path=str(out)) is None
    with pytest.raises(ValueError, match="--overwrite_output_dir True"):
        resolve_checkpoint(args(out, do_train=False), model_name_or_path=str(tmp_path / "other"))
    # --overwrite_output_dir starts over: the old checkpoints would outrank the new ones in the rotation
    assert resolve_checkpoint(args(out, overwrite_output_dir=True)) is None
    assert not (out / "checkpoint-3").exists()
