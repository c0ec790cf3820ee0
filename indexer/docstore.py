"""Stored document texts beside an index (optional, ``lsr index --store-documents``): ``GET /documents/{id}``.

``documents/texts.jsonl`` holds one ``{"id", "title", "text"}`` object per document in index order;
``documents/offsets.npy`` holds the byte offset of each line (plus the end), so a lookup is one seek and one read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TEXTS_FILE = "texts.jsonl"
OFFSETS_FILE = "offsets.npy"


class DocumentStoreWriter:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._handle = (directory / TEXTS_FILE).open("wb")
        self._offsets = [0]

    def add(self, doc_id: str, title: str, text: str) -> None:
        line = (json.dumps({"id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n").encode()
        self._handle.write(line)
        self._offsets.append(self._offsets[-1] + len(line))

    def close(self) -> int:
        self._handle.close()
        np.save(self.directory / OFFSETS_FILE, np.asarray(self._offsets, dtype=np.int64), allow_pickle=False)
        return len(self._offsets) - 1


class DocumentStore:
    """Read side; ``get(row)`` returns the stored record of the document at that index position."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets = np.load(directory / OFFSETS_FILE, mmap_mode="r")
        self._path = directory / TEXTS_FILE

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, row: int) -> dict:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        with self._path.open("rb") as handle:
            handle.seek(start)
            return json.loads(handle.read(end - start))
