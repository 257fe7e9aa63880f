"""MCG processor (video processor + BERT WordPiece tokenizer) and the tokenizer builders it relies on.

Token conventions (as in the official OpenMICG/mcg code and BLIP):

* questions are encoded as `[ENC] question [SEP]` (the encoder's first token is `[ENC]`, not `[CLS]`); with
  subtitles/context (TVQA) `[ENC] question [SEP] subtitles [SEP]`, where only the subtitles are truncated;
* answers are decoded starting from `[DEC]` (the bos / `decoder_start_token_id`) and end with `[SEP]` (eos). The
  processor's `labels` are the answer tokens followed by `[SEP]`, without `[DEC]`: the model shifts them right and
  inserts `[DEC]` itself. Padding in labels is -100.

Vocabularies:

* `mcg-base` uses bert-base-uncased's WordPiece vocabulary (30522 tokens) plus two special tokens, as BLIP/MCG do::

      tokenizer = BertTokenizerFast.from_pretrained("bert-base-uncased")
      add_mcg_special_tokens(tokenizer)  # [DEC] -> 30522 (bos), [ENC] -> 30523; len(tokenizer) == 30524

  `add_mcg_special_tokens` is `tokenizer.add_special_tokens({"bos_token": "[DEC]", "extra_special_tokens":
  ["[ENC]"]})` (`extra_special_tokens` is the transformers 5.x name of `additional_special_tokens`), so it works
  for any BERT tokenizer; `[PAD]` 0, `[SEP]` 102 and `[MASK]` 103 keep their BERT ids.
* Tiny models, tests and the synthetic data set use `build_wordpiece_tokenizer(words)`, which builds the same
  kind of tokenizer locally (no Hub) with `[PAD]`=0, `[UNK]`=1, `[CLS]`=2, `[SEP]`=3, `[MASK]`=4, `[DEC]`=5,
  `[ENC]`=6 and the words from id 7 on.
"""

import string
from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin, Unpack
from transformers.tokenization_utils_base import BatchEncoding, PreTrainedTokenizerBase

from .video_processing_mcg import MCGVideoProcessor, MCGVideoProcessorKwargs

ENC_TOKEN = "[ENC]"
DEC_TOKEN = "[DEC]"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", DEC_TOKEN, ENC_TOKEN)
IGNORE_INDEX = -100


def build_wordpiece_tokenizer(
    words: Iterable[str], *, lowercase: bool = True, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """Build a BERT-style WordPiece tokenizer from a word list, locally (tests, tiny models, synthetic data).

    Ids: `[PAD]`=0, `[UNK]`=1, `[CLS]`=2, `[SEP]`=3, `[MASK]`=4, `[DEC]`=5 (bos), `[ENC]`=6, then each distinct word
    in the given order, then every single character and its `##` continuation so that any word made of known
    characters (ASCII letters, digits, punctuation and the characters of `words`) tokenises without `[UNK]`.
    Entries are normalised and split like BERT input ("ice-cream" adds "ice", "-", "cream"); an entry starting with
    "##" is kept as a continuation piece. `[SEP]` is eos; plain `tokenizer(text)` adds `[CLS] ... [SEP]` like BERT.
    """
    if isinstance(words, str):
        raise TypeError("words must be an iterable of words (e.g. a list of strings), not a single string.")
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    chars = set(string.ascii_lowercase + string.digits + string.punctuation)
    if not lowercase:
        chars.update(string.ascii_uppercase)
    for position, word in enumerate(words):
        if not isinstance(word, str):
            raise TypeError(f"words[{position}] is a {type(word).__name__}; every entry must be a string.")
        if word.startswith("##") and len(word) > 2:
            piece = normalizer.normalize_str(word[2:])
            vocab.setdefault("##" + piece, len(vocab))
            chars.update(piece)
            continue
        for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(word)):
            vocab.setdefault(piece, len(vocab))
            chars.update(piece)
    for char in sorted(chars):
        vocab.setdefault(char, len(vocab))
    for char in sorted(chars):
        vocab.setdefault("##" + char, len(vocab))

    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token=DEC_TOKEN,
        eos_token="[SEP]",
        extra_special_tokens=[ENC_TOKEN],
        model_max_length=model_max_length,
        padding_side="right",
    )


def add_mcg_special_tokens(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Add `[DEC]` (bos) and then `[ENC]` to a BERT tokenizer in place, as MCG/BLIP do; idempotent.

    On bert-base-uncased this gives `[DEC]`=30522 and `[ENC]`=30523 (vocabulary 30524). `[SEP]` becomes the eos token
    when the tokenizer has none. Existing extra special tokens are kept. Returns the tokenizer. Remember to resize
    the model's embeddings when the vocabulary grew.
    """
    tokenizer.add_special_tokens({"bos_token": DEC_TOKEN}, replace_extra_special_tokens=False)
    tokenizer.add_special_tokens({"extra_special_tokens": [ENC_TOKEN]}, replace_extra_special_tokens=False)
    if tokenizer.eos_token is None and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token
    return tokenizer


def _as_string_list(value: Any, name: str) -> list[str]:
    """A str is one item, a list/tuple of str a batch."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        if len(value) == 0:
            raise ValueError(f"{name} is an empty list; pass at least one string.")
        return list(value)
    raise TypeError(f"{name} must be a string or a list of strings; got {type(value).__name__}.")


class MCGProcessorKwargs(ProcessingKwargs, total=False):
    """`MCGProcessor.__call__` options, as in transformers: flat (`padding="max_length"`, `num_frames=16`) or by
    modality (`text_kwargs={...}`, `videos_kwargs={...}`, `common_kwargs={"return_tensors": "np"}`)."""

    videos_kwargs: MCGVideoProcessorKwargs


# The text options the question encoding honours; the others (pairs, offsets, overflow, ...) have no meaning for
# `[ENC] question [SEP]` and are refused rather than ignored.
_TEXT_OPTIONS = ("padding", "truncation", "max_length", "pad_to_multiple_of", "padding_side", "return_attention_mask")
_MODALITY_DICTS = ("text_kwargs", "videos_kwargs", "common_kwargs")


class MCGProcessor(ProcessorMixin):
    r"""
    Wraps an [`MCGVideoProcessor`] and a BERT WordPiece tokenizer (with `[DEC]`/`[ENC]`) into one processor.

    Args:
        video_processor ([`MCGVideoProcessor`], *optional*): defaults to `MCGVideoProcessor()`.
        tokenizer (`PreTrainedTokenizerBase`): must contain `[ENC]`, `[DEC]`, `[SEP]` and `[PAD]` (see
            `build_wordpiece_tokenizer` and `add_mcg_special_tokens`).
        max_question_length (`int`, defaults to 40): `[ENC] question [SEP]` is truncated to this many tokens.
        max_answer_length (`int`, defaults to 32): answer tokens + `[SEP]` in `labels` / `choice_labels`.
        max_subtitle_length (`int`, defaults to 256): total budget of `[ENC] question [SEP] subtitles [SEP]`;
            only the subtitles are truncated to fit.

    Example:

    ```python
    >>> import numpy as np
    >>> processor = MCGProcessor.from_vocabulary(["what", "is", "the", "man", "doing", "cooking"])
    >>> video = np.zeros((30, 120, 160, 3), dtype=np.uint8)  # (t, h, w, c)
    >>> batch = processor(videos=video, text="what is the man doing?", answers="cooking")
    >>> sorted(batch.keys())
    ['attention_mask', 'input_ids', 'labels', 'pixel_values_videos', 'video_frame_mask']
    ```
    """

    enc_token = ENC_TOKEN
    dec_token = DEC_TOKEN
    valid_processor_kwargs = MCGProcessorKwargs
    # defaults of the call options (transformers' `_merge_kwargs` reads them per modality)
    text_kwargs = {"padding": "longest", "return_tensors": "pt"}
    videos_kwargs = {"return_tensors": "pt"}

    def __init__(
        self,
        video_processor=None,
        tokenizer=None,
        max_question_length: int = 40,
        max_answer_length: int = 32,
        max_subtitle_length: int = 256,
        **kwargs,
    ):
        if video_processor is None:
            video_processor = MCGVideoProcessor()
        if tokenizer is None:
            raise ValueError(
                "MCGProcessor needs a tokenizer: build one with build_wordpiece_tokenizer(words), or load a BERT "
                "tokenizer and call add_mcg_special_tokens(tokenizer)."
            )
        for name, value, minimum in (
            ("max_question_length", max_question_length, 3),
            ("max_answer_length", max_answer_length, 2),
            ("max_subtitle_length", max_subtitle_length, max_question_length + 2),
        ):
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum} (room for the special tokens); got {value}.")
        self.max_question_length = max_question_length
        self.max_answer_length = max_answer_length
        self.max_subtitle_length = max_subtitle_length
        super().__init__(video_processor, tokenizer, **kwargs)

        vocab = self.tokenizer.get_vocab()
        missing = [token for token in (ENC_TOKEN, DEC_TOKEN) if token not in vocab]
        if missing:
            raise ValueError(
                f"The tokenizer lacks {missing}; call add_mcg_special_tokens(tokenizer) (and resize the model's "
                "embeddings) or build it with build_wordpiece_tokenizer."
            )
        if self.tokenizer.sep_token_id is None or self.tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer needs a sep_token ([SEP], the eos) and a pad_token ([PAD]).")

    # ------------------------------------------------------------------ construction / loading

    @classmethod
    def from_vocabulary(
        cls,
        words: Iterable[str],
        video_processor: MCGVideoProcessor | None = None,
        *,
        lowercase: bool = True,
        **kwargs,
    ) -> "MCGProcessor":
        """A processor with a local WordPiece tokenizer built from `words` (see `build_wordpiece_tokenizer`)."""
        return cls(
            video_processor=video_processor, tokenizer=build_wordpiece_tokenizer(words, lowercase=lowercase), **kwargs
        )

    def check_argument_for_proper_class(self, argument_name, argument):
        """Check the video processor without `VIDEO_PROCESSOR_MAPPING`, which is a dummy without torchvision."""
        if argument_name == "video_processor":
            from transformers.video_processing_utils import VideoProcessorMixin

            if not isinstance(argument, VideoProcessorMixin):
                raise TypeError(
                    f"video_processor must be a video processor (e.g. MCGVideoProcessor), got {type(argument).__name__}."
                )
            return VideoProcessorMixin
        return super().check_argument_for_proper_class(argument_name, argument)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """Load the video processor directly: `AutoVideoProcessor` needs torchvision unless MCG is registered."""
        kwargs.pop("subfolder", None)
        trust_remote_code = kwargs.pop("trust_remote_code", None)
        video_processor = MCGVideoProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(
            pretrained_model_name_or_path, trust_remote_code=trust_remote_code, **kwargs
        )
        return [video_processor, tokenizer]

    # ------------------------------------------------------------------ token ids

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def eos_token_id(self) -> int:
        """`[SEP]` ends every answer."""
        return self.tokenizer.sep_token_id

    @property
    def decoder_start_token_id(self) -> int:
        """`[DEC]` starts every answer (bos)."""
        return self.tokenizer.convert_tokens_to_ids(DEC_TOKEN)

    @property
    def bos_token_id(self) -> int:
        return self.decoder_start_token_id

    @property
    def enc_token_id(self) -> int:
        """`[ENC]` replaces `[CLS]` at position 0 of every question."""
        return self.tokenizer.convert_tokens_to_ids(ENC_TOKEN)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask"]

    # ------------------------------------------------------------------ encoding

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        encoded = self.tokenizer(
            texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False
        )
        return encoded["input_ids"]

    def _answer_ids(self, token_ids: list[int]) -> list[int]:
        return token_ids[: self.max_answer_length - 1] + [self.eos_token_id]

    def encode_questions(
        self,
        questions: list[str],
        subtitles: list[str | None] | None = None,
        max_length: int | None = None,
        truncation: bool = True,
    ) -> list[list[int]]:
        """`[ENC] question [SEP]` (+ `subtitles [SEP]`), unpadded. The question is cut to `max_question_length`, or
        without subtitles to `max_length` when that is given; subtitles fill what is left of `max_length` (default
        `max_subtitle_length`). With `truncation=False` a sequence that would be cut raises instead."""
        sep = self.eos_token_id
        total_budget = self._sequence_length_limit(subtitles, max_length)
        question_budget = total_budget
        if subtitles is not None:  # the question keeps its own cap, and the subtitles' closing [SEP] must fit
            question_budget = min(self.max_question_length, total_budget - 1)
        if question_budget < 3:
            raise ValueError(
                f"max_length={max_length} leaves no room for a question word between [ENC] and [SEP] (and, with "
                "subtitles, their closing [SEP]); use at least 3 (4 with subtitles)."
            )
        question_ids = self._tokenize(questions)
        subtitle_ids = [None] * len(questions)
        if subtitles is not None:
            present = [i for i, sub in enumerate(subtitles) if sub is not None and sub.strip()]
            for i, ids in zip(present, self._tokenize([subtitles[i] for i in present])):
                subtitle_ids[i] = ids
        sequences = []
        for index, (ids, sub_ids) in enumerate(zip(question_ids, subtitle_ids)):
            sequence = [self.enc_token_id] + ids[: question_budget - 2] + [sep]
            untruncated = len(ids) + 2
            if sub_ids is not None:
                sequence = sequence + sub_ids[: max(total_budget - len(sequence) - 1, 0)] + [sep]
                untruncated += len(sub_ids) + 1
            if not truncation and untruncated > len(sequence):
                raise ValueError(
                    f"text[{index}] takes {untruncated} tokens with its special tokens (and subtitles), more than "
                    f"{question_budget if sub_ids is None else total_budget}; raise max_length or allow truncation."
                )
            sequences.append(sequence)
        return sequences

    def _sequence_length_limit(self, subtitles, max_length: int | None) -> int:
        """The longest `[ENC] question [SEP]` (+ `subtitles [SEP]`) may be: `max_length`, or the configured maximum."""
        if max_length is not None:
            return max_length
        return self.max_subtitle_length if subtitles is not None else self.max_question_length

    @staticmethod
    def _pad(sequences: list[list[int]], length: int | None, value: int, side: str = "right") -> list[list[int]]:
        if length is None:  # padding=False
            return [list(sequence) for sequence in sequences]
        if side == "left":
            return [[value] * (length - len(sequence)) + sequence for sequence in sequences]
        return [sequence + [value] * (length - len(sequence)) for sequence in sequences]

    @staticmethod
    def _padded_length(sequences: list[list[int]], max_length: int, options: dict) -> int | None:
        """The length `options["padding"]` pads to (None: no padding), rounded up to `pad_to_multiple_of`."""
        if options["padding"] == "do_not_pad":
            return None
        length = max_length if options["padding"] == "max_length" else max(len(s) for s in sequences)
        multiple = options.get("pad_to_multiple_of")
        return -(-length // multiple) * multiple if multiple else length

    def _encode_question_batch(self, questions, subtitles, options: dict) -> dict[str, list[list[int]]]:
        max_length = options.get("max_length")
        sequences = self.encode_questions(questions, subtitles, max_length, options["truncation"])
        length = self._padded_length(sequences, self._sequence_length_limit(subtitles, max_length), options)
        side = options["padding_side"]
        encoded = {"input_ids": self._pad(sequences, length, self.pad_token_id, side)}
        if options["return_attention_mask"]:
            encoded["attention_mask"] = self._pad([[1] * len(s) for s in sequences], length, 0, side)
        return encoded

    def _call_options(self, kwargs: dict) -> dict[str, dict]:
        """Merge the call options as transformers' processors do (processor defaults < the tokenizer's own settings
        < `common_kwargs` < `text_kwargs`/`videos_kwargs` < flat options), after refusing unknown options and text
        options that `[ENC] question [SEP]` cannot honour (silently ignoring them would give other inputs than asked
        for)."""
        text_keys = set(MCGProcessorKwargs.__annotations__["text_kwargs"].__annotations__)
        video_keys = set(self.video_processor.valid_kwargs.__annotations__)
        unknown = sorted(set(kwargs) - text_keys - video_keys - set(_MODALITY_DICTS))
        if unknown:
            raise TypeError(
                f"MCGProcessor got unexpected keyword argument(s) {unknown}; besides videos, text, answers, "
                "subtitles and choices it takes text options (padding, max_length, truncation, ...), video processor "
                "options (num_frames, sampling, do_augment, seed, ...), return_tensors, or those grouped in "
                "text_kwargs / videos_kwargs / common_kwargs."
            )
        asked = {key for key in kwargs if key in text_keys and key not in video_keys}
        asked |= set(kwargs.get("text_kwargs", {}))
        unsupported = sorted(asked - set(_TEXT_OPTIONS) - {"return_tensors"})
        if unsupported:
            raise TypeError(
                f"MCGProcessor does not support the text option(s) {unsupported}: questions are encoded as "
                f"[ENC] question [SEP] (+ subtitles [SEP]); the supported ones are {list(_TEXT_OPTIONS)}."
            )
        options = self._merge_kwargs(MCGProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        text = options["text_kwargs"]
        for name in ("max_length", "pad_to_multiple_of"):
            value = text.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer; got {value!r}.")
        padding = text.get("padding")
        padding = getattr(padding, "value", padding)  # PaddingStrategy
        padding = {True: "longest", False: "do_not_pad", None: "do_not_pad"}.get(padding, padding)
        if padding not in ("longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be 'longest' (or True), 'max_length' or False; got {padding!r}.")
        truncation = text.get("truncation")
        truncation = getattr(truncation, "value", truncation)  # TruncationStrategy
        if truncation not in (None, True, False, "longest_first", "only_first", "do_not_truncate"):
            raise ValueError(f"truncation={truncation!r} does not apply to single questions; use True or False.")
        side = text.get("padding_side") or "right"
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right'; got {side!r}.")
        text.update(
            padding=padding,
            truncation=truncation not in (False, "do_not_truncate"),
            padding_side=side,
            return_attention_mask=text.get("return_attention_mask") is not False,
        )
        return options

    def __call__(
        self,
        videos: Any = None,
        text: str | list[str] | None = None,
        answers: str | list[str] | None = None,
        subtitles: str | list[str | None] | None = None,
        choices: Sequence[str] | Sequence[Sequence[str]] | None = None,
        **kwargs: Unpack[MCGProcessorKwargs],
    ) -> BatchEncoding:
        """Prepare a batch of (video, question[, answer][, subtitles][, candidate answers]).

        Args:
            videos: anything `MCGVideoProcessor` takes (one video or a list).
            text: one question or a list of questions.
            answers: the answer(s) for teacher forcing -> `labels`.
            subtitles: per question a string (or None), appended after the question (TVQA).
            choices: per question a list of candidate answers -> `choice_labels`; for a single question a plain list
                of strings is accepted.
            kwargs: options, flat or by modality as in transformers (`text_kwargs`, `videos_kwargs`,
                `common_kwargs`). Video options (`num_frames`, `sampling`, `do_augment`, `seed`, ...) go to
                `MCGVideoProcessor`. Text options: `padding` (`"longest"`/`True`, the default; `"max_length"` for
                static shapes; `False` with `return_tensors=None` for unpadded lists), `max_length` (the length of
                `[ENC] question [SEP]`, with subtitles the whole sequence; defaults to `max_question_length` /
                `max_subtitle_length`), `truncation` (on by default; `False` raises on a longer question),
                `pad_to_multiple_of`, `padding_side` (`"right"` by default) and `return_attention_mask`. Answers
                are cut to `max_answer_length` and, with `padding="max_length"`, padded to it. `return_tensors`:
                `"pt"` (default), `"np"` or None.

        Returns:
            `BatchEncoding` with, depending on the inputs: `input_ids`, `attention_mask` (b, s) int64;
            `pixel_values_videos` (b, t, 3, H, W) float32, `video_frame_mask` (b, t) int64; `labels` (b, L) int64
            (answer tokens + `[SEP]`, -100 padding, no `[DEC]`); `choice_labels` (b, c_max, L) int64 formatted like
            `labels`, with all -100 rows for questions with fewer candidates.
        """
        if subtitles is not None and text is None:
            raise ValueError("subtitles were given without text; subtitles are appended to questions.")
        if videos is None and text is None and answers is None and choices is None:
            raise ValueError("Nothing to process: pass at least one of videos, text, answers or choices.")
        options = self._call_options(kwargs)
        text_options, video_options = options["text_kwargs"], options["videos_kwargs"]
        return_tensors = text_options.pop("return_tensors", None)

        counts = {}
        questions = subtitle_list = answer_list = choice_lists = video_list = None
        if text is not None:
            questions = _as_string_list(text, "text")
            for index, question in enumerate(questions):
                if not question.strip():
                    raise ValueError(f"text[{index}] is an empty question; every question needs some words.")
            counts["text"] = len(questions)
        if subtitles is not None:
            subtitle_list = [subtitles] if isinstance(subtitles, str) else list(subtitles)
            if not all(sub is None or isinstance(sub, str) for sub in subtitle_list):
                raise TypeError("subtitles must be a string or a list with one string (or None) per question.")
            counts["subtitles"] = len(subtitle_list)
        if answers is not None:
            answer_list = _as_string_list(answers, "answers")
            for index, answer in enumerate(answer_list):
                if not answer.strip():
                    raise ValueError(f"answers[{index}] is empty; an empty target would only teach the eos token.")
            counts["answers"] = len(answer_list)
        if choices is not None:
            choice_lists = self._normalize_choices(choices)
            counts["choices"] = len(choice_lists)
        if videos is not None:
            video_list = self.video_processor.batch_videos(videos)
            counts["videos"] = len(video_list)
        if len(set(counts.values())) > 1:
            described = ", ".join(f"{count} {name}" for name, count in counts.items())
            raise ValueError(f"Batch sizes differ: got {described}; pass one entry of each per question.")

        data = {}
        if questions is not None:
            data.update(self._encode_question_batch(questions, subtitle_list, text_options))
        if video_list is not None:
            data.update(self.video_processor(video_list, **video_options))
        if answer_list is not None:
            labels = [self._answer_ids(ids) for ids in self._tokenize(answer_list)]
            length = self._padded_length(labels, self.max_answer_length, text_options)
            data["labels"] = self._pad(labels, length, IGNORE_INDEX)
        if choice_lists is not None:
            flat = [self._answer_ids(ids) for ids in self._tokenize([c for cands in choice_lists for c in cands])]
            length = self._padded_length(flat, self.max_answer_length, text_options)
            max_choices = max(len(cands) for cands in choice_lists)
            rows, start = [], 0
            for cands in choice_lists:
                block = self._pad(flat[start : start + len(cands)], length, IGNORE_INDEX)
                block += [[IGNORE_INDEX] * length] * (max_choices - len(cands))
                rows.append(block)  # (c_max, L)
                start += len(cands)
            data["choice_labels"] = rows  # (b, c_max, L)
        return BatchEncoding(data=data, tensor_type=return_tensors)

    @staticmethod
    def _normalize_choices(choices: Any) -> list[list[str]]:
        """One list of candidate strings per question; a flat list of strings is a single question's candidates."""
        if isinstance(choices, str):
            raise TypeError("choices must be a list of candidate answers (per question), not a single string.")
        if not isinstance(choices, (list, tuple)) or len(choices) == 0:
            raise ValueError("choices must be a non-empty list: one list of candidate answers per question.")
        if all(isinstance(candidate, str) for candidate in choices):
            choices = [choices]
        normalized = []
        for index, candidates in enumerate(choices):
            if isinstance(candidates, str) or not isinstance(candidates, (list, tuple)):
                raise TypeError(
                    f"choices[{index}] is a {type(candidates).__name__}; pass a list of candidate strings per question."
                )
            if len(candidates) == 0:
                raise ValueError(f"choices[{index}] is an empty candidate list; each question needs >= 1 candidate.")
            for position, candidate in enumerate(candidates):
                if not isinstance(candidate, str) or not candidate.strip():
                    raise ValueError(f"choices[{index}][{position}] must be a non-empty string; got {candidate!r}.")
            normalized.append(list(candidates))
        return normalized


__all__ = ["MCGProcessor", "add_mcg_special_tokens", "build_wordpiece_tokenizer"]
