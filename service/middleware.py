"""ASGI middleware of the HTTP API: body size limit, Prometheus metrics (pure ASGI, no per-request object allocation
beyond what each needs). The API keys are :mod:`lsr.service.keys`."""

from __future__ import annotations

import json
import os
import time


class _TooLarge(Exception):
    pass


async def send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
                + (headers or [])})
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    """413 for a request body over ``limit`` bytes, by Content-Length or while it streams in."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = {"detail": f"request body over the server's limit of {self.limit} bytes (LSR_MAX_BODY_BYTES); "
                             "send fewer or shorter queries"}
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await send_json(send, 413, message)
        received = 0

        async def limited():
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return event

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await send_json(send, 413, message)


class Metrics:
    """Prometheus counters and latency histograms by route, mode and status; index size gauges.

    One registry per app; with ``PROMETHEUS_MULTIPROC_DIR`` set (``lsr serve --workers N`` sets it), every worker
    writes there and ``/metrics`` adds them up."""

    ROUTES = ("/search", "/search/batch", "/encode", "/documents", "/healthz", "/readyz", "/metrics")

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        registry = None if self.multiprocess else self.registry
        self.requests = Counter("lsr_requests", "HTTP requests", ["collection", "route", "method", "mode", "status"],
                                registry=registry)
        self.latency = Histogram("lsr_request_seconds", "HTTP request latency", ["collection", "route", "mode"],
                                 registry=registry,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        gauge = {"multiprocess_mode": "max"} if self.multiprocess else {}
        self.documents = Gauge("lsr_index_documents", "documents in a collection", ["collection"], registry=registry,
                               **gauge)
        self.postings = Gauge("lsr_index_postings", "postings in a collection", ["collection"], registry=registry,
                              **gauge)
        self.index_bytes = Gauge("lsr_index_bytes", "bytes on disk of a collection", ["collection"],
                                 registry=registry, **gauge)
        self.clipped = Gauge("lsr_index_clipped_postings", "impacts above a collection's quantization maximum, "
                             "stored as 255", ["collection"], registry=registry, **gauge)

    def set_collection(self, name: str, snapshot, nbytes: int | None = None) -> None:
        """The gauges of one collection, from the generation it serves."""
        self.documents.labels(name).set(snapshot.doc_count)
        self.postings.labels(name).set(snapshot.postings)
        self.clipped.labels(name).set(snapshot.clipped_postings)
        if nbytes is not None:
            self.index_bytes.labels(name).set(nbytes)

    def forget_collection(self, name: str) -> None:
        for gauge in (self.documents, self.postings, self.index_bytes, self.clipped):
            try:
                gauge.remove(name)
            except KeyError:
                pass

    def route_of(self, scope) -> str:
        route = scope.get("route")
        if route is not None and getattr(route, "path", None):
            return route.path
        path = scope.get("path", "")
        if path.startswith("/documents/"):
            return "/documents/{doc_id}"
        if path.startswith("/collections"):
            return "/collections/..."
        return path if path in self.ROUTES else "other"

    @staticmethod
    def collection_of(scope) -> str:
        """The collection a request named (``default`` for the root routes; empty for the others): a known
        collection's name, never what an unknown path said (a label per typo would grow without bound)."""
        state = scope.get("state", {})
        return state.get("lsr_collection", "")

    def middleware(self, app):
        async def wrapped(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            started = time.perf_counter()
            status = {"code": 500}

            async def capture(message):
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            try:
                await app(scope, receive, capture)
            finally:
                route = self.route_of(scope)
                mode = scope.get("state", {}).get("lsr_mode", "")
                collection = self.collection_of(scope)
                self.requests.labels(collection, route, scope["method"], mode, str(status["code"])).inc()
                self.latency.labels(collection, route, mode).observe(time.perf_counter() - started)
        return wrapped

    def exposition(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class MetricsMiddleware:
    def __init__(self, app, metrics: Metrics) -> None:
        self._call = metrics.middleware(app)

    async def __call__(self, scope, receive, send):
        return await self._call(scope, receive, send)
