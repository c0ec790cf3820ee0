"""IDF over a corpus, in the form inference-free query tables use: ln(1 + (N - df + 0.5) / (df + 0.5)).

This is the BM25 (Robertson/Sparck Jones) IDF, the one OpenSearch's inference-free models ship as ``idf.json``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lsr.errors import InvalidInput


def document_frequencies(texts: Iterable[str], tokenizer, max_length: int | None = None,
                         batch_size: int = 1024) -> tuple[np.ndarray, int]:
    """Per-token document frequencies over ``texts`` (each distinct token counted once a document) and N."""
    df = np.zeros(len(tokenizer), dtype=np.int64)
    n_docs = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal n_docs
        kwargs = {"truncation": True, "max_length": max_length} if max_length else {}
        for ids in tokenizer(batch, add_special_tokens=False, **kwargs)["input_ids"]:
            df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
        n_docs += len(batch)
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return df, n_docs


def idf_from_frequencies(df: np.ndarray, n_docs: int) -> np.ndarray:
    """ln(1 + (N - df + 0.5) / (df + 0.5)); tokens never seen get the maximum (df = 0)."""
    if n_docs < 1:
        raise InvalidInput("cannot compute IDF over an empty corpus")
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)


def idf_table(texts: Iterable[str], tokenizer, max_length: int | None = None) -> dict[str, float]:
    """A ``{token: idf}`` table over the tokenizer's whole vocabulary (special tokens left out); tokens the corpus
    never contains get the largest weight, ln(1 + (N + 0.5) / 0.5)."""
    df, n_docs = document_frequencies(texts, tokenizer, max_length)
    idf = idf_from_frequencies(df, n_docs)
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(idf))))
    return {tok: round(float(idf[i]), 6) for i, tok in enumerate(tokens) if i not in special}
