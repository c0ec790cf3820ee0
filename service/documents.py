"""The document routes: ``GET /documents/{id}`` (stored text and metadata), ``POST /documents`` (a batch, added or
replaced by id), ``PUT /documents/{id}``, ``DELETE /documents/{id}``; and the refresh that lets every worker serve what
any of them wrote.

- **One way to write**: every write goes through the index's writer (:meth:`lsr.index.Index.writer`), as the CLI's
  and the Python API's do; what else follows the index (a Milvus mirror) is the writer's commit listener.
- **Durability**: a 2xx means the write is committed: a new generation, every file fsynced before ``CURRENT`` moved.
  It survives ``kill -9``; a write that fails or is interrupted leaves nothing. A write the index committed but a
  mirror did not take answers 503 naming the committed generation; the next write brings the mirror up to date.
- **Visibility**: the worker that answered serves it from its next request on; every other worker within
  ``refresh_interval`` seconds (each polls ``CURRENT``). A search is answered from one generation, start to end.
- **One writer at a time**: the writes of one worker take turns; across workers and processes, ``write.lock``
  (waiting up to ``write_timeout`` seconds; a write that cannot get it answers 503 with ``Retry-After``). Encoding
  happens under the lock, so writes are serialized; searches never wait for them.
- Merges run in a background thread after a write when the tiered policy asks for one (``merge: true``); searches
  keep their generation meanwhile, and writes wait for the merge's commit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from lsr.corpus import Document
from lsr.service.deps import ReadDep, WriteDep, unprocessable
from lsr.service.schemas import DocumentBody, DocumentOut, DocumentsIn, WriteOut

router = APIRouter(tags=["documents"])


def checked(doc_id: str, title: str, text: str, metadata, loc: list) -> Document:
    document = Document(doc_id, title, text, metadata or None)
    if not document.contents:
        raise unprocessable(loc, f"document {doc_id!r} has no text (empty or blank title and text)")
    return document


@router.get("/documents/{doc_id}", response_model=DocumentOut, response_model_exclude_none=True,
            responses={404: {"description": "unknown id"}})
def get_document(doc_id: str, collection: ReadDep):
    """A stored document: its title and text (an index built with --store-documents) and its metadata."""
    engine = collection.engine
    snapshot = engine.state().snapshot
    if not engine.stores_documents() and not engine.schema().fields:
        raise HTTPException(404, detail="this index stores no texts and no metadata; rebuild it with `lsr index ... "
                                        "--store-documents`")
    metadata = snapshot.metadata(doc_id)
    if metadata is None:
        raise HTTPException(404, detail=f"no document with id {doc_id!r} in this index")
    record = snapshot.document(doc_id) if engine.stores_documents() else {}
    return DocumentOut(id=doc_id, title=record.get("title"), text=record.get("text"), metadata=metadata)


@router.post("/documents", response_model=WriteOut)
def add_documents(body: DocumentsIn, collection: WriteDep):
    """Add documents, replacing those whose id is in the index (an unchanged title, text and metadata is not
    re-encoded). A 200 means committed (durable); visible on this worker at once, on every worker within the refresh
    interval. Metadata that does not fit the index's schema is a 422 naming the document and the field; nothing of
    the batch is written."""
    writes = collection.writes
    if len(body.documents) > writes.settings.max_batch:
        raise HTTPException(413, detail=f"{len(body.documents)} documents in one write, over the server's limit of "
                                        f"{writes.settings.max_batch} (LSR_MAX_BATCH); split the batch")
    batch = [checked(d.id, d.title, d.text, d.metadata, ["body", "documents", n, "text"])
             for n, d in enumerate(body.documents)]
    seen: set[str] = set()
    for number, document in enumerate(batch):
        if document.id in seen:
            raise unprocessable(["body", "documents", number, "id"], f"document id {document.id!r} appears twice in "
                                                                     "one write")
        seen.add(document.id)
    return writes.write(collection.engine, lambda writer: writer.add(batch, upsert=True))


@router.put("/documents/{doc_id}", response_model=WriteOut)
def put_document(doc_id: Annotated[str, Path(min_length=1, max_length=512)], body: DocumentBody,
                 collection: WriteDep):
    """Add or replace one document."""
    document = checked(doc_id, body.title, body.text, body.metadata, ["body", "text"])
    return collection.writes.write(collection.engine, lambda writer: writer.add([document], upsert=True))


@router.delete("/documents/{doc_id}", response_model=WriteOut, responses={404: {"description": "unknown id"}})
def delete_document(doc_id: str, collection: WriteDep):
    """Delete one document (404 when the index does not hold it)."""
    def delete(writer) -> None:
        if writer.delete([doc_id]).unknown:  # deleted meanwhile by another writer
            raise HTTPException(404, detail=f"no document with id {doc_id!r} in this index")

    return collection.writes.write(collection.engine, delete)
