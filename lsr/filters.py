"""The filter language: which documents a search may return, by their metadata (:mod:`lsr.index.metadata`).

A filter is one clause. Leaf clauses use Elasticsearch's names, which most search engineers already write; the
boolean clause uses Qdrant's keys, without Elasticsearch's ``bool`` wrapper, and with Qdrant's meaning of ``should``
(at least one must hold: a filter does not score, so Elasticsearch's "optional when ``must`` is present" would be a
trap)::

    {"term":   {"tenant": "acme"}}                   keyword (a keywords field: holds it), boolean, integer
    {"terms":  {"lang": ["en", "de"]}}                any of the values (at most 1,024)
    {"range":  {"year": {"gte": 2010, "lt": 2020}}}   gt, gte, lt, lte on integer, float and datetime fields
    {"exists": {"field": "url"}}                      the document has a value
    {"must": [...], "should": [...], "must_not": [...]}   all of, at least one of, none of (nested up to 8 deep)

:func:`parse` checks a filter against an index's schema once per request; every mistake is an :class:`InvalidFilter`
whose ``loc`` is the path of the offending part (``filter.must[1].range.year``). A parsed filter compiles, per
segment, to the set of documents it keeps (:meth:`Clause.mask`), from the segment's columns: keyword values are looked
up in the segment's dictionary, ranges are slices of the segment's value order. Masks are cached on the segment, by
filter and deletes, so a filter a client repeats costs its compilation once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lsr.errors import InvalidInput
from lsr.index.metadata import Schema, expected, parse_datetime

MAX_DEPTH = 8
MAX_CLAUSES = 256
MAX_TERMS = 1024
RANGE_OPERATORS = ("gt", "gte", "lt", "lte")
BOOL_KEYS = ("must", "should", "must_not")
LEAF_KEYS = ("term", "terms", "range", "exists")
SPARSE_BELOW = 32  # a mask keeping under 1/32 of a segment's documents is held as sorted document numbers


class InvalidFilter(InvalidInput):
    """A filter that does not fit the language or the index's schema; ``loc`` is the path of the offending part."""

    def __init__(self, loc: tuple, message: str) -> None:
        self.loc = tuple(loc)
        super().__init__(f"{path_text(self.loc)}: {message}")


def path_text(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- masks -------------------------------------------------------------------------------------------------------------
class Mask:
    """The documents of one segment a clause keeps: a bool array, or sorted document numbers when few."""

    __slots__ = ("n", "dense", "rows")

    def __init__(self, n: int, dense: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        self.n, self.dense, self.rows = n, dense, rows
        if rows is not None and dense is None and len(rows) * SPARSE_BELOW >= n and n:
            self.dense, self.rows = self._to_dense(rows), None

    @classmethod
    def none(cls, n: int) -> Mask:
        return cls(n, rows=np.zeros(0, dtype=np.int64))

    @classmethod
    def every(cls, n: int) -> Mask:
        return cls(n, dense=np.ones(n, dtype=bool))

    def _to_dense(self, rows: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        out[rows] = True
        return out

    def as_dense(self) -> np.ndarray:
        return self.dense if self.dense is not None else self._to_dense(self.rows)

    def count(self) -> int:
        return int(np.count_nonzero(self.dense)) if self.dense is not None else len(self.rows)

    def __and__(self, other: Mask) -> Mask:
        if self.rows is not None and other.rows is not None:
            return Mask(self.n, rows=np.intersect1d(self.rows, other.rows, assume_unique=True))
        if self.rows is not None or other.rows is not None:
            rows, dense = (self.rows, other.dense) if self.rows is not None else (other.rows, self.dense)
            return Mask(self.n, rows=rows[dense[rows]])
        return Mask(self.n, dense=self.dense & other.dense)

    def __or__(self, other: Mask) -> Mask:
        if self.rows is not None and other.rows is not None:
            return Mask(self.n, rows=np.union1d(self.rows, other.rows))
        return Mask(self.n, dense=self.as_dense() | other.as_dense())

    def __invert__(self) -> Mask:
        return Mask(self.n, dense=~self.as_dense())


# -- clauses -----------------------------------------------------------------------------------------------------------
class Clause:
    key: str  # canonical text of the clause: equal filters share cached masks

    def mask(self, metadata, n: int) -> Mask:  # pragma: no cover - every clause defines it
        raise NotImplementedError


@dataclass(frozen=True)
class Term(Clause):
    field: str
    kind: str
    values: tuple  # one (term) or several (terms): any of them
    key: str

    def mask(self, metadata, n: int) -> Mask:
        column = metadata.column(self.field, self.kind)
        if column is None:
            return Mask.none(n)
        if len(self.values) > 1 and column.stored in ("keyword", "keywords"):
            return _terms_mask(column, self.values, n)  # one pass for all the values, not one union each
        out = Mask.none(n)
        for value in self.values:
            out = out | _term_mask(column, value, n)
        return out


def _terms_mask(column, values: tuple, n: int) -> Mask:
    codes = np.array([c for c in (column.code_of(v) for v in values) if c >= 0], dtype=np.int64)
    if not len(codes):
        return Mask.none(n)
    if column.stored == "keyword":  # each code's documents are one slice of the code order; the slices are disjoint
        starts, order = column.array("starts"), column.array("order")
        rows = np.concatenate([np.asarray(order[starts[c]:starts[c + 1]], dtype=np.int64) for c in codes])
        return Mask(n, rows=np.sort(rows))
    offsets = column.array("offsets")
    entries = np.flatnonzero(np.isin(column.array("codes"), codes))
    return Mask(n, rows=np.unique(np.searchsorted(offsets, entries, side="right") - 1))


def _term_mask(column, value, n: int) -> Mask:
    if column.stored == "keyword":
        code = column.code_of(value)
        if code < 0:
            return Mask.none(n)
        starts = column.array("starts")
        return Mask(n, rows=np.asarray(column.array("order")[starts[code]:starts[code + 1]], dtype=np.int64))
    if column.stored == "keywords":
        code = column.code_of(value)
        if code < 0:
            return Mask.none(n)
        offsets = column.array("offsets")
        entries = np.flatnonzero(column.array("codes") == code)
        return Mask(n, rows=np.unique(np.searchsorted(offsets, entries, side="right") - 1))
    if column.stored == "boolean":
        return Mask(n, dense=(column.array("values") == int(value)) & column.array("present"))
    return _range_mask(column, value, True, value, True, n)  # integer: a one-value range


@dataclass(frozen=True)
class Range(Clause):
    field: str
    kind: str
    low: float | int | None
    low_inclusive: bool
    high: float | int | None
    high_inclusive: bool
    key: str

    def mask(self, metadata, n: int) -> Mask:
        column = metadata.column(self.field, self.kind)
        if column is None:
            return Mask.none(n)
        return _range_mask(column, self.low, self.low_inclusive, self.high, self.high_inclusive, n)


def _range_mask(column, low, low_inclusive: bool, high, high_inclusive: bool, n: int) -> Mask:
    """A slice of the documents in value order; as sorted document numbers when few, else as a bool array."""
    order = column.array("sorted")
    values = column.array("values")
    ordered = column._cache.get("ordered")
    if ordered is None:
        ordered = column._cache["ordered"] = np.ascontiguousarray(values[order])
    start = 0 if low is None else int(np.searchsorted(ordered, low, side="left" if low_inclusive else "right"))
    end = len(ordered) if high is None else int(np.searchsorted(ordered, high,
                                                                side="right" if high_inclusive else "left"))
    if end <= start:
        return Mask.none(n)
    picked = order[start:end]
    if (end - start) * SPARSE_BELOW < n:
        return Mask(n, rows=np.sort(picked).astype(np.int64))
    dense = np.zeros(n, dtype=bool)
    dense[picked] = True
    return Mask(n, dense=dense)


@dataclass(frozen=True)
class Exists(Clause):
    field: str
    kind: str
    key: str

    def mask(self, metadata, n: int) -> Mask:
        column = metadata.column(self.field, self.kind)
        if column is None:
            return Mask.none(n)
        if column.stored == "keyword":
            return Mask(n, dense=column.array("codes") >= 0)
        if column.stored == "keywords":
            return Mask(n, dense=np.diff(column.array("offsets")) > 0)
        return Mask(n, dense=np.asarray(column.array("present"), dtype=bool))


@dataclass(frozen=True)
class Bool(Clause):
    must: tuple
    should: tuple
    must_not: tuple
    key: str

    def mask(self, metadata, n: int) -> Mask:
        out = None
        for clause in self.must:
            out = clause.mask(metadata, n) if out is None else out & clause.mask(metadata, n)
        if self.should:
            any_of = Mask.none(n)
            for clause in self.should:
                any_of = any_of | clause.mask(metadata, n)
            out = any_of if out is None else out & any_of
        if self.must_not:
            none_of = Mask.none(n)
            for clause in self.must_not:
                none_of = none_of | clause.mask(metadata, n)
            out = (~none_of) if out is None else out & ~none_of
        return out


# -- parsing -----------------------------------------------------------------------------------------------------------
def parse(spec, schema: Schema | None, loc: tuple = ("filter",)) -> Clause | None:
    """The filter ``spec`` (a JSON object, or a JSON string) checked against ``schema``; None for no filter."""
    if spec is None or isinstance(spec, Clause):
        return spec
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as exc:
            raise InvalidFilter(loc, f"not valid JSON ({exc})") from None
    counter = [0]
    return _clause(spec, schema or Schema(), loc, 1, counter)


def _clause(spec, schema: Schema, loc: tuple, depth: int, counter: list) -> Clause:
    counter[0] += 1
    if counter[0] > MAX_CLAUSES:
        raise InvalidFilter(loc, f"more than {MAX_CLAUSES} clauses in one filter")
    if depth > MAX_DEPTH:
        raise InvalidFilter(loc, f"filters nest at most {MAX_DEPTH} deep")
    if not isinstance(spec, Mapping) or not spec:
        raise InvalidFilter(loc, "a clause is a JSON object with one of " + ", ".join(LEAF_KEYS) + " or some of "
                                 + ", ".join(BOOL_KEYS))
    keys = list(spec)
    unknown = [k for k in keys if k not in LEAF_KEYS + BOOL_KEYS]
    if unknown:
        raise InvalidFilter(loc + (unknown[0],), f"unknown clause {unknown[0]!r}; clauses: "
                                                 + ", ".join(LEAF_KEYS + BOOL_KEYS))
    leaves = [k for k in keys if k in LEAF_KEYS]
    if leaves and len(keys) > 1:
        raise InvalidFilter(loc, f"{leaves[0]!r} stands alone in its clause; combine clauses with must/should")
    if leaves:
        return _leaf(leaves[0], spec[leaves[0]], schema, loc + (leaves[0],))
    parts = {}
    for key in BOOL_KEYS:
        items = spec.get(key, [])
        if isinstance(items, Mapping):
            items = [items]
        if not isinstance(items, list):
            raise InvalidFilter(loc + (key,), "a list of clauses")
        parts[key] = tuple(_clause(item, schema, loc + (key, i), depth + 1, counter) for i, item in enumerate(items))
    if not any(parts.values()):
        raise InvalidFilter(loc, "an empty clause; give at least one clause in must, should or must_not")
    key = "{" + ",".join(f'"{k}":[' + ",".join(c.key for c in parts[k]) + "]" for k in BOOL_KEYS if parts[k]) + "}"
    return Bool(parts["must"], parts["should"], parts["must_not"], key)


def _field(body, schema: Schema, loc: tuple, what: str) -> tuple[str, object]:
    if not isinstance(body, Mapping) or len(body) != 1:
        raise InvalidFilter(loc, f"{what} takes one field: {{\"FIELD\": ...}}")
    (name, value), = body.items()
    if name not in schema.fields:
        known = schema.describe()
        raise InvalidFilter(loc + (name,), f"unknown field {name!r}; this index's metadata: {known}")
    return name, value


def _leaf(operator: str, body, schema: Schema, loc: tuple) -> Clause:
    if operator == "exists":
        if not isinstance(body, Mapping) or set(body) != {"field"} or not isinstance(body["field"], str):
            raise InvalidFilter(loc, 'exists takes {"field": "NAME"}')
        name = body["field"]
        if name not in schema.fields:
            raise InvalidFilter(loc + ("field",), f"unknown field {name!r}; this index's metadata: {schema.describe()}")
        return Exists(name, schema.fields[name], f'{{"exists":{json.dumps(name)}}}')
    name, value = _field(body, schema, loc, operator)
    kind = schema.fields[name]
    here = loc + (name,)
    if operator == "range":
        return _range(name, kind, value, here)
    if kind in ("float", "datetime"):
        raise InvalidFilter(here, f"{operator} does not apply to the {kind} field {name!r}; use range")
    if operator == "term":
        values = (_value(value, kind, here),)
    else:
        if not isinstance(value, list) or not value:
            raise InvalidFilter(here, "terms takes a non-empty list of values")
        if len(value) > MAX_TERMS:
            raise InvalidFilter(here, f"terms takes at most {MAX_TERMS} values, got {len(value)}")
        values = tuple(dict.fromkeys(_value(v, kind, here + (i,)) for i, v in enumerate(value)))
    return Term(name, kind, values, json.dumps({"t": [name, list(values)]}))


def _value(value, kind: str, loc: tuple):
    scalar = "keyword" if kind == "keywords" else kind
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidFilter(loc, f"{value} is not a finite number")
    ok = (scalar == "keyword" and isinstance(value, str)) or (scalar == "boolean" and isinstance(value, bool)) or \
        (scalar == "integer" and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise InvalidFilter(loc, f"{json.dumps(value) if _jsonable(value) else repr(value)} is not "
                                 f"{expected(scalar)} (the field is {kind})")
    if scalar == "integer" and not -(2**63) <= value < 2**63:
        raise InvalidFilter(loc, f"{value} is outside the 64-bit integers a {kind} field holds")
    return value


def _jsonable(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def _range(name: str, kind: str, body, loc: tuple) -> Range:
    if kind not in ("integer", "float", "datetime"):
        raise InvalidFilter(loc, f"range applies to integer, float and datetime fields; {name!r} is {kind}; use term "
                                 "or terms")
    if not isinstance(body, Mapping) or not body:
        raise InvalidFilter(loc, "range takes bounds: {" + ", ".join(f'"{o}": ...' for o in RANGE_OPERATORS) + "}")
    bounds = {}
    for operator, value in body.items():
        here = loc + (operator,)
        if operator not in RANGE_OPERATORS:
            raise InvalidFilter(here, f"unknown range operator {operator!r}; use {', '.join(RANGE_OPERATORS)}")
        bounds[operator] = _bound(value, kind, here)
    if "gt" in bounds and "gte" in bounds or "lt" in bounds and "lte" in bounds:
        raise InvalidFilter(loc, "give one lower bound (gt or gte) and one upper bound (lt or lte)")
    low = bounds.get("gte", bounds.get("gt"))
    high = bounds.get("lte", bounds.get("lt"))
    key = json.dumps({"r": [name, kind, {k: bounds[k] for k in sorted(bounds)}]})
    return Range(name, kind, low, "gte" in bounds, high, "lte" in bounds, key)


def _bound(value, kind: str, loc: tuple):
    if kind == "datetime":
        try:
            return parse_datetime(value)
        except (ValueError, TypeError):
            raise InvalidFilter(loc, f"{json.dumps(value) if _jsonable(value) else repr(value)} is not "
                                     f"{expected('datetime')}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidFilter(loc, f"{json.dumps(value) if _jsonable(value) else repr(value)} is not a number")
    if not math.isfinite(float(value)):
        raise InvalidFilter(loc, f"{value} is not a finite number")
    if kind == "integer" and isinstance(value, float):
        return value  # a fractional bound on an integer field is fine (numpy compares across types)
    return value
