"""ICL and TCL against naive per-sample loops (value and gradient), ICL across 2 processes, MLM and VTM helpers."""

import math
import os
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from modeling_mcg.losses import (
    aggregate_words,
    answer_loss,
    clipped_importance,
    default_word_ids,
    instance_contrastive_loss,
    mask_each_caption_for_mlm,
    mask_tokens_for_mlm,
    sample_hard_negatives,
    token_contrastive_loss,
    video_patch_weights,
    word_tokens_and_weights,
)


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1).requires_grad_(True)


def naive_icl(v, t, tau):
    b = v.shape[0]
    total = 0.0
    for i in range(b):
        v2t = torch.exp(torch.stack([v[i] @ t[j] / tau for j in range(b)]))
        t2v = torch.exp(torch.stack([t[i] @ v[j] / tau for j in range(b)]))
        total = total - torch.log(v2t[i] / v2t.sum()) - torch.log(t2v[i] / t2v.sum())
    return total / (2 * b)


def test_icl_matches_naive_loop_in_value_and_gradient():
    v, t = _unit(5, 8, seed=1), _unit(5, 8, seed=2)
    v2, t2 = v.detach().clone().requires_grad_(True), t.detach().clone().requires_grad_(True)
    loss = instance_contrastive_loss(v, t, 0.07)
    reference = naive_icl(v2, t2, 0.07)
    torch.testing.assert_close(loss.double(), reference)
    loss.backward()
    reference.backward()
    torch.testing.assert_close(v.grad, v2.grad)
    torch.testing.assert_close(t.grad, t2.grad)


def naive_direction(queries, keys, qmask, kmask, weights, tau):
    """One TCL direction for one sample with explicit loops over tokens."""
    q_idx = [i for i in range(queries.shape[0]) if qmask[i]]
    k_idx = [j for j in range(keys.shape[0]) if kmask[j]]
    reads = {}
    for i in q_idx:
        logits = torch.stack([queries[i] @ keys[j] / tau for j in k_idx])
        attn = torch.softmax(logits, 0)
        read = sum(a * keys[j] for a, j in zip(attn, k_idx))
        reads[i] = read / read.norm()
    total = 0.0
    for i in q_idx:
        row = torch.stack([queries[i] @ reads[j] / tau for j in q_idx])  # query i vs every read-out
        col = torch.stack([queries[j] @ reads[i] / tau for j in q_idx])  # read-out i vs every query
        pos = q_idx.index(i)
        ce_row = -torch.log_softmax(row, 0)[pos]
        ce_col = -torch.log_softmax(col, 0)[pos]
        total = total + weights[i] * 0.5 * (ce_row + ce_col)
    return total


# e = 8: both directions have fewer keys than channels and contract the scores over the keys; e = 4: over the
# channels; e = 6: the video tokens (5 words as keys) one way, the words (6 video tokens as keys) the other
@pytest.mark.parametrize("e", [8, 4, 6])
def test_tcl_matches_naive_loop_in_value_and_gradient(e):
    b, k, m = 3, 6, 5
    video, words = _unit(b, k, e, seed=3), _unit(b, m, e, seed=4)
    video_mask = torch.ones(b, k, dtype=torch.bool)
    video_mask[1, 4:] = False
    word_mask = torch.ones(b, m, dtype=torch.bool)
    word_mask[0, 3:] = False
    word_mask[2, 4:] = False
    g = torch.Generator().manual_seed(5)
    video_w = clipped_importance(torch.rand(b, k, generator=g), video_mask).double()
    word_w = clipped_importance(torch.rand(b, m, generator=g), word_mask).double()
    v2, w2 = video.detach().clone().requires_grad_(True), words.detach().clone().requires_grad_(True)

    loss = token_contrastive_loss(video, words, video_w, word_w, video_mask, word_mask, temperature=0.1)
    reference = (
        sum(
            naive_direction(w2[i], v2[i], word_mask[i], video_mask[i], word_w[i], 0.1)
            + naive_direction(v2[i], w2[i], video_mask[i], word_mask[i], video_w[i], 0.1)
            for i in range(b)
        )
        / b
    )
    torch.testing.assert_close(loss.double(), reference)
    loss.backward()
    reference.backward()
    torch.testing.assert_close(video.grad, v2.grad)
    torch.testing.assert_close(words.grad, w2.grad)


def test_tcl_does_not_depend_on_padding_length():
    video, words = _unit(2, 4, 8, seed=6), _unit(2, 3, 8, seed=7)
    vw = torch.full((2, 4), 0.25, dtype=torch.float64)
    ww = torch.full((2, 3), 1 / 3, dtype=torch.float64)
    loss = token_contrastive_loss(video, words, vw, ww)
    padded_words = torch.cat([words, _unit(2, 4, 8, seed=8)], dim=1)
    mask = torch.tensor([[True] * 3 + [False] * 4] * 2)
    padded_loss = token_contrastive_loss(
        video, padded_words, vw, torch.cat([ww, torch.zeros(2, 4, dtype=ww.dtype)], 1), word_mask=mask
    )
    torch.testing.assert_close(padded_loss, loss)


def test_clipped_importance_matches_numpy_percentiles():
    weights = torch.tensor([[0.5, 0.1, 0.05, 0.3, 0.05, 9.0], [1.0, 2.0, 3.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    out = clipped_importance(weights, mask)
    row0 = np.clip(weights[0].numpy(), *np.quantile(weights[0].numpy(), [0.1, 0.9]))
    np.testing.assert_allclose(out[0].numpy(), row0 / row0.sum(), rtol=1e-6)
    row1 = np.clip([1.0, 2.0, 3.0], *np.quantile([1.0, 2.0, 3.0], [0.1, 0.9]))
    np.testing.assert_allclose(out[1, :3].numpy(), row1 / row1.sum(), rtol=1e-6)
    assert (out[1, 3:] == 0).all()
    torch.testing.assert_close(out.sum(1), torch.ones(2))


def test_aggregate_words_sums_pieces():
    states = torch.arange(2 * 5 * 2, dtype=torch.float32).view(2, 5, 2)
    weights = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0, 9.0]])
    word_ids = torch.tensor([[-1, 0, 0, 1, -1], [-1, 0, 1, 2, 2]])  # "[ENC] play ##ing guitar [PAD]"
    words, word_w, mask = aggregate_words(states, weights, word_ids)
    assert words.shape == (2, 3, 2)
    torch.testing.assert_close(words[0, 0], states[0, 1] + states[0, 2])
    torch.testing.assert_close(words[1, 2], states[1, 3] + states[1, 4])
    torch.testing.assert_close(word_w, torch.tensor([[3.0, 3.0, 0.0], [6.0, 7.0, 17.0]]))
    assert mask.tolist() == [[True, True, False], [True, True, True]]


def test_mlm_masking_statistics_and_protected_tokens():
    ids = torch.randint(10, 1000, (64, 50))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = False
    corrupted, labels = mask_tokens_for_mlm(
        ids, maskable, mask_token_id=4, vocab_size=1000, probability=0.15, generator=torch.Generator().manual_seed(0)
    )
    picked = labels != -100
    assert not picked[:, 0].any()
    assert abs(picked.float().mean().item() - 0.15 * 49 / 50) < 0.02
    assert torch.equal(labels[picked], ids[picked])
    assert torch.equal(corrupted[~picked], ids[~picked])
    frac_mask = (corrupted[picked] == 4).float().mean().item()
    assert 0.74 < frac_mask < 0.86


def test_each_caption_is_masked_the_same_way_in_any_batch_position_or_padding():
    """Evaluation masking: a caption's corruption depends on its own tokens and the seed only, and keeps the BERT
    statistics and the protected positions of `mask_tokens_for_mlm`."""
    captions = torch.randint(10, 1000, (64, 30))
    maskable = torch.ones_like(captions, dtype=torch.bool)
    maskable[:, 0] = False
    corrupted, labels = mask_each_caption_for_mlm(captions, maskable, mask_token_id=4, vocab_size=1000)
    picked = labels != -100
    assert not picked[:, 0].any() and torch.equal(labels[picked], captions[picked])
    assert torch.equal(corrupted[~picked], captions[~picked])
    assert abs(picked.float().mean().item() - 0.15 * 29 / 30) < 0.03
    assert 0.7 < (corrupted[picked] == 4).float().mean().item() < 0.9
    assert len({tuple(row) for row in picked.tolist()}) > 32  # captions are not all masked alike

    # caption 5 alone, left-padded by 3 (the pads not maskable), and among other captions: the same corruption
    alone = mask_each_caption_for_mlm(captions[5:6], maskable[5:6], 4, 1000)
    padded_ids = torch.cat([torch.zeros(1, 3, dtype=torch.long), captions[5:6]], dim=1)
    padded_maskable = torch.cat([torch.zeros(1, 3, dtype=torch.bool), maskable[5:6]], dim=1)
    padded = mask_each_caption_for_mlm(padded_ids, padded_maskable, 4, 1000)
    for got_corrupted, got_labels in (alone, (padded[0][:, 3:], padded[1][:, 3:])):
        assert torch.equal(got_corrupted, corrupted[5:6]) and torch.equal(got_labels, labels[5:6])
    assert torch.equal(padded[1][:, :3], torch.full((1, 3), -100))
    other_seed = mask_each_caption_for_mlm(captions, maskable, 4, 1000, seed=1)[1]
    assert not torch.equal(other_seed != -100, picked)


def test_hard_negatives_are_never_the_positive():
    sim = torch.randn(6, 6)
    for seed in range(20):
        neg = sample_hard_negatives(sim, generator=torch.Generator().manual_seed(seed))
        assert (neg != torch.arange(6)).all()
    with pytest.raises(ValueError, match="at least 2"):
        sample_hard_negatives(torch.randn(1, 1))


def _icl_worker(rank, world, init_file, v, t, sizes, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        start = sum(sizes[:rank])
        v_local = v[start : start + sizes[rank]].clone().requires_grad_(True)
        t_local = t[start : start + sizes[rank]].clone().requires_grad_(True)
        loss = instance_contrastive_loss(v_local, t_local, 0.07)
        loss.backward()
        torch.save(
            {"loss": loss.detach(), "v_grad": v_local.grad, "t_grad": t_local.grad},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("sizes", [(3, 3), (4, 2)], ids=["equal-batches", "short-last-batch"])
def test_icl_across_two_processes_equals_single_process_on_the_global_batch(sizes):
    """Each process's loss is its own rows' InfoNCE against the global batch; the gradients it gets for its rows are
    those of the sum of every process's loss, also when the local batch sizes differ."""
    world = 2
    v, t = _unit(6, 8, seed=9).detach().float(), _unit(6, 8, seed=10).detach().float()
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(
            _icl_worker, args=(world, os.path.join(out_dir, "init"), v, t, sizes, out_dir), nprocs=world, join=True
        )
        results = [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(world)]
    v_all, t_all = v.clone().requires_grad_(True), t.clone().requires_grad_(True)
    targets = torch.arange(6)
    rows = (
        F.cross_entropy(v_all @ t_all.t() / 0.07, targets, reduction="none")
        + F.cross_entropy(t_all @ v_all.t() / 0.07, targets, reduction="none")
    ) / 2
    per_process = torch.stack([part.mean() for part in rows.split(list(sizes))])
    per_process.sum().backward()
    torch.testing.assert_close(torch.stack([r["loss"] for r in results]), per_process.detach())
    torch.testing.assert_close(torch.cat([r["v_grad"] for r in results]), v_all.grad)
    torch.testing.assert_close(torch.cat([r["t_grad"] for r in results]), t_all.grad)
    if sizes[0] == sizes[1]:  # and then the mean of the process losses is the single-process loss
        torch.testing.assert_close(per_process.mean(), instance_contrastive_loss(v, t, 0.07))
    assert not math.isclose(results[0]["loss"].item(), results[1]["loss"].item())


def _naive_clipped(values):
    """One row of `clipped_importance` with numpy percentiles."""
    values = np.asarray(values, dtype=np.float64)
    clipped = np.clip(values, *np.quantile(values, [0.1, 0.9]))
    return clipped / clipped.sum()


@pytest.mark.parametrize("pooled", [True, False], ids=["pooled", "every-frame"])
def test_video_patch_weights_match_a_naive_loop(pooled):
    """Heads averaged, then (pooled tokens) the sample's own real frames averaged: never another sample's rows."""
    b, t, h, n = 3, 4, 2, 5
    g = torch.Generator().manual_seed(9)
    attention = torch.rand(b, t, h, n, generator=g)
    frame_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    k = n if pooled else t * n
    patch_mask = torch.ones(b, k, dtype=torch.bool)
    if not pooled:
        patch_mask = frame_mask.bool().repeat_interleave(n, dim=1)
    got = video_patch_weights(attention, frame_mask, patch_mask)
    for i in range(b):
        real = [f for f in range(t) if frame_mask[i, f]]
        if pooled:
            row = [sum(attention[i, f, :, p].mean().item() for f in real) / len(real) for p in range(n)]
            np.testing.assert_allclose(got[i].numpy(), _naive_clipped(row), rtol=1e-5)
        else:
            row = [attention[i, f, :, p].mean().item() for f in real for p in range(n)]
            np.testing.assert_allclose(got[i, : len(row)].numpy(), _naive_clipped(row), rtol=1e-5)
            assert (got[i, len(row) :] == 0).all()


def test_word_tokens_and_weights_match_a_naive_loop():
    """Pieces summed into words; each word's weight is its own pieces' [CLS] attention (no shift by one token)."""
    g = torch.Generator().manual_seed(10)
    states = torch.randn(2, 6, 3, generator=g)
    cls_attention = torch.rand(2, 4, 6, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    word_ids = torch.tensor([[-1, 0, 0, 1, -1, -1], [-1, 0, 1, 1, 2, -1]])
    words, weights, word_mask = word_tokens_and_weights(states, cls_attention, mask, word_ids)
    for i in range(2):
        count = int(word_ids[i].max()) + 1
        for w in range(count):
            pieces = [j for j in range(6) if word_ids[i, j] == w]
            torch.testing.assert_close(words[i, w], sum(states[i, j] for j in pieces))
        raw = [
            sum(cls_attention[i, :, j].mean().item() for j in range(6) if word_ids[i, j] == w) for w in range(count)
        ]
        np.testing.assert_allclose(weights[i, :count].numpy(), _naive_clipped(raw), rtol=1e-5)
        assert word_mask[i].sum() == count
    # without a word map every real token after the first is its own word
    assert default_word_ids(mask).tolist() == [[-1, 0, 1, 2, 3, -1], [-1, 0, 1, 2, 3, 4]]


def test_answer_loss_sums_tokens_and_averages_samples():
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(2, 3, 7, generator=g)
    labels = torch.tensor([[1, 2, 3], [4, -100, -100]])
    expected = 0.0
    for i in range(2):
        for j in range(3):
            if labels[i, j] == -100:
                continue
            log_probs = logits[i, j].log_softmax(-1)
            expected += -(0.9 * log_probs[labels[i, j]] + 0.1 * log_probs.mean())
    torch.testing.assert_close(answer_loss(logits, labels, label_smoothing=0.1), expected / 2)


def test_clipped_importance_of_a_row_without_valid_entries_is_all_zero_and_the_others_are_unchanged():
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(4, 9, generator=g)
    mask = torch.rand(4, 9, generator=g) > 0.3
    mask[2] = False
    out = clipped_importance(weights, mask)
    assert (out[2] == 0).all() and not out.isnan().any()
    for i in (0, 1, 3):
        valid = weights[i][mask[i]].numpy()
        row = np.clip(valid, *np.quantile(valid, [0.1, 0.9]))
        np.testing.assert_allclose(out[i][mask[i]].numpy(), row / row.sum(), rtol=1e-6)
        assert (out[i][~mask[i]] == 0).all()
