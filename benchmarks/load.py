"""Bounded HTTP load on loopback: QPS and latency percentiles per mode, against the same queries in-process.

Starts `lsr serve --workers W` on 127.0.0.1 (a free port), waits for /readyz, then for each mode runs
  - a closed loop at concurrency 1 (latency: p50/p95/p99; HTTP overhead = its p50 - the in-process p50), and
  - a closed loop at concurrency C (throughput: QPS, p50/p99 under load),
each for a fixed duration, cycling through the BEIR split's queries (asyncio + httpx, one connection per task).
In-process: Engine.search for the same queries, one at a time. The floor of the HTTP stack (client, uvicorn,
FastAPI, thread-pool hop; no search, no body) is GET /healthz at concurrency 1.
The server is stopped at the end, whatever happens.
The client shares the machine's cores with the server: on 2 cores, the QPS figures include the client's cost.

python benchmarks/load.py --index var/indexes/nf-default-hybrid --modes sparse,dense,hybrid --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentiles(latencies_ms: list[float]) -> dict:
    values = np.asarray(latencies_ms) if latencies_ms else np.zeros(1)
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)),
            "p99_ms": float(np.percentile(values, 99)), "mean_ms": float(values.mean())}


async def closed_loop(base: str, queries: list[str], mode: str, k: int, concurrency: int, duration: float) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker(offset: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            i = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.post("/search", json={"query": queries[i % len(queries)], "k": k,
                                                              "mode": mode})
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1
                i += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "errors": errors, "qps": len(latencies) / elapsed, **percentiles(latencies)}


async def healthz_floor(base: str, duration: float) -> dict:
    """GET /healthz one at a time: the cost of client + uvicorn + FastAPI + the thread-pool hop, with no search."""
    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await client.get("/healthz")
            latencies.append((time.perf_counter() - started) * 1000)
    return percentiles(latencies)


def in_process(index: str, queries: list[str], modes: list[str], k: int, limit: int) -> dict:
    from lsr.engine import Engine

    engine = Engine.open(index)
    out = {}
    for mode in modes:
        engine.search(queries[0], k, mode)  # warm-up
        latencies = []
        for query in queries[:limit]:
            started = time.perf_counter()
            engine.search_batch([query], k, mode, threads=1)
            latencies.append((time.perf_counter() - started) * 1000)
        out[mode] = percentiles(latencies)
    return out


def ready(base: str, server: subprocess.Popen, timeout: float = 300.0) -> None:
    """Wait for /readyz; fail with the server's output if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read()[-2000:] if server.stderr else ''}")
        time.sleep(0.3)
    raise SystemExit(f"the server was not ready in {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--beir", default=str(ROOT.parent / "shared" / "data" / "beir" / "nfcorpus"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--modes", default="sparse,dense,hybrid")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per mode and concurrency level")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--output", default=None, help="write the figures as JSON")
    args = parser.parse_args()

    from lsr.corpus import read_qrels, read_queries

    queries_by_id = read_queries(args.beir)
    queries = [queries_by_id[q] for q in sorted(read_qrels(args.beir, args.split)) if q in queries_by_id]
    modes = [m.strip() for m in args.modes.split(",")]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LSR_MAX_K": str(max(1000, args.k))}
    server = subprocess.Popen([sys.executable, "-m", "lsr", "serve", "--index", args.index, "--host",
                               "127.0.0.1", "--port", str(port), "--workers", str(args.workers)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    results: dict = {"index": args.index, "workers": args.workers, "concurrency": args.concurrency,
                     "duration_s": args.duration, "queries": len(queries), "k": args.k, "cores": os.cpu_count(),
                     "modes": {}}
    try:
        ready(base, server)
        asyncio.run(healthz_floor(base, 1.0))
        results["healthz_c1"] = asyncio.run(healthz_floor(base, args.duration / 2))
        for mode in modes:
            asyncio.run(closed_loop(base, queries, mode, args.k, 2, 2.0))  # warm every worker
            single = asyncio.run(closed_loop(base, queries, mode, args.k, 1, args.duration))
            loaded = asyncio.run(closed_loop(base, queries, mode, args.k, args.concurrency, args.duration))
            results["modes"][mode] = {"http_c1": single, f"http_c{args.concurrency}": loaded}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    local = in_process(args.index, queries, modes, args.k, limit=len(queries))
    print(f"{len(queries)} queries, k={args.k}, {args.workers} uvicorn workers, {os.cpu_count()} cores, "
          f"{args.duration:.0f} s per run")
    print(f"| mode | in-process p50 | HTTP c=1 p50 / p99 | HTTP overhead p50 | HTTP c={args.concurrency} QPS | "
          f"p50 / p99 under load | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for mode in modes:
        single, loaded = results["modes"][mode]["http_c1"], results["modes"][mode][f"http_c{args.concurrency}"]
        results["modes"][mode]["in_process"] = local[mode]
        results["modes"][mode]["http_overhead_p50_ms"] = single["p50_ms"] - local[mode]["p50_ms"]
        print(f"| {mode} | {local[mode]['p50_ms']:.2f} ms | {single['p50_ms']:.2f} / {single['p99_ms']:.2f} ms | "
              f"{single['p50_ms'] - local[mode]['p50_ms']:.2f} ms | {loaded['qps']:.0f} | "
              f"{loaded['p50_ms']:.1f} / {loaded['p99_ms']:.1f} ms | {single['errors'] + loaded['errors']} |")
    floor = results["healthz_c1"]
    print(f"floor of the HTTP stack, GET /healthz at c=1 (no search, no body): p50 {floor['p50_ms']:.2f} ms, "
          f"p99 {floor['p99_ms']:.2f} ms")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
