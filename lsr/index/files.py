"""The file layer: every change lsr makes to an index directory goes through these functions.

What a commit is made of: write, fsync, rename, fsync the directory. Keeping every write, fsync, rename and removal
here (the writer, merges, garbage collection, the segment writer and the Milvus mirror's state alike) gives tests one
place to see and break them, as Lucene's ``MockDirectoryWrapper`` wraps its ``Directory``: :func:`intercept`
installs a callable that is told of each operation before it happens and may raise (an injected ``EIO`` or
``ENOSPC``, a simulated crash). With nothing installed the cost is one ``None`` check a call.

Checksums are CRC32 (zlib), the checksum Lucene's codec footers carry.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

FAULT_ENV = "LSR_FAULT"  # tests only: kill the process (SIGKILL) at the named point of a commit or merge

# op, path[, second path]: told before the operation happens ("mkdir", "write", "fsync", "rename", "remove")
Interceptor = Callable[..., None]
_interceptor: Interceptor | None = None


def intercept(interceptor: Interceptor | None) -> Interceptor | None:
    """Install ``interceptor`` (None: remove it); return the one it replaces. Tests only."""
    global _interceptor
    previous, _interceptor = _interceptor, interceptor
    return previous


def _told(op: str, path, other=None) -> None:
    if _interceptor is not None:
        _interceptor(op, Path(path), None if other is None else Path(other))


# -- writing --------------------------------------------------------------------------------------------------------
def mkdir(path: Path, parents: bool = True, exist_ok: bool = True) -> None:
    _told("mkdir", path)
    Path(path).mkdir(parents=parents, exist_ok=exist_ok)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` (not durable until it is fsynced)."""
    _told("write", path)
    Path(path).write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` without pickles (not durable until it is fsynced)."""
    _told("write", path)
    np.save(path, array, allow_pickle=False)


class Appender:
    """A file written in pieces (stored texts), buffered: the interceptor is told when it is created and when it is
    closed (the buffer flushed), where a real disk's error would surface."""

    def __init__(self, path: Path) -> None:
        _told("write", path)
        self.path = Path(path)
        self._handle = self.path.open("wb")

    def write(self, data: bytes) -> int:
        return self._handle.write(data)

    def close(self) -> None:
        if self._handle.closed:
            return
        try:
            _told("write", self.path)
        except BaseException:
            self._handle.close()
            raise
        self._handle.close()


def copy(source: Path, target: Path, skip: str | None = None, link: bool = False) -> None:
    """Copy a file, or a folder with everything in it (``skip``: a glob of names to leave out); not durable until
    fsynced. ``link``: hard-link each file instead where the filesystem allows (an immutable file only: both names
    are then the same bytes), and copy it where it does not (another filesystem, a filesystem without links)."""
    _told("write", target)
    function = link_or_copy if link else shutil.copy2
    if Path(source).is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(skip) if skip else None, copy_function=function)
    else:
        function(source, target)


def link_or_copy(source, target) -> str:
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copy2(source, target)
    return target


def rename(source: Path, target: Path) -> None:
    """``os.replace``: atomic; durable once the target's folder is fsynced."""
    _told("rename", source, target)
    os.replace(source, target)


def move(source: Path, target: Path) -> None:
    """A rename within one filesystem (folders included)."""
    _told("rename", source, target)
    shutil.move(str(source), str(target))


def remove(path: Path, missing_ok: bool = False) -> None:
    """Delete a file, or a folder with everything in it."""
    path = Path(path)
    if missing_ok and not path.exists():
        return
    _told("remove", path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


# -- durability -----------------------------------------------------------------------------------------------------
def fsync_file(path: Path) -> None:
    """fsync a file, or a folder (its entries: what a rename in it changed)."""
    _told("fsync", path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_directory = fsync_file


def fsync_tree(directory: Path) -> None:
    """fsync every file under ``directory``, then every folder (deepest first), then the folder itself."""
    folders = []
    for root, _dirs, names in os.walk(directory):
        for name in sorted(names):
            fsync_file(Path(root) / name)
        folders.append(root)
    for folder in reversed(folders):
        fsync_directory(Path(folder))


def write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably: a temporary sibling, fsync, rename, fsync the folder."""
    tmp = path.with_name(path.name + ".tmp")
    _told("write", tmp)
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            _told("fsync", tmp)
            os.fsync(handle.fileno())
        rename(tmp, path)
    except BaseException:
        remove(tmp, missing_ok=True)  # a failed write leaves no temporary file (a crash's is removed at next open)
        raise
    fsync_directory(path.parent)


# -- checksums ------------------------------------------------------------------------------------------------------
def checksum(path: Path, chunk: int = 1 << 24) -> int:
    """CRC32 of a file's bytes."""
    value = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            value = zlib.crc32(block, value)
    return value


def checksum_tree(directory: Path, skip: frozenset[str] = frozenset()) -> dict[str, int]:
    """CRC32 of every file under ``directory``, by path relative to it (``skip``: names at the top to leave out)."""
    out = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = Path(root) / name
            relative = path.relative_to(directory).as_posix()
            if relative not in skip:
                out[relative] = checksum(path)
    return dict(sorted(out.items()))


def with_checksum(data: dict) -> bytes:
    """``data`` as indented JSON with a ``crc32`` key: the CRC32 of the same JSON without it."""
    body = {k: v for k, v in data.items() if k != "crc32"}
    return (json.dumps({**body, "crc32": zlib.crc32(json.dumps(body, indent=2).encode())}, indent=2) + "\n").encode()


def read_checked(path: Path) -> dict:
    """A JSON file :func:`with_checksum` wrote (one without ``crc32``, from an older lsr, is taken as it is);
    ValueError when its checksum does not match."""
    data = json.loads(Path(path).read_bytes())
    if isinstance(data, dict) and "crc32" in data:
        expected = data.pop("crc32")
        if zlib.crc32(json.dumps(data, indent=2).encode()) != expected:
            raise ValueError(f"its checksum does not match (crc32 {expected} recorded): a byte changed after it "
                             "was written")
    return data


def fault_point(name: str) -> None:
    """With ``LSR_FAULT=name`` set, die here as a crash would (SIGKILL: no cleanup, no finally)."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
