"""Is a difference between two systems real? Paired tests over the same judged queries (scipy.stats).

- a paired randomization test (sign flips of the per-query differences, two-sided; Smucker, Allan and Carterette,
  CIKM 2007, recommend it for IR): ``p_value``;
- the paired t-test, for reference: ``p_t``;
- a bootstrap 95 % confidence interval of the mean difference (percentile, over queries): ``ci``.

A difference is called significant when the randomization test's p < ``alpha`` (0.05). The resamplings are seeded:
the same runs give the same figures.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

RESAMPLES = 10_000


def paired(a: Sequence[float], b: Sequence[float], alpha: float = 0.05, resamples: int = RESAMPLES,
           seed: int = 0) -> dict:
    """``a`` against ``b``, per query (same order): mean difference a - b, its CI, the p-values, a verdict."""
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"paired samples need two equal lists of at least 2 queries, got {x.shape} and {y.shape}")
    difference = x - y
    if not difference.any():
        return {"mean_difference": 0.0, "ci": [0.0, 0.0], "p_value": 1.0, "p_t": 1.0, "queries": len(x),
                "significant": False, "wins": 0, "losses": 0}
    randomization = stats.permutation_test((x, y), lambda u, v: np.mean(u - v), permutation_type="samples",
                                           n_resamples=resamples, alternative="two-sided", random_state=seed,
                                           vectorized=False)
    bootstrap = stats.bootstrap((difference,), np.mean, n_resamples=resamples, confidence_level=1 - alpha,
                                method="percentile", random_state=seed)
    with warnings.catch_warnings():  # a constant difference: the t statistic is degenerate (the randomization
        warnings.simplefilter("ignore")  # test is the one that decides)
        p_t = float(stats.ttest_rel(x, y).pvalue)
    p = float(randomization.pvalue)
    return {"mean_difference": float(difference.mean()),
            "ci": [float(bootstrap.confidence_interval.low), float(bootstrap.confidence_interval.high)],
            "p_value": p, "p_t": p_t, "queries": len(x), "significant": p < alpha,
            "wins": int((difference > 0).sum()), "losses": int((difference < 0).sum())}


def compare_runs(per_query_a: Mapping[str, Mapping[str, float]], per_query_b: Mapping[str, Mapping[str, float]],
                 metric: str = "ndcg@10", **options) -> dict:
    """:func:`paired` over the queries both per-query tables hold (``lsr.evaluation.per_query_metrics``)."""
    queries = sorted(set(per_query_a) & set(per_query_b))
    return {"metric": metric, **paired([per_query_a[q][metric] for q in queries],
                                       [per_query_b[q][metric] for q in queries], **options)}


def mean_ci(values: Sequence[float], alpha: float = 0.05, resamples: int = RESAMPLES, seed: int = 0) -> list[float]:
    """A bootstrap confidence interval of a mean over queries (a tuned setting's dev score)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    result = stats.bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=1 - alpha,
                             method="percentile", random_state=seed)
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def verdict(result: dict) -> str:
    """One line: ``+0.0042 [-0.0011, +0.0097], p = 0.14: noise``."""
    low, high = result["ci"]
    label = "significant" if result["significant"] else "noise"
    return f"{result['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}], p = {result['p_value']:.3g}: {label}"
