"""Heterogeneous ensemble teachers: dense, sparse and lexical scores, normalized per query, then aggregated.

Each teacher scores every example's candidate list (positive + hard negatives). Per query, each teacher's scores
are min-max normalized over that query's candidates (so a dense cosine in [-1, 1], a SPLADE dot product in the
tens and a BM25 score share one scale), then averaged with weights (equal by default) and multiplied by ``scale``:

    t(q, d) = scale * sum_k a_k * (s_k(q, d) - min_c s_k(q, c)) / (max_c s_k(q, c) - min_c s_k(q, c)),  sum_k a_k = 1

The result feeds the KL loss (Geng et al., arXiv 2411.04403, Sec. 3.2; the public sample uses scale 30).
Raw teacher scores are cached on disk, keyed by the teacher's identity (weights hash) and by the exact
(query text, document text) pairs, so a second run with the same data does not recompute them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lsr.errors import InvalidInput
from lsr.index.bm25 import Bm25
from lsr.training.data import Example, TrainingTexts

TEACHER_KINDS = ("dense", "splade", "bm25")


def minmax_rows(scores: np.ndarray) -> np.ndarray:
    """Min-max normalize each row to [0, 1]; a row whose scores are all equal (or a single candidate) maps to 1.0,
    the same rule as :func:`lsr.fusion.min_max_normalize`."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise InvalidInput(f"expected (queries, candidates) scores, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise InvalidInput("teacher scores contain NaN or Inf; check the teacher model")
    low = scores.min(axis=1, keepdims=True)
    span = scores.max(axis=1, keepdims=True) - low
    out = np.ones_like(scores)
    np.divide(scores - low, span, out=out, where=span > 0)
    return out.astype(np.float32)


class _Pairs:
    """The distinct query and document texts of a set of examples, and each candidate's (query, doc) index."""

    def __init__(self, examples: Sequence[Example], documents: TrainingTexts) -> None:
        widths = {len(e.candidates()) for e in examples}
        if len(widths) != 1:
            raise InvalidInput(f"examples have different numbers of candidates {sorted(widths)}; mine the same number "
                             "of negatives for every example")
        self.query_texts: list[str] = []
        self.doc_ids: list[str] = []
        query_index: dict[str, int] = {}
        doc_index: dict[str, int] = {}
        rows_q, rows_d = [], []
        for example in examples:
            qi = query_index.setdefault(example.query, len(self.query_texts))
            if qi == len(self.query_texts):
                self.query_texts.append(example.query)
            cols = []
            for doc in example.candidates():
                di = doc_index.setdefault(doc, len(self.doc_ids))
                if di == len(self.doc_ids):
                    self.doc_ids.append(doc)
                cols.append(di)
            rows_q.append(qi)
            rows_d.append(cols)
        self.query_of_row = np.asarray(rows_q, dtype=np.int64)
        self.docs_of_row = np.asarray(rows_d, dtype=np.int64)
        self.doc_texts = [documents[d] for d in self.doc_ids]

    def digest(self) -> str:
        h = hashlib.sha256()
        for text in self.query_texts:
            h.update(text.encode() + b"\0")
        h.update(b"\1")
        for text in self.doc_texts:
            h.update(text.encode() + b"\0")
        h.update(self.query_of_row.tobytes())
        h.update(self.docs_of_row.tobytes())
        return h.hexdigest()[:20]


class Teacher:
    name: str

    def identity(self) -> str:
        raise NotImplementedError

    def score(self, pairs: _Pairs) -> np.ndarray:
        """(rows, candidates) raw scores."""
        raise NotImplementedError


class EncoderTeacher(Teacher):
    """A siamese dense (cosine of mean-pooled embeddings) or sparse (SPLADE dot product) encoder."""

    def __init__(self, path: str | Path, kind: str, device: str | None = None, dtype: str = "auto",
                 batch_size: int = 32) -> None:
        from lsr.encoders import load_encoder

        if kind not in ("dense", "splade"):
            raise InvalidInput(f"encoder teacher kind must be dense or splade, got {kind!r}")
        directory = Path(path)
        kind_arg = None if (directory / "lsr_encoder.json").exists() else kind
        self.encoder = load_encoder(path, kind=kind_arg, device=device, dtype=dtype)
        self.name = f"{kind}:{directory.name}"
        self.kind = kind
        self.batch_size = batch_size

    def identity(self) -> str:
        return self.encoder.identity()

    def score(self, pairs: _Pairs) -> np.ndarray:
        from tqdm import tqdm

        with tqdm(total=len(pairs.doc_texts), desc=f"teacher {self.name}", unit="doc") as bar:
            docs = self.encoder.encode_documents(pairs.doc_texts, batch_size=self.batch_size, progress=bar.update)
        queries = self.encoder.encode_queries(pairs.query_texts)
        if self.kind == "dense":
            q = queries[pairs.query_of_row]  # (rows, dim)
            d = docs[pairs.docs_of_row]  # (rows, candidates, dim)
            return np.einsum("rd,rcd->rc", q, d).astype(np.float32)
        vocab = self.encoder.vocab_size
        q_csr, d_csr = queries.to_scipy(vocab), docs.to_scipy(vocab)
        out = np.zeros(pairs.docs_of_row.shape, dtype=np.float32)
        for qi in np.unique(pairs.query_of_row):
            rows = np.flatnonzero(pairs.query_of_row == qi)
            cols = pairs.docs_of_row[rows]
            scores = np.asarray((d_csr[np.unique(cols)] @ q_csr[qi].T).todense()).ravel()
            lookup = dict(zip(np.unique(cols).tolist(), scores.tolist()))
            out[rows] = np.vectorize(lookup.__getitem__)(cols)
        return out


class Bm25Teacher(Teacher):
    """BM25 (bm25s, Lucene formula) over the distinct candidate texts."""

    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b

    def identity(self) -> str:
        return f"bm25s-k1={self.k1}-b={self.b}-en-stem"

    def score(self, pairs: _Pairs) -> np.ndarray:
        bm25 = Bm25(pairs.doc_ids, pairs.doc_texts, k1=self.k1, b=self.b)
        out = np.zeros(pairs.docs_of_row.shape, dtype=np.float32)
        for qi, text in enumerate(pairs.query_texts):
            rows = np.flatnonzero(pairs.query_of_row == qi)
            out[rows] = bm25.scores(text)[pairs.docs_of_row[rows]]
        return out


def build_teacher(spec: str, device: str | None = None) -> Teacher:
    """``bm25`` or ``dense:DIR`` or ``splade:DIR``."""
    kind, _, path = spec.partition(":")
    if kind == "bm25" and not path:
        return Bm25Teacher()
    if kind in ("dense", "splade") and path:
        return EncoderTeacher(path, kind, device=device)
    raise InvalidInput(f"teacher {spec!r}: expected bm25, dense:DIR or splade:DIR")


def teacher_scores(teacher: Teacher, examples: Sequence[Example], documents: TrainingTexts,
                   cache_dir: str | Path | None = None) -> np.ndarray:
    """Raw (examples, candidates) scores of one teacher, from the cache when the same teacher scored the same data."""
    pairs = _Pairs(examples, documents)
    path = None
    if cache_dir is not None:
        key = hashlib.sha256(f"{teacher.identity()}|{pairs.digest()}".encode()).hexdigest()[:24]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in teacher.name)
        path = Path(cache_dir) / f"{safe}-{key}.npy"
        if path.exists():
            cached = np.load(path, allow_pickle=False)
            if cached.shape == pairs.docs_of_row.shape:
                return cached
    scores = teacher.score(pairs)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, scores)
        tmp.replace(path)
        path.with_suffix(".json").write_text(json.dumps({"teacher": teacher.name, "identity": teacher.identity(),
                                                         "examples": len(examples), "shape": list(scores.shape)}))
    return scores


def aggregate(raw: Sequence[np.ndarray], weights: Sequence[float] | None = None, scale: float = 30.0) -> np.ndarray:
    """scale * weighted mean of per-query min-max normalized teacher scores (weights normalized to sum 1)."""
    if not raw:
        raise InvalidInput("no teacher scores to aggregate")
    weights = [1.0] * len(raw) if weights is None else list(weights)
    if len(weights) != len(raw):
        raise InvalidInput(f"{len(weights)} teacher weights for {len(raw)} teachers")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise InvalidInput(f"teacher weights must be >= 0 with a positive sum, got {weights}")
    total = sum(weights)
    return (scale * sum((w / total) * minmax_rows(r) for w, r in zip(weights, raw))).astype(np.float32)
