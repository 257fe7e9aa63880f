"""Video–caption shards: writing (tar and Parquet), converting a caption csv, streaming, splitting, resuming."""

import glob
import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from example_scripts import free_port
from transformers import TrainerState, TrainingArguments
from video_factory import write_video

from modeling_mcg.data.shards import (
    INDEX_FILE,
    REPORT_FILE,
    ShardBatchCollator,
    ShardedVideoDataset,
    ShardStateCallback,
    ShardWriter,
    convert_caption_file,
    count_samples,
    load_shard_state,
    parse_size,
    plan_epoch,
    read_index,
    shard_dataloader,
    shuffle_order,
)
from modeling_mcg.data.shards.__main__ import main as shards_main
from modeling_mcg.video_io import decode_video
from modeling_mcg.video_processing_mcg import MCGVideoProcessor

FORMATS = ("webdataset", "parquet")


def fake_video(i: int) -> bytes:
    """Distinct bytes per sample: the writer and reader never decode, so tests of packing need no real video."""
    return f"video {i} ".encode() * (7 + i % 5)


def write_samples(folder, format, count, **kwargs) -> list[dict]:
    with ShardWriter(folder, format=format, **kwargs) as writer:
        samples = []
        for i in range(count):
            meta = {"videoid": str(1000 + i), "page_dir": f"p{i % 3}"}
            key = writer.write(fake_video(i), f"caption number {i}", meta, video_ext="mp4")
            samples.append({"key": key, "video": fake_video(i), "caption": f"caption number {i}", **meta})
    return samples


def keys_collate(samples):
    return {"keys": [sample["key"] for sample in samples]}


# ---------------------------------------------------------------------------------------------- writing


def test_writer_packs_webdataset_tar_members_by_key_and_datasets_webdataset_builder_reads_them(tmp_path):
    samples = write_samples(tmp_path, "webdataset", 7, max_shard_samples=3)
    index = read_index(str(tmp_path))
    assert index["format"] == "webdataset" and index["num_samples"] == 7
    assert [(s["name"], s["num_samples"]) for s in index["shards"]] == [
        ("shard-000000.tar", 3), ("shard-000001.tar", 3), ("shard-000002.tar", 1)
    ]  # fmt: skip
    with tarfile.open(tmp_path / "shard-000001.tar") as tar:
        assert tar.getnames() == [f"00000000{i}.{ext}" for i in (3, 4, 5) for ext in ("mp4", "txt", "json")]
    assert not glob.glob(str(tmp_path / "*.tmp"))

    streamed = datasets.load_dataset(
        "webdataset", data_files={"train": sorted(glob.glob(str(tmp_path / "*.tar")))}, split="train", streaming=True
    ).decode(False)  # the Video feature would decode with torchcodec; we read the bytes
    rows = list(streamed)
    assert [row["__key__"] for row in rows] == [s["key"] for s in samples]
    for row, sample in zip(rows, samples):
        assert row["mp4"]["bytes"] == sample["video"]
        assert row["txt"] == sample["caption"] == row["json"]["caption"]
        assert row["json"]["videoid"] == sample["videoid"]


def test_writer_packs_parquet_with_a_binary_video_column_that_datasets_streams(tmp_path):
    samples = write_samples(tmp_path, "parquet", 9, max_shard_samples=4, row_group_bytes=100)
    assert [s["num_samples"] for s in read_index(str(tmp_path))["shards"]] == [4, 4, 1]
    assert pq.ParquetFile(tmp_path / "shard-000000.parquet").num_row_groups > 1  # bounded row groups
    streamed = datasets.load_dataset(
        "parquet", data_files={"train": sorted(glob.glob(str(tmp_path / "*.parquet")))}, split="train", streaming=True
    )
    assert streamed.features["video"] == datasets.Value("binary")
    rows = list(streamed)
    assert [row["key"] for row in rows] == [s["key"] for s in samples]
    for row, sample in zip(rows, samples):
        assert row["video"] == sample["video"] and row["caption"] == sample["caption"]
        assert row["video_ext"] == "mp4" and json.loads(row["metadata"])["page_dir"] == sample["page_dir"]


@pytest.mark.parametrize("format", FORMATS)
def test_writer_starts_a_new_shard_before_the_size_target_is_passed(tmp_path, format):
    target = 6000
    write_samples(tmp_path, format, 40, max_shard_bytes=target)
    shards = read_index(str(tmp_path))["shards"]
    assert len(shards) >= 2
    for shard in shards:
        path = tmp_path / shard["name"]
        assert shard["num_bytes"] == os.path.getsize(path)
        assert count_samples(str(path)) == shard["num_samples"]
        # tar: exact up to the end-of-archive padding; parquet: the estimate leaves out the footer (schema, stats)
        assert shard["num_bytes"] <= target + (tarfile.RECORDSIZE if format == "webdataset" else 4096)
    assert sum(s["num_samples"] for s in shards) == 40


def test_writer_rejects_a_folder_with_shards_and_bad_arguments_with_clear_errors(tmp_path):
    write_samples(tmp_path, "webdataset", 2)
    with pytest.raises(FileExistsError, match="already holds 1 shard"):
        ShardWriter(tmp_path, format="webdataset")
    with pytest.raises(ValueError, match="unknown shard format 'zip'"):
        ShardWriter(tmp_path / "new", format="zip")
    with ShardWriter(tmp_path / "other") as writer:
        with pytest.raises(ValueError, match="non-empty string"):
            writer.write(b"x", "  ")
        with pytest.raises(ValueError, match="video_ext 'gif'"):
            writer.write(b"x", "a caption", video_ext="gif")
    assert parse_size("1.5MB") == 1572864 and parse_size("2GiB") == 2 << 30 and parse_size(77) == 77
    with pytest.raises(ValueError, match="cannot read a size"):
        parse_size("lots")


def test_convert_webvid_csv_skips_missing_and_undecodable_videos_and_lists_them(tmp_path, capsys):
    videos = tmp_path / "videos"
    (videos / "0001").mkdir(parents=True)
    lines = ["videoid,contentUrl,duration,page_dir,name"]
    for i in range(5):
        write_video(videos / "0001" / f"{100 + i}.mp4", num_frames=9 + i, width=34, height=26)
        lines.append(f'{100 + i},https://example.com/{100 + i}.mp4,PT00H00M1{i}S,0001,"caption {i}, with a comma"')
    whole = (videos / "0001" / "100.mp4").read_bytes()
    (videos / "0001" / "200.mp4").write_bytes(whole[: len(whole) // 2])  # cut short: no index
    (videos / "0001" / "201.mp4").write_text("not a video at all\n" * 20)
    lines[3:3] = ["200,u,PT0S,0001,truncated", "300,u,PT0S,0001,never downloaded", "201,u,PT0S,0001,text file"]
    (tmp_path / "results.csv").write_text("\n".join(lines) + "\n")

    out = tmp_path / "shards"
    status = shards_main(["--annotation", str(tmp_path / "results.csv"), "--video_dir", str(videos),
                          "--output_dir", str(out), "--format", "parquet", "--max_shard_samples", "2",
                          "--num_proc", "2"])  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "5 of 8 caption rows written to 3 shard(s)" in printed and "3 skipped as unreadable" in printed
    report = [json.loads(line) for line in (out / REPORT_FILE).read_text().splitlines()]
    assert [r["where"].rsplit(":", 1)[1] for r in report] == ["4", "5", "6"]  # file order
    assert report[0]["video"].endswith("200.mp4") and "cannot open" in report[0]["reason"]
    assert "0001/300 or 300" == report[1]["video"] and "not found" in report[1]["reason"]
    assert report[2]["video"].endswith("201.mp4")
    for path in ("200.mp4", "201.mp4"):  # unreadable means: the project's reader fails on it
        with pytest.raises(ValueError, match="Could not read video"):
            decode_video(str(videos / "0001" / path))

    dataset = ShardedVideoDataset(out, shuffle_buffer=0)
    samples = list(dataset)
    assert [s["caption"] for s in samples] == [f"caption {i}, with a comma" for i in range(5)]
    first = samples[0]["metadata"]
    assert first["videoid"] == "100" and first["contentUrl"] == "https://example.com/100.mp4"
    assert first["source"] == os.path.join("0001", "100.mp4")
    assert first["video_info"]["num_frames"] == 9 and first["video_info"]["width"] == 34


def test_convert_reads_a_jsonl_with_paths_and_reports_bad_rows_by_line(tmp_path):
    write_video(tmp_path / "a.webm", num_frames=6, codec="libvpx-vp9", width=32, height=24)
    (tmp_path / "list.jsonl").write_text(json.dumps({"video": "a.webm", "caption": "vp9 clip"}) + "\n")
    summary = convert_caption_file(tmp_path / "list.jsonl", tmp_path / "out", progress=False)
    assert summary.num_written == 1 and summary.unreadable == []
    assert (tmp_path / "out" / REPORT_FILE).read_text() == ""
    with tarfile.open(tmp_path / "out" / "shard-000000.tar") as tar:
        assert tar.getnames()[0] == "000000000.webm"
    (tmp_path / "bad.jsonl").write_text('{"video": "a.webm", "caption": "ok"}\n{"video": "a.webm"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2.*caption column"):
        convert_caption_file(tmp_path / "bad.jsonl", tmp_path / "out2", progress=False)


# ---------------------------------------------------------------------------------------------- decoding


# the containers and codecs the reader treats differently (seekable or not, audio, gaps, full range, 10 bit)
VIDEOS = {
    "h264.mp4": dict(num_frames=23, options={"g": "5"}),
    "h264_audio.mkv": dict(num_frames=17, options={"g": "6"}, with_audio=True),
    "first_pts_1000.mp4": dict(num_frames=15, pts=[1000 + i for i in range(15)], options={"g": "4"}),
    "vp9.webm": dict(num_frames=16, codec="libvpx-vp9", options={"g": "5"}),
    "mpeg4.avi": dict(num_frames=18, codec="mpeg4", options={"g": "5"}),
    "gaps.avi": dict(num_frames=12, codec="mpeg4", pts=[0, 1, 2, 4, 5, 8, 9, 10, 14, 15, 16, 20]),
    "mjpeg.mov": dict(num_frames=11, codec="mjpeg", pix_fmt="yuvj422p"),
    "hevc_10bit.mkv": dict(
        num_frames=10, codec="libx265", pix_fmt="yuv420p10le", options={"x265-params": "log-level=none"}
    ),  # fmt: skip
}


@pytest.mark.parametrize("format", FORMATS)
def test_decoding_from_shard_bytes_gives_the_frames_of_the_same_files_on_disk(tmp_path, format):
    folder = tmp_path / "videos"
    folder.mkdir()
    lines = ["video,caption"]
    for name, kwargs in VIDEOS.items():
        write_video(folder / name, **kwargs)
        lines.append(f"{name},clip {name}")
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    summary = convert_caption_file(tmp_path / "list.csv", tmp_path / "shards", folder, format=format, progress=False)
    assert summary.num_written == len(VIDEOS), summary.unreadable

    processor = MCGVideoProcessor(num_frames=6, size={"height": 16, "width": 16}, crop_size={"height": 16,
                                  "width": 16})  # fmt: skip
    samples = list(ShardedVideoDataset(tmp_path / "shards", shuffle_buffer=0))
    assert len(samples) == len(VIDEOS)
    for sample, name in zip(samples, VIDEOS):
        path = str(folder / name)
        assert isinstance(sample["video"], bytes) and sample["video_ext"] == name.rsplit(".", 1)[1]
        from_bytes, info_bytes, _ = decode_video(sample["video"])  # every frame, exact
        from_file, info_file, _ = decode_video(path)
        assert info_bytes.num_frames == info_file.num_frames == sample["metadata"]["video_info"]["num_frames"]
        np.testing.assert_array_equal(from_bytes, from_file)
        sparse = lambda info: [1, info.num_frames // 2, info.num_frames - 1]  # noqa: E731 (seeks where it can)
        np.testing.assert_array_equal(decode_video(sample["video"], sparse)[0], decode_video(path, sparse)[0])
        pixels = processor([sample["video"], path], sampling="uniform", return_tensors="pt")["pixel_values_videos"]
        torch.testing.assert_close(pixels[0], pixels[1], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- splitting


def test_plan_splits_by_shard_when_the_count_divides_else_by_contiguous_samples():
    sizes = [5, 3, 4, 6]
    by_shard = plan_epoch(sizes, epoch=0, seed=1, shuffle_shards=True, num_readers=4)
    assert sorted(ranges[0][0] for ranges in by_shard) == [0, 1, 2, 3]
    assert all(len(r) == 1 and r[0][1:] == (0, sizes[r[0][0]]) for r in by_shard)
    assert plan_epoch(sizes, 0, 1, True, 4) == by_shard  # identical on every process
    assert [r[0][0] for r in plan_epoch(sizes, 1, 1, True, 4)] != [r[0][0] for r in by_shard]  # epoch-dependent

    by_sample = plan_epoch(sizes, epoch=0, seed=1, shuffle_shards=False, num_readers=3)
    assert by_sample == [[(0, 0, 5), (1, 0, 1)], [(1, 1, 3), (2, 0, 4)], [(3, 0, 6)]]  # 6 samples each
    for readers in (3, 5, 7, 18):
        plans = plan_epoch(sizes, epoch=2, seed=9, shuffle_shards=True, num_readers=readers)
        covered = Counter((shard, i) for ranges in plans for shard, lo, hi in ranges for i in range(lo, hi))
        assert covered == Counter((s, i) for s, n in enumerate(sizes) for i in range(n))  # each sample once
        counts = [sum(hi - lo for _, lo, hi in ranges) for ranges in plans]
        assert max(counts) - min(counts) <= 1


def naive_buffer_shuffle(items, buffer_size, rng):
    """The textbook shuffle buffer over real items, for comparison with `shuffle_order` (positions only)."""
    size = min(buffer_size, len(items))
    draws = iter(rng.integers(0, size, size=len(items) - size).tolist())
    buffer, out = [], []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
        else:
            slot = next(draws)
            out.append(buffer[slot])
            buffer[slot] = item
    return out + [buffer[i] for i in rng.permutation(len(buffer)).tolist()]


@pytest.mark.parametrize(("count", "buffer"), [(50, 8), (7, 10), (31, 1), (12, 0)])
def test_shuffle_order_is_a_seeded_permutation_equal_to_a_real_shuffle_buffer(count, buffer):
    order = shuffle_order(count, buffer, np.random.default_rng(5))
    assert sorted(order.tolist()) == list(range(count))
    assert order.tolist() == shuffle_order(count, buffer, np.random.default_rng(5)).tolist()
    if buffer == 0:
        assert order.tolist() == list(range(count))
        return
    items = [f"sample {i}" for i in range(count)]
    assert [items[p] for p in order] == naive_buffer_shuffle(items, buffer, np.random.default_rng(5))
    if count > buffer > 1:
        assert order.tolist() != shuffle_order(count, buffer, np.random.default_rng(6)).tolist()


def run_rank(dataset, stop_after=None, num_workers=2, batch_size=3):
    """Iterate one rank's loader, recording each batch as a training loop would; stop after `stop_after` batches."""
    keys = []
    prefetch = {"prefetch_factor": 2} if num_workers else {}
    loader = shard_dataloader(dataset, batch_size, keys_collate, num_workers=num_workers, **prefetch)
    for step, batch in enumerate(loader):
        if stop_after is not None and step == stop_after:
            break  # the workers have produced more than this: prefetched batches are not consumed
        dataset.record_batch(batch)
        keys += batch["keys"]
    return keys


@pytest.mark.parametrize(("format", "shard_size"), [("webdataset", 5), ("parquet", 4)])
def test_two_ranks_with_two_workers_resume_mid_epoch_reading_every_sample_once_per_epoch(tmp_path, format, shard_size):
    # 37 samples: 8 shards of 5 (splits by shard over 4 readers) or 10 of 4 (by sample)
    samples = write_samples(tmp_path, format, 37, max_shard_samples=shard_size, row_group_bytes=200)
    everything = Counter(s["key"] for s in samples)
    make = lambda rank: ShardedVideoDataset(tmp_path, shuffle_buffer=4, seed=3, rank=rank, world_size=2)  # noqa: E731

    first, states = [], []
    for rank, stop in ((0, 2), (1, 1)):
        dataset = make(rank)
        first += run_rank(dataset, stop_after=stop)
        states.append(json.loads(json.dumps(dataset.state_dict())))  # what a checkpoint stores
    assert states[0]["epoch"] == 0 and sum(states[0]["consumed"].values()) == 6
    assert set(states[0]["read_positions"]) == {"0/0", "0/1"} and "shard" in states[0]["read_positions"]["0/0"]

    resumed, second_epoch = [], []
    for rank in (0, 1):
        dataset = make(rank)
        dataset.load_state_dict(states[rank])
        resumed += run_rank(dataset)
        assert dataset.state_dict()["epoch"] == 1 and dataset.state_dict()["consumed"] == {}
        second_epoch += run_rank(dataset)  # a fresh DataLoader iteration: the next epoch
    assert Counter(first + resumed) == everything  # each sample exactly once across the kill
    assert Counter(second_epoch) == everything
    assert second_epoch != first + resumed  # reshuffled


def test_persistent_workers_move_on_to_the_next_epoch_by_themselves(tmp_path):
    write_samples(tmp_path, "webdataset", 14, max_shard_samples=4)
    dataset = ShardedVideoDataset(tmp_path, shuffle_buffer=3, seed=2)
    loader = shard_dataloader(dataset, 3, keys_collate, num_workers=2, persistent_workers=True)
    epochs = []
    for _ in range(2):
        epochs.append([])
        for batch in loader:
            assert set(batch["data_positions"][:, 0].tolist()) == {len(epochs) - 1}
            epochs[-1] += dataset.record_batch(batch)["keys"]
    assert [sorted(keys) for keys in epochs] == [[f"{i:09d}" for i in range(14)]] * 2
    assert epochs[0] != epochs[1] and dataset.state_dict()["epoch"] == 2


def test_resumed_order_equals_the_uninterrupted_order_of_each_reader(tmp_path):
    write_samples(tmp_path, "webdataset", 29, max_shard_samples=4)
    full = list(ShardedVideoDataset(tmp_path, shuffle_buffer=6, seed=11))
    dataset = ShardedVideoDataset(tmp_path, shuffle_buffer=6, seed=11)
    loader = shard_dataloader(dataset, 4, keys_collate)
    head = []
    for step, batch in enumerate(loader):
        if step == 3:
            break
        head += dataset.record_batch(batch)["keys"]
    resumed = ShardedVideoDataset(tmp_path, shuffle_buffer=6, seed=11)
    resumed.load_state_dict(dataset.state_dict())
    tail = [sample["key"] for sample in resumed]
    assert head + tail == [sample["key"] for sample in full]


def test_loading_a_state_with_other_settings_fails_with_a_clear_error(tmp_path):
    write_samples(tmp_path, "webdataset", 12, max_shard_samples=3)
    dataset = ShardedVideoDataset(tmp_path, shuffle_buffer=2, seed=0)
    run_rank(dataset, stop_after=1, num_workers=2)
    state = dataset.state_dict()
    with pytest.raises(ValueError, match="seed=0 but this dataset has 1"):
        ShardedVideoDataset(tmp_path, shuffle_buffer=2, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size=1 but this dataset has 2"):
        ShardedVideoDataset(tmp_path, shuffle_buffer=2, seed=0, rank=0, world_size=2).load_state_dict(state)
    other_workers = ShardedVideoDataset(tmp_path, shuffle_buffer=2, seed=0)
    other_workers.load_state_dict(state)
    with pytest.raises(ValueError, match="saved with 2 DataLoader workers per process and is resumed with 1"):
        next(iter(other_workers))
    with pytest.raises(KeyError, match="shard_dataloader"):
        dataset.record_batch({"keys": ["x"]})


def test_state_callback_saves_into_the_trainer_checkpoint_and_loads_back(tmp_path):
    write_samples(tmp_path / "shards", "parquet", 10, max_shard_samples=3)
    dataset = ShardedVideoDataset(tmp_path / "shards", shuffle_buffer=3, seed=4)
    keys = run_rank(dataset, stop_after=2, num_workers=0)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to=[])
    ShardStateCallback(dataset).on_save(args, TrainerState(global_step=7), None)
    checkpoint = tmp_path / "run" / "checkpoint-7"
    assert json.loads((checkpoint / "data_state-rank0.json").read_text())["consumed"] == {"0/0": 6}
    resumed = ShardedVideoDataset(tmp_path / "shards", shuffle_buffer=3, seed=4)
    load_shard_state(resumed, checkpoint)
    assert Counter(keys + run_rank(resumed, num_workers=0)) == Counter(f"{i:09d}" for i in range(10))
    throughput = resumed.throughput()
    assert throughput["clips"] == 4 and throughput["worker_clips_per_s"] > 0
    with pytest.raises(FileNotFoundError, match="no data state for rank 0"):
        load_shard_state(resumed, tmp_path)


def test_batch_collator_adds_positions_and_logs_the_worker_clips_per_second(tmp_path, caplog):
    write_samples(tmp_path, "webdataset", 6, max_shard_samples=4)
    collator = ShardBatchCollator(keys_collate, log_every_s=0.0)
    samples = list(ShardedVideoDataset(tmp_path, shuffle_buffer=0))
    with caplog.at_level(logging.INFO, logger="modeling_mcg.data.shards.reader"):
        first, second = collator(samples[:4]), collator(samples[4:])
    assert first["data_positions"].tolist() == [[0, 0, 1, 0, 1, i] for i in range(4)]
    assert second["keys"] == ["000000004", "000000005"] and float(second["data_seconds"]) > 0
    assert "6 clips" in caplog.text and "clips/s" in caplog.text


def test_reader_names_missing_shards_and_folders_without_an_index(tmp_path):
    write_samples(tmp_path / "a", "webdataset", 4, max_shard_samples=2)
    os.remove(tmp_path / "a" / "shard-000001.tar")
    with pytest.raises(FileNotFoundError, match="1 shard.*shard-000001.tar"):
        ShardedVideoDataset(tmp_path / "a")
    os.remove(tmp_path / "a" / INDEX_FILE)
    with pytest.raises(FileNotFoundError, match="has no index.json"):
        ShardedVideoDataset(tmp_path / "a")
    dataset = ShardedVideoDataset(str(tmp_path / "a" / "*.tar"), shuffle_buffer=0)  # counted from the headers
    assert dataset.num_samples == 2 and [s["key"] for s in dataset] == ["000000000", "000000001"]


# ---------------------------------------------------------------------------------------------- killed job

TRAINING_SCRIPT = """
import glob, json, os, sys, time
import torch
import torch.distributed as dist
from modeling_mcg.data.shards import ShardedVideoDataset, shard_dataloader

shards, out, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
dist.init_process_group("gloo")  # RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the environment
rank, world_size = dist.get_rank(), dist.get_world_size()
dataset = ShardedVideoDataset(shards, shuffle_buffer=4, seed=7)  # rank and world size from torch.distributed


def saved_steps(r):
    return {int(path.rsplit("step", 1)[1][: -len(".json")]) for path in glob.glob(os.path.join(out, f"rank{r}-step*.json"))}


# Resume from the last step every rank saved, as a Trainer resumes from a complete checkpoint folder: a kill can land
# after one rank saved step n and before the other did, and ranks resumed at different steps would run different
# numbers of collective steps.
common = set.intersection(*(saved_steps(r) for r in range(world_size)))
step, seen = max(common, default=0), []
if step:  # resume: the data state and what was trained on, saved together
    with open(os.path.join(out, f"rank{rank}-step{step}.json")) as handle:
        saved = json.load(handle)
    dataset.load_state_dict(saved["data_state"])
    seen = saved["seen"]
collate = lambda samples: {"keys": [sample["key"] for sample in samples]}
loader = shard_dataloader(dataset, batch_size=2, collate_fn=collate, num_workers=1)
while dataset.state_dict()["epoch"] < epochs:
    for batch in loader:
        epoch = int(batch["data_positions"][0, 0])
        dataset.record_batch(batch)
        dist.all_reduce(torch.ones(1))  # a training step: the processes advance together
        time.sleep(0.05)
        seen += [[epoch, key] for key in batch["keys"]]
        step += 1
        checkpoint = os.path.join(out, f"rank{rank}-step{step}.json")
        with open(checkpoint + ".tmp", "w") as handle:  # a checkpoint after every step
            json.dump({"data_state": dataset.state_dict(), "seen": seen}, handle)
        os.replace(checkpoint + ".tmp", checkpoint)
dist.destroy_process_group()
"""


def last_checkpoint(out, rank):
    """The data state and trained-on samples of `rank`'s last saved step."""
    steps = [int(path.stem.split("step")[1]) for path in out.glob(f"rank{rank}-step*.json")]
    return json.loads((out / f"rank{rank}-step{max(steps)}.json").read_text())


def launch(script, shards, out, epochs, port):
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    return [
        subprocess.Popen(
            [sys.executable, str(script), str(shards), str(out), str(epochs)], env={**env, "RANK": str(r)}
        )
        for r in (0, 1)
    ]


def test_a_two_process_job_killed_mid_epoch_resumes_and_sees_every_sample_once_per_epoch(tmp_path):
    samples = write_samples(tmp_path / "shards", "webdataset", 40, max_shard_samples=10)
    script = tmp_path / "train_shards.py"
    script.write_text(TRAINING_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()

    processes = launch(script, tmp_path / "shards", out, 2, free_port())
    deadline = time.monotonic() + 300  # starting two processes that import torch is slow on a busy machine
    while not (out / "rank1-step3.json").exists():  # a few steps in
        assert all(p.poll() is None for p in processes), "a training process exited early"
        assert time.monotonic() < deadline, "the training processes made no progress"
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGKILL)  # preempted
    processes[0].send_signal(signal.SIGKILL)  # the job goes down with it
    for process in processes:
        process.wait(timeout=30)
    assert all(0 < len(last_checkpoint(out, r)["seen"]) < 20 for r in (0, 1))  # mid-epoch on both ranks

    processes = launch(script, tmp_path / "shards", out, 2, free_port())
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    seen = [entry for r in (0, 1) for entry in last_checkpoint(out, r)["seen"]]
    everything = Counter(s["key"] for s in samples)
    for epoch in (0, 1):
        assert Counter(key for e, key in seen if e == epoch) == everything
    assert len(seen) == 2 * len(samples)


def test_a_shard_shorter_than_its_index_says_fails_clearly_instead_of_ending_the_epoch_early(tmp_path):
    write_samples(tmp_path, "parquet", 5, max_shard_samples=3)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    index["shards"][1]["num_samples"] += 1  # e.g. a shard rewritten after the index
    (tmp_path / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(ValueError, match="fewer samples than their index lists"):
        list(ShardedVideoDataset(tmp_path, shuffle_buffer=0))
