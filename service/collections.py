"""The collections one server serves: an engine and a writer's turn each, opened from a data directory (``--data``)
or one index (``--index``: the collection ``default``).

- **Isolation**: each collection has its own engine, its own :class:`~lsr.service.writes.Writes` (write turn,
  background merge) and its own write lock on disk; a write or merge on one never takes a lock another's search
  needs (searches take none).
- **Shared**: the encoders (by identity, :func:`lsr.index.builder.shared_encoder`), the compiled kernels, the
  process's warm-up of FastAPI and pydantic.
- **Unavailable**: a collection whose folder cannot be opened is kept with the reason: its routes answer 503, and
  ``/readyz`` names it; the others serve. A refresh tries it again every 30 s.
- **Another process** (``lsr collection create|drop|restore``, an ``lsr index --out DIR/name`` rebuild) changes the
  data directory with renames; each refresh (``refresh_interval``) opens what appeared, forgets what went, and opens
  again a folder that was replaced under the same name (another inode).
- **Drop**: the collection leaves the registry at once (new requests 404); searches already running hold its engine
  and finish; its files are removed when the last of them lets go, and not while any process serves them: each
  serving process holds a shared lock on the folder (:meth:`lsr.collections.DataDirectory.serve`).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from lsr.collections import DataDirectory, check_name
from lsr.engine import Engine
from lsr.errors import CollectionUnavailable, InvalidInput, LsrError, NotFound, NotWritable
from lsr.service.writes import Writes

DEFAULT = "default"
RETRY_SECONDS = 30.0  # how often a collection that could not be opened is tried again
TRASH_SECONDS = 30.0  # how often the trash is looked at (dropped folders no process serves any more)
log = logging.getLogger("lsr.service")


@dataclass
class Collection:
    name: str
    engine: Engine | None
    writes: Writes
    path: Path | None = None  # None: the --index folder, outside the data directory
    error: str | None = None
    retry_at: float = 0.0  # an unavailable one is tried again from then on
    gauged: int | None = None  # the generation the metrics describe
    inode: int | None = None  # of its folder when it was opened: another one is a new collection


def index_bytes(directory) -> int:
    total = 0
    for path in Path(directory).rglob("*") if directory is not None else ():
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:  # removed meanwhile (a merge's garbage collection)
            continue
    return total


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _released(index, serving, data: DataDirectory) -> None:
    """When a collection's engine is gone: close its index (its pins, its memory maps), let the folder go, and
    empty what of the trash no process serves now (in a thread: this may run at the end of a request)."""
    try:
        if index is not None:
            index.close()
    finally:
        if serving is not None:
            serving.release()
    threading.Thread(target=data.remove_trashed, name="lsr-trash", daemon=True).start()


class Collections:
    """Name → :class:`Collection`; what every route asks for its engine."""

    def __init__(self, settings, metrics, data: DataDirectory | None = None) -> None:
        self.settings, self.metrics, self.data = settings, metrics, data
        self._items: dict[str, Collection] = {}
        self._lock = threading.RLock()
        self._changing = threading.RLock()  # a create, drop or restore here, or the refresh's look at the directory
        self._encoders: dict[str, object] = {}
        self._trash_at = 0.0

    # -- lookup -----------------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._items)

    def items(self) -> list[Collection]:
        with self._lock:
            return [self._items[n] for n in sorted(self._items)]

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
    def serve_engine(self, name: str, engine: Engine) -> Collection:
        """Serve a ready engine as ``name`` (``--index``, or a test's engine)."""
        collection = Collection(name, engine, Writes(self.settings))
        with self._lock:
            self._items[name] = collection
        self._gauges(collection)
        return collection

    def open(self, name: str, warm: bool = True, encoder=None) -> Collection:
        """Open collection ``name`` of the data directory (kept as unavailable, with the reason, if it cannot be)."""
        path = self.data.path(name)
        inode = _inode(path)
        serving = None
        try:
            problem = self.data.status(name)
            if problem is not None:
                raise CollectionUnavailable(problem)
            from lsr.service.app import open_engine

            serving = self.data.serve(name)  # (before the engine: its files are ours from now on)
            engine = open_engine(self.settings, path, encoder=encoder)
            if warm:
                engine.warm_up()
            weakref.finalize(engine, _released, engine.index, serving, self.data)
            collection = Collection(name, engine, Writes(self.settings), path, inode=inode)
        except (LsrError, OSError, ValueError) as exc:
            if serving is not None:
                serving.release()
            log.warning("collection %s is unavailable: %s", name, exc)
            collection = Collection(name, None, Writes(self.settings), path, f"{type(exc).__name__}: {exc}",
                                    retry_at=time.monotonic() + RETRY_SECONDS, inode=inode)
        with self._lock:
            self._items[name] = collection
        self._gauges(collection)
        return collection

    def open_all(self) -> None:
        """Every collection of the data directory (the trash no process serves emptied first)."""
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
        for collection in self.items():
            if collection.engine is not None and collection.engine.generation != collection.gauged:
                self._gauges(collection)

    # -- changes ----------------------------------------------------------------------------------------------------
    def encoder(self, name: str):
        """An encoder the server knows by name: ``default`` (the shipped one) or one of ``settings.encoders``."""
        from lsr.encoders import load_encoder

        folders = dict(self.settings.encoders)
        if name not in folders and name != DEFAULT:
            known = ", ".join(sorted({DEFAULT, *folders}))
            exc = InvalidInput(f"no encoder named {name!r} on this server; known: {known} (register folders by name "
                               "in the `encoders` setting)")
            exc.loc = ("encoder",)
            raise exc
        with self._lock:
            if name not in self._encoders:
                self._encoders[name] = load_encoder(folders.get(name))
            return self._encoders[name]

    def _changeable(self, name: str) -> None:
        """Refuse to create, drop or restore over what this server may not change."""
        self._require_data()
        if self.settings.read_only:
            from fastapi import HTTPException

            raise HTTPException(403, detail="this server is read-only (LSR_READ_ONLY): it creates, drops and "
                                            "restores no collection")
        served = self._items.get(name)
        if served is not None and served.path is None:
            raise NotWritable(f"collection {name!r} is the --index folder this server was started with; it is not "
                              "one of the data directory's, to create, drop or restore")

    def create(self, name: str, encoder_name: str = DEFAULT, dense_encoder_name: str | None = None,
               defaults: dict | None = None, **options) -> Collection:
        """A new empty collection in the data directory, served at once."""
        check_name(name)
        self._changeable(name)
        encoder = self.encoder(encoder_name)
        dense = self.encoder(dense_encoder_name) if dense_encoder_name else None
        if dense is not None and not hasattr(dense, "dim"):
            exc = InvalidInput(f"encoder {dense_encoder_name!r} is not a dense encoder (mean pooling)")
            exc.loc = ("dense_encoder",)
            raise exc
        with self._changing:  # (the refresh must not open it half-made, nor twice)
            self.data.create(name, encoder, dense_encoder=dense, search_defaults=defaults, **options)
            collection = self.open(name, encoder=encoder)
        if collection.engine is None:  # (the defaults were checked by the route: this is a disk problem)
            raise CollectionUnavailable(f"collection {name!r} was created but cannot be opened: {collection.error}")
        return collection

    def drop(self, name: str) -> None:
        """Into the data directory's trash, then out of the registry (new requests 404); its files go once the
        searches still running on it are done and no other process serves it."""
        check_name(name)
        self._changeable(name)
        with self._changing:
            self.data.drop(name, wait=self.settings.write_timeout, remove=False)  # (404 and 503 leave it served)
            with self._lock:
                collection = self._items.pop(name, None)
            self.metrics.forget_collection(name)
        del collection  # its engine's finalizer closes the index and lets the folder go
        self.data.remove_trashed()

    def restore(self, snapshot: str, name: str) -> Collection:
        """A snapshot of the data directory restored as collection ``name``, served at once."""
        check_name(name)
        self._changeable(name)
        with self._changing:
            self.data.restore(snapshot, name, paths=False)  # (an id of the data directory's, never a server path)
            return self.open(name)

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
        """Serve every collection's published generation; open collections another process created (or replaced),
        forget those it dropped, retry the unavailable ones, empty the trash of what no process serves."""
        if self.data is not None:
            with self._changing:
                try:
                    present = set(self.data.names())
                except OSError:
                    present = set(self._items)
                for name in sorted(present - set(self._items)):
                    self.open(name)
                for collection in self.items():
                    if collection.path is None:
                        continue
                    if collection.name not in present:
                        self.forget(collection.name)
                    elif _inode(collection.path) != collection.inode or (
                            collection.engine is None and time.monotonic() >= collection.retry_at):
                        self.open(collection.name)  # replaced under its name, or unavailable and due a retry
            if time.monotonic() >= self._trash_at:
                self._trash_at = time.monotonic() + TRASH_SECONDS
                self.data.remove_trashed()
        for collection in self.items():
            if collection.engine is None:
                continue
            try:
                collection.engine.refresh()
                if collection.engine.generation != collection.gauged and self._items.get(collection.name) is collection:
                    self._gauges(collection)  # (a write here, or another process's)
            except Exception:  # noqa: BLE001 - a damaged index, a backend down: keep serving, keep polling
                continue


def refresh_loop(collections: Collections, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            collections.refresh()
        except Exception:  # noqa: BLE001 pragma: no cover
            log.exception("refresh failed")

