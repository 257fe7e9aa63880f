"""The "video-question-answering" pipeline on an in-memory tiny model: every input form, option and error."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import tiny_config
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from video_factory import reference_frames, write_video

from modeling_mcg import MCGForVideoQuestionAnswering, MCGProcessor, MCGVideoProcessor, VideoDecodeError
from modeling_mcg.pipeline_mcg import TASK, VideoQuestionAnsweringPipeline, register_pipeline

WORDS = ["what", "is", "the", "man", "doing", "cooking", "running", "red", "blue", "dog", "cat"]
QUESTION = "what is the man doing?"


def tiny_processor() -> MCGProcessor:
    """A processor whose 24x24, 4-frame output matches `tiny_config()`'s video encoder."""
    video_processor = MCGVideoProcessor(
        num_frames=4, size={"height": 24, "width": 24}, crop_size={"height": 24, "width": 24}
    )
    return MCGProcessor.from_vocabulary(WORDS, video_processor=video_processor)


def tiny_model(processor: MCGProcessor, seed: int = 0) -> MCGForVideoQuestionAnswering:
    """A tiny model whose vocabulary and special ids are the tokenizer's (tiny_config uses the same ids 0-6)."""
    tokenizer = processor.tokenizer
    assert (tokenizer.pad_token_id, tokenizer.sep_token_id, processor.decoder_start_token_id) == (0, 3, 5)
    assert processor.enc_token_id == 6
    vocab = {"vocab_size": len(tokenizer)}
    torch.manual_seed(seed)
    return MCGForVideoQuestionAnswering(tiny_config(question=vocab, decoder=vocab)).eval()


@pytest.fixture(scope="module")
def pipe():
    register_pipeline()
    processor = tiny_processor()
    return pipeline(TASK, model=tiny_model(processor), processor=processor, device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return str(write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=12, width=40, height=30))


def _video(seed: int, frames: int = 9) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, 30, 40, 3), dtype=np.uint8)


def _check_answers(result, count=None):
    assert isinstance(result, list) and all(set(item) == {"answer", "score"} for item in result)
    assert all(isinstance(item["answer"], str) and isinstance(item["score"], float) for item in result)
    scores = [item["score"] for item in result]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < score <= 1.0 for score in scores)
    if count is not None:
        assert len(result) == count


def _direct_inputs(pipe, video, question=QUESTION, **kwargs):
    encoded = pipe.processor(videos=[video], text=[question], return_tensors="pt", **kwargs)
    return {k: encoded[k] for k in ("input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask")}


def test_register_pipeline_is_idempotent_and_used_by_pipeline(pipe):
    register_pipeline()
    register_pipeline()
    task = PIPELINE_REGISTRY.supported_tasks[TASK]
    assert task["impl"] is VideoQuestionAnsweringPipeline and task["type"] == "multimodal"
    assert isinstance(pipe, VideoQuestionAnsweringPipeline)


def test_every_video_form_gives_the_same_answer(pipe, clip):
    frames = np.stack(reference_frames(clip))
    with open(clip, "rb") as handle:
        data = handle.read()
    from_path = pipe(clip, question=QUESTION, max_new_tokens=4)
    _check_answers(from_path, count=1)
    assert pipe(data, question=QUESTION, max_new_tokens=4) == from_path
    from_array = pipe(frames, question=QUESTION, max_new_tokens=4)
    _check_answers(from_array, count=1)
    assert pipe([Image.fromarray(frame) for frame in frames], question=QUESTION, max_new_tokens=4) == from_array
    assert pipe({"video": frames, "question": QUESTION}, max_new_tokens=4) == from_array


def test_greedy_answer_and_score_match_the_model(pipe):
    video = _video(1)
    [result] = pipe(video, question=QUESTION, max_new_tokens=5)
    inputs = _direct_inputs(pipe, video)
    sequence = pipe.model.generate(**inputs, max_new_tokens=5)
    assert result["answer"] == pipe.processor.tokenizer.decode(sequence[0], skip_special_tokens=True).strip()
    # the score is exp(mean log-prob per token), the quantity score_choices computes for the same tokens
    labels = sequence[:, 1:].clone()
    sep = pipe.processor.eos_token_id
    ends = (labels == sep).nonzero()
    if len(ends):
        labels[0, ends[0, 1] + 1 :] = -100
    mean_log_prob = pipe.model.score_choices(**inputs, choice_labels=labels[:, None, :])
    assert result["score"] == pytest.approx(mean_log_prob.exp().item(), rel=1e-4)


def test_top_k_returns_the_beams_with_probability_scores(pipe):
    video = _video(2)
    result = pipe(video, question=QUESTION, top_k=3, max_new_tokens=4)
    _check_answers(result, count=3)
    output = pipe.model.generate(
        **_direct_inputs(pipe, video),
        num_beams=3,
        num_return_sequences=3,
        max_new_tokens=4,
        output_scores=True,
        return_dict_in_generate=True,
    )
    expected = pipe.processor.tokenizer.batch_decode(output.sequences, skip_special_tokens=True)
    assert [item["answer"] for item in result] == [answer.strip() for answer in expected]
    assert [item["score"] for item in result] == pytest.approx(output.sequences_scores.exp().tolist(), rel=1e-4)
    # num_beams above top_k is kept; top_k above num_beams raises the beam count
    assert len(pipe(video, question=QUESTION, top_k=2, num_beams=4, max_new_tokens=4)) == 2


def test_max_new_tokens_limits_the_answer(pipe):
    video = _video(3)
    [short] = pipe(video, question=QUESTION, max_new_tokens=1)
    sequence = pipe.model.generate(**_direct_inputs(pipe, video), max_new_tokens=1)
    assert sequence.shape[1] <= 2  # [DEC] + one token
    assert short["answer"] == pipe.processor.tokenizer.decode(sequence[0], skip_special_tokens=True).strip()
    [longer] = pipe(video, question=QUESTION, max_new_tokens=6)
    assert longer["answer"] != short["answer"]


def test_candidate_answers_are_ranked_by_softmax_of_mean_log_probs(pipe):
    video, candidates = _video(4), ["cooking", "running", "red dog", "blue"]
    result = pipe(video, question=QUESTION, candidate_answers=candidates)
    _check_answers(result, count=4)
    assert sorted(item["answer"] for item in result) == sorted(candidates)
    assert sum(item["score"] for item in result) == pytest.approx(1.0, abs=1e-5)
    encoded = pipe.processor(videos=[video], text=[QUESTION], choices=[candidates], return_tensors="pt")
    log_probs = pipe.model.score_choices(**_direct_inputs(pipe, video), choice_labels=encoded["choice_labels"])[0]
    expected = dict(zip(candidates, log_probs.softmax(dim=0).tolist()))
    assert {item["answer"]: item["score"] for item in result} == pytest.approx(expected, rel=1e-5)
    top = pipe(video, question=QUESTION, candidate_answers=candidates, top_k=2)
    assert top == result[:2]


def test_subtitles_num_frames_and_sampling_reach_the_processor(pipe):
    video, candidates = _video(5, frames=16), ["cooking", "running", "cat"]
    subtitles = "the dog is red and the cat is blue"
    for pipe_kwargs, processor_kwargs in (
        ({"subtitles": subtitles}, {"subtitles": [subtitles]}),
        ({"num_frames": 2, "sampling": "headtail"}, {"num_frames": 2, "sampling": "headtail"}),
    ):
        result = pipe(video, question=QUESTION, candidate_answers=candidates, **pipe_kwargs)
        encoded = pipe.processor(
            videos=[video], text=[QUESTION], choices=[candidates], return_tensors="pt", **processor_kwargs
        )
        inputs = {k: encoded[k] for k in ("input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask")}
        log_probs = pipe.model.score_choices(**inputs, choice_labels=encoded["choice_labels"])[0]
        expected = dict(zip(candidates, log_probs.softmax(dim=0).tolist()))
        assert {item["answer"]: item["score"] for item in result} == pytest.approx(expected, rel=1e-5)
    with_subtitles = pipe(video, question=QUESTION, candidate_answers=candidates, subtitles=subtitles)
    assert with_subtitles != pipe(video, question=QUESTION, candidate_answers=candidates)


def test_batched_lists_match_single_calls(pipe):
    videos = [_video(6), _video(7, frames=5), _video(8, frames=20)]
    questions = ["what is the man doing?", "what", "is the dog red or blue?"]
    batched = pipe(videos, question=questions, top_k=2, max_new_tokens=4, batch_size=2)
    assert batched == [pipe(v, question=q, top_k=2, max_new_tokens=4) for v, q in zip(videos, questions)]
    # candidate lists of different lengths: the collated padding must not become candidates
    choices = [["cooking", "running"], ["red", "blue", "cat dog"], ["dog"]]
    inputs = [{"video": v, "question": q, "candidate_answers": c} for v, q, c in zip(videos, questions, choices)]
    batched = pipe(inputs, batch_size=3)
    single = [pipe(v, question=q, candidate_answers=c) for v, q, c in zip(videos, questions, choices)]
    assert [len(result) for result in batched] == [2, 3, 1]
    for got, want in zip(batched, single):
        assert [item["answer"] for item in got] == [item["answer"] for item in want]
        assert [item["score"] for item in got] == pytest.approx([item["score"] for item in want], abs=1e-5)
    # one question for every video
    assert len(pipe(videos[:2], question=QUESTION, max_new_tokens=2)) == 2


def test_missing_or_empty_question_is_a_clear_error(pipe):
    with pytest.raises(ValueError, match="No question"):
        pipe(_video(9))
    with pytest.raises(ValueError, match="No question"):
        pipe({"video": _video(9)})
    with pytest.raises(ValueError, match="empty"):
        pipe(_video(9), question="   ")
    with pytest.raises(ValueError, match="one entry per input"):
        pipe([_video(9), _video(10)], question=["a", "b", "c"])
    with pytest.raises(ValueError, match="'video' key"):
        pipe({"clip": _video(9), "question": QUESTION})


def test_unreadable_video_names_the_file(pipe, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 10)
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        pipe(str(broken), question=QUESTION)
    assert issubclass(VideoDecodeError, ValueError)


def test_bad_options_are_rejected(pipe):
    with pytest.raises(TypeError, match="unexpected argument"):
        pipe(_video(9), question=QUESTION, frames=3)
    with pytest.raises(ValueError, match="top_k"):
        pipe(_video(9), question=QUESTION, top_k=0)
    with pytest.raises(ValueError, match="candidate_answers"):
        pipe({"video": _video(9), "question": QUESTION, "candidate_answers": "cooking"})


def test_video_and_question_can_be_given_as_keywords(pipe, clip):
    expected = pipe(clip, question=QUESTION, max_new_tokens=3)
    assert pipe(video=clip, question=QUESTION, max_new_tokens=3) == expected
    assert pipe(video=clip, question=QUESTION, candidate_answers=["cooking", "red dog"])[0]["answer"] in (
        "cooking",
        "red dog",
    )
    with pytest.raises(ValueError, match="Pass the video once"):
        pipe(clip, video=clip, question=QUESTION)


def test_one_video_with_a_list_of_questions_answers_each(pipe, clip):
    questions = [QUESTION, "what is the dog doing?", "is the cat red?"]
    answers = pipe(video=clip, question=questions, top_k=2, max_new_tokens=3)
    assert len(answers) == len(questions)
    for question, got in zip(questions, answers):
        want = pipe(clip, question=question, top_k=2, max_new_tokens=3)
        assert [item["answer"] for item in got] == [item["answer"] for item in want]
        assert [item["score"] for item in got] == pytest.approx([item["score"] for item in want], abs=1e-5)
    frames = [Image.fromarray(frame) for frame in _video(4)]  # a list of frames is one video, not a batch
    assert len(pipe(frames, question=questions[:2], max_new_tokens=2)) == 2


def test_empty_inputs_are_clear_errors(pipe, clip):
    with pytest.raises(ValueError, match="candidate_answers is empty; pass at least one candidate"):
        pipe(clip, question=QUESTION, candidate_answers=[])
    with pytest.raises(ValueError, match="question is an empty list"):
        pipe(clip, question=[])
    with pytest.raises(ValueError, match="inputs is an empty list"):
        pipe([], question=QUESTION)
    with pytest.raises(ValueError, match="No video given"):
        pipe(question=QUESTION)
    with pytest.raises(ValueError, match="non-empty list of strings"):
        pipe({"video": clip, "question": QUESTION, "candidate_answers": []})
