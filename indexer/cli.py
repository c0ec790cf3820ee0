"""`lsr index` (encode a corpus into an index directory) and `lsr idf` (an IDF table over a corpus)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lsr.cli_args import add_encoder_arguments, encoder_from_args
from lsr.index import DEFAULT_BLOCK_SIZE, DEFAULT_DENSE_RATIO, IMPACT_DTYPES
from lsr.index.dense import DENSE_KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser("index", help="encode a corpus and build the native inverted index")
    index.add_argument("--corpus", required=True, help="BEIR folder, JSONL file, or ir_datasets id")
    index.add_argument("--out", required=True, help="index directory to write (replaced atomically)")
    add_encoder_arguments(index, required=False)
    index.add_argument("--batch-size", type=int, default=32, help="documents per forward pass (default 32)")
    index.add_argument("--impact-dtype", choices=IMPACT_DTYPES, default="uint8",
                       help="uint8: quantized impacts (default); float32: unquantized")
    index.add_argument("--export-jsonl", metavar="FILE", help="also write Pyserini's JsonVectorCollection JSONL")
    index.add_argument("--skip-malformed", action="store_true", help="skip and count malformed corpus lines")
    index.add_argument("--limit", type=int, default=None, help="index only the first N documents")
    index.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE,
                       help=f"documents per block for block-max pruning (default {DEFAULT_BLOCK_SIZE})")
    index.add_argument("--dense-ratio", type=int, default=DEFAULT_DENSE_RATIO,
                       help="terms in at least 1/R of the documents are also stored as dense rows for the pruned "
                            f"kernel (default {DEFAULT_DENSE_RATIO}; 0: none)")
    index.add_argument("--document-top-k", type=int, default=None, metavar="N",
                       help="static pruning: keep each document's N largest weights (default: all)")
    index.add_argument("--lucene", action="store_true",
                       help="also build a Lucene impact index of the same vectors through Pyserini (extra `lucene`), "
                            "for `--backend lucene`")
    index.add_argument("--lucene-threads", type=int, default=None, help="Lucene indexing threads (default: all cores)")
    extra = index.add_argument_group("hybrid search and document texts")
    extra.add_argument("--dense-encoder", metavar="DIR",
                       help="also embed documents with this dense encoder (lsr dense directory or a Hugging Face "
                            "sentence encoder such as all-MiniLM-L6-v2) into a FAISS index, for dense/hybrid search")
    extra.add_argument("--dense-index", choices=DENSE_KINDS, default="flat",
                       help="flat: exact inner product (default); hnsw: approximate (HNSW, M=32)")
    extra.add_argument("--bm25", action="store_true", help="also build a BM25 index (bm25s), a hybrid partner")
    extra.add_argument("--store-documents", action="store_true",
                       help="keep the document texts in the index (GET /documents/{id}, hits with their texts)")
    index.set_defaults(handler=run_index)

    idf = subparsers.add_parser("idf", help="compute an IDF table {token: weight} over a corpus")
    idf.add_argument("--corpus", required=True, help="BEIR folder, JSONL file, or ir_datasets id")
    idf.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer (Hugging Face directory)")
    idf.add_argument("--out", required=True, metavar="FILE", help="JSON file to write")
    idf.add_argument("--skip-malformed", action="store_true", help="skip and count malformed corpus lines")
    idf.set_defaults(handler=run_idf)


def run_index(args: argparse.Namespace) -> int:
    from lsr import Index
    from lsr.corpus import count_documents
    from lsr.encoders import ENCODER_CONFIG_FILE, load_encoder

    encoder = encoder_from_args(args)
    dense = None
    if args.dense_encoder:
        plain = not (Path(args.dense_encoder) / ENCODER_CONFIG_FILE).exists()
        dense = load_encoder(args.dense_encoder, kind="dense" if plain else None, device=args.device,
                             dtype=args.dtype)
    from tqdm.auto import tqdm

    total = args.limit if args.limit is not None else count_documents(args.corpus)
    with tqdm(desc="encoding documents", unit="doc", total=total) as bar:
        index = Index.build(
            encoder, corpus=args.corpus, path=args.out, dense_encoder=dense, skip_malformed=args.skip_malformed,
            limit=args.limit, export_jsonl=args.export_jsonl, progress_callback=bar.update,
            batch_size=args.batch_size, impact_dtype=args.impact_dtype, dense_index=args.dense_index, bm25=args.bm25,
            store_documents=args.store_documents, block_size=args.block_size, dense_ratio=args.dense_ratio,
            lucene=args.lucene, lucene_threads=args.lucene_threads, document_top_k=args.document_top_k)
    manifest = index.manifest
    stats = index.read_stats
    if stats.skipped:
        print(f"skipped {stats.skipped} malformed line(s); first: {stats.examples[0]}")
    print(json.dumps({
        "index": args.out, "documents": manifest.doc_count, "postings": manifest.postings,
        "avg_doc_nnz": round(manifest.postings / manifest.doc_count, 1), "impact_dtype": manifest.impact_dtype,
        "dropped_postings": manifest.dropped_postings, "docs_per_second": manifest.build["docs_per_second"],
        **({"dense": manifest.dense} if manifest.dense else {}), **({"bm25": manifest.bm25} if manifest.bm25 else {}),
        "documents_stored": manifest.documents, **({"lucene": manifest.lucene} if manifest.lucene else {}),
        "search_defaults": manifest.search_defaults,
    }, indent=2))
    return 0


def run_idf(args: argparse.Namespace) -> int:
    import transformers
    from transformers import AutoTokenizer

    from lsr.corpus import read_corpus
    from lsr.encoders.idf import idf_table

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
