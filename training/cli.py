"""Shared command-line helpers for choosing and loading an encoder (used by every subcommand that encodes)."""

from __future__ import annotations

import argparse

from training.encoders import KINDS, load_encoder


def add_encoder_arguments(parser: argparse.ArgumentParser, required: bool = True, flag: str = "--encoder") -> None:
    group = parser.add_argument_group("encoder")
    group.add_argument(flag, required=required, metavar="DIR",
                       help="lsr encoder directory, or a plain Hugging Face directory with --kind")
    group.add_argument("--kind", choices=KINDS, help="encoder kind, for a plain Hugging Face directory")
    group.add_argument("--idf", metavar="FILE", help="inference-free: query-side {token: weight} JSON table")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    group.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                       help="encoding precision (auto: bf16/fp16 autocast on CUDA, fp32 on CPU)")
    group.add_argument("--max-query-length", type=int, default=None, help="query truncation in tokens (default 64)")
    group.add_argument("--max-document-length", type=int, default=None,
                       help="document truncation in tokens (default 256)")


def encoder_from_args(args: argparse.Namespace, path: str | None = None):
    return load_encoder(
        path or args.encoder, kind=args.kind, idf=args.idf, device=args.device, dtype=args.dtype,
        max_query_length=args.max_query_length, max_document_length=args.max_document_length,
    )
