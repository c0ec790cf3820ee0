"""A Python client of the HTTP API, with the verbs and result types of the in-process one.

    import lsr
    with lsr.Client("http://127.0.0.1:8000", api_key="...") as client:
        result = client.search("statins and breast cancer", k=10)      # a lsr.SearchResult, as Engine.search
        client.add([{"id": "d1", "text": "..."}])                       # committed when it returns
        docs = client.collection("docs")                               # the same verbs on collection docs

:class:`AsyncClient` is the same with ``async``/``await``. Both reuse their connections (one ``httpx`` pool each;
``collection()`` shares it). Errors are typed by status (:class:`ServiceError` and its subclasses, which also derive
from lsr's own errors: a 404 is an :class:`lsr.errors.NotFound`, a 422 an :class:`lsr.errors.InvalidInput`, ...). A
503 is retried after its ``Retry-After`` (another writer held the lock, a collection was loading), at most
``retries`` times and at most ``max_retry_wait`` seconds a wait; then it is raised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

from lsr.errors import AlreadyExists, InvalidInput, LsrError, MissingDependency, NotFound, Unavailable
from lsr.results import Contribution, SearchResult

__all__ = ["AsyncClient", "Client", "Conflict", "Forbidden", "Invalid", "NotFoundError", "ServiceError",
           "ServiceUnavailable", "TooLarge", "Unauthorized"]


class ServiceError(LsrError):
    """An answer of the service that is not a success: ``status``, ``detail`` (the API's words) and the route."""

    def __init__(self, status: int, detail: Any, method: str = "", path: str = "") -> None:
        self.status, self.detail, self.method, self.path = status, detail, method, path
        super().__init__(f"{method} {path}: {status} {_words(detail)}".strip())

    def __str__(self) -> str:  # (KeyError, a base of NotFound, would quote it)
        return str(self.args[0]) if self.args else ""


class Unauthorized(ServiceError):
    """401: no API key, or one the service does not know."""


class Forbidden(ServiceError, PermissionError):
    """403: the key's scope or collections do not cover the route, or the server is read-only."""


class NotFoundError(ServiceError, NotFound):
    """404: an unknown document id, collection or snapshot."""


class Conflict(ServiceError, AlreadyExists):
    """409: the collection exists already, or the backend takes no writes."""


class TooLarge(ServiceError, InvalidInput):
    """413: the body or the batch is over the server's limit."""


class Invalid(ServiceError, InvalidInput):
    """422: a field the service refused; ``errors`` lists them (``loc``, ``msg``), ``loc`` is the first one's."""

    @property
    def errors(self) -> list[dict]:
        return self.detail if isinstance(self.detail, list) else [{"loc": [], "msg": str(self.detail)}]

    @property
    def loc(self) -> tuple:
        return tuple(self.errors[0].get("loc", ())) if self.errors else ()


class ServiceUnavailable(ServiceError, Unavailable):
    """503 after the retries: a writer holds the lock, a backend or a collection cannot answer."""


ERRORS = {401: Unauthorized, 403: Forbidden, 404: NotFoundError, 409: Conflict, 413: TooLarge, 422: Invalid,
          503: ServiceUnavailable}


def _words(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in detail
                         if isinstance(e, dict))
    return str(detail)


def _httpx():
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a dependency of lsr
        raise MissingDependency("lsr.Client needs httpx: pip install httpx") from None
    return httpx


# -- requests and answers: what the sync and async clients share ----------------------------------------------------
def _search_body(k: int, mode: str | None, fusion, filter, explain: bool, return_documents: bool,
                 return_metadata: bool, offset: int, pruning, feedback=None) -> dict:
    body: dict = {"k": k, "offset": offset}
    if feedback is not None:
        body["feedback"] = feedback if isinstance(feedback, Mapping) else \
            {"docs": feedback.docs, "terms": feedback.terms, "weight": feedback.weight,
             "bm25_terms": feedback.bm25_terms, "components": list(feedback.components)}
    if mode is not None:
        body["mode"] = mode
    if fusion is not None:
        body["fusion"] = fusion if isinstance(fusion, Mapping) else fusion.to_dict()  # (the API's own fields)
    if filter is not None:
        body["filter"] = filter
    if pruning is not None:
        body["pruning"] = pruning if isinstance(pruning, Mapping) else \
            {"method": pruning.method, "alpha": pruning.alpha, "query_cut": pruning.query_cut}
    for name, value in (("explain", explain), ("return_documents", return_documents),
                        ("return_metadata", return_metadata)):
        if value:
            body[name] = True
    return body


def result_from(hits: list[dict], answer: dict, expansion: dict | None = None) -> SearchResult:
    """A :class:`~lsr.results.SearchResult` from one answer's hits, as :meth:`lsr.Engine.search` returns it."""
    def column(name: str, convert=lambda value: value):
        values = [h.get(name) for h in hits]
        return [convert(v) if v is not None else None for v in values] if any(v is not None for v in values) \
            else None

    explanations = column("explanation", lambda e: [Contribution(**c) for c in e])
    result = SearchResult(ids=[h["id"] for h in hits], scores=[float(h["score"]) for h in hits],
                          mode=answer["mode"], components=tuple(answer["components"]), exact=answer["exact"],
                          retrieve_ms=float(answer.get("took_ms", 0.0)), generation=answer.get("generation"),
                          titles=column("title"), texts=column("text"), explanations=explanations,
                          chunks=column("chunk"), metadata=column("metadata"), offset=answer.get("offset", 0),
                          expansion=expansion)
    if answer["mode"] == "hybrid":  # what the service computed (in process it comes from the components' lists)
        result.__dict__["component_scores"] = [h.get("component_scores") or {} for h in hits]
    return result


def _documents(documents: Iterable) -> list[dict]:
    out = []
    for document in documents:
        if not isinstance(document, Mapping):  # lsr.Document
            document = {"id": document.id, "title": document.title, "text": document.text,
                        "metadata": document.metadata}
        out.append({k: v for k, v in document.items() if v is not None and k in ("id", "title", "text", "metadata")})
    return out


class _Routes:
    """Where each verb goes: the root routes (the collection ``default``) or ``/collections/{name}/...``."""

    def __init__(self, collection: str | None) -> None:
        self.collection = collection
        self.prefix = f"/collections/{collection}" if collection is not None else ""


def _raise_for(response, method: str, path: str) -> None:
    if response.status_code < 400:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise ERRORS.get(response.status_code, ServiceError)(response.status_code, detail, method, path)


def _retry_after(response, attempt: int, retries: int, max_wait: float) -> float | None:
    """Seconds to wait before trying a 503 again, or None to raise it."""
    if response.status_code != 503 or attempt >= retries:
        return None
    try:
        wait = float(response.headers.get("retry-after", "1"))
    except ValueError:
        wait = 1.0
    return min(max(wait, 0.0), max_wait)


class _Connection:
    """What both clients hold: the service's URL, the retry bounds, one httpx pool (``_http``: shared by the
    clients of its collections), and the routes of the collection bound (None: the root routes)."""

    _pool = "Client"

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, max_retry_wait: float = 10.0, collection: str | None = None,
                 _http=None) -> None:
        httpx = _httpx()
        self.url, self.retries, self.max_retry_wait = url.rstrip("/"), retries, max_retry_wait
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = _http or getattr(httpx, self._pool)(base_url=self.url, headers=headers, timeout=timeout)
        self._owner = _http is None
        self._routes = _Routes(collection)

    def collection(self, name: str):
        """The same verbs on collection ``name`` (the connections are shared)."""
        return type(self)(self.url, retries=self.retries, max_retry_wait=self.max_retry_wait, collection=name,
                          _http=self._http)

    def _require_collection(self) -> str:
        if self._routes.collection is None:
            raise InvalidInput("merge, snapshots and restore act on a collection: client.collection(name).snapshot()")
        return self._routes.collection


class Client(_Connection):
    """The HTTP API as Python calls; see the module's documentation."""

    # -- plumbing ---------------------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, json: Any = None, params: dict | None = None) -> Any:
        attempt = 0
        while True:
            response = self._http.request(method, path, json=json, params=params)
            wait = _retry_after(response, attempt, self.retries, self.max_retry_wait)
            if wait is None:
                _raise_for(response, method, path)
                return response.json() if response.content else None
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        if self._owner:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- search -----------------------------------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, mode: str | None = None, fusion=None, *, filter=None,
               explain: bool = False, return_documents: bool = False, return_metadata: bool = False, offset: int = 0,
               pruning=None, feedback=None) -> SearchResult:
        body = {"query": query, **_search_body(k, mode, fusion, filter, explain, return_documents, return_metadata,
                                               offset, pruning, feedback)}
        answer = self._call("POST", f"{self._routes.prefix}/search", body)
        return result_from(answer["hits"], answer, answer.get("expansion"))

    def search_batch(self, queries: list[str], k: int = 10, mode: str | None = None, fusion=None, *, filter=None,
                     explain: bool = False, return_documents: bool = False, return_metadata: bool = False,
                     offset: int = 0, pruning=None) -> list[SearchResult]:
        body = {"queries": list(queries), **_search_body(k, mode, fusion, filter, explain, return_documents,
                                                         return_metadata, offset, pruning)}
        answer = self._call("POST", f"{self._routes.prefix}/search/batch", body)
        return [result_from(r["hits"], answer, r.get("expansion")) for r in answer["results"]]

    def encode(self, text: str, side: str = "query") -> dict[str, float]:
        """The sparse vector of ``text`` as the index's encoder makes it: {token: weight}, largest first."""
        return self._call("POST", f"{self._routes.prefix}/encode", {"text": text, "side": side})["vector"]

    # -- documents --------------------------------------------------------------------------------------------------
    def add(self, documents: Iterable) -> dict:
        """Add documents (mappings with ``id``, ``title``, ``text``, ``metadata``, or :class:`lsr.Document`),
        replacing those whose id the index holds: the HTTP API's one write (an unchanged document is not re-encoded).
        Committed when it returns: ``{"generation", "added", "replaced", "unchanged", ...}``."""
        return self._call("POST", f"{self._routes.prefix}/documents", {"documents": _documents(documents)})

    upsert = add

    def delete(self, ids: Iterable[str]) -> dict:
        """Delete documents by id (one commit each); ``{"deleted": n, "generation"}``. An unknown id is a
        :class:`NotFoundError`, after the ids before it were deleted."""
        deleted, generation = 0, None
        for doc_id in ids:
            answer = self._call("DELETE", f"{self._routes.prefix}/documents/{_quote(doc_id)}")
            deleted += answer["deleted"]
            generation = answer["generation"]
        return {"deleted": deleted, "generation": generation}

    def get(self, doc_id: str) -> dict:
        """A stored document: ``{"id", "title", "text", "metadata"}`` (:class:`NotFoundError` for an unknown id)."""
        return self._call("GET", f"{self._routes.prefix}/documents/{_quote(doc_id)}")

    # -- the index and the collections ------------------------------------------------------------------------------
    def stats(self) -> dict:
        """What the index holds and serves (a collection's stats; for the root routes, ``/readyz``)."""
        if self._routes.collection is None:
            return self._call("GET", "/readyz")
        return self._call("GET", f"/collections/{self._routes.collection}")

    def collections(self) -> list[dict]:
        return self._call("GET", "/collections")["collections"]

    def create_collection(self, name: str, **body) -> dict:
        """``PUT /collections/{name}``: ``encoder``, ``bm25``, ``store_documents``, ``metadata``, ``defaults``..."""
        return self._call("PUT", f"/collections/{name}", body)

    def drop_collection(self, name: str) -> dict:
        return self._call("DELETE", f"/collections/{name}")

    def merge(self, max_segments: int | None = None) -> dict:
        return self._call("POST", f"/collections/{self._require_collection()}/merge",
                          params={"max_segments": max_segments} if max_segments else None)

    def snapshot(self) -> dict:
        return self._call("POST", f"/collections/{self._require_collection()}/snapshots")

    def snapshots(self) -> list[dict]:
        return self._call("GET", f"/collections/{self._require_collection()}/snapshots")["snapshots"]

    def restore(self, snapshot: str, as_name: str) -> dict:
        return self._call("POST", f"/collections/{self._require_collection()}/snapshots/{snapshot}/restore",
                          {"as": as_name})



def _quote(doc_id: str) -> str:
    from urllib.parse import quote

    return quote(str(doc_id), safe="")


class AsyncClient(_Connection):
    """:class:`Client` with ``async`` verbs (``await client.search(...)``), over ``httpx.AsyncClient``."""

    _pool = "AsyncClient"

    async def _call(self, method: str, path: str, json: Any = None, params: dict | None = None) -> Any:
        attempt = 0
        while True:
            response = await self._http.request(method, path, json=json, params=params)
            wait = _retry_after(response, attempt, self.retries, self.max_retry_wait)
            if wait is None:
                _raise_for(response, method, path)
                return response.json() if response.content else None
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        if self._owner:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def search(self, query: str, k: int = 10, mode: str | None = None, fusion=None, *, filter=None,
                     explain: bool = False, return_documents: bool = False, return_metadata: bool = False,
                     offset: int = 0, pruning=None, feedback=None) -> SearchResult:
        body = {"query": query, **_search_body(k, mode, fusion, filter, explain, return_documents, return_metadata,
                                               offset, pruning, feedback)}
        answer = await self._call("POST", f"{self._routes.prefix}/search", body)
        return result_from(answer["hits"], answer, answer.get("expansion"))

    async def search_batch(self, queries: list[str], k: int = 10, mode: str | None = None, fusion=None, *,
                           filter=None, explain: bool = False, return_documents: bool = False,
                           return_metadata: bool = False, offset: int = 0, pruning=None) -> list[SearchResult]:
        body = {"queries": list(queries), **_search_body(k, mode, fusion, filter, explain, return_documents,
                                                         return_metadata, offset, pruning)}
        answer = await self._call("POST", f"{self._routes.prefix}/search/batch", body)
        return [result_from(r["hits"], answer, r.get("expansion")) for r in answer["results"]]

    async def encode(self, text: str, side: str = "query") -> dict[str, float]:
        return (await self._call("POST", f"{self._routes.prefix}/encode", {"text": text, "side": side}))["vector"]

    async def add(self, documents: Iterable) -> dict:
        return await self._call("POST", f"{self._routes.prefix}/documents", {"documents": _documents(documents)})

    upsert = add

    async def delete(self, ids: Iterable[str]) -> dict:
        deleted, generation = 0, None
        for doc_id in ids:
            answer = await self._call("DELETE", f"{self._routes.prefix}/documents/{_quote(doc_id)}")
            deleted += answer["deleted"]
            generation = answer["generation"]
        return {"deleted": deleted, "generation": generation}

    async def get(self, doc_id: str) -> dict:
        return await self._call("GET", f"{self._routes.prefix}/documents/{_quote(doc_id)}")

    async def stats(self) -> dict:
        if self._routes.collection is None:
            return await self._call("GET", "/readyz")
        return await self._call("GET", f"/collections/{self._routes.collection}")

    async def collections(self) -> list[dict]:
        return (await self._call("GET", "/collections"))["collections"]

    async def create_collection(self, name: str, **body) -> dict:
        return await self._call("PUT", f"/collections/{name}", body)

    async def drop_collection(self, name: str) -> dict:
        return await self._call("DELETE", f"/collections/{name}")

    async def merge(self, max_segments: int | None = None) -> dict:
        return await self._call("POST", f"/collections/{self._require_collection()}/merge",
                                params={"max_segments": max_segments} if max_segments else None)

    async def snapshot(self) -> dict:
        return await self._call("POST", f"/collections/{self._require_collection()}/snapshots")

    async def snapshots(self) -> list[dict]:
        return (await self._call("GET", f"/collections/{self._require_collection()}/snapshots"))["snapshots"]

    async def restore(self, snapshot: str, as_name: str) -> dict:
        return await self._call("POST", f"/collections/{self._require_collection()}/snapshots/{snapshot}/restore",
                                {"as": as_name})
