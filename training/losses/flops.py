"""FLOPS regularization (Paria et al., ICLR 2020; used by SPLADE, Formal et al., SIGIR 2021)."""

from __future__ import annotations

import torch


def flops(representations: torch.Tensor) -> torch.Tensor:
    """FLOPS = sum_t (mean_i |w_{i,t}|)^2 over a batch of (rows, vocabulary) representations.

    A smooth surrogate of the expected number of multiply-adds of a sparse dot product: it pushes down the tokens
    that are active in many rows (posting-list length) far more than rare ones.
    """
    return representations.abs().mean(dim=0).pow(2).sum()


def flops_weight(step: int, target: float, warmup_steps: int) -> float:
    """Quadratic warm-up of the FLOPS weight: lambda(step) = target * min(1, (step / T)^2).

    Starting at 0 lets the ranking loss shape the representations before sparsity is enforced (SPLADE's schedule).
    ``step`` counts optimizer updates from 0.
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return float(target)
    return float(target) * (step / warmup_steps) ** 2
