"""Sparse encoders: SPLADE (siamese) and inference-free (documents through the MLM, queries = tokenizer + IDF)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lsr.encoders.config import EncoderConfig, hash_weights, save_encoder_directory
from lsr.errors import EncoderError
from lsr.sparse import SparseBatch

if TYPE_CHECKING:
    import torch

    from lsr.encoders.mlm import MlmPooler

Progress = Callable[[int], None]  # called with the number of texts just encoded


class SparseEncoder:
    """Common part: tokenizer, MLM document encoding, save/load, identity.

    ``encode_documents`` and ``encode_queries`` return rows in the order of the input texts.
    """

    def __init__(self, config: EncoderConfig, model, tokenizer, device: str | None = None,
                 dtype: str = "auto", idf: np.ndarray | None = None, vocab_size: int | None = None,
                 identity: str | None = None) -> None:
        """``model``: the MLM, or a function that loads it when it is first needed (then ``vocab_size`` and the
        ``identity`` its weights must have are given)."""
        self.config = config
        self.tokenizer = tokenizer
        self._device_asked, self._device = device, None
        self.dtype = dtype
        self._model = self._pooler = None
        self._load_model = None
        self._claimed_identity = identity
        self._lock = threading.Lock()
        if hasattr(model, "state_dict"):
            self._set_model(model)
            self.vocab_size = int(model.config.vocab_size)
        else:
            self._load_model, self.vocab_size = model, int(vocab_size)
        if len(tokenizer) > self.vocab_size:
            raise EncoderError(f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary is {self.vocab_size}")
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        # the dimensions zeroed in every vector: lsr's and OpenSearch's convention; sentence-transformers keeps them
        self.zeroed_ids = self.special_ids if config.zero_special_tokens else []
        self.idf = idf

    @property
    def device(self) -> torch.device:
        """Where the model computes (resolved when first needed: an encoder that only encodes queries by IDF never
        imports torch)."""
        if self._device is None:
            from lsr.encoders.device import resolve_device

            self._device = resolve_device(self._device_asked)
        return self._device

    def _set_model(self, model: torch.nn.Module) -> None:
        self._model = model.to(self.device).eval()
        self._pooler = None

    @property
    def model(self) -> torch.nn.Module:
        """The MLM (loaded now if it was left for later, and checked against the identity the index recorded)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    model = self._load_model().to(self.device).eval()
                    if int(model.config.vocab_size) != self.vocab_size:
                        raise EncoderError(f"the model's vocabulary is {model.config.vocab_size}, its configuration "
                                           f"said {self.vocab_size}")
                    if self._claimed_identity is not None and self._identity_of(model) != self._claimed_identity:
                        raise EncoderError(f"the encoder's weights are not the ones the index recorded (identity "
                                           f"{self._claimed_identity}): its encoder folder was changed; rebuild the "
                                           "index, or restore the folder")
                    self._set_model(model)  # (verified before any thread can see it)
        return self._model

    def follow(self, reload: Callable[[], SparseEncoder]) -> None:
        """What is left to load (the model, the full tokenizer) is loaded from ``reload()``'s folder when needed, not
        from the folder this encoder came from: an encoder shared by several indexes loads from one that still
        exists (a dropped collection's folder may be gone)."""
        if self._model is None and self._load_model is not None:
            self._load_model = lambda: reload()._load_model()
        if hasattr(self.tokenizer, "_load_full"):  # lsr.encoders.tokenizer.QueryTokenizer
            self.tokenizer._load_full = lambda: reload().tokenizer.full

    def prepare(self) -> None:
        """Load what encoding documents needs now (the model, when it was left for the first document)."""
        self.pooler  # noqa: B018 - loads the model and builds the pooler

    @property
    def pooler(self) -> MlmPooler:
        if self._pooler is None:
            model = self.model
            from lsr.encoders.mlm import MlmPooler

            with self._lock:
                if self._pooler is None:
                    self._pooler = MlmPooler(model, self.zeroed_ids, pooling=self.config.pooling,
                                             activation=self.config.activation).to(self.device)
        return self._pooler

    # -- encoding ---------------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]

    def encode_token_ids(self, token_ids: Sequence[Sequence[int]], batch_size: int = 32,
                         progress: Progress | None = None) -> SparseBatch:
        """SPLADE vectors of already-tokenized inputs (special tokens included), in input order."""
        import torch

        from lsr.encoders.batching import length_sorted_batches, pad_batch, sparse_from_tensor

        parts: list[SparseBatch] = []
        order: list[np.ndarray] = []
        with torch.inference_mode():
            for batch in length_sorted_batches([len(ids) for ids in token_ids], batch_size):
                input_ids, mask = pad_batch([token_ids[i] for i in batch], self.tokenizer.pad_token_id, self.device)
                parts.append(sparse_from_tensor(self.pooler(input_ids, mask, self.dtype)))
                order.append(batch)
                if progress is not None:
                    progress(len(batch))
        if not parts:
            return SparseBatch.from_rows([])
        sorted_rows = SparseBatch.concatenate(parts)
        inverse = np.empty(len(token_ids), dtype=np.int64)
        inverse[np.concatenate(order)] = np.arange(len(token_ids))
        return sorted_rows.take(inverse)

    def _encode_mlm(self, texts: Sequence[str], max_length: int, batch_size: int, progress: Progress | None) -> SparseBatch:
        return self.encode_token_ids(self.tokenize(texts, max_length), batch_size, progress)

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32, progress: Progress | None = None) -> SparseBatch:
        return self._encode_mlm(texts, self.config.max_document_length, batch_size, progress)

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many of ``texts`` are longer than the document window (``max_document_length`` tokens, special tokens
        included): encoding cuts them, and only ``--chunk-tokens`` keeps their tail."""
        if not texts:
            return 0
        room = self.config.max_document_length - self.tokenizer.num_special_tokens_to_add()
        lengths = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return sum(len(ids) > room for ids in lengths)

    def encode_chunks(self, texts: Sequence[str], chunk_tokens: int, overlap: int = 0, batch_size: int = 32,
                      progress: Progress | None = None) -> tuple[SparseBatch, np.ndarray, np.ndarray]:
        """Long documents in overlapping windows: each text is cut into chunks of ``chunk_tokens`` tokens (special
        tokens included) that overlap by ``overlap`` tokens; a text that fits is one chunk. Returns the chunks'
        vectors, the text each chunk belongs to, and per chunk (number, first character, end character) in the
        text."""
        room = chunk_tokens - self.tokenizer.num_special_tokens_to_add()
        limit = int(getattr(self.model.config, "max_position_embeddings", chunk_tokens))
        if room < 1 or chunk_tokens > limit or not 0 <= overlap < room:
            raise EncoderError(f"--chunk-tokens {chunk_tokens} and --chunk-overlap {overlap}: a chunk holds at most "
                               f"{limit} tokens (the model's positions) and more than the overlap plus "
                               f"{self.tokenizer.num_special_tokens_to_add()} special tokens")
        encoded = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        prefix, suffix = self._special_wrapping()
        token_ids, row_doc, chunks = [], [], []
        for doc, (ids, offsets) in enumerate(zip(encoded["input_ids"], encoded["offset_mapping"])):
            start, number = 0, 0
            while True:
                window = ids[start:start + room]
                token_ids.append(prefix + list(window) + suffix)
                row_doc.append(doc)
                first, last = (offsets[start][0], offsets[start + len(window) - 1][1]) if window else (0, 0)
                chunks.append((number, first, last))
                if start + room >= len(ids):
                    break
                start += room - overlap
                number += 1
        rows = self.encode_token_ids(token_ids, batch_size)
        if progress is not None:
            progress(len(texts))
        return rows, np.asarray(row_doc, dtype=np.int32), np.asarray(chunks, dtype=np.int32).reshape(-1, 3)

    def _special_wrapping(self) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts before and after a single text (BERT: [CLS] ... [SEP])."""
        plain = self.tokenizer("statin", add_special_tokens=False)["input_ids"]
        wrapped = self.tokenizer("statin", add_special_tokens=True)["input_ids"]
        for start in range(len(wrapped) - len(plain) + 1):
            if wrapped[start:start + len(plain)] == plain:
                return wrapped[:start], wrapped[start + len(plain):]
        raise EncoderError("cannot tell where this tokenizer puts its special tokens; chunking needs a "
                           "single-sequence template such as [CLS] text [SEP]")

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> SparseBatch:
        return self._encode_mlm(texts, self.config.max_query_length, batch_size, None)

    @property
    def needs_model_for_queries(self) -> bool:
        return True

    # -- identity, persistence ----------------------------------------------------------------------------------
    def token_strings(self) -> list[str]:
        """Token string for every id (the JSON view of a vector uses these as keys)."""
        return self.tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))

    def identity(self, computed: bool = False) -> str:
        """A hash of what determines the vectors: config, weights and IDF table (not the file format). Before a
        model left for later is loaded: the identity the index recorded (checked when it loads)."""
        if not computed and self._model is None and self._claimed_identity is not None:
            return self._claimed_identity
        return self._identity_of(self.model)

    def _identity_of(self, model) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps(self.config.identity_fields(), sort_keys=True).encode())
        digest.update(str(self.vocab_size).encode())
        hash_weights(digest, model)
        if self.idf is not None:
            digest.update(np.ascontiguousarray(self.idf, dtype=np.float32).tobytes())
        return digest.hexdigest()[:16]

    def save(self, directory: str | Path) -> Path:
        """Write an encoder directory that :func:`lsr.encoders.load_encoder` reads back exactly."""
        write_idf = None
        if self.idf is not None:
            tokens = self.token_strings()
            table = {tokens[i]: float(self.idf[i]) for i in np.flatnonzero(self.idf > 0)}
            self.config.idf_file = "idf.json"

            def write_idf(tmp: Path) -> None:
                (tmp / "idf.json").write_text(json.dumps(table))

        return save_encoder_directory(directory, self.model, self.tokenizer, self.config, write_idf)


class SpladeEncoder(SparseEncoder):
    """Siamese SPLADE: queries and documents both through the MLM head with max pooling."""


class InferenceFreeEncoder(SparseEncoder):
    """Documents through the MLM head; a query is its distinct tokens weighted by IDF (no model at query time).

    Query side as in OpenSearch's inference-free sparse models (Geng et al., "Towards Competitive Search Relevance
    For Inference-Free Learned Sparse Retrievers", arXiv 2411.04403): q_t = idf_t for each distinct token t of the
    query, special tokens and tokens missing from the table weigh 0, so a query with no known token is empty.
    """

    def __init__(self, config: EncoderConfig, model, tokenizer, device: str | None = None,
                 dtype: str = "auto", idf: np.ndarray | None = None, vocab_size: int | None = None,
                 identity: str | None = None) -> None:
        if idf is None:
            raise EncoderError("an inference-free encoder needs an IDF table: pass --idf FILE (token -> weight JSON)")
        super().__init__(config, model, tokenizer, device, dtype, idf, vocab_size, identity)
        self._query_idf = idf.astype(np.float32).copy()
        self._query_idf[self.zeroed_ids] = 0.0

    @property
    def needs_model_for_queries(self) -> bool:
        return False

    def query_weights(self) -> np.ndarray:
        """The query-side table: one weight per vocabulary id, 0 where a token never counts."""
        return self._query_idf

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> SparseBatch:
        # the tokens a query of max_query_length tokens holds once its special tokens are in: the special tokens
        # themselves would weigh nothing, and left out a literal "[SEP]" in the text is the only special token seen
        room = max(1, self.config.max_query_length - self.tokenizer.num_special_tokens_to_add())
        rows = []
        for ids in self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=room)["input_ids"]:
            unique = np.unique(np.asarray(ids, dtype=np.int32))
            weights = self._query_idf[unique]
            keep = weights > 0
            rows.append((unique[keep], weights[keep]))
        return SparseBatch.from_rows(rows)


def idf_table_to_array(table: dict[str, float], tokenizer, vocab_size: int, source: str) -> np.ndarray:
    """Turn a {token: weight} table into a dense float32 array over the tokenizer's vocabulary. Every token of the
    table must be one of the tokenizer's: a table made for another vocabulary would put its weights on other tokens."""
    idf = np.zeros(vocab_size, dtype=np.float32)
    vocab = tokenizer.get_vocab()
    unknown = []
    for token, weight in table.items():
        token_id = vocab.get(token)
        if token_id is None or token_id >= vocab_size:
            unknown.append(token)
            continue
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            weight = float("nan")
        if not np.isfinite(weight) or weight < 0:
            raise EncoderError(f"{source}: weight {weight} for token {token!r} is not a finite non-negative number")
        idf[token_id] = weight
    if unknown:
        raise EncoderError(f"{source}: {len(unknown)} of its {len(table)} tokens are not in the model's vocabulary "
                           f"(e.g. {', '.join(repr(t) for t in unknown[:3])}): the table was made for another "
                           "tokenizer; compute one for this model with `lsr idf`")
    return idf
