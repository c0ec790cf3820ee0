"""Each loss against a value computed by hand on tiny tensors; the FLOPS schedule; teacher normalization."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lsr.training.losses import (
    CombinedLoss,
    LossWeights,
    contrastive_loss,
    contribution_flops,
    flops,
    flops_weight,
    idf_aware_flops,
    kl_distillation,
    margin_mse,
)
from lsr.training.teachers import aggregate, minmax_rows


def test_contrastive_matches_hand_value():
    scores = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 3.0]])
    loss = contrastive_loss(scores, torch.tensor([0, 1]))
    q1 = -2.0 + math.log(math.exp(2) + math.exp(0) + math.exp(1))
    q2 = -3.0 + math.log(math.exp(0) + 2 * math.exp(3))
    assert loss.item() == pytest.approx((q1 + q2) / 2, rel=1e-6)


def test_contrastive_mask_drops_false_negatives_but_never_the_positive():
    scores = torch.tensor([[2.0, 5.0, 1.0]])
    mask = torch.tensor([[False, False, True]])  # column 1 is relevant too; the positive (0) is masked by mistake
    loss = contrastive_loss(scores, torch.tensor([0]), mask)
    assert loss.item() == pytest.approx(-2.0 + math.log(math.exp(2) + math.exp(1)), rel=1e-6)


def test_kl_matches_hand_value_and_temperature():
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.0]])
    # p_t = (0.5, 0.5), p_s = softmax(1, 0); KL = sum p_t (log p_t - log p_s)
    ps = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]
    expected = 0.5 * (math.log(0.5) - math.log(ps[0])) + 0.5 * (math.log(0.5) - math.log(ps[1]))
    assert kl_distillation(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    ps2 = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    expected2 = 4 * (0.5 * (math.log(0.5) - math.log(ps2[0])) + 0.5 * (math.log(0.5) - math.log(ps2[1])))
    assert kl_distillation(student, teacher, temperature=2.0).item() == pytest.approx(expected2, rel=1e-6)
    assert kl_distillation(teacher + 3.0, teacher).item() == pytest.approx(0.0, abs=1e-7)  # shift-invariant


def test_kl_with_one_sided_zero_probability_is_finite():
    student = torch.tensor([[0.0, 0.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0, -1e4]])  # p_t(c3) underflows to 0
    assert torch.isfinite(kl_distillation(student, teacher))
    with pytest.raises(ValueError, match="differ"):
        kl_distillation(student, teacher[:, :2])


def test_margin_mse_matches_hand_value():
    student = torch.tensor([[3.0, 1.0, 0.0]])
    teacher = torch.tensor([[5.0, 4.0, 1.0]])
    # margins: student (2, 3), teacher (1, 4) -> ((2-1)^2 + (3-4)^2) / 2 = 1
    assert margin_mse(student, teacher).item() == pytest.approx(1.0)
    mask = torch.tensor([[True, True, False]])
    assert margin_mse(student, teacher, mask).item() == pytest.approx(1.0)


def test_flops_matches_hand_value():
    w = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    # column means (2, 0, 1) -> 4 + 0 + 1
    assert flops(w).item() == pytest.approx(5.0)


def test_idf_aware_flops_penalizes_common_tokens_relative_to_their_contribution():
    w = torch.tensor([[1.0, 1.0]])
    idf = torch.tensor([0.5, 4.0])  # token 0 common, token 1 rare; equal contribution needs w0 = 8 * w1
    assert idf_aware_flops(w).item() == pytest.approx(2.0)
    assert contribution_flops(w, idf).item() == pytest.approx(0.25 + 16.0)
    # penalty gradient per unit of score contribution c_t = idf_t * w_t is (d pen / d w_t) / idf_t = 2 c_t / idf_t^2:
    # with equal contributions (4.0 and 4.0) the common token is pushed (4.0 / 0.5)^2 = 64 times harder
    w = torch.tensor([[8.0, 1.0]], requires_grad=True)
    idf_aware_flops(w).backward()
    per_contribution = w.grad[0] / idf
    assert per_contribution[0].item() / per_contribution[1].item() == pytest.approx(64.0)


def test_flops_weight_quadratic_warmup():
    assert flops_weight(0, 0.002, 200) == 0.0
    assert flops_weight(100, 0.002, 200) == pytest.approx(0.0005)
    assert flops_weight(200, 0.002, 200) == pytest.approx(0.002)
    assert flops_weight(5000, 0.002, 200) == pytest.approx(0.002)
    assert flops_weight(3, 0.002, 0) == pytest.approx(0.002)


def test_combined_loss_returns_every_named_term():
    scores = torch.tensor([[2.0, 0.0, 1.0, 0.5], [0.0, 1.0, 3.0, 0.0]], requires_grad=True)
    candidates = torch.tensor([[0, 1], [2, 3]])
    teacher = torch.tensor([[30.0, 0.0], [30.0, 0.0]])
    docs = torch.rand(4, 6, requires_grad=True)
    weights = LossWeights(contrastive=1.0, kl=0.5, margin_mse=0.1, flops_documents=0.01, flops_warmup_steps=10)
    terms = CombinedLoss(weights)(scores, candidates, docs, step=5, teacher=teacher)
    assert set(terms) == {"contrastive", "kl", "margin_mse", "flops_d", "loss"}
    expected = (terms["contrastive"] + 0.5 * terms["kl"] + 0.1 * terms["margin_mse"]
                + 0.01 * 0.25 * terms["flops_d"])
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    terms["loss"].backward()
    assert docs.grad is not None and scores.grad is not None
    with pytest.raises(ValueError, match="regularizer"):
        LossWeights(regularizer="l1")
    with pytest.raises(ValueError, match="IDF"):
        CombinedLoss(LossWeights(regularizer="flops"))


def test_minmax_rows_edge_cases():
    out = minmax_rows(np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(out, [[0.0, 1.0, 0.5], [1.0, 1.0, 1.0]])  # all-equal -> 1.0 each
    np.testing.assert_allclose(minmax_rows(np.array([[7.0]])), [[1.0]])  # one candidate
    with pytest.raises(ValueError, match="NaN"):
        minmax_rows(np.array([[1.0, np.nan]]))


def test_aggregate_weights_and_scale():
    dense = np.array([[0.9, 0.1, 0.5]])  # -> (1, 0, 0.5)
    bm25 = np.array([[10.0, 30.0, 20.0]])  # -> (0, 1, 0.5)
    np.testing.assert_allclose(aggregate([dense, bm25], scale=30.0), [[15.0, 15.0, 15.0]])
    np.testing.assert_allclose(aggregate([dense, bm25], [3, 1], scale=1.0), [[0.75, 0.25, 0.5]])
    with pytest.raises(ValueError, match="weights"):
        aggregate([dense, bm25], [1.0])
