"""MarginMSE distillation (Hofstätter et al., arXiv 2010.02666)."""

from __future__ import annotations

import torch


def margin_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between student and teacher margins s(q, d+) - s(q, d-).

    student, teacher: (queries, candidates) scores with the positive in column 0 and negatives after it.
    mask: optional (queries, candidates) bool, False for padding candidates (never the positive).
    """
    student_margin = student[:, :1] - student[:, 1:]
    teacher_margin = teacher[:, :1] - teacher[:, 1:]
    squared = (student_margin - teacher_margin) ** 2
    if mask is None:
        return squared.mean()
    keep = mask[:, 1:].to(squared.dtype)
    return (squared * keep).sum() / keep.sum().clamp(min=1)
