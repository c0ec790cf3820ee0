"""The index: immutable segments of quantized postings with block-max structures, plus optional parts in the same
directory (a FAISS dense index, a BM25 index, the stored texts, a Lucene impact index) and the encoder the
documents were encoded with. This package imports without torch: encoders are loaded only when asked for.

Layout of an index directory::

    manifest.json        format version, encoder identity, quantization, build parameters, segments, parts
    encoder/             the encoder the documents were encoded with (queries use it too)
    segments/seg-*/      postings and block-max structures (:mod:`lsr.index.segment`)
    dense/               faiss.index and dense/encoder/ (``dense_encoder=``, ``--dense-encoder``)
    bm25/                bm25s index and ids.json (``bm25=True``, ``--bm25``)
    documents/           texts.jsonl + offsets.npy (``store_documents=True``, ``--store-documents``)
    lucene/              Lucene impact index (``lucene=True``, ``--lucene``)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from lsr.corpus import Document, ReadStats, documents_from, read_corpus
from lsr.errors import EncoderMismatch, InvalidIndex, InvalidInput, NotFound, Unavailable
from lsr.index.builder import BuildOptions, Staging, build_directory
from lsr.index.manifest import IMPACT_DTYPES, INDEX_FORMAT_VERSION, MANIFEST_FILE, Manifest, SegmentInfo
from lsr.index.segment import DEFAULT_BLOCK_SIZE, DEFAULT_DENSE_RATIO, Segment
from lsr.sparse import SparseBatch

__all__ = ["DEFAULT_BLOCK_SIZE", "DEFAULT_DENSE_RATIO", "IMPACT_DTYPES", "INDEX_FORMAT_VERSION", "MANIFEST_FILE",
           "PARTS", "BuildOptions", "Index", "Manifest", "Segment", "SegmentInfo"]

PARTS = ("dense", "bm25", "documents")  # optional parts an Index loads (the Lucene part is read by its retriever)


class Index:
    """An opened (memory-mapped) or in-memory index. Thread-safe for concurrent reads."""

    def __init__(self, manifest: Manifest, segments: list[Segment], directory: Path | None = None, encoder=None,
                 dense=None, dense_encoder=None, bm25=None, documents=None) -> None:
        self.manifest = manifest
        self.segments = segments
        self.directory = directory
        self.encoder = encoder
        self.dense = dense
        self.dense_encoder = dense_encoder
        self.bm25 = bm25
        self.documents = documents
        self._rows: dict[str, int] | None = None
        self._tokens: list[str] | None = None
        for segment in segments:
            if len(segment.offsets) != manifest.vocab_size + 1:
                raise InvalidIndex(f"{directory or 'index'}: segment {segment.info.name} has "
                                   f"{len(segment.offsets) - 1} terms, the manifest says {manifest.vocab_size}; "
                                   "the index is damaged, rebuild it")
        if encoder is not None:
            self.check_encoder(encoder)

    def __repr__(self) -> str:
        where = str(self.directory) if self.directory else "in memory"
        return (f"Index({where}: {self.doc_count} documents, {self.manifest.postings} postings, "
                f"parts={[p for p in (*PARTS, 'lucene') if self.has(p)]})")

    # -- opening and building -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, encoder=None, device: str | None = None, mmap: bool = True,
             parts: Sequence[str] = PARTS, load_encoder: bool = True) -> Index:
        """Open an index directory and the parts in ``parts`` it holds. ``encoder`` (an encoder or a directory)
        overrides the stored one and must be the one the index was built with; ``load_encoder=False`` opens the
        postings only (benchmarks, exports)."""
        directory = Path(path)
        manifest = Manifest.load(directory)
        segments = [Segment.load(directory / "segments" / info.name, info, mmap) for info in manifest.segments]
        if load_encoder:
            encoder = _resolve_encoder(encoder, directory, manifest, device)
        dense = dense_encoder = bm25 = documents = None
        if manifest.dense and "dense" in parts:
            from lsr.encoders import load_encoder as load
            from lsr.index.dense import DenseIndex

            dense_encoder = load(directory / manifest.dense["directory"], device=device)
            if dense_encoder.identity() != manifest.dense["encoder_identity"]:
                raise InvalidIndex(f"{directory}/{manifest.dense['directory']} is not the dense encoder the index was "
                                   "built with (identity differs); rebuild the index")
            dense = DenseIndex(directory / "dense", manifest.dense["index"], mmap=mmap)
            if dense.index.ntotal != manifest.doc_count:
                raise InvalidIndex(f"{directory}: the dense index holds {dense.index.ntotal} documents, the inverted "
                                   f"index {manifest.doc_count}; the index is damaged, rebuild it")
        if manifest.bm25 and "bm25" in parts:
            from lsr.index.bm25 import Bm25

            bm25 = Bm25.load(directory / "bm25", mmap=mmap)
        if manifest.documents and "documents" in parts:
            from lsr.index.documents import DocumentStore

            documents = DocumentStore(directory / "documents", in_memory=not mmap)
        return cls(manifest, segments, directory, encoder if load_encoder else None, dense, dense_encoder, bm25,
                   documents)

    @classmethod
    def build(cls, encoder=None, *, ids: Iterable | None = None, texts: Iterable[str] | None = None,
              titles: Iterable[str] | None = None, documents: Iterable[Document | Mapping] | None = None,
              corpus: str | Path | None = None, vectors=None, vocab_size: int | None = None,
              path: str | Path | None = None, dense_encoder=None, progress: bool = False, skip_malformed: bool = False,
              limit: int | None = None, export_jsonl: str | Path | None = None,
              progress_callback=None, **options) -> Index:
        """Encode documents and build an index: in memory, or at ``path`` (written atomically, then opened).

        Documents come as parallel ``ids``/``texts`` (/``titles``) lists, as ``documents`` (an iterable of
        ``{"id", "title", "text"}`` mappings), or from ``corpus`` (a BEIR folder, a JSONL file or an ir_datasets id);
        or give precomputed ``vectors`` (:class:`~lsr.sparse.SparseBatch`, a SciPy sparse matrix, or a list of
        ``{token id: weight}``) with ``ids`` (and the texts too, for the dense, BM25 and stored-text parts).
        ``encoder`` defaults to the shipped one when documents are to be encoded. ``options`` are
        :class:`BuildOptions` fields (``bm25``, ``store_documents``, ``impact_dtype``, ``document_top_k``, ...).
        """
        try:
            build_options = BuildOptions(**options)
        except TypeError:
            import dataclasses

            known = sorted(f.name for f in dataclasses.fields(BuildOptions))
            raise InvalidInput(f"unknown build options {sorted(set(options) - set(known))}; known: {known}") from None
        if build_options.lucene and path is None:
            raise InvalidInput("a Lucene part lives on disk: build with path=... to add one")
        stats = ReadStats()
        sources = sum(x is not None for x in (texts, documents, corpus))
        if sources > 1:
            raise InvalidInput("give documents one way: texts (with ids), documents, or corpus")
        if vectors is None and sources == 0:
            raise InvalidInput("nothing to index: pass texts (with ids), documents, corpus, or vectors (with ids)")
        if corpus is not None:
            docs = read_corpus(corpus, skip_malformed=skip_malformed, stats=stats)
        elif texts is not None or documents is not None:
            docs = documents_from(documents=documents, ids=ids, texts=texts, titles=titles)
        else:
            docs = None
        if docs is not None and limit is not None:
            import itertools

            docs = itertools.islice(docs, limit)
        batch = None
        if vectors is not None:
            batch = _as_sparse_batch(vectors, encoder)
            if ids is None:
                raise InvalidInput("vectors need their document ids: pass ids=[...]")
            ids = [str(i) for i in ids]
            if len(ids) != len(batch):
                raise InvalidInput(f"{len(batch)} vectors for {len(ids)} ids")
            if len(set(ids)) != len(ids):
                raise InvalidInput("document ids must be unique")
        elif encoder is None:
            from lsr.encoders import load_encoder

            encoder = load_encoder()
        bar = None
        if progress and progress_callback is None:
            from tqdm.auto import tqdm

            bar = tqdm(desc="encoding documents", unit="doc", total=limit)
            progress_callback = bar.update
        target = Path(path) if path is not None else None
        staging = Staging(target) if target is not None else None
        scratch = Path(tempfile.mkdtemp(prefix="lsr-index-")) if staging is None else None
        directory = staging.path if staging is not None else scratch
        try:
            build_directory(directory, docs, encoder, build_options, vectors=batch, ids=ids,
                            dense_encoder=dense_encoder, export_jsonl=Path(export_jsonl) if export_jsonl else None,
                            source=str(corpus) if corpus is not None else "python", vocab_size=vocab_size,
                            progress=progress_callback, read_stats=stats)
            if bar is not None:
                bar.close()
            if staging is not None:
                staging.publish()
                index = cls.open(target, encoder=encoder if encoder is not None else None,
                                 load_encoder=encoder is not None)
                index.read_stats = stats
                return index
            index = cls.open(directory, encoder=encoder, mmap=False, load_encoder=encoder is not None)
            if dense_encoder is not None and index.dense_encoder is not None:
                index.dense_encoder = dense_encoder
            index.directory = None
            index.read_stats = stats
            return index
        except BaseException:
            if staging is not None:
                staging.discard()
            raise
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def save(self, path: str | Path) -> Path:
        """Write this index (in memory or opened) to ``path`` atomically; returns the path."""
        target = Path(path)
        if self.directory is not None and target.resolve() == self.directory.resolve():
            return target
        staging = Staging(target)
        try:
            for segment in self.segments:
                segment.save(staging.path / "segments" / segment.info.name)
            stored = self.manifest.encoder.get("directory")
            if stored and self.encoder is not None:
                self.encoder.save(staging.path / stored)
            elif stored and self.directory is not None and (self.directory / stored).is_dir():
                shutil.copytree(self.directory / stored, staging.path / stored)
            elif stored:
                raise Unavailable("this index's encoder is not loaded; open it with its encoder to save it")
            if self.manifest.dense:
                if self.dense is None:
                    raise Unavailable("this index was opened without its dense part; open it with the dense part to "
                                      "save it")
                self.dense.save(staging.path / "dense")
                self.dense_encoder.save(staging.path / self.manifest.dense["directory"])
            if self.manifest.bm25:
                if self.bm25 is None:
                    raise Unavailable("this index was opened without its BM25 part; open it with it to save it")
                (staging.path / "bm25").mkdir()
                self.bm25.save(staging.path / "bm25")
            if self.manifest.documents:
                if self.documents is None:
                    raise Unavailable("this index was opened without its texts; open it with them to save it")
                self.documents.save(staging.path / "documents")
            if self.manifest.lucene and self.directory is not None:
                shutil.copytree(self.directory / self.manifest.lucene["directory"],
                                staging.path / self.manifest.lucene["directory"])
            self.manifest.save(staging.path)
            staging.publish()
        except BaseException:
            staging.discard()
            raise
        return target

    # -- what it holds ----------------------------------------------------------------------------------------------
    @property
    def doc_count(self) -> int:
        return self.manifest.doc_count

    @property
    def vocab_size(self) -> int:
        return self.manifest.vocab_size

    def __len__(self) -> int:
        return self.doc_count

    def has(self, part: str) -> bool:
        """Whether the index was built with ``part`` (dense, bm25, documents, lucene) and has it loaded."""
        loaded = {"dense": self.dense, "bm25": self.bm25, "documents": self.documents}
        if part == "lucene":
            return bool(self.manifest.lucene) and self.directory is not None
        return loaded.get(part) is not None

    def check_encoder(self, encoder) -> None:
        """Refuse an encoder other than the one the index was built with."""
        if not hasattr(encoder, "vocab_size"):
            raise InvalidIndex("the native index is searched with a sparse encoder (splade or inference-free), not a "
                               f"{encoder.config.kind!r} one")
        expected = self.manifest.encoder.get("identity")
        if expected is not None and expected != encoder.identity():
            raise EncoderMismatch(
                f"{self.directory or 'this index'} was built with encoder {expected} ({self.manifest.encoder.get('kind')}"
                f", from {self.manifest.encoder.get('source') or '?'}), but the given encoder is {encoder.identity()} "
                f"({encoder.config.kind}); search it with its own encoder (drop --encoder to use the stored one) or "
                "rebuild the index with this encoder")
        if encoder.vocab_size != self.vocab_size:
            raise EncoderMismatch(f"encoder vocabulary {encoder.vocab_size} != index vocabulary {self.vocab_size}")

    def token_strings(self) -> list[str]:
        """The token of every vocabulary id (explanations and JSON views use them)."""
        if self._tokens is None:
            if self.encoder is None:
                return [str(i) for i in range(self.vocab_size)]
            self._tokens = self.encoder.token_strings()
        return self._tokens

    # -- documents by id --------------------------------------------------------------------------------------------
    def ids(self) -> Iterator[str]:
        for segment in self.segments:
            yield from (str(d) for d in segment.ids.tolist())

    def row_of(self, doc_id: str) -> int | None:
        """The index position (0 .. doc_count - 1) of an external id, or None."""
        if self._rows is None:
            rows: dict[str, int] = {}
            for segment in self.segments:
                base = segment.info.doc_base
                rows.update((str(d), base + i) for i, d in enumerate(segment.ids.tolist()))
            self._rows = rows
        return self._rows.get(doc_id)

    def locate(self, row: int) -> tuple[Segment, int]:
        for segment in self.segments:
            if segment.info.doc_base <= row < segment.info.doc_base + segment.info.doc_count:
                return segment, row - segment.info.doc_base
        raise NotFound(f"no document at position {row}")

    def external_id(self, row: int) -> str:
        segment, local = self.locate(row)
        return str(segment.ids[local])

    def document(self, doc_id: str) -> dict | None:
        """The stored ``{"id", "title", "text"}`` of a document, or None for an unknown id."""
        if self.documents is None:
            raise Unavailable("this index stores no texts; rebuild it with `lsr index ... --store-documents` "
                              "(store_documents=True)")
        row = self.row_of(doc_id)
        return None if row is None else self.documents.get(row)

    def vector(self, doc_id: str) -> SparseBatch:
        """The stored (dequantized) sparse vector of one document."""
        row = self.row_of(doc_id)
        if row is None:
            raise NotFound(f"no document with id {doc_id!r} in this index")
        segment, local = self.locate(row)
        import numpy as np

        tokens = np.arange(self.vocab_size, dtype=np.int32)
        stored = segment.postings_of(local, tokens)
        keep = np.flatnonzero(stored > 0)
        return SparseBatch.from_rows([(keep.astype(np.int32), (stored[keep] / segment.info.scale).astype(np.float32))])


def _resolve_encoder(encoder, directory: Path, manifest: Manifest, device: str | None):
    from lsr.encoders import ENCODER_CONFIG_FILE, load_encoder

    if encoder is None:
        stored = manifest.encoder.get("directory")
        if stored is None:
            return None  # an index of bare vectors: searched with vectors
        return load_encoder(directory / stored, device=device)
    if isinstance(encoder, (str, Path)):
        if not (Path(encoder) / ENCODER_CONFIG_FILE).exists():
            raise InvalidIndex(f"--encoder {encoder} is not an lsr encoder directory (no {ENCODER_CONFIG_FILE}); "
                               f"queries must use the encoder the index was built with, stored in {directory}/encoder")
        return load_encoder(encoder, device=device)
    return encoder


def _as_sparse_batch(vectors, encoder) -> SparseBatch:
    if isinstance(vectors, SparseBatch):
        return vectors
    if hasattr(vectors, "tocsr"):
        return SparseBatch.from_scipy(vectors)
    if hasattr(vectors, "ndim") and vectors.ndim == 2:  # a dense (documents x vocabulary) array
        return SparseBatch.from_dense(vectors)
    if isinstance(vectors, (list, tuple)) and all(isinstance(v, Mapping) for v in vectors):
        vocabulary = encoder.tokenizer.get_vocab() if encoder is not None else None
        return SparseBatch.from_dicts(vectors, vocabulary)
    raise InvalidInput("vectors must be a SparseBatch, a SciPy sparse matrix, a (documents x vocabulary) NumPy array, "
                       "or a list of {token id: weight} dicts")
