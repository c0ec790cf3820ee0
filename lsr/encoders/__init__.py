"""Encoders and the encoder directory contract. Entry point: :func:`load_encoder`.

Encoders import torch and transformers when they first need a model; nothing in :mod:`lsr.index` or
:mod:`lsr.retrievers` imports this package at module level, and an index's inference-free encoder answers queries
with neither (:mod:`lsr.encoders.tokenizer`), so a server that only searches one never imports them.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from lsr.encoders.config import ENCODER_CONFIG_FILE, KINDS, SPARSE_KINDS, EncoderConfig, read_json_object
from lsr.encoders.sparse import InferenceFreeEncoder, SparseEncoder, SpladeEncoder, idf_table_to_array
from lsr.encoders.tokenizer import TOKENIZER_FILE, QueryTokenizer
from lsr.errors import EncoderError, MissingFile

if TYPE_CHECKING:
    from lsr.encoders.dense import DenseEncoder

__all__ = [
    "ENCODER_CONFIG_FILE",
    "KINDS",
    "SPARSE_KINDS",
    "DenseEncoder",
    "EncoderConfig",
    "InferenceFreeEncoder",
    "SparseEncoder",
    "SpladeEncoder",
    "default_encoder_directory",
    "load_encoder",
]

DEFAULT_ENCODER_ENV = "LSR_DEFAULT_ENCODER"


def __getattr__(name: str):
    if name == "DenseEncoder":  # (imports torch: only when asked for)
        from lsr.encoders.dense import DenseEncoder

        return DenseEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _quiet_transformers():
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def default_encoder_directory() -> Path:
    """The shipped default encoder (package data: ``lsr/models/inference-free-default``, wherever lsr is
    installed), or the directory named by ``LSR_DEFAULT_ENCODER``."""
    configured = os.environ.get(DEFAULT_ENCODER_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "models" / "inference-free-default"


def load_encoder(
    path: str | Path | None = None,
    kind: str | None = None,
    idf: str | Path | None = None,
    device: str | None = None,
    dtype: str = "auto",
    max_query_length: int | None = None,
    max_document_length: int | None = None,
    identity: str | None = None,
) -> SparseEncoder | DenseEncoder:
    """Load an encoder directory (``path=None``: the shipped default): lsr's own, a sentence-transformers
    ``SparseEncoder`` directory, or OpenSearch's classic ``*ForMaskedLM`` + ``idf.json`` (the layout is detected; see
    :mod:`lsr.encoders.interop`), or a plain Hugging Face directory given ``kind`` (and ``idf`` for inference-free).
    A hub id works where the hub is reachable; tests and the default run use local folders.

    ``identity``: the identity an index records for this directory (its stored encoder). An inference-free encoder
    then loads its model only when a document is first encoded (queries need the tokenizer and the IDF table alone,
    and the model's code is most of a server's start), and checks the weights against ``identity`` when it does; its
    queries are tokenized from ``tokenizer.json`` without transformers (or torch), which load with the model."""
    if path is None:
        path = default_encoder_directory()
        if not Path(path).exists():
            raise MissingFile(f"the default encoder {path} is missing (a broken install, or {DEFAULT_ENCODER_ENV} "
                              "points nowhere); pass an encoder directory")
    directory = Path(path)
    looks_local = directory.is_absolute() or str(path).startswith(".") or len(directory.parts) != 2
    if not directory.exists() and looks_local:
        raise MissingFile(f"encoder directory {path} does not exist (expected an lsr encoder directory, "
                          "a Hugging Face model directory, or a hub id such as org/name)")
    from lsr.encoders.interop import check_query_tokenizer, read_layout

    layout = read_layout(directory) if directory.exists() else None
    if layout is not None and layout.name == "opensearch" and (kind is not None or idf is not None):
        layout = None  # --kind/--idf given: a plain Hugging Face directory with lsr's defaults, as before 0.3
    model_dir = layout.model_dir if layout is not None else directory
    if layout is not None and layout.name == "lsr":
        config = EncoderConfig.load(directory)
    elif layout is not None and layout.config is not None:  # sentence-transformers or OpenSearch's classic layout
        config = layout.config
    elif kind is None:
        raise EncoderError(
            f"{directory} is in no layout lsr reads by itself (lsr's {ENCODER_CONFIG_FILE}, sentence-transformers' "
            "modules.json, or OpenSearch's *ForMaskedLM + idf.json). For a plain Hugging Face model pass --kind "
            f"({'|'.join(KINDS)}) and, for inference-free, --idf FILE"
        )
    else:
        config = EncoderConfig(kind=kind, pooling="mean" if kind == "dense" else "max",
                               extra={"base_model": str(path)})
    if kind is not None and kind != config.kind:
        raise EncoderError(f"{directory} is a {config.kind!r} encoder but --kind {kind} was given; drop --kind")
    if max_query_length is not None:
        config.max_query_length = max_query_length
    if max_document_length is not None:
        config.max_document_length = max_document_length

    def load_tokenizer():
        return _quiet_transformers().AutoTokenizer.from_pretrained(str(model_dir))

    def load_model():
        return _quiet_transformers().AutoModelForMaskedLM.from_pretrained(str(model_dir)).float()

    lazy_model = config.kind == "inference-free" and identity is not None
    if lazy_model and (model_dir / TOKENIZER_FILE).exists() and (layout is None or layout.query_weights is None):
        tokenizer = QueryTokenizer(model_dir, load_tokenizer)  # (no transformers, no torch until a document comes)
    else:
        tokenizer = load_tokenizer()
    if config.kind == "dense":
        from lsr.encoders.dense import DenseEncoder

        model = _quiet_transformers().AutoModel.from_pretrained(str(model_dir)).float()  # fp16 files compute in fp32
        _fit_window(config, model.config, directory, max_query_length, max_document_length)
        return DenseEncoder(config, model, tokenizer, device=device, dtype=dtype)

    if not lazy_model:
        model = load_model()
        model_config = model.config
    else:  # the configuration alone now; the weights on the first document (see above)
        model, model_config = load_model, _model_config(model_dir)
    _fit_window(config, model_config, directory, max_query_length, max_document_length)
    if config.kind == "splade":
        return SpladeEncoder(config, model, tokenizer, device=device, dtype=dtype)

    vocab_size = int(model_config.vocab_size)
    lazy = {"vocab_size": vocab_size, "identity": identity} if callable(model) and not hasattr(model, "config") else {}
    if layout is not None and layout.query_tokenizer_dir is not None and max_query_length is None:
        # the SparseStaticEmbedding's window holds no special tokens; lsr's max_query_length counts them
        config.max_query_length += tokenizer.num_special_tokens_to_add()
    if layout is not None and layout.query_weights is not None and idf is None:  # sentence-transformers' table
        check_query_tokenizer(layout.query_tokenizer_dir, tokenizer, directory)
        if len(layout.query_weights) != vocab_size:
            raise EncoderError(f"{layout.query_tokenizer_dir}: the query table has {len(layout.query_weights)} "
                               f"weights but the document model's vocabulary is {vocab_size}: they come from "
                               "different models")
        config.idf_file = "idf.json"
        return InferenceFreeEncoder(config, model, tokenizer, device=device, dtype=dtype, idf=layout.query_weights,
                                    **lazy)
    if idf is not None:
        idf_path = Path(idf)
    elif layout is not None and layout.idf_file is not None:
        idf_path = layout.idf_file
    else:
        idf_path = directory / config.idf_file if config.idf_file else None
    if idf_path is None:
        raise EncoderError("an inference-free encoder needs an IDF table: pass --idf FILE (token -> weight JSON)")
    if not idf_path.exists():
        raise MissingFile(f"IDF table {idf_path} does not exist; compute one with `lsr idf` or pass --idf FILE")
    table = read_json_object(idf_path, "a JSON object {token: weight}")
    idf_array = idf_table_to_array(table, tokenizer, vocab_size, str(idf_path))
    config.idf_file = "idf.json"
    return InferenceFreeEncoder(config, model, tokenizer, device=device, dtype=dtype, idf=idf_array, **lazy)


def _model_config(model_dir: Path) -> SimpleNamespace:
    """What lsr reads of a model's ``config.json`` before its weights load (vocabulary, positions), as JSON: loading
    it through transformers imports torch."""
    path = model_dir / "config.json"
    if not path.exists():
        raise MissingFile(f"{path} is missing: an encoder folder holds its model's config.json")
    data = read_json_object(path, "a model configuration object")
    if not isinstance(data.get("vocab_size"), int):  # (nested: transformers knows)
        return _quiet_transformers().AutoConfig.from_pretrained(str(model_dir))
    return SimpleNamespace(vocab_size=data["vocab_size"], max_position_embeddings=data.get("max_position_embeddings"))


def _fit_window(config, model_config, directory, max_query_length, max_document_length) -> None:
    """Windows no longer than the model's positions: a default is cut to fit; a length asked for that does not fit
    is an error (the model would fail on the first long text)."""
    positions = getattr(model_config, "max_position_embeddings", None)
    if not positions:
        return
    for name, asked in (("max_query_length", max_query_length), ("max_document_length", max_document_length)):
        if getattr(config, name) <= positions:
            continue
        if asked is not None:
            raise EncoderError(f"{name} {asked} is longer than the model in {directory} can read ({positions} "
                               f"positions); pass at most {positions}")
        setattr(config, name, positions)
