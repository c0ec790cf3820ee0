"""The `lsr` command: each package registers its own subcommands; this module only dispatches."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.engine import FUSION_METHODS, MODES
from service.searcher import BACKENDS, PRUNING_METHODS


def add_pruning_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sparse top-k (native backend)")
    group.add_argument("--pruning", choices=PRUNING_METHODS, default="blockmax",
                       help="blockmax: block-max pruning, exact (default); exhaustive: every posting (the reference)")
    group.add_argument("--prune-alpha", type=float, default=1.0,
                       help="APPROXIMATE below 1: skip a block when alpha x its bound < the k-th score (default 1)")
    group.add_argument("--query-cut", type=int, default=0,
                       help="APPROXIMATE: keep only the N heaviest query terms (default 0: all)")


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser("eval", help="evaluate an index on a BEIR split (nDCG@10, Recall@100, MRR@10)")
    evaluate.add_argument("--beir", required=True, metavar="DIR", help="BEIR folder (queries.jsonl, qrels/)")
    evaluate.add_argument("--index", metavar="DIR", help="index directory built by `lsr index`")
    evaluate.add_argument("--baseline", choices=("bm25", "bm25s"),
                          help="evaluate a baseline instead of an index: bm25 (Pyserini/Lucene, BEIR multifield; "
                               "extra `lucene`) or bm25s")
    evaluate.add_argument("--encoder", metavar="DIR", help="query encoder (default: the one stored in the index)")
    evaluate.add_argument("--split", default="test", help="qrels split (default test)")
    evaluate.add_argument("--k", type=int, default=1000, help="hits per query (default 1000)")
    evaluate.add_argument("--output", metavar="FILE.json", help="write the metrics as flat JSON")
    evaluate.add_argument("--run", metavar="FILE", help="TREC run file (default: next to --output, or none)")
    evaluate.add_argument("--device", default=None, help="query encoding device (siamese encoders)")
    evaluate.add_argument("--mode", choices=MODES, default="sparse",
                          help="sparse (default), dense, bm25, or hybrid (needs the index's dense/bm25 parts)")
    evaluate.add_argument("--fusion", choices=FUSION_METHODS, default="convex",
                          help="hybrid: convex (min-max per query, then alpha*a + (1-alpha)*b) or rrf")
    evaluate.add_argument("--alpha", type=float, default=0.5, help="hybrid convex: weight of the first component")
    evaluate.add_argument("--rrf-k", type=int, default=60, help="hybrid rrf: k in 1/(k + rank) (default 60)")
    evaluate.add_argument("--components", default="sparse,dense",
                          help="hybrid: the two fused lists, of sparse, dense, bm25 (default sparse,dense)")
    evaluate.add_argument("--depth", type=int, default=100,
                          help="hybrid: hits per component before fusion, at least k (default 100)")
    evaluate.add_argument("--backend", choices=BACKENDS, default="native",
                          help="sparse side: native (lsr's kernel, default) or lucene (Pyserini over the index's "
                               "lucene/ part, built with `lsr index --lucene`)")
    add_pruning_arguments(evaluate)
    evaluate.set_defaults(handler=run_eval)

    serve = subparsers.add_parser("serve", help="serve an index over HTTP (FastAPI + uvicorn)")
    serve.add_argument("--index", default=None, metavar="DIR", help="index directory (or LSR_INDEX)")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--device", default=None, help="query encoding device (siamese and dense encoders)")
    serve.add_argument("--workers", type=int, default=None, help="uvicorn worker processes (default 1)")
    serve.add_argument("--config", metavar="FILE", default=None,
                       help="settings file, YAML or JSON (or LSR_CONFIG_FILE); LSR_* variables override it")
    serve.add_argument("--backend", choices=BACKENDS, default=None, help="sparse search: native (default) or lucene")
    serve.set_defaults(handler=run_serve)


def run_eval(args: argparse.Namespace) -> int:
    from service.engine import Engine, Fusion
    from service.evaluation import evaluate, evaluate_bm25, evaluate_pyserini_bm25
    from service.searcher import Pruning

    if (args.index is None) == (args.baseline is None):
        raise ValueError("pass exactly one of --index DIR or --baseline bm25|bm25s")
    run_path = args.run or (str(Path(args.output).with_suffix(".trec")) if args.output else None)
    if args.baseline == "bm25":
        metrics = evaluate_pyserini_bm25(args.beir, split=args.split, k=args.k, run_path=run_path)
    elif args.baseline == "bm25s":
        metrics = evaluate_bm25(args.beir, split=args.split, k=args.k, run_path=run_path)
    else:
        fusion = Fusion(method=args.fusion, alpha=args.alpha, rrf_k=args.rrf_k, depth=args.depth,
                        components=tuple(c.strip() for c in args.components.split(",")))
        needs = set(fusion.components) if args.mode == "hybrid" else {args.mode}
        pruning = Pruning(args.pruning, args.prune_alpha, args.query_cut)
        engine = Engine.open(args.index, encoder=args.encoder, device=args.device,
                             load=[part for part in ("dense", "bm25") if part in needs], pruning=pruning,
                             backend=args.backend)
        metrics = evaluate(engine, args.beir, split=args.split, k=args.k, run_path=run_path, mode=args.mode,
                           fusion=fusion)
        if not pruning.exact:  # an approximate setting is never silent: report its recall against the exact top-k
            exact = Engine.open(args.index, encoder=args.encoder, device=args.device, load=())
            metrics.update(recall_against_exact(engine, exact, args.beir, args.split, k=args.k))
    if run_path:
        metrics["run"] = run_path
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0


def recall_against_exact(approximate, exact, beir_dir: str, split: str, k: int = 1000, at: int = 10) -> dict:
    """Mean recall@``at`` of the approximate sparse top-k against the exact one (both retrieving ``k``, as the
    evaluation does), over the split's judged queries; a query with no exact hit counts as recalled."""
    from indexer.corpus import read_qrels, read_queries

    queries = read_queries(beir_dir)
    texts = [queries[qid] for qid in sorted(read_qrels(beir_dir, split)) if qid in queries]
    got = approximate.search_batch(texts, k)
    want = exact.search_batch(texts, k)
    recalls = [len(set(a.ids[:at]) & set(b.ids[:at])) / len(b.ids[:at]) if b.ids else 1.0 for a, b in zip(got, want)]
    return {f"recall@{at}_vs_exact": float(sum(recalls) / max(1, len(recalls))),
            "pruning": {"alpha": approximate.searcher.pruning.alpha, "query_cut": approximate.searcher.pruning.query_cut}}


def run_serve(args: argparse.Namespace) -> int:
    import os
    import tempfile

    import uvicorn

    from service.app import create_app
    from service.engine import Engine
    from service.settings import CONFIG_FILE_ENV, Settings

    if args.config:
        os.environ[CONFIG_FILE_ENV] = args.config
    overrides = {key: value for key, value in (("index", args.index), ("host", args.host), ("port", args.port),
                                               ("device", args.device), ("workers", args.workers),
                                               ("backend", args.backend)) if value is not None}
    settings = Settings(**overrides)
    if settings.index is None:
        print("lsr serve: no index given; pass --index DIR (or set LSR_INDEX)", file=sys.stderr)
        return 2
    engine = Engine.open(settings.index, device=settings.device, pruning=settings.pruning_spec(),
                         backend=settings.backend)  # fail here, with one line, not in uvicorn
    if settings.workers == 1:
        uvicorn.run(create_app(settings, engine=engine), host=settings.host, port=settings.port, log_level="info")
        return 0
    del engine  # each worker opens the (memory-mapped) index itself
    for key, value in overrides.items():  # the workers build their Settings from the environment
        os.environ[f"LSR_{key.upper()}"] = str(value)
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # /metrics adds up every worker's counts
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="lsr-metrics-")
    uvicorn.run("service.app:app_from_environment", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level="info")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from indexer.cli import register as register_indexer
    from training.cli import register as register_training

    parser = argparse.ArgumentParser(prog="lsr", description="learned sparse retrieval: encode, index, search, serve")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_indexer(subparsers)
    register_training(subparsers)
    register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by `lsr train` in the model card
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as exc:  # user errors (CorpusError, IndexError_, ...): one clear line
        print(f"lsr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
