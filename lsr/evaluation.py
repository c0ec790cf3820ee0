"""Offline BEIR evaluation through the same :class:`~lsr.engine.Engine` the HTTP API uses (every mode, every
backend, and the BM25 baselines); metrics by pytrec_eval (trec_eval)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lsr.corpus import read_qrels, read_queries
from lsr.engine import Engine
from lsr.errors import CorpusError
from lsr.fusion import Fusion
from lsr.request import SearchRequest


def rank_scored(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, float]]:
    """Each judged query's ranking as strictly decreasing scores (trec_eval re-sorts by score); no hits: one dummy."""
    return {qid: {doc: float(len(ranked) - rank) for rank, doc in enumerate(ranked)} or {"__no_hit__": 0.0}
            for qid in qrels for ranked in [run.get(qid, [])]}


def trec_metrics(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """nDCG@10, Recall@100 and MRR@10 (reciprocal rank of the run cut at 10), averaged over the judged queries.

    ``run`` maps a query to its ranked document ids, best first. trec_eval re-sorts by score and breaks ties its own
    way, so it gets strictly decreasing rank-based scores: the metrics score exactly the ranking the API returns.
    Queries with no hits count as zero, as in trec_eval's -c mode.
    """
    import pytrec_eval

    full_run = rank_scored(run, qrels)
    top10 = {qid: {doc: float(10 - rank) for rank, doc in enumerate(run.get(qid, [])[:10])} or {"__no_hit__": 0.0}
             for qid in qrels}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(full_run)
    per_query_rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    return {
        "ndcg@10": float(np.mean([m["ndcg_cut_10"] for m in per_query.values()])),
        "recall@100": float(np.mean([m["recall_100"] for m in per_query.values()])),
        "mrr@10": float(np.mean([m["recip_rank"] for m in per_query_rr.values()])),
    }


RECALL_CUTOFFS = (10, 20, 50, 100, 200, 500, 1000)


def per_query_metrics(run: dict[str, list[str]], qrels: dict[str, dict[str, int]],
                      cutoffs: Sequence[int] = RECALL_CUTOFFS) -> dict[str, dict[str, float]]:
    """Per judged query: nDCG@10 and recall at each cutoff of the ranking ``run`` gives (ranks, as
    :func:`trec_metrics` scores them; a query with no hits scores 0)."""
    import pytrec_eval

    full_run = rank_scored(run, qrels)
    measures = {"ndcg_cut.10", "recall." + ",".join(str(c) for c in cutoffs)}
    evaluated = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(full_run)
    return {qid: {"ndcg@10": m["ndcg_cut_10"], **{f"recall@{c}": m[f"recall_{c}"] for c in cutoffs}}
            for qid, m in evaluated.items()}


def read_trec_run(path: str | Path) -> dict[str, list[str]]:
    """A TREC run file as query -> document ids in rank order."""
    ranked: dict[str, list[tuple[int, str]]] = {}
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise CorpusError(f"{path}:{number}: a TREC run line has 6 fields (qid Q0 doc rank score tag), "
                                  f"found {len(parts)}")
            try:
                ranked.setdefault(parts[0], []).append((int(parts[3]), parts[2]))
            except ValueError:
                raise CorpusError(f"{path}:{number}: rank {parts[3]!r} is not an integer") from None
    return {qid: [doc for _, doc in sorted(hits)] for qid, hits in ranked.items()}


def write_trec_run(run: dict[str, list[tuple[str, float]]], path: Path, tag: str) -> None:
    """TREC run file, hits in the engine's order (ties as the API breaks them)."""
    with path.open("w", encoding="utf-8") as out:
        for qid, hits in run.items():
            for rank, (doc, score) in enumerate(hits, start=1):
                out.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")


def judged_queries(beir_dir: str | Path, split: str, qids: Sequence[str] | None = None
                   ) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """The queries and qrels of ``split`` (restricted to ``qids``), checked: judgments exist, queries are known."""
    queries = read_queries(beir_dir)
    qrels = read_qrels(beir_dir, split)
    if qids is not None:
        qrels = {qid: qrels[qid] for qid in qids if qid in qrels}
    if not qrels:
        raise CorpusError(f"{beir_dir}/qrels/{split}.tsv has no judgments; nothing to evaluate")
    missing = [qid for qid in qrels if qid not in queries]
    if missing:
        raise CorpusError(f"{len(missing)} judged queries are missing from queries.jsonl (first: {missing[0]})")
    return queries, qrels


def evaluate(engine: Engine, beir_dir: str | Path, split: str = "test", k: int = 1000,
             run_path: str | Path | None = None, progress: bool = True, ignore_identical_ids: bool = True,
             qids: Sequence[str] | None = None, batch_throughput: bool = True, mode: str | None = None,
             fusion: Fusion | None = None, filter=None, feedback=None) -> dict:
    """Run every judged query of ``split`` one at a time (timed end to end: encode + retrieve + fuse) and score the
    run.

    ``qps`` is sequential single-query throughput (1000 / mean latency); ``qps_batch`` answers all queries in one
    multi-threaded batch. As BEIR does, a hit whose id equals the query id is dropped (``ignore_identical_ids``; each
    query retrieves k + 1 so k remain). ``qids`` restricts the evaluation to those judged queries (training uses a
    fixed dev slice). ``mode``, ``fusion`` and ``filter`` are those of the HTTP API (default: the index's default
    mode, no filter): one :class:`~lsr.request.SearchRequest`, resolved once.
    """
    queries, qrels = judged_queries(beir_dir, split, qids)
    if k < 100:
        print(f"warning: --k {k} < 100, so recall@100 is computed on {k} hits", file=sys.stderr)
    qids = sorted(qrels)
    depth = k + 1 if ignore_identical_ids else k
    if feedback is None and mode in (None, engine.default_mode) and fusion is None:
        feedback = getattr(engine, "default_feedback", None)  # the index default's, as a server's default mode
    request = engine.resolve(SearchRequest(k=depth, mode=mode, fusion=fusion, filter=filter, feedback=feedback))
    mode, fusion = request.mode, request.fusion
    one, batch = request.with_(threads=1), request
    warm = [queries[qid] for qid in qids[:2]]  # warm-up: compile both kernel variants, page in the index
    engine.search_batch(warm[:1], request=one)
    engine.search_batch(warm, request=batch)
    run: dict[str, list[tuple[str, float]]] = {}
    latencies, postings, exact = [], [], True
    for qid in tqdm(qids, desc=f"searching {split}", unit="query", disable=not progress):
        started = time.perf_counter()
        result = engine.search_batch([queries[qid]], request=one)[0]
        latencies.append((time.perf_counter() - started) * 1000)
        postings.append(result.postings)
        exact &= result.exact
        run[qid] = [(doc, score) for doc, score in zip(result.ids, result.scores)
                    if not (ignore_identical_ids and doc == qid)][:k]
    batch_s = float("nan")
    if batch_throughput:
        started = time.perf_counter()
        engine.search_batch([queries[qid] for qid in qids], request=batch)
        batch_s = time.perf_counter() - started
    metrics = trec_metrics({qid: [doc for doc, _ in hits] for qid, hits in run.items()}, qrels)
    latency = np.asarray(latencies)
    metrics.update({
        "mode": mode,
        **({"fusion": fusion.describe(k)} if mode == "hybrid" else {}),
        **({"filter": filter if not isinstance(filter, str) else __import__("json").loads(filter)}
           if filter is not None else {}),
        **({"feedback": {"docs": feedback.docs, "terms": feedback.terms, "weight": feedback.weight,
                         "bm25_terms": feedback.bm25_terms, "components": list(feedback.components)}}
           if feedback else {}),
        "components": {c: engine.retrievers[c].name for c in (fusion.components if mode == "hybrid" else (mode,))},
        "exact": exact,
        "latency_ms_mean": float(latency.mean()),
        "latency_ms_p50": float(np.percentile(latency, 50)),
        "latency_ms_p99": float(np.percentile(latency, 99)),
        "qps": float(len(latency) / (latency.sum() / 1000)),
        "qps_batch": float(len(qids) / batch_s),
        "postings_per_query": float(np.mean(postings)),
        "queries": len(qids),
        "split": split,
        "k": k,
    })
    sparse = engine.retrievers.get("sparse")
    if sparse is not None:
        metrics["threads"] = getattr(sparse, "threads", 1)
        metrics["backend"] = engine.backend
        if hasattr(sparse, "pruning"):
            metrics["pruning"] = sparse.pruning.method
    if engine.index is not None:
        manifest = engine.index.manifest
        metrics.update({
            "index": str(engine.index.directory) if engine.index.directory else "in memory",
            "impact_dtype": manifest.impact_dtype,
            "encoder_kind": manifest.encoder.get("kind"),
            "encoder_identity": manifest.encoder.get("identity"),
            "doc_count": engine.state().snapshot.doc_count,
            "avg_doc_nnz": engine.state().snapshot.postings / max(1, engine.state().snapshot.doc_count),
            "generation": engine.generation,
        })
    if run_path is not None:
        kind = engine.index.manifest.encoder.get("kind") if engine.index is not None else "baseline"
        write_trec_run(run, Path(run_path), tag=f"lsr-{kind}-{mode}")
    return metrics


def evaluate_service(client, beir_dir: str | Path, split: str = "test", k: int = 1000,
                     run_path: str | Path | None = None, progress: bool = True, ignore_identical_ids: bool = True,
                     mode: str | None = None, fusion: Fusion | None = None, filter=None) -> dict:
    """:func:`evaluate` of a deployed service, through :class:`lsr.Client` (``client``, maybe bound to a collection):
    the same judged queries, one request each, the same metrics and run file, plus each request's latency over HTTP
    (client to answer: the network, the server's queueing and the search) and the queries that failed (counted,
    scored as no hits, after the client's bounded retries)."""
    from lsr.client import Invalid, ServiceError

    queries, qrels = judged_queries(beir_dir, split)
    qids = sorted(qrels)
    depth = k + 1 if ignore_identical_ids else k
    try:
        client.search(queries[qids[0]], k=depth, mode=mode, fusion=fusion, filter=filter)  # connect, first request
    except Invalid as exc:  # k + 1 over the server's max_k (1000 by default): ask k, as deep as it answers
        if exc.loc != ("body", "k") or depth == k:
            raise
        depth = k
        client.search(queries[qids[0]], k=depth, mode=mode, fusion=fusion, filter=filter)
    run: dict[str, list[tuple[str, float]]] = {}
    latencies, server_ms, errors, exact, answered = [], [], [], True, None
    for qid in tqdm(qids, desc=f"searching {split} over HTTP", unit="query", disable=not progress):
        started = time.perf_counter()
        try:
            result = client.search(queries[qid], k=depth, mode=mode, fusion=fusion, filter=filter)
        except ServiceError as exc:
            errors.append({"query": qid, "status": exc.status, "detail": str(exc)[:300]})
            run[qid] = []
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        server_ms.append(result.retrieve_ms)
        exact &= result.exact
        answered = result
        run[qid] = [(doc, score) for doc, score in zip(result.ids, result.scores)
                    if not (ignore_identical_ids and doc == qid)][:k]
    metrics = trec_metrics({qid: [doc for doc, _ in hits] for qid, hits in run.items()}, qrels)
    latency = np.asarray(latencies or [float("nan")])
    metrics.update({
        "mode": answered.mode if answered is not None else mode,
        **({"fusion": fusion.describe(k)} if fusion is not None else {}),
        **({"filter": filter} if filter is not None else {}),
        "exact": exact,
        "service": client.url + (f"/collections/{client._routes.collection}" if client._routes.collection else ""),
        "http_latency_ms_mean": float(latency.mean()),
        "http_latency_ms_p50": float(np.percentile(latency, 50)),
        "http_latency_ms_p99": float(np.percentile(latency, 99)),
        "server_took_ms_p50": float(np.percentile(server_ms, 50)) if server_ms else float("nan"),
        "latency_ms_mean": float(latency.mean()),  # (the names --report plots and tables)
        "latency_ms_p50": float(np.percentile(latency, 50)),
        "latency_ms_p99": float(np.percentile(latency, 99)),
        "qps": float(len(latencies) / (latency.sum() / 1000)) if latencies else 0.0,
        "errors": len(errors),
        **({"error_examples": errors[:5]} if errors else {}),
        "queries": len(qids),
        "split": split,
        "k": k,
        "depth": depth,
        "generation": answered.generation if answered is not None else None,
    })
    if run_path is not None:
        write_trec_run(run, Path(run_path), tag=f"lsr-service-{metrics['mode']}")
    return metrics


def recall_against_exact(approximate: Engine, exact: Engine, beir_dir: str | Path, split: str, k: int = 1000,
                         at: int = 10, filter=None) -> dict:
    """Mean recall@``at`` of the approximate sparse top-k against the exact one (both retrieving ``k``, as the
    evaluation does), over the split's judged queries; a query with no exact hit counts as recalled."""
    queries, qrels = judged_queries(beir_dir, split)
    texts = [queries[qid] for qid in sorted(qrels)]
    got = approximate.search_batch(texts, k, "sparse", filter=filter)
    want = exact.search_batch(texts, k, "sparse", filter=filter)
    recalls = [len(set(a.ids[:at]) & set(b.ids[:at])) / len(b.ids[:at]) if b.ids else 1.0 for a, b in zip(got, want)]
    return {f"recall@{at}_vs_exact": float(sum(recalls) / max(1, len(recalls)))}
