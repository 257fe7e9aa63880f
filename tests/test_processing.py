"""MCGProcessor and the tokenizer builders: exact token ids, labels, choices, subtitles, errors, round trips."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from isolated import run_without_package
from transformers import AutoTokenizer, BertTokenizerFast

from modeling_mcg.processing_mcg import (
    IGNORE_INDEX,
    MCGProcessor,
    add_mcg_special_tokens,
    build_wordpiece_tokenizer,
)
from modeling_mcg.video_processing_mcg import MCGVideoProcessor

WORDS = ["what", "is", "the", "man", "doing", "cooking", "running", "sleeping", "in", "kitchen", "he", "says", "hello"]
ID = {word: 7 + position for position, word in enumerate(WORDS)}  # what=7 ... hello=19
PAD, UNK, CLS, SEP, MASK, DEC, ENC = range(7)
X = IGNORE_INDEX


def tiny_video_processor(**kwargs) -> MCGVideoProcessor:
    options = {"num_frames": 3, "size": {"shortest_edge": 10}, "crop_size": {"height": 10, "width": 10}}
    return MCGVideoProcessor(**{**options, **kwargs})


@pytest.fixture(scope="module")
def tokenizer():
    return build_wordpiece_tokenizer(WORDS)


@pytest.fixture
def processor(tokenizer):
    return MCGProcessor(video_processor=tiny_video_processor(), tokenizer=tokenizer)


def video(num_frames: int = 6, value: int = 90) -> np.ndarray:
    return np.full((num_frames, 14, 18, 3), value, dtype=np.uint8)


def write_bert_vocab(folder, size: int = 30522) -> None:
    """A vocab.txt laid out like bert-base-uncased: [PAD] 0, [unused*], [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["?"]
    tokens += [f"word{i}" for i in range(size - len(tokens))]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")


# ---------------------------------------------------------------------------------------------- tokenizers


def test_wordpiece_tokenizer_special_token_ids_and_vocabulary(tokenizer):
    assert tokenizer.convert_ids_to_tokens(list(range(7))) == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "[DEC]",
        "[ENC]",
    ]
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id) == (PAD, UNK, CLS)
    assert (tokenizer.sep_token_id, tokenizer.eos_token_id, tokenizer.mask_token_id) == (SEP, SEP, MASK)
    assert tokenizer.bos_token == "[DEC]" and tokenizer.bos_token_id == DEC
    assert ENC in tokenizer.all_special_ids and tokenizer.convert_tokens_to_ids("[ENC]") == ENC
    assert [tokenizer.convert_tokens_to_ids(word) for word in WORDS] == list(range(7, 7 + len(WORDS)))

    question = tokenizer("What is the MAN doing?", add_special_tokens=False)["input_ids"]
    assert question == [ID["what"], ID["is"], ID["the"], ID["man"], ID["doing"], tokenizer.convert_tokens_to_ids("?")]
    assert tokenizer("what is")["input_ids"] == [CLS, ID["what"], ID["is"], SEP]  # BERT-style template
    assert tokenizer("[ENC] what", add_special_tokens=False)["input_ids"] == [ENC, ID["what"]]  # never split


def test_any_word_tokenises_into_pieces_and_decodes_back(tokenizer):
    ids = tokenizer("zebras cook", add_special_tokens=False)["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert UNK not in ids and pieces[0] == "z" and all(piece.startswith("##") for piece in pieces[1:6])
    assert tokenizer.decode(ids) == "zebras cook"
    assert (
        tokenizer.decode([ENC, ID["he"], ID["is"], ID["cooking"], SEP, PAD], skip_special_tokens=True)
        == "he is cooking"
    )


def test_wordpiece_builder_options():
    cased = build_wordpiece_tokenizer(["What"], lowercase=False)
    assert cased.convert_tokens_to_ids("What") == 7
    assert cased("What", add_special_tokens=False)["input_ids"] == [7]
    assert cased.convert_ids_to_tokens(cased("what", add_special_tokens=False)["input_ids"]) == [
        "w",
        "##h",
        "##a",
        "##t",
    ]

    split = build_wordpiece_tokenizer(["ice-cream", "##ing", "cook"])
    assert split.convert_ids_to_tokens([7, 8, 9, 10, 11]) == ["ice", "-", "cream", "##ing", "cook"]
    assert split("cooking", add_special_tokens=False)["input_ids"] == [11, 10]
    with pytest.raises(TypeError, match="iterable of words"):
        build_wordpiece_tokenizer("what is")
    with pytest.raises(TypeError, match=r"words\[1\]"):
        build_wordpiece_tokenizer(["what", 3])


def test_wordpiece_tokenizer_save_load(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "what is the man cooking? zebras"
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert (reloaded.bos_token_id, reloaded.eos_token_id, reloaded.convert_tokens_to_ids("[ENC]")) == (DEC, SEP, ENC)


def test_add_mcg_special_tokens_gives_bert_base_ids(tmp_path):
    write_bert_vocab(tmp_path)
    bert = BertTokenizerFast.from_pretrained(tmp_path)
    assert len(bert) == 30522
    add_mcg_special_tokens(bert)
    assert len(bert) == 30524
    assert bert.convert_tokens_to_ids("[DEC]") == bert.bos_token_id == 30522
    assert bert.convert_tokens_to_ids("[ENC]") == 30523
    assert (bert.pad_token_id, bert.sep_token_id, bert.eos_token_id, bert.mask_token_id) == (0, 102, 102, 103)
    add_mcg_special_tokens(bert)  # idempotent
    assert len(bert) == 30524 and bert.convert_tokens_to_ids("[ENC]") == 30523

    processor = MCGProcessor(video_processor=tiny_video_processor(), tokenizer=bert)
    batch = processor(text="what is the man doing?", answers="cooking")
    assert batch["input_ids"].tolist() == [[30523, 104 + 0, 104 + 1, 104 + 2, 104 + 3, 104 + 4, 104 + 13, 102]]
    assert batch["labels"].tolist() == [[104 + 5, 102]]
    assert (processor.decoder_start_token_id, processor.enc_token_id, processor.eos_token_id) == (30522, 30523, 102)


def test_add_mcg_special_tokens_keeps_existing_extra_tokens(tmp_path):
    write_bert_vocab(tmp_path, size=200)
    bert = BertTokenizerFast.from_pretrained(tmp_path)
    bert.add_special_tokens({"extra_special_tokens": ["[OBJ]"]})
    add_mcg_special_tokens(bert)
    assert bert.convert_tokens_to_ids(["[OBJ]", "[DEC]", "[ENC]"]) == [200, 201, 202]
    assert {"[OBJ]", "[ENC]"} <= set(bert.all_special_tokens)


# ---------------------------------------------------------------------------------------------- processor


def test_questions_and_labels_exact_ids(processor, tokenizer):
    question_mark = tokenizer.convert_tokens_to_ids("?")
    batch = processor(text=["What is the man doing?", "is he cooking"], answers=["cooking", "sleeping in the kitchen"])
    assert set(batch.keys()) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [
        [ENC, ID["what"], ID["is"], ID["the"], ID["man"], ID["doing"], question_mark, SEP],
        [ENC, ID["is"], ID["he"], ID["cooking"], SEP, PAD, PAD, PAD],
    ]
    assert batch["attention_mask"].tolist() == [[1] * 8, [1] * 5 + [0] * 3]
    assert batch["labels"].tolist() == [
        [ID["cooking"], SEP, X, X, X],
        [ID["sleeping"], ID["in"], ID["the"], ID["kitchen"], SEP],
    ]
    for key in ("input_ids", "attention_mask", "labels"):
        assert batch[key].dtype == torch.int64
    assert not (batch["labels"] == DEC).any() and not (batch["input_ids"] == CLS).any()


def test_choice_labels_are_formatted_like_labels(processor):
    choices = [["cooking", "running", "sleeping in the kitchen"], ["hello"]]
    batch = processor(text=["what is he doing", "what says he"], choices=choices)
    assert batch["choice_labels"].dtype == torch.int64
    assert batch["choice_labels"].tolist() == [
        [
            [ID["cooking"], SEP, X, X, X],
            [ID["running"], SEP, X, X, X],
            [ID["sleeping"], ID["in"], ID["the"], ID["kitchen"], SEP],
        ],
        [[ID["hello"], SEP, X, X, X], [X] * 5, [X] * 5],
    ]
    for i, candidates in enumerate(choices):
        for j, candidate in enumerate(candidates):
            labels = processor(answers=candidate)["labels"][0]
            assert batch["choice_labels"][i, j, : len(labels)].tolist() == labels.tolist()

    single = processor(text="what is he doing", choices=["cooking", "running"])
    assert single["choice_labels"].shape == (1, 2, 2)


def test_subtitles_are_appended_and_only_they_are_truncated(tokenizer):
    processor = MCGProcessor(tiny_video_processor(), tokenizer, max_question_length=6, max_subtitle_length=12)
    long_question = "what is the man doing in the kitchen"  # 8 tokens -> 4 kept
    subtitles = "he says hello he says hello he says hello"  # 9 tokens -> 12 - 6 - 1 = 5 kept
    batch = processor(text=[long_question, "is he cooking", "what"], subtitles=[subtitles, None, "hello"])
    question_part = [ENC, ID["what"], ID["is"], ID["the"], ID["man"], SEP]
    assert batch["input_ids"].tolist() == [
        question_part + [ID["he"], ID["says"], ID["hello"], ID["he"], ID["says"], SEP],
        [ENC, ID["is"], ID["he"], ID["cooking"], SEP] + [PAD] * 7,
        [ENC, ID["what"], SEP, ID["hello"], SEP] + [PAD] * 7,
    ]
    assert batch["attention_mask"][0].sum() == 12 and batch["attention_mask"][2].sum() == 5
    assert processor(text=long_question)["input_ids"].tolist() == [question_part]

    fixed = processor(
        text=["what", "is he"], subtitles=["hello", None], answers=["cooking", "hello"], padding="max_length"
    )
    assert fixed["input_ids"].shape == (2, 12) and fixed["labels"].shape == (2, 32)
    assert processor(text="what", padding="max_length")["input_ids"].shape == (1, 6)


def test_answers_are_truncated_but_keep_the_eos(tokenizer):
    processor = MCGProcessor(tiny_video_processor(), tokenizer, max_answer_length=3)
    batch = processor(answers="sleeping in the kitchen", choices=[["sleeping in the kitchen", "cooking"]])
    assert batch["labels"].tolist() == [[ID["sleeping"], ID["in"], SEP]]
    assert batch["choice_labels"].tolist() == [[[ID["sleeping"], ID["in"], SEP], [ID["cooking"], SEP, X]]]


def test_videos_text_and_video_kwargs_together(processor):
    batch = processor(
        videos=[video(), video(2)], text=["what", "is he"], answers=["hello", "cooking"], frame_padding="mask"
    )
    assert set(batch.keys()) == {"input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask", "labels"}
    assert (
        batch["pixel_values_videos"].shape == (2, 3, 3, 10, 10) and batch["pixel_values_videos"].dtype == torch.float32
    )
    assert batch["video_frame_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert processor(videos=video(), text="what", num_frames=5)["pixel_values_videos"].shape == (1, 5, 3, 10, 10)
    only_video = processor(videos=video())
    assert set(only_video.keys()) == {"pixel_values_videos", "video_frame_mask"}
    as_numpy = processor(videos=video(), text="what", answers="hello", return_tensors="np")
    assert isinstance(as_numpy["input_ids"], np.ndarray) and isinstance(as_numpy["pixel_values_videos"], np.ndarray)


def test_options_can_be_flat_or_grouped_by_modality_as_in_transformers(processor):
    flat = processor(videos=video(), text="what", num_frames=5, padding="max_length", return_tensors="np")
    grouped = processor(
        videos=video(),
        text="what",
        videos_kwargs={"num_frames": 5},
        text_kwargs={"padding": "max_length"},
        common_kwargs={"return_tensors": "np"},
    )
    assert flat.keys() == grouped.keys()
    for key in flat:
        np.testing.assert_array_equal(flat[key], grouped[key])
    assert flat["pixel_values_videos"].shape[1] == 5 and flat["input_ids"].shape == (1, processor.max_question_length)
    with pytest.raises(ValueError, match="num_frames was passed two times"):
        processor(videos=video(), num_frames=5, videos_kwargs={"num_frames": 4})


def test_text_options_shape_the_questions(processor):
    long_question = "what is the man doing in the kitchen"  # [ENC] + 8 words + [SEP]
    cut = processor(text=long_question, max_length=5)["input_ids"]
    assert cut.tolist() == [[ENC, ID["what"], ID["is"], ID["the"], SEP]]
    padded = processor(text=["what", "is he"], padding="max_length", max_length=7)
    assert padded["input_ids"].tolist() == [
        [ENC, ID["what"], SEP] + [PAD] * 4,
        [ENC, ID["is"], ID["he"], SEP] + [PAD] * 3,
    ]
    left = processor(text=["what", "is he"], padding_side="left", pad_to_multiple_of=8)
    assert left["input_ids"].tolist() == [
        [PAD] * 5 + [ENC, ID["what"], SEP],
        [PAD] * 4 + [ENC, ID["is"], ID["he"], SEP],
    ]
    assert left["attention_mask"].tolist() == [[0] * 5 + [1] * 3, [0] * 4 + [1] * 4]
    assert "attention_mask" not in processor(text="what", return_attention_mask=False)
    ragged = processor(
        text=["what", "is he"], answers=["hello", "sleeping in the kitchen"], padding=False, return_tensors=None
    )
    assert ragged["input_ids"] == [[ENC, ID["what"], SEP], [ENC, ID["is"], ID["he"], SEP]]
    assert [len(labels) for labels in ragged["labels"]] == [2, 5]
    with pytest.raises(ValueError, match=r"text\[0\] takes 10 tokens .* more than 5"):
        processor(text=long_question, max_length=5, truncation=False)
    with_subtitles = processor(text=[long_question, "what"], subtitles=["hello he says", None], max_length=6)
    assert with_subtitles["input_ids"].tolist() == [
        [ENC, ID["what"], ID["is"], ID["the"], SEP, SEP],
        [ENC, ID["what"], SEP, PAD, PAD, PAD],
    ]
    with pytest.raises(ValueError, match="no room for a question word"):
        processor(text="what", subtitles="hello", max_length=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"text_pair": "hello"}, r"does not support the text option\(s\) \['text_pair'\]"),
        ({"text_kwargs": {"stride": 2}}, r"\['stride'\]"),
        ({"images_kwargs": {"size": 3}}, r"unexpected keyword argument\(s\) \['images_kwargs'\]"),
    ],
)
def test_options_the_question_encoding_cannot_honour_are_refused(processor, kwargs, match):
    with pytest.raises(TypeError, match=match):
        processor(text="what", **kwargs)


def test_token_id_properties_and_decoding(processor):
    assert (processor.pad_token_id, processor.decoder_start_token_id, processor.eos_token_id) == (PAD, DEC, SEP)
    assert processor.enc_token_id == ENC and processor.bos_token_id == DEC
    assert processor.model_input_names == ["input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask"]
    labels = processor(answers=["cooking", "sleeping in the kitchen"])["labels"]
    generated = torch.cat([torch.full((2, 1), DEC), labels.masked_fill(labels == X, PAD)], dim=1)
    assert processor.batch_decode(generated, skip_special_tokens=True) == ["cooking", "sleeping in the kitchen"]
    assert processor.decode(generated[0], skip_special_tokens=True) == "cooking"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"text": ["what", "  "]}, r"text\[1\] is an empty question"),
        ({"text": ["what", "is he"], "videos": [video(), video(), video()]}, "3 videos"),
        ({"text": "what", "videos": [video(), video()]}, "Batch sizes differ"),
        ({"text": ["what", "is he"], "answers": ["hello"]}, "Batch sizes differ"),
        ({"text": ["what", "is he"], "choices": [["hello", "cooking"]]}, "1 choices"),
        ({"text": ["what", "is he"], "choices": [["hello"], []]}, r"choices\[1\] is an empty candidate list"),
        ({"text": "what", "choices": [["hello", " "]]}, "non-empty string"),
        ({"text": "what", "answers": ""}, "empty"),
        ({"subtitles": "hello"}, "without text"),
        ({}, "Nothing to process"),
        ({"text": "what", "padding": "left"}, "padding"),
        ({"text": "what", "pad_to_multiple_of": 0}, "pad_to_multiple_of must be a positive integer"),
        ({"text": "what", "max_length": 2}, "no room for a question word"),
        ({"text": "what", "padding_side": "up"}, "padding_side must be 'left' or 'right'"),
    ],
)
def test_bad_calls_raise_value_errors(processor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        processor(**kwargs)


def test_bad_construction(tmp_path, tokenizer):
    write_bert_vocab(tmp_path, size=200)
    with pytest.raises(ValueError, match="add_mcg_special_tokens"):
        MCGProcessor(tiny_video_processor(), BertTokenizerFast.from_pretrained(tmp_path))
    with pytest.raises(ValueError, match="needs a tokenizer"):
        MCGProcessor(tiny_video_processor())
    with pytest.raises(ValueError, match="max_subtitle_length"):
        MCGProcessor(tiny_video_processor(), tokenizer, max_question_length=40, max_subtitle_length=30)
    with pytest.raises(TypeError, match="video_processor must be a video processor"):
        MCGProcessor(video_processor=tokenizer, tokenizer=tokenizer)
    with pytest.raises(TypeError, match="choices"):
        MCGProcessor(tiny_video_processor(), tokenizer)(text="what", choices="hello")
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['anwsers'\]"):
        MCGProcessor(tiny_video_processor(), tokenizer)(text="what", anwsers="hello")
    default = MCGProcessor.from_vocabulary(WORDS)
    assert isinstance(default.video_processor, MCGVideoProcessor) and default.video_processor.num_frames == 8


def test_save_and_load_round_trip(tmp_path, tokenizer):
    processor = MCGProcessor(
        tiny_video_processor(num_frames=4, frame_padding="mask", image_mean=[0.5, 0.5, 0.5]),
        tokenizer,
        max_question_length=7,
        max_answer_length=4,
        max_subtitle_length=11,
    )
    processor.save_pretrained(tmp_path)
    assert {"processor_config.json", "tokenizer.json", "tokenizer_config.json"} <= set(os.listdir(tmp_path))
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert (config["max_question_length"], config["max_answer_length"], config["max_subtitle_length"]) == (7, 4, 11)

    reloaded = MCGProcessor.from_pretrained(tmp_path)
    assert (reloaded.max_question_length, reloaded.max_answer_length, reloaded.max_subtitle_length) == (7, 4, 11)
    assert reloaded.video_processor.to_dict() == processor.video_processor.to_dict()
    assert MCGVideoProcessor.from_pretrained(tmp_path).to_dict() == processor.video_processor.to_dict()
    assert reloaded.tokenizer.get_vocab() == tokenizer.get_vocab()

    inputs = {
        "videos": [video(2, 30), video(7, 200)],
        "text": ["what is the man doing in the kitchen", "is he cooking"],
        "subtitles": ["he says hello he says hello", None],
        "answers": ["sleeping in the kitchen", "hello"],
        "choices": [["cooking", "running"], ["hello"]],
    }
    expected, actual = processor(**inputs), reloaded(**inputs)
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def test_saved_processor_loads_as_remote_code_without_the_package(tmp_path, tokenizer, monkeypatch):
    """The saved folder must load through AutoProcessor(trust_remote_code=True) in a process without modeling_mcg."""
    monkeypatch.setattr(MCGProcessor, "_auto_class", "AutoProcessor")
    processor = MCGProcessor(tiny_video_processor(), tokenizer)
    processor.save_pretrained(tmp_path / "saved")
    expected = processor(videos=video(), text="what is he doing", answers="cooking")
    torch.save(dict(expected), tmp_path / "expected.pt")
    script = (
        "import sys, numpy as np, torch\n"
        "from transformers import AutoProcessor\n"
        "p = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "assert 'modeling_mcg' not in sys.modules, 'the package leaked in'\n"
        "import importlib.util; assert importlib.util.find_spec('modeling_mcg') is None\n"
        "out = p(videos=np.full((6, 14, 18, 3), 90, np.uint8), text='what is he doing', answers='cooking')\n"
        "expected = torch.load(sys.argv[2])\n"
        "assert out.keys() == expected.keys() and all(torch.equal(out[k], expected[k]) for k in out)\n"
        "print(type(p).__module__)\n"
    )
    result = run_without_package(script, [tmp_path / "saved", tmp_path / "expected.pt"], tmp_path)
    assert result.stdout.strip().startswith("transformers_modules.")


def test_auto_processor_classes_are_registered_on_import(tmp_path):
    from transformers import AutoProcessor
    from transformers.models.auto.video_processing_auto import AutoVideoProcessor

    from modeling_mcg import MCGConfig, MCGProcessor, MCGVideoProcessor

    processor = MCGProcessor.from_vocabulary(["red", "circle"], MCGVideoProcessor(num_frames=2))
    processor.save_pretrained(tmp_path)
    MCGConfig().save_pretrained(tmp_path)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), MCGProcessor)
    assert isinstance(AutoVideoProcessor.from_pretrained(tmp_path), MCGVideoProcessor)


def test_readme_says_how_to_load_the_video_processor_without_torchvision(tmp_path):
    """`from transformers import AutoVideoProcessor` is transformers' torchvision placeholder; the README names the
    import that works, and that import loads ours."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    line = "from transformers.models.auto.video_processing_auto import AutoVideoProcessor"
    assert line in readme and "`from transformers import AutoVideoProcessor` is transformers' torchvision" in readme
    namespace: dict = {}
    exec(line, namespace)
    from modeling_mcg import MCGConfig, MCGProcessor, MCGVideoProcessor

    MCGProcessor.from_vocabulary(["red"], MCGVideoProcessor(num_frames=3)).save_pretrained(tmp_path)
    MCGConfig().save_pretrained(tmp_path)
    loaded = namespace["AutoVideoProcessor"].from_pretrained(tmp_path)
    assert isinstance(loaded, MCGVideoProcessor) and loaded.num_frames == 3
