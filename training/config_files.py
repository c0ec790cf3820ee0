"""Settings files shared by `lsr train --config` and `lsr serve --config`: YAML (.yaml/.yml) or JSON, one mapping."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


def read_mapping(path: str | Path, known: Iterable[str], what: str = "settings") -> dict:
    """The file's mapping; a missing file, a non-mapping or an unknown key is an error naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of {what}")
    known = set(known)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown settings {unknown}; known: {sorted(known)}")
    return data
