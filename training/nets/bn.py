"""Batch norms re-based on real statistics, keeping the function they compute.

Imported weights often come with batch norm folded away (dlib's ``affine`` layers, ONNX exports
that fold BN into the convolution). Expressed as a BatchNorm2d with identity statistics they
compute the right thing in eval mode, but in train mode they would normalise activations of
the wrong scale. Re-basing each one on its input's real mean and variance, with weight and bias
adjusted to match, gives the same eval output and a sound starting point for fine-tuning.
"""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def rebase_batchnorms(net: nn.Module, run: "callable", *inputs: torch.Tensor) -> int:
    """Run ``run(*inputs)`` once in eval mode, then re-base every BatchNorm2d of ``net`` on the
    statistics its input had. Returns the number of layers changed."""
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(mod: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        stats[mod] = (args[0].mean((0, 2, 3)), args[0].var((0, 2, 3), correction=0))  # as train mode normalises

    hooks = [m.register_forward_pre_hook(record) for m in norms]
    was = net.training
    net.eval()
    try:
        run(*inputs)
    finally:
        for h in hooks:
            h.remove()
        net.train(was)
    for m in norms:
        if m not in stats:
            continue
        mean, var = stats[m]
        var = var.clamp_min(1e-4)
        old = m.weight / torch.sqrt(m.running_var + m.eps)  # y = (x - rm) * old + b
        m.bias.add_((mean - m.running_mean) * old)
        m.weight.copy_(old * torch.sqrt(var + m.eps))
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
    return len(stats)
