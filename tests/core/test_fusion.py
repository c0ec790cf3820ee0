from __future__ import annotations

import math

import pytest

from lsr.errors import InvalidInput
from lsr.fusion import Fusion, convex_fusion, min_max_normalize, rrf_fusion

SPARSE = [("a", 10.0), ("b", 6.0), ("c", 2.0)]
DENSE = [("c", 0.9), ("d", 0.8), ("a", 0.4)]
BM25 = [("d", 7.0), ("a", 3.0)]


def test_min_max_edge_cases():
    assert min_max_normalize([]) == []
    assert min_max_normalize([3.0]) == [1.0]
    assert min_max_normalize([2.0, 2.0]) == [1.0, 1.0]
    assert min_max_normalize([10.0, 6.0, 2.0]) == [1.0, 0.5, 0.0]


def test_convex_by_hand():
    fused = dict(convex_fusion([SPARSE, DENSE]))
    # sparse normalized: a 1, b .5, c 0; dense normalized: c 1, d .8, a 0
    assert fused == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.5, "d": 0.4})
    assert [doc for doc, _ in convex_fusion([SPARSE, DENSE])] == ["a", "c", "d", "b"]  # a/c tie: id order
    assert [doc for doc, _ in convex_fusion([SPARSE, DENSE], weights=[1.0, 0.0], k=2)] == ["a", "b"]
    with pytest.raises(InvalidInput, match="2 fusion weights for 3 lists"):
        convex_fusion([SPARSE, DENSE, BM25], weights=[0.5, 0.5])


def test_three_components_by_hand():
    fused = dict(convex_fusion([SPARSE, DENSE, BM25], weights=[0.5, 0.25, 0.25]))
    # bm25 normalized: d 1, a 0
    assert fused == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.25, "d": 0.2 + 0.25})
    assert dict(rrf_fusion([SPARSE, DENSE, BM25])) == pytest.approx(
        {"a": 1 / 61 + 1 / 63 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62 + 1 / 61})


def test_rrf_by_hand():
    fused = dict(rrf_fusion([SPARSE, DENSE]))
    assert fused == pytest.approx({"a": 1 / 61 + 1 / 63, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62})
    assert [doc for doc, _ in rrf_fusion([SPARSE, DENSE], k=3)] == ["a", "c", "b"]
    assert rrf_fusion([[], []]) == []
    assert dict(rrf_fusion([SPARSE, DENSE], weights=[2.0, 0.0])) == pytest.approx(
        {"a": 2 / 61, "b": 2 / 62, "c": 2 / 63, "d": 0.0})


def test_fusion_settings_are_checked():
    assert Fusion(alpha=0.3, components=("sparse", "dense")).weights == (0.3, 0.7)
    for bad, match in [({"components": ("sparse", "sparse")}, "different"), ({"components": ("sparse",)}, "two or"),
                       ({"components": ("sparse", "colbert")}, "different"), ({"alpha": 1.5}, "alpha"),
                       ({"alpha": math.nan}, "alpha"), ({"alpha": math.inf}, "alpha"), ({"method": "max"}, "method"),
                       ({"weights": (1.0,)}, "1 fusion weights for 2"), ({"weights": (math.inf, 1.0)}, "finite"),
                       ({"weights": (0.0, 0.0)}, "not all 0"), ({"alpha": 0.5, "weights": (1.0, 1.0)}, "not both"),
                       ({"alpha": 0.5, "components": ("sparse", "dense", "bm25")}, "three"), ({"depth": 0}, "depth")]:
        with pytest.raises(InvalidInput, match=match):
            Fusion(**bad)
