"""The encoder directory contract: ``lsr_encoder.json`` (:class:`EncoderConfig`), saving, and weight hashing.

An *encoder directory* is a Hugging Face directory (``config.json``, ``model.safetensors``, tokenizer files) plus
``lsr_encoder.json`` (this module's :class:`EncoderConfig`) and, for inference-free encoders, an IDF table file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lsr.errors import EncoderError

ENCODER_CONFIG_FILE = "lsr_encoder.json"
ENCODER_FORMAT_VERSION = 1
SPARSE_KINDS = ("splade", "inference-free")
KINDS = (*SPARSE_KINDS, "dense")


@dataclass
class EncoderConfig:
    """What ``lsr_encoder.json`` holds; every field round-trips through save/load."""

    kind: str
    max_query_length: int = 64
    max_document_length: int = 256
    pooling: str = "max"  # "max" for sparse (SPLADE), "mean" for dense
    activation: str = "log1p_relu"  # sparse only: log(1 + ReLU(logit)), applied after the max
    idf_file: str | None = None  # inference-free only: the query-side {token: weight} table
    format_version: int = ENCODER_FORMAT_VERSION
    extra: dict = field(default_factory=dict)  # free-form provenance (base model, training run)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EncoderError(f"unknown encoder kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.format_version > ENCODER_FORMAT_VERSION:
            raise EncoderError(
                f"encoder format version {self.format_version} is newer than this lsr understands "
                f"({ENCODER_FORMAT_VERSION}); upgrade lsr"
            )
        for name in ("max_query_length", "max_document_length"):
            if getattr(self, name) < 1:
                raise EncoderError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def load(cls, directory: Path) -> EncoderConfig:
        data = json.loads((directory / ENCODER_CONFIG_FILE).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise EncoderError(f"{directory / ENCODER_CONFIG_FILE}: unknown keys {sorted(unknown)}")
        return cls(**data)

    def save(self, directory: Path) -> None:
        (directory / ENCODER_CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")


def hash_weights(digest: hashlib._Hash, model: torch.nn.Module) -> None:
    """Feed every tensor of ``model`` (sorted by name, as float32 bytes) into ``digest``: identity, not file format."""
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())


def save_encoder_directory(directory: str | Path, model, tokenizer, config: EncoderConfig,
                           extra_files: Callable[[Path], None] | None = None) -> Path:
    """Write model (safetensors), tokenizer, ``lsr_encoder.json`` and any extra files into a temporary sibling,
    then put it in place, so a failed save never leaves a half-written encoder directory."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp-save")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    import transformers

    transformers.utils.logging.disable_progress_bar()  # ("Writing model shards": noise in every index build)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if extra_files is not None:
        extra_files(tmp)
    config.save(tmp)
    umask = os.umask(0)
    os.umask(umask)
    for path in tmp.rglob("*"):  # safetensors writes 0600; an encoder directory is meant to be shared (images, workers)
        if path.is_file():
            path.chmod(0o666 & ~umask)
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory
