"""`lsr index` and `lsr idf`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from indexer.corpus import read_corpus
from indexer.inverted import IMPACT_DTYPES


def register(subparsers: argparse._SubParsersAction) -> None:
    from training.cli import add_encoder_arguments

    index = subparsers.add_parser("index", help="encode a corpus and build the native inverted index")
    index.add_argument("--corpus", required=True, help="BEIR folder, JSONL file, or ir_datasets id")
    index.add_argument("--out", required=True, help="index directory to write (replaced atomically)")
    add_encoder_arguments(index)
    index.add_argument("--batch-size", type=int, default=32, help="documents per forward pass (default 32)")
    index.add_argument("--impact-dtype", choices=IMPACT_DTYPES, default="uint8",
                       help="uint8: quantized impacts (default); float32: unquantized")
    index.add_argument("--export-jsonl", metavar="FILE", help="also write Pyserini's JsonVectorCollection JSONL")
    index.add_argument("--skip-malformed", action="store_true", help="skip and count malformed corpus lines")
    index.add_argument("--limit", type=int, default=None, help="index only the first N documents")
    index.set_defaults(handler=run_index)

    idf = subparsers.add_parser("idf", help="compute an IDF table {token: weight} over a corpus")
    idf.add_argument("--corpus", required=True, help="BEIR folder, JSONL file, or ir_datasets id")
    idf.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer (Hugging Face directory)")
    idf.add_argument("--out", required=True, metavar="FILE", help="JSON file to write")
    idf.add_argument("--skip-malformed", action="store_true", help="skip and count malformed corpus lines")
    idf.set_defaults(handler=run_idf)


def run_index(args: argparse.Namespace) -> int:
    from indexer.build import build_index
    from training.cli import encoder_from_args

    encoder = encoder_from_args(args)
    manifest = build_index(
        args.corpus, encoder, args.out, batch_size=args.batch_size, impact_dtype=args.impact_dtype,
        export_jsonl=args.export_jsonl, skip_malformed=args.skip_malformed, limit=args.limit,
    )
    print(json.dumps({
        "index": args.out, "documents": manifest.doc_count, "postings": manifest.postings,
        "avg_doc_nnz": round(manifest.postings / manifest.doc_count, 1), "impact_dtype": manifest.impact_dtype,
        "dropped_postings": manifest.dropped_postings, "docs_per_second": manifest.build["docs_per_second"],
    }, indent=2))
    return 0


def run_idf(args: argparse.Namespace) -> int:
    import transformers
    from transformers import AutoTokenizer

    from training.idf import idf_table

    transformers.utils.logging.set_verbosity_error()  # "sequence longer than the model maximum": irrelevant here
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    table = idf_table((d.contents for d in read_corpus(args.corpus, skip_malformed=args.skip_malformed)), tokenizer)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(table))
    tmp.replace(out)
    print(f"wrote {len(table)} token weights to {out}")
    return 0
