from __future__ import annotations

import pytest

from service.fusion import convex_fusion, min_max_normalize, rrf_fusion

SPARSE = [("a", 10.0), ("b", 6.0), ("c", 2.0)]
DENSE = [("c", 0.9), ("d", 0.8), ("a", 0.4)]


def test_min_max_edge_cases():
    assert min_max_normalize([]) == []
    assert min_max_normalize([3.0]) == [1.0]
    assert min_max_normalize([2.0, 2.0]) == [1.0, 1.0]
    assert min_max_normalize([10.0, 6.0, 2.0]) == [1.0, 0.5, 0.0]


def test_convex_by_hand():
    fused = dict(convex_fusion(SPARSE, DENSE, alpha=0.5))
    # sparse normalized: a 1, b .5, c 0; dense normalized: c 1, d .8, a 0
    assert fused == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.5, "d": 0.4})
    assert [doc for doc, _ in convex_fusion(SPARSE, DENSE, alpha=0.5)] == ["a", "c", "d", "b"]  # a/c tie: id order
    assert [doc for doc, _ in convex_fusion(SPARSE, DENSE, alpha=1.0, k=2)] == ["a", "b"]
    with pytest.raises(ValueError, match="alpha"):
        convex_fusion(SPARSE, DENSE, alpha=1.5)


def test_rrf_by_hand():
    fused = dict(rrf_fusion(SPARSE, DENSE))
    assert fused == pytest.approx({"a": 1 / 61 + 1 / 63, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62})
    assert [doc for doc, _ in rrf_fusion(SPARSE, DENSE, k=3)] == ["a", "c", "b"]
    assert rrf_fusion([], []) == []
