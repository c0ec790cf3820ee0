"""Offline BEIR evaluation through the same Searcher the HTTP API uses; metrics by pytrec_eval (trec_eval)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytrec_eval
from tqdm.auto import tqdm

from indexer.corpus import read_qrels, read_queries
from service.searcher import Searcher


def trec_metrics(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """nDCG@10, Recall@100 and MRR@10 (reciprocal rank of the run cut at 10), averaged over the judged queries.

    Queries with no hits count as zero, as in trec_eval's -c mode.
    """
    full_run = {qid: run.get(qid, {}) or {"__no_hit__": 0.0} for qid in qrels}
    top10 = {qid: dict(sorted(hits.items(), key=lambda kv: -kv[1])[:10]) for qid, hits in full_run.items()}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(full_run)
    per_query_rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    return {
        "ndcg@10": float(np.mean([m["ndcg_cut_10"] for m in per_query.values()])),
        "recall@100": float(np.mean([m["recall_100"] for m in per_query.values()])),
        "mrr@10": float(np.mean([m["recip_rank"] for m in per_query_rr.values()])),
    }


def write_trec_run(run: dict[str, dict[str, float]], path: Path, tag: str) -> None:
    with path.open("w", encoding="utf-8") as out:
        for qid, hits in run.items():
            for rank, (doc, score) in enumerate(sorted(hits.items(), key=lambda kv: (-kv[1], kv[0])), start=1):
                out.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")


def evaluate(searcher: Searcher, beir_dir: str | Path, split: str = "test", k: int = 1000,
             run_path: str | Path | None = None, progress: bool = True) -> dict:
    """Run every judged query of ``split`` one at a time (timed end to end: encode + score) and score the run."""
    queries = read_queries(beir_dir)
    qrels = read_qrels(beir_dir, split)
    missing = [qid for qid in qrels if qid not in queries]
    if missing:
        raise ValueError(f"{len(missing)} judged queries are missing from queries.jsonl (first: {missing[0]})")
    qids = sorted(qrels)
    searcher.search(queries[qids[0]], k)  # warm-up: JIT compile and page in the index
    run: dict[str, dict[str, float]] = {}
    latencies, postings = [], []
    for qid in tqdm(qids, desc=f"searching {split}", unit="query", disable=not progress):
        started = time.perf_counter()
        result = searcher.search_batch([queries[qid]], k, threads=1)[0]
        latencies.append((time.perf_counter() - started) * 1000)
        postings.append(result.postings)
        run[qid] = dict(zip(result.ids, result.scores))
    metrics = trec_metrics(run, qrels)
    latency = np.asarray(latencies)
    manifest = searcher.index.manifest
    metrics.update({
        "latency_ms_mean": float(latency.mean()),
        "latency_ms_p50": float(np.percentile(latency, 50)),
        "latency_ms_p99": float(np.percentile(latency, 99)),
        "qps": float(len(latency) / (latency.sum() / 1000)),
        "postings_per_query": float(np.mean(postings)),
        "queries": len(qids),
        "split": split,
        "k": k,
        "index": str(searcher.index.directory),
        "impact_dtype": manifest.impact_dtype,
        "encoder_kind": manifest.encoder.get("kind"),
        "encoder_identity": manifest.encoder.get("identity"),
        "doc_count": manifest.doc_count,
        "avg_doc_nnz": manifest.postings / max(1, manifest.doc_count),
    })
    if run_path is not None:
        write_trec_run(run, Path(run_path), tag=f"lsr-{manifest.encoder.get('kind')}")
    return metrics
