"""`run_videoqa.py` against the faults a long run meets: an output folder it cannot write or fill, a disk that fills
up during a checkpoint save, a crash that leaves a half-written checkpoint, undecodable videos counted across a
resume, and videos missing from a dataset folder. Tiny runs (a few optimizer steps) on synthetic videos."""

import errno
import json
import logging
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from example_scripts import load_example
from video_factory import write_video

from modeling_mcg.data.synthetic import load_synthetic_videoqa
from modeling_mcg.training import (
    MCGTrainingArguments,
    check_output_dir_writable,
    checkpoint_size_estimate,
    is_complete_checkpoint,
    last_complete_checkpoint,
    parse_args,
    resolve_checkpoint,
)

REPO = Path(__file__).resolve().parent.parent
NUM_VIDEOS = {"train": 6, "test": 3}


run_videoqa = load_example("run_videoqa")


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    cache = tmp_path_factory.mktemp("synthetic")
    load_synthetic_videoqa("train", cache_dir=cache, num_videos=NUM_VIDEOS)
    return cache


def run_args(cache, out, *extra):
    return [
        "--synthetic_cache_dir", str(cache), "--synthetic_num_videos", "train=6,test=3", "--output_dir", str(out),
        "--max_steps", "4", "--per_device_train_batch_size", "2", "--logging_steps", "1",
        "--dataloader_num_workers", "0", "--max_train_samples", "8", "--do_eval", "False", "--save_strategy", "steps",
        "--save_steps", "2", "--save_total_limit", "3", "--use_cpu", "True", *extra,
    ]  # fmt: skip


def training_started(monkeypatch):
    """A list that gets an entry when `run_videoqa` starts training."""
    calls = []
    original = run_videoqa.VideoQATrainer.train

    def train(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(run_videoqa.VideoQATrainer, "train", train)
    return calls


def test_an_output_folder_that_cannot_be_written_fails_before_training(synthetic_dir, tmp_path, monkeypatch):
    # a path under a regular file cannot be created even by root, for whom chmod does not stop writes
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "run"
    with pytest.raises(OSError, match="is not writable") as error:
        check_output_dir_writable(out)
    assert str(out) in str(error.value) and "--output_dir" in str(error.value)

    started = training_started(monkeypatch)
    with pytest.raises(OSError, match=f"--output_dir {out} is not writable"):
        run_videoqa.main(run_args(synthetic_dir, out, "--save_strategy", "no"))
    assert not started  # noticed at start, not after training (--save_strategy no) or at the first checkpoint


def test_an_output_folder_without_room_for_a_checkpoint_fails_before_training(synthetic_dir, tmp_path, monkeypatch):
    started = training_started(monkeypatch)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        "modeling_mcg.training.checkpoints.shutil.disk_usage", lambda path: usage(10**6, 10**6 - 4096, 4096)
    )
    out = tmp_path / "full"
    with pytest.raises(OSError, match=r"has 4\.0 KiB free, but one checkpoint of this model needs about") as error:
        run_videoqa.main(run_args(synthetic_dir, out))
    assert f"--output_dir {out}" in str(error.value) and "weights + optimizer state" in str(error.value)
    assert not started

    with pytest.raises(OSError, match=r"needs about .* \(weights\)"):  # no checkpoints: the final model only
        run_videoqa.main(run_args(synthetic_dir, out, "--save_strategy", "no"))


def test_the_checkpoint_estimate_counts_weights_and_adam_moments_of_trainable_weights():
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 7))
    model[0].requires_grad_(False)
    weights = (3 * 5 + 5 + 5 * 7 + 7) * 4
    assert checkpoint_size_estimate(model, with_optimizer=False) == weights
    assert checkpoint_size_estimate(model, with_optimizer=True) == weights + 2 * (5 * 7 + 7) * 4


def test_a_full_disk_during_a_checkpoint_save_leaves_no_partial_checkpoint_and_resume_continues(
    synthetic_dir, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    real_save = torch.save

    def save_until_the_disk_fills(obj, path, *args, **kwargs):
        if "checkpoint-4" in str(path):  # the optimizer state of the second checkpoint does not fit any more
            Path(path).write_bytes(b"PK\x03\x04 half of a zip")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    with pytest.raises(OSError, match="Saving checkpoint .*checkpoint-4 failed: .*No space left on device") as error:
        run_videoqa.main(run_args(synthetic_dir, out))
    assert error.value.errno == errno.ENOSPC and "--resume_from_checkpoint last" in str(error.value)
    assert not (out / "checkpoint-4").exists()  # removed, so it cannot pass for a checkpoint
    assert is_complete_checkpoint(out / "checkpoint-2")
    monkeypatch.setattr(torch, "save", real_save)

    result = run_videoqa.main(run_args(synthetic_dir, out, "--resume_from_checkpoint", "last"))
    state = result["trainer"].state
    assert state.global_step == 4 and is_complete_checkpoint(out / "checkpoint-4")
    steps = [entry["step"] for entry in state.log_history if "loss" in entry]
    assert steps == [1, 2, 3, 4]  # steps 1-2 from checkpoint-2's history, 3-4 trained after the resume


def test_resume_last_skips_a_checkpoint_whose_save_was_cut_short(synthetic_dir, tmp_path, caplog):
    out = tmp_path / "run"
    run_videoqa.main(run_args(synthetic_dir, out, "--max_steps", "2"))
    # a crash (SIGKILL, power loss) during the save of checkpoint-4: the weights are there, trainer_state.json is not
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-4")
    (out / "checkpoint-4" / "trainer_state.json").unlink()
    (out / "checkpoint-6").mkdir()
    (out / "checkpoint-6" / "trainer_state.json").write_text('{"global_step": 6, "log_hist')  # cut mid-write
    assert not is_complete_checkpoint(out / "checkpoint-4") and not is_complete_checkpoint(out / "checkpoint-6")
    for name in ("model.safetensors", "README.md"):  # an interrupted run: no finished model yet
        (out / name).unlink(missing_ok=True)

    with caplog.at_level(logging.WARNING):
        result = run_videoqa.main(run_args(synthetic_dir, out, "--resume_from_checkpoint", "last"))
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipping ")]
    assert len(skipped) == 2 and str(out / "checkpoint-6") in skipped[0] and str(out / "checkpoint-4") in skipped[1]
    assert "trainer_state.json" in skipped[0]
    assert result["trainer"].state.global_step == 4 and is_complete_checkpoint(out / "checkpoint-4")
    assert last_complete_checkpoint(out) == str(out / "checkpoint-4")


def test_resume_last_with_only_incomplete_checkpoints_says_so(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    args = MCGTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", do_train=True)
    args.resume_from_checkpoint = "last"
    with pytest.raises(ValueError, match="no complete checkpoint-\\* folder"):
        resolve_checkpoint(args)


def _corrupt_copy(synthetic_dir, tmp_path, names):
    cache = tmp_path / "corrupt"
    shutil.copytree(synthetic_dir, cache)
    (root,) = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for name in names:
        (root / "videos" / "train" / name).write_bytes(b"this is not an mp4 file" * 50)
    return cache


def test_skip_counts_after_a_resume_equal_those_of_an_uninterrupted_run(synthetic_dir, tmp_path):
    cache = _corrupt_copy(synthetic_dir, tmp_path, [f"train-{i:05d}.mp4" for i in (0, 2, 4)])
    whole = tmp_path / "whole"
    classes = (run_videoqa.ModelArguments, run_videoqa.DataArguments, MCGTrainingArguments)
    data_args = parse_args(classes, run_videoqa.TRAINING_DEFAULTS, run_args(cache, whole))[1]
    # the training rows as the script reads them
    train = run_videoqa.load_split(data_args, "train", data_args.max_train_samples, training=True)
    assert len(train) == 8
    bad = [row["video"] for row in train if row["video"].endswith(("00000.mp4", "00002.mp4", "00004.mp4"))]
    result = run_videoqa.main(run_args(cache, whole))
    expected = json.loads((whole / "metrics.json").read_text())
    # 8 questions in 4 steps of 2: one pass, so every question of a corrupt video is dropped exactly once
    assert expected["train_skipped_questions"] == len(bad)
    assert len(set(bad)) <= expected["train_skipped_videos"] <= len(bad)
    logged = {entry["step"]: entry for entry in result["trainer"].state.log_history if "loss" in entry}
    assert 0 < logged[2]["skipped_questions"] < len(bad)  # skips on both sides of the checkpoint
    assert json.loads((whole / "checkpoint-2" / "skip_counts.json").read_text()) == {
        "skipped_videos": logged[2]["skipped_videos"],
        "skipped_questions": logged[2]["skipped_questions"],
    }

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-2", resumed / "checkpoint-2")
    run_videoqa.main(run_args(cache, resumed, "--resume_from_checkpoint", "last"))
    metrics = json.loads((resumed / "metrics.json").read_text())
    for name in ("train_skipped_videos", "train_skipped_questions"):
        assert metrics[name] == expected[name], name


@pytest.fixture()
def msrvtt_with_videos_elsewhere(tmp_path):
    """An MSRVTT-QA folder whose videos live outside `<data_dir>/videos`, one of them missing."""
    data, videos = tmp_path / "msrvtt", tmp_path / "elsewhere"
    data.mkdir()
    videos.mkdir()
    rows = []
    for v in range(3):
        if v != 2:
            write_video(videos / f"video{v}.mp4", num_frames=6, width=40, height=32)
        rows.append({"question": "what is it?", "answer": "dog", "video_id": f"video{v}", "answer_type": "what"})
    (data / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return data, videos


def test_video_dir_and_on_missing_video_flags_reach_the_dataset_reader(msrvtt_with_videos_elsewhere):
    data, videos = msrvtt_with_videos_elsewhere

    def load(*flags):
        classes = (run_videoqa.ModelArguments, run_videoqa.DataArguments, MCGTrainingArguments)
        _, data_args, _ = parse_args(
            classes, run_videoqa.TRAINING_DEFAULTS, ["--dataset", "msrvtt-qa", "--data_dir", str(data), *flags]
        )
        return run_videoqa.load_split(data_args, "train", None)

    with pytest.raises(ValueError, match="3 of 3 questions") as error:
        load()  # the default folder <data_dir>/videos does not exist
    assert "--video_dir" in str(error.value) and "--on_missing_video skip" in str(error.value)
    with pytest.raises(ValueError, match="1 of 3 questions.*--video_dir.*--on_missing_video skip"):
        load("--video_dir", str(videos))
    kept = load("--video_dir", str(videos), "--on_missing_video", "skip")
    assert [Path(path).name for path in kept["video"]] == ["video0.mp4", "video1.mp4"]
    with pytest.raises(ValueError, match="--on_missing_video must be raise or skip"):
        load("--on_missing_video", "ignore")
    with pytest.raises(ValueError, match="--video_dir applies to the dataset readers"):
        parse_args(
            (run_videoqa.ModelArguments, run_videoqa.DataArguments, MCGTrainingArguments),
            run_videoqa.TRAINING_DEFAULTS,
            ["--video_dir", str(videos)],
        )
