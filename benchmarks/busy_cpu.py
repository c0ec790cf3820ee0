"""Queries that run a model, on a quiet CPU and beside one other CPU-bound job, under thread settings, in one run.

    python benchmarks/busy_cpu.py --siamese var/indexes/nf-siamese --dense var/indexes/nfcorpus-hybrid \\
        --output var/bench/busy-cpu.json

For each index and mode (``siamese``: the sparse mode of an index whose queries go through the SPLADE model;
``dense``: the dense mode, MiniLM queries) and each setting, a child process opens the index with ``lsr.Engine``
(the path ``lsr serve`` and ``lsr eval`` use), searches every query once untimed, then times ``--queries`` BEIR test
queries one at a time twice: on a quiet machine, and while one other process spins on a core (``while True: pass``,
started after the warm-up and stopped after the pass). Settings are environments the child starts with:

- ``lsr``: none; what lsr sizes by itself (:mod:`lsr.threads`).
- ``torch default``: ``LSR_THREADS=0`` (lsr leaves the pools as the libraries size them: torch and numba one thread
  a core, OpenMP's default wait policy).
- ``1 thread``: ``LSR_THREADS=0 OMP_NUM_THREADS=1``, the setting the issue measured.
- ``passive``: ``LSR_THREADS=0`` with ``OMP_WAIT_POLICY=PASSIVE`` (threads that wait sleep instead of spinning): if
  spinning teams are the cause, this alone should recover most of the loss.

The figures are p50 and mean, busy over quiet; ``--runs`` repeats the whole matrix, interleaved, to see the noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NFCORPUS = ROOT.parent / "shared" / "data" / "beir" / "nfcorpus"
SETTINGS = {
    "lsr": {},
    "torch default": {"LSR_THREADS": "0"},
    "1 thread": {"LSR_THREADS": "0", "OMP_NUM_THREADS": "1"},
    "passive": {"LSR_THREADS": "0", "OMP_WAIT_POLICY": "PASSIVE"},
}


def spinner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def worker(args) -> None:
    from lsr import Engine
    from lsr.corpus import read_qrels, read_queries
    from lsr.threads import configure

    configure(workers=1)  # what `lsr serve` and `lsr eval` do (nothing under LSR_THREADS=0)
    engine = Engine.open(args.index)
    texts = read_queries(args.beir)
    qids = sorted(read_qrels(args.beir, "test"))[: args.queries]
    queries = [texts[q] for q in qids]
    for query in queries:  # warm-up: every query once
        engine.search(query, k=10, mode=args.mode)
    out = {}
    for phase in ("quiet", "busy"):
        job = spinner() if phase == "busy" else None
        try:
            if job is not None:
                time.sleep(0.5)  # the spinner is running
            latencies = []
            for query in queries:
                started = time.perf_counter()
                engine.search(query, k=10, mode=args.mode)
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            if job is not None:
                job.kill()
                job.wait()
        values = np.asarray(latencies)
        out[phase] = {"p50_ms": float(np.percentile(values, 50)), "mean_ms": float(values.mean()),
                      "p99_ms": float(np.percentile(values, 99))}
    import torch

    out["torch_threads"] = torch.get_num_threads()
    Path(args.result).write_text(json.dumps(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--siamese", help="an index whose queries are encoded by a SPLADE model (sparse mode)")
    parser.add_argument("--dense", help="an index with a dense part (dense mode)")
    parser.add_argument("--beir", default=str(NFCORPUS))
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--output", required=True)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    cases = [(name, str(Path(index).resolve()), mode) for name, index, mode in (("siamese", args.siamese, "sparse"),
                                                                                ("dense", args.dense, "dense")) if index]
    args.beir = str(Path(args.beir).resolve())
    if not cases:
        parser.error("pass --siamese and/or --dense")
    rows = []
    result = Path(args.output).resolve().with_suffix(".child.json")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    for run in range(args.runs):
        for case, index, mode in cases:
            for setting in args.settings.split(","):
                env = {**{k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                                                                             "LSR_THREADS", "LSR_TORCH_THREADS",
                                                                             "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")},
                       **SETTINGS[setting]}
                result.unlink(missing_ok=True)
                done = subprocess.run([sys.executable, __file__, "--worker", "--index", index, "--mode", mode,
                                       "--beir", args.beir, "--queries", str(args.queries), "--result", str(result),
                                       "--output", "-"], env=env, cwd="/tmp", capture_output=True, text=True)
                if done.returncode != 0:
                    print(done.stderr[-2000:], file=sys.stderr)
                    return 1
                got = json.loads(result.read_text())
                row = {"run": run, "case": case, "setting": setting, **got,
                       "busy_over_quiet_p50": got["busy"]["p50_ms"] / got["quiet"]["p50_ms"],
                       "busy_over_quiet_mean": got["busy"]["mean_ms"] / got["quiet"]["mean_ms"]}
                rows.append(row)
                print(f"{case:8s} {setting:14s} torch threads {got['torch_threads']}: quiet p50 "
                      f"{got['quiet']['p50_ms']:.2f} mean {got['quiet']['mean_ms']:.2f} ms; busy p50 "
                      f"{got['busy']['p50_ms']:.2f} mean {got['busy']['mean_ms']:.2f} ms; "
                      f"busy/quiet {row['busy_over_quiet_p50']:.2f}x p50, {row['busy_over_quiet_mean']:.2f}x mean",
                      flush=True)
    result.unlink(missing_ok=True)
    Path(args.output).write_text(json.dumps({"cores": os.cpu_count(), "queries": args.queries, "rows": rows},
                                            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
