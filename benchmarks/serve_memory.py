"""Resident memory of `lsr serve`, per process: the parent and each worker, against what the index and encoder need.

    python benchmarks/serve_memory.py --index var/indexes/nfcorpus-default --workers 1,2 \\
        --output var/bench/serve-memory-nfcorpus.json

For each worker count it starts ``lsr serve --index DIR --workers W`` on 127.0.0.1 (a free port), waits for /readyz,
sends ``--queries`` BEIR test queries (eight at a time, so that every worker answers some), then reads
``/proc/PID/smaps`` of the server's processes: the parent (uvicorn's supervisor when W > 1, else the one worker) and
each worker. Per process: RSS, and where it lies: pages of the index's files (the index bytes it touched: a worker
pages the whole index in at start-up), other files (shared libraries: Python's, numpy's, numba's, torch's), and
anonymous memory (what the process allocated: interpreter objects, compiled kernels, model weights); and PSS (shared
pages divided among the processes that map them, so PSS adds up across processes to what the server costs).

The encoder's own cost is measured in a child process of its own: RSS after loading the index's encoder and
encoding one query, minus RSS before (modules lsr needs either way imported first). The goal it checks:
worker RSS <= index bytes touched + encoder + 150 MB, and parent < 100 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import free_port, stop  # noqa: E402  (the same server start and stop as the HTTP load benchmark)

ROOT = Path(__file__).resolve().parent.parent
NFCORPUS = ROOT.parent / "shared" / "data" / "beir" / "nfcorpus"
MB = 1 << 20


def smaps(pid: int, index: Path) -> dict:
    """RSS of ``pid`` split into index files, other files and anonymous memory, and its PSS (MB)."""
    totals = {"rss": 0, "pss": 0, "anon": 0, "index": 0, "files": 0}
    prefix = str(index.resolve()) + os.sep
    path = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            path = head[5] if len(head) == 6 else ""
            continue
        key, _, value = line.partition(":")
        if key not in ("Rss", "Pss", "Anonymous"):
            continue
        kb = int(value.split()[0]) * 1024
        if key == "Pss":
            totals["pss"] += kb
        elif key == "Anonymous":
            totals["anon"] += kb
        else:
            totals["rss"] += kb
            if path.startswith(prefix):
                totals["index"] += kb
            elif path.startswith("/"):
                totals["files"] += kb
    return {f"{k}_mb": v / MB for k, v in totals.items()}


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(t) for t in text]
    return out


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def encoder_cost(index: str) -> dict:
    code = ("import json, sys\n"
            "from pathlib import Path\n"
            "def rss():\n"
            "    return next(int(l.split()[1]) for l in Path('/proc/self/status').read_text().splitlines()"
            " if l.startswith('VmRSS')) / 1024\n"
            "import lsr.index, lsr.engine\n"
            "before = rss()\n"
            "from lsr import Index\n"
            "index = Index.open(sys.argv[1], parts=())\n"
            "index.encoder.encode_queries(['vitamin d and depression'])\n"
            "print(json.dumps({'encoder_mb': rss() - before, 'kind': type(index.encoder).__name__}))\n")
    done = subprocess.run([sys.executable, "-c", code, index], capture_output=True, text=True, cwd="/tmp", check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args, workers: int, queries: list[str]) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "lsr", "serve", "--index", args.index, "--host", "127.0.0.1",
                               "--port", str(port), "--workers", str(workers)], cwd="/tmp",
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"lsr serve exited: {server.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("lsr serve did not become ready in 300 s")
            time.sleep(0.5)
        if workers > 1:  # /readyz answered by one worker: wait for every worker to be up
            time.sleep(5)
        with httpx.Client(base_url=base, timeout=60) as client, ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda q: client.post("/search", json={"query": q, "k": 10}).status_code,
                                     queries))
        if any(s != 200 for s in statuses):
            raise RuntimeError(f"searches failed: {sorted(set(statuses))}")
        index = Path(args.index)
        parent = {"pid": server.pid, **smaps(server.pid, index)}
        workers_out = []
        if workers > 1:
            for pid in children(server.pid):
                if "resource_tracker" in cmdline(pid):
                    continue
                workers_out.append({"pid": pid, **smaps(pid, index)})
        else:
            workers_out.append(parent)
        return {"workers": workers, "parent": parent if workers > 1 else None, "worker_processes": workers_out,
                "pss_total_mb": sum(p["pss_mb"] for p in ([parent] if workers > 1 else []) + workers_out)}
    finally:
        stop(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--beir", default=str(NFCORPUS))
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    args.index = str(Path(args.index).resolve())  # (the server and the children run from /tmp)
    sys.path.insert(0, str(ROOT))
    from lsr.corpus import read_queries

    texts = list(read_queries(args.beir).values())[: args.queries]
    index_mb = sum(p.stat().st_size for p in Path(args.index).rglob("*") if p.is_file()) / MB
    encoder = encoder_cost(args.index)
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        rows.append(measure(args, workers, texts))
    budget = 150.0
    print(f"index {args.index}: {index_mb:,.0f} MB on disk; encoder ({encoder['kind']}) {encoder['encoder_mb']:,.0f} MB")
    print("| workers | process | RSS MB | index pages | other files | anonymous | PSS MB | RSS - index - encoder |")
    print("|" + " --- |" * 8)
    for row in rows:
        procs = ([("parent", row["parent"])] if row["parent"] else []) + \
                [(f"worker {i + 1}", p) for i, p in enumerate(row["worker_processes"])]
        for name, p in procs:
            rest = p["rss_mb"] - p["index_mb"] - (encoder["encoder_mb"] if name != "parent" else 0)
            print(f"| {row['workers']} | {name} | {p['rss_mb']:,.0f} | {p['index_mb']:,.0f} | {p['files_mb']:,.0f} | "
                  f"{p['anon_mb']:,.0f} | {p['pss_mb']:,.0f} | {rest:,.0f} |")
        row["worker_goal_met"] = all(p["rss_mb"] <= p["index_mb"] + encoder["encoder_mb"] + budget
                                     for p in row["worker_processes"])
        row["parent_goal_met"] = row["parent"] is None or row["parent"]["rss_mb"] < 100
    report = {"index": args.index, "index_mb": index_mb, "encoder": encoder, "rows": rows}
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
