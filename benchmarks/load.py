"""Bounded HTTP load on loopback, with two clients: QPS and latency percentiles per mode, worker count and
concurrency, against the same queries in-process.

For each worker count (``--workers 1,2``) it starts `lsr serve --workers W` on 127.0.0.1 (a free port), waits for
/readyz, times the first request of each mode (warm-up at startup should make it close to the steady state), then
for each mode runs closed loops at concurrency 1 (latency) and C (throughput, the tail under load), each for a fixed
duration, cycling through the BEIR split's queries:

- ``httpx``: asyncio + httpx in Python, one connection per task (what a Python caller sees; its own cost included);
- ``wrk``: the C load generator (a Debian package), a Lua script POSTing the same bodies, so the server is
  measured without the Python client's cost. ``wrk --latency`` reports p50/p75/p90/p99.

The floor of the HTTP stack is GET /healthz at concurrency 1 (no search, no body); "over /healthz" is a mode's c=1
p50 minus that floor, by the same client. In-process: Engine.search for the same queries, one at a time. The server
is stopped at the end of each worker count, whatever happens. The clients share the machine's cores with the
server: on 2 cores, QPS figures include the client's cost.

python benchmarks/load.py --index var/indexes/nf-default --modes sparse,bm25,hybrid --workers 1,2 --duration 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXTRA: dict = {}  # --extra: what every /search body carries besides the query, k and mode
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
                                                              "mode": mode, **EXTRA})
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
    """Engine.search_batch one query at a time, in this process, with the thread pools a served worker has
    (lsr.threads.configure: one torch thread unless LSR_TORCH_THREADS; nothing under LSR_THREADS=0)."""
    from lsr.engine import Engine
    from lsr.threads import configure

    configure(workers=1)
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


def _cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its children (uvicorn's workers), in seconds."""
    total = 0.0
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            pids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # a thread that ended during the scan
            continue
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def settled(pid: int, timeout: float = 180.0) -> None:
    """Wait until the server and its workers are idle (under 0.05 CPU s in 0.5 s): /readyz is answered by whichever
    worker is ready first, and another may still be loading its models and compiling; measuring then would time one
    worker against the other's warm-up."""
    deadline = time.monotonic() + timeout
    before = _cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _cpu_seconds(pid)
        if now - before < 0.05:
            return
        before = now


def ready(base: str, server: subprocess.Popen, log, timeout: float = 300.0, poll: float = 0.3) -> None:
    """Wait for /readyz; fail with the server's output (``log``) if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited: {log.read()[-2000:]}")
        time.sleep(poll)
    raise SystemExit(f"the server was not ready in {timeout:.0f} s")


def wrk_script(queries: list[str], mode: str, k: int, directory: Path) -> Path:
    """A wrk Lua script that POSTs /search bodies for the queries in turn (each wrk thread keeps its own counter)."""
    bodies = ",".join(json.dumps(json.dumps({"query": q, "k": k, "mode": mode, **EXTRA})) for q in queries)
    path = directory / f"{mode}.lua"
    # every wrk thread has its own Lua state: setup() numbers them, so each starts at another query
    path.write_text(f"""local bodies = {{{bodies}}}
local threads = 0
function setup(thread)
  thread:set("offset", threads * 97)
  threads = threads + 1
end
local i = 0
function init(args)
  i = (offset or 0) % #bodies
end
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/search", {{["Content-Type"] = "application/json"}}, bodies[i])
end
""")
    return path


def wrk_time(text: str) -> float:
    """wrk's "1.23ms" / "456.00us" / "1.02s" in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise ValueError(f"unexpected wrk time {text!r}")
    return float(match.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[match.group(2)]


def run_wrk(base: str, concurrency: int, duration: float, script: Path | None = None, path: str = "/") -> dict:
    threads = min(concurrency, 2)
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--latency", "--timeout",
               "10s"] + (["-s", str(script)] if script else []) + [base + path]
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    figures = {f"p{p}_ms": wrk_time(m.group(1)) for p in (50, 75, 90, 99)
               for m in [re.search(rf"^\s+{p}%\s+(\S+)", output, flags=re.M)] if m}
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(int(g) for g in socket.groups()) if socket else 0)
    return {"requests": requests, "errors": errors, "qps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            **figures}


def first_requests(base: str, queries: list[str], modes: list[str], k: int) -> dict:
    """The first request of each mode right after /readyz (what startup warm-up left). The client warms its own side
    first (a GET /healthz opens the connection; a POST with a JSON body to /healthz, answered 405 by the router,
    runs the client's POST path), so the figure compares with the same client's steady state."""
    out = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        client.get("/healthz")
        client.post("/healthz", json={"query": "client warm-up"})
        for mode in modes:
            started = time.perf_counter()
            response = client.post("/search", json={"query": queries[-1], "k": k, "mode": mode, **EXTRA})
            out[mode] = {"ms": (time.perf_counter() - started) * 1000, "status": response.status_code}
            if response.status_code != 200:
                raise SystemExit(f"the first {mode} request answered {response.status_code}: {response.text[:500]}")
    return out


def serve(index: str, workers: int, port: int, k: int, log, device: str | None = None) -> subprocess.Popen:
    """The server, its output into ``log`` (a file: a pipe nobody reads would stall it once full)."""
    env = {**os.environ, "LSR_MAX_K": str(max(1000, k))}
    command = [sys.executable, "-m", "lsr", "serve", "--index", index, "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers)] + (["--device", device] if device else [])
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)


def measure(args, queries: list[str], modes: list[str], workers: int, clients: list[str], scripts: dict) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile(mode="w+")
    server = serve(args.index, workers, port, args.k, log, args.device)
    result: dict = {"workers": workers, "modes": {}, "healthz_c1": {}}
    try:
        ready(base, server, log)
        settled(server.pid)  # every worker warmed up, not only the one that answered /readyz
        result["first_request"] = first_requests(base, queries, modes, args.k)
        for mode in modes:
            asyncio.run(closed_loop(base, queries, mode, args.k, 2 * workers, 2.0))  # every worker, every mode
        for client in clients:
            result["healthz_c1"][client] = (asyncio.run(healthz_floor(base, args.duration / 2)) if client == "httpx"
                                            else run_wrk(base, 1, args.duration / 2, path="/healthz"))
        for mode in modes:
            result["modes"][mode] = {}
            for client in clients:
                for concurrency in (1, args.concurrency):
                    figures = (asyncio.run(closed_loop(base, queries, mode, args.k, concurrency, args.duration))
                               if client == "httpx" else run_wrk(base, concurrency, args.duration, scripts[mode]))
                    result["modes"][mode][f"{client}_c{concurrency}"] = figures
    finally:
        stop(server)
        log.close()
    return result


def stop(server: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 30 s: the server this benchmark started is gone when it returns."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--beir", default=str(ROOT.parent / "shared" / "data" / "beir" / "nfcorpus"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--modes", default="sparse,bm25,hybrid")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--clients", default=None, help="httpx,wrk (default: both, wrk when installed)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--device", default=None, help="the server's query encoding device (siamese, dense), e.g. cuda")
    parser.add_argument("--output", default=None, help="write the figures as JSON")
    parser.add_argument("--extra", default=None, metavar="JSON",
                        help="fields added to every /search body, e.g. '{\"feedback\": {\"docs\": 5, "
                             "\"components\": [\"bm25\"]}}'")
    args = parser.parse_args()
    if args.extra:
        EXTRA.update(json.loads(args.extra))

    from lsr.corpus import read_qrels, read_queries

    queries_by_id = read_queries(args.beir)
    queries = [queries_by_id[q] for q in sorted(read_qrels(args.beir, args.split)) if q in queries_by_id]
    modes = [m.strip() for m in args.modes.split(",")]
    clients = args.clients.split(",") if args.clients else ["httpx"] + (["wrk"] if shutil.which("wrk") else [])
    if "wrk" in clients and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    scripts = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "wrk" in clients:
            scripts = {mode: wrk_script(queries, mode, args.k, Path(tmp)) for mode in modes}
        runs = [measure(args, queries, modes, int(w), clients, scripts) for w in args.workers.split(",")]
    local = in_process(args.index, queries, modes, args.k, limit=len(queries))
    c = args.concurrency
    print(f"{len(queries)} queries, k={args.k}, {os.cpu_count()} cores, {args.duration:.0f} s per run, "
          f"in-process p50: " + ", ".join(f"{m} {local[m]['p50_ms']:.3f} ms" for m in modes))
    print(f"| workers | mode | client | c=1 p50 / p99 ms | over /healthz | c={c} QPS | c={c} p50 / p99 ms | "
          "p99 / p50 | first request ms (httpx) | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in runs:
        for mode in modes:
            for client in clients:
                single, loaded = run["modes"][mode][f"{client}_c1"], run["modes"][mode][f"{client}_c{c}"]
                floor = run["healthz_c1"][client]["p50_ms"]
                print(f"| {run['workers']} | {mode} | {client} | {single['p50_ms']:.2f} / {single['p99_ms']:.2f} | "
                      f"{single['p50_ms'] - floor:.2f} | {loaded['qps']:.0f} | {loaded['p50_ms']:.2f} / "
                      f"{loaded['p99_ms']:.2f} | {loaded['p99_ms'] / max(loaded['p50_ms'], 1e-9):.1f} | "
                      f"{run['first_request'][mode]['ms']:.1f} | {single['errors'] + loaded['errors']} |")
        print(f"workers {run['workers']}: GET /healthz c=1 p50 " + ", ".join(
            f"{client} {run['healthz_c1'][client]['p50_ms']:.3f} ms" for client in clients))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"index": args.index, "queries": len(queries), "k": args.k,
                                                 "cores": os.cpu_count(), "duration_s": args.duration,
                                                 "concurrency": c, "in_process": local, "runs": runs,
                                                 "extra": EXTRA}, indent=2) + "\n")


if __name__ == "__main__":
    main()
