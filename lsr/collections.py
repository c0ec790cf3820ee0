"""A data directory: many named indexes (collections) in one folder, with their snapshots.

Layout::

    DIR/<name>/                         one lsr index a collection (the folder's name is the collection's)
    DIR/.snapshots/<name>/<snapshot>/   a snapshot: one generation of <name>, with snapshot.json (every file's CRC32)
    DIR/.trash/                         dropped collections, until nothing in this process reads them
    DIR/.lock                           held (flock) while a collection is created, dropped or restored

Every change is a rename, so a process that lists the folder sees a collection whole or not at all: a collection
is created in a hidden staging folder and renamed into place, dropped by renaming it into ``.trash``, restored from
a verified staging copy. ``lsr serve --data DIR`` and ``lsr collection ...`` (another process, while the server
runs) share these rules; the server picks up what another process changed within its refresh interval.

Snapshots hard-link the segment files (immutable once written: a later write adds segments and deletes files, never
changes one) and the encoders where the filesystem allows, and copy them otherwise; the Lucene part is copied.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from lsr.errors import AlreadyExists, InvalidIndex, InvalidInput, MissingFile, NotFound, StorageError
from lsr.index import files, storage
from lsr.index.manifest import MANIFEST_FILE

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SNAPSHOTS, TRASH, LOCK = ".snapshots", ".trash", ".lock"
SNAPSHOT_FILE = "snapshot.json"


def check_name(name: str, what: str = "collection") -> str:
    """``name`` when it can name a folder safely: 1-64 letters, digits, ``_`` and ``-``, starting with a letter or
    digit (no ``/``, ``..``, spaces or control characters); else :class:`InvalidInput` at ``name``."""
    if not isinstance(name, str) or not NAME.match(name):
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}..."
        exc = InvalidInput(f"{what} name {shown!r} is not allowed: use 1 to 64 letters, digits, '_' or '-', starting "
                           "with a letter or a digit")
        exc.loc = ("name",)
        raise exc
    return name


class DataDirectory:
    """The collections under ``root`` (created if missing), and their snapshots."""

    def __init__(self, root: str | Path, create: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            if not create or self.root.exists():
                raise MissingFile(f"data directory {self.root} does not exist (or is not a folder); create it, or "
                                  "pass the folder that holds the collections")
            files.mkdir(self.root)

    def __repr__(self) -> str:
        return f"DataDirectory({str(self.root)!r})"

    # -- the collections --------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every collection's name: the folders under ``root`` with a valid name (hidden ones are not)."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME.match(p.name))

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    def existing(self, name: str) -> Path:
        """The folder of collection ``name``; :class:`NotFound` when there is none."""
        path = self.path(name)
        if not path.is_dir():
            raise NotFound(f"no collection named {name!r} in {self.root}; `GET /collections` (or `lsr collection "
                           "list`) lists them")
        return path

    def status(self, name: str) -> str | None:
        """None when the collection's folder looks like an index, else what is wrong (a cheap look: files exist)."""
        path = self.existing(name)
        if not (path / MANIFEST_FILE).is_file():
            return f"{path} has no {MANIFEST_FILE}: not an lsr index (damaged, or a folder that is not one)"
        try:
            storage.current_generation_file(path)
        except InvalidIndex as exc:
            return str(exc)
        return None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Creates, drops and restores take turns across processes (a crashed holder's lock goes with it)."""
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def create(self, name: str, encoder=None, *, dense_encoder=None, schema=None, unknown_fields: str = "error",
               **options) -> Path:
        """An empty collection ``name`` (generation 0): :func:`lsr.index.builder.create` with the build options
        (``bm25``, ``store_documents``, ``chunk_tokens``, ``max_weight``, ...). :class:`AlreadyExists` when it
        exists."""
        from lsr.index.builder import create

        path = self.path(name)
        with self._locked():
            if path.exists():
                raise AlreadyExists(f"collection {name!r} exists already in {self.root}; drop it first, or choose "
                                    "another name")
            create(encoder, path=path, dense_encoder=dense_encoder, schema=schema, unknown_fields=unknown_fields,
                   **options)
        return path

    def adopt(self, name: str, index_path: str | Path) -> Path:
        """Copy an existing index folder in as collection ``name`` (its published generation, atomically)."""
        from lsr.index import Index
        from lsr.index.builder import copy_generation

        path = self.path(name)
        index = Index.open(index_path, load_encoder=False)
        with self._locked():
            if path.exists():
                raise AlreadyExists(f"collection {name!r} exists already in {self.root}; drop it first, or choose "
                                    "another name")
            copy_generation(index.directory, index.manifest, index.snapshot(), path)
        return path

    def drop(self, name: str, wait: float = 10.0, remove: bool = True) -> Path:
        """Take the collection out of the directory: wait for its writer (``wait`` seconds), then rename it into
        ``.trash``. A process still searching it keeps reading its (memory-mapped) files; ``remove``: delete them
        now (:meth:`remove_trashed` later otherwise). Returns the folder in the trash."""
        path = self.existing(name)
        files.mkdir(self.root / TRASH)
        trashed = self.root / TRASH / f"{name}-{uuid.uuid4().hex[:8]}"
        with self._locked():
            lock = storage.WriteLock(path, wait=wait) if (path / MANIFEST_FILE).exists() else None
            try:
                files.rename(path, trashed)
                files.fsync_directory(self.root)
            finally:
                if lock is not None:
                    lock.release()
        if remove:
            self.remove_trashed(trashed)  # (unless a server still serves it: then the trash keeps it for later)
        return trashed

    def serve(self, name: str) -> Serving | None:
        """A shared lock on collection ``name``'s folder for as long as this process serves it: a dropped folder is
        removed only once no process holds one (None where the folder cannot take the lock file: read-only)."""
        try:
            return Serving(self.existing(name))
        except OSError:
            return None

    def remove_trashed(self, trashed: Path | None = None, only_unserved: bool = True) -> list[str]:
        """Delete dropped collections' files (``trashed``, or everything in the trash) that no process serves (holds
        :meth:`serve`'s lock on); the others stay for a later call. Returns the names removed."""
        folder = self.root / TRASH
        removed = []
        for path in [trashed] if trashed is not None else (sorted(folder.iterdir()) if folder.is_dir() else []):
            if only_unserved and Serving.held(path):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        return removed

    # -- snapshots --------------------------------------------------------------------------------------------------
    def snapshot(self, name: str) -> dict:
        """A consistent copy of the collection's published generation under ``.snapshots/<name>/``, checked against
        the segments' own checksums before it is published, with ``snapshot.json`` (collection, generation,
        documents, time, every file's CRC32). Writes may go on meanwhile: the generation copied stays pinned."""
        from lsr.index import Index
        from lsr.index.builder import copy_generation
        from lsr.index.check import check_index
        from lsr.index.manifest import Manifest

        path = self.existing(name)
        index = Index.open(path, load_encoder=False)
        snapshot = index.snapshot()  # pinned until the copy is complete
        manifest = Manifest.load(path)  # read after the pin: at least as new as the generation (a first commit
        # fixes the scale, a schema change adds fields, before it publishes)
        now = datetime.now(timezone.utc)
        snapshot_id = f"{name}-gen{snapshot.number:06d}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        target = self.root / SNAPSHOTS / name / snapshot_id
        files.mkdir(target.parent)
        record: dict = {}

        def describe(folder: Path) -> None:
            report = check_index(folder, listeners=False)
            if not report.ok:
                raise StorageError(f"the snapshot of {name!r} does not verify: {'; '.join(report.problems[:3])}")
            linked = _linked(path, folder)
            record.update(id=snapshot_id, collection=name, generation=snapshot.number, documents=snapshot.doc_count,
                          segments=len(snapshot.views), created=now.isoformat(timespec="seconds"),
                          hard_linked=linked, files=files.checksum_tree(folder, skip=frozenset({SNAPSHOT_FILE})))
            files.write_bytes(folder / SNAPSHOT_FILE, files.with_checksum(record))

        try:
            copy_generation(path, manifest, snapshot, target, link=True, before_publish=describe)
        finally:
            index.close()
        return {k: v for k, v in record.items() if k != "files"} | {"path": str(target), "files": len(record["files"])}

    def snapshots(self, name: str | None = None) -> list[dict]:
        """The snapshots (of ``name``, or of every collection, dropped ones included), oldest first."""
        base = self.root / SNAPSHOTS
        folders = [base / name] if name is not None else (sorted(base.iterdir()) if base.is_dir() else [])
        found = []
        for folder in folders:
            for snapshot in sorted(folder.iterdir()) if folder.is_dir() else ():
                if snapshot.name.startswith("."):
                    continue
                try:
                    record = files.read_checked(snapshot / SNAPSHOT_FILE)
                except (OSError, ValueError) as exc:
                    found.append({"id": snapshot.name, "collection": folder.name, "path": str(snapshot),
                                  "problem": f"{SNAPSHOT_FILE}: {exc}"})
                    continue
                found.append({k: v for k, v in record.items() if k != "files"}
                             | {"path": str(snapshot), "files": len(record.get("files", {}))})
        return sorted(found, key=lambda s: (s.get("created", ""), s["id"]))

    def find_snapshot(self, ref: str | Path, paths: bool = True) -> Path:
        """A snapshot folder from its id, ``collection/id``, or (``paths``) its path."""
        candidate = Path(ref)
        if paths and (candidate / SNAPSHOT_FILE).is_file():
            return candidate
        text = str(ref)
        if "/" in text:
            collection, _, snapshot_id = text.partition("/")
            candidates = [self.root / SNAPSHOTS / check_name(collection) / snapshot_id]
        else:
            candidates = [folder / text for folder in (self.root / SNAPSHOTS).glob("*")] \
                if (self.root / SNAPSHOTS).is_dir() else []
        for path in candidates:
            if not text.startswith(".") and (path / SNAPSHOT_FILE).is_file():
                return path
        raise NotFound(f"no snapshot {text!r} in {self.root / SNAPSHOTS}; `lsr collection snapshots --data "
                       f"{self.root}` lists them")

    def restore(self, ref: str | Path, as_name: str, paths: bool = True) -> dict:
        """Bring a snapshot back as collection ``as_name`` (a new one: drop the old first to replace it). Every file
        is checked against ``snapshot.json`` and the index against its segments' checksums before the rename that
        makes it a collection; a damaged snapshot restores nothing."""
        from lsr.index.check import check_index

        source = self.find_snapshot(ref, paths=paths)
        target = self.path(as_name)
        try:
            record = files.read_checked(source / SNAPSHOT_FILE)
        except (OSError, ValueError) as exc:
            raise InvalidIndex(f"{source / SNAPSHOT_FILE}: {exc}; this snapshot cannot be trusted") from None
        if target.exists():  # (checked again under the lock, before the rename)
            raise AlreadyExists(f"collection {as_name!r} exists already in {self.root}; drop it first, or restore "
                                "under another name (--as)")
        staging = self.root / f".{as_name}.restore-{uuid.uuid4().hex[:8]}"
        try:  # the copy and its checks, outside the directory's lock: creates and drops go on meanwhile
            _copy_snapshot(source, staging)
            found = files.checksum_tree(staging)
            expected = record.get("files", {})
            wrong = sorted(p for p in expected.keys() | found.keys() if expected.get(p) != found.get(p))
            if wrong:
                raise InvalidIndex(f"snapshot {source.name}: {len(wrong)} files differ from {SNAPSHOT_FILE} "
                                   f"(first: {wrong[0]}); it restores nothing")
            report = check_index(staging, listeners=False)
            if not report.ok:
                raise InvalidIndex(f"snapshot {source.name} does not verify: {'; '.join(report.problems[:3])}")
            files.fsync_tree(staging)
            with self._locked():
                if target.exists():
                    raise AlreadyExists(f"collection {as_name!r} exists already in {self.root}; drop it first, or "
                                        "restore under another name (--as)")
                files.rename(staging, target)
                files.fsync_directory(self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return {"collection": as_name, "snapshot": record.get("id", source.name),
                "generation": record.get("generation"), "documents": record.get("documents"), "path": str(target)}

    def clean_staging(self, older_than: float = 86400.0) -> list[str]:
        """Restore staging folders a crashed restore left behind (older than a day; a build's own staging folder,
        ``.name.tmp-*``, is its writer's to clean: it may be a long build still running)."""
        removed = []
        for path in self.root.iterdir():
            if path.name.startswith(".") and ".restore-" in path.name and \
                    time.time() - path.stat().st_mtime > older_than:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return removed


def _copy_snapshot(source: Path, staging: Path) -> None:
    """A snapshot's files into a restore's staging folder: the segments and encoders hard-linked (immutable), the
    rest copied (generation files take readers' locks, the Lucene part is rebuilt in place: two collections must not
    share them)."""
    def place(src: str, dst: str) -> str:
        relative = Path(src).relative_to(source).parts
        linkable = relative[0] in (storage.SEGMENTS, "encoder", "dense-encoder")
        return files.link_or_copy(src, dst) if linkable else shutil.copy2(src, dst)

    files.mkdir(staging.parent)
    shutil.copytree(source, staging, copy_function=place, ignore=shutil.ignore_patterns(SNAPSHOT_FILE))


class Serving:
    """``flock(LOCK_SH)`` on ``<collection>/.serving``, released with :meth:`release` (or when the process dies)."""

    FILE = ".serving"

    def __init__(self, folder: Path) -> None:
        self.fd: int | None = os.open(folder / self.FILE, os.O_RDONLY | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @classmethod
    def held(cls, folder: Path) -> bool:
        """Whether some process serves ``folder`` now."""
        try:
            fd = os.open(folder / cls.FILE, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)


def _linked(source: Path, copy: Path) -> bool:
    """Whether the copy's segment files are hard links of the source's (the same inode)."""
    for path in (copy / storage.SEGMENTS).rglob("*.npy"):
        original = source / path.relative_to(copy)
        try:
            return os.stat(path).st_ino == os.stat(original).st_ino
        except OSError:
            return False
    return False


def describe(path: str | Path) -> dict:
    """What ``lsr collection list`` prints of one collection folder, without opening its encoder."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        generation = storage.Generation.read(storage.current_generation_file(path))
    except (OSError, ValueError, InvalidIndex) as exc:
        return {"name": path.name, "status": "unavailable", "problem": str(exc)}
    return {"name": path.name, "status": "ok", "documents": generation.documents, "generation": generation.number,
            "segments": len(generation.segments), "encoder": (manifest.get("encoder") or {}).get("kind")}
