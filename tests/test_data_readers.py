"""The six VideoQA readers on fixture files written here in each dataset's real annotation format.

Videos are empty files (the readers only check that they exist); every test also checks the exact schema.
"""

import json
import logging
import os

import pytest

from modeling_mcg.data import (
    DATASET_NAMES,
    VIDEOQA_FEATURES,
    load_activitynet_qa,
    load_clevrer,
    load_msrvtt_qa,
    load_msvd_qa,
    load_nextqa,
    load_nextqa_references,
    load_tvqa,
    load_videoqa_dataset,
    multilabel_records,
)


def write(path, text, encoding="utf-8"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return str(path)


def jsonl(records):
    return "".join(json.dumps(r) + "\n" for r in records)


def touch(*paths):
    for p in paths:
        write(p, "")


def check_schema(ds):
    assert ds.features == VIDEOQA_FEATURES
    assert all(os.path.exists(v) for v in ds["video"])


# ---------------------------------------------------------------- MSRVTT-QA


MSRVTT_JSONL = [
    {"answer": "guitar", "question": "what is a man playing?", "video_id": "video7020", "answer_type": "what"},
    {"answer": "man", "question": "who is playing a guitar?", "video_id": "video7020", "answer_type": "who"},
    {"answer": "red", "question": "what color is the car?", "video_id": "video7021", "answer_type": "what"},
]


def test_msrvtt_clipbert_jsonl(tmp_path):
    write(tmp_path / "txt" / "test.jsonl", jsonl(MSRVTT_JSONL))
    touch(tmp_path / "videos" / "video7020.mp4", tmp_path / "videos" / "video7021.mp4")
    ds = load_msrvtt_qa(str(tmp_path), "test")
    check_schema(ds)
    assert ds["question_id"] == ["video7020_0", "video7020_1", "video7021_0"]
    assert ds["answer_type"] == ["what", "who", "what"]
    assert ds[0]["video"].endswith("videos/video7020.mp4")
    assert ds[0]["choices"] == [] and ds[0]["correct_choices"] == [] and ds[0]["start"] is None


def test_msrvtt_original_json_with_official_video_folders(tmp_path):
    records = [
        {"answer": "guitar", "category_id": 3, "id": 17, "question": "what is a man playing?", "video_id": 7020},
        {"answer": "red", "category_id": 3, "id": 18, "question": "what color is the car?", "video_id": 7020},
        {"answer": "woman", "category_id": 5, "id": 19, "question": "who is talking?", "video_id": 12},
    ]
    write(tmp_path / "train_qa.json", json.dumps(records))
    videos = tmp_path / "vids"
    touch(videos / "TestVideo" / "video7020.mp4", videos / "TrainValVideo" / "video12.mp4")
    ds = load_msrvtt_qa(str(tmp_path), "train", video_dir=str(videos))
    check_schema(ds)
    assert ds["question_id"] == ["17", "18", "19"]
    assert ds["answer_type"] == ["what", "color", "who"]
    assert ds[2]["video"].endswith("TrainValVideo/video12.mp4")


def test_msrvtt_malformed_line_names_file_and_line(tmp_path):
    text = jsonl(MSRVTT_JSONL[:2]) + '{"answer": "red", "question": \n'
    path = write(tmp_path / "val.jsonl", text)
    with pytest.raises(ValueError, match=rf"{path}:3: invalid JSON"):
        load_msrvtt_qa(str(tmp_path), "val")
    write(tmp_path / "val.jsonl", jsonl([MSRVTT_JSONL[0], {"question": "what?", "video_id": "video1"}]))
    with pytest.raises(ValueError, match=r"val\.jsonl:2: missing field 'answer'"):
        load_msrvtt_qa(str(tmp_path), "val")
    write(tmp_path / "val.jsonl", jsonl([{**MSRVTT_JSONL[0], "answer": 3}]))
    with pytest.raises(ValueError, match=r"val\.jsonl:1: field 'answer' should be str, got int"):
        load_msrvtt_qa(str(tmp_path), "val")


def test_msrvtt_missing_video_raise_and_skip(tmp_path, caplog):
    write(tmp_path / "test.jsonl", jsonl(MSRVTT_JSONL))
    touch(tmp_path / "videos" / "video7020.mp4")
    with pytest.raises(ValueError) as err:
        load_msrvtt_qa(str(tmp_path), "test")
    message = str(err.value)
    assert "1 of 3 questions" in message and "1 distinct videos" in message
    assert "video7021" in message and str(tmp_path / "videos") in message and "on_missing='skip'" in message
    with caplog.at_level(logging.WARNING):
        ds = load_msrvtt_qa(str(tmp_path), "test", on_missing="skip")
    assert len(ds) == 2 and set(ds["answer"]) == {"guitar", "man"}
    assert "1 of 3 questions" in caplog.text and "Dropped" in caplog.text
    with pytest.raises(ValueError, match="on_missing='ignore' is not one of"):
        load_msrvtt_qa(str(tmp_path), "test", on_missing="ignore")


def test_missing_annotation_file_lists_paths_tried(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train\.jsonl.*txt/train\.jsonl.*train_qa\.json"):
        load_msrvtt_qa(str(tmp_path), "train")
    with pytest.raises(ValueError, match="split='dev' is not one of"):
        load_msrvtt_qa(str(tmp_path), "dev")


# ---------------------------------------------------------------- MSVD-QA


def test_msvd_jsonl_with_and_without_avi_suffix(tmp_path):
    records = [
        {"answer": "dog", "question": "what is running?", "video_id": "-4wsuPCjDBc_5_15", "answer_type": "what"},
        {"answer": "man", "question": "who cooks?", "video_id": "abc_1_9.avi", "answer_type": "who"},
    ]
    write(tmp_path / "train.jsonl", jsonl(records))
    touch(tmp_path / "videos" / "YouTubeClips" / "-4wsuPCjDBc_5_15.avi", tmp_path / "videos" / "abc_1_9.avi")
    ds = load_msvd_qa(str(tmp_path), "train")
    check_schema(ds)
    assert ds["question_id"] == ["-4wsuPCjDBc_5_15_0", "abc_1_9_0"]
    assert ds[1]["video"].endswith("abc_1_9.avi")


def test_msvd_original_json_with_youtube_mapping(tmp_path):
    records = [
        {"answer": "dog", "id": 42, "question": "what is running on the grass?", "video_id": 1},
        {"answer": "two", "id": 43, "question": "how many cats are there?", "video_id": 2},
    ]
    write(tmp_path / "val_qa.json", json.dumps(records))
    write(tmp_path / "youtube_mapping.txt", "-4wsuPCjDBc_5_15 vid1\nxyz_0_4 vid2\n")
    touch(tmp_path / "videos" / "-4wsuPCjDBc_5_15.avi", tmp_path / "videos" / "xyz_0_4.avi")
    ds = load_msvd_qa(str(tmp_path), "val")
    check_schema(ds)
    assert ds["video"][1].endswith("xyz_0_4.avi") and ds["answer_type"] == ["what", "how"]

    write(tmp_path / "youtube_mapping.txt", "-4wsuPCjDBc_5_15 vid1\nxyz_0_4 2\n")
    with pytest.raises(ValueError, match=r"youtube_mapping\.txt:2: expected '<clip_name> vid<N>'"):
        load_msvd_qa(str(tmp_path), "val")
    write(tmp_path / "youtube_mapping.txt", "-4wsuPCjDBc_5_15 vid1\n")
    with pytest.raises(ValueError, match=r"val_qa\.json, record 1: video_id 2 has no 'vid2' line"):
        load_msvd_qa(str(tmp_path), "val")


def test_msvd_missing_video(tmp_path):
    write(tmp_path / "test.jsonl", jsonl([{"answer": "dog", "question": "what?", "video_id": "gone_1_2"}]))
    with pytest.raises(ValueError, match=r"MSVD-QA: 1 of 1 questions.*gone_1_2"):
        load_msvd_qa(str(tmp_path), "test")
    assert len(load_msvd_qa(str(tmp_path), "test", on_missing="skip")) == 0


# ---------------------------------------------------------------- ActivityNet-QA


def write_anet(root, questions, answers, split="val"):
    write(root / "dataset" / f"{split}_q.json", json.dumps(questions))
    write(root / "dataset" / f"{split}_a.json", json.dumps(answers))


def test_activitynet_join_prefixes_and_extensions(tmp_path):
    questions = [
        {
            "video_name": "v_0aBcD1eFgH2",
            "question": "what is the person in red doing",
            "question_id": "v_0aBcD1eFgH2_3",
        },
        {"video_name": "QwErTy12345", "question": "is it indoors", "question_id": "QwErTy12345_0"},
        {"video_name": "v_zzzzzzzzzzz", "question": "how many people", "question_id": "v_zzzzzzzzzzz_1"},
    ]
    answers = [  # aligned by question_id, not by order
        {"answer": "no", "type": 3, "question_id": "QwErTy12345_0"},
        {"answer": "dancing", "type": 0, "question_id": "v_0aBcD1eFgH2_3"},
        {"answer": "2", "type": 7, "question_id": "v_zzzzzzzzzzz_1"},
    ]
    write_anet(tmp_path, questions, answers)
    videos = tmp_path / "videos"
    # file without the v_ prefix for a v_ name; v_ file for a bare name; .mkv and .webm
    touch(videos / "0aBcD1eFgH2.mp4", videos / "v_QwErTy12345.mkv", videos / "v_zzzzzzzzzzz.webm")
    ds = load_activitynet_qa(str(tmp_path), "val")
    check_schema(ds)
    assert ds["answer"] == ["dancing", "no", "2"]
    assert ds["answer_type"] == ["motion", "yes_no", "number"]
    assert [os.path.basename(v) for v in ds["video"]] == ["0aBcD1eFgH2.mp4", "v_QwErTy12345.mkv", "v_zzzzzzzzzzz.webm"]


def test_activitynet_errors(tmp_path):
    q = [{"video_name": "v_a", "question": "what", "question_id": "v_a_0"}]
    write_anet(tmp_path, q, [])
    with pytest.raises(ValueError, match=r"val_q\.json, record 0: question_id 'v_a_0' has no answer"):
        load_activitynet_qa(str(tmp_path), "val")
    write_anet(tmp_path, q, [{"answer": "x", "type": 9, "question_id": "v_a_0"}])
    with pytest.raises(ValueError, match=r"val_a\.json, record 0: field 'type' should be 0\.\.8, got 9"):
        load_activitynet_qa(str(tmp_path), "val")
    write(tmp_path / "dataset" / "val_a.json", '[{"answer": "x",\n "type": }]')
    with pytest.raises(ValueError, match=r"val_a\.json:2:\d+: invalid JSON"):
        load_activitynet_qa(str(tmp_path), "val")
    write_anet(tmp_path, q, [{"answer": "x", "type": 1, "question_id": "v_a_0"}])
    with pytest.raises(
        ValueError,
        match=r"ActivityNet-QA: 1 of 1 questions.*\.mp4/\.mkv/\.webm files under .*videos\. First 1: v_a or a\.",
    ):
        load_activitynet_qa(str(tmp_path), "val")
    assert len(load_activitynet_qa(str(tmp_path), "val", on_missing="skip")) == 0


# ---------------------------------------------------------------- NExT-QA

MC_HEADER = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
OE_HEADER = "video,frame_count,width,height,question,answer,qid,type\n"


def test_nextqa_mc_with_vidor_map(tmp_path):
    write(
        tmp_path / "val.csv",
        MC_HEADER + "1234567890,369,640,480,how do the two people play the drums,3,6,CH,strum strings,sing,clap hands,"
        "hit with sticks,blow into it\n"
        '1234567890,369,640,480,"what is on the left, near the door",0,7,DL,a chair,a dog,a cat,a bag,a tree\n',
    )
    write(tmp_path / "map_vid_vidorID.json", json.dumps({"1234567890": "1025/1234567890"}))
    touch(tmp_path / "vidor" / "1025" / "1234567890.mp4")
    ds = load_videoqa_dataset("nextqa-mc", str(tmp_path), "val", video_dir=str(tmp_path / "vidor"))
    check_schema(ds)
    assert ds[0]["choices"] == ["strum strings", "sing", "clap hands", "hit with sticks", "blow into it"]
    assert ds[0]["correct_choices"] == [3] and ds[0]["answer"] == "hit with sticks"
    assert ds["question_id"] == ["1234567890_6", "1234567890_7"] and ds["answer_type"] == ["CH", "DL"]
    assert ds[1]["question"] == "what is on the left, near the door"
    assert ds[0]["video"].endswith("vidor/1025/1234567890.mp4")


def test_nextqa_mc_malformed_rows(tmp_path):
    good = "11,9,640,480,why,1,0,CW,a,b,c,d,e\n"
    write(tmp_path / "train.csv", MC_HEADER + good + "11,9,640,480,what,7,1,DO,a,b,c,d,e\n")
    with pytest.raises(ValueError, match=r"train\.csv:3: MC answer should be an option index 0\.\.4, got '7'"):
        load_nextqa(str(tmp_path), "train", task="mc")
    write(tmp_path / "train.csv", MC_HEADER + good + good.replace(",0,CW", ",2,CW") + "11,9,640,480,what\n")
    with pytest.raises(ValueError, match=r"train\.csv:4: expected 13 comma-separated fields"):
        load_nextqa(str(tmp_path), "train", task="mc")
    write(tmp_path / "train.csv", MC_HEADER + good + good)
    with pytest.raises(ValueError, match=r"train\.csv:3: \(video, qid\) = \(11, 0\) appears twice"):
        load_nextqa(str(tmp_path), "train", task="mc")
    write(tmp_path / "train.csv", OE_HEADER + "11,9,640,480,why,to eat,0,CW\n")
    with pytest.raises(ValueError, match=r"train\.csv:1: header lacks columns .*use task='oe'"):
        load_nextqa(str(tmp_path), "train", task="mc")


def test_nextqa_oe_references_and_missing_video(tmp_path, caplog):
    write(
        tmp_path / "test.csv",
        OE_HEADER + "1234567891,462,640,480,how is the crane controlled,from the cabin,3,CH\n"
        "1234567891,462,640,480,how many people,two,4,DC\n"
        "999,10,640,480,what is this,a ball,0,DO\n",
    )
    write(tmp_path / "add_reference_answer_test.json", json.dumps({"1234567891": {"3": "by a man in cabin"}}))
    touch(tmp_path / "videos" / "1234567891.mp4")  # flat layout, no map file; video 999 is missing
    with pytest.raises(ValueError, match=r"NExT-QA \(oe\): 1 of 3 questions .*999"):
        load_videoqa_dataset("NExTQA_OE", str(tmp_path), "test")
    with caplog.at_level(logging.WARNING):
        ds = load_videoqa_dataset("nextqa-oe", str(tmp_path), "test", on_missing="skip")
    check_schema(ds)
    assert "Dropped" in caplog.text
    assert ds["answer"] == ["from the cabin", "two"] and ds["choices"] == [[], []]
    refs = load_nextqa_references(str(tmp_path), "test")
    assert refs == {"1234567891_3": ["by a man in cabin"]}
    assert [refs.get(q, []) for q in ds["question_id"]] == [["by a man in cabin"], []]
    with caplog.at_level(logging.WARNING):
        assert load_nextqa_references(str(tmp_path), "val") == {}
    assert "add_reference_answer_val.json does not exist" in caplog.text


# ---------------------------------------------------------------- TVQA


def tvqa_record(qid, ts, vid_name, answer_idx=1, **extra):
    record = {
        "a0": "A coffee mug",
        "a1": "A phone",
        "a2": "A book",
        "a3": "Her keys",
        "a4": "A sandwich",
        "answer_idx": answer_idx,
        "q": "What is Lily holding when she talks to Marshall?",
        "qid": qid,
        "ts": ts,
        "vid_name": vid_name,
        "show_name": "How I Met You Mother",
        **extra,
    }
    if answer_idx is None:
        del record["answer_idx"]
    return record


SRT = (
    "1\r\n00:00:01,000 --> 00:00:02,500\r\n(Lily:) Hey, you got a minute?\r\n\r\n"
    "2\r\n00:00:04,000 --> 00:00:05,000\r\n(Marshall:) Sure, caf\u00e9 later?\r\n\r\n"
    "3\r\n00:00:20,000 --> 00:00:21,000\r\nNobody said this.\r\nTwo lines.\r\n"
)


def test_tvqa_srt_subtitles_frames_and_nan_ts(tmp_path):
    clip, bbt = "met_s02e05_seg01_clip_03", "s01e02_seg01_clip_00"
    write(
        tmp_path / "tvqa_val.jsonl",
        jsonl([tvqa_record(12, "3.5-9.12", clip), tvqa_record(13, "NaN-NaN", bbt, answer_idx=4)])
        + '{"qid": 14, "q": "Who?", "a0": "a", "a1": "b", "a2": "c", "a3": "d", "a4": "e", "answer_idx": 0, '
        '"ts": NaN, "vid_name": "s01e02_seg01_clip_00"}\n',
    )
    write(tmp_path / "tvqa_subtitles" / f"{clip}.srt", SRT, encoding="iso-8859-1")
    write(tmp_path / "tvqa_subtitles" / f"{bbt}.srt", SRT.replace("Lily", "Sheldon"), encoding="iso-8859-1")
    touch(tmp_path / "videos" / "met_frames" / clip / "00001.jpg", tmp_path / "videos" / f"{bbt}.mp4")
    ds = load_tvqa(str(tmp_path), "val")
    check_schema(ds)
    first = ds[0]
    assert first["video"].endswith(f"met_frames/{clip}") and first["answer"] == "A phone"
    assert first["correct_choices"] == [1] and len(first["choices"]) == 5 and first["answer_type"] == "what"
    assert first["start"] == pytest.approx(3.5) and first["end"] == pytest.approx(9.12)
    # span 3.5-9.12 widened by 1 s starts at 2.5, where the first cue ends: kept; the 20 s cue is not
    assert first["subtitles"] == "Lily : Hey, you got a minute? Marshall : Sure, caf\u00e9 later?"
    assert ds[1]["start"] is None and ds[1]["end"] is None and ds[1]["answer"] == "A sandwich"
    assert ds[1]["subtitles"].endswith("Nobody said this. Two lines.")  # NaN span: every cue
    assert ds[2]["start"] is None and ds[2]["answer_type"] == "who"
    narrow = load_tvqa(str(tmp_path), "val", subtitle_margin=0.0)
    assert narrow[0]["subtitles"] == "Marshall : Sure, caf\u00e9 later?"


def test_tvqa_preprocessed_subtitles_and_test_split(tmp_path):
    clip = "friends_s01e01_seg02_clip_00"
    write(tmp_path / "tvqa_test_public.jsonl", jsonl([tvqa_record(1, "10.0-12.0", clip, answer_idx=None)]))
    subs = {
        "vid_name": clip,
        "sub": [
            {"start": 0.5, "end": 2.9, "text": "Ross : Hi."},
            {"start": 10.5, "end": 11.0, "text": "Rachel : Coffee?"},
        ],
    }
    write(tmp_path / "tvqa_preprocessed_subtitles.jsonl", jsonl([{"vid_name": "other", "sub": []}, subs]))
    touch(tmp_path / "frames" / clip / "00001.jpg")
    ds = load_tvqa(str(tmp_path), "test", video_dir=str(tmp_path / "frames"))
    check_schema(ds)
    assert ds[0]["answer"] == "" and ds[0]["correct_choices"] == [] and ds[0]["subtitles"] == "Rachel : Coffee?"
    assert load_tvqa(str(tmp_path), "test", video_dir=str(tmp_path / "frames"), subtitles=None)[0]["subtitles"] == ""


def test_tvqa_malformed_and_missing(tmp_path):
    clip = "house_s01e01_seg01_clip_00"
    write(tmp_path / "tvqa_train.jsonl", jsonl([tvqa_record(1, "1-2", clip), tvqa_record(2, "about 5s", clip)]))
    with pytest.raises(
        ValueError, match=r"tvqa_train\.jsonl:2: field 'ts' should look like '76\.01-84\.2', got 'about 5s'"
    ):
        load_tvqa(str(tmp_path), "train", subtitles=None)
    write(tmp_path / "tvqa_train.jsonl", jsonl([tvqa_record(1, "1-2", clip, answer_idx=None)]))
    with pytest.raises(ValueError, match=r"tvqa_train\.jsonl:1: missing field 'answer_idx'"):
        load_tvqa(str(tmp_path), "train", subtitles=None)
    write(tmp_path / "tvqa_train.jsonl", jsonl([tvqa_record(1, "1-2", clip)]))
    srt_dir = tmp_path / "subs"
    write(srt_dir / f"{clip}.srt", "1\n00:00:01,000 -> 00:00:02,000\nHi\n", encoding="iso-8859-1")
    touch(tmp_path / "videos" / f"{clip}.mp4")
    with pytest.raises(ValueError, match=rf"{clip}\.srt:2: expected 'HH:MM:SS,mmm --> HH:MM:SS,mmm'"):
        load_tvqa(str(tmp_path), "train", subtitles=str(srt_dir))
    os.remove(tmp_path / "videos" / f"{clip}.mp4")
    os.makedirs(tmp_path / "videos" / clip)  # an empty frame folder is not a video
    with pytest.raises(ValueError, match=r"TVQA: 1 of 1 questions.*non-empty frame folders"):
        load_tvqa(str(tmp_path), "train", subtitles=None)
    assert len(load_tvqa(str(tmp_path), "train", subtitles=None, on_missing="skip")) == 0


# ---------------------------------------------------------------- CLEVRER


def clevrer_entry(scene, questions):
    return {"scene_index": scene, "video_filename": f"video_{scene}.mp4", "questions": questions}


DESCRIPTIVE = {
    "question_id": 0,
    "question": "How many metal objects are moving?",
    "question_type": "descriptive",
    "question_subtype": "count",
    "program": ["objects", "metal", "filter_material", "filter_moving", "count"],
    "answer": "2",
}
PREDICTIVE = {
    "question_id": 9,
    "question": "Which of the following will happen next?",
    "question_type": "predictive",
    "program": ["events", "objects", "unique"],
    "choices": [
        {"choice_id": 0, "choice": "The cube collides with the red sphere", "program": ["a"], "answer": "correct"},
        {"choice_id": 1, "choice": "The cylinder collides with the cube", "program": ["b"], "answer": "wrong"},
        {"choice_id": 2, "choice": "The sphere exits the scene", "program": ["c"], "answer": "correct"},
    ],
}


def test_clevrer_open_and_multilabel_rows(tmp_path):
    write(
        tmp_path / "validation.json",
        json.dumps([clevrer_entry(10003, [DESCRIPTIVE, PREDICTIVE]), clevrer_entry(12000, [DESCRIPTIVE])]),
    )
    touch(tmp_path / "videos" / "video_10000-11000" / "video_10003.mp4", tmp_path / "videos" / "video_12000.mp4")
    ds = load_videoqa_dataset("clevrer", str(tmp_path), "val")
    check_schema(ds)
    assert ds["answer_type"] == ["descriptive", "predictive", "descriptive"]
    assert ds["question_id"] == ["10003_0", "10003_9", "12000_0"]
    assert ds[0]["answer"] == "2" and ds[0]["choices"] == []
    assert ds[1]["correct_choices"] == [0, 2] and ds[1]["answer"] == "The cube collides with the red sphere"
    assert ds[0]["video"].endswith("video_10000-11000/video_10003.mp4")
    only_mc = load_clevrer(str(tmp_path), "validation", question_types=["predictive"])
    assert only_mc["question_id"] == ["10003_9"]


def test_clevrer_malformed_test_split_and_missing(tmp_path):
    bad = {**PREDICTIVE, "choices": [{**PREDICTIVE["choices"][0], "answer": "maybe"}]}
    write(tmp_path / "train.json", json.dumps([clevrer_entry(5, [DESCRIPTIVE, bad])]))
    with pytest.raises(ValueError, match=r"train\.json, record 0, question 1, choice 0: field 'answer' should be"):
        load_clevrer(str(tmp_path), "train")
    unanswered = {k: v for k, v in DESCRIPTIVE.items() if k != "answer"}
    write(tmp_path / "train.json", json.dumps([clevrer_entry(5, [unanswered])]))
    with pytest.raises(ValueError, match=r"train\.json, record 0, question 0: missing field 'answer'"):
        load_clevrer(str(tmp_path), "train")
    no_verdicts = {
        **PREDICTIVE,
        "choices": [{k: v for k, v in c.items() if k != "answer"} for c in PREDICTIVE["choices"]],
    }
    write(tmp_path / "questions" / "test.json", json.dumps([clevrer_entry(15000, [unanswered, no_verdicts])]))
    with pytest.raises(ValueError, match=r"CLEVRER: 2 of 2 questions .*1 distinct videos.*video_15000\.mp4"):
        load_clevrer(str(tmp_path), "test")
    touch(tmp_path / "videos" / "video_15000-16000" / "video_15000.mp4")
    ds = load_clevrer(str(tmp_path), "test")
    assert ds["answer"] == ["", ""] and ds["correct_choices"] == [[], []] and len(ds[1]["choices"]) == 3


def test_clevrer_options_become_correct_or_wrong_rows_and_regroup_per_question(tmp_path):
    write(tmp_path / "validation.json", json.dumps([clevrer_entry(10003, [DESCRIPTIVE, PREDICTIVE])]))
    touch(tmp_path / "videos" / "video_10003.mp4")
    ds = load_clevrer(str(tmp_path), "validation", options_as_questions=True)
    check_schema(ds)
    assert ds["question_id"] == ["10003_0", "10003_9/option0", "10003_9/option1", "10003_9/option2"]
    assert ds[0]["answer"] == "2" and ds[0]["choices"] == []  # descriptive rows are untouched
    assert ds["question"][1:] == [
        f"Which of the following will happen next? {c['choice']}" for c in PREDICTIVE["choices"]
    ]
    assert ds["answer"][1:] == ["correct", "wrong", "correct"]
    assert ds["correct_choices"][1:] == [[0], [1], [0]] and ds[1]["choices"] == ["correct", "wrong"]
    assert set(ds["answer_type"][1:]) == {"predictive"} and len(set(ds["video"])) == 1
    # a question none of whose options is right: every option row is answered "wrong" (a training split has verdicts)
    none_right = {**PREDICTIVE, "choices": [{**c, "answer": "wrong"} for c in PREDICTIVE["choices"]]}
    write(tmp_path / "train.json", json.dumps([clevrer_entry(10003, [none_right])]))
    train = load_clevrer(str(tmp_path), "train", options_as_questions=True)
    assert train["answer"] == ["wrong"] * 3 and train["correct_choices"] == [[1]] * 3

    def judged(rows, right):
        return [{**r, "correct": ok} for r, ok in zip(rows, right)]

    rows = list(ds)
    # options 0 and 2 judged right, option 1 ("wrong") judged "correct": one wrong option sinks the question
    predictions, references, types = multilabel_records(judged(rows, [True, True, False, True]))
    assert (predictions, references, types) == ([[1, 1, 1]], [[1, 0, 1]], ["predictive"])
    # records arrive in any order (gathered across processes); options are put back in order
    predictions, references, _ = multilabel_records(judged(rows, [False, True, True, True])[::-1])
    assert (predictions, references) == ([[1, 0, 1]], [[1, 0, 1]])

    # the test split has no verdicts: option rows have no answer, and scoring them says why it cannot
    unanswered = {
        **PREDICTIVE,
        "choices": [{k: v for k, v in c.items() if k != "answer"} for c in PREDICTIVE["choices"]],
    }
    write(tmp_path / "test.json", json.dumps([clevrer_entry(10003, [unanswered])]))
    test = load_clevrer(str(tmp_path), "test", options_as_questions=True)
    assert test["answer"] == ["", "", ""] and test["correct_choices"] == [[], [], []]
    with pytest.raises(ValueError, match=r"'10003_9/option0' has answer '', .*no verdicts"):
        multilabel_records(judged(list(test), [True] * 3))


# ---------------------------------------------------------------- dispatcher


def test_dispatcher_names():
    assert DATASET_NAMES[:7] == (
        "msrvtt-qa",
        "msvd-qa",
        "activitynet-qa",
        "nextqa-oe",
        "nextqa-mc",
        "tvqa",
        "clevrer",
    )
    with pytest.raises(ValueError, match="unknown VideoQA dataset 'msr-vtt'; choose one of msrvtt-qa, msvd-qa"):
        load_videoqa_dataset("msr-vtt", "/nowhere")


# ---------------------------------------------------------------- ids that would leave the data folder

ESCAPES = ["../../secret/evil", "../secret/evil", "{secret}/evil", "videos/../../secret/evil"]


def _secret(tmp_path):
    """A folder beside the data folder, holding files a hostile annotation could point at."""
    secret = tmp_path / "secret"
    touch(secret / "evil.mp4", secret / "evil.avi", secret / "frames" / "00001.jpg", secret / "leak.srt")
    return secret


def _escapes(tmp_path) -> list[str]:
    return [escape.format(secret=_secret(tmp_path)) for escape in ESCAPES]


def _data_dir(tmp_path, name):
    data = tmp_path / "data" / name
    data.mkdir(parents=True)
    return data


@pytest.mark.parametrize("on_missing", ["raise", "skip"])
def test_msrvtt_ids_that_leave_the_video_folder_are_rejected_naming_the_row(tmp_path, on_missing):
    for k, escape in enumerate(_escapes(tmp_path)):
        data = _data_dir(tmp_path, f"{on_missing}_{k}")
        touch(data / "videos" / "video7020.mp4")
        write(data / "test.jsonl", jsonl([MSRVTT_JSONL[0], {**MSRVTT_JSONL[1], "video_id": escape}]))
        with pytest.raises(ValueError, match=r"test.jsonl:2: video id .* does not name a file inside the data folder"):
            load_msrvtt_qa(str(data), "test", on_missing=on_missing)


def test_msvd_ids_and_mapped_names_that_leave_the_video_folder_are_rejected(tmp_path):
    for k, escape in enumerate(_escapes(tmp_path)):
        data = _data_dir(tmp_path, f"jsonl_{k}")
        write(data / "val.jsonl", jsonl([{"answer": "dog", "question": "what runs?", "video_id": escape}]))
        with pytest.raises(ValueError, match=r"val.jsonl:1: video id .* inside the data folder"):
            load_msvd_qa(str(data), "val", on_missing="skip")
        data = _data_dir(tmp_path, f"mapping_{k}")
        write(data / "val_qa.json", json.dumps([{"answer": "dog", "id": 1, "question": "what?", "video_id": 7}]))
        write(data / "youtube_mapping.txt", f"{escape} vid7\n")
        with pytest.raises(ValueError, match=r"val_qa.json, record 0: video id .* inside the data folder"):
            load_msvd_qa(str(data), "val")


def test_activitynet_names_that_leave_the_video_folder_are_rejected(tmp_path):
    for k, escape in enumerate(_escapes(tmp_path)):
        data = _data_dir(tmp_path, str(k))
        write(data / "val_q.json", json.dumps([{"video_name": escape, "question": "q", "question_id": "x_0"}]))
        write(data / "val_a.json", json.dumps([{"answer": "a", "type": 0, "question_id": "x_0"}]))
        with pytest.raises(ValueError, match=r"val_q.json, record 0: video id .* inside the data folder"):
            load_activitynet_qa(str(data), "val", on_missing="skip")


def test_nextqa_ids_and_map_entries_that_leave_the_video_folder_are_rejected(tmp_path):
    header = "video,frame_count,width,height,question,answer,qid,type\n"
    for k, escape in enumerate(_escapes(tmp_path)):
        data = _data_dir(tmp_path, f"csv_{k}")
        write(data / "val.csv", header + f"{escape},10,64,48,how is it,fine,0,CH\n")
        with pytest.raises(ValueError, match=r"val.csv:2: video id .* inside the data folder"):
            load_nextqa(str(data), "val", task="oe", on_missing="skip")
        data = _data_dir(tmp_path, f"map_{k}")
        write(data / "val.csv", header + "4010069381,10,64,48,how is it,fine,0,CH\n")
        write(data / "map_vid_vidorID.json", json.dumps({"4010069381": escape}))
        with pytest.raises(ValueError, match=r"map_vid_vidorID.json, video '4010069381': mapped path .* inside"):
            load_nextqa(str(data), "val", task="oe")


@pytest.mark.parametrize("subtitles", ["srt", "jsonl"])
def test_tvqa_vid_names_that_leave_the_data_folder_are_rejected_for_videos_frames_and_subtitles(tmp_path, subtitles):
    secret = _secret(tmp_path)
    escapes = [*_escapes(tmp_path), "../../secret/frames", "../../secret/leak", f"{secret}/frames"]
    for k, escape in enumerate(escapes):
        data = _data_dir(tmp_path, f"{subtitles}_{k}")
        write(
            data / "tvqa_val.jsonl",
            jsonl([tvqa_record(1, "1.0-2.0", "s01e02_seg01_clip_00"), tvqa_record(2, "1.0-2.0", escape)]),
        )
        touch(data / "videos" / "s01e02_seg01_clip_00.mp4")
        if subtitles == "srt":
            write(data / "tvqa_subtitles" / "s01e02_seg01_clip_00.srt", SRT, encoding="iso-8859-1")
        else:
            write(data / "tvqa_preprocessed_subtitles.jsonl", jsonl([{"vid_name": escape, "sub": []}]))
        with pytest.raises(ValueError, match=r"tvqa_val.jsonl:2: video id .* inside the data folder"):
            load_tvqa(str(data), "val", on_missing="skip")


def test_clevrer_file_names_that_leave_the_video_folder_are_rejected(tmp_path):
    for k, escape in enumerate(_escapes(tmp_path)):
        data = _data_dir(tmp_path, str(k))
        entry = {**clevrer_entry(10003, [DESCRIPTIVE]), "video_filename": escape + ".mp4"}
        write(data / "validation.json", json.dumps([entry]))
        with pytest.raises(ValueError, match=r"validation.json, record 0: video id .* inside the data folder"):
            load_clevrer(str(data), "validation", on_missing="skip")


@pytest.mark.parametrize("column", ["video", "page_dir"])
def test_caption_names_and_page_folders_that_leave_the_video_folder_are_rejected(tmp_path, column):
    from modeling_mcg.data import load_caption_dataset

    for k, escape in enumerate(_escapes(tmp_path)):
        data = _data_dir(tmp_path, f"{column}_{k}")
        touch(data / "videos" / "ok.mp4")
        video, page = (escape, "") if column == "video" else ("evil", escape)
        path = write(data / "captions.csv", f"video,page_dir,caption\nok,,fine\n{video},{page},a caption\n")
        with pytest.raises(ValueError, match=r"captions.csv:3: video id .* inside the data folder"):
            load_caption_dataset(path, video_dir=str(data / "videos"), on_missing="skip")


def test_ids_with_inner_parent_steps_that_stay_inside_are_accepted(tmp_path):
    write(tmp_path / "test.jsonl", jsonl([{**MSRVTT_JSONL[0], "video_id": "sub/../video7020"}]))
    touch(tmp_path / "videos" / "video7020.mp4")
    assert load_msrvtt_qa(str(tmp_path), "test")["video"][0].endswith("videos/video7020.mp4")


def test_symlinks_inside_the_video_folder_are_followed(tmp_path):
    """Video folders are often links to the storage holding the files; only the folder's owner can make them."""
    storage = tmp_path / "storage"
    touch(storage / "video7020.mp4")
    write(tmp_path / "data" / "test.jsonl", jsonl([MSRVTT_JSONL[0]]))
    os.symlink(storage, tmp_path / "data" / "videos")
    assert load_msrvtt_qa(str(tmp_path / "data"), "test")["video"][0].endswith("videos/video7020.mp4")
