"""The collections one server serves: an engine and a writer's turn each, opened from a data directory (``--data``)
or one index (``--index``: the collection ``default``).

- **Isolation**: each collection has its own engine, its own :class:`~lsr.service.documents.Writes` (write turn,
  background merge) and its own write lock on disk; a write or merge on one never takes a lock another's search
  needs (searches take none).
- **Shared**: the encoders (by identity, :func:`lsr.index.builder.shared_encoder`), the compiled kernels, the
  process's warm-up of FastAPI and pydantic.
- **Unavailable**: a collection whose folder cannot be opened is kept with the reason: its routes answer 503, and
  ``/readyz`` names it; the others serve. Each refresh tries it again.
- **Another process** (``lsr collection create|drop|restore``) changes the data directory with renames; each
  refresh (``refresh_interval``) opens what appeared and forgets what went.
- **Drop**: the collection leaves the registry at once (new requests 404); searches already running hold its engine
  and finish; its files are removed when the last of them lets go.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from lsr.collections import DataDirectory, check_name
from lsr.engine import Engine
from lsr.errors import CollectionUnavailable, LsrError, NotFound, NotWritable
from lsr.service.writes import Writes

DEFAULT = "default"
RETRY_SECONDS = 30.0  # how often a collection that could not be opened is tried again
log = logging.getLogger("lsr.service")


@dataclass
class Collection:
    name: str
    engine: Engine | None
    writes: Writes
    path: Path | None = None
    error: str | None = None
    retry_at: float = 0.0
    gauged: int | None = None  # the generation the metrics describe  # an unavailable one is tried again from then on
    lock: threading.Lock = field(default_factory=threading.Lock)  # admin operations on this collection take turns


def index_bytes(directory) -> int:
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file()) if directory is not None else 0


class Collections:
    """Name → :class:`Collection`; what every route asks for its engine."""

    def __init__(self, settings, metrics, data: DataDirectory | None = None) -> None:
        self.settings, self.metrics, self.data = settings, metrics, data
        self._items: dict[str, Collection] = {}
        self._lock = threading.RLock()
        self._changing = threading.RLock()  # a create, drop or restore here, or the refresh's look at the directory
        self._encoders: dict[str, object] = {}

    # -- lookup -----------------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[Collection]:
        return [self._items[n] for n in self.names()]

    def get(self, name: str) -> Collection:
        """The collection (404 for an unknown name, 503 for one that cannot be served now)."""
        collection = self._items.get(name)
        if collection is None:
            where = f"in {self.data.root}" if self.data is not None else "on this server (it serves one index)"
            if name == DEFAULT and self.data is not None:
                raise NotFound(f"no collection named {DEFAULT!r} {where}: the root routes (/search, /documents, ...) "
                               "serve that one; use /collections/{name}/... (GET /collections lists them)")
            raise NotFound(f"no collection named {name!r} {where}; GET /collections lists them")
        if collection.engine is None:
            raise CollectionUnavailable(f"collection {name!r} cannot be served: {collection.error}. The other "
                                        "collections keep serving; repair it (`lsr index check --repair`) or drop it")
        return collection

    # -- opening ----------------------------------------------------------------------------------------------------
    def serve_engine(self, name: str, engine: Engine, path: Path | None = None) -> Collection:
        """Serve a ready engine as ``name`` (``--index``, or a test's engine)."""
        collection = Collection(name, engine, Writes(self.settings), path)
        with self._lock:
            self._items[name] = collection
        self._gauges(collection)
        return collection

    def open(self, name: str, warm: bool = True, encoder=None) -> Collection:
        """Open collection ``name`` of the data directory (kept as unavailable, with the reason, if it cannot be)."""
        path = self.data.path(name)
        try:
            problem = self.data.status(name)
            if problem is not None:
                raise CollectionUnavailable(problem)
            from lsr.service.app import open_engine

            engine = open_engine(self.settings, path, encoder=encoder)
            if warm:
                engine.warm_up()
            collection = Collection(name, engine, Writes(self.settings), path)
        except (LsrError, OSError, ValueError) as exc:
            log.warning("collection %s is unavailable: %s", name, exc)
            collection = Collection(name, None, Writes(self.settings), path, f"{type(exc).__name__}: {exc}",
                                    retry_at=time.monotonic() + RETRY_SECONDS)
        with self._lock:
            self._items[name] = collection
        self._gauges(collection)
        return collection

    def open_all(self) -> None:
        """Every collection of the data directory (the trash of an earlier process emptied first)."""
        self.data.remove_trashed()
        self.data.clean_staging()
        for name in self.data.names():
            self.open(name)

    def _gauges(self, collection: Collection) -> None:
        if collection.engine is None:
            self.metrics.forget_collection(collection.name)
            return
        snapshot = collection.engine.state().snapshot
        collection.gauged = snapshot.number if snapshot is not None else None
        if snapshot is not None:
            self.metrics.set_collection(collection.name, snapshot, index_bytes(collection.engine.index.directory)
                                        if collection.engine.index is not None else 0)

    def update_gauges(self) -> None:
        """The gauges of every collection whose generation changed since they were set (before a scrape)."""
        for collection in list(self._items.values()):
            if collection.engine is not None and collection.engine.generation != collection.gauged:
                self._gauges(collection)

    # -- changes ----------------------------------------------------------------------------------------------------
    def encoder(self, name: str):
        """An encoder the server knows by name: ``default`` (the shipped one) or one of ``settings.encoders``."""
        from lsr.encoders import load_encoder

        folders = dict(self.settings.encoders)
        if name not in folders and name != DEFAULT:
            known = ", ".join(sorted({DEFAULT, *folders}))
            exc = NotFound(f"no encoder named {name!r} on this server; known: {known} (register folders by name in "
                           "the `encoders` setting)")
            raise exc
        with self._lock:
            if name not in self._encoders:
                self._encoders[name] = load_encoder(folders.get(name))
            return self._encoders[name]

    def create(self, name: str, encoder_name: str = DEFAULT, dense_encoder_name: str | None = None,
               defaults: dict | None = None, **options) -> Collection:
        """A new empty collection in the data directory, served at once."""
        from lsr.index.manifest import Manifest

        self._require_data()
        check_name(name)
        encoder = self.encoder(encoder_name)
        dense = self.encoder(dense_encoder_name) if dense_encoder_name else None
        if dense is not None and not hasattr(dense, "dim"):
            from lsr.errors import InvalidInput

            raise InvalidInput(f"encoder {dense_encoder_name!r} is not a dense encoder")
        with self._changing:  # (the refresh must not open it half-made, nor twice)
            path = self.data.create(name, encoder, dense_encoder=dense, **options)
            if defaults:
                manifest = Manifest.load(path)
                manifest.search_defaults = defaults
                manifest.save(path)
            collection = self.open(name, encoder=encoder)
        if collection.engine is None:  # (the defaults were checked by the route: this is a disk problem)
            raise CollectionUnavailable(f"collection {name!r} was created but cannot be opened: {collection.error}")
        return collection

    def drop(self, name: str) -> None:
        """Out of the registry now; its folder into the data directory's trash; its files removed once the searches
        still running on it are done (when its engine is collected)."""
        self._require_data()
        with self._changing:
            collection = self._items.get(name)
            if collection is None:
                self.data.existing(name)  # 404 unless another process created it a moment ago
            with self._lock:
                self._items.pop(name, None)
            self.metrics.forget_collection(name)
            engine = collection.engine if collection is not None else None
            if engine is not None:
                self._own_encoders(engine)
            trashed = self.data.drop(name, wait=self.settings.write_timeout, remove=engine is None)
        if engine is not None:
            weakref.finalize(engine, self.data.remove_trashed, trashed)

    def restore(self, snapshot: str, name: str) -> Collection:
        """A snapshot of the data directory restored as collection ``name``, served at once."""
        self._require_data()
        with self._changing:
            self.data.restore(snapshot, name)
            return self.open(name)

    def _own_encoders(self, engine: Engine) -> None:
        """An encoder this collection shares with another was loaded from one folder, maybe this one: what it would
        read from there later (the model, the full tokenizer) is read now, before the folder goes."""
        index = engine.index
        for encoder in (index.encoder, index.dense_encoder) if index is not None else ():
            if encoder is None:
                continue
            shared = any(c.engine is not None and c.engine.index is not None and encoder in
                         (c.engine.index.encoder, c.engine.index.dense_encoder) for c in self._items.values())
            if shared:
                prepare = getattr(encoder, "prepare", None)
                if prepare is not None:
                    prepare()
                if isinstance(getattr(type(encoder.tokenizer), "full", None), property):
                    encoder.tokenizer.full  # noqa: B018

    def forget(self, name: str) -> None:
        with self._lock:
            self._items.pop(name, None)
        self.metrics.forget_collection(name)

    def _require_data(self) -> None:
        if self.data is None:
            raise NotWritable("this server serves one index (--index); creating, dropping, snapshotting and "
                              "restoring collections needs a data directory: `lsr serve --data DIR`")

    # -- refresh ----------------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Serve every collection's published generation; open collections another process created, forget those it
        dropped, retry the unavailable ones."""
        if self.data is not None:
            with self._changing:
                try:
                    present = set(self.data.names())
                except OSError:
                    present = set(self._items)
                for name in sorted(present - set(self._items)):
                    self.open(name)
                for name in sorted(set(self._items) - present):
                    if self._items[name].path is not None:
                        self.forget(name)
        for collection in list(self._items.values()):
            if collection.engine is None:
                if self.data is not None and collection.path is not None and time.monotonic() >= collection.retry_at:
                    self.open(collection.name)
                continue
            try:
                collection.engine.refresh()
                if collection.engine.generation != collection.gauged:  # (a write here, or another process's)
                    self._gauges(collection)
            except Exception:  # noqa: BLE001 - a damaged index, a backend down: keep serving, keep polling
                continue


def refresh_loop(collections: Collections, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            collections.refresh()
        except Exception:  # noqa: BLE001 pragma: no cover
            log.exception("refresh failed")
