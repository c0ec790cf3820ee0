"""Filtered sparse search: exact top-10 latency and recall at selectivities from 100 % to 0.1 %, for lsr and its
peers on the same vectors and the same filters, in one run.

    python benchmarks/filters.py --collection synthetic --docs 1000000 --queries 1000 --slice 100000 --output FILE
    python benchmarks/filters.py --collection nfcorpus --index var/indexes/nf-default --output FILE

- ``synthetic``: the engines benchmark's collection (``benchmarks/engines.py``: 180 weights a document, queries of
  about 7 terms weighted by IDF), quantized once to uint8 impacts; each document gets ``tenant`` (a keyword, 1,000
  tenants drawn Zipf(1.1)), ``x`` (a float, uniform in [0, 1)) and ``flag`` (a boolean, true half the time).
  Selectivity 100 % is ``exists x`` (every document), 50 % ``flag``, then ``x < 0.1 / 0.01 / 0.001``; then the most
  frequent tenant, a tail tenant, and a compound filter.
- ``nfcorpus``: the vectors of an NFCorpus index (the shipped default encoder), with ``pmid`` (an integer: the PubMed
  id at the end of each document's url; PubMed ids grow with time, so a range on it is a date range; the 166 urls
  that name a PMC article instead give no pmid) and the test queries encoded by the index's encoder. Selectivities
  are ``exists pmid``, then pmid ranges at the quantiles of the documents with one (top 50 %, 10 %, 1 %, 0.1 %).

Systems:
- ``lsr``: ``Engine.search_vectors`` with the filter, one thread, one query a call; ``first`` is the first query of
  a filter (its per-segment selection compiled), the rest hit the selection cache.
- ``brute force``: scipy, float64, over the kept documents' rows only (the kept rows' matrix prepared, untimed).
- ``milvus-lite`` and ``qdrant-local``: the embedded engines on the first ``--slice`` documents (loading 1M into
  either takes far longer than the rest of this run; load times are printed), the filter translated into each one's
  own language. lsr runs on the same slice for their rows.

Recall@10 is tie-aware against exact float64 scores over the kept documents: a hit counts when its true score
reaches the true 10th.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import NFCORPUS, emit  # noqa: E402
from benchmarks.engines import VOCAB, nfcorpus, quantize, synthetic  # noqa: E402

K = 10
RECALL_QUERIES = 200  # queries whose recall is checked against the exact scores


# -- collections ---------------------------------------------------------------------------------------------------------
def synthetic_metadata(n: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 1001) ** 1.1  # 1,000 tenants, Zipf(1.1): the first holds about 13 %
    tenants = rng.choice(1000, n, p=p / p.sum())
    xs = rng.random(n)
    flags = rng.random(n) < 0.5
    return [{"tenant": f"t{t:04d}", "x": float(x), "flag": bool(f)} for t, x, f in zip(tenants, xs, flags)]


def synthetic_filters(metadata: list[dict]) -> list[tuple[str, dict]]:
    counts: dict[str, int] = {}
    for m in metadata:
        counts[m["tenant"]] = counts.get(m["tenant"], 0) + 1
    ranked = sorted(counts, key=lambda t: -counts[t])
    tail = next(t for t in reversed(ranked) if counts[t] >= 20)
    return [("100 % (exists x)", {"exists": {"field": "x"}}), ("50 % (flag)", {"term": {"flag": True}}),
            ("10 % (x < 0.1)", {"range": {"x": {"lt": 0.1}}}), ("1 % (x < 0.01)", {"range": {"x": {"lt": 0.01}}}),
            ("0.1 % (x < 0.001)", {"range": {"x": {"lt": 0.001}}}),
            (f"top tenant {ranked[0]}", {"term": {"tenant": ranked[0]}}), (f"tail tenant {tail}", {"term": {"tenant": tail}}),
            ("compound: 10 tenants and flag and x < 0.5",
             {"must": [{"terms": {"tenant": ranked[:10]}}, {"term": {"flag": True}}, {"range": {"x": {"lt": 0.5}}}]})]


def nfcorpus_metadata(ids: list[str]) -> list[dict]:
    """``pmid``: the PubMed id at the end of each url (some end in an escaped space, ``.../20435081%20``); a document
    whose url holds none gets no pmid (so ``exists pmid`` is not quite everything)."""
    import re

    pmids = {}
    with (NFCORPUS / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            found = re.search(r"/(\d+)(?:%20|\s)*/?$", record.get("metadata", {}).get("url", ""))
            if found:
                pmids[str(record["_id"])] = int(found.group(1))
    return [{"pmid": pmids[i]} if i in pmids else {} for i in ids]


def nfcorpus_filters(metadata: list[dict]) -> list[tuple[str, dict]]:
    values = np.sort([m["pmid"] for m in metadata if "pmid" in m])
    out = [(f"{len(values) / len(metadata):.1%} (has a pmid)", {"exists": {"field": "pmid"}})]
    for share in (0.5, 0.1, 0.01, 0.001):  # of the documents with a pmid
        low = int(values[int(len(values) * (1 - share))])
        out.append((f"{share * len(values) / len(metadata):.1%} (pmid >= {low})", {"range": {"pmid": {"gte": low}}}))
    return out


def keeps(spec: dict, m: dict) -> bool:
    """The filters this script uses, evaluated in Python (the brute force's own reading of them)."""
    if "must" in spec:
        return all(keeps(c, m) for c in spec["must"])
    (operator, body), = spec.items()
    if operator == "exists":
        return body["field"] in m
    (field, value), = body.items()
    if operator == "term":
        return m.get(field) == value
    if operator == "terms":
        return m.get(field) in value
    checks = {"lt": lambda a, b: a < b, "lte": lambda a, b: a <= b, "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b}
    return field in m and all(checks[op](m[field], bound) for op, bound in value.items())


# -- exact answers -------------------------------------------------------------------------------------------------------
class BruteForce:
    """Exact float64 scores over the kept rows (the rows' matrix built once a filter, untimed)."""

    def __init__(self, c: dict) -> None:
        import scipy.sparse as sp

        n = len(c["indptr"]) - 1
        self.matrix = sp.csr_matrix((c["impacts"].astype(np.float64), c["indices"], c["indptr"]), shape=(n, VOCAB))

    def prepared(self, kept: np.ndarray):
        """The kept rows' matrix, by column (the last filter's kept, reused: one filter at a time)."""
        if getattr(self, "_kept", None) is None or not np.array_equal(self._kept, kept):
            self._kept, self._prepared = kept, (self.matrix[kept].tocsc(), kept)
        return self._prepared

    @staticmethod
    def top(prepared, terms: np.ndarray, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        matrix, kept = prepared
        scores = np.asarray(matrix[:, terms] @ weights.astype(np.float64)).ravel()
        if len(scores) == 0:
            return np.zeros(0, np.int64), scores
        order = np.argsort(-scores, kind="stable")[:k]
        order = order[scores[order] > 0]
        return kept[order], scores


def recall(found: list[int], truth_scores: np.ndarray, kept: np.ndarray, k: int) -> float:
    """Tie-aware: a returned document counts when its true score reaches the true k-th over the kept rows."""
    positive = truth_scores[truth_scores > 0]
    wanted = min(k, len(positive))
    if wanted == 0:
        return 1.0
    kth = np.partition(positive, len(positive) - wanted)[len(positive) - wanted]
    found = np.asarray(found[:k], dtype=np.int64)
    at = np.searchsorted(kept, found)  # kept is increasing: a found document's place, if it is kept at all
    inside = (at < len(kept)) & (kept[np.minimum(at, len(kept) - 1)] == found)
    good = truth_scores[at[inside]] >= kth * (1 - 1e-9)
    return min(1.0, float(good.sum()) / wanted)


def stats(latencies: list[float]) -> dict:
    values = np.asarray(latencies)
    return {"mean_ms": round(float(values.mean()), 4), "p50_ms": round(float(np.percentile(values, 50)), 4),
            "p99_ms": round(float(np.percentile(values, 99)), 4)}


# -- systems -----------------------------------------------------------------------------------------------------------
def lsr_engine(c: dict, metadata: list[dict], schema: dict, path: Path, n: int | None = None):
    from lsr import Engine, Index
    from lsr.sparse import SparseBatch

    n = n or len(c["ids"])
    indptr = c["indptr"][: n + 1]
    vectors = SparseBatch(indptr, c["indices"][: indptr[-1]], c["impacts"][: indptr[-1]].astype(np.float32))
    started = time.perf_counter()
    Index.build(vectors=vectors, ids=c["ids"][:n], metadata=metadata[:n], schema=schema, vocab_size=VOCAB, path=path,
                chunk_documents=100_000)
    build_s = time.perf_counter() - started
    engine = Engine(Index.open(path, load_encoder=False))
    engine.retrievers["sparse"].warm_up()
    return engine, build_s


def run_lsr(engine, queries, spec: dict | None, paired: list | None = None) -> tuple[list[list[int]], list[float], float]:
    """One query at a time; with ``paired``, each filtered query right after the same query unfiltered (their
    latencies go to ``paired``), so the ratio of the two compares runs of the same moment on a shared machine."""
    from lsr.sparse import SparseBatch

    batches = [SparseBatch.from_rows([(t, w)]) for t, w in queries]
    found, latencies, first = [], [], None
    for q, batch in enumerate(batches):
        if paired is not None and q:
            started = time.perf_counter()
            engine.search_vectors(batch, K, threads=1)
            paired.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        result = engine.search_vectors(batch, K, threads=1, filter=spec)[0]
        took = (time.perf_counter() - started) * 1000
        if q == 0:  # the first query of a filter compiles its selections: reported on its own
            first = took
        else:
            latencies.append(took)
        found.append([int(i[1:]) if i.startswith("d") else i for i in result.ids])
    return found, latencies, first


class MilvusLite:
    def __init__(self, c: dict, metadata: list[dict], schema: dict, n: int, work: Path) -> None:
        from pymilvus import DataType, MilvusClient

        from lsr.milvus.collection import _add_metadata_fields

        self.client = MilvusClient(uri=str(work / "bench.db"))
        fields = MilvusClient.create_schema(auto_id=False)
        fields.add_field("id", DataType.INT64, is_primary=True)
        fields.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        _add_metadata_fields(fields, schema)
        params = self.client.prepare_index_params()
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        started = time.perf_counter()
        self.client.create_collection("bench", schema=fields, index_params=params, consistency_level="Strong")
        for start in range(0, n, 5000):
            rows = []
            for d in range(start, min(n, start + 5000)):
                lo, hi = c["indptr"][d], c["indptr"][d + 1]
                rows.append({"id": d, "sparse": dict(zip(c["indices"][lo:hi].tolist(),
                                                         c["impacts"][lo:hi].astype(float).tolist())),
                             **{f"m_{k}": metadata[d].get(k) for k in schema}})
            self.client.insert("bench", rows)
        self.client.flush("bench")
        self.client.load_collection("bench")
        self.load_s = time.perf_counter() - started

    def run(self, queries, clause) -> tuple[list[list[int]], list[float]]:
        from lsr.milvus.expressions import to_expression

        expression = to_expression(clause) if clause is not None else ""
        found, latencies = [], []
        for terms, weights in queries:
            started = time.perf_counter()
            hits = self.client.search("bench", data=[dict(zip(terms.tolist(), weights.astype(float).tolist()))],
                                      anns_field="sparse", limit=K, filter=expression, output_fields=["id"],
                                      search_params={"metric_type": "IP", "params": {"drop_ratio_search": 0.0}})[0]
            latencies.append((time.perf_counter() - started) * 1000)
            found.append([int(h["id"]) for h in hits])
        return found, latencies


class QdrantLocal:
    def __init__(self, c: dict, metadata: list[dict], n: int, work: Path) -> None:
        from qdrant_client import QdrantClient, models

        self.models = models
        self.client = QdrantClient(path=str(work / "qdrant"))
        started = time.perf_counter()
        self.client.create_collection("bench", vectors_config={},
                                      sparse_vectors_config={"s": models.SparseVectorParams()})
        for start in range(0, n, 2000):
            points = []
            for d in range(start, min(n, start + 2000)):
                lo, hi = c["indptr"][d], c["indptr"][d + 1]
                vector = models.SparseVector(indices=c["indices"][lo:hi].tolist(),
                                             values=c["impacts"][lo:hi].astype(float).tolist())
                points.append(models.PointStruct(id=d, vector={"s": vector}, payload=metadata[d]))
            self.client.upsert("bench", points)
        self.load_s = time.perf_counter() - started

    def condition(self, spec: dict):
        m = self.models
        if "must" in spec:
            return m.Filter(must=[self.condition(c) for c in spec["must"]])
        (operator, body), = spec.items()
        if operator == "exists":
            return m.Filter(must_not=[m.IsEmptyCondition(is_empty=m.PayloadField(key=body["field"]))])
        (field, value), = body.items()
        if operator == "term":
            return m.Filter(must=[m.FieldCondition(key=field, match=m.MatchValue(value=value))])
        if operator == "terms":
            return m.Filter(must=[m.FieldCondition(key=field, match=m.MatchAny(any=value))])
        return m.Filter(must=[m.FieldCondition(key=field, range=m.Range(**value))])

    def run(self, queries, spec: dict | None) -> tuple[list[list[int]], list[float]]:
        query_filter = self.condition(spec) if spec is not None else None
        found, latencies = [], []
        for terms, weights in queries:
            started = time.perf_counter()
            hits = self.client.query_points("bench", query=self.models.SparseVector(
                indices=terms.tolist(), values=weights.astype(float).tolist()), using="s", limit=K,
                query_filter=query_filter).points
            latencies.append((time.perf_counter() - started) * 1000)
            found.append([int(h.id) for h in hits])
        return found, latencies


# -- the run -------------------------------------------------------------------------------------------------------------
_KEPT: dict = {}


def kept_rows(metadata, spec, n: int) -> np.ndarray:
    key = (json.dumps(spec, sort_keys=True), n)
    if key not in _KEPT:
        _KEPT[key] = np.flatnonzero([keeps(spec, m) for m in metadata[:n]]) if spec is not None else np.arange(n)
    return _KEPT[key]


_SLICES: dict = {}


def sliced_brute(c: dict, size: int) -> BruteForce:
    """The brute force over the first ``size`` documents (one a size)."""
    if size not in _SLICES:
        end = c["indptr"][size]
        _SLICES[size] = BruteForce({**c, "indptr": c["indptr"][: size + 1], "indices": c["indices"][:end],
                                    "impacts": c["impacts"][:end]})
    return _SLICES[size]


def measure(name: str, system: str, run, truth_queries, brute: BruteForce, metadata, spec, n: int, rows: list,
            paired: list | None = None) -> None:
    kept = kept_rows(metadata, spec, n)
    prepared = brute.prepared(kept)
    found, latencies, first = run()
    judged = min(len(found), RECALL_QUERIES)  # exact scores over a million kept rows cost 150 ms a query
    recalls = [recall(f, BruteForce.top(prepared, t, w, K)[1], kept, K)
               for f, (t, w) in zip(found[:judged], truth_queries)]
    row = {"filter": name, "system": system, "documents": n, "kept": int(len(kept)),
           "selectivity": round(len(kept) / n, 5), **stats(latencies), "recall@10": round(float(np.mean(recalls)), 4),
           "queries": len(found), "recall_queries": judged}
    if first is not None:
        row["first_query_ms"] = round(first, 3)
    if paired:
        row["unfiltered_mean_ms"] = round(float(np.mean(paired)), 4)  # the same queries, each just before
        row["vs_unfiltered"] = round(row["mean_ms"] / row["unfiltered_mean_ms"], 3)
    rows.append(row)
    print(json.dumps(row), flush=True)


def run_brute(brute: BruteForce, metadata, spec, n, queries):
    prepared = brute.prepared(kept_rows(metadata, spec, n))

    def run():
        found, latencies = [], []
        for terms, weights in queries:
            started = time.perf_counter()
            rows, _ = BruteForce.top(prepared, terms, weights, K)
            latencies.append((time.perf_counter() - started) * 1000)
            found.append(rows.tolist())
        return found, latencies, None

    return run


def peer_run(system: str, peer, sliced, queries, spec, clause):
    """What ``measure`` runs for one system on the slice: (found, latencies, first-query ms or None)."""
    def run():
        if system == "lsr":
            return run_lsr(sliced, queries, spec)
        if system == "milvus-lite":
            return (*peer.run(queries, clause), None)
        return (*peer.run(queries, spec), None)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collection", choices=("synthetic", "nfcorpus"), default="synthetic")
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--brute-queries", type=int, default=200, help="queries for the brute force (default 200)")
    parser.add_argument("--slice", type=int, default=100_000, help="documents loaded into Milvus Lite and Qdrant")
    parser.add_argument("--peer-queries", type=int, default=200, help="queries for Milvus Lite (default 200)")
    parser.add_argument("--qdrant-slice", type=int, default=20_000,
                        help="documents loaded into Qdrant's local mode, which scores in Python (default 20,000)")
    parser.add_argument("--qdrant-queries", type=int, default=20, help="queries for Qdrant's local mode (default 20)")
    parser.add_argument("--systems", default="lsr,brute,milvus,qdrant")
    parser.add_argument("--index", help="nfcorpus: the index to take the vectors from (default: built)")
    parser.add_argument("--work", default=None)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    systems = set(args.systems.split(","))
    work = Path(args.work or tempfile.mkdtemp(prefix="lsr-filters-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.collection == "synthetic":
        c = quantize(synthetic(args.docs, args.queries))
        metadata = synthetic_metadata(len(c["ids"]))
        filters, schema = synthetic_filters(metadata), {"tenant": "keyword", "x": "float", "flag": "boolean"}
    else:
        c = quantize(nfcorpus(work, args.index, args.queries))
        metadata = nfcorpus_metadata(c["ids"])
        filters, schema = nfcorpus_filters(metadata), {"pmid": "integer"}
    c["ids"] = [f"d{i}" for i in range(len(c["ids"]))]  # row numbers as ids: every system returns comparable ids
    n = len(c["ids"])
    print(f"collection {args.collection}: {n:,} documents, {len(c['queries'])} queries "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    brute = BruteForce(c)
    queries = c["queries"]
    rows: list[dict] = []
    engine = build_s = None
    if systems & {"lsr", "brute"}:
        engine, build_s = lsr_engine(c, metadata, schema, work / "lsr")
        print(f"lsr index: {build_s:.1f} s", flush=True)
    # a million metadata dicts live as long as the run: out of the collector's way, as the server freezes its own
    gc.collect()
    gc.freeze()
    for name, spec in [("no filter", None), *filters] if engine is not None else []:
        if "lsr" in systems:
            paired: list = []
            measure(name, "lsr", lambda s=spec, p=paired: run_lsr(engine, queries, s, p if s is not None else None),
                    queries, brute, metadata, spec, n, rows, paired)
        if "brute" in systems:
            few = queries[: args.brute_queries]
            measure(name, "brute force", run_brute(brute, metadata, spec, n, few), few, brute, metadata, spec, n, rows)
    peers = {}
    small = min(args.slice, n)
    if systems & {"milvus", "qdrant"}:
        sliced, _ = lsr_engine(c, metadata, schema, work / "lsr-slice", small)
        peers["lsr"] = (sliced, None)
        brute_small = sliced_brute(c, small)
        if "milvus" in systems:
            milvus = MilvusLite(c, metadata, schema, small, work)
            print(f"milvus-lite load of {small:,} documents: {milvus.load_s:.1f} s", flush=True)
            peers["milvus-lite"] = (milvus, milvus.load_s)
        if "qdrant" in systems:
            tiny = min(args.qdrant_slice, n)
            qdrant = QdrantLocal(c, metadata, tiny, work)
            print(f"qdrant local load of {tiny:,} documents: {qdrant.load_s:.1f} s", flush=True)
            peers["qdrant-local"] = (qdrant, qdrant.load_s)
        few = queries[: args.peer_queries]
        from lsr.filters import parse
        from lsr.index.metadata import Schema

        for name, spec in [("no filter", None), *filters]:
            clause = parse(spec, Schema(schema)) if spec is not None else None
            for system, (peer, _) in peers.items():
                size, asked, brute_of = small, few, brute_small
                if system == "qdrant-local":
                    size, asked = min(args.qdrant_slice, n), queries[: args.qdrant_queries]
                    brute_of = sliced_brute(c, size)
                measure(name, f"{system} ({size:,})", peer_run(system, peer, sliced, asked, spec, clause), asked,
                        brute_of, metadata, spec, size, rows)
    emit({"collection": args.collection, "documents": n, "queries": len(queries), "k": K, "rows": rows,
          "lsr_build_s": round(build_s, 1) if build_s else None,
          **{f"{s}_load_s": round(v, 1) for s, (_, v) in peers.items() if v},
          "command": " ".join(sys.argv)}, args.output)
    print_table(rows)
    return 0


def print_table(rows: list[dict]) -> None:
    print("| filter | system | kept | mean ms | p50 ms | p99 ms | first query ms | recall@10 | vs unfiltered |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = {r["system"]: r["mean_ms"] for r in rows if r["filter"] == "no filter"}
    for r in rows:
        ratio = r.get("vs_unfiltered") or (r["mean_ms"] / base[r["system"]] if base.get(r["system"]) else float("nan"))
        print(f"| {r['filter']} | {r['system']} | {r['kept']:,} | {r['mean_ms']:.3f} | {r['p50_ms']:.3f} | "
              f"{r['p99_ms']:.3f} | {r.get('first_query_ms', '')} | {r['recall@10']:.4f} | {ratio:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
