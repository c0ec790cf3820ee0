"""ASGI middleware of the HTTP API: body size limit, bearer API key, Prometheus metrics (pure ASGI, no per-request
object allocation beyond what each needs)."""

from __future__ import annotations

import hmac
import json
import os
import time

OPEN_ROUTES = ("/healthz", "/readyz")


class _TooLarge(Exception):
    pass


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
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
            return await _send_json(send, 413, message)
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
            await _send_json(send, 413, message)


class BearerAuth:
    """401 unless ``Authorization: Bearer <key>`` (constant-time compare); the health probes stay open."""

    def __init__(self, app, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_ROUTES or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
            return await _send_json(send, 401, {"detail": "missing or wrong API key: send Authorization: Bearer <key>"},
                                    [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


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
        self.requests = Counter("lsr_requests", "HTTP requests", ["route", "method", "mode", "status"],
                                registry=registry)
        self.latency = Histogram("lsr_request_seconds", "HTTP request latency", ["route", "mode"], registry=registry,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        gauge = {"multiprocess_mode": "max"} if self.multiprocess else {}
        self.documents = Gauge("lsr_index_documents", "documents in the served index", registry=registry, **gauge)
        self.postings = Gauge("lsr_index_postings", "postings in the served index", registry=registry, **gauge)
        self.index_bytes = Gauge("lsr_index_bytes", "bytes on disk of the served index", registry=registry, **gauge)

    def route_of(self, scope) -> str:
        route = scope.get("route")
        if route is not None and getattr(route, "path", None):
            return route.path
        path = scope.get("path", "")
        if path.startswith("/documents/"):
            return "/documents/{doc_id}"
        return path if path in self.ROUTES else "other"

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
                self.requests.labels(route, scope["method"], mode, str(status["code"])).inc()
                self.latency.labels(route, mode).observe(time.perf_counter() - started)
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
