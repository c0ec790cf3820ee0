"""Generations, the write lock, reader pins and garbage collection: how an index directory changes safely.

The model is Lucene's. An index directory holds immutable segments (``segments/seg-NNNNNN/``) and generations
(``generations/gen-NNNNNN.json``): a generation lists the live segments and, for each, the file of its deleted
documents (``del-GGGGGG.npy``, written once by generation G and never changed). ``CURRENT`` names the published
generation. A commit writes every new file, fsyncs it, writes the new generation file, then replaces ``CURRENT``
(write, fsync, rename, fsync the folder): that rename is the commit point. A crash before it leaves the previous
generation current and the new files unreferenced; they are removed by the next writer.

- **One writer at a time**: ``write.lock`` held with ``flock`` (released by the kernel if the process dies). A
  second writer gets :class:`IndexLocked` at once, or after ``wait`` seconds.
- **Readers pin their generation**: a shared ``flock`` on its generation file, held while the snapshot is open.
  Garbage collection deletes an old generation only when it can take an exclusive lock on it, and a segment only
  when no remaining generation names it.
- Leftover temporary files and folders (``*.tmp*``, ``.tmp-*``) of a crashed writer are removed when a writer opens.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lsr.errors import IndexLocked, IndexReadOnly, InvalidIndex  # noqa: F401  (IndexLocked, IndexReadOnly: here too)
from lsr.index import files

CURRENT_FILE = "CURRENT"
LOCK_FILE = "write.lock"
GENERATIONS = "generations"
SEGMENTS = "segments"
_GENERATION_NAME = re.compile(r"^gen-(\d{6,})\.json$")


@dataclass
class SegmentEntry:
    name: str
    deletes: str | None = None  # del-GGGGGG.npy in the segment folder: 1 for each deleted document
    deleted: int = 0
    deletes_crc32: int | None = None  # the deletes file's CRC32 (None: written before lsr 0.4)


@dataclass
class Generation:
    number: int
    segments: list[SegmentEntry]
    next_segment: int  # the number the next new segment gets
    documents: int  # live documents
    operation: str = ""  # what made it: "build", "add 5, replace 1, delete 2", "merge seg-1..seg-4"
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def name(self) -> str:
        return generation_name(self.number)

    def to_json(self) -> bytes:
        return files.with_checksum(asdict(self))

    @classmethod
    def read(cls, path: Path) -> Generation:
        try:
            data = files.read_checked(path)
            data["segments"] = [SegmentEntry(**s) for s in data["segments"]]
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise InvalidIndex(f"{path} cannot be read ({exc}); the index is damaged: `lsr index check "
                               f"{path.parent.parent}` says what else is, `--repair` goes back to the last good "
                               "generation") from None


def generation_name(number: int) -> str:
    return f"gen-{number:06d}.json"


def segment_name(number: int) -> str:
    return f"seg-{number:06d}"


def current_generation_file(directory: Path) -> Path:
    path = directory / CURRENT_FILE
    try:
        name = path.read_text().strip()
    except FileNotFoundError:
        raise InvalidIndex(f"{directory} has no {CURRENT_FILE}: it is not an lsr index of format 2, or its first "
                           "commit never finished; rebuild it with `lsr index`") from None
    if not _GENERATION_NAME.match(name):
        raise InvalidIndex(f"{path} names {name!r}, not a generation; the index is damaged: rebuild it")
    return directory / GENERATIONS / name


def current_name(directory: Path) -> str | None:
    """The published generation's file name, or None (a cheap check for readers polling for changes)."""
    try:
        return (directory / CURRENT_FILE).read_text().strip()
    except FileNotFoundError:
        return None


def publish(directory: Path, generation: Generation) -> None:
    """Write the generation file, then point ``CURRENT`` at it; both durably. The second rename is the commit."""
    files.mkdir(directory / GENERATIONS)
    files.write_durably(directory / GENERATIONS / generation.name, generation.to_json())
    files.fault_point("generation-written")
    files.write_durably(directory / CURRENT_FILE, (generation.name + "\n").encode())
    files.fault_point("published")


class _ReleasedWhenCollected:
    """A held file lock that its ``release`` gives back; also when the holder is garbage-collected."""

    fd: int | None = None

    def release(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __del__(self) -> None:
        try:
            self.release()
        except OSError:  # pragma: no cover - interpreter shutdown
            pass


class WriteLock(_ReleasedWhenCollected):
    """``write.lock``: one writer at a time, released by the kernel if the holder dies."""

    def __init__(self, directory: Path, wait: float = 0.0) -> None:
        self.path = directory / LOCK_FILE
        self.fd = None
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not os.access(directory, os.W_OK):
                raise PermissionError(directory)
        except OSError as exc:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            raise IndexReadOnly(f"{directory} cannot be written ({exc.strerror or 'no write permission'}): it is "
                                "read-only here; write to a writable copy, or serve it read-only") from None
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
                    fd, self.fd = self.fd, None  # never released again: the number may soon be another lock's
                    os.close(fd)
                    raise IndexLocked(f"another writer (pid {holder}) holds {self.path}; wait for it to finish (or "
                                      "stop it) and try again: one writer at a time keeps the index consistent") from None
                time.sleep(0.02)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class Pin(_ReleasedWhenCollected):
    """A reader's shared lock on its generation file: the generation (and its segments) stay on disk while held."""

    def __init__(self, path: Path) -> None:
        self.fd: int | None = os.open(path, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def remove_leftovers(directory: Path) -> list[str]:
    """Temporary files and folders a crashed writer left (call with the write lock held)."""
    removed = []
    for folder in (directory, directory / SEGMENTS, directory / GENERATIONS):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".tmp-") or ".tmp" in path.suffixes or path.name.endswith(".tmp"):
                files.remove(path)
                removed.append(str(path.relative_to(directory)))
    for segment in (directory / SEGMENTS).glob("seg-*") if (directory / SEGMENTS).is_dir() else ():
        for path in segment.glob("*.tmp"):
            files.remove(path)
            removed.append(str(path.relative_to(directory)))
    return removed


def collect_garbage(directory: Path, current: Generation) -> list[str]:
    """Delete generations older than ``current`` that no reader pins, then every segment (and deletes file) that no
    remaining generation references. Call with the write lock held, with ``current`` the generation ``CURRENT``
    names (read under that lock, never a handle's snapshot, which may be behind: what a newer generation holds would
    go). A generation file newer than ``current`` was written by a writer that died before publishing it: it goes."""
    removed = []
    keep: list[Generation] = [current]
    for path in sorted((directory / GENERATIONS).glob("gen-*.json")):
        match = _GENERATION_NAME.match(path.name)
        if match is None or int(match.group(1)) == current.number:
            continue
        if int(match.group(1)) > current.number:  # never published (the caller holds the lock: nobody else can)
            files.remove(path)
            removed.append(f"{GENERATIONS}/{path.name}")
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a reader still searches it
            keep.append(Generation.read(path))
            os.close(fd)
            continue
        try:
            files.remove(path)
        finally:
            os.close(fd)
        removed.append(f"{GENERATIONS}/{path.name}")
    referenced: dict[str, set[str]] = {}
    for generation in keep:
        for entry in generation.segments:
            referenced.setdefault(entry.name, set()).add(entry.deletes or "")
    from lsr.index.segment import forget_segment

    for segment in sorted((directory / SEGMENTS).glob("seg-*")):
        if segment.name not in referenced:
            forget_segment(segment)
            files.remove(segment)
            removed.append(f"{SEGMENTS}/{segment.name}")
            continue
        for deletes in segment.glob("del-*.npy"):
            if deletes.name not in referenced[segment.name]:
                files.remove(deletes)
                removed.append(f"{SEGMENTS}/{segment.name}/{deletes.name}")
    if removed:
        files.fsync_directory(directory / SEGMENTS)
    return removed
