"""The `"video-question-answering"` pipeline for MCG: open-ended answers by generation, or multiple choice by scoring.

This file is also shipped as remote code next to a saved model (see `modeling_mcg.hub.save_for_hub`), so it imports
only installed packages: no sibling or package imports. Usage:

    from transformers import pipeline
    pipe = pipeline("video-question-answering", model=folder)            # package imported (register_pipeline ran)
    pipe = pipeline("video-question-answering", model=folder, trust_remote_code=True)  # package not installed
    pipe("clip.mp4", question="what is the man doing?", top_k=3)
    # -> [{"answer": "cooking", "score": 0.61}, {"answer": "eating", "score": 0.2}, ...]
    pipe(video="clip.mp4", question=["what is he doing?", "where is he?"])  # one video, several questions
    pipe("clip.mp4", question="what is he doing?", candidate_answers=["cooking", "running"])
    pipe([{"video": "a.mp4", "question": "..."}, {"video": frames, "question": "..."}], batch_size=2)

A folder written by `save_for_hub` declares this pipeline in `custom_pipelines` for users without the package; with
the package imported, the loaded config leaves that entry out, so the registered class is used without remote code.
"""

from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForSeq2SeqLM, GenerationConfig, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

TASK = "video-question-answering"
_IGNORE_INDEX = -100
_VIDEO_OPTIONS = ("num_frames", "sampling")
_INPUT_KEYS = {"video", "question", "subtitles", "candidate_answers"}
_GENERATION_KEYS = frozenset(key for key in vars(GenerationConfig()) if not key.startswith("_")) - {"top_k"}


def _is_frame(item: Any) -> bool:
    return isinstance(item, Image.Image) or (isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 3)


def _is_batch_of_videos(inputs: Any) -> bool:
    """A list of frames is one video; any other list (or a 5-d array) is a batch of videos."""
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        return inputs.ndim == 5
    if isinstance(inputs, (list, tuple)):
        return len(inputs) > 0 and not all(_is_frame(item) for item in inputs)
    return False


def _check_question(question: Any, index: int | None) -> str:
    where = "" if index is None else f" for input {index}"
    if question is None:
        raise ValueError(
            f"No question{where}: pass question='...' or an input like {{'video': ..., 'question': '...'}}."
        )
    if not isinstance(question, str):
        raise TypeError(f"The question{where} must be a string; got {type(question).__name__}.")
    if not question.strip():
        raise ValueError(f"The question{where} is empty; ask something about the video.")
    return question


def _per_input(value: Any, count: int, name: str, is_item) -> list:
    """Broadcast one call-level value to every input, or check a list has one entry per input."""
    if value is None or is_item(value):
        return [value] * count
    if isinstance(value, (list, tuple)) and len(value) == count:
        return list(value)
    raise ValueError(f"{name} must be one value for all inputs or a list with one entry per input ({count}).")


def _is_candidate_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(item, str) for item in value)


class VideoQuestionAnsweringPipeline(Pipeline):
    """Answer questions about videos with an MCG model and its `MCGProcessor`.

    Inputs: a video (path, bytes, a (t, h, w, 3) uint8 array or a list of PIL frames) with `question=`, a dict
    `{"video", "question"[, "subtitles"][, "candidate_answers"]}`, or a list of either (one output per input; use
    `batch_size` to batch them through the model).

    Options: `top_k` (answers to return), `candidate_answers` (multiple choice), `subtitles`, `num_frames`,
    `sampling`, and generation parameters such as `max_new_tokens` and `num_beams`.

    Output per input: a list of `{"answer": str, "score": float}` sorted by score, highest first.

    * Open-ended (no candidates): `top_k` answers from beam search with `num_beams = max(top_k, num_beams)`; the
      score is `exp` of the length-normalised log-probability (the mean log-probability per answer token, i.e. the
      beam score with `length_penalty=1`), a per-token probability in (0, 1]. With `top_k=1` and no beams (greedy)
      the score is computed the same way from the step scores.
    * Multiple choice (`candidate_answers`): every candidate is scored by `model.score_choices` (mean log-probability
      per token); the score is the softmax of those over the question's candidates, so scores sum to 1. All
      candidates are returned unless `top_k` is given.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False  # AutoVideoProcessor needs torchvision; the processor carries the video processor
    _load_feature_extractor = False
    _pipeline_calls_generate = True
    _non_generation_params = ("top_k",)  # the number of answers, not the sampling parameter

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None or not hasattr(self.processor, "video_processor"):
            raise ValueError(
                "VideoQuestionAnsweringPipeline needs the model's MCGProcessor (video processor + tokenizer): pass "
                "processor=... or load from a folder that has one."
            )

    # ------------------------------------------------------------------ parameters

    def _sanitize_parameters(
        self,
        question=None,
        top_k=None,
        candidate_answers=None,
        subtitles=None,
        num_frames=None,
        sampling=None,
        generate_kwargs=None,
        **kwargs,
    ):
        unknown = set(kwargs) - _GENERATION_KEYS
        if unknown:
            raise TypeError(
                f"VideoQuestionAnsweringPipeline got unexpected argument(s) {sorted(unknown)}; it takes question, "
                "top_k, candidate_answers, subtitles, num_frames, sampling, batch_size and generation parameters "
                "(max_new_tokens, num_beams, ...)."
            )
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer; got {top_k!r}.")
        preprocess = {}
        for name, value in (("num_frames", num_frames), ("sampling", sampling)):
            if value is not None:
                preprocess[name] = value
        forward = {**(generate_kwargs or {}), **kwargs}
        postprocess = {}
        if top_k is not None:
            forward["top_k"] = top_k
            postprocess["top_k"] = top_k
        # question / subtitles / candidate_answers are per input and handled in __call__; at init they set defaults
        defaults = {"question": question, "subtitles": subtitles, "candidate_answers": candidate_answers}
        defaults = {key: value for key, value in defaults.items() if value is not None}
        if defaults:
            preprocess["defaults"] = defaults
        return preprocess, forward, postprocess

    # ------------------------------------------------------------------ call

    def __call__(self, inputs=None, question=None, *, video=None, subtitles=None, candidate_answers=None, **kwargs):
        """Answer `question` about `inputs` (a video, a dict, or a list of either); see the class docstring.

        The video may also be given as `video=`. For a list of videos, `question`, `subtitles` and
        `candidate_answers` may be a single value for all videos or a list with one entry per video; one video with
        a list of questions answers each question about that video.
        """
        if video is not None:
            if inputs is not None:
                raise ValueError("Pass the video once: as the first argument or as video=..., not both.")
            inputs = video
        if inputs is None:
            raise ValueError(
                "No video given: pass a video (path, bytes, array or frames) as the first argument or video=..., "
                "or an input like {'video': ..., 'question': ...}."
            )
        if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
            raise ValueError("inputs is an empty list; pass at least one video.")
        if isinstance(question, (list, tuple)) and len(question) == 0:
            raise ValueError("question is an empty list; pass at least one question.")
        if isinstance(candidate_answers, (list, tuple)) and len(candidate_answers) == 0:
            raise ValueError(
                "candidate_answers is empty; pass at least one candidate answer, or leave it out for open-ended answers."
            )
        batched = isinstance(inputs, (list, tuple)) and all(isinstance(x, dict) for x in inputs)
        batched = batched or _is_batch_of_videos(inputs)
        items = list(inputs) if batched else [inputs]
        if not batched and isinstance(question, (list, tuple)) and not isinstance(inputs, dict):
            items, batched = [inputs] * len(question), True  # one video, several questions: ask each about it
        count = len(items)
        questions = _per_input(question, count, "question", lambda v: isinstance(v, str))
        subtitle_list = _per_input(subtitles, count, "subtitles", lambda v: isinstance(v, str))
        if candidate_answers is None or _is_candidate_list(candidate_answers):
            candidate_list = [candidate_answers] * count
        else:
            candidate_list = _per_input(candidate_answers, count, "candidate_answers", _is_candidate_list)

        records = []
        for index, item in enumerate(items):
            if isinstance(item, dict):
                extra = set(item) - _INPUT_KEYS
                if "video" not in item or extra:
                    raise ValueError(
                        f"Input dicts need a 'video' key and may have {sorted(_INPUT_KEYS - {'video'})}; got keys "
                        f"{sorted(item)}."
                    )
                record = {"video": item["video"], "question": item.get("question", questions[index])}
                record["subtitles"] = item.get("subtitles", subtitle_list[index])
                record["candidate_answers"] = item.get("candidate_answers", candidate_list[index])
            else:
                record = {
                    "video": item,
                    "question": questions[index],
                    "subtitles": subtitle_list[index],
                    "candidate_answers": candidate_list[index],
                }
            records.append(record)
        if batched:
            return super().__call__(records, **kwargs)
        return super().__call__(records[0], **kwargs)

    # ------------------------------------------------------------------ steps

    def preprocess(self, record, defaults=None, **video_kwargs):
        defaults = defaults or {}
        question = record["question"] if record["question"] is not None else defaults.get("question")
        question = _check_question(question, None)
        subtitles = record["subtitles"] if record["subtitles"] is not None else defaults.get("subtitles")
        candidates = record["candidate_answers"]
        if candidates is None:
            candidates = defaults.get("candidate_answers")
        if candidates is not None and not _is_candidate_list(candidates):
            raise ValueError(
                f"candidate_answers must be a non-empty list of strings (leave it out for open-ended answers); got "
                f"{candidates!r}."
            )
        encoded = self.processor(
            videos=[record["video"]],
            text=[question],
            subtitles=None if subtitles is None else [subtitles],
            choices=None if candidates is None else [list(candidates)],
            return_tensors="pt",
            **video_kwargs,
        )
        model_inputs = {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "pixel_values_videos": encoded["pixel_values_videos"],
            "video_frame_mask": encoded["video_frame_mask"],
        }
        if candidates is not None:
            # a fixed answer width, so the default batch collation only pads the candidate axis (fixed in _forward)
            labels = encoded["choice_labels"]
            width = max(int(self.processor.max_answer_length), labels.shape[-1])
            padded = torch.full((1, labels.shape[1], width), _IGNORE_INDEX, dtype=labels.dtype)
            padded[..., : labels.shape[-1]] = labels
            model_inputs["choice_labels"] = padded
            model_inputs["num_candidates"] = torch.tensor([len(candidates)])
            model_inputs["candidates"] = list(candidates)
        return model_inputs

    def _forward(self, model_inputs, top_k=None, **generate_kwargs):
        inputs = {
            key: model_inputs[key]
            for key in ("input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask")
        }
        if "choice_labels" in model_inputs:
            labels = model_inputs["choice_labels"].clone()
            counts = model_inputs["num_candidates"].reshape(-1)
            missing = torch.arange(labels.shape[1], device=labels.device)[None, :] >= counts[:, None]
            labels[missing] = _IGNORE_INDEX  # batch collation pads absent candidates with 0, a real token id
            scores = self.model.score_choices(**inputs, choice_labels=labels)
            return {"choice_scores": scores, "candidates": model_inputs["candidates"]}

        top_k = top_k or 1
        num_beams = generate_kwargs.pop("num_beams", None)
        if num_beams is None:
            num_beams = getattr(self.model.generation_config, "num_beams", None) or 1
        overrides = {
            "num_beams": max(top_k, num_beams),
            "num_return_sequences": top_k,
            "output_scores": True,
            "return_dict_in_generate": True,
        }
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs, **overrides)
        output = self.model.generate(**inputs, **generate_kwargs)
        sequences = output.sequences
        if getattr(output, "sequences_scores", None) is not None:
            log_scores = output.sequences_scores
        else:
            log_scores = self._mean_log_prob(sequences, output.scores)
        batch = inputs["input_ids"].shape[0]
        return {
            "answer_scores": log_scores.reshape(batch, top_k).float(),
            "sequences": sequences.reshape(batch, top_k, -1),
        }

    def _mean_log_prob(self, sequences: torch.Tensor, step_scores) -> torch.Tensor:
        """Mean log-probability per generated token up to and including the first eos (greedy/sampling)."""
        transition = self.model.compute_transition_scores(sequences, step_scores, normalize_logits=True)
        generated = sequences[:, -transition.shape[1] :]
        eos = self.model.generation_config.eos_token_id
        eos_ids = torch.tensor(eos if isinstance(eos, (list, tuple)) else [eos], device=generated.device)
        is_eos = torch.isin(generated, eos_ids).long()
        after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0
        valid = ~after_eos & torch.isfinite(transition)
        total = (transition.float() * valid).sum(dim=1)
        return total / valid.sum(dim=1).clamp_min(1)

    def postprocess(self, model_outputs, top_k=None):
        if "choice_scores" in model_outputs:
            candidates = model_outputs["candidates"]
            scores = model_outputs["choice_scores"].reshape(-1)[: len(candidates)].float().softmax(dim=0)
            ranked = sorted(zip(candidates, scores.tolist()), key=lambda pair: -pair[1])
            results = [{"answer": answer, "score": score} for answer, score in ranked]
            return results if top_k is None else results[:top_k]
        sequences = model_outputs["sequences"].reshape(-1, model_outputs["sequences"].shape[-1])
        answers = self.processor.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        scores = model_outputs["answer_scores"].reshape(-1).exp().tolist()
        ranked = sorted(zip(answers, scores), key=lambda pair: -pair[1])
        return [{"answer": answer.strip(), "score": score} for answer, score in ranked]


def register_pipeline() -> None:
    """Register the `"video-question-answering"` task with `pipeline()`; safe to call again."""
    current = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if current is not None and current.get("impl") is VideoQuestionAnsweringPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=VideoQuestionAnsweringPipeline, pt_model=AutoModelForSeq2SeqLM, type="multimodal"
    )


__all__ = ["VideoQuestionAnsweringPipeline", "register_pipeline", "TASK"]
