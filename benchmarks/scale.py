"""How lsr's cost grows with the collection, from 1M to 8.8M synthetic documents (MS MARCO passage's 8,841,823), with
Lucene at the smaller sizes in the same run.

    python benchmarks/scale.py --sizes 1000000,2000000,4000000,8841823 --lucene 1000000,2000000 \\
        --output var/bench/scale.json

Documents come in chunks of 100,000: chunk c is drawn by engines.py's generator (the statistics of its synthetic
collection: 30,522 term ids with popularity 1/(rank + 10), Poisson(180) distinct terms a document, weights
exp(N(0, 0.5)) clipped to 3) with seed 1000 + c, so a smaller collection is a prefix of a larger one and no process
ever holds a whole collection. Impacts are round(85 w), 1..255. Queries: ``--queries`` of 1 + Poisson(6) terms drawn by
the same popularity and weighted by the IDF of the first chunk, the same queries at every size.

Per size, each step in a child process of its own:

- ``build``: chunks streamed into an lsr ``IndexWriter`` (one segment, one commit). Build seconds are the writer's
  (``add_vectors`` + ``commit``), not the generator's; peak memory is the child's ``ru_maxrss`` (one chunk of the
  generator's output included). The same pass computes the exact top-10 (scipy, float64 over the same impacts; ties
  at the 10th score count as hits) of every query up to ``--full-truth-up-to`` documents, and of a seeded sample of
  ``--truth-sample`` queries above it.
- ``search``: the index opened as ``lsr serve`` opens it (checksums verified once), single-thread mean and p99 of the
  exact block-max kernel over all queries after an untimed pass over them, queries/s on all cores (one batch),
  recall@10, and the resident memory of the process after all that (VmRSS; its file-backed part is index pages
  touched, the anonymous part what the process allocated).
- ``lucene`` (sizes in ``--lucene``): the same documents and queries through engines.py's Lucene runner (Pyserini's
  impact index, 2 indexing threads; an index built by an earlier run from the same vectors is reused and says so);
  build memory is the peak of the indexing JVM (a child process), serving memory the searching process's VmRSS.

lsr's index is removed after its size is measured unless ``--keep`` (8.8M documents take about 6 GB).

``--time-index DIR`` times a kept index only (single thread, the same queries, ``--passes`` passes after an untimed
one; min and median of the per-pass means), with the lsr this script imports: run it from two checkouts to compare
two kernels on the same index.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engines  # noqa: E402  (the generator, the Lucene runner, recall)

ROOT = engines.ROOT
VOCAB = engines.VOCAB
CHUNK = 100_000
SCALE = 85.0  # 255 / the largest weight (3.0)
MS_MARCO_PASSAGES = 8_841_823


# -- the collection, chunk by chunk ----------------------------------------------------------------------------------
def permutation(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(VOCAB).astype(np.int32)


def chunk(c: int, n_docs: int, seed: int, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Documents [c * CHUNK, c * CHUNK + n_docs): indptr, term ids, uint8 impacts."""
    indptr, indices, weights = engines._generate(n_docs, VOCAB, 180, seed * 1000 + 1000 + c, perm)
    impacts = np.clip(np.rint(weights.astype(np.float64) * SCALE), 1, 255).astype(np.uint8)
    return indptr, indices, impacts


def chunks(size: int, seed: int):
    perm = permutation(seed)
    for c, start in enumerate(range(0, size, CHUNK)):
        yield start, chunk(c, min(CHUNK, size - start), seed, perm)


def queries(n_queries: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    perm = permutation(seed)
    _, indices, _ = chunk(0, CHUNK, seed, perm)
    return engines.draw_queries(np.random.default_rng(seed + 1), perm, indices, CHUNK, n_queries)


def truth_queries(args, size: int) -> list[int]:
    n = args.queries
    if size <= args.full_truth_up_to or args.truth_sample >= n:
        return list(range(n))
    return sorted(np.random.default_rng(args.seed + 2).choice(n, args.truth_sample, replace=False).tolist())


class ExactTop:
    """The exact top-k of some queries over documents that arrive chunk by chunk: per query, the documents whose
    score reaches the k-th score so far (ties included) and how many documents score above zero."""

    def __init__(self, qs: list[tuple[np.ndarray, np.ndarray]], k: int) -> None:
        self.qs, self.k = qs, k
        self.docs = [np.zeros(0, np.int64) for _ in qs]
        self.scores = [np.zeros(0, np.float64) for _ in qs]
        self.positive = [0] * len(qs)

    def _keep(self, docs: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(scores) <= self.k:
            return docs, scores
        kth = -np.partition(-scores, self.k - 1)[self.k - 1]
        keep = scores >= kth * (1 - 1e-9)
        return docs[keep], scores[keep]

    def add(self, base: int, indptr: np.ndarray, indices: np.ndarray, impacts: np.ndarray) -> None:
        import scipy.sparse as sp

        n = len(indptr) - 1
        matrix = sp.csr_matrix((impacts.astype(np.float64), indices, indptr), shape=(n, VOCAB)).tocsc()
        for i, (terms, weights) in enumerate(self.qs):
            scores = np.asarray(matrix[:, terms] @ weights.astype(np.float64)).ravel()
            hit = np.flatnonzero(scores > 0)
            self.positive[i] += len(hit)
            docs, values = self._keep(hit, scores[hit])
            self.docs[i], self.scores[i] = self._keep(np.concatenate([self.docs[i], docs + base]),
                                                      np.concatenate([self.scores[i], values]))

    def truth(self) -> list[tuple[np.ndarray, int]]:
        return [(docs, min(self.k, positive)) for docs, positive in zip(self.docs, self.positive)]


# -- children ------------------------------------------------------------------------------------------------------------
def memory() -> dict:
    """This process's resident memory now, MB: total, anonymous, file-backed (mapped files such as the index)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["VmRSS"], "anon_mb": fields["RssAnon"], "file_mb": fields["RssFile"],
            "peak_mb": fields["VmHWM"]}


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def work_build(args, work: Path) -> dict:
    from lsr.index.builder import create
    from lsr.index.writer import IndexWriter
    from lsr.sparse import SparseBatch

    out = work / "lsr-index"
    shutil.rmtree(out, ignore_errors=True)
    qs = queries(args.queries, args.seed)
    picked = truth_queries(args, args.size)
    exact = ExactTop([qs[q] for q in picked], args.k)
    build_s = generate_s = truth_s = 0.0
    started = time.perf_counter()
    encoder = None
    if args.encoder:  # an encoder of the same 30,522-id vocabulary, so that `lsr serve` answers text queries
        from lsr.encoders import load_encoder

        encoder = load_encoder(None if args.encoder == "default" else args.encoder)
    create(encoder, vocab_size=VOCAB, path=out, max_weight=255.0)  # scale 1: the impacts are stored as they are
    with IndexWriter(out) as writer:
        build_s += time.perf_counter() - started
        source = chunks(args.size, args.seed)
        while True:
            started = time.perf_counter()
            item = next(source, None)
            generate_s += time.perf_counter() - started
            if item is None:
                break
            base, (indptr, indices, impacts) = item
            started = time.perf_counter()
            writer.add_vectors(SparseBatch(indptr, indices, impacts.astype(np.float32)),
                               [f"d{i}" for i in range(base, base + len(indptr) - 1)])
            build_s += time.perf_counter() - started
            started = time.perf_counter()
            exact.add(base, indptr, indices, impacts)
            truth_s += time.perf_counter() - started
            del indptr, indices, impacts
        started = time.perf_counter()
        writer.commit(operation="build")
        build_s += time.perf_counter() - started
    truth = exact.truth()
    np.savez(work / "truth.npz", picked=np.asarray(picked), wanted=np.asarray([w for _, w in truth]),
             indptr=np.cumsum([0] + [len(d) for d, _ in truth]),
             docs=np.concatenate([d for d, _ in truth]) if truth else np.zeros(0, np.int64))
    return {"build_s": build_s, "generate_s": generate_s, "truth_s": truth_s,
            "build_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "index_mb": du_mb(out),
            "truth_queries": len(picked)}


def load_truth(work: Path) -> tuple[list[int], list[tuple[np.ndarray, int]]]:
    data = np.load(work / "truth.npz")
    indptr = data["indptr"]
    truth = [(data["docs"][a:b], int(w)) for a, b, w in zip(indptr[:-1], indptr[1:], data["wanted"])]
    return data["picked"].tolist(), truth


def recall(work: Path, rows: list[list[int]], k: int) -> float:
    picked, truth = load_truth(work)
    return float(np.mean(engines.recall_at_k(truth, [rows[q] for q in picked], k)))


def work_search(args, work: Path) -> dict:
    from lsr import Index
    from lsr.index import kernel

    out = work / "lsr-index"
    before = memory()
    started = time.perf_counter()
    segment = Index.open(out, load_encoder=False).segments[0]
    ix, block_size, n = segment.kernel_arrays(), segment.block_size, segment.info.rows
    open_s = time.perf_counter() - started
    opened = memory()
    qs = queries(args.queries, args.seed)
    scratch = kernel.blockmax_scratch(n, block_size)
    live = np.zeros(0, np.uint8)

    def one(q):
        terms, weights = qs[q]
        docs = kernel.score_batch_blockmax_serial(ix, live, block_size, np.array([0, len(terms)]), terms, weights, n,
                                                  args.k, scratch, 1.0, 0)[0]
        return docs[0].tolist()

    rows, latencies, failed = engines.time_queries(one, len(qs))
    q_indptr = np.zeros(len(qs) + 1, dtype=np.int64)
    np.cumsum([len(t) for t, _ in qs], out=q_indptr[1:])
    q_terms, q_weights = np.concatenate([t for t, _ in qs]), np.concatenate([w for _, w in qs])
    threads = os.cpu_count() or 1

    def batch():
        return kernel.score_batch_blockmax(ix, live, block_size, q_indptr, q_terms, q_weights, n, args.k, threads,
                                           1.0, 0)

    batch()
    started = time.perf_counter()
    batch()
    qps = len(qs) / (time.perf_counter() - started)
    # where a query's time goes: the bound pass alone (every block bounded, nothing scored; what grows with the
    # documents), and how many blocks the pruned kernel then scores (what grows with the documents near the top)
    bound_ms, scored = [], 0
    out_docs, out_scores = np.empty(args.k, np.int64), np.empty(args.k, np.float32)
    ub = scratch[0]
    chunk_max = np.empty((len(ub) + kernel._CHUNK - 1) // kernel._CHUNK, dtype=np.float32)
    empty = np.zeros(0, np.uint8)
    for q, (terms, weights) in enumerate([qs[0]] + qs):  # (the first: compiles the bound pass alone)
        if q == 0:
            kernel._bounds(ix, block_size, terms, weights, np.arange(len(terms)), ub, chunk_max, empty, empty)
            ub[:] = 0.0
            continue
        scored += kernel.score_query_blockmax(ix, live, block_size, n, terms, weights, args.k, np.float32(1.0), 0,
                                              *scratch, out_docs, out_scores)[1]
        started = time.perf_counter()
        kernel._bounds(ix, block_size, terms, weights, np.arange(len(terms)), ub, chunk_max, empty, empty)
        bound_ms.append((time.perf_counter() - started) * 1000)
        ub[:] = 0.0
    return {"latencies": latencies, "failed": failed, "qps": qps, "open_s": open_s, "memory_before": before,
            "bound_pass_ms": float(np.mean(bound_ms)), "blocks_scored": scored / len(qs),
            "memory_opened": opened, "memory_served": memory(), "recall": recall(work, rows, args.k),
            "postings": int(segment.info.postings)}


def work_lucene(args, work: Path) -> dict:
    parts = [p for _, p in chunks(args.size, args.seed)]
    offsets = np.cumsum([0] + [len(indices) for _, indices, _ in parts])
    c = {"indptr": np.concatenate([np.zeros(1, np.int64)] + [p[0][1:] + offsets[i] for i, p in enumerate(parts)]),
         "indices": np.concatenate([p[1] for p in parts]), "impacts": np.concatenate([p[2] for p in parts]),
         "ids": [f"d{i}" for i in range(args.size)], "queries": queries(args.queries, args.seed)}
    del parts
    lucene_work = work / "lucene"
    lucene_work.mkdir(parents=True, exist_ok=True)
    (lucene_work / "collection.json").write_text(json.dumps({"fingerprint": engines.fingerprint(c)}))
    result = engines.run_lucene(c, lucene_work, args.k, {})
    del c
    rows = result.pop("rows")
    return {**result, "build_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "memory_served": memory(), "recall": recall(work, rows, args.k)}


WORKERS = {"build": work_build, "search": work_search, "lucene": work_lucene}


# -- the run ---------------------------------------------------------------------------------------------------------------
def child(args, step: str, size: int, work: Path) -> dict:
    result_file = work / f"{step}.json"
    result_file.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--worker", step, "--size", str(size), "--work", str(work),
               "--queries", str(args.queries), "--seed", str(args.seed), "--k", str(args.k),
               "--truth-sample", str(args.truth_sample), "--full-truth-up-to", str(args.full_truth_up_to),
               *(["--encoder", args.encoder] if args.encoder else []),
               "--output", "-"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0 or not result_file.exists():
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-4:])
        print(f"  {step} at {size:,} failed (exit {done.returncode}): {tail}", flush=True)
        return {"error": f"exit {done.returncode}: {tail}"}
    print(f"  {step} at {size:,}: {time.perf_counter() - started:.0f}s", flush=True)
    return json.loads(result_file.read_text())


def row(system: str, size: int, build: dict, search: dict) -> dict:
    latency = np.asarray(search["latencies"])
    served = search["memory_served"]
    return {"system": system, "documents": size, "build_s": build["build_s"], "build_peak_mb": build["build_peak_mb"],
            "index_mb": build["index_mb"], "serving_rss_mb": served["rss_mb"], "serving_anon_mb": served["anon_mb"],
            "serving_file_mb": served["file_mb"], "latency_ms_mean": float(latency.mean()),
            "latency_ms_p99": float(np.percentile(latency, 99)), "qps_all_cores": search["qps"],
            "recall@10": search["recall"], "failed_queries": search["failed"],
            **{k: v for k, v in search.items() if k in ("open_s", "postings", "bound_pass_ms", "blocks_scored")},
            **{k: v for k, v in build.items() if k in ("generate_s", "truth_s", "truth_queries")},
            "setting": search.get("setting", "block-max 4, exact")}


def time_index(args) -> int:
    from lsr import Index
    from lsr.index import kernel

    print(f"lsr from {Path(kernel.__file__).resolve().parents[2]}", flush=True)
    qs = queries(args.queries, args.seed)
    segment = Index.open(args.time_index, load_encoder=False).segments[0]
    ix, block_size, n = segment.kernel_arrays(), segment.block_size, segment.info.rows
    scratch = kernel.blockmax_scratch(n, block_size)
    live = np.zeros(0, np.uint8)
    means = []
    for p in range(args.passes + 1):  # (the first, untimed: compiles and pages the index in)
        latencies = []
        for terms, weights in qs:
            started = time.perf_counter()
            kernel.score_batch_blockmax_serial(ix, live, block_size, np.array([0, len(terms)]), terms, weights, n,
                                               args.k, scratch, 1.0, 0)
            latencies.append(time.perf_counter() - started)
        if p:
            means.append(float(np.mean(latencies)) * 1000)
    print(f"mean ms a query, per pass: min {min(means):.3f}, median {np.median(means):.3f} "
          f"({', '.join(f'{m:.3f}' for m in means)})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=f"1000000,2000000,4000000,{MS_MARCO_PASSAGES}")
    parser.add_argument("--lucene", default="1000000,2000000", help="sizes Lucene runs at too ('' for none)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truth-sample", type=int, default=100,
                        help="queries whose exact top-k is computed above --full-truth-up-to documents")
    parser.add_argument("--full-truth-up-to", type=int, default=2_000_000)
    parser.add_argument("--work", default=str(ROOT / "var" / "bench" / "scale"))
    parser.add_argument("--keep", action="store_true", help="keep lsr's indexes (default: removed once measured)")
    parser.add_argument("--encoder", default=None, metavar="DIR|default",
                        help="store this encoder with lsr's index (its vocabulary must have 30,522 ids: the shipped "
                             "default does), so that `lsr serve` answers text queries on it (benchmarks/serve_memory.py)")
    parser.add_argument("--output", metavar="FILE.json", help="the report (required unless --time-index)")
    parser.add_argument("--time-index", metavar="DIR", help="only time a kept lsr index of this script (see above)")
    parser.add_argument("--passes", type=int, default=3, help="--time-index: timed passes over the queries")
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_index:
        return time_index(args)
    if args.output is None:
        parser.error("--output FILE.json is required")
    if args.worker:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(os.cpu_count() or 1))
        work = Path(args.work)
        result = WORKERS[args.worker](args, work)
        (work / f"{args.worker}.json").write_text(json.dumps(result))
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s]
    lucene = {int(s) for s in args.lucene.split(",") if s}
    rows = []
    for size in sorted(set(sizes) | lucene):
        work = Path(args.work) / f"{size}"
        work.mkdir(parents=True, exist_ok=True)
        print(f"{size:,} documents", flush=True)
        build = child(args, "build", size, work)
        if "error" in build:
            rows.append({"system": "lsr", "documents": size, "error": build["error"]})
            write(args, rows)
            continue
        if size in sizes:
            search = child(args, "search", size, work)
            rows.append({"system": "lsr", "documents": size, "error": search["error"]} if "error" in search
                        else row("lsr", size, build, search))
        if not args.keep:
            shutil.rmtree(work / "lsr-index", ignore_errors=True)
        if size in lucene:
            result = child(args, "lucene", size, work)
            if "error" in result:
                rows.append({"system": "lucene", "documents": size, "error": result["error"]})
            else:
                rows.append(row("lucene", size, {k: result[k] for k in ("build_s", "build_peak_mb", "index_mb")},
                                {**result, "qps": result["qps"]}))
        write(args, rows)
    print_table(rows)
    return 0


def write(args, rows: list[dict]) -> None:
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"queries": args.queries, "k": args.k, "cores": os.cpu_count(),
                                             "chunk": CHUNK, "rows": rows}, indent=2) + "\n")


def print_table(rows: list[dict]) -> None:
    print("| system | documents | build s | build peak MB | index MB | serving RSS MB (file-backed) | mean ms | p99 ms | "
          f"QPS ({os.cpu_count()} cores) | recall@10 (queries checked) |")
    print("|" + " --- |" * 10)
    for r in rows:
        if "error" in r:
            print(f"| {r['system']} | {r['documents']:,} | failed: {r['error'][:100]} |" + " |" * 7)
            continue
        print(f"| {r['system']} | {r['documents']:,} | {r['build_s']:.1f} | {r['build_peak_mb']:,.0f} | "
              f"{r['index_mb']:,.0f} | {r['serving_rss_mb']:,.0f} ({r['serving_file_mb']:,.0f}) | "
              f"{r['latency_ms_mean']:.3f} | {r['latency_ms_p99']:.3f} | {r['qps_all_cores']:,.0f} | "
              f"{r['recall@10']:.4f} ({r.get('truth_queries', '')}) |")


if __name__ == "__main__":
    sys.exit(main())
