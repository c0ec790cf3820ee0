"""Fault injection for lsr's file layer (:mod:`lsr.index.files`), after Lucene's ``MockDirectoryWrapper``.

:class:`FaultyDisk` is installed with :func:`lsr.index.files.intercept`. It numbers every operation the index
makes on its files (mkdir, write, fsync, rename, remove), can fail the Nth with ``EIO`` or ``ENOSPC``, or "crash"
there: that operation and every later one raise :class:`SimulatedCrash` (a ``BaseException``, so no ``except
Exception`` clean-up runs, and clean-ups that touch files are stopped as a dead machine would stop them). It also
follows durability: a file written is *dirty* until it is fsynced; a rename carries the state to the new name. After
a crash, :meth:`FaultyDisk.damage` does to every dirty file what a power cut may: delete it, zero it, truncate it,
or flip one bit, chosen by a seed.
"""

from __future__ import annotations

import errno
import os
import random
from contextlib import contextmanager
from pathlib import Path

from lsr.index import files


class SimulatedCrash(BaseException):
    """The machine went down at this file operation."""


class FaultyDisk:
    def __init__(self, fail_at: int | None = None, error: int = errno.EIO, crash: bool = False,
                 under: Path | None = None) -> None:
        self.fail_at, self.error, self.crash = fail_at, error, crash
        self.under = Path(under).resolve() if under is not None else None
        self.calls = 0
        self.log: list[tuple[str, Path, Path | None]] = []
        self.dirty: set[Path] = set()
        self.crashed = False
        self.failed: tuple[str, Path] | None = None

    def __call__(self, op: str, path: Path, other: Path | None) -> None:
        if self.crashed:
            raise SimulatedCrash(f"the machine is down ({op} {path})")
        path = Path(os.path.abspath(path))
        other = Path(os.path.abspath(other)) if other is not None else None
        if self.under is not None and self.under not in path.parents and path != self.under:
            return
        self.calls += 1
        self.log.append((op, path, other))
        if self.calls == self.fail_at:
            self.failed = (op, path)
            if self.crash:
                self.crashed = True
                raise SimulatedCrash(f"crash at operation {self.calls}: {op} {path}")
            raise OSError(self.error, os.strerror(self.error), str(path))
        if op == "write":
            self.dirty.add(path)
        elif op == "fsync":
            self.dirty.discard(path)
        elif op == "rename":
            moved = {p for p in self.dirty if p == path or path in p.parents}
            self.dirty -= moved
            self.dirty |= {other / p.relative_to(path) if p != path else other for p in moved}
        elif op == "remove":
            self.dirty = {p for p in self.dirty if not (p == path or path in p.parents)}

    def damage(self, seed: int) -> list[tuple[str, str]]:
        """Damage every file written and not fsynced (a folder written as a whole: every file in it)."""
        rng = random.Random(seed)
        done = []
        targets = set()
        for path in self.dirty:
            if path.is_dir():
                targets |= {p for p in path.rglob("*") if p.is_file()}
            elif path.is_file():
                targets.add(path)
        for path in sorted(targets):
            how = rng.choice(("delete", "zero", "truncate", "flip"))
            data = path.read_bytes()
            if how == "delete":
                path.unlink()
            elif how == "zero":
                path.write_bytes(bytes(len(data)))
            elif how == "truncate":
                path.write_bytes(data[: rng.randrange(len(data))] if data else b"")
            elif data:
                at = rng.randrange(len(data))
                path.write_bytes(data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:])
            done.append((how, str(path)))
        return done


@contextmanager
def faulty(disk: FaultyDisk):
    previous = files.intercept(disk)
    try:
        yield disk
    finally:
        files.intercept(previous)


def leftovers(directory: Path) -> list[str]:
    """Temporary files and folders anywhere under an index directory."""
    return sorted(str(p.relative_to(directory)) for p in Path(directory).rglob("*")
                  if ".tmp" in p.name or p.name.startswith(".tmp-"))
