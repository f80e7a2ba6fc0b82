"""Classic and triplet KD against values computed by hand (derivations in the comments)."""
from __future__ import annotations

import math

import pytest
import torch

from vrfer.training.losses import TripletProjection, kd_loss, triplet_kd_loss


def test_kd_loss_matches_hand_computed_value() -> None:
    # s = [1, 0], t = [0, 1], T = 2: p_t = softmax([0, .5]), q_s = softmax([.5, 0]).
    # log p_t = [-(log(1+e^.5)), .5 - log(1+e^.5)] and log q_s is the same vector reversed, so
    # KL = p1 * (-.5) + p2 * (.5) = .5 * (p2 - p1) = .5 * tanh(.25) = 0.1224593; x T^2 = 0.4898374.
    # CE(s, class 0) = log(1 + e^-1) = 0.3132617.  alpha = .5 -> (0.4898374 + 0.3132617) / 2.
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    loss = kd_loss(s, t, torch.tensor([0]), temperature=2.0, alpha=0.5)
    kl = 0.5 * math.tanh(0.25) * 4
    ce = math.log(1 + math.exp(-1))
    assert loss.item() == pytest.approx(0.5 * kl + 0.5 * ce, abs=1e-6)
    assert loss.item() == pytest.approx(0.4015496, abs=1e-6)


def test_kd_loss_alpha_one_is_pure_soft_target_and_zero_when_logits_agree() -> None:
    s = torch.tensor([[2.0, -1.0, 0.5]])
    assert kd_loss(s, s.clone(), torch.tensor([1]), temperature=3.0, alpha=1.0).item() == pytest.approx(0, abs=1e-6)
    # alpha = 0 is plain cross-entropy, ignoring the teacher
    ce = torch.nn.functional.cross_entropy(s, torch.tensor([1])).item()
    assert kd_loss(s, -s, torch.tensor([1]), alpha=0.0).item() == pytest.approx(ce, abs=1e-7)


def test_kd_loss_teacher_gets_no_gradient() -> None:
    s = torch.tensor([[1.0, 0.0]], requires_grad=True)
    t = torch.tensor([[0.0, 1.0]], requires_grad=True)
    kd_loss(s, t, torch.tensor([0])).backward()
    assert t.grad is None and s.grad is not None


def _triplet_case():
    # anchors (student, occluded): a0 = (1,0) c0, a1 = (0,1) c1, a2 = (.6,.8) c0
    # teacher (full face):         t0 = (1,0),    t1 = (0,1),    t2 = (.8,.6)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    return a, t, torch.tensor([0, 1, 0])


def test_triplet_kd_loss_batch_hard_matches_hand_computed_value() -> None:
    # margin 1.  anchor 0: hardest pos = d(a0,t2) = sqrt(.4) = .632456, neg = d(a0,a1) = sqrt(2)
    #   -> .632456 - 1.414214 + 1 = .218242
    # anchor 1: pos = d(a1,t1) = 0, hardest (closest) neg = d(a1,a2) = sqrt(.4) -> 1 - .632456 = .367544
    # anchor 2: hardest pos = d(a2,t0) = sqrt(.8) = .894427, neg = d(a2,a1) = .632456 -> 1.261971
    a, t, y = _triplet_case()
    expected = (math.sqrt(0.4) - math.sqrt(2) + 1 + 1 - math.sqrt(0.4) + math.sqrt(0.8) - math.sqrt(0.4) + 1) / 3
    assert triplet_kd_loss(a, t, y, margin=1.0).item() == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx(0.615919, abs=1e-6)


def test_triplet_kd_loss_is_scale_free_and_hinged_at_zero() -> None:
    a, t, y = _triplet_case()
    assert triplet_kd_loss(3 * a, 0.5 * t, y, margin=1.0).item() == pytest.approx(
        triplet_kd_loss(a, t, y, margin=1.0).item(), abs=1e-5)
    # margin .5: anchor 0 -> .632 - 1.414 + .5 < 0 and anchor 1 -> .5 - .632 < 0 hinge to 0;
    # anchor 2 -> .894427 - .632456 + .5 = .761971; mean over 3 anchors
    assert triplet_kd_loss(a, t, y, margin=0.5).item() == pytest.approx(
        (math.sqrt(0.8) - math.sqrt(0.4) + 0.5) / 3, abs=1e-5)


def test_triplet_kd_loss_single_class_batch_is_zero_with_a_graph() -> None:
    a = torch.randn(4, 8, requires_grad=True)
    loss = triplet_kd_loss(a, torch.randn(4, 8), torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and a.grad is not None


def test_triplet_projection_learns_only_when_sizes_differ() -> None:
    assert isinstance(TripletProjection(256, 256).proj, torch.nn.Identity)
    proj = TripletProjection(512, 256)
    a, y = torch.randn(6, 256, requires_grad=True), torch.tensor([0, 1, 2, 0, 1, 2])
    triplet_kd_loss(a, proj(torch.randn(6, 512)), y, margin=2.0).backward()
    assert proj.proj.weight.shape == (256, 512) and proj.proj.weight.grad.abs().sum() > 0
