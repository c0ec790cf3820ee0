"""Fusing ranked lists (sparse, dense, BM25) over the union of their top hits. Pure functions, and the
:class:`Fusion` settings a hybrid request carries.

- convex: per-query normalization of each list, then sum_c w_c * norm_c (w = 1/n each by default; with two
  lists, ``alpha`` is the first list's weight and 1 - alpha the second's); a document missing from a list gets that
  list's minimum. The normalization is min-max (default), z-score (mean 0, standard deviation 1 over the list), or
  Milvus's arctan (2/pi x arctan(score), no per-query statistics). Bruch et al., "An Analysis of Fusion Functions
  for Hybrid Retrieval" (TOIS 2023).
- rrf: sum over lists of w_c / (k + rank), rank from 1, k = 60, w = 1 by default. Cormack et al., SIGIR 2009.

Ties in the fused list go to the smaller id, so results are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lsr.errors import InvalidInput
from lsr.results import COMPONENTS

RankedList = Sequence[tuple[str, float]]  # (id, score), best first
FUSION_METHODS = ("convex", "rrf")
NORMALIZATIONS = ("minmax", "zscore", "arctan")


def min_max_normalize(scores: Sequence[float]) -> list[float]:
    """Scale to [0, 1] by the list's own min and max; a list whose scores are all equal maps to 1.0 each."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def z_score_normalize(scores: Sequence[float]) -> list[float]:
    """(s - mean) / standard deviation over the list; a list whose scores are all equal maps to 0.0 each."""
    if not scores:
        return []
    mean = sum(scores) / len(scores)
    deviation = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    return [0.0] * len(scores) if deviation == 0 else [(s - mean) / deviation for s in scores]


def arctan_normalize(scores: Sequence[float]) -> list[float]:
    """2/pi x arctan(s): Milvus's normalization of inner-product scores into (-1, 1), the same for every query."""
    return [2.0 / math.pi * math.atan(s) for s in scores]


NORMALIZE = {"minmax": min_max_normalize, "zscore": z_score_normalize, "arctan": arctan_normalize}


def _ordered(fused: dict[str, float], k: int | None) -> list[tuple[str, float]]:
    ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return ranked if k is None else ranked[:k]


def convex_fusion(lists: Sequence[RankedList], weights: Sequence[float] | None = None,
                  k: int | None = None, normalization: str = "minmax") -> list[tuple[str, float]]:
    """sum_c weights[c] * norm(lists[c]) over the union of ids (equal weights 1/n by default); an id missing from a
    list gets 0 from it: min-max's minimum; for z-score and arctan each list is shifted so that its minimum is 0
    (a missing id ranks as the list's last)."""
    weights = _weights(lists, weights, 1.0 / max(1, len(lists)))
    normalize = NORMALIZE[normalization]
    fused: dict[str, float] = {}
    for weight, hits in zip(weights, lists):
        normalized = normalize([score for _, score in hits])
        # min-max already puts a list's minimum at 0 (a list of equal scores at 1: its documents above the missing)
        low = min(normalized) if normalized and normalization != "minmax" else 0.0
        for (doc, _), norm in zip(hits, normalized):
            fused[doc] = fused.get(doc, 0.0) + weight * (norm - low)
    return _ordered(fused, k)


def rrf_fusion(lists: Sequence[RankedList], rrf_k: int = 60, weights: Sequence[float] | None = None,
               k: int | None = None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: sum of weights[c] / (rrf_k + rank) over the lists that hold the id."""
    if rrf_k < 0:
        raise InvalidInput(f"rrf k must be >= 0, got {rrf_k}")
    weights = _weights(lists, weights, 1.0)
    fused: dict[str, float] = {}
    for weight, hits in zip(weights, lists):
        for rank, (doc, _) in enumerate(hits, start=1):
            fused[doc] = fused.get(doc, 0.0) + weight / (rrf_k + rank)
    return _ordered(fused, k)


def _weights(lists: Sequence[RankedList], weights: Sequence[float] | None, default: float) -> list[float]:
    if weights is None:
        return [default] * len(lists)
    if len(weights) != len(lists):
        raise InvalidInput(f"{len(weights)} fusion weights for {len(lists)} lists")
    return [float(w) for w in weights]


@dataclass(frozen=True)
class Fusion:
    """How a hybrid request fuses its components. ``components``: any two or three of sparse, dense, bm25;
    ``weights``: one per component (convex default 1/n; rrf default 1); ``alpha``: with exactly two components, the
    first's convex weight (the second gets 1 - alpha); ``depth``: hits each component retrieves (at least k)."""

    method: str = "convex"
    components: tuple[str, ...] = ("sparse", "bm25")
    weights: tuple[float, ...] | None = None
    alpha: float | None = None
    rrf_k: int = 60
    depth: int = 100
    normalization: str = "minmax"  # convex: minmax, zscore or arctan

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))
        if self.method not in FUSION_METHODS:
            raise InvalidInput(f"fusion method must be one of {', '.join(FUSION_METHODS)}, got {self.method!r}")
        if self.normalization not in NORMALIZATIONS:
            raise InvalidInput(f"fusion normalization must be one of {', '.join(NORMALIZATIONS)}, got "
                               f"{self.normalization!r}")
        if len(self.components) < 2 or len(set(self.components)) != len(self.components) or \
                not set(self.components) <= set(COMPONENTS):
            raise InvalidInput(f"fusion components must be two or three different of {', '.join(COMPONENTS)}; got "
                               f"{list(self.components)}")
        if self.alpha is not None:
            if self.weights is not None:
                raise InvalidInput("give fusion weights or alpha, not both")
            if len(self.components) != 2:
                raise InvalidInput("alpha weighs two components (alpha, 1 - alpha); with three, give weights")
            if not (math.isfinite(self.alpha) and 0.0 <= self.alpha <= 1.0):
                raise InvalidInput(f"fusion alpha must be in [0, 1], got {self.alpha}")
            object.__setattr__(self, "weights", (float(self.alpha), 1.0 - float(self.alpha)))
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
            if len(self.weights) != len(self.components):
                raise InvalidInput(f"{len(self.weights)} fusion weights for {len(self.components)} components")
            if not all(math.isfinite(w) and w >= 0 for w in self.weights) or not any(self.weights):
                raise InvalidInput(f"fusion weights must be finite, >= 0 and not all 0; got {list(self.weights)}")
        for name, low in (("depth", 1), ("rrf_k", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInput(f"fusion {name} must be an integer >= {low}, got {value!r}")

    def fuse(self, lists: Sequence[RankedList], k: int) -> list[tuple[str, float]]:
        if self.method == "convex":
            return convex_fusion(lists, self.weights, k, self.normalization)
        return rrf_fusion(lists, self.rrf_k, self.weights, k)

    def to_dict(self) -> dict:
        """The settings :meth:`from_dict` reads (what a manifest's default fusion holds)."""
        spec = {"method": self.method, "components": list(self.components), "rrf_k": self.rrf_k, "depth": self.depth}
        if self.weights is not None:
            spec["weights"] = list(self.weights)
        if self.normalization != "minmax":
            spec["normalization"] = self.normalization
        return spec

    def describe(self, k: int) -> str:
        weights = "" if self.weights is None else " weights=" + ",".join(f"{w:g}" for w in self.weights)
        extra = f" k={self.rrf_k}" if self.method == "rrf" else (
            f" {self.normalization}" if self.normalization != "minmax" else "")
        return f"{self.method} {'+'.join(self.components)}{weights}{extra} depth={max(k, self.depth)}"

    @classmethod
    def from_dict(cls, spec: dict) -> Fusion:
        known = {"method", "components", "weights", "alpha", "rrf_k", "depth", "normalization"}
        unknown = set(spec) - known
        if unknown:
            raise InvalidInput(f"unknown fusion settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in spec.items()})
