"""Configuration of MCG: an intra-video module (TimeSformer), an intra-question module (BERT), a cross-modal fusor and
an answer generator (BERT decoder with cross-attention), plus the contrastive heads used in pre-training.

The composite config keeps three sub-configs: `vision_config`, `question_config` and `decoder`. The decoder's is
named `decoder` on purpose: `generate()` sizes its cache from `config.get_text_config(decoder=True)`, which looks
for an attribute named `decoder`/`generator`/`text_config` and must find exactly one.

Special token ids live on the top-level config (the single source of truth) and are copied into the sub-configs.
"""

from transformers import PreTrainedConfig

VISION_ATTENTION_TYPES = ("divided_space_time",)
TEMPORAL_POOLING_TYPES = ("mean", "none")
MOTION_INPUTS = ("none", "frame_difference", "frame_difference_tokens")
PATCH_EMBEDDING_TYPES = ("linear", "conv_stem")
TEMPORAL_INTERPOLATION_MODES = ("nearest", "linear")
TEMPORAL_EMBEDDING_INITS = ("normal", "sinusoidal")
FUSION_TYPES = ("cross", "concat")


def _check_choice(config_name: str, field: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{config_name}.{field} must be one of {list(allowed)}, got {value!r}.")


def _check_positive(config_name: str, **fields) -> None:
    for field, value in fields.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{config_name}.{field} must be a positive integer, got {value!r}.")


def _check_heads(config_name: str, hidden_size: int, num_attention_heads: int) -> None:
    if hidden_size % num_attention_heads != 0:
        raise ValueError(
            f"{config_name}.hidden_size ({hidden_size}) must be divisible by num_attention_heads "
            f"({num_attention_heads}); pick a head count that divides it."
        )


def _check_probability(config_name: str, **fields) -> None:
    for field, value in fields.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{config_name}.{field} must be in [0, 1), got {value!r}.")


class MCGVisionConfig(PreTrainedConfig):
    r"""
    Intra-video module (IVM): a TimeSformer with divided space-time attention.

    Args:
        image_size (`int`, defaults to 224): input frame height and width (frames are square after the processor's crop).
        patch_size (`int`, defaults to 16): side of the square patches; `image_size` must be a multiple of it.
        num_channels (`int`, defaults to 3): input channels.
        num_frames (`int`, defaults to 8): frames the temporal embedding is stored for. Any frame count works at run
            time: the temporal embedding is interpolated (`temporal_embedding_interpolation`).
        hidden_size (`int`, defaults to 768), num_hidden_layers (`int`, defaults to 12),
        num_attention_heads (`int`, defaults to 12), intermediate_size (`int`, defaults to 3072): transformer sizes.
        hidden_act (`str`, defaults to `"gelu"`): MLP activation.
        attention_type (`str`, defaults to `"divided_space_time"`): `"divided_space_time"` (temporal attention over
            frames at each patch location, then spatial attention within each frame), the only kind implemented.
        temporal_pooling (`str`, defaults to `"mean"`): `"mean"` returns `[CLS; mean over frames of the patches]`,
            `(b, 1 + n, d)` as in the official code; `"none"` keeps every token, `(b, 1 + t * n, d)`, for
            fine-grained fusion over long videos.
        temporal_embedding_interpolation (`str`, defaults to `"nearest"`): how the temporal embedding is resized when
            the clip has a different frame count (`"nearest"` as the official code, or `"linear"`).
        temporal_embedding_init_std (`float`, defaults to 0.0): std of the temporal embedding at initialisation. 0
            (the official init) leaves an image-pretrained encoder unchanged at the first step, the right choice for
            warm starts; a model trained from scratch only learns frame order reliably from a clearly non-zero start
            (the tiny preset uses 2.0: started at 0.0, a tiny model answers first/last-object questions about half as
            well; `benchmarks/README.md`, medium ablation table, row `temporal_init=0`).
        temporal_embedding_init (`str`, defaults to `"normal"`): the start of a non-zero temporal embedding.
            `"normal"` draws each frame's vector at random; `"sinusoidal"` sets it to sines and cosines of the frame
            index at frequencies from half a cycle over the clip to one cycle every two frames (the lowest
            frequency's cosine falls monotonically from the first frame to the last, so "which came first" starts as
            a linear read-out), scaled to
            `temporal_embedding_init_std`. Either way it is trained afterwards; it does nothing when the std is 0.
            The tiny preset uses `"sinusoidal"`: over 5 seeds order questions 0.800 ± 0.037 against 0.768 ± 0.041
            from a random start, and 0.873 ± 0.036 overall against 0.855 ± 0.012 (`benchmarks/README.md`, order
            table, row `temporal_init=sinusoidal`).
        motion_input (`str`, defaults to `"none"`): `"none"` is the paper's (and TimeSformer's) encoder, which
            official and TimeSformer checkpoints load into unchanged. The other two add each patch's change since the
            previous sampled frame, so a moving edge shows as a signed pattern inside one token, where frame content
            alone has to be compared across patches and frames by attention. `"frame_difference"` with the linear
            patch embedding adds the change's own patch projection (`motion_embedding`) to the tokens, and with
            `patch_embedding_type="conv_stem"` feeds the change to the stem as `num_channels` more input channels.
            `"frame_difference_tokens"` always gives the change its own projection, so behind the stem the stem sees
            the frames alone. With the linear patch embedding the frame difference is what makes direction of
            motion learnable for a small model trained from scratch (0.40 to 0.91, chance 0.25; the ablation's
            demo-size table). Behind the stem, frames alone learn it in some runs and not others (direction 0.34 to
            0.86 over 12 runs), and the difference fed to the stem costs shape (0.728 against 0.931). The tiny preset
            uses `"frame_difference_tokens"`: over 5 seeds 0.855 ± 0.012 with direction 0.910 ± 0.030, against
            0.850 ± 0.055 and direction 0.712 ± 0.134 for frames alone on the same VM, though shape, first and last
            are 0.06-0.08 lower and a CPU training step about 6% slower (`benchmarks/README.md`, frames-only demo
            table, rows `motion=frame_difference_tokens` and `default`).
        patch_embedding_type (`str`, defaults to `"linear"`): `"linear"` is the paper's (and ViT's) patch embedding,
            one `patch_size`-strided convolution. `"conv_stem"` puts a small convolutional stem in front of it (as in
            "Early Convolutions Help Transformers See Better", Xiao et al. 2021): 3x3 stride-2 convolutions with ReLU,
            `conv_stem_width` channels doubling at each, until the remaining stride is 2 or odd; the patch embedding
            then projects those features with that stride. Each token is thus built from overlapping,
            translation-equivariant local features instead of one linear map of its own pixels, which a small model
            trained from scratch learns shapes from faster. `patch_size` must be a multiple of 4. Official and
            TimeSformer checkpoints need `"linear"`. The tiny preset uses `"conv_stem"`: at the demo's 16 epochs
            (both with the frame-difference input) it gave 0.827 ± 0.017 over 5 seeds against 0.818 ± 0.012 for the
            linear embedding, within the spread (`benchmarks/README.md`, the ablation's demo-size table, rows
            `stem=conv` and `image=32,patch=8`), and 0.873 against 0.823 in `make demo`; the preset now gives the
            change its own tokens instead (`motion_input`). On a CPU it makes a training step about 1.2x slower.
        conv_stem_width (`int`, defaults to 32): channels of the stem's first convolution. Keep it at least the 4 x
            input channels that each of its stride-2 outputs condenses (2x2 pixels): with 6 input channels (frame and
            change), 16 trained worse than the linear patch embedding (benchmarks/README.md).
        layer_norm_eps (`float`, defaults to 1e-6), qkv_bias (`bool`, defaults to `True`).
        hidden_dropout_prob (`float`, defaults to 0.0), attention_probs_dropout_prob (`float`, defaults to 0.0).
        drop_path_rate (`float`, defaults to 0.1): stochastic depth, rising linearly from 0 over the blocks.
        initializer_range (`float`, defaults to 0.02).

    Example:

    ```python
    >>> from modeling_mcg import MCGVisionConfig
    >>> MCGVisionConfig(image_size=32, patch_size=8, hidden_size=32, num_frames=4).num_patches
    16
    ```"""

    model_type = "mcg_vision"
    base_config_key = "vision_config"

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    num_frames: int = 8
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    attention_type: str = "divided_space_time"
    temporal_pooling: str = "mean"
    temporal_embedding_interpolation: str = "nearest"
    temporal_embedding_init_std: float = 0.0
    temporal_embedding_init: str = "normal"
    motion_input: str = "none"
    patch_embedding_type: str = "linear"
    conv_stem_width: int = 32
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.1
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        name = type(self).__name__
        _check_positive(
            name,
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            num_frames=self.num_frames,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            conv_stem_width=self.conv_stem_width,
        )
        _check_heads(name, self.hidden_size, self.num_attention_heads)
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"{name}.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})."
            )
        _check_choice(name, "attention_type", self.attention_type, VISION_ATTENTION_TYPES)
        _check_choice(name, "temporal_pooling", self.temporal_pooling, TEMPORAL_POOLING_TYPES)
        _check_choice(
            name,
            "temporal_embedding_interpolation",
            self.temporal_embedding_interpolation,
            TEMPORAL_INTERPOLATION_MODES,
        )
        _check_choice(name, "temporal_embedding_init", self.temporal_embedding_init, TEMPORAL_EMBEDDING_INITS)
        _check_choice(name, "motion_input", self.motion_input, MOTION_INPUTS)
        _check_choice(name, "patch_embedding_type", self.patch_embedding_type, PATCH_EMBEDDING_TYPES)
        if self.patch_embedding_type == "conv_stem" and self.patch_size % 4 != 0:
            raise ValueError(
                f"{name}.patch_embedding_type='conv_stem' needs a patch_size that is a multiple of 4 (its stride-2 "
                f"convolutions must leave a whole stride for the patch embedding), got {self.patch_size}; use "
                "patch_embedding_type='linear' or a patch_size such as 8, 12 or 16."
            )
        _check_probability(
            name,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            drop_path_rate=self.drop_path_rate,
        )
        if self.temporal_embedding_init_std < 0:
            raise ValueError(
                f"{name}.temporal_embedding_init_std must be >= 0, got {self.temporal_embedding_init_std}."
            )

    @property
    def num_patches(self) -> int:
        """Patches per frame, `n` in the shape comments."""
        return (self.image_size // self.patch_size) ** 2


class MCGTextConfig(PreTrainedConfig):
    r"""
    A BERT-style transformer (post-norm, absolute positions, no token types, as BLIP's "MED" BERT so its weights load).
    Used for the intra-question module (`MCGQuestionConfig`) and the answer generator (`MCGDecoderConfig`).

    Args:
        vocab_size (`int`, defaults to 30524): bert-base-uncased's 30522 WordPiece tokens + `[DEC]` + `[ENC]`.
        hidden_size (`int`, defaults to 768), num_hidden_layers (`int`, defaults to 12),
        num_attention_heads (`int`, defaults to 12), intermediate_size (`int`, defaults to 3072): transformer sizes.
        hidden_act (`str`, defaults to `"gelu"`).
        hidden_dropout_prob (`float`, defaults to 0.1), attention_probs_dropout_prob (`float`, defaults to 0.1).
        max_position_embeddings (`int`, defaults to 512), layer_norm_eps (`float`, defaults to 1e-12).
        initializer_range (`float`, defaults to 0.02).
        pad_token_id, bos_token_id, eos_token_id, decoder_start_token_id (`int`): copied from `MCGConfig`, which
            owns them.
    """

    model_type = "mcg_text"

    vocab_size: int = 30524
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        name = type(self).__name__
        _check_positive(
            name,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
        )
        _check_heads(name, self.hidden_size, self.num_attention_heads)
        _check_probability(
            name,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
        )


class MCGQuestionConfig(MCGTextConfig):
    """Intra-question module (IQM): a bidirectional BERT encoder over `[ENC] question [SEP] (subtitles [SEP])`."""

    model_type = "mcg_question"
    base_config_key = "question_config"


class MCGDecoderConfig(MCGTextConfig):
    """Answer generator: causal self-attention → cross-attention to the fused evidence → FFN, LM head tied to its
    input embeddings.

    Args:
        use_cache (`bool`, defaults to `True`): keep the self-attention keys/values (and the cross-attention ones,
            computed once) between decoding steps when `forward` is called without `labels` outside training.
    """

    model_type = "mcg_decoder"
    base_config_key = "decoder"

    use_cache: bool = True


class MCGConfig(PreTrainedConfig):
    r"""
    Configuration of an MCG model ([`MCGModel`], [`MCGForVideoQuestionAnswering`], [`MCGForPreTraining`]).

    Args:
        vision_config (`dict` or [`MCGVisionConfig`]): the intra-video module.
        question_config (`dict` or [`MCGQuestionConfig`]): the intra-question module.
        decoder (`dict` or [`MCGDecoderConfig`]): the answer generator.
        fusion_type (`str`, defaults to `"cross"`): the cross-modal fusor. `"cross"` (the paper's figure):
            `num_fusion_layers` blocks of self-attention over the question → cross-attention to the video tokens →
            FFN. `"concat"` (the official code, for imported checkpoints): `[question; video]` is re-encoded by the
            question encoder's own layers with bidirectional self-attention (requires equal vision and question
            hidden sizes).
        num_fusion_layers (`int`, defaults to 2): fusor depth for `fusion_type="cross"`.
        projection_dim (`int`, defaults to 256): size of the shared contrastive space.
        temperature_init (`float`, defaults to 0.07): initial learnable ICL temperature, clamped to
            [`temperature_min`, `temperature_max`] = [0.001, 0.5] at every forward.
        tcl_temperature (`float`, defaults to 0.1): fixed temperature of the token-level contrast.
        icl_loss_weight (`float`, defaults to 0.0), tcl_loss_weight (`float`, defaults to 0.0): weights of the
            auxiliary instance/token contrastive losses. [`MCGForVideoQuestionAnswering`] adds them to the LM loss on
            (video, question + answer) pairs when > 0; [`MCGForPreTraining`] uses them as the loss weights.
        mlm_loss_weight (`float`, defaults to 1.0), vtm_loss_weight (`float`, defaults to 0.0): pre-training weights
            of masked language modelling and video–text matching (VTM off by default, as in the official code).
        mlm_probability (`float`, defaults to 0.15): fraction of caption tokens masked for MLM (80/10/10).
        label_smoothing (`float`, defaults to 0.1): smoothing of the answer cross-entropy.
        pad_token_id, bos_token_id, eos_token_id, decoder_start_token_id, enc_token_id, mask_token_id (`int`):
            special tokens; must match the processor's tokenizer. Left unset they follow bert-base-uncased grown by
            `[DEC]` and `[ENC]`, sized to the vocabulary v: `[PAD]` 0, `[SEP]` 102, `[MASK]` 103, `[DEC]` v - 2
            (also the decoder start), `[ENC]` v - 1 (30522 and 30523 for the default 30524 words). A vocabulary too
            small for BERT's ids (a test config) gets `[SEP]` 2 and `[MASK]` 3 instead, so every default is valid.
        initializer_range (`float`, defaults to 0.02).

    Example:

    ```python
    >>> from modeling_mcg import MCGConfig, MCGForVideoQuestionAnswering
    >>> config = MCGConfig.from_json_file("hub_configs/mcg-tiny.json")
    >>> model = MCGForVideoQuestionAnswering(config)
    >>> config.get_text_config(decoder=True) is config.decoder
    True
    ```"""

    model_type = "mcg"
    sub_configs_defaults = {
        "vision_config": MCGVisionConfig,
        "question_config": MCGQuestionConfig,
        "decoder": MCGDecoderConfig,
    }

    vision_config: dict | PreTrainedConfig | None = None
    question_config: dict | PreTrainedConfig | None = None
    decoder: dict | PreTrainedConfig | None = None
    fusion_type: str = "cross"
    num_fusion_layers: int = 2
    projection_dim: int = 256
    temperature_init: float = 0.07
    temperature_min: float = 0.001
    temperature_max: float = 0.5
    tcl_temperature: float = 0.1
    icl_loss_weight: float = 0.0
    tcl_loss_weight: float = 0.0
    mlm_loss_weight: float = 1.0
    vtm_loss_weight: float = 0.0
    mlm_probability: float = 0.15
    label_smoothing: float = 0.1
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    enc_token_id: int | None = None
    mask_token_id: int | None = None
    initializer_range: float = 0.02
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        name = type(self).__name__
        _check_choice(name, "fusion_type", self.fusion_type, FUSION_TYPES)
        _check_positive(name, num_fusion_layers=self.num_fusion_layers, projection_dim=self.projection_dim)
        if not 0 < self.temperature_min <= self.temperature_init <= self.temperature_max:
            raise ValueError(
                f"{name} needs 0 < temperature_min <= temperature_init <= temperature_max, got "
                f"{self.temperature_min}, {self.temperature_init}, {self.temperature_max}."
            )
        if self.tcl_temperature <= 0:
            raise ValueError(f"{name}.tcl_temperature must be > 0, got {self.tcl_temperature}.")
        for field in ("icl_loss_weight", "tcl_loss_weight", "mlm_loss_weight", "vtm_loss_weight"):
            if getattr(self, field) < 0:
                raise ValueError(f"{name}.{field} must be >= 0, got {getattr(self, field)}.")
        _check_probability(name, label_smoothing=self.label_smoothing)
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"{name}.mlm_probability must be in (0, 1), got {self.mlm_probability}.")
        if self.question_config.vocab_size != self.decoder.vocab_size:
            raise ValueError(
                f"{name}: question_config.vocab_size ({self.question_config.vocab_size}) and decoder.vocab_size "
                f"({self.decoder.vocab_size}) must be equal: the question encoder and the answer generator share "
                "one tokenizer."
            )
        if self.fusion_type == "concat" and self.vision_config.hidden_size != self.question_config.hidden_size:
            raise ValueError(
                f'{name}: fusion_type="concat" re-encodes [question; video] with the question encoder, so '
                f"vision_config.hidden_size ({self.vision_config.hidden_size}) must equal question_config.hidden_size "
                f'({self.question_config.hidden_size}); use fusion_type="cross" for different sizes.'
            )
        self._default_special_tokens()
        for field in (
            "pad_token_id",
            "bos_token_id",
            "eos_token_id",
            "decoder_start_token_id",
            "enc_token_id",
            "mask_token_id",
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or not 0 <= value < self.decoder.vocab_size:
                raise ValueError(
                    f"{name}.{field} must be a token id in [0, {self.decoder.vocab_size}), got {value!r}; it must "
                    "match the processor's tokenizer."
                )
        # one source of truth for special tokens: generate() reads them from the decoder sub-config
        for sub_config in (self.question_config, self.decoder):
            sub_config.pad_token_id = self.pad_token_id
            sub_config.bos_token_id = self.bos_token_id
            sub_config.eos_token_id = self.eos_token_id
            sub_config.decoder_start_token_id = self.decoder_start_token_id
        # A saved folder's `custom_pipelines` is for users without this package (remote code). Where the package is
        # imported, its registered "video-question-answering" pipeline serves the task, and keeping the entry would
        # make transformers' pipeline() ask for trust_remote_code; the remote-code copy of this file keeps it.
        if __name__ == "modeling_mcg.configuration_mcg":
            self.__dict__.pop("custom_pipelines", None)

    def _default_special_tokens(self) -> None:
        """Fill unset special token ids (see the class docstring); ids that were given are kept as they are."""
        vocab = self.decoder.vocab_size
        bert_sized = vocab > 105  # room for [SEP] 102, [MASK] 103, [DEC] and [ENC]
        defaults = {
            "pad_token_id": 0,
            "eos_token_id": 102 if bert_sized else 2,
            "mask_token_id": 103 if bert_sized else 3,
            "bos_token_id": vocab - 2,
            "enc_token_id": vocab - 1,
        }
        for field, value in defaults.items():
            if getattr(self, field) is None:
                setattr(self, field, value)
        if self.decoder_start_token_id is None:
            self.decoder_start_token_id = self.bos_token_id


__all__ = ["MCGConfig", "MCGVisionConfig", "MCGTextConfig", "MCGQuestionConfig", "MCGDecoderConfig"]
