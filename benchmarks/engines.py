"""lsr's sparse kernel against Lucene (Pyserini), Seismic and BMP, on the same sparse vectors, in one run.

    python benchmarks/engines.py --collection synthetic|nfcorpus [--docs N] [--queries M] --output FILE.json

Every system gets the same documents, quantized once to uint8 impacts (1..255), and the same float query weights
(Lucene takes integers: each query is scaled so its largest weight is 1000, then rounded; BMP rescales queries
itself). For each system it measures, in a child process of its own (so a peer's crash or memory cannot take the
run down): build time from the in-memory vectors, index size on disk, single-threaded latency (mean and p99 over
the queries, after an untimed pass over all of them), queries/s over all cores (one batch), and recall@10 against
exact brute force (scipy, float64 over the same quantized impacts). Recall is tie-aware: a returned document counts
when its true score reaches the true 10th score, so a system is not penalised for breaking an exact tie differently.

Collections:
- ``synthetic``: ``--docs`` documents (default 1,000,000) drawn with a fixed seed to mimic inference-free document
  statistics: a vocabulary of 30,522 ids, term popularity proportional to 1/(rank + 10) over a random permutation,
  Poisson(180) distinct terms a document, weights exp(N(0, 0.5)) clipped to 3; queries of 1 + Poisson(6) terms drawn
  by the same popularity and weighted by the collection's IDF.
- ``nfcorpus``: NFCorpus encoded by the shipped default encoder (an lsr index is built once under the work
  directory, or pass ``--index``); queries: the test queries, encoded by the index's encoder (tokenizer + IDF).

A peer's failure on a query (BMP panics on some single-term queries) is caught, counted in ``failed_queries`` and
scored as zero recall for that query; it never falls back to another engine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VOCAB = 30522
SYSTEMS = ("lsr", "lucene", "seismic", "bmp")


# -- collections ---------------------------------------------------------------------------------------------------------
_GENERATOR = None


def _generate(n_docs: int, vocab: int, nnz: int, seed: int, perm: np.ndarray):
    """``n_docs`` synthetic documents (CSR indptr, sorted term ids, float32 weights) from numba's generator seeded
    with ``seed``; compiled once a process (benchmarks/scale.py calls it once per chunk of documents)."""
    global _GENERATOR
    if _GENERATOR is None:
        import numba

        @numba.njit(cache=False)
        def generate(n_docs, vocab, nnz, seed, perm):  # pragma: no cover - numba
            np.random.seed(seed)
            log_span = np.log((vocab + 10.0) / 10.0)
            counts = np.empty(n_docs, np.int64)
            for i in range(n_docs):
                counts[i] = min(vocab, max(1, np.random.poisson(nnz)))
            indptr = np.zeros(n_docs + 1, np.int64)
            for i in range(n_docs):
                indptr[i + 1] = indptr[i] + counts[i]
            indices = np.empty(indptr[-1], np.int32)
            weights = np.empty(indptr[-1], np.float32)
            seen = np.full(vocab, -1, np.int64)
            for i in range(n_docs):
                start, n, got = indptr[i], counts[i], 0
                while got < n:  # distinct terms by inverse-CDF sampling of p(rank) ~ 1 / (rank + 10)
                    rank = min(vocab - 1, int(10.0 * np.exp(np.random.random() * log_span) - 10.0))
                    term = perm[rank]
                    if seen[term] != i:
                        seen[term] = i
                        indices[start + got] = term
                        got += 1
                indices[start:start + n] = np.sort(indices[start:start + n])
                for j in range(start, start + n):
                    weights[j] = min(np.exp(np.random.normal(0.0, 0.5)), 3.0)
            return indptr, indices, weights

        _GENERATOR = generate
    return _GENERATOR(n_docs, vocab, nnz, seed, perm)


def draw_queries(rng: np.random.Generator, perm: np.ndarray, indices: np.ndarray, n_docs: int,
                 n_queries: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Queries of 1 + Poisson(6) terms drawn by the documents' popularity (``perm``), weighted by the IDF of the
    documents whose term ids are ``indices`` (``n_docs`` of them); terms no document holds are left out."""
    df = np.bincount(indices, minlength=VOCAB)
    idf = np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
    log_span = np.log((VOCAB + 10.0) / 10.0)
    queries = []
    while len(queries) < n_queries:
        ranks = np.minimum((10 * np.exp(rng.random(1 + rng.poisson(6)) * log_span) - 10).astype(np.int64), VOCAB - 1)
        terms = np.unique(perm[ranks])
        terms = terms[df[terms] > 0]
        if len(terms):
            queries.append((terms.astype(np.int32), idf[terms].astype(np.float32)))
    return queries


def synthetic(n_docs: int, n_queries: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(VOCAB).astype(np.int32)
    indptr, indices, weights = _generate(n_docs, VOCAB, 180, seed, perm)
    queries = draw_queries(rng, perm, indices, n_docs, n_queries)
    return {"indptr": indptr, "indices": indices, "weights": weights, "queries": queries,
            "ids": [f"d{i}" for i in range(n_docs)]}


def nfcorpus(work: Path, index: str | None, n_queries: int | None) -> dict:
    from lsr import Index
    from lsr.corpus import read_qrels, read_queries

    beir = ROOT.parent / "shared" / "data" / "beir" / "nfcorpus"
    if index is None:
        index = str(work / "nfcorpus-default-index")
        if not Path(index).exists():
            subprocess.run([sys.executable, "-m", "lsr", "index", "--corpus", str(beir), "--out", index],
                           check=True, cwd=ROOT)
    source = Index.open(index, mmap=False, parts=())
    segment = source.segments[0]
    # documents back from the stored impacts (one row a document: the quickstart index is not chunked)
    vectors = segment.row_vectors()
    weights = vectors.weights.astype(np.float32) / np.float32(source.manifest.scale)
    encoder = source.encoder
    texts = read_queries(beir)
    qids = sorted(read_qrels(beir, "test"))[:n_queries]
    batch = encoder.encode_queries([texts[q] for q in qids])
    queries = [(ids.astype(np.int32), w.astype(np.float32)) for ids, w in (batch.row(i) for i in range(len(batch)))]
    return {"indptr": vectors.indptr, "indices": vectors.indices, "weights": weights,
            "queries": [q for q in queries if len(q[0])], "ids": [str(d) for d in segment.ids.tolist()]}


def quantize(collection: dict) -> dict:
    scale = 255.0 / float(collection["weights"].max())
    impacts = np.clip(np.rint(collection["weights"].astype(np.float64) * scale), 1, 255).astype(np.uint8)
    return {**collection, "impacts": impacts, "scale": scale}


# -- exact brute force ---------------------------------------------------------------------------------------------------
def exact_top(collection: dict, k: int) -> list[tuple[np.ndarray, int]]:
    """Per query, the rows whose true score reaches the true k-th score (float64 dot products over the quantized
    impacts; ties at the k-th score included) and how many of them a top-k can hold. Only these are kept: a full
    score vector per query would hold queries x documents floats (8 GB at 1M x 1,000) in the parent while the
    engines run."""
    import scipy.sparse as sp

    n = len(collection["indptr"]) - 1
    matrix = sp.csr_matrix((collection["impacts"].astype(np.float64), collection["indices"], collection["indptr"]),
                           shape=(n, VOCAB)).tocsc()
    out = []
    for terms, weights in collection["queries"]:
        scores = np.asarray(matrix[:, terms] @ weights.astype(np.float64)).ravel()
        top = np.argpartition(-scores, min(k, n - 1))[:k]
        kth = scores[top].min() if len(top) else 0.0
        good = np.flatnonzero((scores >= kth * (1 - 1e-9)) & (scores > 0))
        out.append((good, min(k, int((scores > 0).sum()))))
    return out


def recall_at_k(truth, found_rows: list[list[int]], k: int) -> list[float]:
    recalls = []
    for (good, wanted), rows in zip(truth, found_rows):
        if wanted == 0:
            recalls.append(1.0)
            continue
        hits = np.isin(np.asarray([r for r in rows[:k] if r >= 0], dtype=np.int64), good).sum()
        recalls.append(min(1.0, float(hits) / wanted))
    return recalls


def fingerprint(collection: dict) -> str:
    """A hash of the quantized documents: a peer index built from the same vectors by an earlier run is reused."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for name in ("indptr", "indices", "impacts"):
        digest.update(np.ascontiguousarray(collection[name]).view(np.uint8).data)
    digest.update("\n".join(collection["ids"]).encode())
    return digest.hexdigest()


def reusable(work: Path, system: str, key: dict) -> dict | None:
    """The build record of ``system``'s saved index when it was built from this collection with these settings and
    ``--rebuild`` was not given (it deletes the records); otherwise None."""
    sidecar = work / f"{system}-build.json"
    if not sidecar.exists():
        return None
    record = json.loads(sidecar.read_text())
    return record if record.get("key") == key else None


def remember(work: Path, system: str, key: dict, build_s: float) -> None:
    (work / f"{system}-build.json").write_text(json.dumps({"key": key, "build_s": build_s}))


def collection_key(work: Path) -> str:
    return json.loads((work / "collection.json").read_text())["fingerprint"]


# -- systems (each runs in a child process: `--worker SYSTEM`) -----------------------------------------------------------
def du_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def time_queries(search_one, n: int) -> tuple[list, list[float], int]:
    for q in range(n):  # warm-up: every query once (JIT, page cache of an index reused from disk), untimed
        try:
            search_one(q)
        except BaseException as exc:  # noqa: B036 - a Rust panic is a BaseException
            if isinstance(exc, KeyboardInterrupt):
                raise
    results, latencies, failed = [], [], 0
    for q in range(n):
        started = time.perf_counter()
        try:
            results.append(search_one(q))
        except BaseException as exc:  # a Rust panic arrives as a BaseException (pyo3 PanicException)
            if isinstance(exc, KeyboardInterrupt):
                raise
            failed += 1
            results.append([])
        latencies.append((time.perf_counter() - started) * 1000)
    return results, latencies, failed


def run_lsr(c: dict, work: Path, k: int, settings: dict) -> dict:
    from lsr import Index
    from lsr.index import kernel
    from lsr.sparse import SparseBatch

    out = work / "lsr-index"
    started = time.perf_counter()
    vectors = SparseBatch(c["indptr"], c["indices"], c["impacts"].astype(np.float32))  # integer impacts, scale 1
    Index.build(vectors=vectors, ids=c["ids"], vocab_size=VOCAB, path=out, chunk_documents=100_000)
    build_s = time.perf_counter() - started
    segment = Index.open(out, load_encoder=False).segments[0]
    ix, block_size, n = segment.kernel_arrays(), segment.block_size, segment.info.rows
    alpha, cut = settings.get("alpha", 1.0), settings.get("query_cut", 0)
    queries = c["queries"]
    scratch = kernel.blockmax_scratch(n, block_size)
    live = np.zeros(0, np.uint8)  # nothing deleted

    exhaustive = settings.get("pruning") == "exhaustive"  # the reference kernel: every posting of every query term

    def one(q):
        terms, weights = queries[q]
        q_ptr = np.array([0, len(terms)])
        if exhaustive:
            docs = kernel.score_batch_serial(ix, live, q_ptr, terms, weights, n, k)[0]
        else:
            docs = kernel.score_batch_blockmax_serial(ix, live, block_size, q_ptr, terms, weights, n, k, scratch, alpha,
                                                      cut)[0]
        return docs[0].tolist()

    results, latencies, failed = time_queries(one, len(queries))
    q_indptr = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum([len(t) for t, _ in queries], out=q_indptr[1:])
    q_terms = np.concatenate([t for t, _ in queries])
    q_weights = np.concatenate([w for _, w in queries])
    threads = os.cpu_count() or 1

    def batch():
        if exhaustive:
            return kernel.score_batch(ix, live, q_indptr, q_terms, q_weights, n, k, threads)
        return kernel.score_batch_blockmax(ix, live, block_size, q_indptr, q_terms, q_weights, n, k, threads, alpha,
                                           cut)

    batch()
    started = time.perf_counter()
    batch()
    qps = len(queries) / (time.perf_counter() - started)
    setting = "exhaustive (no pruning)" if exhaustive else f"block-max {block_size}, alpha {alpha}, query_cut {cut}"
    return {"rows": results, "latencies": latencies, "failed": failed, "qps": qps, "build_s": build_s,
            "index_mb": du_mb(out), "setting": setting}


def _token_vector(terms, values) -> dict:
    return {str(t): v for t, v in zip(terms.tolist(), values.tolist())}


def run_lucene(c: dict, work: Path, k: int, settings: dict) -> dict:
    from lsr.lucene import QUERY_WEIGHT_MAX, build_impact_index, start_jvm

    out = work / "lucene-index"
    key = {"collection": collection_key(work), "pyserini": _pyserini_version()}
    record = reusable(work, "lucene", key) if out.is_dir() else None
    if record is None:
        (work / "lucene-build.json").unlink(missing_ok=True)
        jsonl = work / "lucene-docs.jsonl"
        started = time.perf_counter()
        with jsonl.open("w") as handle:
            indptr, indices, impacts = c["indptr"], c["indices"], c["impacts"]
            for row, doc in enumerate(c["ids"]):
                lo, hi = indptr[row], indptr[row + 1]
                handle.write(json.dumps({"id": doc, "contents": "",
                                         "vector": _token_vector(indices[lo:hi], impacts[lo:hi].astype(int))}) + "\n")
        export_s = time.perf_counter() - started
        shutil.rmtree(out, ignore_errors=True)
        build = build_impact_index(jsonl, out)
        jsonl.unlink()
        record = {"build_s": build["build_seconds"] + export_s}
        remember(work, "lucene", key, record["build_s"])
        reused = ""
    else:
        reused = "; index reused from an earlier run of this collection (build_s from that run)"
    start_jvm()
    from pyserini.search.lucene import LuceneImpactSearcher

    from lsr.lucene.retriever import PassThroughEncoder

    encoder = PassThroughEncoder()  # the pass-through query encoder the lucene backend uses
    for q, (terms, weights) in enumerate(c["queries"]):
        scaled = np.rint(weights.astype(np.float64) * QUERY_WEIGHT_MAX / weights.max()).astype(int)
        encoder.vectors[str(q)] = {str(t): int(w) for t, w in zip(terms.tolist(), scaled.tolist()) if w > 0}
    searcher = LuceneImpactSearcher(str(out), encoder, min_idf=-1.0)
    rows = {doc: i for i, doc in enumerate(c["ids"])}
    results, latencies, failed = time_queries(
        lambda q: [rows[h.docid] for h in searcher.search(str(q), k)], len(c["queries"]))
    keys = [str(q) for q in range(len(c["queries"]))]
    started = time.perf_counter()
    searcher.batch_search(keys, keys, k=k, threads=os.cpu_count() or 1)
    qps = len(keys) / (time.perf_counter() - started)
    return {"rows": results, "latencies": latencies, "failed": failed, "qps": qps,
            "build_s": record["build_s"], "index_mb": du_mb(out),
            "setting": f"LuceneImpactSearcher, pyserini {_pyserini_version()}, query weights x{QUERY_WEIGHT_MAX}/max"
                       f"{reused}"}


def _pyserini_version() -> str | None:
    from lsr.lucene import _version

    return _version("pyserini")


def run_seismic(c: dict, work: Path, k: int, settings: dict) -> dict:
    from seismic import SeismicDataset, SeismicIndex, get_seismic_string

    prefix = work / "seismic"
    saved = Path(str(prefix) + ".index.seismic")
    n_postings = settings.get("n_postings", 4000)
    key = {"collection": collection_key(work), "n_postings": n_postings}
    record = reusable(work, "seismic", key) if saved.exists() else None
    if record is not None:  # built by an earlier row or run from these vectors: one build, several settings
        index = SeismicIndex.load(str(saved))
        build_s = record["build_s"]
    else:
        (work / "seismic-build.json").unlink(missing_ok=True)
        started = time.perf_counter()
        dataset = SeismicDataset(dim=VOCAB)
        dataset.add_documents_by_id(c["ids"], c["indices"].astype(np.int64), c["impacts"].astype(np.float32),
                                    c["indptr"].astype(np.int64))
        index = SeismicIndex.build_from_dataset(dataset, n_postings=n_postings, centroid_fraction=0.1,
                                                summary_energy=0.4, max_fraction=1.5, num_threads=0)
        build_s = time.perf_counter() - started
        del dataset
        index.save(str(prefix))
        remember(work, "seismic", key, build_s)
    size = du_mb(saved)
    string = get_seismic_string()
    queries = [(np.array([str(t) for t in terms.tolist()], dtype=string), weights.astype(np.float32))
               for terms, weights in c["queries"]]
    rows = {doc: i for i, doc in enumerate(c["ids"])}
    query_cut, heap_factor = settings.get("query_cut", 10), settings.get("heap_factor", 0.7)

    def one(q):
        terms, weights = queries[q]
        return [rows[doc] for _, _, doc in index.search(str(q), terms, weights, k, query_cut, heap_factor)]

    results, latencies, failed = time_queries(one, len(queries))
    started = time.perf_counter()
    index.batch_search(np.array([str(q) for q in range(len(queries))], dtype=string), [t for t, _ in queries],
                       [w for _, w in queries], k, query_cut, heap_factor, num_threads=0)
    qps = len(queries) / (time.perf_counter() - started)
    return {"rows": results, "latencies": latencies, "failed": failed, "qps": qps, "build_s": build_s,
            "index_mb": size, "setting": f"n_postings {n_postings}, query_cut {query_cut}, heap_factor {heap_factor}"}


_BMP = {}


def _bmp_init(path: str, queries: list, k: int) -> None:
    import bmp

    _BMP.update(searcher=bmp.Searcher(path), queries=queries, k=k)  # each worker loads the index once


def _bmp_batch(span):
    searcher = _BMP["searcher"]
    for q in range(*span):
        try:
            searcher.search(_BMP["queries"][q], _BMP["k"], 1.0, 1.0)
        except BaseException:  # noqa: B036 - a Rust panic is a BaseException
            pass
    return span[1] - span[0]


def run_bmp(c: dict, work: Path, k: int, settings: dict) -> dict:
    import multiprocessing

    import bmp

    path = work / "bmp.index"
    block = settings.get("block", 32)
    started = time.perf_counter()
    indexer = bmp.Indexer(str(path), block, False)
    indptr, indices, impacts = c["indptr"], c["indices"], c["impacts"]
    for row, doc in enumerate(c["ids"]):
        lo, hi = indptr[row], indptr[row + 1]
        indexer.add_document(doc, _token_vector(indices[lo:hi], impacts[lo:hi].astype(int)))
    indexer.finish()
    build_s = time.perf_counter() - started
    searcher = bmp.Searcher(str(path))
    queries = [_token_vector(terms, weights.astype(float)) for terms, weights in c["queries"]]
    rows = {doc: i for i, doc in enumerate(c["ids"])}
    results, latencies, failed = time_queries(
        lambda q: [rows[d] for d in searcher.search(queries[q], k, 1.0, 1.0)[0]], len(queries))
    workers = os.cpu_count() or 1
    spans = [(i * len(queries) // workers, (i + 1) * len(queries) // workers) for i in range(workers)]
    # spawned, not forked: a fork of this process (after BMP's searcher has started its threads) hung at 1M documents
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_bmp_init,
                                                   initargs=(str(path), queries, k)) as pool:
        pool.map(_bmp_batch, spans)  # warm-up
        started = time.perf_counter()
        pool.map(_bmp_batch, spans)
        qps = len(queries) / (time.perf_counter() - started)
    return {"rows": results, "latencies": latencies, "failed": failed, "qps": qps, "build_s": build_s,
            "index_mb": du_mb(path), "setting": f"block {block}, alpha 1, beta 1 (exact mode); all cores: "
                                                 f"{workers} processes (its search holds the GIL)"}


RUNNERS = {"lsr": run_lsr, "lucene": run_lucene, "seismic": run_seismic, "bmp": run_bmp}


def worker(args) -> None:
    work = Path(args.work)
    data = np.load(work / "collection.npz", allow_pickle=False)
    queries = [(data["q_terms"][a:b], data["q_weights"][a:b]) for a, b in zip(data["q_indptr"][:-1], data["q_indptr"][1:])]
    c = {"indptr": data["indptr"], "indices": data["indices"], "impacts": data["impacts"], "queries": queries,
         "ids": data["ids"].tolist()}
    settings = json.loads(args.settings or "{}")
    out = RUNNERS[args.worker](c, work, args.k, settings)
    (work / f"result-{args.tag}.json").write_text(json.dumps(out))


# -- the run ---------------------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", choices=("synthetic", "nfcorpus"), default="synthetic")
    parser.add_argument("--docs", type=int, default=1_000_000, help="synthetic: documents (default 1,000,000)")
    parser.add_argument("--queries", type=int, default=1000, help="queries (default 1000; nfcorpus: at most 323)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ", ".join(SYSTEMS))
    parser.add_argument("--seismic-settings", default='[{"query_cut": 10, "heap_factor": 0.7}, '
                                                      '{"query_cut": 30, "heap_factor": 0.5}]',
                        help="JSON list of Seismic search settings, one row each (one build)")
    parser.add_argument("--lsr-settings", default='[{}]',
                        help='JSON list of lsr settings, one row each, e.g. [{}, {"alpha": 0.9}, {"pruning": "exhaustive"}]')
    parser.add_argument("--index", help="nfcorpus: an lsr index to take the document vectors from")
    parser.add_argument("--work", default=None, help="scratch directory (default var/bench/engines-<collection>)")
    parser.add_argument("--output", required=True, metavar="FILE.json")
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild the Lucene and Seismic indexes even when the work directory holds ones built from "
                             "the same vectors (by default they are reused, with the build time of the run that built "
                             "them)")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0

    work = Path(args.work or ROOT / "var" / "bench" / f"engines-{args.collection}")
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    collection = quantize(synthetic(args.docs, args.queries) if args.collection == "synthetic"
                          else nfcorpus(work, args.index, args.queries))
    queries = collection["queries"]
    q_indptr = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum([len(t) for t, _ in queries], out=q_indptr[1:])
    np.savez(work / "collection.npz", indptr=collection["indptr"], indices=collection["indices"],
             impacts=collection["impacts"], ids=np.asarray(collection["ids"]), q_indptr=q_indptr,
             q_terms=np.concatenate([t for t, _ in queries]), q_weights=np.concatenate([w for _, w in queries]))
    n_docs = len(collection["ids"])
    print(f"collection {args.collection}: {n_docs:,} documents, {len(collection['indices']) / n_docs:.1f} non-zeros "
          f"a document, {len(queries)} queries of {np.mean([len(t) for t, _ in queries]):.1f} terms "
          f"({time.perf_counter() - started:.0f}s)", flush=True)
    (work / "collection.json").write_text(json.dumps({"fingerprint": fingerprint(collection)}))
    truth = exact_top(collection, args.k)
    if args.rebuild:
        for system in ("lucene", "seismic"):
            (work / f"{system}-build.json").unlink(missing_ok=True)
    del collection

    plan = []
    for system in args.systems.split(","):
        if system not in SYSTEMS:
            parser.error(f"unknown system {system!r}")
        settings = (json.loads(args.seismic_settings) if system == "seismic"
                    else json.loads(args.lsr_settings) if system == "lsr" else [{}])
        plan += [(system, s, f"{system}-{i}") for i, s in enumerate(settings)]
    rows = []
    for system, settings, tag in plan:
        print(f"running {system} {settings or ''}", flush=True)
        result_file = work / f"result-{tag}.json"
        result_file.unlink(missing_ok=True)
        done = subprocess.run([sys.executable, __file__, "--worker", system, "--work", str(work), "--k", str(args.k),
                               "--settings", json.dumps(settings), "--tag", tag, "--output", "-"],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0 or not result_file.exists():
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            print(f"  {system} failed (exit {done.returncode}): {' | '.join(tail)}", flush=True)
            rows.append({"system": system, "error": f"exit {done.returncode}: {' | '.join(tail)}"})
            continue
        result = json.loads(result_file.read_text())
        latency = np.asarray(result["latencies"])
        rows.append({
            "system": system, "setting": result["setting"],
            "latency_ms_mean": float(latency.mean()), "latency_ms_p99": float(np.percentile(latency, 99)),
            "qps_all_cores": result["qps"], f"recall@{args.k}": float(np.mean(recall_at_k(truth, result["rows"], args.k))),
            "build_s": result["build_s"], "index_mb": result["index_mb"], "failed_queries": result["failed"],
        })
        write_report(args, n_docs, len(queries), rows)  # after every system, so a long run keeps what it measured
    write_report(args, n_docs, len(queries), rows)
    print_table(rows, args.k)
    return 0


def write_report(args, n_docs: int, n_queries: int, rows: list[dict]) -> None:
    lsr = next((r for r in rows if r["system"] == "lsr" and "error" not in r), None)
    for row in rows:
        if lsr is not None and "error" not in row and row is not lsr:
            row["lsr_speedup_latency"] = row["latency_ms_mean"] / lsr["latency_ms_mean"]
            row["lsr_speedup_qps"] = lsr["qps_all_cores"] / row["qps_all_cores"]
    report = {"collection": args.collection, "documents": n_docs, "queries": n_queries, "k": args.k,
              "cores": os.cpu_count(), "rows": rows}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")


def print_table(rows: list[dict], k: int) -> None:
    header = (f"| system | setting | build s | index MB | mean ms (1 thread) | p99 ms | QPS ({os.cpu_count()} cores) | "
              f"recall@{k} | failed | lsr faster (latency, QPS) |")
    print(header)
    print("|" + " --- |" * 10)
    for r in rows:
        if "error" in r:
            print(f"| {r['system']} | failed: {r['error'][:80]} |" + " |" * 8)
            continue
        ratio = (f"{r['lsr_speedup_latency']:.1f}x, {r['lsr_speedup_qps']:.1f}x" if "lsr_speedup_latency" in r else "-")
        print(f"| {r['system']} | {r['setting']} | {r['build_s']:.1f} | {r['index_mb']:.0f} | {r['latency_ms_mean']:.3f} | "
              f"{r['latency_ms_p99']:.3f} | {r['qps_all_cores']:.0f} | {r[f'recall@{k}']:.4f} | "
              f"{r['failed_queries']} | {ratio} |")


if __name__ == "__main__":
    sys.exit(main())
