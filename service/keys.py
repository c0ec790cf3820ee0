"""API keys with scopes: who may read, write or administer which collections.

- ``read``: search, batch search, encode, get a document, stats, list collections.
- ``write``: the document routes too (add, replace, delete).
- ``admin``: everything: create, drop, merge, snapshot, restore.

A key may be limited to some collections (``collections: [a, b]``; none: all). The settings hold them as ``keys``
(``[{"key": "...", "scope": "read", "collections": ["docs"], "name": "frontend"}]``); the single ``api_key`` setting
is one admin key. With no key configured the API is open, as before keys existed.

:class:`KeyAuth` (ASGI) finds the caller's grant: every configured key is compared with the bearer token in constant
time (``hmac.compare_digest``, all of them, whichever matches), so the time of a refusal says nothing about which
key came close. A missing or unknown key is a 401 before any route runs; a known key that lacks the scope or the
collection is a 403 from the route (:func:`check`). Keys never reach a log line or a metric: the grant carries the
key's ``name`` (default ``key-N``), and that is what the access log may show.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import HTTPException

SCOPES = ("read", "write", "admin")
OPEN_ROUTES = ("/healthz", "/readyz")


@dataclass(frozen=True)
class Grant:
    name: str
    scope: str
    collections: frozenset[str] | None = None  # None: every collection

    def allows(self, scope: str, collection: str | None = None) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope) and (
            collection is None or self.collections is None or collection in self.collections)


OPEN = Grant("open", "admin")  # no key configured: everything is allowed


def grants_from(settings) -> list[tuple[bytes, Grant]]:
    """(key bytes, grant) for every key of the settings; the single ``api_key`` is an admin key for everything."""
    found = []
    if settings.api_key is not None:
        found.append((settings.api_key.get_secret_value().encode(), Grant("api_key", "admin")))
    for number, entry in enumerate(settings.keys, start=1):
        found.append((entry.key.get_secret_value().encode(),
                      Grant(entry.name or f"key-{number}", entry.scope,
                            frozenset(entry.collections) if entry.collections is not None else None)))
    return found


def check(grant: Grant | None, scope: str, collection: str | None = None) -> None:
    """A 403 naming what is missing when ``grant`` does not cover ``scope`` on ``collection``."""
    grant = grant or OPEN
    if SCOPES.index(grant.scope) < SCOPES.index(scope):
        raise HTTPException(403, detail=f"this API key ({grant.name}) has scope {grant.scope!r}; this route needs "
                                        f"{scope!r}. Use a key with that scope")
    if collection is not None and grant.collections is not None and collection not in grant.collections:
        raise HTTPException(403, detail=f"this API key ({grant.name}) may not use collection {collection!r}; it may "
                                        f"use: {', '.join(sorted(grant.collections)) or 'none'}")


def grant_of(request) -> Grant:
    return request.scope.get("state", {}).get("lsr_grant") or OPEN


class KeyAuth:
    """401 unless ``Authorization: Bearer <key>`` names a configured key; puts its :class:`Grant` in the request's
    state. The health probes and CORS preflights stay open."""

    def __init__(self, app, grants: list[tuple[bytes, Grant]]) -> None:
        self.app, self.grants = app, grants

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_ROUTES or scope["method"] == "OPTIONS" or \
                scope["path"] == "/console" or scope["path"].startswith("/console/"):  # (the page; its calls need a key)
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"")
        kind, _, token = header.partition(b" ")
        token = token.strip()
        found = None
        for key, grant in self.grants:  # every key compared, in constant time each: no early exit
            if hmac.compare_digest(token, key) and found is None:
                found = grant
        if kind.lower() != b"bearer" or found is None:
            from lsr.service.middleware import send_json

            return await send_json(send, 401, {"detail": "missing or unknown API key: send Authorization: Bearer "
                                                         "<key>"}, [(b"www-authenticate", b"Bearer")])
        scope.setdefault("state", {})["lsr_grant"] = found
        return await self.app(scope, receive, send)
