"""Durable file operations: what a commit is made of (write, fsync, rename, fsync the directory)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

FAULT_ENV = "LSR_FAULT"  # tests only: kill the process (SIGKILL) at the named point of a commit or merge


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """fsync every file under ``directory``, then every folder (deepest first), then the folder itself."""
    folders = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        folders.append(root)
    for folder in reversed(folders):
        fsync_directory(Path(folder))


def write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably: a temporary sibling, fsync, rename, fsync the folder."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def fault_point(name: str) -> None:
    """With ``LSR_FAULT=name`` set, die here as a crash would (SIGKILL: no cleanup, no finally)."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
