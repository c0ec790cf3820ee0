"""The live index's costs, in one run: what adds cost, what segments cost a search, what a merge costs, and what
chunking long documents does to NFCorpus.

    python benchmarks/live_index.py add --output var/bench/live-add.json
    python benchmarks/live_index.py segments --collection nfcorpus --output var/bench/live-seg-nf.json
    python benchmarks/live_index.py segments --collection synthetic --docs 1000000 --output var/bench/live-seg-1m.json
    python benchmarks/live_index.py chunking --output var/bench/live-chunking.json

- ``add``: documents/s of ``IndexWriter.add`` + ``commit`` into an NFCorpus index, one document per commit (what a
  PUT costs), 32 and 512 per commit, for the default inference-free encoder, with a BM25 part, and with MiniLM dense
  embeddings too; and ``lsr index``'s build rate of the same documents for reference.
- ``segments``: the same documents indexed as 1, 4 and 16 segments (an initial build plus commits; nothing deleted,
  nothing merged): exact block-max top-10, one query at a time on one thread (mean, p50, p99 ms of the best of 3
  passes), then the time to merge the 16 segments into one and the latency after. The answers are checked to be the
  same across layouts.
- ``chunking``: NFCorpus test nDCG@10 / R@100 of the shipped default encoder, documents cut at 256 tokens (today's
  default) against chunks of 256 tokens overlapping by 64, scored by the best chunk (max) or the sum.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import NFCORPUS, ROOT, SHARED, percentiles  # noqa: E402,F401


def nfcorpus_documents(limit: int | None = None) -> list:
    from lsr.corpus import read_corpus

    documents = list(read_corpus(NFCORPUS))
    return documents[:limit] if limit else documents


# -- add ---------------------------------------------------------------------------------------------------------------
def bench_add(work: Path, adds: int) -> dict:
    from lsr import Index, load_encoder
    from lsr.index.writer import IndexWriter

    documents = nfcorpus_documents()
    base, extra = documents[:1000], documents[1000:1000 + adds]
    encoder = load_encoder()
    dense = load_encoder(SHARED / "models" / "all-MiniLM-L6-v2", kind="dense")
    rows = []
    for name, options in (("inference-free default", {}), ("+ BM25 part, stored texts", {"bm25": True,
                                                                                         "store_documents": True}),
                          ("+ BM25, texts, MiniLM dense", {"bm25": True, "store_documents": True,
                                                           "dense_encoder": dense})):
        started = time.perf_counter()
        Index.build(encoder, documents=extra, path=work / "build", **options)
        build_rate = len(extra) / (time.perf_counter() - started)
        for per_commit in (1, 32, 512):
            path = work / "index"
            Index.build(encoder, documents=base, path=path, **options)
            count = min(len(extra), 64 if per_commit == 1 else len(extra))
            started = time.perf_counter()
            with IndexWriter(path, encoder=encoder, dense_encoder=options.get("dense_encoder")) as writer:
                for start in range(0, count, per_commit):
                    writer.add(extra[start:start + per_commit])
                    writer.commit()
            seconds = time.perf_counter() - started
            rows.append({"setting": name, "documents_per_commit": per_commit, "documents": count,
                         "documents_per_second": count / seconds, "build_documents_per_second": build_rate,
                         "ms_per_commit": seconds * 1000 / max(1, count // per_commit)})
            print(f"| {name} | {per_commit} | {count / seconds:.1f} | {seconds * 1000 / max(1, count // per_commit):.0f} "
                  f"| {build_rate:.1f} |", flush=True)
            shutil.rmtree(path)
        shutil.rmtree(work / "build")
    return {"rows": rows}


# -- segments ----------------------------------------------------------------------------------------------------------
def collection(name: str, docs: int, queries: int):
    """(vectors as a SparseBatch, ids, query SparseBatch, vocabulary size)"""
    from lsr.sparse import SparseBatch

    if name == "synthetic":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from engines import VOCAB, synthetic

        c = synthetic(docs, queries)
        vectors = SparseBatch(c["indptr"], c["indices"], c["weights"])
        return vectors, c["ids"], SparseBatch.from_rows(c["queries"]), VOCAB, None
    from lsr import load_encoder
    from lsr.corpus import read_qrels, read_queries

    encoder = load_encoder()
    documents = nfcorpus_documents()
    vectors = encoder.encode_documents([d.contents for d in documents])
    texts = read_queries(NFCORPUS)
    questions = [texts[q] for q in sorted(read_qrels(NFCORPUS, "test"))][:queries]
    return vectors, [d.id for d in documents], encoder.encode_queries(questions), encoder.vocab_size, encoder


def build_segments(path: Path, vectors, ids: list[str], vocab: int, segments: int, max_weight: float) -> float:
    from lsr import Index
    from lsr.index.writer import IndexWriter

    bounds = np.linspace(0, len(ids), segments + 1).round().astype(int)
    started = time.perf_counter()
    Index.build(vectors=vectors.take(range(bounds[0], bounds[1])), ids=ids[bounds[0]:bounds[1]], vocab_size=vocab,
                path=path, max_weight=max_weight, chunk_documents=200_000)
    with IndexWriter(path) as writer:
        for first, last in zip(bounds[1:-1], bounds[2:]):
            writer.add_vectors(vectors.take(range(first, last)), ids[first:last])
            writer.commit()
    return time.perf_counter() - started


def time_queries(engine, queries, k: int, repeats: int = 3) -> tuple[dict, list]:
    retriever = engine.retrievers["sparse"]
    for q in range(len(queries)):  # an untimed pass: compile, page in
        retriever.retrieve(queries.take([q]), k, threads=1)
    best = None
    for _ in range(repeats):  # the pass with the lowest mean: a shared 2-core machine's noise only ever adds time
        latencies, answers = [], []
        for q in range(len(queries)):
            one = queries.take([q])
            started = time.perf_counter()
            ranked = retriever.retrieve(one, k, threads=1)[0]
            latencies.append((time.perf_counter() - started) * 1000)
            answers.append((ranked.ids, ranked.scores))
        figures = percentiles(latencies)
        if best is None or figures["mean_ms"] < best[0]["mean_ms"]:
            best = figures, answers
    return best


def bench_segments(work: Path, name: str, docs: int, n_queries: int, k: int) -> dict:
    from lsr import Engine, Index

    vectors, ids, queries, vocab, _ = collection(name, docs, n_queries)
    queries = queries.positive()
    keep = [q for q in range(len(queries)) if queries.indptr[q + 1] > queries.indptr[q]]
    queries = queries.take(keep)
    max_weight = float(vectors.weights.max())
    rows, reference = [], None
    print(f"{name}: {len(ids):,} documents, {vectors.nnz / len(ids):.1f} non-zeros each, {len(queries)} queries",
          flush=True)
    for segments in (1, 4, 16):
        path = work / f"segments-{segments}"
        shutil.rmtree(path, ignore_errors=True)
        build_s = build_segments(path, vectors, ids, vocab, segments, max_weight)
        engine = Engine(Index.open(path, load_encoder=False))
        figures, answers = time_queries(engine, queries, k)
        same = reference is None or answers == reference
        reference = reference or answers
        rows.append({"segments": segments, "build_s": build_s, **figures, "same_top_k": same})
        print(f"| {segments} | {figures['mean_ms']:.3f} | {figures['p50_ms']:.3f} | {figures['p99_ms']:.3f} | "
              f"{build_s:.1f} | {same} |", flush=True)
        if segments == 16:
            index = engine.index
            started = time.perf_counter()
            merged = index.merge(max_segments=1)
            merge_s = time.perf_counter() - started
            figures, answers = time_queries(Engine(index), queries, k)
            rows.append({"segments": "16 merged into 1", "merge_s": merge_s, **figures,
                         "same_top_k": answers == reference, "documents": merged.documents})
            print(f"| 16 merged into 1 ({merge_s:.1f} s) | {figures['mean_ms']:.3f} | {figures['p50_ms']:.3f} | "
                  f"{figures['p99_ms']:.3f} | | {answers == reference} |", flush=True)
        del engine
        if segments != 16:
            shutil.rmtree(path)
    base = rows[0]["mean_ms"]
    for row in rows:
        row["vs_one_segment"] = row["mean_ms"] / base
    return {"collection": name, "documents": len(ids), "queries": len(queries), "k": k, "rows": rows}


# -- chunking -----------------------------------------------------------------------------------------------------------
def bench_chunking(work: Path) -> dict:
    from lsr import Engine, Index, load_encoder
    from lsr.evaluation import evaluate

    encoder = load_encoder()
    rows = []
    for name, options in (("cut at 256 tokens", {}),
                          ("chunks of 256, overlap 64, max", {"chunk_tokens": 256, "chunk_overlap": 64}),
                          ("chunks of 256, overlap 64, sum", {"chunk_tokens": 256, "chunk_overlap": 64,
                                                              "chunk_aggregate": "sum"})):
        path = work / "chunking"
        started = time.perf_counter()
        index = Index.build(encoder, corpus=NFCORPUS, path=path, **options)
        build_s = time.perf_counter() - started
        metrics = evaluate(Engine(index), NFCORPUS, split="test", k=1000, progress=False, mode="sparse")
        info = index.segments[0].info
        row = {"setting": name, "ndcg@10": metrics["ndcg@10"], "recall@100": metrics["recall@100"],
               "rows": info.rows, "documents": info.documents, "postings": info.postings,
               "truncated_documents": info.truncated_documents, "latency_ms_mean": metrics["latency_ms_mean"],
               "build_s": build_s}
        rows.append(row)
        print(f"| {name} | {row['ndcg@10']:.4f} | {row['recall@100']:.4f} | {info.rows:,} | "
              f"{info.truncated_documents} | {row['latency_ms_mean']:.2f} | {build_s:.0f} |", flush=True)
        shutil.rmtree(path)
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=("add", "segments", "chunking"))
    parser.add_argument("--collection", choices=("nfcorpus", "synthetic"), default="nfcorpus")
    parser.add_argument("--docs", type=int, default=1_000_000, help="synthetic: documents")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--adds", type=int, default=512, help="add: documents added")
    parser.add_argument("--work", default="var/bench/live-index")
    parser.add_argument("--output", required=True, metavar="FILE.json")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.section == "add":
        print("| setting | documents per commit | added documents/s | ms per commit | build documents/s |")
        print("| --- | --- | --- | --- | --- |")
        report = bench_add(work, args.adds)
    elif args.section == "segments":
        print("| segments | mean ms | p50 ms | p99 ms | build s | same top-k |")
        print("| --- | --- | --- | --- | --- | --- |")
        report = bench_segments(work, args.collection, args.docs, args.queries, args.k)
    else:
        print("| documents | nDCG@10 | R@100 | rows | truncated | mean ms | build s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        report = bench_chunking(work)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
