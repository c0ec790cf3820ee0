"""Pyserini's ``JsonVectorCollection``: the JSONL contract between encoding and a Lucene impact index
(``{"id", "contents", "vector": {token: impact}}``), written from a snapshot (``lsr index --export-jsonl``, the Lucene
part)."""

from __future__ import annotations

import json
from pathlib import Path


def write_json_vector_collection(snapshot, tokens: list[str], path: Path) -> int:
    """Pyserini's JsonVectorCollection of a snapshot's live documents: ``{"id", "contents", "vector": {token:
    impact}}``, one line a document, impacts as stored (integers for a uint8 index); ``contents`` is the stored
    title + text when the index keeps texts."""
    import numpy as np

    written = 0
    with path.open("w", encoding="utf-8") as out:
        for view in snapshot.views:
            segment = view.segment
            vectors = segment.row_vectors()
            integer = segment.impacts.dtype == np.uint8
            for local in range(segment.info.documents):
                if not view.is_live(local):
                    continue
                ids, values = vectors.row(local)
                vector = {tokens[t]: (int(v) if integer else float(v)) for t, v in zip(ids.tolist(), values.tolist())
                          if v > 0}
                record = segment.texts.get(local) if segment.texts is not None else None
                contents = f"{record['title']} {record['text']}".strip() if record else ""
                out.write(json.dumps({"id": str(segment.ids[local]), "contents": contents, "vector": vector},
                                     ensure_ascii=False) + "\n")
                written += 1
    return written
