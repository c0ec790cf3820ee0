"""Fusing two ranked lists (e.g. sparse and dense) over the union of their top hits. Pure functions.

- convex: per-query min-max normalization of each list, then alpha * a + (1 - alpha) * b; a document missing from
  one list gets 0 from it (the minimum after normalization). Bruch et al., "An Analysis of Fusion Functions for
  Hybrid Retrieval" (TOIS 2023).
- rrf: sum over lists of 1 / (k + rank), rank from 1, k = 60. Cormack et al., SIGIR 2009.

Ties in the fused list go to the smaller id, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

Ranked = Sequence[tuple[str, float]]  # (id, score), best first


def min_max_normalize(scores: Sequence[float]) -> list[float]:
    """Scale to [0, 1] by the list's own min and max; a list whose scores are all equal maps to 1.0 each."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def _ordered(fused: dict[str, float], k: int | None) -> list[tuple[str, float]]:
    ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return ranked if k is None else ranked[:k]


def convex_fusion(a: Ranked, b: Ranked, alpha: float = 0.5, k: int | None = None) -> list[tuple[str, float]]:
    """alpha * minmax(a) + (1 - alpha) * minmax(b) over the union of ids."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    fused: dict[str, float] = {}
    for weight, hits in ((alpha, a), (1.0 - alpha, b)):
        for (doc, _), norm in zip(hits, min_max_normalize([score for _, score in hits])):
            fused[doc] = fused.get(doc, 0.0) + weight * norm
    return _ordered(fused, k)


def rrf_fusion(a: Ranked, b: Ranked, rrf_k: int = 60, k: int | None = None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: sum of 1 / (rrf_k + rank) over the lists that hold the id."""
    if rrf_k < 0:
        raise ValueError(f"rrf k must be >= 0, got {rrf_k}")
    fused: dict[str, float] = {}
    for hits in (a, b):
        for rank, (doc, _) in enumerate(hits, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (rrf_k + rank)
    return _ordered(fused, k)
