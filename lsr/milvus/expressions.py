"""A parsed filter (:mod:`lsr.filters`) as a Milvus boolean expression over the collection's ``m_NAME`` fields.

Milvus compares with SQL's three-valued logic: ``not (m_tenant == "a")`` leaves out documents that have no tenant,
where lsr's ``must_not`` keeps them. So every leaf is guarded (``(m_tenant is not null and m_tenant == "a")``): a
missing value makes a leaf false, never unknown, and ``not`` then means what it means natively.
"""

from __future__ import annotations

import json
import math

from lsr.filters import Bool, Clause, Exists, Range, Term
from lsr.milvus.collection import FIELD_PREFIX

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # an INT64 field's range: Milvus parses no literal outside it


def to_expression(clause: Clause) -> str:
    if isinstance(clause, Bool):
        parts = [f"({to_expression(c)})" for c in clause.must]
        if clause.should:
            parts.append("(" + " or ".join(f"({to_expression(c)})" for c in clause.should) + ")")
        if clause.must_not:
            parts.append("not (" + " or ".join(f"({to_expression(c)})" for c in clause.must_not) + ")")
        return " and ".join(parts)
    field = FIELD_PREFIX + clause.field
    if isinstance(clause, Exists):
        return f"{field} is not null"
    if isinstance(clause, Term):
        values = [_literal(v) for v in clause.values]
        if clause.kind == "keywords":
            test = (f"ARRAY_CONTAINS({field}, {values[0]})" if len(values) == 1
                    else f"ARRAY_CONTAINS_ANY({field}, [{', '.join(values)}])")
        else:
            test = f"{field} == {values[0]}" if len(values) == 1 else f"{field} in [{', '.join(values)}]"
        return f"{field} is not null and {test}"
    if isinstance(clause, Range):
        tests = [f"{field} is not null"]
        low, high = clause.low, clause.high
        low_inclusive, high_inclusive = clause.low_inclusive, clause.high_inclusive
        if clause.kind in ("integer", "datetime"):  # INT64 fields: integer bounds (a fraction rounds inwards)
            if low is not None and float(low) != math.floor(float(low)):
                low, low_inclusive = math.ceil(float(low)), True
            if high is not None and float(high) != math.floor(float(high)):
                high, high_inclusive = math.floor(float(high)), True
            low = int(low) if low is not None else None
            high = int(high) if high is not None else None
            if low is not None and low < INT64_MIN:  # every value is above it: no lower bound
                low = None
            elif low is not None and low > INT64_MAX:  # no value is above it: x > INT64_MAX, always false
                low, low_inclusive = INT64_MAX, False
            if high is not None and high > INT64_MAX:
                high = None
            elif high is not None and high < INT64_MIN:
                high, high_inclusive = INT64_MIN, False
        if low is not None:
            tests.append(f"{field} {'>=' if low_inclusive else '>'} {_literal(low)}")
        if high is not None:
            tests.append(f"{field} {'<=' if high_inclusive else '<'} {_literal(high)}")
        return " and ".join(tests)
    raise TypeError(f"no Milvus expression for {type(clause).__name__}")


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # double-quoted, backslash escapes; no surrogate pairs
    if isinstance(value, float):
        return repr(value)
    return str(int(value))
