"""MCG: Multi-granularity Contrastive cross-modal collaborative Generation for end-to-end long-term video QA
(arXiv 2410.09379), as a transformers model.

Read top to bottom in forward order: attention → intra-video module (IVM, a divided space-time TimeSformer) →
intra-question module (IQM, a BERT encoder) → cross-modal fusor → answer generator (BERT decoder with
cross-attention) → the heads: [`MCGModel`] (fused evidence), [`MCGForVideoQuestionAnswering`] (generation, multiple
choice scoring), [`MCGForPreTraining`] (ICL + TCL + MLM, optional VTM).

Dimension legend used in shape comments:
    b batch    t frames    n patches per frame    k video tokens    s text tokens    d hidden size
    h heads    e projection size    c answer candidates    v vocabulary
"""

from dataclasses import dataclass

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
from transformers.utils import ModelOutput, logging

from .configuration_mcg import MCGConfig
from .losses import (
    aggregate_words,
    clipped_importance,
    instance_contrastive_loss,
    mask_tokens_for_mlm,
    sample_hard_negatives,
    token_contrastive_loss,
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


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class MCGVisionOutput(ModelOutput):
    """
    Args:
        last_hidden_state (`(b, k, d)`): video tokens after the final norm; k = 1 + n with `temporal_pooling="mean"`
            ([CLS; frame-averaged patches]), k = 1 + t * n with `"none"` ([CLS; frame 0 patches; frame 1 ...]).
        attention_mask (`(b, k)`): 1 for tokens of real frames, 0 for tokens of padded frames.
        cls_attention (`(b, t, h, n)`, *optional*): last block's spatial [CLS]→patch attention (TCL weights).
        hidden_states (`tuple` of `(b, 1 + t * n, d)`, *optional*): embeddings and every block's output.
        attentions (`tuple` of `(b * t, h, 1 + n, 1 + n)`, *optional*): every block's spatial attention.
    """

    last_hidden_state: torch.FloatTensor | None = None
    attention_mask: torch.LongTensor | None = None
    cls_attention: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MCGModelOutput(ModelOutput):
    """
    Output of [`MCGModel`], the encoder side of MCG.

    Args:
        last_hidden_state (`(b, s_f, d)`): the fused evidence F the answer generator cross-attends to. With
            `fusion_type="cross"` s_f = s (question tokens that read the video); with `"concat"` s_f = s + k.
        attention_mask (`(b, s_f)`): mask of F (generation keeps passing the *question* mask; the model uses this).
        video_last_hidden_state (`(b, k, d_v)`), video_attention_mask (`(b, k)`): IVM output.
        question_last_hidden_state (`(b, s, d)`): IQM output before fusion.
        video_cls_attention (`(b, t, h, n)`), question_cls_attention (`(b, h, s)`), *optional*: last-layer [CLS]
            attention, returned when token-level contrast needs it.
        video_hidden_states, question_hidden_states, fusion_hidden_states (`tuple`, *optional*): per-layer states.
        video_attentions, question_attentions, fusion_attentions, fusion_cross_attentions (`tuple`, *optional*):
            per-layer attention maps (eager attention).
    """

    last_hidden_state: torch.FloatTensor | None = None
    attention_mask: torch.LongTensor | None = None
    video_last_hidden_state: torch.FloatTensor | None = None
    video_attention_mask: torch.LongTensor | None = None
    question_last_hidden_state: torch.FloatTensor | None = None
    video_cls_attention: torch.FloatTensor | None = None
    question_cls_attention: torch.FloatTensor | None = None
    video_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    question_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    fusion_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    video_attentions: tuple[torch.FloatTensor, ...] | None = None
    question_attentions: tuple[torch.FloatTensor, ...] | None = None
    fusion_attentions: tuple[torch.FloatTensor, ...] | None = None
    fusion_cross_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MCGVideoQuestionAnsweringOutput(Seq2SeqLMOutput):
    """
    [`Seq2SeqLMOutput`] plus the loss parts. `loss` = `loss_lm` + icl_loss_weight · `loss_icl` +
    tcl_loss_weight · `loss_tcl`; `logits` is (b, s_a, v); `encoder_outputs` keeps the [`MCGModelOutput`].
    """

    loss_lm: torch.FloatTensor | None = None
    loss_icl: torch.FloatTensor | None = None
    loss_tcl: torch.FloatTensor | None = None
    encoder_outputs: MCGModelOutput | None = None


@dataclass
class MCGPreTrainingOutput(ModelOutput):
    """
    Args:
        loss: weighted sum of the parts below.
        loss_icl, loss_tcl, loss_mlm, loss_vtm: the parts (None when their weight is 0).
        video_embeds, text_embeds (`(b, e)`): L2-normalised contrastive embeddings.
        logits_mlm (`(b, s, v)`, *optional*): MLM predictions at the caption positions.
        logits_vtm (`(3b, 2)`, *optional*): match / no-match logits for positives, then both kinds of negatives.
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


# ----------------------------------------------------------------------------------------------------------------
# Attention: written once, kernel chosen by `config._attn_implementation`
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


class MCGAttention(nn.Module):
    """Multi-head attention for self- and cross-attention, with the encoder–decoder KV cache.

    Cross-attention keys/values are computed at the first generation step and then read from the cache.
    """

    def __init__(self, config, hidden_size, num_heads, kv_hidden_size=None, dropout=0.0, bias=True, layer_idx=None):
        super().__init__()
        self.config = config  # the top-level config: the kernel is read from config._attn_implementation
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = dropout
        self.is_causal = False  # causality always comes from an explicit mask
        self.layer_idx = layer_idx
        kv_hidden_size = kv_hidden_size or hidden_size
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.k_proj = nn.Linear(kv_hidden_size, hidden_size, bias=bias)
        self.v_proj = nn.Linear(kv_hidden_size, hidden_size, bias=bias)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(b, l, d) → (b, h, l, dh); (b, l, g, d) → (b, g h, l, dh): a view, the middle dims folded into the heads."""
        return x.view(x.shape[0], x.shape[1], -1, self.head_dim).transpose(1, 2)

    def _attend(self, query, key, value, attention_mask, output_attentions: bool):
        """Run the attention kernel on (b, h, l, dh) heads → output (b, l, h, dh), weights. Attention maps come from
        eager; otherwise the kernel named by `config._attn_implementation`."""
        kernel = eager_attention_forward
        if not output_attentions:
            kernel = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        return kernel(
            self,
            query,
            key,
            value,
            attention_mask,
            scaling=self.scaling,
            dropout=self.dropout if self.training else 0.0,
        )

    def self_attention(self, hidden_states, attention_mask=None, output_attentions=False, project=True):
        """Self-attention along dim 1 of `hidden_states` (b, l, [g,] d), no cache.

        With a middle dim g, each of its g positions is an independent sequence over l: they are folded into the
        heads, so (b, t, n, d) attends over the t frames of every patch location through (b, n h, t, dh) views of the
        projections, with no permute or copy. The mask must broadcast to (b, g h, l, l). `project=False` returns the
        heads merged back to (b, l, [g,] d) before `out_proj`.
        """
        device_type = hidden_states.device.type
        if torch.is_autocast_enabled(device_type):
            # cast once for the three projections: autocast would cast (and keep for backward) one copy per projection
            hidden_states = hidden_states.to(torch.get_autocast_dtype(device_type))
        query, key, value = (self._heads(proj(hidden_states)) for proj in (self.q_proj, self.k_proj, self.v_proj))
        output, weights = self._attend(query, key, value, attention_mask, output_attentions)  # (b, l, [g] h, dh)
        output = output.reshape(hidden_states.shape[:-1] + (-1,))  # (b, l, [g,] h dh)
        return (self.out_proj(output) if project else output), weights

    def forward(self, hidden_states, key_value_states=None, attention_mask=None, cache=None, output_attentions=False):
        b, q_len, _ = hidden_states.shape
        query = self._heads(self.q_proj(hidden_states))
        is_cross = key_value_states is not None
        layer_cache, reuse_cross = None, False
        if cache is not None:
            if isinstance(cache, EncoderDecoderCache):
                reuse_cross = is_cross and cache.is_updated.get(self.layer_idx, False)
                layer_cache = cache.cross_attention_cache if is_cross else cache.self_attention_cache
            else:
                layer_cache = cache
        if reuse_cross:
            key, value = layer_cache.layers[self.layer_idx].keys, layer_cache.layers[self.layer_idx].values
        else:
            source = key_value_states if is_cross else hidden_states
            key, value = self._heads(self.k_proj(source)), self._heads(self.v_proj(source))
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)
                if is_cross:
                    cache.is_updated[self.layer_idx] = True
        output, weights = self._attend(query, key, value, attention_mask, output_attentions)  # (b, q, h, dh)
        output = output.reshape(b, q_len, -1)  # (b, q, h * dh)
        return self.out_proj(output), weights


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


def _masked_frame_mean(x: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the frame axis (dim 1) of x (b, t, ...) counting only real frames."""
    if frame_mask is None:
        return x.mean(dim=1)
    weights = frame_mask.to(x.dtype).view(*frame_mask.shape, *([1] * (x.ndim - 2)))  # (b, t, 1, ...)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def _join_tokens(cls: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """[CLS] (b, 1, d) and patches (b, t, n, d) → video tokens (b, 1 + t n, d): [CLS, frame 0 patches, frame 1, ...]."""
    b, t, n, d = patches.shape
    return torch.cat([cls, patches.reshape(b, t * n, d)], dim=1)


# ----------------------------------------------------------------------------------------------------------------
# IVM: intra-video module (TimeSformer, divided space-time attention)
# ----------------------------------------------------------------------------------------------------------------


class MCGVisionEmbeddings(nn.Module):
    """Patch embedding + [CLS] + learned spatial position embedding + learned temporal embedding (zeros at init).

    Both position embeddings are resized on the fly, so any frame count and any multiple-of-patch resolution works.
    """

    def __init__(self, vision_config):
        super().__init__()
        d = vision_config.hidden_size
        self.config = vision_config
        self.patch_embedding = nn.Conv2d(
            vision_config.num_channels, d, kernel_size=vision_config.patch_size, stride=vision_config.patch_size
        )
        self.class_embedding = nn.Parameter(torch.zeros(d))
        self.position_embedding = nn.Parameter(torch.zeros(1, 1 + vision_config.num_patches, d))
        self.temporal_embedding = nn.Parameter(torch.zeros(1, vision_config.num_frames, d))
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

    def embed(self, pixel_values_videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, t, c, H, W) → [CLS] (b, 1, d) and patches (b, t, n, d), kept apart (the encoder layers' layout)."""
        b, t = pixel_values_videos.shape[:2]
        frames = pixel_values_videos.flatten(0, 1).to(self.patch_embedding.weight.dtype)  # (b t, c, H, W)
        patches = self.patch_embedding(frames)  # (b t, d, gh, gw)
        grid_h, grid_w = patches.shape[-2:]
        # (b t, n, d), made contiguous once here: otherwise the conv's channels-first strides would be inherited by
        # every later elementwise result and each layer norm would copy its input
        patches = patches.flatten(2).transpose(1, 2).contiguous()
        position = self._spatial_position_embedding(grid_h, grid_w)
        patches = patches + position[:, 1:]
        n, d = patches.shape[1:]
        patches = patches.view(b, t, n, d) + self._temporal_embedding(t)[:, :, None]  # (b, t, n, d)
        cls = (self.class_embedding + position[0, 0]).expand(b, 1, d)  # (b, 1, d)
        return self.dropout(cls), self.dropout(patches)

    def forward(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        return _join_tokens(*self.embed(pixel_values_videos))  # (b, 1 + t n, d)


class _SubBlockCheckpointingLayer(GradientCheckpointingLayer):
    """A `GradientCheckpointingLayer` that checkpoints parts of its forward instead of the whole call.

    `activation_checkpointing_enable()` (or `gradient_checkpointing_enable()`) still switches it like any other layer:
    it sets the flag and the checkpoint function, and counts the layer for `every_n_layers`. But recomputing a whole
    layer in backward holds all of its activations at once; a subclass passes each part through `_checkpoint`, so only
    one part's activations are live during its recompute.
    """

    def __init_subclass__(cls, **kwargs):
        # skip GradientCheckpointingLayer's hook: it wraps `forward` in one more checkpoint, and a recomputed whole
        # layer would recompute its checkpointed parts a second time
        super(GradientCheckpointingLayer, cls).__init_subclass__(**kwargs)

    def _checkpoint(self, part, *args):
        """part(*args), through the checkpoint function that transformers installed (so `use_reentrant`, offloading
        etc. apply) when checkpointing is on, in training, with grad enabled: as GradientCheckpointingLayer does.
        Tensors that need gradients must come in `args` (positional, for `use_reentrant=True`)."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(part, *args)
        return part(*args)


class MCGVisionEncoderLayer(_SubBlockCheckpointingLayer):
    """Divided space-time block: temporal attention (each patch location over frames) → spatial attention (each
    frame, with the [CLS] replicated per frame and averaged back) → MLP; pre-norm, stochastic depth.

    The [CLS] (b, 1, d) and the patches (b, t, n, d) travel as two tensors: every position-wise op (norms,
    projections, MLP) then runs on contiguous tensors, the temporal attention reads (b, n h, t, dh) views of its
    projections without any permute, and the two only meet in the spatial attention's input.

    Gradient checkpointing recomputes the three sub-blocks one at a time, not the whole block: the backward then
    holds one sub-block's activations instead of the block's, for the cost of keeping each sub-block's input.
    """

    def __init__(self, config, drop_path_rate: float):
        super().__init__()
        vc = config.vision_config
        d, heads = vc.hidden_size, vc.num_attention_heads
        self.divided = vc.attention_type == "divided_space_time"
        if self.divided:
            self.temporal_layer_norm = nn.LayerNorm(d, eps=vc.layer_norm_eps)
            self.temporal_attn = MCGAttention(
                config, d, heads, dropout=vc.attention_probs_dropout_prob, bias=vc.qkv_bias
            )
            self.temporal_fc = nn.Linear(d, d)
        self.layer_norm1 = nn.LayerNorm(d, eps=vc.layer_norm_eps)
        self.spatial_attn = MCGAttention(config, d, heads, dropout=vc.attention_probs_dropout_prob, bias=vc.qkv_bias)
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

    def _temporal_block(self, patches, frame_mask):
        """Temporal attention sub-block: patches (b, t, n, d) → (b, t, n, d); the [CLS] does not take part."""
        # dim 1 of (b, t, n, d) is the sequence; the n patch locations are folded into the attention heads
        temporal_mask = None if frame_mask is None else _padding_mask(frame_mask)  # (b, 1, 1, t)
        x, _ = self.temporal_attn.self_attention(
            self.temporal_layer_norm(patches), attention_mask=temporal_mask, project=False
        )  # (b, t, n, d)
        return patches + self.drop_path(self._temporal_output(x))  # (b, t, n, d)

    def _spatial_block(self, patches, cls, frame_mask, output_attentions: bool):
        """Spatial attention sub-block → (patches, cls, attention weights or None). Each frame is one sequence
        [CLS; its patches]; the per-frame [CLS] outputs are averaged over the real frames."""
        b, t, n, d = patches.shape
        # the [CLS] is normalised once and replicated per frame
        x = torch.cat(
            [self.layer_norm1(cls)[:, None].expand(b, t, 1, d), self.layer_norm1(patches)], dim=2
        )  # (b, t, 1 + n, d)
        x, weights = self.spatial_attn.self_attention(
            x.view(b * t, 1 + n, d), output_attentions=output_attentions
        )  # (b t, 1 + n, d)
        x = self.dropout(x).view(b, t, 1 + n, d)
        cls_update = _masked_frame_mean(x[:, :, :1], frame_mask)  # (b, 1, d)
        cls_update, patch_update = self.drop_path(cls_update, x[:, :, 1:])  # (b, 1, d), (b, t, n, d)
        return patches + patch_update, cls + cls_update, weights

    def _mlp_block(self, patches, cls):
        """MLP sub-block → (patches, cls); one stochastic-depth draw for both."""
        cls_update, patch_update = self.drop_path(
            self.dropout(self.mlp(self.layer_norm2(cls))), self.dropout(self.mlp(self.layer_norm2(patches)))
        )  # (b, 1, d), (b, t, n, d)
        return patches + patch_update, cls + cls_update

    def forward(self, patches, cls, frame_mask=None, output_attentions: bool = False):
        """patches (b, t, n, d), cls (b, 1, d) → (patches, cls, spatial attention weights or None)."""
        if self.divided:
            patches = self._checkpoint(self._temporal_block, patches, frame_mask)
        patches, cls, weights = self._checkpoint(self._spatial_block, patches, cls, frame_mask, output_attentions)
        patches, cls = self._checkpoint(self._mlp_block, patches, cls)
        return patches, cls, weights


class MCGVisionTransformer(nn.Module):
    """The IVM: (b, t, 3, H, W) frames → video tokens (see [`MCGVisionOutput`])."""

    def __init__(self, config):
        super().__init__()
        vc = config.vision_config
        self.config = vc
        self.embeddings = MCGVisionEmbeddings(vc)
        rates = [vc.drop_path_rate * i / max(vc.num_hidden_layers - 1, 1) for i in range(vc.num_hidden_layers)]
        self.layers = nn.ModuleList([MCGVisionEncoderLayer(config, rate) for rate in rates])
        self.post_layernorm = nn.LayerNorm(vc.hidden_size, eps=vc.layer_norm_eps)

    def forward(
        self,
        pixel_values_videos: torch.Tensor,
        video_frame_mask: torch.Tensor | None = None,
        output_cls_attention: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> MCGVisionOutput:
        b, t = pixel_values_videos.shape[:2]
        cls, patches = self.embeddings.embed(pixel_values_videos)  # (b, 1, d), (b, t, n, d)
        n = patches.shape[2]
        all_states, all_attentions, cls_attention = [], [], None
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                all_states.append(_join_tokens(cls, patches))
            wants_weights = output_attentions or (output_cls_attention and i == len(self.layers) - 1)
            patches, cls, weights = layer(
                patches, cls, frame_mask=video_frame_mask, output_attentions=wants_weights
            )  # (b, t, n, d), (b, 1, d)
            if output_attentions:
                all_attentions.append(weights)
            if output_cls_attention and i == len(self.layers) - 1:
                cls_attention = weights[:, :, 0, 1:].reshape(b, t, -1, n)  # (b, t, h, n)
        cls, patches = self.post_layernorm(cls), self.post_layernorm(patches)
        if output_hidden_states:
            all_states.append(_join_tokens(cls, patches))

        if self.config.temporal_pooling == "mean":
            tokens = torch.cat([cls, _masked_frame_mean(patches, video_frame_mask)], dim=1)  # (b, 1 + n, d)
            mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        else:
            tokens = _join_tokens(cls, patches)  # (b, 1 + t n, d)
            frame_mask = (
                video_frame_mask.long()
                if video_frame_mask is not None
                else torch.ones(b, t, dtype=torch.long, device=tokens.device)
            )
            mask = torch.cat([frame_mask.new_ones(b, 1), frame_mask.repeat_interleave(n, dim=1)], dim=1)  # (b, 1+t n)
        return MCGVisionOutput(
            last_hidden_state=tokens,
            attention_mask=mask,
            cls_attention=cls_attention,
            hidden_states=tuple(all_states) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )


# ----------------------------------------------------------------------------------------------------------------
# IQM, fusor and answer generator: BERT-style layers (post-norm, as BERT/BLIP so their weights load)
# ----------------------------------------------------------------------------------------------------------------


class MCGTextEmbeddings(nn.Module):
    """Word + absolute position embeddings → LayerNorm → dropout (no token types, as BLIP's MED BERT)."""

    def __init__(self, text_config):
        super().__init__()
        self.embed_tokens = nn.Embedding(text_config.vocab_size, text_config.hidden_size, text_config.pad_token_id)
        self.position_embedding = nn.Embedding(text_config.max_position_embeddings, text_config.hidden_size)
        self.layer_norm = nn.LayerNorm(text_config.hidden_size, eps=text_config.layer_norm_eps)
        self.dropout = nn.Dropout(text_config.hidden_dropout_prob)
        self.max_positions = text_config.max_position_embeddings

    def forward(self, input_ids: torch.Tensor, past_length: int = 0) -> torch.Tensor:
        s = input_ids.shape[1]
        if past_length + s > self.max_positions:
            raise ValueError(
                f"Text of {past_length + s} tokens is longer than max_position_embeddings={self.max_positions}; "
                "truncate it (the processor's max lengths) or use a config with more positions."
            )
        positions = torch.arange(past_length, past_length + s, device=input_ids.device)
        return self.dropout(self.layer_norm(self.embed_tokens(input_ids) + self.position_embedding(positions)))


class MCGTextLayer(GradientCheckpointingLayer):
    """Self-attention → (optional) cross-attention → FFN, each with a post-norm residual.

    The same block serves the question encoder (bidirectional, no cross-attention), the cross-modal fusor
    (bidirectional, cross-attention to the video) and the answer generator (causal, cross-attention to the evidence).
    """

    def __init__(self, config, text_config, cross_attention_hidden_size=None, layer_idx=None):
        super().__init__()
        d, heads, p = (
            text_config.hidden_size,
            text_config.num_attention_heads,
            text_config.attention_probs_dropout_prob,
        )
        self.self_attn = MCGAttention(config, d, heads, dropout=p, layer_idx=layer_idx)
        self.layer_norm1 = nn.LayerNorm(d, eps=text_config.layer_norm_eps)
        self.has_cross_attention = cross_attention_hidden_size is not None
        if self.has_cross_attention:
            self.cross_attn = MCGAttention(
                config, d, heads, kv_hidden_size=cross_attention_hidden_size, dropout=p, layer_idx=layer_idx
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
        cache=None,
        output_attentions=False,
    ):
        residual, self_weights = self.self_attn(
            hidden_states, attention_mask=attention_mask, cache=cache, output_attentions=output_attentions
        )
        hidden_states = self.layer_norm1(hidden_states + self.dropout(residual))
        cross_weights = None
        if self.has_cross_attention:
            residual, cross_weights = self.cross_attn(
                hidden_states,
                key_value_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
                cache=cache,
                output_attentions=output_attentions,
            )
            hidden_states = self.cross_attn_layer_norm(hidden_states + self.dropout(residual))
        hidden_states = self.layer_norm2(hidden_states + self.dropout(self.mlp(hidden_states)))
        return hidden_states, self_weights, cross_weights


class MCGQuestionEncoder(nn.Module):
    """The IQM: a bidirectional BERT encoder over `[ENC] question [SEP] (subtitles [SEP])`.

    `encode_embeddings` runs the same layers over given embeddings: the official "fusion" mode, which re-encodes
    `[question; video]` with these weights when `fusion_type="concat"`.
    """

    def __init__(self, config):
        super().__init__()
        qc = config.question_config
        self.embeddings = MCGTextEmbeddings(qc)
        self.layers = nn.ModuleList([MCGTextLayer(config, qc) for _ in range(qc.num_hidden_layers)])

    def encode_embeddings(
        self,
        hidden_states,
        attention_mask,
        output_cls_attention=False,
        output_attentions=False,
        output_hidden_states=False,
    ):
        mask = _padding_mask(attention_mask)
        all_states, all_attentions, cls_attention = [], [], None
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                all_states.append(hidden_states)
            last = i == len(self.layers) - 1
            hidden_states, weights, _ = layer(
                hidden_states,
                attention_mask=mask,
                output_attentions=output_attentions or (output_cls_attention and last),
            )
            if output_attentions:
                all_attentions.append(weights)
            if output_cls_attention and last:
                cls_attention = weights[:, :, 0]  # (b, h, s): [CLS]/[ENC] → every token
        if output_hidden_states:
            all_states.append(hidden_states)
        return hidden_states, cls_attention, tuple(all_states) or None, tuple(all_attentions) or None

    def forward(self, input_ids, attention_mask, **kwargs):
        return self.encode_embeddings(self.embeddings(input_ids), attention_mask, **kwargs)


class MCGCrossModalFusor(nn.Module):
    """CFor (`fusion_type="cross"`): question tokens self-attend, then read the video tokens by cross-attention."""

    def __init__(self, config):
        super().__init__()
        qc = config.question_config
        self.layers = nn.ModuleList(
            [
                MCGTextLayer(config, qc, cross_attention_hidden_size=config.vision_config.hidden_size)
                for _ in range(config.num_fusion_layers)
            ]
        )

    def forward(
        self,
        question_states,
        question_mask,
        video_states,
        video_mask,
        output_attentions=False,
        output_hidden_states=False,
    ):
        self_mask, cross_mask = _padding_mask(question_mask), _padding_mask(video_mask)
        hidden_states, all_states, self_attentions, cross_attentions = question_states, [], [], []
        for layer in self.layers:
            if output_hidden_states:
                all_states.append(hidden_states)
            # tensors positionally: a reentrant checkpoint only treats positional tensors as the layer's inputs
            hidden_states, self_weights, cross_weights = layer(
                hidden_states, self_mask, video_states, cross_mask, None, output_attentions
            )
            self_attentions.append(self_weights)
            cross_attentions.append(cross_weights)
        if output_hidden_states:
            all_states.append(hidden_states)
        if not output_attentions:
            self_attentions = cross_attentions = []
        return (
            hidden_states,
            tuple(all_states) or None,
            tuple(self_attentions) or None,
            tuple(cross_attentions) or None,
        )


class MCGAnswerDecoder(nn.Module):
    """Answer generator: causal self-attention → cross-attention to the fused evidence → FFN, with KV cache."""

    def __init__(self, config):
        super().__init__()
        dc = config.decoder
        self.embeddings = MCGTextEmbeddings(dc)
        self.layers = nn.ModuleList(
            [
                MCGTextLayer(config, dc, cross_attention_hidden_size=config.question_config.hidden_size, layer_idx=i)
                for i in range(dc.num_hidden_layers)
            ]
        )

    def forward(
        self,
        input_ids,
        encoder_hidden_states,
        encoder_attention_mask,
        attention_mask=None,
        cache=None,
        output_attentions=False,
        output_hidden_states=False,
    ):
        b, q_len = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        hidden_states = self.embeddings(input_ids, past_length=past)
        key_positions = torch.arange(past + q_len, device=input_ids.device)
        query_positions = torch.arange(past, past + q_len, device=input_ids.device)
        self_mask = (key_positions[None, :] <= query_positions[:, None])[None, None]  # (1, 1, q, past + q)
        if attention_mask is not None:
            if attention_mask.shape[1] == q_len and past > 0:  # a mask of the new tokens only
                attention_mask = torch.cat([attention_mask.new_ones(b, past), attention_mask], dim=1)
            self_mask = self_mask & _padding_mask(attention_mask)  # (b, 1, q, past + q)
        cross_mask = _padding_mask(encoder_attention_mask)
        all_states, self_attentions, cross_attentions = [], [], []
        for layer in self.layers:
            if output_hidden_states:
                all_states.append(hidden_states)
            # tensors positionally: a reentrant checkpoint only treats positional tensors as the layer's inputs
            hidden_states, self_weights, cross_weights = layer(
                hidden_states, self_mask, encoder_hidden_states, cross_mask, cache, output_attentions
            )
            self_attentions.append(self_weights)
            cross_attentions.append(cross_weights)
        if output_hidden_states:
            all_states.append(hidden_states)
        if not output_attentions:
            self_attentions = cross_attentions = []
        return (
            hidden_states,
            tuple(all_states) or None,
            tuple(self_attentions) or None,
            tuple(cross_attentions) or None,
        )


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
# Pre-trained model plumbing
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

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights (safetensors), config and generation config; with the package imported, also the model code
        and a complete `auto_map` (see `AUTO_MAP`)."""
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)

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
            if module.config.temporal_embedding_init_std > 0:  # from scratch: frames must differ to learn order
                init.normal_(module.temporal_embedding, std=module.config.temporal_embedding_init_std)
            else:  # warm start: a zero temporal embedding leaves image-pretrained frames unchanged
                init.zeros_(module.temporal_embedding)
        elif isinstance(module, MCGVisionEncoderLayer) and module.divided:
            # temporal attention starts as a no-op, so an image-pretrained spatial stack is undisturbed at step 0
            init.zeros_(module.temporal_fc.weight)
            init.zeros_(module.temporal_fc.bias)
        elif isinstance(module, MCGModel):
            init.constant_(module.temperature, self.config.temperature_init)


def _check_video_inputs(config, pixel_values_videos, video_frame_mask, batch_size=None):
    vc = config.vision_config
    if pixel_values_videos.ndim != 5:
        raise ValueError(
            "pixel_values_videos must have shape (batch, frames, channels, height, width), got "
            f"{tuple(pixel_values_videos.shape)}; a single video needs a leading batch dimension (use the processor)."
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


def _select_videos(video: MCGVisionOutput, video_index: torch.Tensor) -> MCGVisionOutput:
    """Per-video IVM outputs (v, ...) → per-question outputs (b, ...): row i is video `video_index[i]`."""
    attentions = video.attentions
    if attentions is not None:
        # (v t, h, 1 + n, 1 + n) → (v, t, ...) → (b, t, ...) → (b t, h, 1 + n, 1 + n)
        num_videos = video.last_hidden_state.shape[0]
        attentions = tuple(a.unflatten(0, (num_videos, -1))[video_index].flatten(0, 1) for a in attentions)
    return MCGVisionOutput(
        last_hidden_state=video.last_hidden_state[video_index],
        attention_mask=video.attention_mask[video_index],
        cls_attention=None if video.cls_attention is None else video.cls_attention[video_index],
        hidden_states=None if video.hidden_states is None else tuple(h[video_index] for h in video.hidden_states),
        attentions=attentions,
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


# ----------------------------------------------------------------------------------------------------------------
# MCGModel: video + question + fusion → fused evidence (the encoder side)
# ----------------------------------------------------------------------------------------------------------------


class MCGModel(MCGPreTrainedModel):
    """IVM + IQM + cross-modal fusor, plus the contrastive projections (`get_video_features`/`get_text_features`)."""

    def __init__(self, config: MCGConfig):
        super().__init__(config)
        self.vision_model = MCGVisionTransformer(config)
        self.question_model = MCGQuestionEncoder(config)
        self.fusor = MCGCrossModalFusor(config) if config.fusion_type == "cross" else None
        self.vision_proj = nn.Linear(config.vision_config.hidden_size, config.projection_dim)
        self.text_proj = nn.Linear(config.question_config.hidden_size, config.projection_dim)
        self.temperature = nn.Parameter(torch.tensor(config.temperature_init))
        self.post_init()

    def get_input_embeddings(self):
        return self.question_model.embeddings.embed_tokens

    def set_input_embeddings(self, value):
        self.question_model.embeddings.embed_tokens = value

    def clamped_temperature(self) -> torch.Tensor:
        """The learnable ICL temperature, clamped to [temperature_min, temperature_max] as the official code does."""
        return self.temperature.clamp(self.config.temperature_min, self.config.temperature_max)

    def encode_video(self, pixel_values_videos, video_frame_mask=None, **kwargs) -> MCGVisionOutput:
        _check_video_inputs(self.config, pixel_values_videos, video_frame_mask)
        return self.vision_model(pixel_values_videos, video_frame_mask, **kwargs)

    def get_video_features(self, pixel_values_videos, video_frame_mask=None) -> torch.Tensor:
        """L2-normalised video embedding (b, e) from the video [CLS], in the ICL space."""
        video = self.encode_video(pixel_values_videos, video_frame_mask).last_hidden_state
        return F.normalize(self.vision_proj(video[:, 0]), dim=-1)

    def get_text_features(self, input_ids, attention_mask=None) -> torch.Tensor:
        """L2-normalised text embedding (b, e) from the text [CLS]/[ENC] token, in the ICL space."""
        _check_text_inputs(input_ids, attention_mask)
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        text, *_ = self.question_model(input_ids, attention_mask)
        return F.normalize(self.text_proj(text[:, 0]), dim=-1)

    def fuse(
        self,
        question_states,
        question_mask,
        video_states,
        video_mask,
        output_attentions=False,
        output_hidden_states=False,
    ):
        """Cross-modal fusor → (fused evidence, its mask, hidden states, self-attentions, cross-attentions)."""
        if self.fusor is not None:
            fused, states, self_attn, cross_attn = self.fusor(
                question_states, question_mask, video_states, video_mask, output_attentions, output_hidden_states
            )
            return fused, question_mask, states, self_attn, cross_attn
        mask = torch.cat([question_mask, video_mask.to(question_mask.dtype)], dim=1)  # (b, s + k)
        fused, _, states, self_attn = self.question_model.encode_embeddings(
            torch.cat([question_states, video_states], dim=1),  # (b, s + k, d): [question; video]
            mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return fused, mask, states, self_attn, None

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_frame_mask: torch.LongTensor | None = None,
        video_index: torch.LongTensor | None = None,
        output_cls_attentions: bool = False,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MCGModelOutput:
        """Video (b, t, 3, H, W) + question (b, s) → fused evidence (b, s_f, d) and the unimodal outputs.

        With `video_index` (b,), `pixel_values_videos` holds each distinct video once (v, t, 3, H, W) and question i
        reads video `video_index[i]`: several questions about one clip share one IVM pass. The `video_*` outputs are
        then per question (b, ...), as without it.
        """
        _check_text_inputs(input_ids, attention_mask)
        if pixel_values_videos is None:
            raise ValueError("pixel_values_videos is required: preprocess the video with the processor.")
        if video_index is None:
            _check_video_inputs(self.config, pixel_values_videos, video_frame_mask, batch_size=input_ids.shape[0])
        else:
            _check_video_inputs(self.config, pixel_values_videos, video_frame_mask)
            _check_video_index(video_index, input_ids.shape[0], pixel_values_videos.shape[0])
        output_attentions = bool(output_attentions)
        output_hidden_states = bool(output_hidden_states)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)

        video = self.vision_model(
            pixel_values_videos,
            video_frame_mask,
            output_cls_attention=output_cls_attentions,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        if video_index is not None:
            video = _select_videos(video, video_index)
        question, question_cls_attention, question_states, question_attentions = self.question_model(
            input_ids,
            attention_mask,
            output_cls_attention=output_cls_attentions,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        fused, fused_mask, fusion_states, fusion_attentions, fusion_cross = self.fuse(
            question,
            attention_mask,
            video.last_hidden_state,
            video.attention_mask,
            output_attentions,
            output_hidden_states,
        )
        return MCGModelOutput(
            last_hidden_state=fused,
            attention_mask=fused_mask,
            video_last_hidden_state=video.last_hidden_state,
            video_attention_mask=video.attention_mask,
            question_last_hidden_state=question,
            video_cls_attention=video.cls_attention,
            question_cls_attention=question_cls_attention,
            video_hidden_states=video.hidden_states,
            question_hidden_states=question_states,
            fusion_hidden_states=fusion_states,
            video_attentions=video.attentions,
            question_attentions=question_attentions,
            fusion_attentions=fusion_attentions,
            fusion_cross_attentions=fusion_cross,
        )

    # --- multi-granularity contrastive learning on (video, text) pairs: used by QA (auxiliary) and pre-training ---

    def contrastive_losses(
        self,
        video_tokens: torch.Tensor,
        video_mask: torch.Tensor,
        video_cls_attention: torch.Tensor | None,
        video_frame_mask: torch.Tensor | None,
        text_input_ids: torch.Tensor,
        text_attention_mask: torch.Tensor,
        text_word_ids: torch.Tensor | None = None,
        compute_icl: bool = True,
        compute_tcl: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
        """ICL and TCL between already-encoded video tokens and a text (encoded here in text mode).

        Returns (loss_icl, loss_tcl, video_embeds (b, e), text_embeds (b, e), text_states (b, s, d)).
        `text_word_ids` (b, s) maps tokens to words (-1 = no word); without it every real token after the first is
        its own word.
        """
        text_states, text_cls_attention, _, _ = self.question_model(
            text_input_ids, text_attention_mask, output_cls_attention=compute_tcl
        )
        video_embeds = F.normalize(self.vision_proj(video_tokens[:, 0]), dim=-1)
        text_embeds = F.normalize(self.text_proj(text_states[:, 0]), dim=-1)
        loss_icl = (
            instance_contrastive_loss(video_embeds, text_embeds, self.clamped_temperature()) if compute_icl else None
        )
        loss_tcl = None
        if compute_tcl:
            if video_cls_attention is None:
                raise ValueError("TCL needs the video [CLS] attention: encode the video with output_cls_attentions.")
            b = video_tokens.shape[0]
            t, n = video_cls_attention.shape[1], video_cls_attention.shape[-1]
            # patch importance: [CLS]→patch attention averaged over heads, then over the sample's real frames (Q2 fix)
            patch_importance = video_cls_attention.float().mean(dim=2)  # (b, t, n)
            if video_tokens.shape[1] == 1 + n:  # temporally pooled tokens
                importance = _masked_frame_mean(patch_importance, video_frame_mask)  # (b, n)
            else:  # every frame's tokens
                importance = patch_importance.reshape(b, t * n)  # (b, t n)
            patch_mask = video_mask[:, 1:].bool()
            video_weights = clipped_importance(importance, patch_mask)
            patch_tokens = F.normalize(self.vision_proj(video_tokens[:, 1:]), dim=-1)  # (b, k - 1, e)

            if text_word_ids is None:
                positions = torch.arange(text_input_ids.shape[1], device=text_input_ids.device)
                text_word_ids = torch.where(text_attention_mask.bool() & (positions > 0), positions - 1, -1)
            token_importance = text_cls_attention.float().mean(dim=1)  # (b, s), aligned with the tokens (Q3 fix)
            words, word_importance, word_mask = aggregate_words(text_states, token_importance, text_word_ids)
            word_weights = clipped_importance(word_importance, word_mask)
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
        return loss_icl, loss_tcl, video_embeds, text_embeds, text_states


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
    `tcl_loss_weight`). `generate()` works as for any transformers encoder–decoder (greedy, beams, sampling; the
    video and fusion are computed once per question), and `score_choices()` ranks candidate answers.
    """

    _tied_weights_keys = {"lm_head.out_proj.weight": "decoder.embeddings.embed_tokens.weight"}
    accepts_loss_kwargs = False  # the loss is not normalised by Trainer's num_items_in_batch

    def __init__(self, config: MCGConfig):
        super().__init__(config)
        self.mcg = MCGModel(config)
        self.decoder = MCGAnswerDecoder(config)
        self.lm_head = MCGLMHead(config.decoder)
        self.post_init()

    def get_encoder(self, modality=None):
        return self.mcg

    def get_decoder(self):
        return self.decoder

    def get_input_embeddings(self):
        return self.decoder.embeddings.embed_tokens

    def set_input_embeddings(self, value):
        self.decoder.embeddings.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head.out_proj

    def set_output_embeddings(self, value):
        self.lm_head.out_proj = value

    @classmethod
    def from_unimodal_pretrained(
        cls, vision=None, text=None, config=None, load_cross_attention=False, output_loading_info=False
    ):
        """Warm-start from a TimeSformer/ViT checkpoint (`vision`) and a BERT checkpoint (`text`): folders, Hub ids
        or loaded transformers models; the MCG config is derived from theirs unless `config` is given.

        The conversion rules are in `modeling_mcg.convert_hf_checkpoints`; with `output_loading_info=True` this
        returns `(model, report)` (loaded / left at init / unused / resized keys), as `from_pretrained` does.
        """
        from .convert_hf_checkpoints import from_unimodal_pretrained

        model, report = from_unimodal_pretrained(
            config, vision=vision, text=text, load_cross_attention=load_cross_attention, model_class=cls
        )
        return (model, report) if output_loading_info else model

    def _answer_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        per_token = F.cross_entropy(
            logits.float().transpose(1, 2),  # (b, v, s_a)
            labels,
            ignore_index=-100,
            reduction="none",
            label_smoothing=self.config.label_smoothing,
        )  # (b, s_a)
        return per_token.sum(dim=1).mean()

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
        past_key_values: Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MCGVideoQuestionAnsweringOutput:
        r"""
        input_ids (`(b, s)`): `[ENC] question [SEP] (subtitles [SEP])` from [`MCGProcessor`].
        pixel_values_videos (`(b, t, 3, H, W)`), video_frame_mask (`(b, t)`, 1 = real frame).
        video_index (`(b,)`, *optional*): question i reads video `video_index[i]` of `pixel_values_videos`, which
            then holds each distinct video once (`(v, t, 3, H, W)`): one IVM pass per video, not per question.
        labels (`(b, s_a)`): answer tokens + `[SEP]`, padding -100; decoder inputs are built by shifting them right.
        """
        cache = cache if cache is not None else past_key_values
        needs_aux = labels is not None and (self.config.icl_loss_weight > 0 or self.config.tcl_loss_weight > 0)
        if encoder_outputs is None:
            encoder_outputs = self.mcg(
                input_ids=input_ids,
                attention_mask=attention_mask,
                pixel_values_videos=pixel_values_videos,
                video_frame_mask=video_frame_mask,
                video_index=video_index,
                output_cls_attentions=needs_aux and self.config.tcl_loss_weight > 0,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
            )
        elif not isinstance(encoder_outputs, MCGModelOutput):
            encoder_outputs = MCGModelOutput(*encoder_outputs)
        evidence_mask = encoder_outputs.attention_mask
        if evidence_mask is None:
            evidence_mask = torch.ones(
                encoder_outputs.last_hidden_state.shape[:2],
                dtype=torch.long,
                device=encoder_outputs.last_hidden_state.device,
            )

        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(
                labels, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        if decoder_input_ids is None:
            raise ValueError("Pass `labels` (training) or `decoder_input_ids`, or call `generate()` to answer.")
        if use_cache is None:
            use_cache = labels is None and not self.training
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        if not use_cache:
            cache = None

        decoded, decoder_states, decoder_attentions, cross_attentions = self.decoder(
            decoder_input_ids,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=evidence_mask,
            attention_mask=decoder_attention_mask,
            cache=cache,
            output_attentions=bool(output_attentions),
            output_hidden_states=bool(output_hidden_states),
        )
        logits = self.lm_head(decoded)  # (b, s_a, v)

        loss = loss_lm = loss_icl = loss_tcl = None
        if labels is not None:
            loss = loss_lm = self._answer_loss(logits, labels)
            if needs_aux:
                if input_ids is None:
                    raise ValueError("Auxiliary contrastive losses need input_ids and pixel_values_videos.")
                qa_ids, qa_mask = _concat_question_and_answer(
                    input_ids,
                    attention_mask if attention_mask is not None else torch.ones_like(input_ids),
                    labels,
                    self.config.pad_token_id,
                )
                if video_index is not None and video_frame_mask is not None:
                    video_frame_mask = video_frame_mask[video_index]  # (b, t), like the per-question video outputs
                loss_icl, loss_tcl, *_ = self.mcg.contrastive_losses(
                    encoder_outputs.video_last_hidden_state,
                    encoder_outputs.video_attention_mask,
                    encoder_outputs.video_cls_attention,
                    video_frame_mask,
                    qa_ids,
                    qa_mask,
                    compute_icl=self.config.icl_loss_weight > 0,
                    compute_tcl=self.config.tcl_loss_weight > 0,
                )
                if loss_icl is not None:
                    loss = loss + self.config.icl_loss_weight * loss_icl
                if loss_tcl is not None:
                    loss = loss + self.config.tcl_loss_weight * loss_tcl

        return MCGVideoQuestionAnsweringOutput(
            loss=loss,
            loss_lm=loss_lm,
            loss_icl=loss_icl,
            loss_tcl=loss_tcl,
            logits=logits,
            cache=cache if use_cache else None,
            decoder_hidden_states=decoder_states,
            decoder_attentions=decoder_attentions,
            cross_attentions=cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.question_hidden_states,
            encoder_attentions=encoder_outputs.question_attentions,
            encoder_outputs=encoder_outputs,
        )

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
                input_ids=input_ids,
                attention_mask=attention_mask,
                pixel_values_videos=pixel_values_videos,
                video_frame_mask=video_frame_mask,
                video_index=video_index,
            )
        b, c, length = choice_labels.shape
        if encoder_outputs.last_hidden_state.shape[0] != b:
            raise ValueError(
                f"choice_labels has {b} questions but the inputs have {encoder_outputs.last_hidden_state.shape[0]}."
            )
        evidence = encoder_outputs.last_hidden_state.repeat_interleave(c, dim=0)  # (b c, s_f, d)
        evidence_mask = encoder_outputs.attention_mask.repeat_interleave(c, dim=0)  # (b c, s_f)
        labels = choice_labels.reshape(b * c, length)
        decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
        decoded, *_ = self.decoder(
            decoder_input_ids, encoder_hidden_states=evidence, encoder_attention_mask=evidence_mask
        )
        log_probs = self.lm_head(decoded).float().log_softmax(dim=-1)  # (b c, s_a, v)
        valid = labels != -100
        token_log_probs = log_probs.gather(-1, labels.clamp_min(0)[..., None]).squeeze(-1) * valid  # (b c, s_a)
        counts = valid.sum(dim=1)
        scores = token_log_probs.sum(dim=1) / counts.clamp_min(1)
        scores = scores.masked_fill(counts == 0, float("-inf"))
        return scores.view(b, c)


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

    def get_input_embeddings(self):
        return self.mcg.get_input_embeddings()

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
        if pixel_values_videos is None:
            raise ValueError("pixel_values_videos is required.")
        _check_video_inputs(config, pixel_values_videos, video_frame_mask, batch_size=input_ids.shape[0])
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        video = self.mcg.vision_model(
            pixel_values_videos, video_frame_mask, output_cls_attention=config.tcl_loss_weight > 0
        )

        loss_icl, loss_tcl, video_embeds, text_embeds, _ = self.mcg.contrastive_losses(
            video.last_hidden_state,
            video.attention_mask,
            video.cls_attention,
            video_frame_mask,
            input_ids,
            attention_mask,
            word_ids,
            compute_icl=config.icl_loss_weight > 0,
            compute_tcl=config.tcl_loss_weight > 0,
        )

        loss_mlm = logits_mlm = None
        if config.mlm_loss_weight > 0:
            if special_tokens_mask is None:
                special_tokens_mask = (input_ids == config.eos_token_id) | ~attention_mask.bool()
                special_tokens_mask[:, 0] = True
            masked_ids, mlm_labels = mask_tokens_for_mlm(
                input_ids,
                ~special_tokens_mask.bool(),
                config.mask_token_id,
                config.question_config.vocab_size,
                config.mlm_probability,
            )
            masked_states, *_ = self.mcg.question_model(masked_ids, attention_mask)
            fused, *_ = self.mcg.fuse(masked_states, attention_mask, video.last_hidden_state, video.attention_mask)
            logits_mlm = self.mlm_head(fused[:, : input_ids.shape[1]])  # (b, s, v): caption positions only
            if bool((mlm_labels != -100).any()):
                loss_mlm = F.cross_entropy(logits_mlm.float().transpose(1, 2), mlm_labels, ignore_index=-100)
            else:  # nothing masked in this batch (tiny captions): a zero that keeps the graph
                loss_mlm = logits_mlm.sum() * 0.0

        loss_vtm = logits_vtm = None
        if self.vtm_head is not None:
            loss_vtm, logits_vtm = self._video_text_matching(
                video, input_ids, attention_mask, video_embeds, text_embeds
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
        )

    def _video_text_matching(self, video, input_ids, attention_mask, video_embeds, text_embeds):
        """VTM with in-batch hard negatives: each video gets a similar-but-wrong caption and each caption a
        similar-but-wrong video, drawn by contrastive similarity; the fused first token classifies match/no-match."""
        similarity = video_embeds @ text_embeds.t()  # (b, b)
        negative_text = sample_hard_negatives(similarity)  # (b,) caption index for each video
        negative_video = sample_hard_negatives(similarity.t())  # (b,) video index for each caption
        text_states, *_ = self.mcg.question_model(input_ids, attention_mask)
        videos = torch.cat([video.last_hidden_state, video.last_hidden_state, video.last_hidden_state[negative_video]])
        video_masks = torch.cat([video.attention_mask, video.attention_mask, video.attention_mask[negative_video]])
        texts = torch.cat([text_states, text_states[negative_text], text_states])  # (3b, s, d)
        text_masks = torch.cat([attention_mask, attention_mask[negative_text], attention_mask])
        fused, *_ = self.mcg.fuse(texts, text_masks, videos, video_masks)
        logits = self.vtm_head(fused[:, 0])  # (3b, 2)
        b = input_ids.shape[0]
        targets = torch.cat([torch.ones(b), torch.zeros(2 * b)]).long().to(logits.device)
        return F.cross_entropy(logits.float(), targets), logits


__all__ = [
    "MCGPreTrainedModel",
    "MCGModel",
    "MCGForVideoQuestionAnswering",
    "MCGForPreTraining",
    "MCGModelOutput",
    "MCGVideoQuestionAnsweringOutput",
    "MCGPreTrainingOutput",
]
