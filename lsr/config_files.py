"""Settings files shared by `lsr train --config` and `lsr serve --config`: YAML (.yaml/.yml) or JSON, one mapping."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from lsr.errors import InvalidInput, MissingFile


def read_mapping(path: str | Path, known: Iterable[str], what: str = "settings") -> dict:
    """The file's mapping; a missing file, a non-mapping or an unknown key is an error naming the file."""
    path = Path(path)
    if not path.exists():
        raise MissingFile(f"{what} file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise InvalidInput(f"{path}: not valid YAML ({exc})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: expected a mapping of {what}")
    known = set(known)
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInput(f"{path}: unknown settings {unknown}; known: {sorted(known)}")
    return data
