"""``lsr tune``: fit an index's fusion to a user's judgments, without new retrieval per setting.

Each component (sparse, dense, BM25) ranks every judged query once, ``max(depths)`` deep, in one batch; every
setting of the search space then re-fuses those lists in Python (:meth:`lsr.fusion.Fusion.fuse`, the function the
engine fuses with, over the same top-``depth`` lists the engine would ask for), so a setting costs a fusion and a
trec_eval, not a search. The space:

- the components: every pair the index has, and all three;
- convex fusion with min-max, z-score or arctan normalization, and RRF with k in 10, 30, 60, 100;
- the weights, on a grid of 0.1 (pairs) and of 0.1 over the simplex (three, each at least 0.1);
- the per-component depth, among ``depths``.

The best setting's score comes with a bootstrap 95 % confidence interval over the queries, and against the
index's current default a paired randomization test (:mod:`lsr.significance`): a setting picked as the best of
hundreds on one split is optimistic there; the test split is where it is judged.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lsr.fusion import NORMALIZATIONS, Fusion

RRF_KS = (10, 30, 60, 100)
METRICS = {"ndcg@10": "ndcg_cut_10", "recall@100": "recall_100", "mrr@10": "recip_rank"}


@dataclass
class Scored:
    fusion: Fusion
    score: float
    per_query: dict[str, float]


def component_lists(engine, queries: Mapping[str, str], components: Sequence[str], depth: int, feedback=None
                    ) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """{component: {query id: [(doc, score), ...]}}: each component's top-``depth`` for every query, one batch
    each (the exact lists a hybrid request of that depth fuses; with ``feedback``, its sides' lists are those of the
    expanded queries, as a hybrid request with that feedback fuses them)."""
    qids = sorted(queries)
    texts = [queries[q] for q in qids]
    out = {}
    for component in components:
        expand = feedback is not None and component in feedback.components
        results = engine.search_batch(texts, k=depth, mode=component, feedback=feedback if expand else False)
        out[component] = {q: list(zip(r.ids, r.scores)) for q, r in zip(qids, results)}
    return out


def search_space(components: Sequence[str], depths: Sequence[int], step: float = 0.1) -> list[Fusion]:
    """Every setting of the module's space over ``components`` (the ones the index has)."""
    groups = [tuple(c) for n in (2, 3) for c in itertools.combinations(components, n)]
    settings = []
    ticks = round(1 / step)
    for group in groups:
        if len(group) == 2:
            grid = [(i / ticks, 1 - i / ticks) for i in range(1, ticks)]
        else:
            grid = [(i / ticks, j / ticks, (ticks - i - j) / ticks) for i in range(1, ticks) for j in range(1, ticks - i)]
        for depth in depths:
            for weights in grid:
                weights = tuple(round(w, 6) for w in weights)
                for normalization in NORMALIZATIONS:
                    settings.append(Fusion("convex", group, weights, depth=depth, normalization=normalization))
                for rrf_k in RRF_KS:
                    settings.append(Fusion("rrf", group, weights, rrf_k=rrf_k, depth=depth))
    return settings


class Scorer:
    """One trec_eval evaluator over the judgments, reused for every setting."""

    def __init__(self, qrels: Mapping[str, Mapping[str, int]], metric: str = "ndcg@10", k: int = 100) -> None:
        import pytrec_eval

        if metric not in METRICS:
            raise ValueError(f"metric {metric!r}: one of {', '.join(METRICS)}")
        self.qrels, self.metric, self.k = qrels, metric, k
        measure = {"ndcg@10": "ndcg_cut.10", "recall@100": "recall.100", "mrr@10": "recip_rank"}[metric]
        self.evaluator = pytrec_eval.RelevanceEvaluator(dict(qrels), {measure})
        self.cut = 10 if metric == "mrr@10" else k

    def __call__(self, ranked: Mapping[str, Sequence[str]]) -> tuple[float, dict[str, float]]:
        from lsr.evaluation import rank_scored

        evaluated = self.evaluator.evaluate(rank_scored({q: list(ranked.get(q, []))[:self.cut] for q in self.qrels},
                                                        self.qrels))
        per_query = {q: m[METRICS[self.metric]] for q, m in evaluated.items()}
        return sum(per_query.values()) / max(1, len(per_query)), per_query


def fuse_all(fusion: Fusion, lists: Mapping[str, Mapping[str, list]], k: int) -> dict[str, list[str]]:
    qids = next(iter(lists.values())).keys()
    return {q: [doc for doc, _ in fusion.fuse([lists[c][q][:fusion.depth] for c in fusion.components], k)]
            for q in qids}


def tune(engine, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], metric: str = "ndcg@10",
         depths: Sequence[int] = (50, 100, 200), components: Sequence[str] | None = None, top: int = 15,
         progress=None, feedback=None) -> dict:
    """Search the fusion space on these judgments (with ``feedback``: over the lists of its expanded sides, as a
    default mode with that feedback fuses them). Returns the best setting, its score and CI, the index's default
    setting's score (with the same feedback) and the paired test against it, the ``top`` settings, and the cost."""
    from lsr.significance import mean_ci, paired

    started = time.perf_counter()
    components = [c for c in (components or ("sparse", "dense", "bm25")) if c in engine.retrievers]
    if len(components) < 2:
        raise ValueError(f"tuning fuses two or three components; this index serves {engine.modes()}")
    queries = {q: queries[q] for q in qrels}
    default = engine.default_fusion() if engine.default_mode == "hybrid" else None
    deepest = max(max(depths), default.depth if default is not None else 0)
    lists = component_lists(engine, queries, components, deepest, feedback)
    retrieved_s = time.perf_counter() - started
    scorer = Scorer(qrels, metric)
    space = search_space(components, depths)
    scored: list[Scored] = []
    for number, fusion in enumerate(space):
        score, per_query = scorer(fuse_all(fusion, lists, scorer.cut))
        scored.append(Scored(fusion, score, per_query))
        if progress is not None:
            progress(number + 1, len(space))
    scored.sort(key=lambda s: (-s.score, s.fusion.describe(10)))
    best = scored[0]
    reference = None
    if default is not None and set(default.components) <= set(components):
        score, per_query = scorer(fuse_all(default, lists, scorer.cut))
        order = sorted(per_query)
        reference = {"fusion": default.to_dict(), "describe": default.describe(10), "score": score,
                     "best_against_it": paired([best.per_query[q] for q in order], [per_query[q] for q in order])}
    return {
        "metric": metric, "queries": len(qrels), "settings": len(space), "components": components,
        "best": {"fusion": best.fusion.to_dict(), "describe": best.fusion.describe(10), "score": best.score,
                 "ci": mean_ci(list(best.per_query.values()))},
        "default": reference,
        "top": [{"fusion": s.fusion.to_dict(), "describe": s.fusion.describe(10), "score": s.score}
                for s in scored[:top]],
        "best_per_family": _best_per_family(scored),
        "retrieval_s": retrieved_s, "search_s": time.perf_counter() - started - retrieved_s,
    }


def _best_per_family(scored: list[Scored]) -> list[dict]:
    """The best setting of each (components, method, normalization or RRF): what each choice is worth."""
    seen: dict[tuple, Scored] = {}
    for s in scored:  # (sorted best first)
        family = (s.fusion.components, s.fusion.method,
                  s.fusion.normalization if s.fusion.method == "convex" else "rrf")
        seen.setdefault(family, s)
    return [{"components": list(f[0]), "method": f[1], "normalization": f[2] if f[1] == "convex" else None,
             "describe": s.fusion.describe(10), "score": s.score} for f, s in seen.items()]


def save(index_directory, fusion: Fusion, record: dict, feedback=None) -> dict:
    """Make ``fusion`` (and ``feedback``, a :class:`lsr.request.Feedback`) the index's default (mode hybrid),
    recording what it was tuned on; under the write lock."""
    from pathlib import Path

    from lsr.index import storage
    from lsr.index.manifest import Manifest

    directory = Path(index_directory)
    lock = storage.WriteLock(directory, wait=10.0)
    try:
        manifest = Manifest.load(directory)
        manifest.search_defaults = {"mode": "hybrid", "fusion": fusion.to_dict(), "tuned": record}
        if feedback is not None:
            from dataclasses import asdict

            manifest.search_defaults["feedback"] = {k: list(v) if isinstance(v, tuple) else v
                                                    for k, v in asdict(feedback).items()}
        manifest.save(directory)
    finally:
        lock.release()
    return manifest.search_defaults
