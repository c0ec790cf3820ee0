"""Argument helpers shared by every `lsr` subcommand (kebab-case flags, one definition each)."""

from __future__ import annotations

import argparse

from lsr.retrievers import backend_names


def add_encoder_arguments(parser: argparse.ArgumentParser, required: bool = True, flag: str = "--encoder") -> None:
    from lsr.encoders.config import KINDS

    group = parser.add_argument_group("encoder")
    group.add_argument(flag, required=required, metavar="DIR",
                       help="lsr encoder directory, or a plain Hugging Face directory with --kind"
                            + ("" if required else " (default: the shipped inference-free default)"))
    group.add_argument("--kind", choices=KINDS, help="encoder kind, for a plain Hugging Face directory")
    group.add_argument("--idf", metavar="FILE", help="inference-free: query-side {token: weight} JSON table")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    group.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                       help="encoding precision (auto: bf16/fp16 autocast on CUDA, fp32 on CPU)")
    group.add_argument("--max-query-length", type=int, default=None, help="query truncation in tokens (default 64)")
    group.add_argument("--max-document-length", type=int, default=None,
                       help="document truncation in tokens (default 256)")


def encoder_from_args(args: argparse.Namespace, path: str | None = None):
    """The encoder the flags describe (no --encoder: the shipped default)."""
    from lsr.encoders import load_encoder

    return load_encoder(path or args.encoder, kind=args.kind, idf=args.idf, device=args.device, dtype=args.dtype,
                        max_query_length=args.max_query_length, max_document_length=args.max_document_length)


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """--backend, its options, and the native kernel's pruning knobs."""
    from lsr.request import PRUNING_METHODS

    parser.add_argument("--backend", choices=backend_names(), default="native",
                        help="sparse search: native (lsr's kernel, default), lucene (Pyserini over the index's "
                             "lucene/ part, built with `lsr index --lucene`) or milvus (the index's Milvus collection, "
                             "made by `lsr index --backend milvus` or `lsr index milvus`; dense from it too)")
    parser.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of a plugin backend's open() (JSON values are parsed), repeatable")
    group = parser.add_argument_group("sparse top-k (native backend)")
    group.add_argument("--pruning", choices=PRUNING_METHODS, default="blockmax",
                       help="blockmax: block-max pruning, exact (default); exhaustive: every posting (the reference)")
    group.add_argument("--prune-alpha", type=float, default=1.0,
                       help="APPROXIMATE below 1: skip a block when alpha x its bound < the k-th score (default 1)")
    group.add_argument("--query-cut", type=int, default=0,
                       help="APPROXIMATE: keep only the N heaviest query terms (default 0: all)")
    milvus = parser.add_argument_group("milvus backend")
    milvus.add_argument("--milvus-uri", default=None, metavar="URI",
                        help="a Milvus Lite file (.db) or server (http://host:19530); default: the index's milvus.json")
    milvus.add_argument("--milvus-collection", default=None, metavar="NAME", help="default: the recorded collection")
    milvus.add_argument("--milvus-drop-ratio", type=float, default=0.0, metavar="R",
                        help="APPROXIMATE above 0 (a Milvus server only): Milvus's drop_ratio_search (default 0: exact)")


def parse_options(pairs: list[str], flag: str = "--backend-option") -> dict:
    """``KEY=VALUE`` pairs as a dict (a value that parses as JSON is taken as such)."""
    import json

    from lsr.errors import InvalidInput

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{flag} {pair!r}: give KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def backend_options(args: argparse.Namespace) -> dict:
    """The options the chosen backend declares, from the flags (and --backend-option)."""
    from lsr.retrievers import backend_options as declared

    return declared(args.backend, args, parse_options(getattr(args, "backend_option", []) or []))
