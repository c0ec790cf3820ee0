"""IDF-aware FLOPS for inference-free sparse encoders.

Reference: Z. Geng, D. Ru, Y. Yang, "Towards Competitive Search Relevance For Inference-Free Learned Sparse
Retrievers", arXiv 2411.04403 (2024), Sec. 3.

An inference-free model scores s(q, d) = sum_{t in q} idf_t * w_{d,t}: the query side is the IDF table over the
query's distinct tokens, the document side w_d comes from the encoder. The IDF-aware penalty is FLOPS on the
document weights *before* the IDF factor:

    L_idf-FLOPS = sum_t ( mean_i w_{i,t} )^2.

Token t contributes c_{d,t} = idf_t * w_{d,t} to the score, so in terms of its contribution the penalty is
sum_t ( mean_i c_{i,t} )^2 / idf_t^2: relative to what a token adds to the score, its penalty scales like
1 / idf_t^2. Equivalently, the ranking gradient on w_{d,t} carries the factor idf_t and the penalty gradient does
not. Common tokens ("the", "of": low IDF) are pruned hard, rare informative ones are kept.

The baseline it is compared with, plain FLOPS on the contributions (what a model sees when the IDF is folded into
the document weights), penalizes every token in proportion to its contribution: :func:`contribution_flops`.
"""

from __future__ import annotations

import torch

from lsr.training.losses.flops import flops


def idf_aware_flops(document_weights: torch.Tensor) -> torch.Tensor:
    """sum_t (mean_i w_{i,t})^2 on the document weights before the IDF factor (see the module docstring)."""
    return flops(document_weights)


def contribution_flops(document_weights: torch.Tensor, idf: torch.Tensor) -> torch.Tensor:
    """Plain FLOPS on the score contributions idf_t * w_{i,t}: sum_t (mean_i idf_t w_{i,t})^2."""
    return flops(document_weights * idf)
