"""Offline BEIR evaluation through the same Searcher the HTTP API uses; metrics by pytrec_eval (trec_eval)."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytrec_eval
from tqdm.auto import tqdm

from indexer.corpus import CorpusError, read_qrels, read_queries
from service.engine import Engine, Fusion
from service.searcher import Searcher


def trec_metrics(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """nDCG@10, Recall@100 and MRR@10 (reciprocal rank of the run cut at 10), averaged over the judged queries.

    ``run`` maps a query to its ranked document ids, best first. trec_eval re-sorts by score and breaks ties its own
    way, so it gets strictly decreasing rank-based scores: the metrics score exactly the ranking the API returns.
    Queries with no hits count as zero, as in trec_eval's -c mode.
    """
    full_run = {qid: {doc: float(len(ranked) - rank) for rank, doc in enumerate(ranked)} or {"__no_hit__": 0.0}
                for qid in qrels for ranked in [run.get(qid, [])]}
    top10 = {qid: {doc: float(10 - rank) for rank, doc in enumerate(run.get(qid, [])[:10])} or {"__no_hit__": 0.0}
             for qid in qrels}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(full_run)
    per_query_rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    return {
        "ndcg@10": float(np.mean([m["ndcg_cut_10"] for m in per_query.values()])),
        "recall@100": float(np.mean([m["recall_100"] for m in per_query.values()])),
        "mrr@10": float(np.mean([m["recip_rank"] for m in per_query_rr.values()])),
    }


def write_trec_run(run: dict[str, list[tuple[str, float]]], path: Path, tag: str) -> None:
    """TREC run file, hits in the searcher's order (ties as the API breaks them)."""
    with path.open("w", encoding="utf-8") as out:
        for qid, hits in run.items():
            for rank, (doc, score) in enumerate(hits, start=1):
                out.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")


def evaluate(searcher: Searcher | Engine, beir_dir: str | Path, split: str = "test", k: int = 1000,
             run_path: str | Path | None = None, progress: bool = True, ignore_identical_ids: bool = True,
             qids: Sequence[str] | None = None, batch_throughput: bool = True, mode: str = "sparse",
             fusion: Fusion | None = None) -> dict:
    """Run every judged query of ``split`` one at a time (timed end to end: encode + score) and score the run.

    ``qps`` is sequential single-query throughput (1000 / mean latency); ``qps_batch`` scores all queries in one
    multi-threaded batch. As BEIR does, a hit whose id equals the query id is dropped (``ignore_identical_ids``).
    ``qids`` restricts the evaluation to those judged queries (training uses a fixed dev slice). ``mode`` and
    ``fusion`` are those of the HTTP API (:class:`service.engine.Engine`).
    """
    engine = searcher if isinstance(searcher, Engine) else Engine(searcher)
    engine.require(mode)
    queries = read_queries(beir_dir)
    qrels = read_qrels(beir_dir, split)
    if qids is not None:
        qrels = {qid: qrels[qid] for qid in qids if qid in qrels}
    if not qrels:
        raise CorpusError(f"{beir_dir}/qrels/{split}.tsv has no judgments; nothing to evaluate")
    if k < 100:
        print(f"warning: --k {k} < 100, so recall@100 is computed on {k} hits", file=sys.stderr)
    missing = [qid for qid in qrels if qid not in queries]
    if missing:
        raise ValueError(f"{len(missing)} judged queries are missing from queries.jsonl (first: {missing[0]})")
    qids = sorted(qrels)
    engine.search(queries[qids[0]], k, mode, fusion)  # warm-up: JIT compile and page in the index
    run: dict[str, list[tuple[str, float]]] = {}
    latencies, postings = [], []
    for qid in tqdm(qids, desc=f"searching {split}", unit="query", disable=not progress):
        started = time.perf_counter()
        result = engine.search_batch([queries[qid]], k, mode, fusion, threads=1)[0]
        latencies.append((time.perf_counter() - started) * 1000)
        postings.append(result.postings)
        run[qid] = [(doc, score) for doc, score in zip(result.ids, result.scores)
                    if not (ignore_identical_ids and doc == qid)]
    batch_s = float("nan")
    if batch_throughput:
        started = time.perf_counter()
        engine.search_batch([queries[qid] for qid in qids], k, mode, fusion)
        batch_s = time.perf_counter() - started
    metrics = trec_metrics({qid: [doc for doc, _ in hits] for qid, hits in run.items()}, qrels)
    latency = np.asarray(latencies)
    manifest = engine.index.manifest
    metrics.update({
        "mode": mode,
        **({"fusion": f"{fusion.method} {'+'.join(fusion.components)}"
                      + (f" alpha={fusion.alpha}" if fusion.method == "convex" else f" k={fusion.rrf_k}")
                      + f" depth={max(k, fusion.depth)}"} if mode == "hybrid" else {}),
        "latency_ms_mean": float(latency.mean()),
        "latency_ms_p50": float(np.percentile(latency, 50)),
        "latency_ms_p99": float(np.percentile(latency, 99)),
        "qps": float(len(latency) / (latency.sum() / 1000)),
        "qps_batch": float(len(qids) / batch_s),
        "threads": engine.searcher.threads,
        "backend": engine.searcher.backend,
        **({"pruning": engine.searcher.pruning.method} if engine.searcher.backend == "native" else {}),
        "postings_per_query": float(np.mean(postings)),
        "queries": len(qids),
        "split": split,
        "k": k,
        "index": str(engine.index.directory),
        "impact_dtype": manifest.impact_dtype,
        "encoder_kind": manifest.encoder.get("kind"),
        "encoder_identity": manifest.encoder.get("identity"),
        "doc_count": manifest.doc_count,
        "avg_doc_nnz": manifest.postings / max(1, manifest.doc_count),
    })
    if run_path is not None:
        write_trec_run(run, Path(run_path), tag=f"lsr-{manifest.encoder.get('kind')}-{mode}")
    return metrics


def evaluate_bm25(beir_dir: str | Path, split: str = "test", k: int = 1000, run_path: str | Path | None = None,
                  ignore_identical_ids: bool = True) -> dict:
    """The lexical baseline: BM25 (bm25s, k1 1.5, b 0.75, English stopwords and stemming) over the BEIR corpus."""
    from indexer.corpus import read_corpus
    from training.bm25 import Bm25

    queries = read_queries(beir_dir)
    qrels = read_qrels(beir_dir, split)
    if not qrels:
        raise CorpusError(f"{beir_dir}/qrels/{split}.tsv has no judgments; nothing to evaluate")
    documents = list(read_corpus(beir_dir))
    started = time.perf_counter()
    bm25 = Bm25([d.id for d in documents], [d.contents for d in documents])
    build_s = time.perf_counter() - started
    run, latencies = {}, []
    for qid in sorted(qrels):
        started = time.perf_counter()
        ids, scores = bm25.search(queries[qid], k)
        latencies.append((time.perf_counter() - started) * 1000)
        run[qid] = [(doc, float(s)) for doc, s in zip(ids, scores) if not (ignore_identical_ids and doc == qid)]
    metrics = trec_metrics({qid: [doc for doc, _ in hits] for qid, hits in run.items()}, qrels)
    metrics.update({"system": "bm25 (bm25s k1=1.5 b=0.75, stemmed, stopwords removed)",
                    "latency_ms_mean": float(np.mean(latencies)), "build_s": build_s, "queries": len(qrels),
                    "split": split, "k": k, "doc_count": len(documents)})
    if run_path is not None:
        write_trec_run(run, Path(run_path), tag="bm25")
    return metrics


def evaluate_pyserini_bm25(beir_dir: str | Path, split: str = "test", k: int = 1000, run_path: str | Path | None = None,
                           ignore_identical_ids: bool = True, index_dir: str | Path | None = None) -> dict:
    """The lexical baseline as BEIR reports it: Pyserini's Lucene BM25 (k1 0.9, b 0.4) over a multifield index (title
    and text as separate fields, equal boosts). The Lucene index is built once into ``index_dir`` (default:
    ``var/lucene-bm25/<corpus name>``) and reused."""
    from indexer.corpus import read_corpus
    from indexer.lucene import build_bm25_index, start_jvm

    queries = read_queries(beir_dir)
    qrels = read_qrels(beir_dir, split)
    if not qrels:
        raise CorpusError(f"{beir_dir}/qrels/{split}.tsv has no judgments; nothing to evaluate")
    index_dir = Path(index_dir or Path("var/lucene-bm25") / Path(beir_dir).resolve().name)
    build_s = None
    if not index_dir.exists():
        tmp = index_dir.with_name(index_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        build_s = build_bm25_index(({"id": d.id, "contents": d.text, "title": d.title} for d in read_corpus(beir_dir)),
                                   tmp)
        tmp.rename(index_dir)
    start_jvm()
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(index_dir))
    searcher.set_bm25(0.9, 0.4)
    fields = {"contents": 1.0, "title": 1.0}
    run, latencies = {}, []
    for qid in sorted(qrels):
        started = time.perf_counter()
        hits = searcher.search(queries[qid], k=k + 1, fields=fields)
        latencies.append((time.perf_counter() - started) * 1000)
        run[qid] = [(h.docid, float(h.score)) for h in hits if not (ignore_identical_ids and h.docid == qid)][:k]
    metrics = trec_metrics({qid: [doc for doc, _ in hits] for qid, hits in run.items()}, qrels)
    metrics.update({"system": "bm25 (Pyserini/Lucene, k1=0.9 b=0.4, multifield title+contents)",
                    "latency_ms_mean": float(np.mean(latencies)), "build_s": build_s, "index": str(index_dir),
                    "queries": len(qrels), "split": split, "k": k, "doc_count": searcher.num_docs})
    if run_path is not None:
        write_trec_run(run, Path(run_path), tag="bm25-lucene")
    return metrics
