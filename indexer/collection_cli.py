"""`lsr collection create|list|drop|snapshot|snapshots|restore` over a data directory (:mod:`lsr.collections`).

Usable while `lsr serve --data DIR` runs: every change is a rename the server picks up within its refresh interval.
Each command prints one JSON object."""

from __future__ import annotations

import argparse
import json
import os
import sys

from lsr.cli_args import add_encoder_arguments
from lsr.index.metadata import FIELD_TYPES, UNKNOWN_POLICIES
from lsr.indexer.cli import positive_float


def register(subparsers: argparse._SubParsersAction) -> None:
    collection = subparsers.add_parser(
        "collection", help="manage the collections of a data directory (create, list, drop, snapshot, restore)",
        description="The collections of a data directory (`lsr serve --data DIR` serves them all). Every command "
                    "works while a server runs.")
    commands = collection.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, handler) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--data", default=os.environ.get("LSR_DATA"), metavar="DIR",
                            help="the data directory (default: LSR_DATA)")
        parser.set_defaults(handler=handler)
        return parser

    create = command("create", "create an empty collection, or one copied from an index folder (--from)", run_create)
    create.add_argument("name", help="1-64 letters, digits, '_' or '-'")
    create.add_argument("--from", dest="source", metavar="INDEX",
                        help="copy this index folder's published generation in (no encoder options then)")
    add_encoder_arguments(create, required=False)
    create.add_argument("--dense-encoder", metavar="DIR", help="also a dense part, with this dense encoder")
    create.add_argument("--bm25", action="store_true", help="also a BM25 part")
    create.add_argument("--store-documents", action="store_true", help="store titles and texts")
    create.add_argument("--chunk-tokens", type=int, default=None, metavar="N", help="split longer documents")
    create.add_argument("--chunk-overlap", type=int, default=0, metavar="M", help="tokens two chunks share")
    create.add_argument("--max-weight", type=positive_float, default=None, metavar="W",
                        help="uint8 quantization: the weight stored as 255 (default: the encoder's calibrated "
                             "maximum when it records one, else the largest weight of the first write)")
    create.add_argument("--field", action="append", default=[], metavar="NAME:TYPE",
                        help=f"a metadata field, TYPE one of {', '.join(FIELD_TYPES)} (repeatable)")
    create.add_argument("--unknown-fields", choices=UNKNOWN_POLICIES, default="error",
                        help="a document's field the schema lacks: refuse the document (error) or drop the field")

    command("list", "list the collections (documents, generation, segments; unavailable ones with the reason)",
            run_list)
    drop = command("drop", "drop a collection (its snapshots stay)", run_drop)
    drop.add_argument("name")
    drop.add_argument("--wait", type=float, default=10.0, help="seconds to wait for its writer (default 10)")
    snapshot = command("snapshot", "snapshot a collection's published generation (hard links where possible)",
                       run_snapshot)
    snapshot.add_argument("name")
    snapshots = command("snapshots", "list the snapshots (of one collection, or all)", run_snapshots)
    snapshots.add_argument("name", nargs="?")
    restore = command("restore", "restore a snapshot as a new collection (verified against its checksums first)",
                      run_restore)
    restore.add_argument("snapshot", metavar="SNAPSHOT", help="a snapshot id, COLLECTION/ID, or its folder")
    restore.add_argument("--as", dest="as_name", required=True, metavar="NAME", help="the new collection's name")


def _data(args: argparse.Namespace):
    from lsr.collections import DataDirectory
    from lsr.errors import InvalidInput

    if not args.data:
        raise InvalidInput("pass --data DIR (or set LSR_DATA): the data directory that holds the collections")
    return DataDirectory(args.data, create=args.handler is run_create)


def _print(value) -> int:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def run_create(args: argparse.Namespace) -> int:
    from lsr.collections import check_name

    check_name(args.name)  # before any model loads
    data = _data(args)
    if args.source:
        path = data.adopt(args.name, args.source)
    else:
        from lsr.cli_args import encoder_from_args
        from lsr.encoders import load_encoder
        from lsr.index.metadata import Schema

        encoder = encoder_from_args(args)
        dense = load_encoder(args.dense_encoder, device=args.device) if args.dense_encoder else None
        schema = Schema(Schema.parse(args.field).fields, args.unknown_fields) \
            if args.field or args.unknown_fields != "error" else None
        options = {"bm25": args.bm25, "store_documents": args.store_documents}
        if args.chunk_tokens is not None:
            options.update(chunk_tokens=args.chunk_tokens, chunk_overlap=args.chunk_overlap)
        if args.max_weight is not None:
            options["max_weight"] = args.max_weight
        path = data.create(args.name, encoder, dense_encoder=dense, schema=schema, **options)
    from lsr.collections import describe

    return _print(describe(path) | {"path": str(path)})


def run_list(args: argparse.Namespace) -> int:
    from lsr.collections import describe

    data = _data(args)
    return _print({"data": str(data.root), "collections": [describe(data.path(n)) for n in data.names()]})


def run_drop(args: argparse.Namespace) -> int:
    data = _data(args)
    data.drop(args.name, wait=args.wait)
    return _print({"dropped": args.name})


def run_snapshot(args: argparse.Namespace) -> int:
    return _print(_data(args).snapshot(args.name))


def run_snapshots(args: argparse.Namespace) -> int:
    return _print({"snapshots": _data(args).snapshots(args.name)})


def run_restore(args: argparse.Namespace) -> int:
    return _print(_data(args).restore(args.snapshot, args.as_name))
