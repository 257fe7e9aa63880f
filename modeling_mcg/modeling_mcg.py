"""MCG: Multi-granularity Contrastive cross-modal collaborative Generation for end-to-end long-term video QA
(arXiv 2410.09379), as a transformers model.

Read top to bottom in forward order: attention → intra-video module (IVM, a divided space-time TimeSformer,
[`MCGVisionModel`]) → one BERT-style text stack ([`MCGTextModel`]) that serves as intra-question module (IQM), cross-modal
fusor and answer generator → the heads: [`MCGModel`] (fused evidence), [`MCGForVideoQuestionAnswering`] (generation,
multiple choice scoring), [`MCGForPreTraining`] (ICL + TCL + MLM, optional VTM). The loss arithmetic lives in
`losses.py`; this file only supplies the embeddings and attention maps the losses read.

Hidden states and attention maps are recorded by transformers' output capturing (`_can_record_outputs`), so
`output_hidden_states` / `output_attentions` / `return_dict` work from the call or from the config as in any
transformers model.

Dimension legend used in shape comments:
    b batch    t frames    n patches per frame    k video tokens    s text tokens    d hidden size
    h heads    e projection size    c answer candidates    v vocabulary
"""

import itertools
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, can_return_tuple, logging
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_mcg import MCGConfig
from .losses import (
    answer_loss,
    instance_contrastive_loss,
    mask_each_caption_for_mlm,
    mask_tokens_for_mlm,
    sample_hard_negatives,
    token_contrastive_loss,
    video_patch_weights,
    word_tokens_and_weights,
)

logger = logging.get_logger(__name__)

# Written into every saved config.json so the folder loads with `trust_remote_code=True` without this package;
# `register_for_auto_class` alone keeps only one Auto class per model class.
AUTO_MAP = {
    "AutoConfig": "configuration_mcg.MCGConfig",
    "AutoModel": "modeling_mcg.MCGModel",
    "AutoModelForSeq2SeqLM": "modeling_mcg.MCGForVideoQuestionAnswering",
    "AutoModelForPreTraining": "modeling_mcg.MCGForPreTraining",
}

# The official inference decodes with 3 beams and at most 10 new tokens; saved folders carry these defaults.
GENERATION_DEFAULTS = {"num_beams": 3, "max_new_tokens": 10}


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class MCGVideoOutput(ModelOutput):
    """
    Output of the IVM ([`MCGVisionModel`], [`MCGModel.encode_video`], [`MCGModel.get_video_features`]).

    Args:
        last_hidden_state (`(b, k, d)`): video tokens after the final norm; k = 1 + n with `temporal_pooling="mean"`
            ([CLS; frame-averaged patches]), k = 1 + t * n with `"none"` ([CLS; frame 0 patches; frame 1 ...]).
        pooler_output (`(b, e)`, *optional*): L2-normalised projection of the video [CLS] (ICL space); set by
            `get_video_features`.
        hidden_states (`tuple` of `(b, 1 + t * n, d)`, *optional*): the embeddings and every block's output.
        attentions (`tuple` of `(b * t, h, 1 + n, 1 + n)`, *optional*): every block's spatial attention.
        attention_mask (`(b, k)`): 1 for tokens of real frames, 0 for tokens of padded frames.
        cls_attention (`(b, t, h, n)`, *optional*): last block's spatial [CLS]→patch attention, the TCL patch
            weights; computed only when asked for with `return_cls_attention=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    attention_mask: torch.LongTensor | None = None
    cls_attention: torch.FloatTensor | None = None


@dataclass
class MCGTextOutput(ModelOutput):
    """
    Output of a text stack ([`MCGTextModel`]: question encoder, fusor or answer generator).

    Args:
        last_hidden_state (`(b, s, d)`): the last layer's output.
        pooler_output (`(b, e)`, *optional*): L2-normalised projection of the first real token ([CLS]/[ENC]) in the
            ICL space; set by `get_text_features`.
        cache ([`Cache`], *optional*): the answer generator's key/value cache.
        hidden_states (`tuple` of `(b, s, d)`, *optional*): the stack's input and every layer's output.
        attentions, cross_attentions (`tuple` of `(b, h, s, s')`, *optional*): every layer's self-/cross-attention.
        cls_attention (`(b, h, s)`, *optional*): last layer's [CLS]/[ENC]→token attention, the TCL word weights;
            computed only when asked for with `return_cls_attention=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    cls_attention: torch.FloatTensor | None = None


@dataclass
class MCGModelOutput(ModelOutput):
    """
    Output of [`MCGModel`], the encoder side of MCG.

    Args:
        last_hidden_state (`(b, s_f, d)`): the fused evidence F the answer generator cross-attends to. With
            `fusion_type="cross"` s_f = s (question tokens that read the video); with `"concat"` s_f = s + k.
        hidden_states (`tuple`, *optional*): the fusion pass, input first: with `"cross"` the question encoder's
            output then every fusor layer's; with `"concat"` the `[question; video]` input then every layer's.
        attentions, cross_attentions (`tuple`, *optional*): the fusion pass's self-attention and (`"cross"` only)
            its cross-attention to the video tokens.
        attention_mask (`(b, s_f)`): mask of F (generation keeps passing the *question* mask; the model uses this).
        video_last_hidden_state (`(b, k, d_v)`), video_attention_mask (`(b, k)`), video_hidden_states,
            video_attentions: the IVM's [`MCGVideoOutput`].
        question_last_hidden_state (`(b, s, d)`), question_hidden_states, question_attentions: the IQM's.
        video_cls_attention (`(b, t, h, n)`, *optional*): the IVM's last-layer [CLS] attention, with
            `return_cls_attention=True` (token-level contrast).
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    attention_mask: torch.LongTensor | None = None
    video_last_hidden_state: torch.FloatTensor | None = None
    video_attention_mask: torch.LongTensor | None = None
    video_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    video_attentions: tuple[torch.FloatTensor, ...] | None = None
    question_last_hidden_state: torch.FloatTensor | None = None
    question_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    question_attentions: tuple[torch.FloatTensor, ...] | None = None
    video_cls_attention: torch.FloatTensor | None = None

    @property
    def fusion_cross_attentions(self):
        """The fusor's cross-attention to the video tokens (the same tuple as `cross_attentions`)."""
        return self.cross_attentions


@dataclass
class MCGVideoQuestionAnsweringOutput(Seq2SeqLMOutput):
    """
    [`Seq2SeqLMOutput`] (the encoder side is [`MCGModel`]'s fusion pass) plus the loss parts. `loss` = `loss_lm` +
    icl_loss_weight · `loss_icl` + tcl_loss_weight · `loss_tcl`; `logits` is (b, s_a, v).

    `encoder_outputs` is the whole [`MCGModelOutput`] of the encoder pass (its video and question parts). It is an
    attribute, not a field, so that the output's keys and tuple form are exactly `Seq2SeqLMOutput`'s.
    """

    loss_lm: torch.FloatTensor | None = None
    loss_icl: torch.FloatTensor | None = None
    loss_tcl: torch.FloatTensor | None = None

    encoder_outputs = None  # not annotated: an attribute outside the dataclass fields (see above)


@dataclass
class MCGPreTrainingOutput(ModelOutput):
    """
    Args:
        loss: weighted sum of the parts below.
        loss_icl, loss_tcl, loss_mlm, loss_vtm: the parts (None when their weight is 0; VTM also for a batch of
            one pair, which has no in-batch negative).
        video_embeds, text_embeds (`(b, e)`): L2-normalised contrastive embeddings.
        logits_mlm (`(b, s, v)`, *optional*): MLM predictions at the caption positions.
        logits_vtm (`(3b, 2)`, *optional*): match / no-match logits for positives, then both kinds of negatives
            (batches of 2 or more pairs).
        hidden_states, attentions, cross_attentions (`tuple`, *optional*): the MLM fusion pass over the masked
            caption, as [`MCGModelOutput`]'s.
        video_hidden_states, video_attentions (`tuple`, *optional*): the IVM's.
    """

    loss: torch.FloatTensor | None = None
    loss_icl: torch.FloatTensor | None = None
    loss_tcl: torch.FloatTensor | None = None
    loss_mlm: torch.FloatTensor | None = None
    loss_vtm: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    logits_mlm: torch.FloatTensor | None = None
    logits_vtm: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    video_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    video_attentions: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------
# Attention: written once, kernel chosen by the sub-config's `_attn_implementation`
# ----------------------------------------------------------------------------------------------------------------


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """q (b, h, q, dh), k/v (b, h, k, dh), boolean mask broadcastable to (b, h, q, k) (True = attend)."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (b, h, q, k)
    if attention_mask is not None:
        weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
    weights = weights.float().softmax(dim=-1).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (b, q, h, dh)
    return output, weights


def attend(module, query, key, value, attention_mask, need_weights=False, **kwargs):
    """The attention kernel named by `module.config._attn_implementation` (the config of the stack the module belongs
    to: `vision_config`, `question_config` or `decoder`) on (b, h, l, dh) heads → (b, l, h, dh), weights.

    Weights that a loss reads (`need_weights`) or that the caller records (`output_attentions`) come from eager
    attention whatever the configured kernel, so asking for attention maps never needs a second model.
    """
    kernel = eager_attention_forward
    if not (need_weights or kwargs.get("output_attentions")):
        kernel = ALL_ATTENTION_FUNCTIONS.get_interface(module.config._attn_implementation, eager_attention_forward)
    return kernel(
        module,
        query,
        key,
        value,
        attention_mask,
        scaling=module.scaling,
        dropout=module.dropout if module.training else 0.0,
    )


class MCGVisionAttention(nn.Module):
    """Self-attention along dim 1 of (b, l, [g,] d), for the video blocks.

    With a middle dim g, each of its g positions is an independent sequence over l: they are folded into the heads, so
    (b, t, n, d) attends over the t frames of every patch location through (b, n h, t, dh) views of the projections,
    with no permute or copy. The mask must broadcast to (b, g h, l, l). `project=False` returns the heads merged back
    to (b, l, [g,] d) before `out_proj`.
    """

    def __init__(self, config, hidden_size, num_heads, dropout=0.0, bias=True):
        super().__init__()
        self.config = config  # the vision config: the kernel is read from its _attn_implementation
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = dropout
        self.is_causal = False
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states, attention_mask=None, project=True, need_weights=False, **kwargs):
        device_type = hidden_states.device.type
        if torch.is_autocast_enabled(device_type):
            # cast once for the three projections: autocast would cast (and keep for backward) one copy per projection
            hidden_states = hidden_states.to(torch.get_autocast_dtype(device_type))
        b, length = hidden_states.shape[:2]
        query, key, value = (
            proj(hidden_states).view(b, length, -1, self.head_dim).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )  # (b, [g] h, l, dh)
        output, weights = attend(self, query, key, value, attention_mask, need_weights, **kwargs)
        output = output.reshape(hidden_states.shape[:-1] + (-1,))  # (b, l, [g,] h dh)
        return (self.out_proj(output) if project else output), weights


class MCGAttention(nn.Module):
    """Multi-head self- or cross-attention for the text stacks, with the encoder–decoder KV cache.

    Cross-attention keys/values are computed at the first generation step and then read from the cache.
    """

    def __init__(self, config, hidden_size, num_heads, kv_hidden_size=None, dropout=0.0, layer_idx=None):
        super().__init__()
        self.config = config
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = dropout
        self.is_causal = False  # causality always comes from an explicit mask
        self.layer_idx = layer_idx
        kv_hidden_size = kv_hidden_size or hidden_size
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(kv_hidden_size, hidden_size)
        self.v_proj = nn.Linear(kv_hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], -1, self.head_dim).transpose(1, 2)  # (b, l, d) → (b, h, l, dh)

    def forward(
        self,
        hidden_states,
        key_value_states=None,
        attention_mask=None,
        cache=None,
        need_weights=False,
        key_value_index=None,
        **kwargs,
    ):
        """`key_value_index` (b,): `key_value_states` holds each distinct source once (v, k, d) and row i attends to
        source `key_value_index[i]`; keys and values are projected once per source, not once per row."""
        b, q_len, _ = hidden_states.shape
        query = self._heads(self.q_proj(hidden_states))
        is_cross = key_value_states is not None
        layer_cache, reuse_cross = None, False
        if cache is not None:
            if isinstance(cache, EncoderDecoderCache):
                reuse_cross = is_cross and cache.is_updated.get(self.layer_idx, False)
                layer_cache = cache.cross_attention_cache if is_cross else cache.self_attention_cache
            else:
                layer_cache = None if is_cross else cache
        if reuse_cross:
            key, value = layer_cache.layers[self.layer_idx].keys, layer_cache.layers[self.layer_idx].values
        else:
            source = key_value_states if is_cross else hidden_states
            key, value = self._heads(self.k_proj(source)), self._heads(self.v_proj(source))
            if is_cross and key_value_index is not None:
                key, value = key[key_value_index], value[key_value_index]
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)
                if is_cross:
                    cache.is_updated[self.layer_idx] = True
        output, weights = attend(self, query, key, value, attention_mask, need_weights, **kwargs)  # (b, q, h, dh)
        return self.out_proj(output.reshape(b, q_len, -1)), weights


class MCGMLP(nn.Module):
    def __init__(self, hidden_size, intermediate_size, hidden_act):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.activation = ACT2FN[hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x):
        return self.fc2(self.activation(self.fc1(x)))


class MCGDropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples (leading dim) during training.

    A branch may come in several tensors (the [CLS] and the patch part of a vision block): pass them together and the
    same samples are dropped in each.
    """

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, *branch):
        if self.drop_prob == 0.0 or not self.training:
            return branch if len(branch) > 1 else branch[0]
        keep = 1.0 - self.drop_prob
        mask = branch[0].new_empty(branch[0].shape[0]).bernoulli_(keep) / keep  # (b,)
        dropped = tuple(x * mask.view((-1,) + (1,) * (x.ndim - 1)) for x in branch)
        return dropped if len(dropped) > 1 else dropped[0]


def _padding_mask(mask: torch.Tensor) -> torch.Tensor:
    """(b, k) 0/1 key mask → boolean (b, 1, 1, k), broadcast over heads and queries."""
    return mask.bool()[:, None, None, :]


def _frame_weights(frame_mask: torch.Tensor | None, dtype: torch.dtype, ndim: int):
    """(b, t) frame mask → (weights (b, t, 1, ...), counts (b, 1, ...)) for `_masked_frame_mean` over tensors of `ndim`
    dims; None without a mask. Built once per forward and shared by every layer."""
    if frame_mask is None:
        return None
    weights = frame_mask.to(dtype).view(*frame_mask.shape, *([1] * (ndim - 2)))  # (b, t, 1, ...)
    return weights, weights.sum(dim=1).clamp_min(1.0)


def _masked_frame_mean(x: torch.Tensor, frame_weights) -> torch.Tensor:
    """Mean over the frame axis (dim 1) of x (b, t, ...) counting only real frames (`_frame_weights`)."""
    if frame_weights is None:
        return x.mean(dim=1)
    weights, counts = frame_weights
    return (x * weights).sum(dim=1) / counts


# ----------------------------------------------------------------------------------------------------------------
# IVM: intra-video module (TimeSformer, divided space-time attention)
# ----------------------------------------------------------------------------------------------------------------


class MCGConvStem(nn.Sequential):
    """`patch_embedding_type="conv_stem"`: 3x3 stride-2 convolutions with ReLU, channels doubling from
    `conv_stem_width`, until the stride left for the patch embedding is 2 or odd (8 px patches: two, leaving 2).

    (b t, c, H, W) → (b t, out_channels, H / 2^k, W / 2^k), channels-last in memory.
    """

    def __init__(self, vision_config, in_channels: int):
        layers, channels, stride = [], vision_config.conv_stem_width, vision_config.patch_size
        while stride % 2 == 0 and stride > 2:
            # ReLU rather than GELU: on a CPU the stem's GELU forward and backward cost over half as much as its
            # convolutions
            layers += [nn.Conv2d(in_channels, channels, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            in_channels, channels, stride = channels, channels * 2, stride // 2
        super().__init__(*layers)
        self.out_channels, self.remaining_stride = in_channels, stride

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # the first convolution, on 3 or 6 channels, ran 2-3x faster on CPU (oneDNN) with channels-last input
        return super().forward(frames.contiguous(memory_format=torch.channels_last))


def sinusoidal_temporal_embedding(num_frames: int, dim: int) -> torch.Tensor:
    """(num_frames, dim) sines and cosines of the frame index with unit mean square; `temporal_embedding_init`.

    Frequencies run geometrically from half a cycle over the clip, whose cosine falls monotonically from the first
    frame to the last, to one cycle every two frames, rather than the text transformer's 1/10000^(2i/d), which over
    16 frames would leave most dimensions constant.
    """
    half = dim // 2
    lowest = math.pi / max(num_frames - 1, 1)
    frequencies = lowest * (math.pi / lowest) ** (torch.arange(half, dtype=torch.float64) / max(half - 1, 1))
    angles = torch.arange(num_frames, dtype=torch.float64)[:, None] * frequencies  # (t, dim // 2)
    table = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    table = torch.cat([table, torch.zeros(num_frames, dim - table.shape[1], dtype=torch.float64)], dim=1)
    return (table * math.sqrt(dim / half)).float() if half else table.float()


def _convolution_output_size(size: tuple[int, int], conv: nn.Conv2d) -> tuple[int, int]:
    return tuple((n + 2 * conv.padding[i] - conv.kernel_size[i]) // conv.stride[i] + 1 for i, n in enumerate(size))


class MCGVisionEmbeddings(nn.Module):
    """Patch embedding (after a convolutional stem with `patch_embedding_type="conv_stem"`) + [CLS] + learned
    spatial position embedding + learned temporal embedding (zeros at init), and with a `motion_input` the
    embedding of each patch's change since the previous frame.

    Both position embeddings are resized on the fly, so any frame count and any multiple-of-patch resolution works.
    """

    def __init__(self, vision_config):
        super().__init__()
        d = vision_config.hidden_size
        self.config = vision_config
        motion = vision_config.motion_input != "none"
        # with the stem, "frame_difference" feeds the change to it as more input channels; otherwise the change has
        # its own patch projection, added to the tokens
        conv_stem = vision_config.patch_embedding_type == "conv_stem"
        self.stem_sees_change = conv_stem and vision_config.motion_input == "frame_difference"
        channels, stride = vision_config.num_channels, vision_config.patch_size
        self.conv_stem = None
        if conv_stem:
            self.conv_stem = MCGConvStem(vision_config, channels * (2 if self.stem_sees_change else 1))
            channels, stride = self.conv_stem.out_channels, self.conv_stem.remaining_stride
        self.patch_embedding = nn.Conv2d(channels, d, kernel_size=stride, stride=stride)
        self.class_embedding = nn.Parameter(torch.zeros(d))
        self.position_embedding = nn.Parameter(torch.zeros(1, 1 + vision_config.num_patches, d))
        self.temporal_embedding = nn.Parameter(torch.zeros(1, vision_config.num_frames, d))
        self.motion_embedding = None
        if motion and not self.stem_sees_change:
            self.motion_embedding = nn.Conv2d(
                vision_config.num_channels, d, kernel_size=vision_config.patch_size, stride=vision_config.patch_size,
                bias=False,
            )  # fmt: skip
        self.dropout = nn.Dropout(vision_config.hidden_dropout_prob)

    def _spatial_position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        stored = self.config.image_size // self.config.patch_size
        if grid_h == stored and grid_w == stored:
            return self.position_embedding
        cls_pos, patch_pos = self.position_embedding[:, :1], self.position_embedding[:, 1:]
        patch_pos = patch_pos.reshape(1, stored, stored, -1).permute(0, 3, 1, 2)  # (1, d, gh, gw)
        patch_pos = F.interpolate(patch_pos, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)  # (1, n, d)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def _temporal_embedding(self, num_frames: int) -> torch.Tensor:
        if num_frames == self.temporal_embedding.shape[1]:
            return self.temporal_embedding
        mode = self.config.temporal_embedding_interpolation
        resized = F.interpolate(
            self.temporal_embedding.transpose(1, 2),  # (1, d, T)
            size=num_frames,
            mode=mode,
            **({"align_corners": False} if mode == "linear" else {}),
        )
        return resized.transpose(1, 2)  # (1, t, d)

    def convolutions(self, height: int, width: int) -> list[tuple[nn.Conv2d, int]]:
        """Each convolution with the number of output positions it computes on a frame of height x width."""
        stem = [] if self.conv_stem is None else [m for m in self.conv_stem if isinstance(m, nn.Conv2d)]
        chain = [*stem, self.patch_embedding]  # each reads the previous one's output
        sizes = list(itertools.accumulate(chain, _convolution_output_size, initial=(height, width)))[1:]
        found = [(conv, h * w) for conv, (h, w) in zip(chain, sizes)]
        motion = [] if self.motion_embedding is None else [(self.motion_embedding, found[-1][1])]  # on the frames
        return found + motion

    def forward(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """(b, t, c, H, W) → video tokens (b, 1 + t n, d): [CLS, frame 0 patches, frame 1 patches, ...]."""
        b, t = pixel_values_videos.shape[:2]
        video = pixel_values_videos.to(self.patch_embedding.weight.dtype)
        change = None
        if self.config.motion_input != "none":
            # frame t - frame t-1 (zero for the first): where an object moves, its leading edge turns positive and
            # its trailing edge negative inside the same patch, so one token carries the direction
            change = torch.cat([torch.zeros_like(video[:, :1]), video[:, 1:] - video[:, :-1]], dim=1)
        if self.conv_stem is not None:
            stem_input = torch.cat([video, change], dim=2) if self.stem_sees_change else video  # (b, t, c or 2c, H, W)
            patches = self.patch_embedding(self.conv_stem(stem_input.flatten(0, 1)))  # (b t, d, gh, gw)
        else:
            patches = self.patch_embedding(video.flatten(0, 1))  # (b t, d, gh, gw)
        if self.motion_embedding is not None:
            patches = patches + self.motion_embedding(change.flatten(0, 1))
        grid_h, grid_w = patches.shape[-2:]
        # (b t, n, d), made contiguous once here: otherwise the conv's channels-first strides would be inherited by
        # every later elementwise result
        patches = patches.flatten(2).transpose(1, 2).contiguous()
        position = self._spatial_position_embedding(grid_h, grid_w)
        patches = patches + position[:, 1:]
        n, d = patches.shape[1:]
        patches = patches.view(b, t, n, d) + self._temporal_embedding(t)[:, :, None]  # (b, t, n, d)
        cls = (self.class_embedding + position[0, 0]).expand(b, 1, d)  # (b, 1, d)
        return self.dropout(torch.cat([cls, patches.reshape(b, t * n, d)], dim=1))


class MCGVisionEncoderLayer(GradientCheckpointingLayer):
    """Divided space-time block: temporal attention (each patch location over frames) → spatial attention (each
    frame, with the [CLS] replicated per frame and averaged back) → MLP; pre-norm, stochastic depth.

    Video tokens come in and go out as (b, 1 + t n, d). Inside, the [CLS] (b, 1, d) and the patches (b, t, n, d)
    are handled apart: the temporal attention reads (b, n h, t, dh) views of its projections without any permute,
    and the two only meet in the spatial attention's input.
    """

    def __init__(self, config, drop_path_rate: float):
        super().__init__()
        vc = config.vision_config
        d, heads = vc.hidden_size, vc.num_attention_heads
        self.temporal_layer_norm = nn.LayerNorm(d, eps=vc.layer_norm_eps)
        self.temporal_attn = MCGVisionAttention(
            vc, d, heads, dropout=vc.attention_probs_dropout_prob, bias=vc.qkv_bias
        )
        self.temporal_fc = nn.Linear(d, d)
        self.layer_norm1 = nn.LayerNorm(d, eps=vc.layer_norm_eps)
        self.spatial_attn = MCGVisionAttention(vc, d, heads, dropout=vc.attention_probs_dropout_prob, bias=vc.qkv_bias)
        self.layer_norm2 = nn.LayerNorm(d, eps=vc.layer_norm_eps)
        self.mlp = MCGMLP(d, vc.intermediate_size, vc.hidden_act)
        self.dropout = nn.Dropout(vc.hidden_dropout_prob)
        self.drop_path = MCGDropPath(drop_path_rate)

    def _temporal_output(self, x: torch.Tensor) -> torch.Tensor:
        """temporal_fc(dropout(out_proj(x))) for the merged heads x (b, t, n, d).

        Without dropout the two projections are one linear map. With more tokens N than channels d it is applied as
        the single matrix temporal_fc · out_proj (d³ + N d² multiply-adds instead of 2 N d², and one activation less
        kept for backward); the parameters stay the two layers.
        """
        out_proj, fc = self.temporal_attn.out_proj, self.temporal_fc
        d = x.shape[-1]
        if (self.training and self.dropout.p > 0) or x.numel() <= d * d:
            return fc(self.dropout(out_proj(x)))
        weight = fc.weight @ out_proj.weight  # (d, d)
        bias = torch.addmv(fc.bias, fc.weight, out_proj.bias)  # (d,)
        return F.linear(x, weight, bias)

    def forward(
        self, hidden_states, temporal_mask=None, frame_weights=None, num_frames: int = 1, need_weights=False, **kwargs
    ):
        """hidden_states (b, 1 + t n, d) → (hidden_states, spatial attention weights or None).

        temporal_mask (b, 1, 1, t) and frame_weights (`_frame_weights` of the frame mask) are built once per forward
        by [`MCGVisionModel`]; None when every frame is real.
        """
        b, length, d = hidden_states.shape
        t = num_frames
        n = (length - 1) // t
        # one split (its backward is one cat), not two slices (each of whose backward writes a zero-filled copy)
        cls, patches = hidden_states.split([1, t * n], dim=1)
        patches = patches.view(b, t, n, d)

        # temporal: dim 1 of (b, t, n, d) is the sequence; the n patch locations are folded into the heads
        x, _ = self.temporal_attn(
            self.temporal_layer_norm(patches), attention_mask=temporal_mask, project=False, **kwargs
        )
        patches = patches + self.drop_path(self._temporal_output(x))  # (b, t, n, d)

        # spatial: each frame is one sequence [CLS; its patches]; the [CLS] is normalised once, replicated per frame
        # and its per-frame outputs averaged over the real frames
        x = torch.cat([self.layer_norm1(cls)[:, None].expand(b, t, 1, d), self.layer_norm1(patches)], dim=2)
        x, weights = self.spatial_attn(x.view(b * t, 1 + n, d), need_weights=need_weights, **kwargs)
        cls_update, patch_update = self.dropout(x).view(b, t, 1 + n, d).split([1, n], dim=2)
        cls_update, patch_update = self.drop_path(_masked_frame_mean(cls_update, frame_weights), patch_update)
        hidden_states = torch.cat([cls + cls_update, (patches + patch_update).view(b, t * n, d)], dim=1)

        # MLP: the [CLS] and the patches together, one stochastic-depth draw per sample
        hidden_states = hidden_states + self.drop_path(self.dropout(self.mlp(self.layer_norm2(hidden_states))))
        return hidden_states, weights


# ----------------------------------------------------------------------------------------------------------------
# IQM, fusor and answer generator: one BERT-style stack (post-norm, as BERT/BLIP so their weights load)
# ----------------------------------------------------------------------------------------------------------------


class MCGTextEmbeddings(nn.Module):
    """Word + absolute position embeddings → LayerNorm → dropout (no token types, as BLIP's MED BERT)."""

    def __init__(self, text_config):
        super().__init__()
        self.embed_tokens = nn.Embedding(text_config.vocab_size, text_config.hidden_size, text_config.pad_token_id)
        self.position_embedding = nn.Embedding(text_config.max_position_embeddings, text_config.hidden_size)
        self.layer_norm = nn.LayerNorm(text_config.hidden_size, eps=text_config.layer_norm_eps)
        self.dropout = nn.Dropout(text_config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        embeddings = self.embed_tokens(input_ids) + self.position_embedding(position_ids)
        return self.dropout(self.layer_norm(embeddings))


class MCGTextLayer(GradientCheckpointingLayer):
    """Self-attention → (optional) cross-attention → FFN, each with a post-norm residual."""

    def __init__(self, text_config, cross_attention_hidden_size=None, layer_idx=None):
        super().__init__()
        d, heads, p = (
            text_config.hidden_size,
            text_config.num_attention_heads,
            text_config.attention_probs_dropout_prob,
        )
        self.self_attn = MCGAttention(text_config, d, heads, dropout=p, layer_idx=layer_idx)
        self.layer_norm1 = nn.LayerNorm(d, eps=text_config.layer_norm_eps)
        if cross_attention_hidden_size is not None:
            self.cross_attn = MCGAttention(
                text_config, d, heads, kv_hidden_size=cross_attention_hidden_size, dropout=p, layer_idx=layer_idx
            )
            self.cross_attn_layer_norm = nn.LayerNorm(d, eps=text_config.layer_norm_eps)
        self.mlp = MCGMLP(d, text_config.intermediate_size, text_config.hidden_act)
        self.layer_norm2 = nn.LayerNorm(d, eps=text_config.layer_norm_eps)
        self.dropout = nn.Dropout(text_config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        encoder_index=None,
        cache=None,
        need_weights=False,
        **kwargs,
    ):
        """→ (hidden_states, self-attention weights or None). `encoder_index` (b,): row i cross-attends to
        `encoder_hidden_states[encoder_index[i]]`."""
        residual, weights = self.self_attn(
            hidden_states, attention_mask=attention_mask, cache=cache, need_weights=need_weights, **kwargs
        )
        hidden_states = self.layer_norm1(hidden_states + self.dropout(residual))
        if encoder_hidden_states is not None:
            residual, _ = self.cross_attn(
                hidden_states,
                key_value_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
                cache=cache,
                key_value_index=encoder_index,
                **kwargs,
            )
            hidden_states = self.cross_attn_layer_norm(hidden_states + self.dropout(residual))
        hidden_states = self.layer_norm2(hidden_states + self.dropout(self.mlp(hidden_states)))
        return hidden_states, weights


class MCGLMHead(nn.Module):
    """BERT prediction head: dense → activation → LayerNorm → vocabulary projection (with bias)."""

    def __init__(self, text_config):
        super().__init__()
        self.dense = nn.Linear(text_config.hidden_size, text_config.hidden_size)
        self.activation = ACT2FN[text_config.hidden_act]
        self.layer_norm = nn.LayerNorm(text_config.hidden_size, eps=text_config.layer_norm_eps)
        self.out_proj = nn.Linear(text_config.hidden_size, text_config.vocab_size)

    def forward(self, hidden_states):
        return self.out_proj(self.layer_norm(self.activation(self.dense(hidden_states))))


# ----------------------------------------------------------------------------------------------------------------
# Pre-trained model plumbing and input checks
# ----------------------------------------------------------------------------------------------------------------


class MCGPreTrainedModel(PreTrainedModel):
    config: MCGConfig
    config_class = MCGConfig
    base_model_prefix = "mcg"
    main_input_name = "input_ids"  # the question; generate() would otherwise take the video for the decoder prompt
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True
    _no_split_modules = ["MCGVisionEncoderLayer", "MCGTextLayer"]

    def __init__(self, config: MCGConfig, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        # Each stack's attention reads the kernel from its own sub-config, so that
        # `attn_implementation={"vision_config": "eager", ...}` works as in transformers' composite models. The
        # sub-models share the top-level config, so transformers resolves only the top-level kernel here; a
        # sub-config nobody named follows it, and a named one is checked like the top-level one.
        for key in config.sub_configs:
            sub_config = getattr(config, key, None)
            if sub_config is not None:
                requested = sub_config._attn_implementation or config._attn_implementation
                sub_config._attn_implementation_internal = self._check_and_adjust_attn_implementation(
                    requested, is_init_check=True
                )

    def set_attn_implementation(self, attn_implementation: str | dict, allow_all_kernels: bool = False):
        """Switch attention kernels in place: a string for every stack, or a dict keyed by sub-config
        (`"vision_config"`, `"question_config"`, `"decoder"`; `""` for the top level) for some of them. The fusor
        follows `question_config`, whose layers it is built from."""
        known = ("", *self.config.sub_configs)
        if isinstance(attn_implementation, dict):
            unknown = sorted(set(attn_implementation) - set(known))
            if unknown:
                raise ValueError(
                    f"attn_implementation keys {unknown} are not sub-configs of {type(self.config).__name__}; "
                    f"use {list(known)}, or a string for all of them."
                )
            requested = attn_implementation
        else:
            requested = dict.fromkeys(known, attn_implementation)
        checked = {
            key: self._check_and_adjust_attn_implementation(value, allow_all_kernels=allow_all_kernels)
            for key, value in requested.items()
        }  # every value checked before any is applied
        for key, value in checked.items():
            (self.config if key == "" else getattr(self.config, key))._attn_implementation_internal = value

    def floating_point_ops(self, input_dict: dict, exclude_embeddings: bool = True) -> int:
        """FLOPs of one training step (forward + backward) on the batch `input_dict`, which `Trainer` adds up as
        `total_flos`: 6 x parameters x tokens, summed over the passes this model's forward makes through each stack
        (`_stack_passes`: the videos through the IVM, the questions or captions through the IQM and the fusor, the
        answers through the generator and its head). Embedding tables are left out by default and attention scores
        are not counted, as in transformers' estimate, which multiplies all parameters by the question tokens alone
        and so leaves out the video tokens that carry most of the compute."""
        passes = self._stack_passes(input_dict)
        embeddings = set()
        if exclude_embeddings:
            embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        total = 0
        for modules, tokens in passes:
            weights = {id(w): w.numel() for module in modules for w in module.parameters() if id(w) not in embeddings}
            total += sum(weights.values()) * tokens
        return 6 * total

    def _stack_passes(self, inputs: dict) -> list[tuple[tuple[nn.Module, ...], int]]:
        """(modules, tokens) for every pass of this model's forward over `inputs`; see `floating_point_ops`. Here:
        the whole model over the main input's tokens (a text stack)."""
        return [((self,), _token_counts(inputs, self.main_input_name)[1])]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights (safetensors), config and generation config; with the package imported, also the model code
        and a complete `auto_map` (see `AUTO_MAP`)."""
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def compile_regions(self, **compile_kwargs):
        """Regional compilation: `torch.compile` each repeated layer (the vision blocks and the text layers) instead
        of the whole model. Layers of one class share their compiled code (module parameters are graph inputs), so
        the compile time stays that of a few layers however deep the model is; the embeddings, heads and losses run
        eagerly. `compile_kwargs` go to `torch.compile` (backend, mode, ...). Returns the model."""
        for module in self.modules():
            if isinstance(module, (MCGVisionEncoderLayer, MCGTextLayer)):
                module.compile(**compile_kwargs)
        return self

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        if isinstance(module, MCGVisionEmbeddings):
            init.trunc_normal_(module.class_embedding, std=std)
            init.trunc_normal_(module.position_embedding, std=std)
            temporal_std = module.config.temporal_embedding_init_std
            if temporal_std == 0:  # warm start: a zero temporal embedding leaves image-pretrained frames unchanged
                init.zeros_(module.temporal_embedding)
            elif module.config.temporal_embedding_init == "sinusoidal":  # from scratch: frames must differ
                table = sinusoidal_temporal_embedding(*module.temporal_embedding.shape[1:]) * temporal_std
                init.copy_(module.temporal_embedding, table[None].to(module.temporal_embedding.dtype))
            else:
                init.normal_(module.temporal_embedding, std=temporal_std)
            # the stem's convolutions are fan-in scaled: the config's fixed std would scale the activations by
            # std * sqrt(fan-in) at each of them (1.5x, then 3.4x for a 32-wide stem at std 0.2). Done here, not
            # on MCGConvStem: transformers skips remote-code modules without parameters of their own.
            for conv in module.conv_stem or ():
                if isinstance(conv, nn.Conv2d):
                    init.kaiming_normal_(conv.weight, nonlinearity="relu")
        elif isinstance(module, MCGVisionEncoderLayer):
            # temporal attention starts as a no-op, so an image-pretrained spatial stack is undisturbed at step 0
            init.zeros_(module.temporal_fc.weight)
            init.zeros_(module.temporal_fc.bias)
        elif isinstance(module, MCGModel):
            init.constant_(module.temperature, self.config.temperature_init)

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        """Resize the one vocabulary that the question encoder, the answer generator (with its tied LM head) and the
        MLM head share, and keep `question_config.vocab_size` and `decoder.vocab_size` equal."""
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        if new_num_tokens is None and pad_to_multiple_of is None:
            return embeddings
        size = embeddings.num_embeddings
        for module in self.modules():
            if isinstance(module, MCGTextEmbeddings) and module.embed_tokens.num_embeddings != size:
                module.embed_tokens = self._get_resized_embeddings(
                    module.embed_tokens, size, mean_resizing=mean_resizing
                )
            elif isinstance(module, MCGLMHead) and module.out_proj.out_features != size:
                module.out_proj = self._get_resized_lm_head(module.out_proj, size, mean_resizing=mean_resizing)
        self.config.question_config.vocab_size = self.config.decoder.vocab_size = size
        self.tie_weights()
        return embeddings


def _check_video_inputs(config, pixel_values_videos, video_frame_mask, batch_size=None):
    if pixel_values_videos is None:
        raise ValueError("pixel_values_videos is required: preprocess the video with the processor.")
    vc = config.vision_config
    if pixel_values_videos.ndim != 5:
        raise ValueError(
            "pixel_values_videos must have shape (batch, frames, channels, height, width), got "
            f"{tuple(pixel_values_videos.shape)}; a single video needs a leading batch dimension (use the processor)."
        )
    if not pixel_values_videos.is_floating_point():
        raise ValueError(
            f"pixel_values_videos is {pixel_values_videos.dtype}, not floating point: raw frames would reach the model "
            "unnormalised; pass them through the processor (MCGVideoProcessor), whose output is rescaled and "
            "normalised float32."
        )
    b, t, c, h, w = pixel_values_videos.shape
    if c != vc.num_channels:
        raise ValueError(
            f"pixel_values_videos has {c} channels at dim 2, the config expects {vc.num_channels}: frames must be "
            "(batch, frames, channels, height, width), channels first."
        )
    if h % vc.patch_size or w % vc.patch_size:
        raise ValueError(
            f"Frame size {h}x{w} is not a multiple of patch_size={vc.patch_size}; resize or crop frames "
            f"(the processor's crop_size), e.g. to {vc.image_size}x{vc.image_size}."
        )
    if batch_size is not None and b != batch_size:
        raise ValueError(
            f"pixel_values_videos has batch size {b} but the question batch (input_ids) has {batch_size}."
        )
    if video_frame_mask is not None:
        if tuple(video_frame_mask.shape) != (b, t):
            raise ValueError(
                f"video_frame_mask must have shape (batch, frames) = {(b, t)}, got {tuple(video_frame_mask.shape)}."
            )
        # a value check reads the mask on the host: eager only (a compiled graph would break here)
        if not torch.compiler.is_compiling() and not bool(video_frame_mask.bool().any(dim=1).all()):
            raise ValueError("video_frame_mask marks every frame of some video as padding; each needs a real frame.")


def _check_video_index(video_index, batch_size, num_videos):
    if video_index.ndim != 1 or video_index.shape[0] != batch_size or video_index.is_floating_point():
        raise ValueError(
            f"video_index must be an integer tensor of shape (batch,) = ({batch_size},), one video position per "
            f"question; got {video_index.dtype} of shape {tuple(video_index.shape)}."
        )
    # a range check reads the indices on the host: eager only
    if (
        not torch.compiler.is_compiling()
        and batch_size
        and not (0 <= int(video_index.min()) <= int(video_index.max()) < num_videos)
    ):
        raise ValueError(
            f"video_index values must lie in [0, {num_videos}) (pixel_values_videos holds {num_videos} videos), got "
            f"{video_index.tolist()}."
        )


def _check_text_inputs(input_ids, attention_mask, name="input_ids"):
    if input_ids is None:
        raise ValueError(f"{name} is required: tokenize the question with the processor.")
    if input_ids.ndim != 2 or input_ids.shape[1] == 0:
        raise ValueError(
            f"{name} must have shape (batch, tokens) with at least one token, got {tuple(input_ids.shape)}."
        )
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} must match {name} {tuple(input_ids.shape)}."
            )
        # a host read of the mask: checked in eager mode, skipped while compiling (it would break the graph)
        if not torch.compiler.is_compiling() and not bool(attention_mask.bool().any(dim=1).all()):
            raise ValueError(f"Some rows of {name} are empty (attention_mask all zero): every question needs text.")


def _select_videos(video: MCGVideoOutput, video_index: torch.Tensor) -> MCGVideoOutput:
    """Per-video IVM outputs (v, ...) → per-question outputs (b, ...): row i is video `video_index[i]`."""
    num_videos = video.last_hidden_state.shape[0]

    def select(x):
        return None if x is None else x[video_index]

    def select_frames(x):  # (v t, ...) → (v, t, ...) → (b, t, ...) → (b t, ...)
        return x.unflatten(0, (num_videos, -1))[video_index].flatten(0, 1)

    return MCGVideoOutput(
        last_hidden_state=video.last_hidden_state[video_index],
        pooler_output=select(video.pooler_output),
        hidden_states=None if video.hidden_states is None else tuple(map(select, video.hidden_states)),
        attentions=None if video.attentions is None else tuple(map(select_frames, video.attentions)),
        attention_mask=video.attention_mask[video_index],
        cls_attention=select(video.cls_attention),
    )


# ----------------------------------------------------------------------------------------------------------------
# The stacks: IVM and the text stack (IQM / fusor / answer generator)
# ----------------------------------------------------------------------------------------------------------------


def _token_counts(inputs: dict, *names: str) -> tuple[int, int]:
    """(rows, tokens) of the first of `names` present in `inputs`, for the FLOP count; zeros if none is."""
    ids = next((inputs[name] for name in names if inputs.get(name) is not None), None)
    return (0, 0) if ids is None else (ids.shape[0], ids.numel())


def _video_token_counts(config: MCGConfig, inputs: dict) -> tuple[int, int, int]:
    """(videos, tokens each video is encoded as, tokens each video leaves the IVM as) for the FLOP count of
    `inputs`; zeros without `pixel_values_videos`."""
    pixels = inputs.get("pixel_values_videos")
    if pixels is None:
        return 0, 0, 0
    v, t, _, height, width = pixels.shape
    patches = (height // config.vision_config.patch_size) * (width // config.vision_config.patch_size)
    pooled = config.vision_config.temporal_pooling == "mean"
    return v, 1 + t * patches, 1 + (patches if pooled else t * patches)


class MCGVisionModel(MCGPreTrainedModel):
    """The IVM: (b, t, 3, H, W) frames → video tokens (see [`MCGVideoOutput`])."""

    main_input_name = "pixel_values_videos"
    input_modalities = ("video",)
    _can_record_outputs = {
        "hidden_states": MCGVisionEncoderLayer,
        "attentions": OutputRecorder(MCGVisionAttention, index=1, layer_name="spatial_attn"),
    }

    def __init__(self, config: MCGConfig):
        super().__init__(config)
        vc = config.vision_config
        self.embeddings = MCGVisionEmbeddings(vc)
        rates = [vc.drop_path_rate * i / max(vc.num_hidden_layers - 1, 1) for i in range(vc.num_hidden_layers)]
        self.layers = nn.ModuleList([MCGVisionEncoderLayer(config, rate) for rate in rates])
        self.post_layernorm = nn.LayerNorm(vc.hidden_size, eps=vc.layer_norm_eps)
        self.post_init()

    def _stack_passes(self, inputs):
        """The layers once per video token; each convolution of the embeddings once per output position, which
        for a convolutional stem is several per token."""
        videos, tokens, _ = _video_token_counts(self.config, inputs)
        passes = [((self.layers, self.post_layernorm), videos * tokens)]
        if videos:
            frames, height, width = (
                videos * inputs["pixel_values_videos"].shape[1],
                *inputs["pixel_values_videos"].shape[-2:],
            )
            passes += [
                ((conv,), frames * positions) for conv, positions in self.embeddings.convolutions(height, width)
            ]
        return passes

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values_videos: torch.FloatTensor,
        video_frame_mask: torch.LongTensor | None = None,
        return_cls_attention: bool = False,
        **kwargs,
    ) -> MCGVideoOutput:
        b, t = pixel_values_videos.shape[:2]
        hidden_states = self.embeddings(pixel_values_videos)  # (b, 1 + t n, d)
        # masks built once here, shared by every layer
        temporal_mask = None if video_frame_mask is None else _padding_mask(video_frame_mask)  # (b, 1, 1, t)
        frame_weights = _frame_weights(video_frame_mask, hidden_states.dtype, 4)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            hidden_states, weights = layer(
                hidden_states,
                temporal_mask,
                frame_weights,
                t,
                need_weights=return_cls_attention and i == last,
                **kwargs,
            )
        hidden_states = self.post_layernorm(hidden_states)
        cls, patches = hidden_states[:, :1], hidden_states[:, 1:].unflatten(1, (t, -1))  # (b, 1, d), (b, t, n, d)
        n = patches.shape[2]
        cls_attention = weights[:, :, 0, 1:].reshape(b, t, -1, n) if return_cls_attention else None  # (b, t, h, n)

        if self.config.vision_config.temporal_pooling == "mean":
            pooled = _masked_frame_mean(patches, _frame_weights(video_frame_mask, patches.dtype, 4))
            tokens = torch.cat([cls, pooled], dim=1)  # (b, 1 + n, d)
            mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        else:
            tokens = hidden_states  # (b, 1 + t n, d)
            frame_mask = (
                video_frame_mask.long()
                if video_frame_mask is not None
                else torch.ones(b, t, dtype=torch.long, device=tokens.device)
            )
            mask = torch.cat([frame_mask.new_ones(b, 1), frame_mask.repeat_interleave(n, dim=1)], dim=1)  # (b, k)
        return MCGVideoOutput(last_hidden_state=tokens, attention_mask=mask, cls_attention=cls_attention)


class MCGTextModel(MCGPreTrainedModel):
    """One BERT-style stack, three roles: the IQM (bidirectional, over `[ENC] question [SEP] (subtitles [SEP])`), the
    cross-modal fusor CFor (bidirectional, cross-attention to the video tokens, no embeddings of its own) and the
    answer generator (causal, cross-attention to the fused evidence, KV cache).

    Token positions count real tokens only (from `attention_mask`), so a left-padded batch encodes each question as
    it would be encoded alone.
    """

    _can_record_outputs = {
        "hidden_states": MCGTextLayer,
        "attentions": OutputRecorder(MCGAttention, index=1, layer_name="self_attn"),
        "cross_attentions": OutputRecorder(MCGAttention, index=1, layer_name="cross_attn"),
    }

    def __init__(
        self, config: MCGConfig, text_config, num_layers=None, cross_attention_hidden_size=None, is_decoder=False
    ):
        super().__init__(config)
        self.is_decoder = is_decoder
        self.embeddings = MCGTextEmbeddings(text_config) if num_layers is None else None
        num_layers = text_config.num_hidden_layers if num_layers is None else num_layers
        self.max_positions = text_config.max_position_embeddings
        self.layers = nn.ModuleList(
            [MCGTextLayer(text_config, cross_attention_hidden_size, layer_idx=i) for i in range(num_layers)]
        )
        self.post_init()

    def get_input_embeddings(self):
        return None if self.embeddings is None else self.embeddings.embed_tokens

    def set_input_embeddings(self, value):
        self.embeddings.embed_tokens = value

    def _positions(self, input_ids, attention_mask, past_length):
        if self.is_decoder or attention_mask is None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device) + past_length
            positions = positions.expand_as(input_ids)
        else:  # count real tokens: left padding does not shift the question
            positions = (attention_mask.long().cumsum(dim=1) - 1).clamp_min(0)
        length = input_ids.shape[1] + (past_length if isinstance(past_length, int) else 0)
        if length > self.max_positions:
            raise ValueError(
                f"Text of {length} tokens is longer than max_position_embeddings={self.max_positions}; truncate it "
                "(the processor's max lengths) or use a config with more positions."
            )
        return positions

    def _self_attention_mask(self, attention_mask, q_len, cache, device):
        """Boolean (b or 1, 1, q, k) mask: padding (bidirectional stacks), and causality over the cache (decoder)."""
        if not self.is_decoder:
            return None if attention_mask is None else _padding_mask(attention_mask)
        past = 0 if cache is None else cache.get_seq_length()
        kv_length = q_len + past
        if cache is not None:
            self_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
            kv_length, _ = self_cache.get_mask_sizes(q_len, 0)
        key_positions = torch.arange(kv_length, device=device)
        query_positions = torch.arange(q_len, device=device) + past
        mask = (key_positions[None, :] <= query_positions[:, None])[None, None]  # (1, 1, q, k)
        if attention_mask is not None:
            b = attention_mask.shape[0]
            if attention_mask.shape[1] == q_len and kv_length > q_len:  # a mask of the new tokens only
                attention_mask = torch.cat([attention_mask.new_ones(b, kv_length - q_len), attention_mask], dim=1)
            mask = mask & _padding_mask(attention_mask[:, :kv_length])  # (b, 1, q, k)
        return mask

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        encoder_hidden_states: torch.FloatTensor | None = None,
        encoder_attention_mask: torch.LongTensor | None = None,
        encoder_index: torch.LongTensor | None = None,
        cache: Cache | None = None,
        return_cls_attention: bool = False,
        **kwargs,
    ) -> MCGTextOutput:
        """`encoder_index` (b,): `encoder_hidden_states` (v, k, d) and `encoder_attention_mask` (v, k) hold each
        distinct video once and row i cross-attends to video `encoder_index[i]`."""
        if inputs_embeds is None:
            past = 0 if cache is None else cache.get_seq_length()
            inputs_embeds = self.embeddings(input_ids, self._positions(input_ids, attention_mask, past))
        self_mask = self._self_attention_mask(attention_mask, inputs_embeds.shape[1], cache, inputs_embeds.device)
        cross_mask = None
        if encoder_attention_mask is not None:
            if encoder_index is not None:
                encoder_attention_mask = encoder_attention_mask[encoder_index]
            cross_mask = _padding_mask(encoder_attention_mask)
        hidden_states, last = inputs_embeds, len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            # tensors positionally: a reentrant checkpoint only treats positional tensors as the layer's inputs
            hidden_states, weights = layer(
                hidden_states,
                self_mask,
                encoder_hidden_states,
                cross_mask,
                encoder_index,
                cache=cache,
                need_weights=return_cls_attention and i == last,
                **kwargs,
            )
        cls_attention = weights[:, :, 0] if return_cls_attention else None  # (b, h, s): [CLS]/[ENC] → every token
        return MCGTextOutput(last_hidden_state=hidden_states, cache=cache, cls_attention=cls_attention)


# ----------------------------------------------------------------------------------------------------------------
# MCGModel: video + question + fusion → fused evidence (the encoder side)
# ----------------------------------------------------------------------------------------------------------------


class MCGModel(MCGPreTrainedModel):
    """IVM + IQM + cross-modal fusor, plus the contrastive projections (`get_video_features`/`get_text_features`)."""

    def __init__(self, config: MCGConfig):
        super().__init__(config)
        self.vision_model = MCGVisionModel(config)
        self.question_model = MCGTextModel(config, config.question_config)
        self.fusor = None
        if config.fusion_type == "cross":
            self.fusor = MCGTextModel(
                config,
                config.question_config,
                num_layers=config.num_fusion_layers,
                cross_attention_hidden_size=config.vision_config.hidden_size,
            )
        self.vision_proj = nn.Linear(config.vision_config.hidden_size, config.projection_dim)
        self.text_proj = nn.Linear(config.question_config.hidden_size, config.projection_dim)
        self.temperature = nn.Parameter(torch.tensor(config.temperature_init))
        self.post_init()

    def _stack_passes(self, inputs, text_passes: int = 1, fusion_passes: int = 1):
        """The IVM once per distinct video, the IQM `text_passes` times over the text, the fusor `fusion_passes`
        times (with `fusion_type="concat"` the IQM again, over each question and its video's tokens)."""
        _, _, output = _video_token_counts(self.config, inputs)
        rows, text = _token_counts(inputs, "input_ids")
        if self.fusor is not None:
            fusion = ((self.fusor,), fusion_passes * text)
        else:
            fusion = ((self.question_model,), fusion_passes * (text + rows * output))
        return [*self.vision_model._stack_passes(inputs), ((self.question_model,), text_passes * text), fusion]

    def get_input_embeddings(self):
        return self.question_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.question_model.set_input_embeddings(value)

    def clamped_temperature(self) -> torch.Tensor:
        """The learnable ICL temperature, clamped to [temperature_min, temperature_max] as the official code does."""
        return self.temperature.clamp(self.config.temperature_min, self.config.temperature_max)

    def encode_video(
        self, pixel_values_videos, video_frame_mask=None, video_index=None, return_cls_attention=False, **kwargs
    ) -> MCGVideoOutput:
        """The IVM. With `video_index` (b,), `pixel_values_videos` holds each distinct video once (v, t, 3, H, W)
        and the outputs are per question: row i is video `video_index[i]`, encoded once however many ask about it."""
        _check_video_inputs(self.config, pixel_values_videos, video_frame_mask)
        video = self.vision_model(
            pixel_values_videos,
            video_frame_mask,
            return_cls_attention=return_cls_attention,
            return_dict=True,
            **kwargs,
        )
        return video if video_index is None else _select_videos(video, video_index)

    def encode_text(self, input_ids, attention_mask=None, return_cls_attention=False, **kwargs) -> MCGTextOutput:
        """The IQM over `[ENC] question [SEP] (subtitles [SEP])` (or a caption, in text mode)."""
        _check_text_inputs(input_ids, attention_mask)
        return self.question_model(
            input_ids, attention_mask, return_cls_attention=return_cls_attention, return_dict=True, **kwargs
        )

    def fuse(
        self, question_states, question_mask, video_states, video_mask, video_index=None, **kwargs
    ) -> tuple[MCGTextOutput, torch.Tensor]:
        """The cross-modal fusor → (its output, the mask of the fused evidence). `fusion_type="concat"` re-encodes
        `[question; video]` with the question encoder's own layers, as the official code does. With `video_index`
        (b,), `video_states` and `video_mask` hold each distinct video once and question i reads video
        `video_index[i]`: the cross-attention projects each video's keys and values once, not once per question."""
        if question_mask is None:
            question_mask = torch.ones(question_states.shape[:2], dtype=torch.long, device=question_states.device)
        if self.fusor is not None:
            fused = self.fusor(
                inputs_embeds=question_states,
                attention_mask=question_mask,
                encoder_hidden_states=video_states,
                encoder_attention_mask=video_mask,
                encoder_index=video_index,
                return_dict=True,
                **kwargs,
            )
            return fused, question_mask
        if video_index is not None:
            video_states, video_mask = video_states[video_index], video_mask[video_index]
        mask = torch.cat([question_mask, video_mask.to(question_mask.dtype)], dim=1)  # (b, s + k)
        fused = self.question_model(
            inputs_embeds=torch.cat([question_states, video_states], dim=1),
            attention_mask=mask,
            return_dict=True,
            **kwargs,
        )
        return fused, mask

    @can_return_tuple
    def get_video_features(self, pixel_values_videos, video_frame_mask=None, **kwargs) -> MCGVideoOutput:
        """The IVM output, with `pooler_output` the L2-normalised video embedding (b, e) in the ICL space."""
        video = self.encode_video(pixel_values_videos, video_frame_mask, **kwargs)
        return replace(video, pooler_output=F.normalize(self.vision_proj(video.last_hidden_state[:, 0]), dim=-1))

    @can_return_tuple
    def get_text_features(self, input_ids, attention_mask=None, **kwargs) -> MCGTextOutput:
        """The IQM output, with `pooler_output` the L2-normalised text embedding (b, e) of the first real token
        ([CLS]/[ENC]) in the ICL space."""
        text = self.encode_text(input_ids, attention_mask, **kwargs)
        first = 0 if attention_mask is None else attention_mask.long().argmax(dim=1)  # left padding: first real token
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        return replace(text, pooler_output=F.normalize(self.text_proj(text.last_hidden_state[rows, first]), dim=-1))

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_frame_mask: torch.LongTensor | None = None,
        video_index: torch.LongTensor | None = None,
        return_cls_attention: bool = False,
        **kwargs,
    ) -> MCGModelOutput:
        """Video (b, t, 3, H, W) + question (b, s) → fused evidence (b, s_f, d) and the unimodal outputs.

        With `video_index` (b,), `pixel_values_videos` holds each distinct video once (v, t, 3, H, W) and question i
        reads video `video_index[i]`; the `video_*` outputs are per question. `return_cls_attention=True` adds the
        IVM's last-layer [CLS] attention that token-level contrast weighs patches with.
        """
        _check_text_inputs(input_ids, attention_mask)
        if video_index is None:
            _check_video_inputs(self.config, pixel_values_videos, video_frame_mask, batch_size=input_ids.shape[0])
        else:
            _check_video_inputs(self.config, pixel_values_videos, video_frame_mask)
            _check_video_index(video_index, input_ids.shape[0], pixel_values_videos.shape[0])
        # per video: the fusor reads each video once through `video_index`; the outputs are picked per question below
        video = self.encode_video(
            pixel_values_videos, video_frame_mask, return_cls_attention=return_cls_attention, **kwargs
        )
        question = self.encode_text(input_ids, attention_mask, **kwargs)
        fused, fused_mask = self.fuse(
            question.last_hidden_state,
            attention_mask,
            video.last_hidden_state,
            video.attention_mask,
            video_index,
            **kwargs,
        )
        if video_index is not None:
            video = _select_videos(video, video_index)
        return MCGModelOutput(
            last_hidden_state=fused.last_hidden_state,
            hidden_states=fused.hidden_states,
            attentions=fused.attentions,
            cross_attentions=fused.cross_attentions,
            attention_mask=fused_mask,
            video_last_hidden_state=video.last_hidden_state,
            video_attention_mask=video.attention_mask,
            video_hidden_states=video.hidden_states,
            video_attentions=video.attentions,
            question_last_hidden_state=question.last_hidden_state,
            question_hidden_states=question.hidden_states,
            question_attentions=question.attentions,
            video_cls_attention=video.cls_attention,
        )

    def idle_contrastive_weights(self, loss_icl, loss_tcl) -> tuple[nn.Module | nn.Parameter, ...]:
        """The contrastive weights no loss of the step used: the temperature without ICL, the projections too
        without TCL (for `_with_idle_parameters`)."""
        if loss_icl is not None:
            return ()
        return (self.temperature,) if loss_tcl is not None else (self.temperature, self.vision_proj, self.text_proj)

    def contrastive_losses(
        self,
        video: MCGVideoOutput,
        video_frame_mask: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        word_ids: torch.Tensor | None = None,
        compute_icl: bool = True,
        compute_tcl: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """ICL and TCL (`losses.py`) between an encoded video and a text encoded here in text mode → (loss_icl,
        loss_tcl, video_embeds (b, e), text_embeds (b, e)). This method only supplies the projected tokens and the
        [CLS] attention maps the losses weigh them with. `word_ids` (b, s) maps tokens to words (-1 = no word);
        without it every real token after the first is its own word."""
        text = self.get_text_features(input_ids, attention_mask, return_cls_attention=compute_tcl, return_dict=True)
        video_embeds = F.normalize(self.vision_proj(video.last_hidden_state[:, 0]), dim=-1)
        text_embeds = text.pooler_output
        loss_icl = loss_tcl = None
        if compute_icl:
            loss_icl = instance_contrastive_loss(video_embeds, text_embeds, self.clamped_temperature())
        if compute_tcl:
            if video.cls_attention is None:
                raise ValueError("TCL needs the video [CLS] attention: encode the video with return_cls_attention.")
            patch_mask = video.attention_mask[:, 1:].bool()
            video_weights = video_patch_weights(video.cls_attention, video_frame_mask, patch_mask)
            patch_tokens = F.normalize(self.vision_proj(video.last_hidden_state[:, 1:]), dim=-1)  # (b, k - 1, e)
            words, word_weights, word_mask = word_tokens_and_weights(
                text.last_hidden_state, text.cls_attention, attention_mask, word_ids
            )
            word_tokens = F.normalize(self.text_proj(words), dim=-1)  # (b, m, e)
            loss_tcl = token_contrastive_loss(
                patch_tokens,
                word_tokens,
                video_weights,
                word_weights,
                patch_mask,
                word_mask,
                self.config.tcl_temperature,
            )
        return loss_icl, loss_tcl, video_embeds, text_embeds


def _with_idle_parameters(loss: torch.Tensor, *idle: nn.Module | nn.Parameter | None) -> torch.Tensor:
    """`loss` plus 0 x each trainable parameter of `idle`, the modules a step's losses did not use: the value is
    unchanged, but every parameter gets a gradient (zeros), which DistributedDataParallel without
    `find_unused_parameters` (the `Trainer`'s choice under gradient checkpointing) requires at every step."""
    parameters = [
        w
        for part in idle
        if part is not None
        for w in ([part] if isinstance(part, nn.Parameter) else part.parameters())
        if w.requires_grad
    ]
    if not parameters or not torch.is_grad_enabled():
        return loss
    return loss + sum(w.sum() for w in parameters) * 0.0


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher forcing: decoder inputs are the labels shifted right, starting with [DEC]; -100 becomes padding."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def _concat_question_and_answer(input_ids, attention_mask, labels, pad_token_id):
    """Pack `[ENC] question [SEP] answer [SEP]` per row (left-aligned) for the auxiliary contrast on QA pairs."""
    rows = [
        torch.cat([q[m.bool()], a[a != -100]]) for q, m, a in zip(input_ids, attention_mask, labels)
    ]  # ragged, one per sample
    length = max(r.shape[0] for r in rows)
    ids = input_ids.new_full((len(rows), length), pad_token_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : row.shape[0]] = row
        mask[i, : row.shape[0]] = 1
    return ids, mask


# ----------------------------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------------------------


class MCGForVideoQuestionAnswering(MCGPreTrainedModel, GenerationMixin):
    """MCG for generative video question answering: fused evidence → answer generator → tied LM head.

    Loss: label-smoothed next-token cross-entropy, summed over a sample's answer tokens and averaged over the batch
    (the official recipe), plus optional ICL/TCL on (video, question + answer) pairs (`icl_loss_weight`,
    `tcl_loss_weight`). `generate()` works as for any transformers encoder–decoder (greedy, beams, sampling, static
    cache; the video and fusion are computed once per question), and `score_choices()` ranks candidate answers.
    """

    _tied_weights_keys = {"lm_head.out_proj.weight": "decoder.embeddings.embed_tokens.weight"}
    accepts_loss_kwargs = False  # the loss is not normalised by Trainer's num_items_in_batch

    def __init__(self, config: MCGConfig):
        super().__init__(config)
        self.mcg = MCGModel(config)
        self.decoder = MCGTextModel(
            config, config.decoder, cross_attention_hidden_size=config.question_config.hidden_size, is_decoder=True
        )
        self.lm_head = MCGLMHead(config.decoder)
        self.post_init()
        for name, value in GENERATION_DEFAULTS.items():
            setattr(self.generation_config, name, value)
        # Trainer's resume compares the keys a checkpoint lacks with these: the tied head is saved as the embedding
        self._keys_to_ignore_on_save = list(self._tied_weights_keys) if config.tie_word_embeddings else None

    def _stack_passes(self, inputs):
        """The encoder's passes, the question + answer pairs through the IQM again with ICL/TCL on, and the answer
        tokens through the generator and its head."""
        _, answer_tokens = _token_counts(inputs, "labels", "decoder_input_ids")
        contrastive = self.config.icl_loss_weight > 0 or self.config.tcl_loss_weight > 0
        pairs = contrastive * (answer_tokens + _token_counts(inputs, "input_ids")[1])
        return [
            *self.mcg._stack_passes(inputs),
            ((self.mcg.question_model,), pairs),
            ((self.decoder, self.lm_head), answer_tokens),
        ]

    def tie_weights(self, missing_keys=None, recompute_mapping=True):
        """Tie the LM head to the answer generator's input embedding. A folder without an answer generator (a
        pre-training checkpoint) has neither of the two: they are then tied as initialised, and only the embedding
        is reported as newly initialised, with the rest of the generator."""
        if missing_keys is not None:
            ((head, embedding),) = self._tied_weights_keys.items()
            if head in missing_keys and embedding in missing_keys:
                missing_keys.discard(head)
                super().tie_weights(missing_keys=None, recompute_mapping=recompute_mapping)
                return
        super().tie_weights(missing_keys=missing_keys, recompute_mapping=recompute_mapping)

    def get_encoder(self, modality=None):
        return self.mcg

    def get_decoder(self):
        return self.decoder

    def create_masks_for_generate(self, config, inputs_embeds, attention_mask, **kwargs):
        """The decoder builds its causal mask over the cache itself (`MCGTextModel._self_attention_mask`, static
        caches included), from the 2-D padding mask `generate()` holds: that mask is passed on unchanged instead of
        transformers' 4-D one."""
        return attention_mask

    def get_input_embeddings(self):
        return self.decoder.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.decoder.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head.out_proj

    def set_output_embeddings(self, value):
        self.lm_head.out_proj = value

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_frame_mask: torch.LongTensor | None = None,
        video_index: torch.LongTensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.LongTensor | None = None,
        encoder_outputs: MCGModelOutput | tuple | None = None,
        cache: Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> MCGVideoQuestionAnsweringOutput:
        r"""
        input_ids (`(b, s)`): `[ENC] question [SEP] (subtitles [SEP])` from [`MCGProcessor`].
        pixel_values_videos (`(b, t, 3, H, W)`), video_frame_mask (`(b, t)`, 1 = real frame).
        video_index (`(b,)`, *optional*): question i reads video `video_index[i]` of `pixel_values_videos`, which
            then holds each distinct video once (`(v, t, 3, H, W)`): one IVM pass per video, not per question.
        labels (`(b, s_a)`): answer tokens + `[SEP]`, padding -100; decoder inputs are built by shifting them right.
        """
        config = self.config
        contrast = labels is not None and (config.icl_loss_weight > 0 or config.tcl_loss_weight > 0)
        if encoder_outputs is None:
            encoder_outputs = self.mcg(
                input_ids,
                attention_mask,
                pixel_values_videos,
                video_frame_mask,
                video_index,
                return_cls_attention=contrast and config.tcl_loss_weight > 0,
                return_dict=True,
                **kwargs,
            )
        elif not isinstance(encoder_outputs, MCGModelOutput):  # a tuple: its first entry is the evidence
            evidence = encoder_outputs[0]
            same_length = attention_mask is not None and attention_mask.shape[1] == evidence.shape[1]
            encoder_outputs = MCGModelOutput(
                last_hidden_state=evidence, attention_mask=attention_mask if same_length else None
            )
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
        if decoder_input_ids is None:
            raise ValueError("Pass `labels` (training) or `decoder_input_ids`, or call `generate()` to answer.")
        if use_cache is None:
            use_cache = config.decoder.use_cache and labels is None and not self.training
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))

        decoded = self.decoder(
            decoder_input_ids,
            decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=encoder_outputs.attention_mask,
            cache=cache if use_cache else None,
            return_dict=True,
            **kwargs,
        )
        logits = self.lm_head(decoded.last_hidden_state)  # (b, s_a, v)

        loss = loss_lm = loss_icl = loss_tcl = None
        if labels is not None:
            loss = loss_lm = answer_loss(logits, labels, config.label_smoothing)
            if contrast:
                loss_icl, loss_tcl = self._question_answer_contrast(
                    encoder_outputs, video_frame_mask, video_index, input_ids, attention_mask, labels
                )
            for weight, part in ((config.icl_loss_weight, loss_icl), (config.tcl_loss_weight, loss_tcl)):
                if part is not None:
                    loss = loss + weight * part
            loss = _with_idle_parameters(loss, *self.mcg.idle_contrastive_weights(loss_icl, loss_tcl))

        output = MCGVideoQuestionAnsweringOutput(
            loss=loss,
            logits=logits,
            cache=decoded.cache,
            decoder_hidden_states=decoded.hidden_states,
            decoder_attentions=decoded.attentions,
            cross_attentions=decoded.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
            loss_lm=loss_lm,
            loss_icl=loss_icl,
            loss_tcl=loss_tcl,
        )
        output.encoder_outputs = encoder_outputs
        return output

    def _question_answer_contrast(
        self, encoder_outputs, video_frame_mask, video_index, input_ids, attention_mask, labels
    ):
        """The auxiliary ICL/TCL on (video, `[ENC] question [SEP] answer [SEP]`) pairs → (loss_icl, loss_tcl)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        qa_ids, qa_mask = _concat_question_and_answer(input_ids, attention_mask, labels, self.config.pad_token_id)
        video = MCGVideoOutput(
            last_hidden_state=encoder_outputs.video_last_hidden_state,
            attention_mask=encoder_outputs.video_attention_mask,
            cls_attention=encoder_outputs.video_cls_attention,
        )
        if video_index is not None and video_frame_mask is not None:
            video_frame_mask = video_frame_mask[video_index]  # (b, t), like the per-question video outputs
        loss_icl, loss_tcl, _, _ = self.mcg.contrastive_losses(
            video,
            video_frame_mask,
            qa_ids,
            qa_mask,
            compute_icl=self.config.icl_loss_weight > 0,
            compute_tcl=self.config.tcl_loss_weight > 0,
        )
        return loss_icl, loss_tcl

    @torch.no_grad()
    def score_choices(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_frame_mask: torch.LongTensor | None = None,
        choice_labels: torch.LongTensor | None = None,
        encoder_outputs: MCGModelOutput | None = None,
        video_index: torch.LongTensor | None = None,
        **kwargs,
    ) -> torch.FloatTensor:
        """Rank candidate answers by their length-normalised log-likelihood under the answer generator.

        Args:
            choice_labels (`(b, c, s_a)`): candidates tokenised like `labels` (tokens + `[SEP]`, padding -100), as
                [`MCGProcessor`] returns for `choices=`; an all -100 row is a missing candidate.

        Returns `(b, c)` mean log-probability per answer token (-inf for missing candidates). The video and fusion
        run once per question; all candidates of all questions go through the decoder in one batch.
        """
        if choice_labels is None or choice_labels.ndim != 3:
            raise ValueError(
                "choice_labels must have shape (batch, candidates, tokens): pass `choices=` to the processor."
            )
        if encoder_outputs is None:
            encoder_outputs = self.mcg(
                input_ids, attention_mask, pixel_values_videos, video_frame_mask, video_index, return_dict=True
            )
        b, c, length = choice_labels.shape
        if encoder_outputs.last_hidden_state.shape[0] != b:
            raise ValueError(
                f"choice_labels has {b} questions but the inputs have {encoder_outputs.last_hidden_state.shape[0]}."
            )
        labels = choice_labels.reshape(b * c, length)
        decoded = self.decoder(
            shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id),
            encoder_hidden_states=encoder_outputs.last_hidden_state.repeat_interleave(c, dim=0),  # (b c, s_f, d)
            encoder_attention_mask=encoder_outputs.attention_mask.repeat_interleave(c, dim=0),  # (b c, s_f)
            return_dict=True,
        )
        log_probs = self.lm_head(decoded.last_hidden_state).float().log_softmax(dim=-1)  # (b c, s_a, v)
        valid = labels != -100
        token_log_probs = log_probs.gather(-1, labels.clamp_min(0)[..., None]).squeeze(-1) * valid  # (b c, s_a)
        counts = valid.sum(dim=1)
        scores = token_log_probs.sum(dim=1) / counts.clamp_min(1)
        return scores.masked_fill(counts == 0, float("-inf")).view(b, c)


class MCGForPreTraining(MCGPreTrainedModel):
    """MCG pre-training on video–caption pairs: ICL + TCL + MLM (the official recipe), optional VTM.

    MLM re-reads the video through the cross-modal fusor (as the official code's fusion pass), so pre-training
    trains every encoder-side weight that [`MCGForVideoQuestionAnswering`] fine-tunes.
    """

    accepts_loss_kwargs = False  # each loss part is a batch mean; Trainer must not rescale by num_items_in_batch

    def __init__(self, config: MCGConfig):
        super().__init__(config)
        self.mcg = MCGModel(config)
        self.mlm_head = MCGLMHead(config.question_config)  # untied, as the official code
        self.vtm_head = nn.Linear(config.question_config.hidden_size, 2) if config.vtm_loss_weight > 0 else None
        self.post_init()

    def _stack_passes(self, inputs):
        """The captions through the IQM for the contrastive embeddings, again masked for MLM (then fused, and the
        MLM head) and again for VTM (then fused for the positive pairs and both kinds of hard negatives)."""
        rows, text = _token_counts(inputs, "input_ids")
        mlm, vtm = self.config.mlm_loss_weight > 0, self._runs_vtm(rows)
        passes = self.mcg._stack_passes(inputs, text_passes=1 + mlm + vtm, fusion_passes=mlm + 3 * vtm)
        return passes + [((self.mlm_head,), text * mlm)]

    def _runs_vtm(self, batch_size: int) -> bool:
        """VTM runs when it has a head and the batch more than one pair: one pair has no in-batch negative."""
        return self.vtm_head is not None and batch_size > 1

    def get_input_embeddings(self):
        return self.mcg.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.mcg.set_input_embeddings(value)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_frame_mask: torch.LongTensor | None = None,
        word_ids: torch.LongTensor | None = None,
        special_tokens_mask: torch.LongTensor | None = None,
        return_loss: bool = True,
        **kwargs,
    ) -> MCGPreTrainingOutput:
        r"""
        input_ids (`(b, s)`): captions. word_ids (`(b, s)`, optional): token → word index for TCL (-1: no word).
        special_tokens_mask (`(b, s)`, optional): 1 where MLM must not mask (default: first token, [SEP], padding).
        """
        config = self.config
        _check_text_inputs(input_ids, attention_mask)
        _check_video_inputs(config, pixel_values_videos, video_frame_mask, batch_size=input_ids.shape[0])
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        # training draws MLM masks and VTM negatives from the global RNG; evaluation masks each caption from its own
        # tokens and draws VTM negatives from a fixed seed, so that evaluating a checkpoint twice, or in other
        # batches, gives the same loss
        generator = None if self.training else torch.Generator(input_ids.device).manual_seed(0)
        video = self.mcg.encode_video(
            pixel_values_videos, video_frame_mask, return_cls_attention=config.tcl_loss_weight > 0, **kwargs
        )
        loss_icl, loss_tcl, video_embeds, text_embeds = self.mcg.contrastive_losses(
            video,
            video_frame_mask,
            input_ids,
            attention_mask,
            word_ids,
            compute_icl=config.icl_loss_weight > 0,
            compute_tcl=config.tcl_loss_weight > 0,
        )

        loss_mlm = logits_mlm = fused = None
        if config.mlm_loss_weight > 0:
            if special_tokens_mask is None:
                special_tokens_mask = (input_ids == config.eos_token_id) | ~attention_mask.bool()
                special_tokens_mask[:, 0] = True
            masking = mask_tokens_for_mlm if self.training else mask_each_caption_for_mlm
            masked_ids, mlm_labels = masking(
                input_ids,
                ~special_tokens_mask.bool(),
                config.mask_token_id,
                config.question_config.vocab_size,
                config.mlm_probability,
            )
            masked = self.mcg.encode_text(masked_ids, attention_mask)
            fused, _ = self.mcg.fuse(
                masked.last_hidden_state, attention_mask, video.last_hidden_state, video.attention_mask, **kwargs
            )
            logits_mlm = self.mlm_head(fused.last_hidden_state[:, : input_ids.shape[1]])  # (b, s, v): the caption
            if bool((mlm_labels != -100).any()):
                loss_mlm = F.cross_entropy(logits_mlm.float().transpose(1, 2), mlm_labels, ignore_index=-100)
            else:  # nothing masked in this batch (tiny captions): a zero that keeps the graph, not an empty mean's NaN
                loss_mlm = logits_mlm.sum() * 0.0

        loss_vtm = logits_vtm = None
        if self._runs_vtm(input_ids.shape[0]):
            loss_vtm, logits_vtm = self._video_text_matching(
                video, input_ids, attention_mask, video_embeds, text_embeds, generator
            )

        loss = None
        if return_loss:
            parts = [
                (config.icl_loss_weight, loss_icl),
                (config.tcl_loss_weight, loss_tcl),
                (config.mlm_loss_weight, loss_mlm),
                (config.vtm_loss_weight, loss_vtm),
            ]
            loss = sum(weight * part for weight, part in parts if part is not None)
            loss = _with_idle_parameters(
                loss,
                *self.mcg.idle_contrastive_weights(loss_icl, loss_tcl),
                None if loss_mlm is not None else self.mlm_head,
                None if loss_vtm is not None else self.vtm_head,
                None if loss_mlm is not None or loss_vtm is not None else self.mcg.fusor,
            )
        return MCGPreTrainingOutput(
            loss=loss,
            loss_icl=loss_icl,
            loss_tcl=loss_tcl,
            loss_mlm=loss_mlm,
            loss_vtm=loss_vtm,
            video_embeds=video_embeds,
            text_embeds=text_embeds,
            logits_mlm=logits_mlm,
            logits_vtm=logits_vtm,
            hidden_states=None if fused is None else fused.hidden_states,
            attentions=None if fused is None else fused.attentions,
            cross_attentions=None if fused is None else fused.cross_attentions,
            video_hidden_states=video.hidden_states,
            video_attentions=video.attentions,
        )

    def _video_text_matching(self, video, input_ids, attention_mask, video_embeds, text_embeds, generator=None):
        """VTM with in-batch hard negatives: each video gets a similar-but-wrong caption and each caption a
        similar-but-wrong video, drawn by contrastive similarity; the fused first token classifies match/no-match."""
        similarity = video_embeds @ text_embeds.t()  # (b, b)
        negative_text = sample_hard_negatives(similarity, generator)  # (b,) caption index for each video
        negative_video = sample_hard_negatives(similarity.t(), generator)  # (b,) video index for each caption
        text_states = self.mcg.encode_text(input_ids, attention_mask).last_hidden_state
        tokens, token_mask = video.last_hidden_state, video.attention_mask
        videos = torch.cat([tokens, tokens, tokens[negative_video]])
        video_masks = torch.cat([token_mask, token_mask, token_mask[negative_video]])
        texts = torch.cat([text_states, text_states[negative_text], text_states])  # (3b, s, d)
        text_masks = torch.cat([attention_mask, attention_mask[negative_text], attention_mask])
        fused, _ = self.mcg.fuse(texts, text_masks, videos, video_masks)
        logits = self.vtm_head(fused.last_hidden_state[:, 0])  # (3b, 2)
        b = input_ids.shape[0]
        targets = torch.cat([torch.ones(b), torch.zeros(2 * b)]).long().to(logits.device)
        return F.cross_entropy(logits.float(), targets), logits


__all__ = [
    "MCGPreTrainedModel",
    "MCGModel",
    "MCGForVideoQuestionAnswering",
    "MCGForPreTraining",
    "MCGModelOutput",
    "MCGVideoOutput",
    "MCGTextOutput",
    "MCGVideoQuestionAnsweringOutput",
    "MCGPreTrainingOutput",
]
