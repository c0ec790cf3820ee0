"""Dense sentence encoder: mean pooling over non-padding tokens, then L2 normalization (sentence-transformers style)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lsr.encoders.batching import length_sorted_batches, pad_batch
from lsr.encoders.config import EncoderConfig, hash_weights, save_encoder_directory
from lsr.encoders.device import autocast_for, resolve_device
from lsr.encoders.sparse import Progress


class DenseEncoder:
    """``encode_documents`` / ``encode_queries`` return float32 (n, dim) arrays of unit-norm rows, in input order."""

    def __init__(self, config: EncoderConfig, model: torch.nn.Module, tokenizer, device: str | None = None,
                 dtype: str = "auto") -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.device = resolve_device(device)
        self.dtype = dtype
        self.model = model.to(self.device).eval()
        self.dim = int(model.config.hidden_size)

    @torch.inference_mode()
    def _encode(self, texts: Sequence[str], max_length: int, batch_size: int, progress: Progress | None) -> np.ndarray:
        token_ids = self.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for batch in length_sorted_batches([len(ids) for ids in token_ids], batch_size):
            input_ids, mask = pad_batch([token_ids[i] for i in batch], self.tokenizer.pad_token_id, self.device)
            with autocast_for(self.device, self.dtype):
                hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            hidden = hidden.float() * mask.unsqueeze(-1)
            mean = hidden.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
            out[batch] = torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()
            if progress is not None:
                progress(len(batch))
        return out

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32, progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, self.config.max_document_length, batch_size, progress)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self._encode(texts, self.config.max_query_length, batch_size, None)

    def identity(self) -> str:
        digest = hashlib.sha256(self.config.kind.encode())
        hash_weights(digest, self.model)
        return digest.hexdigest()[:16]

    def save(self, directory: str | Path) -> Path:
        return save_encoder_directory(directory, self.model, self.tokenizer, self.config)
