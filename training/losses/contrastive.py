"""Contrastive ranking loss over the positive, the query's hard negatives and in-batch negatives."""

from __future__ import annotations

import torch


def contrastive_loss(scores: torch.Tensor, positive: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of each query's positive against every other candidate scored for it.

    scores: (queries, documents) student scores of every query against every document of the batch (its own
    positive and hard negatives, and the other queries' documents as in-batch negatives).
    positive: (queries,) column of each query's positive.
    mask: optional (queries, documents) bool, False where a document must not count as a negative for a query
    (e.g. another query's document that is also judged relevant for it); the positive is always kept.

    loss = mean_q [ -s(q, d+) + log sum_{d in candidates(q)} exp s(q, d) ]
    """
    if mask is not None:
        keep = mask.clone()
        keep[torch.arange(len(positive), device=scores.device), positive] = True
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.nn.functional.cross_entropy(scores, positive)
