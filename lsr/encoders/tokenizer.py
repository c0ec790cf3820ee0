"""The query tokenizer of an inference-free encoder, read from ``tokenizer.json`` by the ``tokenizers`` library alone.

An inference-free query is its tokens weighted by IDF: no model, so a server that only searches needs neither torch
nor transformers (importing them is most of a restart: about 2.5 s of 5 on 2 cores, because transformers' tokenizer
classes import torch). :class:`QueryTokenizer` answers what query encoding and the encoder's set-up ask of a
tokenizer from the same ``tokenizer.json`` that transformers' fast tokenizer runs, and hands everything else (document
encoding, chunk offsets, saving) to the transformers tokenizer, loaded the first time it is needed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from lsr.encoders.config import read_json_object
from lsr.errors import EncoderError

TOKENIZER_FILE = "tokenizer.json"


class QueryTokenizer:
    """``tokenizer.json`` through ``tokenizers``, for ``add_special_tokens=False`` calls (the query path); any other
    call or attribute goes to ``load_full()`` (the transformers tokenizer of the same folder), loaded once."""

    def __init__(self, directory: str | Path, load_full: Callable[[], object]) -> None:
        from tokenizers import Tokenizer

        directory = Path(directory)
        path = directory / TOKENIZER_FILE
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - the library raises plain Exceptions for a bad file
            raise EncoderError(f"{path} is not a tokenizer file the tokenizers library reads ({exc})") from None
        self._tokenizer.no_truncation()  # (each call says how long; none pads)
        self._tokenizer.no_padding()
        config_path = directory / "tokenizer_config.json"
        config = read_json_object(config_path, "a tokenizer configuration") if config_path.exists() else {}
        self._truncate_left = config.get("truncation_side") == "left"
        added = json.loads(path.read_text()).get("added_tokens") or []
        self.all_special_ids = sorted({token["id"] for token in added if token.get("special")})
        self._special_count = (len(self._tokenizer.encode("a").ids)
                               - len(self._tokenizer.encode("a", add_special_tokens=False).ids))
        self._load_full = load_full
        self._full = None
        self._lock = threading.Lock()

    @property
    def full(self):
        """The transformers tokenizer of this folder (loaded now if it was not yet)."""
        if self._full is None:
            with self._lock:
                if self._full is None:
                    self._full = self._load_full()
        return self._full

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.full, name)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self.full.num_special_tokens_to_add(pair) if pair else self._special_count

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        return [self._tokenizer.id_to_token(int(i)) for i in ids]

    def __call__(self, texts, add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, **options):
        if (add_special_tokens or options or not isinstance(texts, Sequence) or isinstance(texts, str)
                or (truncation and max_length is None)):
            return self.full(texts, add_special_tokens=add_special_tokens, truncation=truncation,
                             max_length=max_length, **options)
        ids = [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        if truncation and max_length is not None:
            ids = [row[len(row) - max_length:] if self._truncate_left and len(row) > max_length else row[:max_length]
                   for row in ids]
        return {"input_ids": ids}

