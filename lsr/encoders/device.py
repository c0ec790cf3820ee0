"""Device selection shared by encoding and training: CUDA when present, else CPU; ``--device`` overrides."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from lsr.errors import InvalidInput


def resolve_device(device: str | None = None) -> torch.device:
    """Return ``device`` if given, else ``cuda`` when available, else ``cpu`` (and give torch the thread counts
    :func:`lsr.threads.configure` chose, if it was called: every encoder resolves its device before its model runs)."""
    from lsr.threads import apply_to_torch

    apply_to_torch()
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInput(f"--device {device} was requested but CUDA is not available; use --device cpu")
    return resolved


@contextlib.contextmanager
def autocast_for(device: torch.device, dtype: str = "auto") -> Iterator[None]:
    """Mixed precision for inference: bf16 (or fp16) autocast on CUDA, bf16 on CPU only when asked.

    ``dtype`` is ``auto`` (bf16/fp16 on CUDA, fp32 on CPU), ``fp32``, ``bf16`` or ``fp16``.
    """
    if dtype == "auto":
        if device.type != "cuda":
            yield
            return
        dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if dtype == "fp32":
        yield
        return
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    with torch.autocast(device_type=device.type, dtype=torch_dtype):
        yield
