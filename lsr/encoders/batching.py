"""Batching helpers shared by every encoder: length-sorted batches, padding, and dense tensors to sparse batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from lsr.errors import InvalidInput
from lsr.sparse import SparseBatch


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Indices grouped into batches of similar length (longest first), so padding is small."""
    if batch_size < 1:
        raise InvalidInput(f"batch size must be >= 1, got {batch_size}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into ``input_ids`` and ``attention_mask`` tensors."""
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for i, ids in enumerate(token_ids):
        input_ids[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        mask[i, : len(ids)] = 1
    return input_ids.to(device), mask.to(device)



def sparse_from_tensor(dense: torch.Tensor) -> SparseBatch:
    """Keep the strictly positive entries of a (batch, vocabulary) tensor."""
    dense = dense.detach().float().cpu()
    rows, cols = torch.nonzero(dense > 0, as_tuple=True)
    counts = torch.bincount(rows, minlength=dense.shape[0]).numpy()
    indptr = np.zeros(dense.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return SparseBatch(indptr, cols.numpy().astype(np.int32), dense[rows, cols].numpy().astype(np.float32))
