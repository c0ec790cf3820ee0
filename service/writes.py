"""A collection's writes over HTTP: one at a time in this worker (across processes, the index's write lock), then a
background merge when the tiered policy asks for one. See :mod:`lsr.service.documents` for the guarantees."""

from __future__ import annotations

import threading
import time

from fastapi import HTTPException

from lsr.engine import Engine
from lsr.errors import IndexLocked, IndexReadOnly, LsrError
from lsr.service.schemas import WriteOut
from lsr.service.settings import Settings


class Writes:
    """What the write routes share: the settings, this worker's turn to write, its background merge."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._turn = threading.Lock()
        self._merging = threading.Lock()

    def write(self, engine: Engine, operation) -> WriteOut:
        """Run ``operation(writer)`` with the index's writer, commit, serve the new generation."""
        if self.settings.read_only:
            raise HTTPException(403, detail="this server is read-only (LSR_READ_ONLY); write to another one, or "
                                            "change the index with `lsr index add|delete`")
        engine.check_writable()
        started = time.perf_counter()
        timeout = self.settings.write_timeout
        if not self._turn.acquire(timeout=timeout):
            raise IndexLocked(f"another write of this worker is still running (waited {timeout:g} s: "
                              "LSR_WRITE_TIMEOUT)")
        try:
            summary = self._commit(engine, operation)
        finally:
            self._turn.release()
        if self.settings.merge:
            threading.Thread(target=self.merge, args=(engine,), daemon=True).start()
        return WriteOut(generation=summary.generation, added=summary.added, replaced=summary.replaced,
                        unchanged=summary.unchanged, deleted=summary.deleted, truncated=summary.truncated,
                        took_ms=(time.perf_counter() - started) * 1000)

    def _commit(self, engine: Engine, operation):
        index = engine.index
        try:
            writer = index.writer(wait=self.settings.write_timeout, **self.settings.writer_options())
        except IndexLocked as exc:
            raise IndexLocked(f"{exc} (waited {self.settings.write_timeout:g} s: LSR_WRITE_TIMEOUT)") from None
        try:
            operation(writer)
            return index.commit()
        finally:  # a commit that reached the index but not a mirror is still served (and says so: 503)
            index.rollback()
            try:
                engine.refresh()
            except LsrError:  # (the backend that failed the write may fail this too: the first error is the answer)
                pass

    def merge(self, engine: Engine) -> None:
        """One background merge at a time in this worker, when the tiered policy has runs to merge."""
        if not self._merging.acquire(blocking=False):
            return
        try:
            with self._turn:
                if engine.index.merge(wait=self.settings.write_timeout).merged:
                    engine.refresh()
        except (IndexLocked, IndexReadOnly):
            pass  # another process writes or merges: the next write tries again
        finally:
            self._merging.release()

    def merge_now(self, engine: Engine, max_segments: int | None = None):
        """A merge asked for (``POST .../merge``): waits its turn, then merges as the policy asks (or down to
        ``max_segments``), and serves the result."""
        if self.settings.read_only:
            raise HTTPException(403, detail="this server is read-only (LSR_READ_ONLY)")
        engine.check_writable()
        if not self._turn.acquire(timeout=self.settings.write_timeout):
            raise IndexLocked(f"a write of this worker is still running (waited {self.settings.write_timeout:g} s: "
                              "LSR_WRITE_TIMEOUT)")
        try:
            summary = engine.index.merge(max_segments=max_segments, wait=self.settings.write_timeout)
            engine.refresh()
            return summary
        finally:
            self._turn.release()

