"""Scale-out paths against the native ones, in one run each: the Milvus backend (Milvus Lite, embedded) against the
native kernel on NFCorpus, and ``lsr index --ray`` on 1 and 2 Ray nodes against a single-process build.

    python benchmarks/scale_out.py milvus --index var/indexes/nf-default --output var/bench/milvus-nf.json
    python benchmarks/scale_out.py ray --docs 512 --output var/bench/ray.json

- ``milvus``: copies the index (so its own ``milvus.json`` stays as it is), attaches the copy to a Milvus Lite file
  (timed), then over the NFCorpus test queries: nDCG@10 / R@100 (k = 1000) of both backends, recall@10 of Milvus's
  top-10 against the native exact top-10, and per-query latency (k = 10, one query at a time, mean and p99 of the
  best of 3 passes) split into query encoding (the same for both), the retriever call, and for Milvus the floor of
  one round trip to its server (a primary-key lookup of one id). Dense (FAISS flat against Milvus FLAT) too when the
  index has a dense part.
- ``ray``: the first N NFCorpus documents encoded with the shipped default encoder by one process (lsr index), by a
  1-node Ray cluster (1 CPU actor) and by a 2-node cluster (2 actors of 1 CPU), nodes on loopback inside a network
  namespace (root); documents/s of the build as `lsr index` reports it (the actors' start and encoder load
  included), the time to start the nodes apart, and whether the vectors equal the single-process build's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import NFCORPUS, emit, percentiles  # noqa: E402


def stats(values_ms: list[float]) -> dict:
    return {name: round(value, 3) for name, value in percentiles(values_ms).items()}


def best_of(passes: list[list[float]]) -> list[float]:
    return min(passes, key=lambda p: float(np.mean(p)))


def run_milvus(args) -> dict:
    from lsr import Engine, Index
    from lsr.corpus import read_qrels, read_queries
    from lsr.evaluation import evaluate
    from lsr.milvus import Mirror, attach

    work = Path(tempfile.mkdtemp(prefix="lsr-milvus-bench-"))
    try:
        copy = work / "index"
        shutil.copytree(args.index, copy, ignore=shutil.ignore_patterns("milvus.json", "lucene"))
        index = Index.open(copy)
        started = time.perf_counter()
        attached = attach(index, str(work / "milvus.db"))
        attach_s = time.perf_counter() - started
        engines = {"native": Engine(index), "milvus": Engine(index, backend="milvus")}
        modes = ["sparse"] + (["dense"] if "dense" in engines["native"].retrievers else [])
        texts = read_queries(args.beir)
        questions = [texts[q] for q in sorted(read_qrels(args.beir, args.split))]
        out: dict = {"documents": attached["documents"], "attach_s": round(attach_s, 1), "queries": len(questions),
                     "modes": {}}
        for mode in modes:
            row: dict = {}
            for name, engine in engines.items():
                metrics = evaluate(engine, args.beir, split=args.split, k=1000, mode=mode, batch_throughput=False,
                                   progress=False)
                row[name] = {"ndcg@10": round(metrics["ndcg@10"], 4), "recall@100": round(metrics["recall@100"], 4),
                             "exact": metrics["exact"]}
            want = engines["native"].search_batch(questions, 10, mode, threads=1)
            got = engines["milvus"].search_batch(questions, 10, mode, threads=1)
            row["recall@10_vs_native"] = round(float(np.mean([len(set(a.ids) & set(b.ids)) / max(1, len(b.ids))
                                                              for a, b in zip(got, want)])), 4)
            for name, engine in engines.items():  # latency at k = 10, split into encoding and the retriever
                retriever = engine.retrievers[mode]
                encode = (engine.sparse_encoder() if mode == "sparse" else engine.dense_encoder()).encode_queries
                vectors = [encode([q]) for q in questions]
                totals, calls = [], []
                for _ in range(3):
                    total, call = [], []
                    for question, vector in zip(questions, vectors):
                        started = time.perf_counter()
                        engine.search_batch([question], 10, mode, threads=1)
                        total.append((time.perf_counter() - started) * 1000)
                        started = time.perf_counter()
                        retriever.retrieve(vector, 10, threads=1)
                        call.append((time.perf_counter() - started) * 1000)
                    totals.append(total)
                    calls.append(call)
                row[name].update({"search": stats(best_of(totals)), "retriever": stats(best_of(calls))})
            out["modes"][mode] = row
        mirror = Mirror.load(copy)
        some = next(iter(index.ids()))
        floor = []
        for _ in range(3):
            one = []
            for _ in range(len(questions)):
                started = time.perf_counter()
                mirror.client.query(mirror.collection, ids=[some], output_fields=["id"])
                one.append((time.perf_counter() - started) * 1000)
            floor.append(one)
        out["milvus_round_trip"] = stats(best_of(floor))
        index.close()
        return out
    finally:
        from lsr.milvus import disconnect

        disconnect()
        shutil.rmtree(work, ignore_errors=True)


CLUSTER = """
set -u
ip link set lo up
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')"
started=$("$PYTHON" -c 'import time; print(time.time())')
ray start --head --node-ip-address 127.0.0.1 --port 6380 --num-cpus 1 --include-dashboard=false \
    --disable-usage-stats --temp-dir "$TMP_RAY" > "$TMP_RAY/head.log" 2>&1 || { cat "$TMP_RAY/head.log"; exit 3; }
if [ "$NODES" = 2 ]; then
  ray start --address 127.0.0.1:6380 --node-ip-address 127.0.0.1 --num-cpus 1 > "$TMP_RAY/worker.log" 2>&1 \
      || { cat "$TMP_RAY/worker.log"; ray stop --force > /dev/null 2>&1; exit 4; }
fi
"$PYTHON" -c "import time; print('CLUSTER_START_S', time.time() - $started)"
"$PYTHON" -m lsr index "$@" --ray 127.0.0.1:6380
rc=$?
ray stop --force > /dev/null 2>&1
exit $rc
"""


def report_of(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):stdout.rindex("}") + 1])


def run_ray(args) -> dict:
    from tests.integration.test_ray_cluster import segment_arrays

    work = Path(tempfile.mkdtemp(prefix="lsr-ray-bench-"))
    try:
        corpus = work / "corpus.jsonl"
        corpus.write_text("\n".join((NFCORPUS / "corpus.jsonl").read_text().splitlines()[:args.docs]) + "\n")
        flags = ["--corpus", str(corpus), "--chunk-documents", str(args.chunk_documents), "--impact-dtype", "float32"]
        rows = []
        started = time.perf_counter()
        local = subprocess.run([sys.executable, "-m", "lsr", "index", *flags, "--out", str(work / "local")],
                               capture_output=True, text=True, check=True)
        rows.append({"setting": "one process (2 torch threads)", "docs_per_second":
                     report_of(local.stdout)["docs_per_second"], "wall_s": round(time.perf_counter() - started, 1)})
        for nodes in (1, 2):
            short = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))
            env = {**os.environ, "TMP_RAY": str(short), "PYTHON": sys.executable, "NODES": str(nodes),
                   "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
            started = time.perf_counter()
            done = subprocess.run(["unshare", "-n", "bash", "-c", CLUSTER, "cluster", *flags, "--out",
                                   str(work / f"ray{nodes}")], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            shutil.rmtree(short, ignore_errors=True)
            if done.returncode != 0:
                raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
            start_s = float(next(line.split()[1] for line in done.stdout.splitlines()
                                 if line.startswith("CLUSTER_START_S")))
            report = report_of(done.stdout[done.stdout.index("CLUSTER_START_S"):].split("\n", 1)[1])
            same = all(np.array_equal(a, b) for a, b in zip(segment_arrays(work / "local").values(),
                                                            segment_arrays(work / f"ray{nodes}").values()))
            rows.append({"setting": f"Ray, {nodes} node(s) x 1 CPU actor", "docs_per_second":
                         report["docs_per_second"], "cluster_start_s": round(start_s, 1),
                         "wall_s": round(wall, 1), "same_vectors": same, "nodes": report["ray"]["nodes"]})
        return {"documents": args.docs, "chunk_documents": args.chunk_documents, "rows": rows}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    milvus = sub.add_parser("milvus")
    milvus.add_argument("--index", default=str(ROOT / "var" / "indexes" / "nf-default"))
    milvus.add_argument("--beir", default=str(NFCORPUS))
    milvus.add_argument("--split", default="test")
    ray = sub.add_parser("ray")
    ray.add_argument("--docs", type=int, default=512)
    ray.add_argument("--chunk-documents", type=int, default=64)
    for p in (milvus, ray):
        p.add_argument("--output", default=None)
    args = parser.parse_args()
    emit(run_milvus(args) if args.what == "milvus" else run_ray(args), args.output)


if __name__ == "__main__":
    main()
