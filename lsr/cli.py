"""The `lsr` command. The core registers `lsr eval`; the applications register their own subcommands through the
``lsr.commands`` entry points (``lsr.indexer.cli:register``, ``lsr.training.cli:register``,
``lsr.service.cli:register``), so the core never imports them and another package can add a command the same way."""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

from lsr.cli_args import add_search_arguments, backend_options
from lsr.errors import LsrError

COMMAND_GROUP = "lsr.commands"


def register(subparsers: argparse._SubParsersAction) -> None:
    from lsr.engine import MODES
    from lsr.fusion import FUSION_METHODS

    evaluate = subparsers.add_parser("eval", help="evaluate an index (any mode, any backend) or a BM25 baseline on a "
                                                  "BEIR split: nDCG@10, Recall@100, MRR@10, latency")
    evaluate.add_argument("--beir", required=True, metavar="DIR", help="BEIR folder (queries.jsonl, qrels/)")
    evaluate.add_argument("--index", metavar="DIR", help="index directory built by `lsr index`")
    evaluate.add_argument("--url", metavar="URL", help="evaluate a running service instead (http://host:port), "
                                                       "through lsr.Client: the same metrics and run file, plus the "
                                                       "latency over HTTP and the failed requests")
    evaluate.add_argument("--api-key", default=None, metavar="KEY",
                          help="--url: the service's API key (default: LSR_API_KEY)")
    evaluate.add_argument("--collection", default=None, metavar="NAME",
                          help="--url: the collection to search (default: the root routes, collection `default`)")
    evaluate.add_argument("--baseline", choices=("bm25", "bm25s"),
                          help="evaluate a baseline over the BEIR corpus instead of an index: bm25 (Pyserini/Lucene, "
                               "BEIR multifield; extra `lucene`) or bm25s")
    evaluate.add_argument("--encoder", metavar="DIR", help="query encoder (default: the one stored in the index)")
    evaluate.add_argument("--split", default="test", help="qrels split (default test)")
    evaluate.add_argument("--k", type=int, default=1000, help="hits per query (default 1000)")
    evaluate.add_argument("--output", metavar="FILE.json", help="write the metrics as flat JSON")
    evaluate.add_argument("--run", metavar="FILE", help="TREC run file (default: next to --output, or none)")
    evaluate.add_argument("--device", default=None, help="query encoding device (siamese and dense encoders)")
    evaluate.add_argument("--mode", default=None,
                          help=f"{', '.join(MODES)} (default: the index's default, see `lsr index`); with --report, "
                               "several, comma-separated")
    evaluate.add_argument("--fusion", choices=FUSION_METHODS, default="convex",
                          help="hybrid: convex (min-max per query, then a weighted sum) or rrf")
    evaluate.add_argument("--components", default=None,
                          help="hybrid: the fused lists, two or three of sparse, dense, bm25 (default: the index's "
                               "default fusion)")
    evaluate.add_argument("--weights", default=None, help="hybrid: one weight per component, comma-separated "
                                                          "(convex default 1/n each, rrf default 1)")
    evaluate.add_argument("--alpha", type=float, default=None,
                          help="hybrid convex with two components: weight of the first (the second gets 1 - alpha)")
    evaluate.add_argument("--rrf-k", type=int, default=60, help="hybrid rrf: k in 1/(k + rank) (default 60)")
    evaluate.add_argument("--depth", type=int, default=100,
                          help="hybrid: hits per component before fusion, at least k (default 100)")
    evaluate.add_argument("--filter", default=None, metavar="JSON|@FILE",
                          help="search only the documents this filter keeps (the HTTP API's filter language, e.g. "
                               "'{\"range\": {\"pmid\": {\"gte\": 20000000}}}'); @FILE reads it from a file")
    evaluate.add_argument("--feedback", default=None, metavar="DOCS,TERMS,WEIGHT[,BM25_TERMS]",
                          help="pseudo-relevance feedback: the first pass's top DOCS documents expand the query (the "
                               "sparse side, Rocchio: to its TERMS strongest terms; the bm25 side, RM3: BM25_TERMS "
                               "expansion terms, default 10), the query keeping WEIGHT (e.g. 10,50,0.5); a second "
                               "exact pass")
    evaluate.add_argument("--feedback-on", default="sparse,bm25", metavar="SIDES",
                          help="--feedback: the sides expanded, sparse and/or bm25 (default both)")
    evaluate.add_argument("--report", metavar="DIR", default=None,
                          help="write a Markdown + HTML report with plots (nDCG@10 against latency, recall@k, "
                               "per-query deltas against a baseline) over every --mode and --compare system")
    evaluate.add_argument("--compare", metavar="FILE.json", nargs="+", default=[],
                          help="metrics files of earlier `lsr eval --output` runs: without --report, this run is "
                               "tested against each (nDCG@10 difference, bootstrap 95%% CI, paired randomization "
                               "p-value); with --report, they are systems of the report too")
    evaluate.add_argument("--report-baseline", metavar="NAME", default=None,
                          help="--report: the system per-query deltas are taken against (default: a BM25 one; "
                               "without one, bm25s over the BEIR corpus is evaluated and added)")
    add_search_arguments(evaluate)
    evaluate.set_defaults(handler=run_eval)

    tune = subparsers.add_parser(
        "tune", help="fit an index's fusion (components, weights, convex or RRF, normalization, depth) to "
                     "judgments; --save makes the best the index's default")
    tune.add_argument("--index", required=True, metavar="DIR", help="index directory built by `lsr index`")
    tune.add_argument("--beir", metavar="DIR", help="BEIR folder (queries.jsonl, qrels/SPLIT.tsv)")
    tune.add_argument("--queries", metavar="FILE", help="instead of --beir: a queries JSONL file ({_id, text})")
    tune.add_argument("--qrels", metavar="FILE", help="instead of --beir: a qrels TSV (query-id, corpus-id, score)")
    tune.add_argument("--split", default="dev", help="qrels split to tune on (default dev; never tune on test)")
    tune.add_argument("--metric", default="ndcg@10", choices=("ndcg@10", "recall@100", "mrr@10"))
    tune.add_argument("--components", default=None, help="the components to fuse (default: all the index has)")
    tune.add_argument("--depths", default="50,100,200", help="per-component depths to try (default 50,100,200)")
    tune.add_argument("--top", type=int, default=15, help="settings listed (default 15)")
    tune.add_argument("--save", action="store_true", help="write the best setting as the index's default mode and "
                                                          "fusion (with the split and metric it was tuned on)")
    tune.add_argument("--feedback", default=None, metavar="DOCS,TERMS,WEIGHT[,BM25_TERMS]",
                      help="tune the fusion of the lists this pseudo-relevance feedback expands (as `lsr eval "
                           "--feedback`), and with --save make it part of the default mode; a request turns it off "
                           "with \"feedback\": false")
    tune.add_argument("--feedback-on", default="bm25", metavar="SIDES",
                      help="--feedback: the sides expanded (default bm25: RM3, the side that gained on NFCorpus)")
    tune.add_argument("--output", metavar="FILE.json", help="write the result as JSON")
    tune.set_defaults(handler=run_tune)

    export_model = subparsers.add_parser(
        "export-model", help="write an encoder in another layout: sentence-transformers' SparseEncoder directory")
    export_model.add_argument("output", metavar="DIR", help="the directory to write (replaced if it exists)")
    export_model.add_argument("--format", choices=("sentence-transformers",), default="sentence-transformers",
                              help="the layout to write (default sentence-transformers)")
    export_model.add_argument("--encoder", metavar="DIR", default=None,
                              help="the encoder to export (any layout lsr reads; default: the shipped one)")
    export_model.set_defaults(handler=run_export_model)

    export = subparsers.add_parser("export", help="export an index's vectors: to Qdrant (sparse vectors) or "
                                                  "OpenSearch (rank_features mapping + bulk NDJSON files)")
    export.add_argument("--index", required=True, metavar="DIR", help="index directory built by `lsr index`")
    export.add_argument("--to", required=True, choices=("qdrant", "opensearch"))
    export.add_argument("--qdrant-url", default=None, metavar="URL|:memory:|DIR",
                        help="qdrant: a server (http://host:6333), :memory: (in-process, for --check), or a folder "
                             "(Qdrant's local mode)")
    export.add_argument("--collection", default=None,
                        help="qdrant collection / OpenSearch index name (default: the index folder's name)")
    export.add_argument("--replace", action="store_true", help="qdrant: drop and rewrite an existing collection")
    export.add_argument("--output", metavar="DIR", help="opensearch: the folder for mapping.json and bulk files")
    export.add_argument("--bulk-documents", type=int, default=5000,
                        help="opensearch: documents per bulk file (default 5000)")
    export.add_argument("--impacts", action="store_true",
                        help="export the stored integer impacts instead of float weights (impact / scale)")
    export.add_argument("--check", metavar="BEIR_DIR", default=None,
                        help="qdrant: then search the judged queries of --split in both, and report the recall of "
                             "lsr's exact top-k in Qdrant's and both latencies")
    export.add_argument("--split", default="test", help="--check: qrels split (default test)")
    export.add_argument("--k", type=int, default=10, help="--check: hits per query (default 10)")
    export.set_defaults(handler=run_export)


def fusion_from_args(args: argparse.Namespace, engine):
    from lsr.errors import InvalidInput
    from lsr.fusion import Fusion

    if args.mode != "hybrid" and args.mode is not None:
        return None
    if args.components is None and args.weights is None and args.alpha is None and args.fusion == "convex" \
            and args.rrf_k == 60 and args.depth == 100:
        return None  # the index's default fusion
    components = tuple(c.strip() for c in args.components.split(",")) if args.components \
        else engine.default_fusion().components
    try:
        weights = tuple(float(w) for w in args.weights.split(",")) if args.weights else None
    except ValueError:
        raise InvalidInput(f"--weights {args.weights!r}: give one number per component, comma-separated") from None
    return Fusion(method=args.fusion, components=components, weights=weights, alpha=args.alpha, rrf_k=args.rrf_k,
                  depth=args.depth)


def run_eval(args: argparse.Namespace) -> int:
    from lsr.engine import MODES
    from lsr.errors import InvalidInput

    if sum(x is not None for x in (args.index, args.baseline, args.url)) != 1:
        raise InvalidInput("pass exactly one of --index DIR, --url URL or --baseline bm25|bm25s")
    modes = [m.strip() for m in args.mode.split(",")] if args.mode else [None]
    unknown = [m for m in modes if m not in (*MODES, None)]
    if unknown:
        raise InvalidInput(f"--mode {','.join(unknown)}: expected {', '.join(MODES)}")
    if args.index is None:
        return _run_eval(args, modes)
    from lsr.threads import configured

    with configured(workers=1):  # queries answered here: the thread pools of a served worker (lsr.threads)
        return _run_eval(args, modes)


def _run_eval(args: argparse.Namespace, modes: list) -> int:
    from lsr.errors import InvalidInput

    if args.report:
        return run_report(args, modes)
    if len(modes) > 1:
        raise InvalidInput("several --mode values need --report DIR (one report over them all)")
    run_path = args.run or (str(Path(args.output).with_suffix(".trec")) if args.output else None)
    scratch = None
    if args.compare and run_path is None:  # the per-query comparison reads this run's file
        import tempfile

        scratch = tempfile.mkdtemp(prefix="lsr-eval-")
        run_path = str(Path(scratch) / "run.trec")
    metrics = evaluate_once(args, modes[0], run_path)
    if args.compare:
        metrics["compared"] = compare_with(args, run_path)
        if scratch is not None:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
            metrics.pop("run", None)
    return emit(metrics, args.output)


def emit(result: dict, output: str | None) -> int:
    """Print ``result`` as JSON and, with ``output``, write it there too."""
    text = json.dumps(result, indent=2)
    print(text)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text + "\n")
    return 0


def evaluate_once(args: argparse.Namespace, mode: str | None, run_path: str | None,
                  baseline: str | None = None) -> dict:
    """One system: ``baseline`` (or ``args.baseline``) over the BEIR corpus, or the index in ``mode``."""
    from lsr.engine import Engine
    from lsr.evaluation import evaluate, recall_against_exact

    baseline = baseline or args.baseline
    if args.url and not baseline:
        metrics = evaluate_url(args, mode, run_path)
        if run_path:
            metrics["run"] = str(run_path)
        return metrics
    if baseline:
        engine = Engine.baseline(baseline, args.beir)
        metrics = evaluate(engine, args.beir, split=args.split, k=args.k, run_path=run_path, batch_throughput=False)
        retriever = engine.retrievers["bm25"]
        metrics["system"] = retriever.name
        if getattr(retriever, "build_s", None) is not None:
            metrics["build_s"] = retriever.build_s
    else:
        from lsr.index import Manifest
        from lsr.index.builder import choose_search_defaults

        options = backend_options(args)
        manifest = Manifest.load(Path(args.index))
        defaults = manifest.search_defaults or choose_search_defaults(bool(manifest.dense), bool(manifest.bm25))
        mode = mode or defaults["mode"]
        if mode == "hybrid":
            default_components = (defaults.get("fusion") or {}).get("components") or ["sparse", "dense", "bm25"]
            needs = {c.strip() for c in args.components.split(",")} if args.components else set(default_components)
        else:
            needs = {mode}
        engine = Engine.open(args.index, encoder=args.encoder, device=args.device, backend=args.backend,
                             parts=[part for part in ("dense", "bm25") if part in needs], **options)
        fusion = fusion_from_args(args, engine) if mode == "hybrid" else None
        filter_spec = read_filter(args.filter)
        metrics = evaluate(engine, args.beir, split=args.split, k=args.k, run_path=run_path, mode=mode, fusion=fusion,
                           filter=filter_spec, feedback=read_feedback(args.feedback, args.feedback_on))
        pruning = getattr(engine.retrievers.get("sparse"), "pruning", None)
        if "sparse" in engine.retrievers and not engine.retrievers["sparse"].exact:
            # never silent: an approximate top-k's recall against the native exact one
            exact = Engine.open(args.index, encoder=args.encoder, device=args.device, parts=())
            metrics.update(recall_against_exact(engine, exact, args.beir, args.split, k=args.k, filter=filter_spec))
        if pruning is not None and not pruning.exact:
            metrics["pruning"] = {"method": pruning.method, "alpha": pruning.alpha, "query_cut": pruning.query_cut}
    if run_path:
        metrics["run"] = str(run_path)
    return metrics


def evaluate_url(args: argparse.Namespace, mode: str | None, run_path: str | None) -> dict:
    """One system: the service at ``--url`` (a collection of it with ``--collection``) in ``mode``."""
    import os

    from lsr.client import Client
    from lsr.errors import InvalidInput
    from lsr.evaluation import evaluate_service
    from lsr.fusion import Fusion

    client = Client(args.url, api_key=args.api_key or os.environ.get("LSR_API_KEY") or None)
    if args.collection:
        client = client.collection(args.collection)
    fusion = None
    if (mode == "hybrid" or mode is None) and (args.components or args.weights or args.alpha is not None or
                                               args.fusion != "convex" or args.rrf_k != 60 or args.depth != 100):
        if not args.components:
            raise InvalidInput("--url with fusion options: name the --components (the service's default "
                                    "fusion is not known here)")
        weights = tuple(float(w) for w in args.weights.split(",")) if args.weights else None
        fusion = Fusion(method=args.fusion, components=tuple(c.strip() for c in args.components.split(",")),
                        weights=weights, alpha=args.alpha, rrf_k=args.rrf_k, depth=args.depth)
    try:
        metrics = evaluate_service(client, args.beir, split=args.split, k=args.k, run_path=run_path, mode=mode,
                                   fusion=fusion, filter=read_filter(args.filter))
    finally:
        client.close()
    return metrics


def compare_with(args: argparse.Namespace, run_path: str) -> dict:
    """This run against each ``--compare`` system, per query: the nDCG@10 difference, its bootstrap CI, the paired
    randomization test's p-value (:mod:`lsr.significance`); printed a line each on stderr."""
    from lsr.errors import InvalidInput
    from lsr.evaluation import judged_queries, per_query_metrics, read_trec_run
    from lsr.report import System
    from lsr.significance import compare_runs, verdict

    _, qrels = judged_queries(args.beir, args.split)
    mine = per_query_metrics(read_trec_run(run_path), qrels)
    compared = {}
    for path in args.compare:
        other = System.from_metrics_file(path)
        if other.metrics.get("split") != args.split:
            raise InvalidInput(f"--compare {path} was evaluated on split {other.metrics.get('split')!r}, this "
                                    f"run on {args.split!r}: compare runs of one split")
        result = compare_runs(mine, per_query_metrics(read_trec_run(other.run), qrels))
        compared[other.name] = result
        print(f"nDCG@10 against {other.name}: {verdict(result)}", file=sys.stderr)
    return compared


def read_feedback(text: str | None, sides: str = "sparse,bm25"):
    """``--feedback DOCS,TERMS,WEIGHT`` as a :class:`lsr.request.Feedback` (None without the flag)."""
    from lsr.errors import InvalidInput
    from lsr.request import Feedback

    if text is None:
        return None
    try:
        parts = text.split(",")
        docs, terms, weight = int(parts[0]), int(parts[1]), float(parts[2])
        bm25_terms = int(parts[3]) if len(parts) == 4 else 10
        if len(parts) not in (3, 4):
            raise ValueError
    except (ValueError, IndexError):
        raise InvalidInput(f"--feedback {text!r}: give DOCS,TERMS,WEIGHT[,BM25_TERMS], e.g. 10,50,0.5") from None
    return Feedback(docs, terms, weight, bm25_terms, tuple(s.strip() for s in sides.split(",")))


def read_filter(text: str | None):
    """``--filter``: a JSON object, or ``@FILE`` holding one (parsed here; checked against the index's schema by the
    engine)."""
    from lsr.errors import InvalidInput, MissingFile

    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.exists():
            raise MissingFile(f"--filter {text}: {path} does not exist")
        text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"--filter is not valid JSON ({exc}); e.g. '{{\"term\": {{\"lang\": \"en\"}}}}'") from None


def run_report(args: argparse.Namespace, modes: list[str | None]) -> int:
    from lsr.evaluation import judged_queries
    from lsr.report import System, write_report

    out = Path(args.report)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    compared = [System.from_metrics_file(path) for path in args.compare]
    evaluated: list[System] = []

    def add(name_hint: str | None, mode: str | None, baseline: str | None = None) -> System:
        run_path = out / "runs" / f"{name_hint or 'default'}.trec"
        metrics = evaluate_once(args, mode, str(run_path), baseline)
        name = name_hint or metrics["mode"]
        if args.url and baseline is None:  # a deployed service: named as one
            name = f"service-{name}"
        if name_hint is None:  # the index's default mode: named by what it resolved to
            run_path = run_path.rename(out / "runs" / f"{name}.trec")
            metrics["run"] = str(run_path)
        metrics["name"] = name
        (out / "runs" / f"{name}.json").write_text(json.dumps(metrics, indent=2) + "\n")
        evaluated.append(System(name, metrics, Path(metrics["run"])))
        return evaluated[-1]

    for mode in ([None] if args.baseline else modes):
        add(args.baseline if args.baseline else mode, mode)
    baseline = args.report_baseline or next(
        (s.name for s in evaluated + compared if s.metrics.get("mode") == "bm25" or s.name.startswith("bm25")), None)
    if baseline is None:
        baseline = add("bm25s", None, baseline="bm25s").name
    systems = evaluated + compared
    _, qrels = judged_queries(args.beir, args.split)
    title = f"lsr evaluation: {Path(args.beir).resolve().name}, split {args.split}"
    print(json.dumps(write_report(systems, qrels, out, baseline, title), indent=2))
    return 0


def run_tune(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from lsr.corpus import read_qrels, read_queries
    from lsr.engine import Engine
    from lsr.errors import InvalidInput
    from lsr.fusion import Fusion
    from lsr.tuning import save, tune

    if bool(args.beir) == bool(args.queries or args.qrels) or bool(args.queries) != bool(args.qrels):
        raise InvalidInput("pass --beir DIR, or --queries FILE and --qrels FILE")
    if args.split == "test":
        print("lsr tune: warning: tuning on the test split leaves nothing to judge the result on", file=sys.stderr)
    queries = read_queries(args.beir or args.queries)
    qrels = read_qrels(args.beir or args.qrels, args.split)
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise InvalidInput(f"{len(missing)} judged queries have no text (first: {missing[0]})")
    try:
        depths = sorted({int(d) for d in args.depths.split(",")})
    except ValueError:
        raise InvalidInput(f"--depths {args.depths!r}: integers, comma-separated") from None
    if not depths or depths[0] < 10:
        raise InvalidInput("--depths: each at least 10 (the metrics read the top 10)")
    components = [c.strip() for c in args.components.split(",")] if args.components else None
    engine = Engine.open(args.index)
    from tqdm.auto import tqdm

    with tqdm(desc="fusing", unit="setting", delay=1) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        feedback = read_feedback(args.feedback, args.feedback_on)
        result = tune(engine, queries, qrels, metric=args.metric, depths=depths, components=components,
                      top=args.top, progress=progress, feedback=feedback)
    result["split"] = args.split
    if args.save:
        record = {"split": args.split, "metric": args.metric, "score": result["best"]["score"],
                  "queries": result["queries"], "source": args.beir or args.qrels,
                  "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        result["saved"] = save(args.index, Fusion.from_dict(result["best"]["fusion"]), record, feedback)
    return emit(result, args.output)


def run_export_model(args: argparse.Namespace) -> int:
    from lsr.encoders import default_encoder_directory, load_encoder
    from lsr.encoders.interop import save_sentence_transformers
    from lsr.errors import InvalidInput

    source = Path(args.encoder or default_encoder_directory()).resolve()
    target = Path(args.output).resolve()
    if target == source or source in target.parents or target in source.parents:
        raise InvalidInput(f"{args.output} is, holds or lies inside the encoder being exported ({source}); write the "
                           "export to another folder")
    encoder = load_encoder(args.encoder, device="cpu")
    out = save_sentence_transformers(encoder, target)
    print(json.dumps({"format": args.format, "output": str(out), "kind": encoder.config.kind,
                      "identity": encoder.identity()}))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from lsr import export
    from lsr.errors import InvalidInput

    engine = None
    if args.to == "qdrant" and args.check:
        from lsr.engine import Engine

        engine = Engine.open(args.index, parts=())
        index = engine.index
    else:
        from lsr.index import Index

        index = Index.open(args.index, parts=())
    from tqdm import tqdm

    name = args.collection or Path(args.index).resolve().name
    bar = tqdm(total=index.doc_count, desc=f"exporting to {args.to}", unit="doc", leave=False)
    progress = bar.update
    if args.to == "qdrant":
        if not args.qdrant_url:
            raise InvalidInput("--to qdrant needs --qdrant-url (http://host:6333, :memory: or a folder)")
        client = export.qdrant_client(args.qdrant_url)
        result = export.to_qdrant(index, client, name, replace=args.replace, impacts=args.impacts, progress=progress)
        if args.check:
            from lsr.evaluation import judged_queries

            queries, qrels = judged_queries(args.check, args.split)
            queries = [queries[qid] for qid in qrels]
            result["check"] = export.compare_with_qdrant(engine, client, name, queries, k=args.k)
        result["qdrant_url"] = args.qdrant_url
    else:
        if not args.output:
            raise InvalidInput("--to opensearch needs --output DIR (mapping.json and the bulk files go there)")
        result = export.to_opensearch(index, args.output, name, impacts=args.impacts,
                                      bulk_documents=args.bulk_documents, progress=progress)
        result["output"] = args.output
    bar.close()
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsr", description="learned sparse retrieval: encode, index, search, "
                                                             "serve, evaluate, train")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name)
    for command in commands:
        command.load()(subparsers)
    register(subparsers)
    if not commands:
        parser.epilog = ("only `lsr eval` is available: the index, train and serve commands register through the "
                         "package's entry points; install lsr (pip install -e .) to get them")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by `lsr train` in the model card
    try:
        return args.handler(args)
    except LsrError as exc:  # user errors: one clear line
        print(f"lsr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
