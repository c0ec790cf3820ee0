"""How long a newcomer waits for `lsr --help`, `lsr index --help` and a mistyped corpus path, and whether torch was
imported: each command a fresh process, median of ``--runs``, for this checkout and for any other Python given with
``--against`` (another checkout's environment: the before of a change).

python benchmarks/cli_latency.py --runs 5 [--against /path/to/other/.venv/bin/python]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {"lsr --help": ["--help"], "lsr index --help": ["index", "--help"],
            "lsr index --corpus /nonexistent": ["index", "--corpus", "/nonexistent/corpus", "--out", "OUT"]}
PROBE = ("import sys, runpy\nsys.argv = ['lsr'] + sys.argv[1:]\ntry:\n    runpy.run_module('lsr', run_name='__main__')\n"
         "except SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules, file=sys.stderr)\n")


def measure(python: str, runs: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as scratch:  # (a neutral working folder: no checkout on sys.path)
        for name, argv in COMMANDS.items():
            argv = [a.replace("OUT", str(Path(scratch) / "out")) for a in argv]
            times, torch = [], None
            for _ in range(runs):
                started = time.perf_counter()
                done = subprocess.run([python, "-c", PROBE, *argv], capture_output=True, text=True, cwd=scratch)
                times.append(time.perf_counter() - started)
                torch = "TORCH True" in done.stderr
            out[name] = {"median_s": statistics.median(times), "min_s": min(times), "torch_imported": torch}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--against", action="append", default=[], metavar="PYTHON")
    args = parser.parse_args()
    pythons = {"this checkout": sys.executable, **{p: p for p in args.against}}
    results = {name: measure(python, args.runs) for name, python in pythons.items()}
    print("| command | " + " | ".join(results) + " |")
    print("| --- |" + " --- |" * len(results))
    for command in COMMANDS:
        cells = [f"{r[command]['median_s']:.2f} s{' (torch)' if r[command]['torch_imported'] else ''}"
                 for r in results.values()]
        print(f"| {command} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
