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
from typing import TYPE_CHECKING

from lsr.errors import EncoderError

if TYPE_CHECKING:
    import torch

ENCODER_CONFIG_FILE = "lsr_encoder.json"
ENCODER_FORMAT_VERSION = 1  # what an encoder computing as lsr 0.2 did is written as
READABLE_FORMAT_VERSION = 2  # 2: sum pooling, the double-log activation or kept special tokens (lsr 0.3)
SPARSE_KINDS = ("splade", "inference-free")
KINDS = (*SPARSE_KINDS, "dense")
# Sparse activations, applied to an MLM logit x: log(1 + ReLU(x)) (SPLADE; sentence-transformers calls it "relu"),
# and log(1 + log(1 + ReLU(x))) (OpenSearch's v3 models; sentence-transformers' "log1p_relu").
ACTIVATIONS = ("log1p_relu", "log1p_log1p_relu")
SPARSE_POOLINGS = ("max", "sum")  # over token positions: max (SPLADE v2 and after) or sum (SPLADE v1)


@dataclass
class EncoderConfig:
    """What ``lsr_encoder.json`` holds; every field round-trips through save/load."""

    kind: str
    max_query_length: int = 64
    max_document_length: int = 256
    pooling: str = "max"  # sparse: "max" (SPLADE v2) or "sum" over positions; dense: "mean"
    activation: str = "log1p_relu"  # sparse only: one of ACTIVATIONS (log(1 + ReLU(logit)) by default)
    idf_file: str | None = None  # inference-free only: the query-side {token: weight} table
    zero_special_tokens: bool = True  # sparse: the special tokens' dimensions ([CLS], [SEP], ...) weigh 0
    format_version: int = ENCODER_FORMAT_VERSION
    extra: dict = field(default_factory=dict)  # free-form provenance (base model, training run)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EncoderError(f"unknown encoder kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.format_version > READABLE_FORMAT_VERSION:
            raise EncoderError(
                f"encoder format version {self.format_version} is newer than this lsr understands "
                f"({READABLE_FORMAT_VERSION}); upgrade lsr"
            )
        if self.kind in SPARSE_KINDS:
            if self.activation not in ACTIVATIONS:
                raise EncoderError(f"unknown activation {self.activation!r}; lsr computes {', '.join(ACTIVATIONS)}")
            if self.pooling not in SPARSE_POOLINGS:
                raise EncoderError(f"unknown sparse pooling {self.pooling!r}; expected one of {', '.join(SPARSE_POOLINGS)}")
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
        try:
            return cls(**data)
        except EncoderError as exc:
            raise EncoderError(f"{directory / ENCODER_CONFIG_FILE}: {exc}") from None

    def identity_fields(self) -> dict:
        """What of the config determines the vectors (hashed into the encoder identity). A field added after lsr 0.2
        enters only when it differs from its default, so the identity of an existing encoder never changes."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("extra", "idf_file")}
        if fields["zero_special_tokens"]:
            del fields["zero_special_tokens"]
        fields["format_version"] = 1  # the file format is not the vectors (identities predate format 2)
        return fields

    @property
    def computes_as_lsr_0_2(self) -> bool:
        return self.pooling in ("max", "mean") and self.activation == "log1p_relu" and self.zero_special_tokens

    def save(self, directory: Path) -> None:
        """Written so that lsr 0.2 reads an encoder that computes as it did (format 1, no new key), and refuses by
        version, not by an unknown key, one that does not (format 2)."""
        data = dataclasses.asdict(self)
        if self.zero_special_tokens:
            del data["zero_special_tokens"]
        data["format_version"] = ENCODER_FORMAT_VERSION if self.computes_as_lsr_0_2 else READABLE_FORMAT_VERSION
        (directory / ENCODER_CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n")


def read_json_object(path: Path, expected: str) -> dict:
    """A JSON file holding one object (``expected`` says what, for the error), or :class:`EncoderError` naming it."""
    try:
        data = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise EncoderError(f"{path} is not valid JSON ({exc}); expected {expected}") from None
    if not isinstance(data, dict):
        raise EncoderError(f"{path}: expected {expected}, got {type(data).__name__}")
    return data


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
