"""What a server restart spends before /readyz, step by step, in a fresh process each run.

    python benchmarks/startup.py --index var/indexes/nf-default --runs 3 --output FILE

Each run is a new Python process that times, in the order `lsr serve` does them: the imports (lsr, the service and
what they pull in: FastAPI, numba), the encoder load (torch and transformers only where the queries need a model:
an inference-free index's queries need neither), opening the segments (checksums
verified), the retrievers (BM25 statistics, dense), the warm-up (kernel compilation or numba cache loading, a
search a mode, the filtered paths), and the app's own start (routes warmed). Then `lsr serve` itself is started
and timed to /readyz from the outside. The first run after a source change also compiles the kernels into numba's
cache ("cold"); the rest load them ("warm").
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
marks = {}
t = time.perf_counter()
import lsr, lsr.service.app, fastapi, numba  # noqa
marks["imports"] = time.perf_counter() - t
from pathlib import Path
from lsr import Engine, Index
path = Path(sys.argv[1])
t = time.perf_counter()
Index.open(path, load_encoder=False).close()
marks["segments open (checksums verified)"] = time.perf_counter() - t
t = time.perf_counter()
index = Index.open(path)  # (the segments are open in this process now: this is the encoders' load)
marks["encoder load"] = time.perf_counter() - t
t = time.perf_counter()
engine = Engine(index)
marks["retrievers (BM25 statistics, dense)"] = time.perf_counter() - t
t = time.perf_counter()
for retriever in engine.retrievers.values():
    retriever.warm_up()
marks["kernels (compile or load the numba cache)"] = time.perf_counter() - t
t = time.perf_counter()
engine.warm_up()
marks["warm-up searches"] = time.perf_counter() - t
marks["torch imported (0 or 1)"] = float("torch" in sys.modules)
print(json.dumps(marks))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_to_ready(index: str) -> float:
    import httpx

    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "lsr", "serve", "--index", index, "--host", "127.0.0.1",
                               "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "LSR_MERGE": "false"})
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                raise SystemExit("the server exited before it was ready")
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    runs = []
    for _run in range(args.runs):
        started = time.perf_counter()
        output = subprocess.run([sys.executable, "-c", CHILD, args.index], capture_output=True, text=True, cwd=ROOT,
                                check=True).stdout
        marks = json.loads(output.strip().splitlines()[-1])
        marks["process total"] = time.perf_counter() - started
        marks["lsr serve to /readyz"] = serve_to_ready(args.index)
        runs.append(marks)
    steps = list(runs[0])
    print("| step | " + " | ".join(f"run {r + 1}" for r in range(len(runs))) + " |")
    print("| --- |" + " --- |" * len(runs))
    for step in steps:
        print(f"| {step} | " + " | ".join(f"{r[step]:.2f} s" for r in runs) + " |")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"index": args.index, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
