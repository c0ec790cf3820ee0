"""Distillation by KL divergence between the teacher's and the student's score distributions per query."""

from __future__ import annotations

import torch

from lsr.errors import InvalidInput


def kl_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(p_teacher || p_student) over each query's candidates, averaged over queries.

    student, teacher: (queries, candidates) scores; p = softmax(scores / temperature) along candidates.
    mask: optional (queries, candidates) bool, False for padding candidates (a query with fewer candidates).
    loss = mean_q sum_c p_t(c) (log p_t(c) - log p_s(c)), times temperature^2 so gradients keep their scale
    (Hinton et al., 2015).
    """
    if student.shape != teacher.shape:
        raise InvalidInput(f"student scores {tuple(student.shape)} and teacher scores {tuple(teacher.shape)} differ")
    if mask is not None:
        student = student.masked_fill(~mask, float("-inf"))
        teacher = teacher.masked_fill(~mask, float("-inf"))
    log_p_student = torch.log_softmax(student / temperature, dim=-1)
    log_p_teacher = torch.log_softmax(teacher / temperature, dim=-1)
    p_teacher = log_p_teacher.exp()
    terms = p_teacher * (log_p_teacher - log_p_student)
    terms = torch.where(p_teacher > 0, terms, torch.zeros_like(terms))  # 0 * (-inf - -inf) is 0, not nan
    return terms.sum(dim=-1).mean() * temperature**2
