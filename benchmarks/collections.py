"""The cost of many collections in one server: 100 collections of 1,000 NFCorpus documents each, against one.

1. Encodes NFCorpus once with the shipped default encoder (cached in ``var/bench/``), then builds ``--collections``
   collections of ``--size`` documents each from those vectors (collection i takes a window of the corpus starting
   at i x 97, so no two hold the same documents), each with a BM25 part and its texts, as the quickstart's index.
2. For the data directory, and for one of its collections served alone with ``--index``: starts `lsr serve`,
   times it to ``/readyz``, reads its resident memory (VmRSS, and the private part: Private_Clean + Private_Dirty of
   /proc/PID/smaps_rollup, which the memory-mapped index files shared with the page cache do not count in).
3. On the data directory server: a closed loop of searches (c=1, the default mode, NFCorpus test queries) on one
   collection, for ``--duration`` seconds each: alone; while a second client writes batches of 8 documents to
   another collection (encoded by the server: the document model runs); while that other collection merges
   (``POST .../merge?max_segments=1`` in a loop after writes). p50 and p99 of each.

python benchmarks/collections.py --collections 100 --size 1000 --duration 15 --output var/bench/collections.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import NFCORPUS, ROOT, emit, percentiles  # noqa: E402
from benchmarks.load import free_port, ready  # noqa: E402

CACHE = ROOT / "var" / "bench" / "nfcorpus-default-vectors.npz"


def corpus_vectors(encoder, documents):
    from lsr.sparse import SparseBatch

    if CACHE.exists():
        saved = np.load(CACHE, allow_pickle=False)
        if list(saved["ids"]) == [d.id for d in documents]:
            return SparseBatch(saved["indptr"], saved["indices"], saved["weights"])
    rows = []
    for start in range(0, len(documents), 64):
        batch = encoder.encode_documents([d.contents for d in documents[start:start + 64]])
        rows += [batch.row(i) for i in range(len(batch))]
    vectors = SparseBatch.from_rows(rows)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, ids=np.array([d.id for d in documents]), indptr=vectors.indptr, indices=vectors.indices,
             weights=vectors.weights)
    return vectors


def build(data: Path, count: int, size: int) -> float:
    from lsr import Index, load_encoder
    from lsr.corpus import read_corpus
    from lsr.sparse import SparseBatch

    encoder = load_encoder()
    documents = list(read_corpus(NFCORPUS))
    vectors = corpus_vectors(encoder, documents)
    started = time.perf_counter()
    for number in range(count):
        rows = [(number * 97 + i) % len(documents) for i in range(size)]
        window = SparseBatch.from_rows([vectors.row(r) for r in rows])
        Index.build(encoder, ids=[documents[r].id for r in rows], texts=[documents[r].text for r in rows],
                    titles=[documents[r].title for r in rows], vectors=window, bm25=True, store_documents=True,
                    path=data / f"c{number:03d}", max_weight=float(vectors.weights.max()))
    return time.perf_counter() - started


def memory(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    private = sum(int(line.split()[1]) for line in rollup if line.startswith(("Private_Clean", "Private_Dirty")))
    return {"rss_mb": rss / 1024, "private_mb": private / 1024}


class Server:
    environment: dict = {}

    def __init__(self, *arguments: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"lsr-collections-{self.port}.log", "w+")
        started = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, "-m", "lsr", "serve", *arguments, "--port", str(self.port)],
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "LSR_MERGE": "false", **self.environment})
        try:
            ready(self.base, self.process, self.log, timeout=900, poll=0.05)
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.perf_counter() - started
        time.sleep(1.0)  # the refresh thread's first pass
        self.memory = memory(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def search_loop(base: str, path: str, queries: list[str], duration: float) -> dict:
    latencies, errors = [], 0
    with httpx.Client(base_url=base, timeout=30) as client:
        deadline = time.perf_counter() + duration
        i = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = client.post(path, json={"query": queries[i % len(queries)], "k": 10})
            if response.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                errors += 1
            i += 1
    return {"requests": len(latencies), "errors": errors, **percentiles(latencies)}


def background(base: str, collection: str, documents, stop: threading.Event, merge: bool, counts: dict) -> None:
    with httpx.Client(base_url=base, timeout=120) as client:
        n = 0
        while not stop.is_set():
            batch = [{"id": f"new-{n}-{i}", "title": d.title, "text": d.text}
                     for i, d in enumerate(documents[(n * 8) % len(documents):][:8])]
            response = client.post(f"/collections/{collection}/documents", json={"documents": batch})
            counts["writes"] += response.status_code == 200
            counts["write_errors"] += response.status_code != 200
            if merge and not stop.is_set():
                response = client.post(f"/collections/{collection}/merge", params={"max_segments": 1})
                counts["merges"] += response.status_code == 200
                counts["merge_errors"] += response.status_code != 200
            n += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", type=int, default=100)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--data", default=str(ROOT / "var" / "bench" / "collections-data"))
    parser.add_argument("--output", default=None)
    parser.add_argument("--reuse", action="store_true", help="serve the collections --data holds (no build)")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable of the servers (LSR_ENCODE_THREADS=1, ...)")
    args = parser.parse_args()
    Server.environment = dict(item.split("=", 1) for item in args.server_env)

    from lsr.corpus import read_corpus, read_qrels, read_queries

    data = Path(args.data)
    if args.reuse and data.is_dir():
        build_s = None
    else:
        if data.exists():
            shutil.rmtree(data)
        data.mkdir(parents=True)
        build_s = build(data, args.collections, args.size)
    texts = read_queries(NFCORPUS)
    queries = [texts[q] for q in sorted(read_qrels(NFCORPUS, "test"))]
    documents = list(read_corpus(NFCORPUS))
    result = {"collections": args.collections, "documents_each": args.size, "build_s": build_s,
              "server_env": Server.environment,
              "bytes_each": sum(p.stat().st_size for p in (data / "c000").rglob("*") if p.is_file())}

    alone = Server("--index", str(data / "c000"))
    try:
        result["one_index"] = {"ready_s": alone.ready_s, **alone.memory,
                               "search": search_loop(alone.base, "/search", queries, args.duration)}
    finally:
        alone.stop()
    server = Server("--data", str(data))
    try:
        listed = httpx.get(f"{server.base}/collections", timeout=60).json()["collections"]
        assert len(listed) == args.collections and all(c["status"] == "ready" for c in listed), listed[:3]
        many = {"ready_s": server.ready_s, **server.memory}
        target = "/collections/c000/search"
        many["search_idle"] = search_loop(server.base, target, queries, args.duration)
        for label, merge in (("search_while_writing", False), ("search_while_writing_and_merging", True)):
            stop, counts = threading.Event(), {"writes": 0, "write_errors": 0, "merges": 0, "merge_errors": 0}
            writer = threading.Thread(target=background, args=(server.base, "c001", documents, stop, merge, counts))
            writer.start()
            time.sleep(1.0)  # the first write loads the document model
            many[label] = {**search_loop(server.base, target, queries, args.duration), **counts}
            stop.set()
            writer.join()
            many[label].update(counts)
        many["after_writes"] = memory(server.process.pid)
        result["data_directory"] = many
        per = (many["rss_mb"] - result["one_index"]["rss_mb"]) / max(1, args.collections - 1)
        result["rss_mb_per_extra_collection"] = per
        result["private_mb_per_extra_collection"] = (many["private_mb"] - result["one_index"]["private_mb"]) / \
            max(1, args.collections - 1)
    finally:
        server.stop()
    emit(result, args.output)


if __name__ == "__main__":
    main()
