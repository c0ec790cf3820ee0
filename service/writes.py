"""The write routes: ``POST /documents`` (a batch, added or replaced by id), ``PUT /documents/{id}``,
``DELETE /documents/{id}``; and the refresh that lets every worker serve what any of them wrote.

- **Durability**: a 2xx means the write is committed: a new generation, every file fsynced before ``CURRENT`` moved.
  It survives ``kill -9``; a write that fails or is interrupted leaves nothing. With a Milvus mirror, a write the
  index committed but Milvus did not take answers 503 naming the committed generation; the next write (or
  ``lsr index milvus``) brings the collection up to date.
- **Visibility**: the worker that answered serves it from its next request on; every other worker within
  ``refresh_interval`` seconds (each polls ``CURRENT``). A search is answered from one generation, start to end.
- **One writer at a time**: each write takes the index's ``write.lock`` (waiting up to ``write_timeout`` seconds; a
  write that cannot get it answers 503 with ``Retry-After``). Encoding happens under the lock, so writes are
  serialized; searches never wait for them.
- Merges run in a background thread after a write when the tiered policy asks for one (``merge: true``); searches
  keep their generation meanwhile, and writes wait for the merge's commit.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Request

from lsr.corpus import Document
from lsr.engine import Engine
from lsr.errors import LsrError
from lsr.index.storage import IndexLocked, IndexReadOnly
from lsr.service.schemas import DocumentBody, DocumentsIn, WriteOut
from lsr.service.settings import Settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


class Writes:
    """What the write routes share: the settings, and this process's background merge."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._merging = threading.Lock()

    def writable(self, engine: Engine) -> None:
        if self.settings.read_only:
            raise HTTPException(403, detail="this server is read-only (LSR_READ_ONLY); write to another one, or "
                                            "change the index with `lsr index add|delete`")
        if engine.backend == "lucene":
            raise HTTPException(409, detail="the Lucene part is rebuild-only: a write would leave it stale. Serve "
                                            "the native backend to take writes, then rebuild with `lsr index --lucene`")
        if engine.backend == "milvus" and not (engine.index.directory / "milvus.json").exists():
            raise HTTPException(409, detail="this server searches a Milvus collection the index does not record "
                                            "(no milvus.json): a write would not reach it. Attach the index first: "
                                            f"lsr index milvus --index {engine.index.directory} --milvus-uri URI")

    def write(self, engine: Engine, operation) -> WriteOut:
        """Run ``operation(writer)`` under the write lock, commit, serve the new generation."""
        from lsr.index.writer import IndexWriter

        self.writable(engine)
        started = time.perf_counter()
        index = engine.index
        try:
            writer = IndexWriter(index.directory, encoder=index.encoder, dense_encoder=index.dense_encoder,
                                 wait=self.settings.write_timeout,
                                 milvus_uri=self.settings.milvus_uri if engine.backend == "milvus" else None)
        except IndexLocked as exc:
            raise HTTPException(503, detail=f"{exc} (waited {self.settings.write_timeout:g} s: LSR_WRITE_TIMEOUT)",
                                headers={"Retry-After": "1"}) from None
        except IndexReadOnly as exc:
            raise HTTPException(403, detail=str(exc)) from None
        try:
            with writer:
                operation(writer)
                summary = writer.commit()
        finally:  # a commit that reached the index but not a Milvus mirror is still served (and says so: 503)
            try:
                engine.refresh()
            except LsrError:  # (the backend that failed the write may fail this too: the first error is the answer)
                pass
        if self.settings.merge:
            threading.Thread(target=self.merge, args=(engine,), daemon=True).start()
        return WriteOut(generation=summary.generation, added=summary.added, replaced=summary.replaced,
                        unchanged=summary.unchanged, deleted=summary.deleted, truncated=summary.truncated,
                        took_ms=(time.perf_counter() - started) * 1000)

    def merge(self, engine: Engine) -> None:
        """One background merge at a time in this process, when the tiered policy has runs to merge."""
        from lsr.index.merge import merge
        from lsr.index.writer import IndexWriter

        if not self._merging.acquire(blocking=False):
            return
        try:
            with IndexWriter(engine.index.directory, wait=self.settings.write_timeout) as writer:
                if merge(writer).merged:
                    engine.refresh()
        except (IndexLocked, IndexReadOnly):
            pass  # another process writes or merges: the next write tries again
        finally:
            self._merging.release()


def add_write_routes(app: FastAPI, settings: Settings) -> Writes:
    writes = Writes(settings)

    def check_batch(count: int) -> None:
        if count > settings.max_batch:
            raise HTTPException(413, detail=f"{count} documents in one write, over the server's limit of "
                                            f"{settings.max_batch} (LSR_MAX_BATCH); split the batch")

    def checked(doc_id: str, title: str, text: str, loc: list) -> Document:
        document = Document(doc_id, title, text)
        if not document.contents:
            raise HTTPException(422, detail=[{"loc": loc, "type": "value_error",
                                              "msg": f"document {doc_id!r} has no text (empty or blank title and text)"}])
        return document

    @app.post("/documents", response_model=WriteOut)
    def add_documents(body: DocumentsIn, engine: Annotated[Engine, Depends(get_engine)]):
        """Add documents, replacing those whose id is in the index (an unchanged title and text is not re-encoded).
        A 200 means committed (durable); visible on this worker at once, on every worker within the refresh
        interval."""
        check_batch(len(body.documents))
        batch = [checked(d.id, d.title, d.text, ["body", "documents", n, "text"]) for n, d in enumerate(body.documents)]
        seen: set[str] = set()
        for number, document in enumerate(batch):
            if document.id in seen:
                raise HTTPException(422, detail=[{"loc": ["body", "documents", number, "id"], "type": "value_error",
                                                  "msg": f"document id {document.id!r} appears twice in one write"}])
            seen.add(document.id)
        return writes.write(engine, lambda writer: writer.add(batch, upsert=True))

    @app.put("/documents/{doc_id}", response_model=WriteOut)
    def put_document(doc_id: Annotated[str, Path(min_length=1, max_length=512)], body: DocumentBody,
                     engine: Annotated[Engine, Depends(get_engine)]):
        """Add or replace one document."""
        document = checked(doc_id, body.title, body.text, ["body", "text"])
        return writes.write(engine, lambda writer: writer.add([document], upsert=True))

    @app.delete("/documents/{doc_id}", response_model=WriteOut, responses={404: {"description": "unknown id"}})
    def delete_document(doc_id: str, engine: Annotated[Engine, Depends(get_engine)]):
        """Delete one document (404 when the index does not hold it)."""
        def delete(writer) -> None:
            if writer.delete([doc_id]).unknown:  # deleted meanwhile by another writer
                raise HTTPException(404, detail=f"no document with id {doc_id!r} in this index")

        return writes.write(engine, delete)

    return writes


def refresh_loop_target(engine: Engine, interval: float, stop: threading.Event) -> None:
    """Every ``interval`` seconds: serve the published generation if another process committed one."""
    while not stop.wait(interval):
        try:
            engine.refresh()
        except Exception:  # noqa: BLE001 pragma: no cover - a damaged index, a backend down: keep serving, keep polling
            continue
