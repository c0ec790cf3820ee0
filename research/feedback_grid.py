"""Pseudo-relevance feedback, each side apart: Rocchio on the learned sparse side (a grid over docs, terms,
weight), RM3 on the BM25 side (docs, expansion terms, weight), on NFCorpus dev, the side alone and fused in the
index's default hybrid, against no feedback; then the best dev setting of each on test, once, with the paired test
against no feedback.

python research/feedback_grid.py var/indexes/nfcorpus-hybrid [sparse|bm25 ...]
"""

import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from the repository root

from lsr.corpus import read_qrels  # noqa: E402
from lsr.engine import Engine  # noqa: E402
from lsr.evaluation import evaluate, per_query_metrics, read_trec_run  # noqa: E402
from lsr.request import Feedback  # noqa: E402
from lsr.significance import paired  # noqa: E402

BEIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "nfcorpus"
OUT = Path("var/research/feedback")
OUT.mkdir(parents=True, exist_ok=True)
engine = Engine.open(sys.argv[1])


def run(split, mode, feedback, name):
    path = OUT / f"{split}-{name}.trec"
    m = evaluate(engine, BEIR, split=split, k=100, run_path=path, progress=False, batch_throughput=False, mode=mode,
                 feedback=feedback)
    return m, per_query_metrics(read_trec_run(path), read_qrels(BEIR, split))


results = {}
sides = sys.argv[2:] or ["sparse", "bm25"]
GRIDS = {"sparse": [Feedback(d, t, w, components=("sparse",))
                    for d, t, w in itertools.product((3, 5, 10), (20, 50, 100), (0.5, 0.7, 0.9))],
         "bm25": [Feedback(d, 50, w, b, components=("bm25",))
                  for d, b, w in itertools.product((5, 10), (10, 20, 50), (0.3, 0.5, 0.7))]}
for side, mode in [(s, m) for s in sides for m in (s, "hybrid")]:
    base, base_q = run("dev", mode, None, f"{mode}-none")
    rows = [("none", base["ndcg@10"], base["recall@100"], base["latency_ms_p50"])]
    best = None
    for fb in GRIDS[side]:
        docs, terms, weight = fb.docs, fb.terms if side == "sparse" else fb.bm25_terms, fb.weight
        m, q = run("dev", mode, fb, f"{side}-{mode}-{docs}-{terms}-{weight}")
        rows.append((f"{docs},{terms},{weight}", m["ndcg@10"], m["recall@100"], m["latency_ms_p50"]))
        if best is None or m["ndcg@10"] > best[1]:
            best = (fb, m["ndcg@10"])
    rows.sort(key=lambda r: -r[1])
    print(f"== {side} feedback, {mode} on dev: no feedback {base['ndcg@10']:.4f}; top settings")
    for r in rows[:6]:
        print(f"   {r[0]:>12} nDCG@10 {r[1]:.4f} R@100 {r[2]:.4f} p50 {r[3]:.2f} ms")
    test_base, tq = run("test", mode, None, f"{mode}-none")
    test_fb, fq = run("test", mode, best[0], f"{side}-{mode}-best")
    order = sorted(tq)
    test = paired([fq[x]["ndcg@10"] for x in order], [tq[x]["ndcg@10"] for x in order])
    print(f"== {side} feedback, {mode} on test: none {test_base['ndcg@10']:.4f} R@100 {test_base['recall@100']:.4f} MRR "
          f"{test_base['mrr@10']:.4f} p50 {test_base['latency_ms_p50']:.2f} ms | feedback {best[0]} "
          f"{test_fb['ndcg@10']:.4f} R@100 {test_fb['recall@100']:.4f} MRR {test_fb['mrr@10']:.4f} p50 "
          f"{test_fb['latency_ms_p50']:.2f} ms | diff {test['mean_difference']:+.4f} "
          f"[{test['ci'][0]:+.4f}, {test['ci'][1]:+.4f}] p = {test['p_value']:.3g}")
    results[f"{side}/{mode}"] = {"dev": rows, "best": str(best[0]), "test_none": test_base, "test_feedback": test_fb,
                     "test_paired": test}
(OUT / "results.json").write_text(json.dumps(results, indent=2, default=str))
