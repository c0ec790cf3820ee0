"""One error hierarchy. Every error lsr raises on purpose is an :class:`LsrError` whose message says what is wrong
and what to do next; the CLI prints it as one line, the HTTP API maps it to a 4xx status.

The classes also derive from the matching built-in (``ValueError``, ``FileNotFoundError``, ``KeyError``,
``ImportError``) so code written against the built-ins keeps working.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class LsrError(Exception):
    """Base class of every deliberate lsr error."""


class InvalidInput(LsrError, ValueError):
    """An argument, a request field, a setting or a vector that cannot be used (k < 1, NaN weights, ...)."""


class CorpusError(InvalidInput):
    """A corpus, queries or qrels line that cannot be read; the message names the file, the line and the fix."""


class EncoderError(LsrError, ValueError):
    """An encoder directory that cannot be loaded or saved as asked (wrong layout, missing IDF table, ...)."""


class InvalidIndex(LsrError, ValueError):
    """An index that cannot be used as asked: missing, damaged, another format version, or another encoder."""


class EncoderMismatch(InvalidIndex):
    """The index was built by another encoder than the one given to search it."""


class Unavailable(LsrError, ValueError):
    """A mode, route or backend needs a part the index was built without (dense, BM25, texts, Lucene)."""


class BackendUnavailable(Unavailable):
    """A search or storage backend (a Milvus server, a Ray cluster) did not answer, or did not take a write the index
    committed; retrying later may work (HTTP 503)."""


class NotWritable(LsrError, PermissionError):
    """The index cannot take this write here: a read-only server, a backend that does not take writes (Lucene), a
    mirror the index does not record (HTTP 409 or 403)."""


class IndexLocked(LsrError, RuntimeError):
    """Another writer holds the index's write lock (HTTP 503, worth retrying)."""


class IndexReadOnly(LsrError, PermissionError):
    """The index directory cannot be written: a read-only volume, or no permission (HTTP 403)."""


class StorageError(LsrError, OSError):
    """The disk failed a write (an I/O error): nothing of it was published, the index is at the generation the
    message names (HTTP 500, with the message)."""


class DiskFull(StorageError):
    """The disk (or quota) is full: nothing of the write was published; free space and retry (HTTP 507)."""


def storage_error(exc: OSError, what: str, generation: int | None = None) -> StorageError:
    """:class:`DiskFull` or :class:`StorageError` for an ``OSError`` raised while writing an index."""
    import errno

    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    where = f" ({exc.filename})" if exc.filename else ""
    state = f"; the index is at generation {generation}" if generation is not None else ""
    fix = "free space on its volume and retry" if full else "check the disk (dmesg, `lsr index check`) and retry"
    error = (DiskFull if full else StorageError)(f"{what} failed: {exc.strerror or exc}{where}; nothing of it was "
                                                 f"published{state}: {fix}")
    error.errno = exc.errno
    return error


class AlreadyExists(LsrError, FileExistsError):
    """A collection (or snapshot) that is to be created exists already (HTTP 409)."""


class CollectionUnavailable(Unavailable):
    """A collection whose folder cannot be served (damaged, half-created): its routes answer 503, the others serve."""


class MissingFile(LsrError, FileNotFoundError):
    """A path the user gave does not exist."""


class MissingDependency(LsrError, ImportError):
    """An optional extra is not installed; the message names it (``pip install 'lsr[lucene]'``)."""


class NotFound(LsrError, KeyError):
    """An unknown document id or collection."""

    def __str__(self) -> str:  # KeyError quotes its argument; ours is a sentence
        return str(self.args[0]) if self.args else ""


def require_finite(value: float, what: str) -> float:
    """``value`` as a float, or :class:`InvalidInput` naming ``what`` when it is NaN or infinite."""
    value = float(value)
    if not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number, got {value}")
    return value


def require_all_finite(values: Iterable[float], what: str) -> None:
    for value in values:
        require_finite(value, what)
