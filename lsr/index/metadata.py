"""Document metadata: a flat JSON object per document, typed by the index's schema, stored per segment as columns.

Types (:data:`FIELD_TYPES`): ``keyword`` (a string), ``keywords`` (a list of strings; a single string is taken as a
list of one), ``integer`` (64-bit), ``float`` (64-bit; integers are taken), ``boolean``, ``datetime`` (ISO 8601; a
date alone is midnight, a time without an offset is UTC; stored as microseconds since the epoch, returned as
``2024-05-01T12:00:00Z``). ``null`` (or an empty list) means the document has no value for the field.

The schema (:class:`Schema`, field -> type) lives in the manifest. It is declared at build, or inferred from the first
documents that carry metadata and then fixed: a later document with a field the schema does not hold is refused
(``unknown: "ignore"`` drops such fields instead), and so is a value of another type. Widening is explicit
(:meth:`Schema.widen`: a new field, ``integer`` -> ``float``, ``keyword`` -> ``keywords``); segments written before
keep their columns and are read as the wider type.

Layout of ``segments/seg-*/metadata/`` (plain ``.npy``, memory-mapped)::

    fields.json            {"fields": {name: type}}: the types the columns were written with
    NAME.dict.npy          keyword(s): the segment's distinct values, sorted (the dictionary)
    NAME.codes.npy         keyword: int32 code a document (-1: none); keywords: the codes of every value, by document
    NAME.offsets.npy       keywords: int64 (documents + 1), document d's codes are codes[offsets[d]:offsets[d+1]]
    NAME.order.npy         keyword: int32 documents sorted by code; NAME.starts.npy: int64 (dictionary + 1) ranges
    NAME.values.npy        integer, datetime: int64; float: float64; boolean: uint8
    NAME.present.npy       numbers and booleans: bool, the documents that have a value
    NAME.sorted.npy        numbers: int32 documents with a value, by increasing value (ranges as slices)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from lsr.errors import InvalidIndex, InvalidInput
from lsr.index import files

FIELD_TYPES = ("keyword", "keywords", "integer", "float", "boolean", "datetime")
WIDENINGS = {("integer", "float"), ("keyword", "keywords")}  # (from, to): what a field may become later
UNKNOWN_POLICIES = ("error", "ignore")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_KEYWORD_BYTES = 1024
MAX_FIELDS = 64
FIELDS_FILE = "fields.json"
METADATA_DIR = "metadata"
_INT64 = (-(1 << 63), (1 << 63) - 1)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_datetime(value: str) -> int:
    """Microseconds since the epoch (UTC) of an ISO 8601 date or date-time; ValueError when it is not one."""
    if not isinstance(value, str) or not _DATE.match(value.strip()):
        raise ValueError(value)
    text = value.strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def format_datetime(micros: int) -> str:
    moment = _EPOCH + timedelta(microseconds=int(micros))
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{moment.microsecond:06d}" if moment.microsecond else "") + "Z"


def _describe(value) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, list, dict, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _keyword(value) -> str | None:
    if isinstance(value, str) and len(value.encode()) <= MAX_KEYWORD_BYTES:
        return value
    return None


def convert(value, kind: str):
    """``value`` as stored for a field of type ``kind`` (None: missing); ValueError when it does not fit."""
    if value is None:
        return None
    if kind == "keyword":
        found = _keyword(value)
    elif kind == "keywords":
        values = [value] if isinstance(value, str) else value
        found = [_keyword(v) for v in values] if isinstance(values, list) else None
        if found is not None and (None in found):
            found = None
        elif found == []:
            return None
    elif kind == "integer":
        found = value if isinstance(value, int) and not isinstance(value, bool) and \
            _INT64[0] <= value <= _INT64[1] else None
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
        found = float(value) if ok else None
    elif kind == "boolean":
        found = value if isinstance(value, bool) else None
    else:  # datetime
        try:
            found = parse_datetime(value)
        except (ValueError, TypeError):
            found = None
    if found is None:
        raise ValueError(kind)
    return found


_EXPECTED = {"keyword": f"a string of at most {MAX_KEYWORD_BYTES} bytes",
             "keywords": f"a list of strings of at most {MAX_KEYWORD_BYTES} bytes each",
             "integer": "an integer (64-bit)", "float": "a finite number", "boolean": "true or false",
             "datetime": "an ISO 8601 date or date-time (2024-05-01, 2024-05-01T12:00:00Z)"}


def expected(kind: str) -> str:
    return _EXPECTED[kind]


def infer_type(value) -> str | None:
    """The type a value suggests (None for null or an empty list); datetimes are strings in ISO 8601 form."""
    if value is None or value == []:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "datetime" if _DATE.match(value.strip()) else "keyword"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "keywords"
    return "object"


@dataclass(frozen=True)
class Schema:
    """Field -> type, and what a document's unknown field does (``error`` or ``ignore``). ``open``: fields were
    declared at build and the rest are still to be inferred from the first documents that carry metadata (then
    the schema is fixed)."""

    fields: dict[str, str] = field(default_factory=dict)
    unknown: str = "error"
    open: bool = False

    def __post_init__(self) -> None:
        if self.unknown not in UNKNOWN_POLICIES:
            raise InvalidInput(f"unknown metadata fields: {self.unknown!r} is not one of {', '.join(UNKNOWN_POLICIES)}")
        if len(self.fields) > MAX_FIELDS:
            raise InvalidInput(f"{len(self.fields)} metadata fields; an index holds at most {MAX_FIELDS}")
        for name, kind in self.fields.items():
            if not isinstance(name, str) or not FIELD_NAME.match(name):
                raise InvalidInput(f"metadata field name {name!r}: use letters, digits and _ (not first), at most 64")
            if kind not in FIELD_TYPES:
                raise InvalidInput(f"metadata field {name!r}: type {kind!r} is not one of {', '.join(FIELD_TYPES)}")

    @classmethod
    def parse(cls, spec: Mapping | Sequence[str] | None, unknown: str = "error") -> Schema:
        """From ``{name: type}`` or ``["name:type", ...]`` (the ``--field`` flags)."""
        if spec is None:
            return cls({}, unknown)
        if isinstance(spec, Mapping):
            if set(spec) >= {"fields"} and isinstance(spec.get("fields"), Mapping):  # a saved schema file
                return cls(dict(spec["fields"]), spec.get("unknown", unknown))
            return cls(dict(spec), unknown)
        fields: dict[str, str] = {}
        for item in spec:
            name, sep, kind = str(item).partition(":")
            if not sep:
                raise InvalidInput(f"--field {item!r}: give NAME:TYPE, TYPE one of {', '.join(FIELD_TYPES)}")
            fields[name.strip()] = kind.strip()
        return cls(fields, unknown)

    @classmethod
    def from_manifest(cls, data: Mapping | None) -> Schema | None:
        if not data:
            return None
        return cls(dict(data.get("fields", {})), data.get("unknown", "error"), bool(data.get("open", False)))

    def to_manifest(self) -> dict:
        return {"fields": dict(self.fields), "unknown": self.unknown, **({"open": True} if self.open else {})}

    def complete(self, records: Iterable[tuple[str, Mapping]]) -> Schema:
        """An open schema fixed: the declared fields, plus the types ``records`` suggest for the others."""
        declared = set(self.fields)
        inferred = Schema.infer(((doc_id, {k: v for k, v in m.items() if k not in declared}) for doc_id, m in records),
                                self.unknown)
        return Schema({**self.fields, **inferred.fields}, self.unknown)

    def describe(self) -> str:
        return ", ".join(f"{name}: {kind}" for name, kind in self.fields.items()) or "no fields"

    @classmethod
    def infer(cls, records: Iterable[tuple[str, Mapping]], unknown: str = "error") -> Schema:
        """The types the documents' values suggest (integers and floats together: float)."""
        fields: dict[str, str] = {}
        for doc_id, metadata in records:
            for name, value in metadata.items():
                kind = infer_type(value)
                if kind is None:
                    continue
                if kind == "object":
                    raise InvalidInput(f"document {doc_id!r}: metadata field {name!r} holds {_describe(value)}; values "
                                       "are strings, numbers, booleans, date-times or lists of strings (flat JSON)")
                seen = fields.get(name)
                if seen is None or seen == kind:
                    fields[name] = kind
                elif {seen, kind} == {"integer", "float"}:
                    fields[name] = "float"
                elif {seen, kind} == {"keyword", "keywords"}:
                    fields[name] = "keywords"
                elif {seen, kind} == {"keyword", "datetime"}:
                    fields[name] = "keyword"
                else:
                    raise InvalidInput(f"metadata field {name!r} holds both {seen} and {kind} values (document "
                                       f"{doc_id!r}: {_describe(value)}); declare its type: --field {name}:TYPE")
        return cls(fields, unknown)

    def normalize(self, doc_id: str, metadata: Mapping | None) -> dict:
        """The stored values of one document's metadata; :class:`InvalidInput` naming the document, the field, the
        value and the type expected when one does not fit."""
        if not metadata:
            return {}
        if not isinstance(metadata, Mapping):
            raise InvalidInput(f"document {doc_id!r}: metadata must be a JSON object, got {_describe(metadata)}")
        out = {}
        for name, value in metadata.items():
            kind = self.fields.get(name)
            if kind is None:
                if self.unknown == "ignore":
                    continue
                raise InvalidInput(f"document {doc_id!r}: metadata field {name!r} is not in the index's schema "
                                   f"({self.describe()}); add it first (`lsr index schema --index DIR --add "
                                   f"{name}:TYPE`, Index.widen_schema), or build with --unknown-fields ignore")
            try:
                converted = convert(value, kind)
            except ValueError:
                raise InvalidInput(f"document {doc_id!r}: metadata field {name!r} = {_describe(value)} is not "
                                   f"{expected(kind)} (the field is {kind})") from None
            if converted is not None:
                out[name] = converted
        return out

    def widen(self, changes: Mapping[str, str]) -> Schema:
        """A schema with new fields added and existing ones widened (integer -> float, keyword -> keywords)."""
        fields = dict(self.fields)
        for name, kind in changes.items():
            old = fields.get(name)
            if old is not None and old != kind and (old, kind) not in WIDENINGS:
                allowed = ", ".join(f"{a} -> {b}" for a, b in sorted(WIDENINGS))
                raise InvalidInput(f"metadata field {name!r} is {old}; it cannot become {kind} (widenings: {allowed}); "
                                   "to change it otherwise, rebuild the index")
            fields[name] = kind
        return Schema(fields, self.unknown, self.open)


# -- columns ---------------------------------------------------------------------------------------------------------------
def _unicode(values: Sequence[str]) -> np.ndarray:
    return np.asarray(values, dtype=str) if len(values) else np.zeros(0, dtype="<U1")


def build_columns(fields: Mapping[str, str], records: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """The column arrays (``NAME.part`` -> array) of ``records`` (normalized metadata, one a document)."""
    n = len(records)
    out: dict[str, np.ndarray] = {}
    for name, kind in fields.items():
        values = [r.get(name) for r in records]
        if kind == "keyword":
            present = np.fromiter((v is not None for v in values), dtype=bool, count=n)
            dictionary, codes = np.unique(_unicode([v for v in values if v is not None]), return_inverse=True)
            full = np.full(n, -1, dtype=np.int32)
            full[present] = codes.astype(np.int32)
            order = np.argsort(full, kind="stable").astype(np.int32)
            order = order[full[order] >= 0]
            starts = np.zeros(len(dictionary) + 1, dtype=np.int64)
            np.cumsum(np.bincount(full[present], minlength=len(dictionary)), out=starts[1:])
            out.update({f"{name}.dict": dictionary, f"{name}.codes": full, f"{name}.order": order,
                        f"{name}.starts": starts})
        elif kind == "keywords":
            lists = [v or [] for v in values]
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum([len(v) for v in lists], out=offsets[1:])
            flat = [s for v in lists for s in v]
            dictionary, codes = np.unique(_unicode(flat), return_inverse=True)
            out.update({f"{name}.dict": dictionary, f"{name}.codes": codes.astype(np.int32),
                        f"{name}.offsets": offsets})
        else:
            present = np.fromiter((v is not None for v in values), dtype=bool, count=n)
            dtype = {"integer": np.int64, "datetime": np.int64, "float": np.float64, "boolean": np.uint8}[kind]
            array = np.zeros(n, dtype=dtype)
            array[present] = np.asarray([v for v in values if v is not None], dtype=dtype)
            out[f"{name}.values"] = array
            out[f"{name}.present"] = present
            if kind != "boolean":
                with_value = np.flatnonzero(present)
                out[f"{name}.sorted"] = with_value[np.argsort(array[with_value], kind="stable")].astype(np.int32)
    return out


def write_columns(directory: Path, fields: Mapping[str, str], records: Sequence[Mapping]) -> None:
    """``directory/metadata/`` for these documents (nothing when no field is set)."""
    used = {name: kind for name, kind in fields.items() if any(name in r for r in records)}
    if not used:
        return
    folder = directory / METADATA_DIR
    files.mkdir(folder)
    for key, array in build_columns(used, records).items():
        files.save_array(folder / f"{key}.npy", array)
    files.write_text(folder / FIELDS_FILE, json.dumps({"fields": used}, indent=2) + "\n")


class Column:
    """One field of one segment, read as the schema's type (a column written before a widening reads as the wider
    type). The filter compiler (:mod:`lsr.filters`) reads it."""

    def __init__(self, load, name: str, stored: str, kind: str, documents: int) -> None:
        self.name, self.stored, self.kind, self.documents = name, stored, kind, documents
        self._load = load
        self._cache: dict[str, np.ndarray] = {}

    def array(self, part: str) -> np.ndarray:
        found = self._cache.get(part)
        if found is None:
            found = self._load(f"{self.name}.{part}")
            want = {"values": self.documents, "present": self.documents, "offsets": self.documents + 1}.get(part)
            if part == "codes" and self.stored == "keyword":
                want = self.documents
            if want is not None and len(found) != want:  # masks built from it must have one entry a document
                raise InvalidIndex(f"metadata column {self.name}.{part} holds {len(found)} entries for "
                                   f"{self.documents} documents; the segment is damaged: rebuild the index")
            self._cache[part] = found
        return found

    @property
    def keyword_like(self) -> bool:
        return self.stored in ("keyword", "keywords")

    def code_of(self, value: str) -> int:
        """The dictionary code of ``value`` in this segment, or -1."""
        dictionary = self.array("dict")
        at = int(np.searchsorted(dictionary, value))
        return at if at < len(dictionary) and dictionary[at] == value else -1

    def value(self, local: int, stored: bool = False):
        """The value of one document (None: missing), as the API returns it, or as it is stored (``stored``: a
        datetime as microseconds; a merge copies it so)."""
        if self.stored == "keyword":
            code = int(self.array("codes")[local])
            value = None if code < 0 else str(self.array("dict")[code])
            return [value] if value is not None and self.kind == "keywords" else value
        if self.stored == "keywords":
            offsets = self.array("offsets")
            codes = self.array("codes")[offsets[local]:offsets[local + 1]]
            return [str(self.array("dict")[c]) for c in codes.tolist()] or None
        if not self.array("present")[local]:
            return None
        raw = self.array("values")[local]
        if self.stored == "boolean":
            return bool(raw)
        if self.stored == "datetime":
            return int(raw) if stored else format_datetime(int(raw))
        return float(raw) if self.kind == "float" else int(raw)


class SegmentMetadata:
    """The metadata columns of one segment (none when it was written without metadata)."""

    def __init__(self, directory: Path, documents: int, mmap: bool = True) -> None:
        self.folder = directory / METADATA_DIR
        self.documents = documents
        self._mode = "r" if mmap else None
        self.fields: dict[str, str] = {}
        if (self.folder / FIELDS_FILE).exists():
            try:
                self.fields = dict(json.loads((self.folder / FIELDS_FILE).read_text())["fields"])
            except (OSError, ValueError, KeyError, TypeError):
                raise InvalidIndex(f"{self.folder / FIELDS_FILE} cannot be read; the segment is damaged: rebuild the "
                                   "index") from None
        self._columns: dict[tuple[str, str], Column] = {}

    def _load(self, key: str) -> np.ndarray:
        return np.asarray(np.load(self.folder / f"{key}.npy", mmap_mode=self._mode, allow_pickle=False))

    def column(self, name: str, kind: str | None = None) -> Column | None:
        """Field ``name`` read as ``kind`` (default: as written); None when no document of the segment has it."""
        stored = self.fields.get(name)
        if stored is None:
            return None
        key = (name, kind or stored)
        found = self._columns.get(key)
        if found is None:
            found = self._columns[key] = Column(self._load, name, stored, kind or stored, self.documents)
        return found

    def record(self, local: int, schema: Mapping[str, str] | None = None, stored: bool = False) -> dict:
        """Document ``local``'s metadata as the API returns it, read as ``schema``'s types (fields with no value
        left out); ``stored``: as :func:`build_columns` takes it."""
        out = {}
        for name, kind in self.fields.items():
            value = self.column(name, (schema or {}).get(name, kind)).value(local, stored)
            if value is not None:
                out[name] = value
        return out

    def records(self, locals_: Iterable[int], schema: Mapping[str, str] | None = None,
                stored: bool = False) -> list[dict]:
        if not self.fields:
            return [{} for _ in locals_]
        return [self.record(int(local), schema, stored) for local in locals_]
