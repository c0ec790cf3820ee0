"""One wrapper that combines the training losses and returns every named term for logging."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lsr.errors import InvalidInput
from lsr.training.losses.contrastive import contrastive_loss
from lsr.training.losses.flops import flops, flops_weight
from lsr.training.losses.idf_flops import contribution_flops, idf_aware_flops
from lsr.training.losses.kl import kl_distillation
from lsr.training.losses.margin_mse import margin_mse

REGULARIZERS = ("idf-flops", "flops")


@dataclass
class LossWeights:
    contrastive: float = 1.0  # labels: positive vs hard and in-batch negatives
    kl: float = 1.0  # distillation from the (ensemble) teacher over each query's candidates
    margin_mse: float = 0.0
    temperature: float = 1.0  # KL temperature
    contrastive_temperature: float = 1.0  # scores / tau in the contrastive term (sparse dot products run large)
    flops_documents: float = 0.002  # target lambda_d, reached by the quadratic warm-up
    flops_queries: float = 0.0  # target lambda_q (siamese models only)
    flops_warmup_steps: int = 200
    regularizer: str = "idf-flops"  # inference-free: "idf-flops" (before the IDF factor) or "flops" (on idf * w)

    def __post_init__(self) -> None:
        if self.regularizer not in REGULARIZERS:
            raise InvalidInput(f"regularizer must be one of {', '.join(REGULARIZERS)}, got {self.regularizer!r}")
        for name in ("contrastive", "kl", "margin_mse", "flops_documents", "flops_queries"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"loss weight {name} must be >= 0, got {getattr(self, name)}")
        if self.temperature <= 0 or self.contrastive_temperature <= 0:
            raise InvalidInput(f"temperatures must be > 0, got {self.temperature}, {self.contrastive_temperature}")


class CombinedLoss:
    """total = a*contrastive + b*KL + c*MarginMSE + lambda_d(step)*FLOPS(docs) + lambda_q(step)*FLOPS(queries).

    Scores come in as (queries, batch documents); each query's own candidates are ``candidates`` (queries, n)
    column indices into the batch documents, positive first.
    """

    def __init__(self, weights: LossWeights, idf: torch.Tensor | None = None) -> None:
        if weights.regularizer == "flops" and idf is None:
            raise InvalidInput("regularizer 'flops' on contributions needs the IDF table")
        self.weights = weights
        self.idf = idf

    def __call__(self, scores: torch.Tensor, candidates: torch.Tensor, document_weights: torch.Tensor, step: int,
                 teacher: torch.Tensor | None = None, in_batch_mask: torch.Tensor | None = None,
                 query_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        w = self.weights
        own = scores.gather(1, candidates)
        terms: dict[str, torch.Tensor] = {}
        total = scores.new_zeros(())
        if w.contrastive > 0:
            terms["contrastive"] = contrastive_loss(scores / w.contrastive_temperature, candidates[:, 0], in_batch_mask)
            total = total + w.contrastive * terms["contrastive"]
        if teacher is not None and w.kl > 0:
            terms["kl"] = kl_distillation(own, teacher, w.temperature)
            total = total + w.kl * terms["kl"]
        if teacher is not None and w.margin_mse > 0:
            terms["margin_mse"] = margin_mse(own, teacher)
            total = total + w.margin_mse * terms["margin_mse"]
        if w.regularizer == "flops":
            terms["flops_d"] = contribution_flops(document_weights, self.idf)
        else:
            terms["flops_d"] = idf_aware_flops(document_weights)
        lambda_d = flops_weight(step, w.flops_documents, w.flops_warmup_steps)
        total = total + lambda_d * terms["flops_d"]
        if query_weights is not None and w.flops_queries > 0:
            terms["flops_q"] = flops(query_weights)
            total = total + flops_weight(step, w.flops_queries, w.flops_warmup_steps) * terms["flops_q"]
        terms["loss"] = total
        return terms
