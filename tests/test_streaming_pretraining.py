"""`examples/run_pretraining.py --train_shards`: two CPU processes (gloo) through `accelerate launch` stream shards
made by the package's converter, are killed mid-epoch with SIGKILL, resume from the checkpoint, and train on every
sample exactly once per epoch; the ICL loss contrasts the global batch; the folder then fine-tunes for VideoQA."""

import json
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from example_scripts import free_port, load_example, offline_env
from video_factory import write_video

from modeling_mcg.data.shards import ShardedVideoDataset, convert_caption_file
from modeling_mcg.data.synthetic import COLORS, SHAPES, load_synthetic_videoqa

REPO = Path(__file__).resolve().parent.parent
NUM_CLIPS = 200  # 13 shards of at most 16, split by samples; 25 steps per epoch: 2 processes x batches of 4
BATCH = 4
SAVE_STEPS = 3
COLOR_NAMES, SHAPE_NAMES = sorted(COLORS), sorted(SHAPES)


def write_clips(folder: Path, count: int) -> Path:
    """`count` tiny H.264 clips and a jsonl of {video, caption}, as a caption file to convert."""
    folder.mkdir()
    lines = []
    for i in range(count):
        write_video(folder / f"clip{i:03d}.mp4", num_frames=4, width=32, height=32)
        caption = f"a {COLOR_NAMES[i % len(COLOR_NAMES)]} {SHAPE_NAMES[i % len(SHAPE_NAMES)]} number {i}"
        lines.append(json.dumps({"video": f"clip{i:03d}.mp4", "caption": caption}))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "captions.jsonl"


def trained_samples(out: Path, rank: int) -> list[dict]:
    path = out / f"trained_samples-rank{rank}.jsonl"
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # the line being written when the process was killed
            pass
    return entries


def kill_process_tree(job: subprocess.Popen) -> None:
    """SIGKILL the launcher and every process under it, and wait until all are gone, as a preempted machine would.

    Killing the launcher's process group is not enough: torch's elastic agent starts each training process in a
    session of its own, and a training process that outlives the launcher goes on appending to the files the test
    reads. The tree is frozen (SIGSTOP) until no new process appears, so nothing forks between listing and killing.
    """
    root = psutil.Process(job.pid)
    frozen: dict[int, psutil.Process] = {}
    while True:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        new = [p for p in tree if p.pid not in frozen]
        if not new:
            break
        for process in new:
            frozen[process.pid] = process
            try:
                process.suspend()
            except psutil.NoSuchProcess:
                pass
    for process in frozen.values():
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    job.wait(timeout=30)
    _, alive = psutil.wait_procs(list(frozen.values()), timeout=30)
    assert not alive, f"processes still running after SIGKILL: {alive}"


def complete_checkpoints(out: Path) -> list[Path]:
    """Checkpoints whose trainer state and both processes' data states are on disk, oldest first."""
    found = [
        c for c in out.glob("checkpoint-*")
        if (c / "trainer_state.json").is_file() and all((c / f"data_state-rank{r}.json").is_file() for r in (0, 1))
    ]  # fmt: skip
    return sorted(found, key=lambda c: int(c.name.split("-")[1]))


def test_two_processes_stream_shards_killed_mid_epoch_resume_and_train_on_every_sample_once_per_epoch(tmp_path):
    summary = convert_caption_file(
        write_clips(tmp_path / "clips", NUM_CLIPS), tmp_path / "shards", max_shard_samples=16, check_frames=2,
        progress=False,
    )  # fmt: skip
    assert summary.num_written == NUM_CLIPS and not summary.unreadable
    every_key = Counter(s["key"] for s in ShardedVideoDataset(tmp_path / "shards", shuffle_buffer=0))
    assert len(every_key) == NUM_CLIPS

    out = tmp_path / "pretrain"
    env = offline_env(tmp_path)

    def launch(*extra):
        command = [
            str(Path(sys.executable).with_name("accelerate")), "launch",
            "--config_file", str(REPO / "examples" / "accelerate_cpu_2proc.yaml"),
            "--main_process_port", str(free_port()),
            str(REPO / "examples" / "run_pretraining.py"),
            "--train_shards", str(tmp_path / "shards"), "--shuffle_buffer", "8", "--output_dir", str(out),
            "--num_train_epochs", "2", "--per_device_train_batch_size", str(BATCH), "--num_frames", "2",
            "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS),
            "--save_total_limit", "10", "--dataloader_num_workers", "1", "--log_trained_samples", "True",
            "--warmup_steps", "0", *extra,
        ]  # fmt: skip
        return subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )

    steps_per_epoch = NUM_CLIPS // (2 * BATCH)
    job = launch()
    deadline = time.monotonic() + 300  # two processes importing torch are slow on a busy machine
    while not complete_checkpoints(out) or max((e["step"] for e in trained_samples(out, 1)), default=0) <= SAVE_STEPS:
        assert job.poll() is None, job.stdout.read().decode()[-4000:]
        assert time.monotonic() < deadline, "the training processes made no progress"
        time.sleep(0.05)
    kill_process_tree(job)  # the launcher, both training processes and their DataLoader workers: preempted
    checkpoint = complete_checkpoints(out)[-1]
    resumed_at = int(checkpoint.name.split("-")[1])
    assert 0 < resumed_at < steps_per_epoch  # mid-epoch
    # what the checkpoint had trained on stays; the steps after it are trained again by the resumed run
    for rank in (0, 1):
        kept = [e for e in trained_samples(out, rank) if e["step"] <= resumed_at]
        (out / f"trained_samples-rank{rank}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept))

    job = launch("--resume_from_checkpoint", str(checkpoint))
    output = job.communicate(timeout=400)[0].decode()
    assert job.returncode == 0, output[-4000:]

    seen = trained_samples(out, 0) + trained_samples(out, 1)
    for epoch in (0, 1):
        assert Counter(e["key"] for e in seen if e["epoch"] == epoch) == every_key, f"epoch {epoch}"
    assert len(seen) == 2 * NUM_CLIPS
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * steps_per_epoch
    train_logs = [h for h in state["log_history"] if "loss" in h]
    assert [h["step"] for h in train_logs] == list(range(1, 2 * steps_per_epoch + 1))  # the checkpoint's, then on
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["loss_icl"]) for h in train_logs)
    # ICL contrasts the pairs of both processes: the global batch, twice the per-device one
    assert {h["icl_batch_size"] for h in train_logs} == {2 * BATCH}
    assert all(h["data_clips_per_s"] > 0 for h in train_logs)

    # the folder fine-tunes for VideoQA
    cache = tmp_path / "synthetic"
    load_synthetic_videoqa("train", cache_dir=cache, num_videos={"train": 4, "test": 2})
    run_videoqa = load_example("run_videoqa")
    result = run_videoqa.main([
        "--model_name_or_path", str(out), "--synthetic_cache_dir", str(cache),
        "--synthetic_num_videos", "train=4,test=2", "--output_dir", str(tmp_path / "qa"), "--max_steps", "1",
        "--per_device_train_batch_size", "4", "--logging_steps", "1", "--dataloader_num_workers", "0",
        "--save_strategy", "no", "--do_eval", "False", "--use_cpu", "True",
    ])  # fmt: skip
    losses = [h["loss"] for h in result["trainer"].state.log_history if "loss" in h]
    assert len(losses) == 1 and math.isfinite(losses[0])
    assert (tmp_path / "qa" / "model.safetensors").is_file()


def test_streaming_from_missing_shards_or_with_a_caption_file_too_fails_clearly(tmp_path):
    script = load_example("run_pretraining")
    with pytest.raises(FileNotFoundError, match="no shard folder or shard files match"):
        script.main(["--train_shards", str(tmp_path / "missing" / "*.tar"), "--output_dir", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="Pass --train_file or --train_shards, not both"):
        script.main(["--train_shards", str(tmp_path), "--train_file", "x.csv", "--output_dir", str(tmp_path / "o")])


def test_the_trainer_refuses_a_stream_without_max_steps_or_with_batches_it_would_skip_or_drop(tmp_path):
    from tiny_models import tiny_config
    from torch.utils.data import DataLoader
    from transformers import TrainingArguments

    from modeling_mcg import MCGForPreTraining
    from modeling_mcg.data.shards import ShardBatchCollator, ShardWriter
    from modeling_mcg.training import PretrainingTrainer

    with ShardWriter(tmp_path / "shards", format="webdataset") as writer:
        writer.write(b"not decoded here", "a caption")
    stream = ShardedVideoDataset(tmp_path / "shards", shuffle_buffer=0)
    model = MCGForPreTraining(tiny_config())

    def trainer(dataset=stream, **kwargs):
        args = {"output_dir": str(tmp_path / "o"), "use_cpu": True, "report_to": "none", **kwargs}
        return PretrainingTrainer(model=model, args=TrainingArguments(**args), train_dataset=dataset,
                                  trained_samples_file=str(tmp_path / "t{rank}.jsonl"))  # fmt: skip

    with pytest.raises(ValueError, match="max_steps has to be specified"):  # Trainer's own check
        trainer(ignore_data_skip=True)
    with pytest.raises(ValueError, match="set ignore_data_skip=True"):
        trainer(max_steps=2)
    with pytest.raises(ValueError, match="dataloader_drop_last=True would drop samples"):
        trainer(max_steps=2, ignore_data_skip=True, dataloader_drop_last=True)
    with pytest.raises(ValueError, match="trained_samples_file needs a ShardedVideoDataset"):
        trainer(dataset=[{"caption": "x"}], max_steps=2)
    streaming = trainer(max_steps=2, ignore_data_skip=True)
    assert streaming.trained_samples_file == str(tmp_path / "t0.jsonl")
    assert any(type(c).__name__ == "ShardStateCallback" for c in streaming.callback_handler.callbacks)
    loader = streaming.get_train_dataloader()
    assert type(loader) is DataLoader  # not accelerate's: the stream splits the shards across processes itself
    assert isinstance(loader.collate_fn, ShardBatchCollator)
