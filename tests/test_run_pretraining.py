"""End to end runs of `examples/run_pretraining.py` on a few synthetic videos, the hand-off of its folder to the
VideoQA model and to `run_videoqa.py`, and the caption readers. Runs are 1-2 optimizer steps: wiring, not accuracy."""

import csv
import json
import math
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from example_scripts import load_example

from modeling_mcg import MCGForVideoQuestionAnswering, MCGProcessor, VideoDecodeError
from modeling_mcg.data.captions import CAPTION_FEATURES, load_caption_dataset, synthetic_captions
from modeling_mcg.data.synthetic import COLORS, DIRECTIONS, SHAPES
from modeling_mcg.training import PRETRAINING_LOSS_PARTS, CaptionCollator

REPO = Path(__file__).resolve().parent.parent
NUM_VIDEOS = {"train": 6, "test": 3}
NUM_VIDEOS_ARG = "train=6,test=3"


run_pretraining = load_example("run_pretraining")
run_videoqa = load_example("run_videoqa")


def base_args(cache, out, *extra):
    return [
        "--synthetic_cache_dir",
        str(cache),
        "--synthetic_num_videos",
        NUM_VIDEOS_ARG,
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "4",
        "--logging_steps",
        "1",
        "--dataloader_num_workers",
        "0",
        "--save_strategy",
        "no",
        "--use_cpu",
        "True",
        *extra,
    ]


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    cache = tmp_path_factory.mktemp("synthetic")
    synthetic_captions("train", cache_dir=cache, num_videos=NUM_VIDEOS)
    return cache


@pytest.fixture(scope="module")
def pretrained(synthetic_dir, tmp_path_factory):
    """One pretraining run with every objective (VTM on) and an evaluation of the losses on the test videos."""
    out = tmp_path_factory.mktemp("pretrain") / "out"
    args = base_args(synthetic_dir, out, "--use_vtm", "True", "--do_eval", "True", "--eval_split", "test")
    result = run_pretraining.main(args)
    return {**result, "out": out}


def test_synthetic_captions_describe_the_objects_in_entry_order(synthetic_dir):
    captions = synthetic_captions("train", cache_dir=synthetic_dir, num_videos=NUM_VIDEOS)
    assert captions.features == CAPTION_FEATURES and captions.num_rows == NUM_VIDEOS["train"]
    one = f"a ({'|'.join(COLORS)}) ({'|'.join(SHAPES)}) moves ({'|'.join(DIRECTIONS)})"
    for row in captions:
        assert re.fullmatch(f"{one}(, then {one}){{0,3}}", row["caption"]), row["caption"]
        assert Path(row["video"]).is_file()


def test_pretraining_logs_every_loss_part_and_writes_the_folder(pretrained):
    out = pretrained["out"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "README.md"):
        assert (out / name).is_file(), name
    history = pretrained["trainer"].state.log_history
    for part in PRETRAINING_LOSS_PARTS:
        values = [h[part] for h in history if part in h]
        assert [h["step"] for h in history if part in h] == [1, 2], part
        assert all(math.isfinite(v) and v >= 0 for v in values), (part, values)
    metrics = pretrained["metrics"]
    assert metrics["train_skipped_videos"] == 0
    assert {f"eval_{part}" for part in PRETRAINING_LOSS_PARTS} <= set(metrics)
    # the saved config carries the starting (fine-tuning) loss weights; the run used the pretraining ones
    saved = json.loads((out / "config.json").read_text())
    assert saved["icl_loss_weight"] == saved["tcl_loss_weight"] == saved["vtm_loss_weight"] == 0.0
    assert json.loads((out / "pretraining_loss_weights.json").read_text())["vtm_loss_weight"] == 1.0
    assert pretrained["model"].config.icl_loss_weight == 1.0


def test_videoqa_model_loads_the_pretrained_encoders(pretrained):
    pre = pretrained["model"].state_dict()
    qa, info = MCGForVideoQuestionAnswering.from_pretrained(pretrained["out"], output_loading_info=True)
    assert info["missing_keys"] and all(k.startswith(("decoder.", "lm_head.")) for k in info["missing_keys"])
    assert {k.split(".")[0] for k in info["unexpected_keys"]} == {"mlm_head", "vtm_head"}
    loaded = qa.state_dict()
    encoder_keys = [k for k in pre if k.startswith("mcg.")]
    for part in ("mcg.vision_model.", "mcg.question_model.", "mcg.fusor.", "mcg.vision_proj.", "mcg.text_proj."):
        assert any(k.startswith(part) for k in encoder_keys), part
    for key in encoder_keys:
        assert torch.equal(loaded[key], pre[key]), key
    torch.manual_seed(1234)
    fresh = MCGForVideoQuestionAnswering(qa.config).state_dict()
    for key in (
        "mcg.vision_model.embeddings.patch_embedding.weight",
        "mcg.question_model.embeddings.embed_tokens.weight",
    ):
        assert not torch.equal(fresh[key], loaded[key]), key


def test_run_videoqa_fine_tunes_from_the_pretrained_folder(pretrained, synthetic_dir, tmp_path):
    out = tmp_path / "qa"
    args = base_args(synthetic_dir, out, "--model_name_or_path", str(pretrained["out"]), "--do_eval", "False")
    result = run_videoqa.main(args)
    assert [h["step"] for h in result["trainer"].state.log_history if "loss" in h] == [1, 2]
    assert (out / "model.safetensors").is_file()


def _webvid_copy(synthetic_dir, root):
    """The synthetic train videos in the WebVid layout `<video_dir>/<page_dir>/<videoid>.mp4`, plus its csv."""
    captions = synthetic_captions("train", cache_dir=synthetic_dir, num_videos=NUM_VIDEOS)
    video_dir = root / "videos"
    rows = []
    for i, row in enumerate(captions):
        page_dir = f"{i // 3:03d}_{i // 3 + 1:03d}"
        (video_dir / page_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(row["video"], video_dir / page_dir / f"{1000 + i}.mp4")
        rows.append([str(1000 + i), f"https://example.com/{i}.mp4", "PT00H00M12S", page_dir, row["caption"]])
    path = root / "results_train.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        writer.writerows(rows)
    return path, video_dir, captions


def test_webvid_csv_run_without_vtm(synthetic_dir, tmp_path):
    path, video_dir, captions = _webvid_copy(synthetic_dir, tmp_path)
    ds = load_caption_dataset(path, video_dir=video_dir)
    assert ds["caption"] == captions["caption"] and all(Path(v).is_file() for v in ds["video"])
    result = run_pretraining.main(
        base_args(synthetic_dir, tmp_path / "out", "--train_file", str(path), "--video_dir", str(video_dir))
    )
    history = result["trainer"].state.log_history
    assert [h["step"] for h in history if "loss_mlm" in h] == [1, 2]
    assert all("loss_icl" in h and "loss_tcl" in h for h in history if "loss_mlm" in h)
    assert not any("loss_vtm" in h for h in history)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_caption_files_report_malformed_rows_and_missing_videos(tmp_path):
    for name in ("a.mp4", "b.mp4", "sub/c.webm"):
        _write(tmp_path / "videos" / name, "")
    videos = tmp_path / "videos"

    simple = _write(tmp_path / "simple.csv", 'video,caption\na.mp4,"a dog runs, then sits"\n\nsub/c,a cat\n')
    ds = load_caption_dataset(simple, video_dir=videos)
    assert ds.features == CAPTION_FEATURES
    assert ds["caption"] == ["a dog runs, then sits", "a cat"]
    assert ds["video"] == [str(videos / "a.mp4"), str(videos / "sub" / "c.webm")]

    malformed = _write(tmp_path / "bad.csv", "video,caption\na.mp4,fine\nb.mp4,unquoted, comma\n")
    with pytest.raises(ValueError, match=re.escape(f"{malformed}:3: expected 2 fields")):
        load_caption_dataset(malformed, video_dir=videos)
    quoting = _write(tmp_path / "quoting.csv", 'video,caption\na.mp4,ok\nb.mp4,"bad"quote\n')
    with pytest.raises(ValueError, match=re.escape(f"{quoting}:3: malformed csv")):
        load_caption_dataset(quoting, video_dir=videos)
    empty = _write(tmp_path / "empty.csv", "video,caption\na.mp4,  \n")
    with pytest.raises(ValueError, match=re.escape(f"{empty}:2: empty 'caption'")):
        load_caption_dataset(empty, video_dir=videos)
    no_column = _write(tmp_path / "cols.csv", "clip,text\na.mp4,x\n")
    with pytest.raises(ValueError, match="no video column"):
        load_caption_dataset(no_column, video_dir=videos)

    webvid = _write(
        tmp_path / "webvid.csv",
        "videoid,contentUrl,duration,page_dir,name\n"
        "1,u,PT1S,p1,one\n2,u,PT1S,p1,two\n2,u,PT1S,p1,two again\n3,u,PT1S,p2,three\n",
    )
    with pytest.raises(ValueError) as error:
        load_caption_dataset(webvid, video_dir=videos)
    message = str(error.value)
    assert "4 of 4 captions refer to 3 distinct videos" in message
    assert f"p1/1 or 1 ({webvid}:2)" in message and f"p2/3 or 3 ({webvid}:5)" in message
    _write(videos / "p1" / "1.mp4", "")
    _write(videos / "3.mp4", "")  # a flat layout is found too
    ds = load_caption_dataset(webvid, video_dir=videos, on_missing="skip")
    assert ds["caption"] == ["one", "three"]

    jsonl = _write(tmp_path / "caps.jsonl", '{"video": "a.mp4", "caption": "x"}\n{"video": "b.mp4"}\n')
    with pytest.raises(ValueError, match=re.escape(f"{jsonl}:2: no caption column")):
        load_caption_dataset(jsonl, video_dir=videos)
    listed = _write(tmp_path / "caps.json", json.dumps([{"videoid": "a", "name": "y"}]))
    assert load_caption_dataset(listed, video_dir=videos)["video"] == [str(videos / "a.mp4")]


def test_collator_tokenises_captions_and_skips_corrupt_videos(pretrained, synthetic_dir, tmp_path):
    processor = MCGProcessor.from_pretrained(pretrained["out"])
    rows = list(synthetic_captions("train", cache_dir=synthetic_dir, num_videos=NUM_VIDEOS).select(range(3)))
    broken = _write(tmp_path / "broken.mp4", "this is not an mp4 file" * 50)
    rows[1] = {"video": str(broken), "caption": "a red circle moves left"}
    collator = CaptionCollator(processor, "uniform", max_caption_length=8)
    batch = collator(rows)
    assert int(batch["num_skipped_videos"]) == 1 and batch["pixel_values_videos"].shape[0] == 2
    ids, words = batch["input_ids"], batch["word_ids"]
    assert ids.shape == words.shape and ids.shape[1] <= 8
    assert (ids[:, 0] == processor.enc_token_id).all() and (words[:, 0] == -1).all()
    for row_ids, row_words, mask in zip(ids, words, batch["attention_mask"]):
        last = int(mask.sum()) - 1
        assert row_ids[last] == processor.eos_token_id and row_words[last] == row_words[:last].max() + 1
        assert (row_words[last + 1 :] == -1).all()
    # VTM needs two pairs: a batch left with one is dropped
    vtm = CaptionCollator(processor, "uniform", min_pairs=2)
    assert "input_ids" not in vtm([rows[0], rows[1]])
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        CaptionCollator(processor, "uniform", on_corrupt_video="raise")(rows)


@pytest.mark.parametrize("script", [run_pretraining, run_videoqa])
def test_one_model_source_at_most(script, tmp_path):
    with pytest.raises(ValueError, match="Pass only one of --hub_config, --config_file and --model_name_or_path"):
        script.main(["--hub_config", "mcg-tiny", "--model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path)])


def test_pretraining_validates_during_training(synthetic_dir, tmp_path):
    out = tmp_path / "validated"
    args = ["--eval_strategy", "steps", "--eval_steps", "1", "--eval_split", "test", "--max_eval_samples", "3"]
    result = run_pretraining.main(base_args(synthetic_dir, out, *args))
    evaluations = [h for h in result["trainer"].state.log_history if "eval_loss" in h]
    assert sorted({h["step"] for h in evaluations}) == [1, 2]
    assert all({"eval_loss_icl", "eval_loss_tcl", "eval_loss_mlm"} <= set(h) for h in evaluations)
    assert (out / "loss_curve.png").is_file()


def test_an_unwritable_output_folder_or_one_without_room_fails_before_pretraining(
    synthetic_dir, tmp_path, monkeypatch
):
    started = []
    monkeypatch.setattr(run_pretraining.PretrainingTrainer, "train", lambda self, *a, **k: started.append(a))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # a path under a regular file cannot be created, even by root
    with pytest.raises(OSError, match="is not writable"):
        run_pretraining.main(base_args(synthetic_dir, blocker / "run"))

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        "modeling_mcg.training.checkpoints.shutil.disk_usage", lambda path: usage(10**6, 10**6 - 4096, 4096)
    )
    with pytest.raises(OSError, match=r"has 4\.0 KiB free, but one checkpoint of this model needs about"):
        run_pretraining.main(base_args(synthetic_dir, tmp_path / "full"))
    assert not started
