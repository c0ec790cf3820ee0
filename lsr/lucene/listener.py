"""The ``lucene`` commit listener: builds an index's Lucene part (``lsr index --lucene``, ``Index.build(lucene=True)``)
when the build commits: Pyserini's ``JsonVectorCollection`` of the snapshot, then an impact index in ``lucene/``,
recorded in the manifest with the generation it describes. The part is rebuild-only: later commits leave it as it is,
and the ``lucene`` retriever refuses a newer generation."""

from __future__ import annotations

from pathlib import Path

from lsr.index.jsonl import write_json_vector_collection
from lsr.index.listeners import Published
from lsr.index.manifest import Manifest
from lsr.index.snapshot import open_snapshot
from lsr.lucene.java import build_impact_index, check_available

LUCENE_DIR = "lucene"


class LuceneListener:
    name = "lucene"
    options: dict = {}
    critical = True  # a build whose Lucene part fails is a failed build, not a committed one

    def __init__(self, directory: Path, threads: int | None) -> None:
        self.directory, self.threads = Path(directory), threads
        self.writer = None

    @classmethod
    def attach(cls, directory: Path, manifest, build: bool = False, threads: int | None = None) -> LuceneListener | None:
        if not build:
            return None
        check_available()  # fail before encoding anything
        return cls(directory, threads)

    def describe(self) -> str:
        return f"the Lucene part ({self.directory / LUCENE_DIR})"

    def opened(self, writer) -> None:
        self.writer = writer

    def check_document(self, doc_id: str, metadata) -> None:
        return None

    def published(self, event: Published) -> None:
        encoder, _ = self.writer._encoders(sparse=True)
        jsonl = self.directory / "export.jsonl.tmp"
        snapshot = open_snapshot(self.directory)
        try:
            write_json_vector_collection(snapshot, encoder.token_strings(), jsonl)
        finally:
            snapshot.release()
        built = build_impact_index(jsonl, self.directory / LUCENE_DIR, threads=self.threads)
        jsonl.unlink()
        manifest = Manifest.load(self.directory)
        manifest.lucene = {**built, "generation": event.generation.number}
        manifest.save(self.directory)
