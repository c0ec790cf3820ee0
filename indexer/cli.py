"""`lsr index` (encode a corpus into an index directory) and `lsr idf` (an IDF table over a corpus)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lsr.cli_args import add_encoder_arguments, encoder_from_args, parse_options
from lsr.index import DEFAULT_BLOCK_SIZE, DEFAULT_BOUND_RATIO, DEFAULT_DENSE_RATIO, FIELD_TYPES, IMPACT_DTYPES
from lsr.index.dense import DENSE_KINDS
from lsr.index.metadata import UNKNOWN_POLICIES
from lsr.retrievers import backend_capabilities, backend_names


def register(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser(
        "index", help="build an index (encode a corpus), or change one: add, delete, merge, schema",
        usage="lsr index --corpus CORPUS --out DIR [options]    (build an index; the options below)\n"
              "       lsr index OPERATION --index DIR [...]       (change one: OPERATION is add, delete, merge, "
              "schema, check or milvus; lsr index OPERATION --help)",
        description="lsr index --corpus C --out DIR builds an index; `lsr index add|delete|merge --index DIR` "
                    "changes one in place (a new generation; searches see it after their next refresh).")
    _add_build_arguments(index)
    _add_operations(index)

    idf = subparsers.add_parser("idf", help="compute an IDF table {token: weight} over a corpus")
    idf.add_argument("--corpus", required=True, help="BEIR folder, JSONL file, or ir_datasets id")
    idf.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer (Hugging Face directory)")
    idf.add_argument("--out", required=True, metavar="FILE", help="JSON file to write")
    idf.add_argument("--skip-malformed", action="store_true", help="skip and count malformed corpus lines")
    idf.set_defaults(handler=run_idf)


def _add_build_arguments(index: argparse.ArgumentParser) -> None:
    index.add_argument("--corpus", help="BEIR folder, JSONL file, or ir_datasets id")
    index.add_argument("--out", help="index directory to write (replaced atomically)")
    add_encoder_arguments(index, required=False)
    index.add_argument("--batch-size", type=int, default=32, help="documents per forward pass (default 32)")
    index.add_argument("--impact-dtype", choices=IMPACT_DTYPES, default="uint8",
                       help="uint8: quantized impacts (default); float32: unquantized")
    index.add_argument("--export-jsonl", metavar="FILE", help="also write Pyserini's JsonVectorCollection JSONL")
    index.add_argument("--skip-malformed", action="store_true", help="skip and count malformed corpus lines")
    index.add_argument("--limit", type=int, default=None, help="index only the first N documents")
    index.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE,
                       help=f"documents per block for block-max pruning, a power of two (default {DEFAULT_BLOCK_SIZE})")
    index.add_argument("--dense-ratio", type=int, default=DEFAULT_DENSE_RATIO,
                       help="terms in at least 1/R of the documents are stored as dense rows (one impact a document) "
                            f"instead of postings (default {DEFAULT_DENSE_RATIO}; 0: none)")
    index.add_argument("--bound-ratio", type=int, default=DEFAULT_BOUND_RATIO,
                       help="terms in at least 1/R of the documents also keep a row of block maxima, so their block "
                            f"bounds are one SIMD pass (default {DEFAULT_BOUND_RATIO}; 0: only the dense terms)")
    index.add_argument("--max-weight", type=positive_float, default=None, metavar="W",
                       help="uint8 quantization: the weight stored as 255 (default: the largest weight of the first "
                            "documents). Later documents' weights above it are stored as 255 and counted as clipped")
    index.add_argument("--document-top-k", type=int, default=None, metavar="N",
                       help="static pruning: keep each document's N largest weights (default: all)")
    index.add_argument("--lucene", action="store_true",
                       help="also build a Lucene impact index of the same vectors through Pyserini (extra `lucene`), "
                            "for `--backend lucene` (rebuild-only: later writes make it stale)")
    index.add_argument("--lucene-threads", type=int, default=None, help="Lucene indexing threads (default: all cores)")
    index.add_argument("--chunk-documents", type=int, default=2048, metavar="N",
                       help="documents encoded (and spooled) at a time; with --ray, one Ray task each (default 2048)")
    fields = index.add_argument_group("metadata (each corpus line's `metadata` object)")
    fields.add_argument("--field", action="append", default=[], metavar="NAME:TYPE",
                        help=f"declare a metadata field, TYPE one of {', '.join(FIELD_TYPES)} (repeatable; default: "
                             "the types the first documents with metadata suggest, then fixed)")
    fields.add_argument("--schema", metavar="FILE", help="declare the metadata fields as a JSON object {name: type}")
    fields.add_argument("--unknown-fields", choices=UNKNOWN_POLICIES, default="error",
                        help="a document's field the schema lacks: refuse the document (error, default) or drop the "
                             "field (ignore)")
    scale = index.add_argument_group("scale out: Milvus (extra `milvus`), Ray (extra `ray`)")
    scale.add_argument("--backend", choices=[n for n in backend_names() if n == "native" or _mirrors(n)],
                       default="native",
                       help="milvus: also write the vectors to a Milvus collection (--milvus-uri), searched by "
                            "`--backend milvus`; later writes keep it in step")
    scale.add_argument("--milvus-uri", default=None, metavar="URI",
                       help="a Milvus Lite file ending in .db (embedded) or a server, http://host:19530")
    scale.add_argument("--milvus-collection", default=None, metavar="NAME",
                       help="collection name (default lsr_<index folder name>)")
    scale.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="encode on a Ray cluster (host:port of its head; no value: a local Ray instance)")
    scale.add_argument("--ray-actors", type=int, default=None, metavar="N",
                       help="encoder actors (default: one per GPU, else one per --ray-cpus-per-actor CPUs)")
    scale.add_argument("--ray-window", type=positive_int, default=64, metavar="N",
                       help="chunks handed to Ray at a time (one dataset and actor pool each; default 64): the driver "
                            "holds one window's texts")
    scale.add_argument("--ray-cpus-per-actor", type=positive_float, default=1.0, metavar="C",
                       help="CPUs each CPU actor reserves (default 1)")
    long = index.add_argument_group("long documents")
    long.add_argument("--chunk-tokens", type=int, default=None, metavar="N",
                      help="split documents longer than N tokens into overlapping chunks (default: truncate at the "
                           "encoder's max document length, and count the truncated documents)")
    long.add_argument("--chunk-overlap", type=int, default=0, metavar="M", help="tokens two chunks share (default 0)")
    long.add_argument("--chunk-aggregate", choices=("max", "sum"), default="max",
                      help="a document's score: its best chunk (max, default) or the sum over its chunks")
    extra = index.add_argument_group("hybrid search and document texts")
    extra.add_argument("--dense-encoder", metavar="DIR",
                       help="also embed documents with this dense encoder (lsr dense directory or a Hugging Face "
                            "sentence encoder such as all-MiniLM-L6-v2), for dense/hybrid search")
    extra.add_argument("--dense-index", choices=DENSE_KINDS, default="flat",
                       help="flat: exact inner product (default); hnsw: approximate (HNSW, M=32)")
    extra.add_argument("--bm25", action="store_true", help="also keep BM25 postings, a hybrid partner")
    extra.add_argument("--store-documents", action="store_true",
                       help="keep the document texts in the index (GET /documents/{id}, hits with their texts)")
    index.set_defaults(handler=run_index)


def _add_operations(index: argparse.ArgumentParser) -> None:
    operations = index.add_subparsers(dest="operation", metavar="OPERATION", prog="lsr index")
    add = operations.add_parser("add", help="add documents to an index, replacing those whose id is there already "
                                            "(an unchanged title and text is not re-encoded)")
    add.add_argument("--index", required=True, metavar="DIR", help="the index to change")
    add.add_argument("--corpus", required=True, help="BEIR folder, JSONL file, or ir_datasets id")
    add.add_argument("--skip-malformed", action="store_true", help="skip and count malformed corpus lines")
    add.add_argument("--batch-size", type=int, default=32, help="documents per forward pass (default 32)")
    add.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer (default 0)")
    add.set_defaults(handler=run_add)
    delete = operations.add_parser("delete", help="delete documents by id")
    delete.add_argument("--index", required=True, metavar="DIR", help="the index to change")
    delete.add_argument("--ids", required=True, metavar="FILE", help="a file of document ids, one a line")
    delete.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer (default 0)")
    delete.set_defaults(handler=run_delete)
    merge = operations.add_parser("merge", help="merge segments, dropping deleted documents")
    merge.add_argument("--index", required=True, metavar="DIR", help="the index to merge")
    merge.add_argument("--max-segments", type=int, default=1,
                       help="merge down to this many segments (default 1); 0: as the tiered merge policy asks")
    merge.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer (default 0)")
    merge.set_defaults(handler=run_merge)
    schema = operations.add_parser("schema", help="show an index's metadata fields, or add and widen them "
                                                  "(integer -> float, keyword -> keywords)")
    schema.add_argument("--index", required=True, metavar="DIR", help="the index")
    schema.add_argument("--add", action="append", default=[], metavar="NAME:TYPE",
                        help="a new field, or a wider type for one (repeatable); committed as a new generation")
    schema.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer (default 0)")
    schema.set_defaults(handler=run_schema)
    check = operations.add_parser("check", help="verify an index: checksums, postings order, block maxima, live "
                                                "counts, stored parts, a Milvus mirror's count; non-zero when damaged")
    check.add_argument("path", nargs="?", metavar="INDEX", help="the index to check")
    check.add_argument("--index", dest="index_flag", metavar="DIR", help="the index (as the other operations take it)")
    check.add_argument("--repair", action="store_true",
                       help="make a damaged index openable: back to the newest generation whose files are intact, or "
                            "else a new generation without the damaged segments (their documents are lost, listed)")
    check.add_argument("--milvus-uri", default=None, metavar="URI", help="where the recorded Milvus collection is "
                                                                        "(default: the one the index records)")
    check.add_argument("--wait", type=float, default=0.0, help="--repair: seconds to wait for another writer")
    check.set_defaults(handler=run_check)
    milvus = operations.add_parser("milvus", help="mirror an index into a Milvus collection (create it, or bring it "
                                                  "up to date), for `--backend milvus`")
    milvus.add_argument("--index", required=True, metavar="DIR", help="the index")
    milvus.add_argument("--milvus-uri", default=None, metavar="URI",
                        help="a Milvus Lite file ending in .db (embedded) or a server, http://host:19530 (default: "
                             "the one the index records: bring its collection up to date)")
    milvus.add_argument("--milvus-collection", default=None, metavar="NAME",
                        help="collection name (default lsr_<index folder name>)")
    milvus.set_defaults(handler=run_milvus)


def _mirrors(name: str) -> bool:
    try:
        return backend_capabilities(name).mirror
    except ImportError:  # a plugin backend that does not import here: not offered
        return False


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def run_index(args: argparse.Namespace) -> int:
    import time

    from lsr.errors import InvalidInput

    if not args.corpus or not args.out:
        raise InvalidInput("pass --corpus and --out to build an index, or an operation: lsr index "
                           "add|delete|merge|schema|check|milvus")
    from lsr.corpus import check_corpus

    check_corpus(args.corpus)  # before a model, a mirror or a cluster: a wrong path is one line, at once
    mirror = _prepare_mirror(args)
    schema = _schema_from_args(args)
    if args.ray is not None:
        from lsr.indexer.distributed import connect

        connect(args.ray or None)  # a cluster that does not answer fails now, not after the encoder loads
    encoder, dense = _encoders(args)
    started = time.perf_counter()
    index = _build(args, encoder, dense, schema)
    seconds = time.perf_counter() - started
    extra = {}
    if args.ray is not None:
        from lsr.indexer.distributed import cluster_summary

        extra["ray"] = cluster_summary()
    if mirror is not None:
        from tqdm.auto import tqdm

        backend, prepared = mirror
        with tqdm(desc=f"writing to {args.backend}", unit="doc", total=index.doc_count) as bar:
            extra[args.backend] = backend.mirror(index, prepared, progress=bar.update)
    _print_build(args, index, seconds, extra)
    return 0


def _prepare_mirror(args: argparse.Namespace):
    """(backend class, what it prepared) for ``--backend NAME`` other than native (a backend that mirrors)."""
    if args.backend == "native":
        return None
    from lsr.retrievers import backend_class, backend_options

    backend = backend_class(args.backend)
    options = backend_options(args.backend, args, parse_options(getattr(args, "backend_option", []) or []))
    return backend, backend.prepare_mirror(Path(args.out), {"chunk_tokens": args.chunk_tokens}, **options)


def _schema_from_args(args: argparse.Namespace):
    from lsr.errors import MissingFile
    from lsr.index.metadata import Schema

    declared: dict = {}
    if args.schema:
        path = Path(args.schema)
        if not path.exists():
            raise MissingFile(f"--schema {path} does not exist; give a JSON file {{\"field\": \"type\"}}")
        declared.update(Schema.parse(json.loads(path.read_text(encoding="utf-8"))).fields)
    declared.update(Schema.parse(args.field).fields)
    if not declared and args.unknown_fields == "error":
        return None  # inferred from the first documents
    return Schema(declared, args.unknown_fields)


def _encoders(args: argparse.Namespace) -> tuple:
    from lsr.encoders import ENCODER_CONFIG_FILE, load_encoder

    encoder = encoder_from_args(args)
    dense = None
    if args.dense_encoder:
        plain = not (Path(args.dense_encoder) / ENCODER_CONFIG_FILE).exists()
        dense = load_encoder(args.dense_encoder, kind="dense" if plain else None, device=args.device,
                             dtype=args.dtype)
    return encoder, dense


def _build(args: argparse.Namespace, encoder, dense, schema):
    from tqdm.auto import tqdm

    from lsr import Index
    from lsr.corpus import count_documents

    total = args.limit if args.limit is not None else count_documents(args.corpus)
    with tqdm(desc="encoding documents", unit="doc", total=total, delay=0.5) as bar:  # (no bar for a quick failure)
        encode_with = None
        if args.ray is not None:
            from lsr.indexer.distributed import ray_chunk_encoder

            def encode_with(directory):
                return ray_chunk_encoder(directory, args.ray or None, args.batch_size, args.ray_actors,
                                         args.ray_cpus_per_actor, args.dtype, progress=bar.update,
                                         window=args.ray_window)
        return Index.build(
            encoder, corpus=args.corpus, path=args.out, dense_encoder=dense, skip_malformed=args.skip_malformed,
            limit=args.limit, export_jsonl=args.export_jsonl, progress_callback=bar.update, schema=schema,
            batch_size=args.batch_size, impact_dtype=args.impact_dtype, dense_index=args.dense_index, bm25=args.bm25,
            store_documents=args.store_documents, block_size=args.block_size, dense_ratio=args.dense_ratio,
            bound_ratio=args.bound_ratio,
            lucene=args.lucene, lucene_threads=args.lucene_threads, document_top_k=args.document_top_k,
            chunk_tokens=args.chunk_tokens, chunk_overlap=args.chunk_overlap, chunk_aggregate=args.chunk_aggregate,
            chunk_documents=args.chunk_documents, encode_with=encode_with,
            **({"max_weight": args.max_weight} if args.max_weight is not None else {}))


def _print_build(args: argparse.Namespace, index, seconds: float, extra: dict) -> None:
    manifest = index.manifest
    snapshot = index.snapshot()
    stats = index.read_stats
    if stats.skipped:
        print(f"skipped {stats.skipped} malformed line(s); first: {stats.examples[0]}")
    built = manifest.build["summary"]
    segment = snapshot.views[0].segment.info
    print(json.dumps({
        "index": args.out, "documents": snapshot.doc_count, "postings": snapshot.postings,
        "avg_doc_nnz": round(snapshot.postings / max(1, segment.rows), 1), "rows": segment.rows,
        "impact_dtype": manifest.impact_dtype, "dropped_postings": segment.dropped_postings,
        "truncated_documents": built["truncated_documents"],
        **({"chunks": {"tokens": args.chunk_tokens, "overlap": args.chunk_overlap, "aggregate": args.chunk_aggregate}}
           if args.chunk_tokens else {}),
        "docs_per_second": round(snapshot.doc_count / seconds, 2),
        **({"dense": manifest.dense} if manifest.dense else {}), **({"bm25": manifest.bm25} if manifest.bm25 else {}),
        "documents_stored": manifest.documents, **({"lucene": manifest.lucene} if manifest.lucene else {}),
        **({"metadata": manifest.metadata} if manifest.metadata else {}),
        "search_defaults": manifest.search_defaults, **extra,
    }, indent=2))
    if built["truncated_documents"]:
        print(f"{built['truncated_documents']} document(s) were longer than the encoder's window "
              f"({manifest.build['max_document_length']} tokens) and cut; --chunk-tokens N keeps their tail",
              file=sys.stderr)


def _report(summary, index: str) -> None:
    out = {"index": index, **{k: v for k, v in vars(summary).items() if k != "unknown"}}
    if getattr(summary, "unknown", None) is not None:
        out["unknown"] = len(summary.unknown)
        if summary.unknown:
            out["unknown_first"] = summary.unknown[:5]
    print(json.dumps(out, indent=2))


def run_add(args: argparse.Namespace) -> int:
    from lsr import Index
    from lsr.corpus import ReadStats, check_corpus, read_corpus

    check_corpus(args.corpus)
    stats = ReadStats()
    index = Index.open(args.index, load_encoder=False, parts=())
    try:
        writer = index.writer(wait=args.wait)
        writer.add(read_corpus(args.corpus, skip_malformed=args.skip_malformed, stats=stats), upsert=True,
                   batch_size=args.batch_size)
        summary = index.commit(operation=f"lsr index add {args.corpus}")
    finally:
        index.close()
    if stats.skipped:
        print(f"skipped {stats.skipped} malformed line(s); first: {stats.examples[0]}", file=sys.stderr)
    _report(summary, args.index)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from lsr import Index
    from lsr.errors import MissingFile

    path = Path(args.ids)
    if not path.exists():
        raise MissingFile(f"--ids {path} does not exist; give a file of document ids, one a line")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    index = Index.open(args.index, load_encoder=False, parts=())
    try:
        index.writer(wait=args.wait).delete(ids)
        summary = index.commit(operation=f"lsr index delete {path.name}")
    finally:
        index.close()
    _report(summary, args.index)
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from lsr import Index

    index = Index.open(args.index, load_encoder=False, parts=())
    try:
        summary = index.merge(max_segments=args.max_segments or None, wait=args.wait)
    finally:
        index.close()
    print(json.dumps({"index": args.index, **vars(summary)}, indent=2))
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from lsr import Index

    index = Index.open(args.index, load_encoder=False, parts=())
    try:
        generation = None
        if args.add:
            index.writer(wait=args.wait)
            generation = index.widen_schema(args.add).generation
        schema = index.schema
        print(json.dumps({"index": args.index, "fields": schema.fields if schema else {},
                          "unknown": schema.unknown if schema else "error",
                          **({"generation": generation} if generation is not None else {})}, indent=2))
    finally:
        index.close()
    return 0


def run_check(args: argparse.Namespace) -> int:
    from lsr.errors import InvalidInput
    from lsr.index.check import check_index, repair

    path = args.path or args.index_flag
    if not path:
        raise InvalidInput("name the index to check: lsr index check INDEX")
    options = {"milvus": {"uri": args.milvus_uri}} if args.milvus_uri else {}
    report = check_index(path, listener_options=options)
    out = report.to_json()
    if args.repair and not report.ok:
        done = repair(path, wait=args.wait)
        out["repair"] = {**vars(done), "ids_lost": done.ids_lost[:20], "ids_lost_count": len(done.ids_lost)}
        after = check_index(path, listener_options=options)
        out["after_repair"] = after.to_json()
        report = after
    print(json.dumps(out, indent=2))
    if not report.ok:
        print(f"{path}: {len(report.problems)} problem(s); first: {report.problems[0]}", file=sys.stderr)
    return 0 if report.ok else 1


def run_milvus(args: argparse.Namespace) -> int:
    from lsr import Index
    from lsr.milvus import attach

    index = Index.open(args.index, load_encoder=False)
    try:
        from tqdm.auto import tqdm

        with tqdm(desc="checking the Milvus collection", unit="doc", total=index.doc_count) as bar:
            counts = attach(index, args.milvus_uri, args.milvus_collection, progress=bar.update)
        print(json.dumps({"index": args.index, **counts}, indent=2))
    finally:
        index.close()
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
