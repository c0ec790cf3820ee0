"""Commit listeners: what an index keeps in step with its generations besides its own files, such as a Milvus
collection that mirrors the vectors (:mod:`lsr.milvus`) or a Lucene part built with the index (:mod:`lsr.lucene`).

The writer knows no backend. When it opens, it asks every registered listener factory whether the index has
something for it (:meth:`ListenerFactory.attach`, given the options the caller passed under the listener's name);
the ones that answer are called: ``opened`` once the write lock is held (catch up after a crash), ``check_document``
before anything of a write is staged (refuse what the listener could not hold), ``published`` after each commit
point (the new generation is durable; a listener that fails then leaves the index committed and says so). A
factory may also offer ``check(directory, manifest, generation, documents, **options)``, read-only, for ``lsr index
check``: what it keeps, against the index (``{"problems": [...], ...}``; None when the index has nothing for it).

Factories register through the ``lsr.listeners`` entry-point group of an installed package (lsr's own: ``milvus``,
``lucene``), or with :func:`register_listener` in one process.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lsr.errors import InvalidInput
from lsr.plugins import Registry

LISTENER_GROUP = "lsr.listeners"


@dataclass
class Published:
    """What one commit published: the generation before and the new one, the segments it added (a merge adds its
    merged segments, whose documents were already there: ``moved``), the ids it deleted, the schema if it changed."""

    directory: Path
    manifest: Any
    previous: int
    generation: Any  # lsr.index.storage.Generation
    added: Sequence[str] = ()
    deleted_ids: Sequence[str] = ()
    operation: str = ""
    moved: bool = False  # a merge: the documents of ``added`` are the same documents, rewritten
    schema: Any = None  # the new schema (lsr.index.metadata.Schema) when this commit changed it
    summary: Any = field(default=None, repr=False)


@runtime_checkable
class CommitListener(Protocol):
    name: str

    def opened(self, writer) -> None:
        """The writer holds the lock: bring whatever the listener keeps up to date with the current generation."""

    def check_document(self, doc_id: str, metadata: Mapping) -> None:
        """Raise :class:`~lsr.errors.InvalidInput` for a document the listener could not take."""

    def published(self, event: Published) -> None:
        """A generation was published (durably): follow it."""


class ListenerFactory(Protocol):
    name: str
    options: Mapping[str, str]  # attach keyword -> the setting / flag that feeds it (as backends declare theirs)

    @classmethod
    def attach(cls, directory: Path, manifest, **options) -> CommitListener | None:
        """The listener for this index, or None when the index has nothing for it."""


_FACTORIES = Registry(LISTENER_GROUP)


def register_listener(name: str, factory: str | type) -> None:
    """Register a listener factory in this process (a class or ``"module:Class"`` with ``attach``)."""
    _FACTORIES.register(name, factory)


def listener_factory(name: str):
    return _FACTORIES.get(name)


def listener_names() -> list[str]:
    return _FACTORIES.names()


def listener_options(source: Any) -> dict[str, dict]:
    """Per listener, the options it declares, read from ``source`` (settings or parsed flags; None: not passed)."""
    out = {}
    for name in listener_names():
        declared = getattr(listener_factory(name), "options", {})
        found = {keyword: getattr(source, setting) for keyword, setting in declared.items()
                 if getattr(source, setting, None) is not None}
        if found:
            out[name] = found
    return out


def attach_listeners(directory: Path, manifest, options: Mapping[str, Mapping] | None = None) -> list[CommitListener]:
    """Every registered listener that has something to do for this index (``options``: per listener name)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(listener_names()))
    if unknown:
        raise InvalidInput(f"no commit listener named {', '.join(unknown)}; known: {', '.join(listener_names())}")
    found = []
    for name in listener_names():
        factory = listener_factory(name)
        given = dict(options.get(name) or {})
        accepted = inspect.signature(factory.attach).parameters
        extra = sorted(set(given) - set(accepted))
        if extra:
            raise InvalidInput(f"listener {name!r} takes no option {', '.join(extra)}")
        listener = factory.attach(directory, manifest, **given)
        if listener is not None:
            found.append(listener)
    return found
