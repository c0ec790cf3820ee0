"""Named plugins: built-in entries, entries of an entry-point group (every installed package's), and entries
registered in this process; an entry is a class or ``"module:attribute"``, imported on first use. The sparse
backends (``lsr.backends``) and the commit listeners (``lsr.listeners``) are two such registries."""

from __future__ import annotations

import importlib


class Registry:
    def __init__(self, group: str, builtin: dict[str, str | type] | None = None) -> None:
        self.group = group
        self._entries: dict[str, str | type] = dict(builtin or {})
        self._discovered = False

    def register(self, name: str, entry: str | type) -> None:
        self._entries[name] = entry

    def names(self) -> list[str]:
        self._discover()
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries

    def get(self, name: str):
        """The entry ``name``, imported (KeyError when there is none)."""
        self._discover()
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(module), attribute)
            self._entries[name] = entry
        return entry

    def _discover(self) -> None:
        if not self._discovered:
            from importlib.metadata import entry_points

            for entry in entry_points(group=self.group):
                self._entries.setdefault(entry.name, entry.value)
            self._discovered = True
