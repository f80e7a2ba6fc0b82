"""Distillation losses: classic KD (Hinton et al. 2015) and the triplet-loss KD of
Georgescu & Ionescu (ICPR 2020).

Triplet mining (batch-hard, within the batch; Hermans et al. 2017): for each anchor i, the
student's embedding of occluded face i,
- positive: the teacher embedding (of a full face) of the same class that lies *farthest* from
  the anchor, among all batch items of i's class -- i's own full face included;
- negative: the student embedding (of an occluded face) of another class that lies *closest*.
Embeddings are L2-normalised before distances, so the margin is on the unit sphere whatever
the networks' embedding scales. Anchors with no other class in the batch are skipped. When the
teacher's embedding size differs from the student's, a learned linear projection maps the
teacher embedding into the student's space (trained with the student, teacher frozen).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
            temperature: float = 4.0, alpha: float = 0.7, label_smoothing: float = 0.0) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, target).

    The T^2 factor keeps the soft-target gradients on the same scale as the hard ones
    (Hinton et al., section 2). ``target`` is class indices or a probability row per sample.
    """
    t = temperature
    soft_teacher = F.softmax(teacher_logits.detach() / t, dim=1)
    log_student = F.log_softmax(student_logits / t, dim=1)
    kl = F.kl_div(log_student, soft_teacher, reduction="batchmean") * (t * t)
    ce = F.cross_entropy(student_logits, target, label_smoothing=label_smoothing)
    return alpha * kl + (1.0 - alpha) * ce


def triplet_kd_loss(anchor: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                    margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss: mean over anchors of relu(d(a, p) - d(a, n) + margin).

    ``anchor`` N x D (student, occluded), ``teacher`` N x D (teacher, full face, already
    projected to D), ``labels`` N class indices.
    """
    a = F.normalize(anchor, dim=1)
    p = F.normalize(teacher, dim=1)  # the caller runs the teacher without grad; a projection still learns
    same = labels[:, None] == labels[None, :]
    d_pos = _pairwise(a, p)  # anchor i -> teacher j
    d_neg = _pairwise(a, a)  # anchor i -> student j
    hardest_pos = d_pos.masked_fill(~same, float("-inf")).max(dim=1).values
    hardest_neg = d_neg.masked_fill(same, float("inf")).min(dim=1).values
    valid = torch.isfinite(hardest_neg)
    if not bool(valid.any()):
        return anchor.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
    return F.relu(hardest_pos[valid] - hardest_neg[valid] + margin).mean()


def _pairwise(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances with a finite gradient at zero (cdist's sqrt has none there)."""
    sq = (x[:, None, :] - y[None, :, :]).pow(2).sum(-1)
    return sq.clamp_min(1e-12).sqrt()


class TripletProjection(nn.Module):
    """Teacher embedding -> student embedding size; identity when they already match."""

    def __init__(self, teacher_dim: int, student_dim: int) -> None:
        super().__init__()
        self.proj = nn.Identity() if teacher_dim == student_dim else nn.Linear(teacher_dim, student_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def shape_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "smooth_l1") -> torch.Tensor:
    """Mean regression loss over the (face, shape) entries the mesh measured; NaN targets are masked.

    Smooth-L1 with beta 0.1 (0..1 units): quadratic near the target, linear for the mesh's
    occasional gross misses. A batch without any measured face gives 0 (and a zero gradient).
    """
    mask = torch.isfinite(target)
    if not bool(mask.any()):
        return pred.sum() * 0.0
    p, t = pred[mask], target[mask]
    if kind == "mse":
        return F.mse_loss(p, t)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(p, t, beta=0.1)
    raise ValueError(f"shapes.loss must be smooth_l1 or mse, got {kind!r}")
