"""Corpus, query and qrels readers: BEIR folders, JSONL files, and ir_datasets ids.

Every malformed line is reported with its file and line number; with ``skip_malformed`` it is skipped and counted.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from lsr.errors import CorpusError, MissingDependency

__all__ = ["CorpusError", "Document", "ReadStats", "count_documents", "documents_from", "read_corpus", "read_qrels",
           "read_queries"]


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    metadata: Mapping | None = None  # a flat JSON object (lsr.index.metadata): checked against the index's schema

    @property
    def contents(self) -> str:
        """What is encoded: title + " " + text (BEIR's convention)."""
        return f"{self.title} {self.text}".strip() if self.title else self.text.strip()


@dataclass
class ReadStats:
    read: int = 0
    skipped: int = 0
    examples: list[str] = field(default_factory=list)  # the first few skip reasons

    def skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.examples) < 5:
            self.examples.append(reason)


def _open_bytes(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def corpus_file(path: str | Path) -> Path:
    """The JSONL file behind a corpus argument: a BEIR folder (its corpus.jsonl) or a JSONL file."""
    path = Path(path)
    if path.is_dir():
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (path / name).exists():
                return path / name
        raise CorpusError(f"{path} is a folder without corpus.jsonl; pass a BEIR folder or a JSONL file")
    if path.exists():
        return path
    raise CorpusError(f"corpus {path} does not exist (expected a BEIR folder, a JSONL file or an ir_datasets id)")


def _parse_document(raw: bytes, where: str) -> Document:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{where}: not UTF-8 (byte {exc.start}); re-encode the file as UTF-8 or pass "
                          "--skip-malformed") from None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{where}: not valid JSON ({exc.msg}); fix the line or pass --skip-malformed") from None
    return document_from_record(record, where)


def document_from_record(record: Mapping, where: str, allow_empty: bool = False) -> Document:
    """A :class:`Document` from a ``{"_id"|"id"|"docid", "title", "text"|"contents", "metadata"}`` mapping, or a
    :class:`CorpusError` naming ``where`` and what is missing."""
    if not isinstance(record, Mapping):
        raise CorpusError(f"{where}: expected a JSON object, got {type(record).__name__}; pass --skip-malformed to skip")
    doc_id = record.get("_id", record.get("id", record.get("docid")))
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or str(doc_id).strip() == "":
        raise CorpusError(f"{where}: missing or empty document id (`_id` or `id`); pass --skip-malformed to skip")
    title = record.get("title") or ""
    text = record.get("text", record.get("contents")) or ""
    if not isinstance(title, str) or not isinstance(text, str):
        raise CorpusError(f"{where}: `title` and `text` must be strings; pass --skip-malformed to skip")
    metadata = record.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise CorpusError(f"{where}: `metadata` must be a JSON object of fields, got {type(metadata).__name__}; pass "
                          "--skip-malformed to skip")
    document = Document(str(doc_id), title, text, dict(metadata) if metadata else None)
    if not document.contents and not allow_empty:
        raise CorpusError(f"{where}: document {doc_id!r} has no text (empty title and text); "
                          "remove it or pass --skip-malformed")
    return document


def _checked(parsed: Iterator[tuple[str, Callable[[], Document]]], skip_malformed: bool,
             stats: ReadStats) -> Iterator[Document]:
    """Documents from (where, parse) pairs, ids unique; a bad one fails naming ``where``, or with
    ``skip_malformed`` is skipped and counted."""
    seen: set[str] = set()
    for where, parse in parsed:
        try:
            document = parse()
            if document.id in seen:
                raise CorpusError(f"{where}: duplicate document id {document.id!r}; ids must be unique "
                                  "(pass --skip-malformed to keep the first)")
        except CorpusError as exc:
            if not skip_malformed:
                raise
            stats.skip(str(exc))
            continue
        seen.add(document.id)
        stats.read += 1
        yield document


def read_jsonl_corpus(path: Path, skip_malformed: bool = False, stats: ReadStats | None = None) -> Iterator[Document]:
    def parsed():
        with _open_bytes(path) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield f"{path}:{number}", lambda line=line, number=number: _parse_document(line, f"{path}:{number}")

    return _checked(parsed(), skip_malformed, stats if stats is not None else ReadStats())


def read_ir_datasets_corpus(dataset_id: str, skip_malformed: bool = False,
                            stats: ReadStats | None = None) -> Iterator[Document]:
    """Documents of an ``ir_datasets`` id (``beir/nfcorpus``), checked as corpus lines are (an id, some text, ids
    unique); the package downloads a dataset on first use."""
    try:
        import ir_datasets
    except ImportError:
        raise MissingDependency(f"{dataset_id!r} is neither a file nor a folder, and the `ir_datasets` package is not "
                                "installed to read it as a dataset id: pip install 'lsr[datasets]'") from None
    try:
        dataset = ir_datasets.load(dataset_id)
    except KeyError:
        raise CorpusError(f"{dataset_id!r} is neither a file nor a folder, nor a dataset ir_datasets knows (e.g. "
                          "beir/nfcorpus); check the path") from None

    def parsed():
        for number, doc in enumerate(dataset.docs_iter(), start=1):
            record = {"id": str(doc.doc_id), "title": getattr(doc, "title", "") or "",
                      "text": getattr(doc, "text", None) or getattr(doc, "body", "") or ""}
            where = f"{dataset_id} document {number}"
            yield where, lambda record=record, where=where: document_from_record(record, where)

    return _checked(parsed(), skip_malformed, stats if stats is not None else ReadStats())


def is_dataset_id(path: str | Path) -> bool:
    """Whether a corpus argument names an ir_datasets id (``beir/nfcorpus``: not a path that exists, nor under a
    folder that exists) rather than a file or a folder."""
    text = str(path)
    return "/" in text and not text.startswith((".", "/", "~")) and not Path(path).parent.exists() and \
        not Path(path).exists()


def check_corpus(path: str | Path) -> None:
    """Fail now, before any model loads, on a corpus path that cannot be read (an ir_datasets id is checked when
    read)."""
    if not is_dataset_id(path):
        corpus_file(path)


def read_corpus(path: str | Path, skip_malformed: bool = False, stats: ReadStats | None = None) -> Iterator[Document]:
    """Documents of a BEIR folder, a JSONL file (``_id``/``id``, ``title``, ``text``) or an ir_datasets id (a name
    such as ``beir/nfcorpus``: not a path that exists, nor under a folder that exists)."""
    if is_dataset_id(path):
        return read_ir_datasets_corpus(str(path), skip_malformed, stats)
    return read_jsonl_corpus(corpus_file(path), skip_malformed, stats)


def documents_from(documents: Iterable[Document | Mapping] | None = None, ids: Iterable | None = None,
                   texts: Iterable[str] | None = None, titles: Iterable[str] | None = None,
                   metadata: Iterable[Mapping | None] | None = None, allow_empty: bool = False) -> Iterator[Document]:
    """Documents for the Python API: ``documents`` (:class:`Document` objects or ``{"id", "title", "text",
    "metadata"}`` mappings), or parallel ``ids`` / ``texts`` (/ ``titles``, ``metadata``) lists; ids default to "0",
    "1", ... Every record is checked as a corpus line is (an id, some text unless ``allow_empty``: vectors given
    with their ids), and ids must be unique."""
    if (documents is None) == (texts is None):
        raise CorpusError("pass either documents (an iterable of {'id', 'title', 'text'} mappings) or texts "
                          "(with optional ids and titles)")
    if documents is None:
        texts = list(texts)
        ids = [str(i) for i in range(len(texts))] if ids is None else list(ids)
        titles = [""] * len(texts) if titles is None else list(titles)
        metadata = [None] * len(texts) if metadata is None else list(metadata)
        if not len(ids) == len(texts) == len(titles) == len(metadata):
            raise CorpusError(f"{len(ids)} ids, {len(texts)} texts, {len(titles)} titles and {len(metadata)} metadata "
                              "objects: give one of each per document")
        documents = ({"id": i, "title": t, "text": x, "metadata": m} for i, t, x, m in zip(ids, titles, texts, metadata))
    elif metadata is not None:
        raise CorpusError("documents carry their own metadata ({'id', 'text', 'metadata'}); pass metadata=... with "
                          "texts only")
    seen: set[str] = set()
    for number, record in enumerate(documents):
        where = f"document {number}"
        document = record if isinstance(record, Document) else document_from_record(record, where, allow_empty)
        if not document.contents and not allow_empty:
            raise CorpusError(f"{where}: document {document.id!r} has no text; remove it")
        if document.id in seen:
            raise CorpusError(f"{where}: duplicate document id {document.id!r}; ids must be unique")
        seen.add(document.id)
        yield document


def count_documents(path: str | Path) -> int | None:
    """Non-empty lines of a JSONL corpus (for a progress bar's total); None for ir_datasets ids."""
    try:
        file = corpus_file(path)
    except CorpusError:
        return None
    with _open_bytes(file) as handle:
        return sum(1 for line in handle if line.strip())


def read_queries(beir_dir: str | Path) -> dict[str, str]:
    """{query id: text} of a BEIR folder's queries.jsonl, or of such a JSONL file given itself."""
    path = Path(beir_dir) if Path(beir_dir).is_file() else Path(beir_dir) / "queries.jsonl"
    if not path.exists():
        raise CorpusError(f"{path} does not exist; --beir must be a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    queries: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                queries[str(record["_id"])] = str(record["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CorpusError(f"{path}:{number}: expected {{\"_id\": ..., \"text\": ...}} ({exc})") from None
    return queries


def read_qrels(beir_dir: str | Path, split: str) -> dict[str, dict[str, int]]:
    """{query id: {document id: grade}} of a BEIR folder's qrels/SPLIT.tsv, or of such a TSV file given itself."""
    path = Path(beir_dir) if Path(beir_dir).is_file() else Path(beir_dir) / "qrels" / f"{split}.tsv"
    if not path.exists():
        available = sorted(p.stem for p in (Path(beir_dir) / "qrels").glob("*.tsv"))
        raise CorpusError(f"{path} does not exist; available splits: {', '.join(available) or 'none'}")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").split("\t")
            if number == 1 and parts[0] == "query-id":
                continue
            if not line.strip():
                continue
            if len(parts) != 3:
                raise CorpusError(f"{path}:{number}: expected query-id<TAB>corpus-id<TAB>score")
            try:
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
            except ValueError:
                raise CorpusError(f"{path}:{number}: relevance {parts[2]!r} is not an integer") from None
    return qrels
