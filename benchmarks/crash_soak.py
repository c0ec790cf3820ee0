"""Crash soak, after Qdrant's crasher: a server on loopback under a bounded search load and a writer client (adds,
replaces and deletes) is SIGKILLed at random moments and restarted; after every restart, every acknowledged write must
be there, no batch half applied, and no search answered 5xx while the server was up.

    python benchmarks/crash_soak.py --index var/indexes/nf-default --cycles 20 --workers 2 --output FILE

The index is copied into ``--work`` first (the original is never written). Each cycle: start `lsr serve` (its own
process group), wait for /readyz (the restart-to-ready time), check the index on disk against the writer's
acknowledged history, run one search client and one writer client for a random 2-5 s (and until at least one
write of the cycle is acknowledged), then SIGKILL the whole process group mid-flight. A write acknowledged (200)
must survive; a write in flight when the server died may or may not have been applied, but all of its batch or
none. Reported: cycles, writes acknowledged, writes lost,
batches half applied, searches and their 5xx, restart-to-ready p50 / max, and the first start.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.load import free_port, ready  # noqa: E402

WORDS = "statin fish oil heart disease diet vitamin coffee tea salt sugar blood pressure soy protein fiber".split()


@dataclass
class Op:
    """One write: what each of its ids holds afterwards (a text, or None: deleted)."""

    kind: str
    after: dict[str, str | None]


@dataclass
class Soak:
    index: Path
    workers: int = 2
    seed: int = 0
    kill_after: tuple[float, float] = (2.0, 5.0)
    batch: int = 4
    env: dict = field(default_factory=dict)
    state: dict[str, str | None] = field(default_factory=dict)  # acknowledged: id -> text (None: deleted)
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)
    half_applied: list[str] = field(default_factory=list)
    in_flight_applied: int = 0
    in_flight_not_applied: int = 0
    searches: int = 0
    search_5xx: int = 0
    write_5xx: int = 0
    ready_seconds: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.counter = 0

    # -- the server ------------------------------------------------------------------------------------------------
    def start(self, log) -> tuple[subprocess.Popen, float]:
        started = time.perf_counter()
        command = [sys.executable, "-m", "lsr", "serve", "--index", str(self.index), "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", str(self.workers)]
        env = {**os.environ, "LSR_MERGE": "false", **self.env}
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
        ready(self.base, server, log, poll=0.05)
        return server, time.perf_counter() - started

    @staticmethod
    def kill(server: subprocess.Popen) -> None:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait(timeout=30)

    # -- the clients -----------------------------------------------------------------------------------------------
    def next_op(self) -> Op:
        live = [i for i, text in self.state.items() if text is not None]
        kind = self.rng.choice(["add", "add", "replace", "delete"]) if len(live) > 8 else "add"
        if kind == "add":
            ids = [f"soak-{self.seed}-{self.counter + j}" for j in range(self.batch)]
            self.counter += self.batch
            return Op("add", {i: " ".join(self.rng.choices(WORDS, k=12)) + f" {i}" for i in ids})
        if kind == "replace":
            return Op("replace", {self.rng.choice(live): " ".join(self.rng.choices(WORDS, k=12)) + f" v{self.counter}"})
        return Op("delete", {self.rng.choice(live): None})

    def send(self, client: httpx.Client, op: Op) -> int:
        if op.kind == "add":
            body = {"documents": [{"id": i, "text": t} for i, t in op.after.items()]}
            return client.post(f"{self.base}/documents", json=body).status_code
        (doc_id, text), = op.after.items()
        if op.kind == "replace":
            return client.put(f"{self.base}/documents/{doc_id}", json={"text": text}).status_code
        return client.delete(f"{self.base}/documents/{doc_id}").status_code

    def writer(self, stop: threading.Event, in_flight: list) -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                op = self.next_op()
                in_flight[:] = [op]
                try:
                    status = self.send(client, op)
                except httpx.TransportError:  # the server died under it: unknown, checked after the restart
                    return
                in_flight.clear()
                if status == 200:
                    self.state.update(op.after)
                    self.acknowledged += 1
                elif status >= 500:
                    self.write_5xx += 1

    def searcher(self, stop: threading.Event) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    status = client.post(f"{self.base}/search", json={"query": " ".join(self.rng.choices(WORDS, k=3)),
                                                                       "k": 10}).status_code
                except httpx.TransportError:
                    return
                self.searches += 1
                self.search_5xx += status >= 500
                time.sleep(0.005)  # bounded: about 100-200 searches a second at most

    # -- the check -------------------------------------------------------------------------------------------------
    def verify(self, in_flight: list[Op]) -> None:
        """The index on disk against the acknowledged history; an in-flight write: all of it or none."""
        from lsr import Index

        index = Index.open(self.index, load_encoder=False)
        try:
            snapshot = index.snapshot()

            def found(doc_id: str) -> str | None:
                record = snapshot.document(doc_id) if snapshot.find(doc_id) is not None else None
                return None if record is None else record["text"]

            touched = set(in_flight[0].after) if in_flight else set()
            for doc_id, expected in self.state.items():
                if doc_id not in touched and found(doc_id) != expected:
                    self.lost.append(doc_id)
            if in_flight:
                op = in_flight[0]
                applied = [found(i) == t for i, t in op.after.items()]
                before = [found(i) == self.state.get(i) for i in op.after]
                if all(applied):
                    self.state.update(op.after)
                    self.in_flight_applied += 1
                elif all(before):
                    self.in_flight_not_applied += 1
                else:
                    self.half_applied.append(op.kind)
        finally:
            index.close()

    def run(self, cycles: int, log) -> dict:
        server, first = self.start(log)
        in_flight: list[Op] = []
        try:
            for cycle in range(cycles + 1):
                if cycle:
                    server, seconds = self.start(log)
                    self.ready_seconds.append(seconds)
                    self.verify(in_flight)
                if cycle == cycles:
                    break
                stop = threading.Event()
                threads = [threading.Thread(target=self.writer, args=(stop, in_flight)),
                           threading.Thread(target=self.searcher, args=(stop,))]
                for thread in threads:
                    thread.start()
                acknowledged = self.acknowledged
                time.sleep(self.rng.uniform(*self.kill_after))
                deadline = time.monotonic() + 60  # a slow machine: at least one write a cycle before the kill
                while self.acknowledged == acknowledged and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(self.rng.uniform(0, 0.5))  # (then not right after an acknowledgement)
                self.kill(server)
                stop.set()
                for thread in threads:
                    thread.join(timeout=60)
        finally:
            self.kill(server)
        ready = self.ready_seconds or [0.0]
        return {"cycles": cycles, "workers": self.workers, "writes_acknowledged": self.acknowledged,
                "writes_lost": len(self.lost), "lost_ids": self.lost[:10], "batches_half_applied": len(self.half_applied),
                "in_flight_applied": self.in_flight_applied, "in_flight_not_applied": self.in_flight_not_applied,
                "searches": self.searches, "search_5xx": self.search_5xx, "write_5xx": self.write_5xx,
                "first_start_s": round(first, 2), "restart_to_ready_p50_s": round(statistics.median(ready), 2),
                "restart_to_ready_max_s": round(max(ready), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="the index to copy and soak (left unchanged)")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="where the copy goes (default: a temporary folder)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="lsr-soak-"))
    target = work / "index"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(args.index, target)
    with tempfile.TemporaryFile(mode="w+") as log:
        result = Soak(target, workers=args.workers, seed=args.seed).run(args.cycles, log)
    result["index"] = args.index
    print("| cycles | workers | writes acknowledged | writes lost | batches half applied | searches | search 5xx | "
          "first start s | restart to ready p50 / max s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {result['cycles']} | {result['workers']} | {result['writes_acknowledged']} | {result['writes_lost']} | "
          f"{result['batches_half_applied']} | {result['searches']} | {result['search_5xx']} | "
          f"{result['first_start_s']} | {result['restart_to_ready_p50_s']} / {result['restart_to_ready_max_s']} |")
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
