"""Two data-parallel CPU processes (gloo) through `accelerate launch` and the config file shipped in examples/:
training splits the data between the processes, and the evaluation answers every question once, in dataset order.
With gradient checkpointing, `Trainer` wraps the model in DDP without find_unused_parameters, which fails at the
second step if any weight goes without a gradient."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from example_scripts import free_port, offline_env

from modeling_mcg.data.synthetic import load_synthetic_videoqa

REPO = Path(__file__).resolve().parent.parent
NUM_VIDEOS = {"train": 4, "validation": 2, "test": 3}


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "gradient-checkpointing"])
def test_two_processes_split_training_and_gather_every_question_in_order(tmp_path, checkpointing):
    cache = tmp_path / "cache"
    test = load_synthetic_videoqa("test", cache_dir=cache, num_videos=NUM_VIDEOS)
    assert len(test) > 11
    out = tmp_path / "out"
    env = offline_env(tmp_path)
    command = [
        str(Path(sys.executable).with_name("accelerate")), "launch",
        "--config_file", str(REPO / "examples" / "accelerate_cpu_2proc.yaml"),
        "--main_process_port", str(free_port()),
        str(REPO / "examples" / "run_videoqa.py"),
        "--synthetic_cache_dir", str(cache), "--synthetic_num_videos", "train=4,validation=2,test=3",
        "--output_dir", str(out), "--num_train_epochs", "1", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "4", "--logging_steps", "1", "--dataloader_num_workers", "0",
        "--save_strategy", "no", "--max_train_samples", "16", "--max_eval_samples", "11",
        "--gradient_checkpointing", str(checkpointing),
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    state = json.loads((out / "trainer_state.json").read_text())
    # 16 questions, 4 per process and step, 2 processes: 2 steps (one process alone would take 4)
    assert state["global_step"] == 2
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    # 11 questions over 2 processes x batches of 4: the padded repeats are dropped, the order is the dataset's
    assert [p["question_id"] for p in predictions] == test["question_id"][:11]
    assert json.loads((out / "metrics.json").read_text())["test_samples"] == 11
