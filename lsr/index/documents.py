"""Stored document texts beside an index (``lsr index --store-documents``): ``GET /documents/{id}`` and hits that
carry their title and text.

``documents/texts.jsonl`` holds one ``{"id", "title", "text"}`` object per document in index order;
``documents/offsets.npy`` holds the byte offset of each line (plus the end), so a lookup is one positioned read.

The reader opens ``texts.jsonl`` once and reads through that open file (``os.pread``), never by path again: when the
index directory is replaced underneath a running server (a rebuild swaps a new directory in), the server keeps
reading the file its offsets describe, and serves the index it loaded, consistently, until it reopens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lsr.errors import InvalidIndex
from lsr.index import files

TEXTS_FILE = "texts.jsonl"
OFFSETS_FILE = "offsets.npy"


class DocumentStoreWriter:
    def __init__(self, directory: Path) -> None:
        files.mkdir(directory)
        self.directory = directory
        self._handle = files.Appender(directory / TEXTS_FILE)
        self._offsets = [0]

    def add(self, doc_id: str, title: str, text: str) -> None:
        line = (json.dumps({"id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n").encode()
        self._handle.write(line)
        self._offsets.append(self._offsets[-1] + len(line))

    def close(self) -> int:
        self._handle.close()
        files.save_array(self.directory / OFFSETS_FILE, np.asarray(self._offsets, dtype=np.int64))
        return len(self._offsets) - 1


class DocumentStore:
    """Read side; ``get(row)`` returns the stored record of the document at that index position."""

    def __init__(self, directory: Path, in_memory: bool = False) -> None:
        self.offsets = np.load(directory / OFFSETS_FILE, mmap_mode=None if in_memory else "r")
        self._data: bytes | None = None
        self._fd: int | None = None
        if in_memory:
            self._data = (directory / TEXTS_FILE).read_bytes()
        else:
            self._fd = os.open(directory / TEXTS_FILE, os.O_RDONLY)
        if len(self.offsets) < 1 or int(self.offsets[-1]) != self._size():
            size = self._size()
            self.close()
            raise InvalidIndex(f"{directory}: {TEXTS_FILE} has {size} bytes but {OFFSETS_FILE} ends at "
                             f"{int(self.offsets[-1]) if len(self.offsets) else '?'}; the index is damaged, rebuild it")

    def _size(self) -> int:
        return len(self._data) if self._data is not None else os.fstat(self._fd).st_size

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, row: int) -> dict:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        raw = self._data[start:end] if self._data is not None else os.pread(self._fd, end - start, start)
        return json.loads(raw)

    def save(self, directory: Path) -> None:
        files.mkdir(directory)
        data = self._data if self._data is not None else os.pread(self._fd, self._size(), 0)
        files.write_bytes(directory / TEXTS_FILE, data)
        files.save_array(directory / OFFSETS_FILE, np.asarray(self.offsets))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except (AttributeError, OSError, TypeError):  # pragma: no cover - interpreter shutdown
            pass
