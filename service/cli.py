"""`lsr serve`: the HTTP API under uvicorn (one process, or several workers over the same memory-mapped index)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from lsr.retrievers import backend_names


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="serve an index over HTTP (FastAPI + uvicorn)")
    serve.add_argument("--index", default=None, metavar="DIR",
                       help="index directory (or LSR_INDEX), served as the collection `default`")
    serve.add_argument("--data", default=None, metavar="DIR",
                       help="data directory (or LSR_DATA): every index under it is a collection named by its folder, "
                            "served under /collections/NAME/; collections are created and dropped there")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--device", default=None, help="query encoding device (siamese and dense encoders)")
    serve.add_argument("--workers", type=int, default=None, help="uvicorn worker processes (default 1)")
    serve.add_argument("--config", metavar="FILE", default=None,
                       help="settings file, YAML or JSON (or LSR_CONFIG_FILE); LSR_* variables override it")
    serve.add_argument("--backend", choices=backend_names(), default=None,
                       help="sparse search backend (default native)")
    serve.add_argument("--milvus-uri", default=None, metavar="URI",
                       help="milvus backend: where the collection is (default: the one `lsr index milvus` recorded)")
    serve.add_argument("--milvus-collection", default=None, metavar="NAME", help="milvus backend: collection name")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """One worker: this process opens the index and serves it. Several: the index is checked first in a child process
    that exits, then this process replaces itself with the supervisor (:mod:`lsr.service.supervisor`: uvicorn's
    parent, which imports nothing else), and each worker opens the memory-mapped index itself; the parent never
    holds an engine, the models or the kernels (README, "Serving memory")."""
    from pydantic import ValidationError

    from lsr.service.settings import CONFIG_FILE_ENV, Settings

    if args.config:
        os.environ[CONFIG_FILE_ENV] = args.config
    overrides = {key: value for key, value in (("index", args.index), ("data", args.data), ("host", args.host),
                                               ("port", args.port),
                                               ("device", args.device), ("workers", args.workers),
                                               ("backend", args.backend), ("milvus_uri", args.milvus_uri),
                                               ("milvus_collection", args.milvus_collection)) if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:  # a bad LSR_* variable or settings-file value: one line each, no traceback
        for error in exc.errors():
            print(f"lsr serve: error: setting {'.'.join(str(p) for p in error['loc'])}: {error['msg']}",
                  file=sys.stderr)
        return 2
    if settings.index is None and settings.data is None:
        print("lsr serve: nothing to serve; pass --index DIR or --data DIR (or set LSR_INDEX or LSR_DATA)",
              file=sys.stderr)
        return 2
    if settings.data is not None:
        from lsr.collections import DataDirectory

        DataDirectory(settings.data)  # a path that is a file: one line here (a missing folder is created)
    from lsr.threads import plan

    plan(settings.workers)  # a bad LSR_THREADS / LSR_TORCH_THREADS: one line here, before any worker starts
    if settings.workers == 1:
        import uvicorn

        from lsr.service.app import create_app, open_engine
        from lsr.service.server import http_protocol
        from lsr.threads import configure

        engine = open_engine(settings) if settings.index is not None else None  # fail here, with one line
        configure(workers=1)
        uvicorn.run(create_app(settings, engine=engine), host=settings.host, port=settings.port, log_level="info",
                    http=http_protocol())
        return 0
    # the workers build their Settings from the environment (this process's own is left as it was)
    env = {**os.environ, **{f"LSR_{key.upper()}": str(value) for key, value in overrides.items()}}
    if settings.index is not None and not index_opens(env):
        return 2
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):  # /metrics adds up every worker's counts
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="lsr-metrics-")
    sys.stdout.flush()
    sys.stderr.flush()
    # this process becomes the supervisor (same pid, so signals reach it), without what it imported to get here
    os.execve(sys.executable, [sys.executable, "-m", "lsr.service.supervisor", "--host", settings.host,
                               "--port", str(settings.port), "--workers", str(settings.workers)], env)
    return 0  # pragma: no cover - execve does not return


def index_opens(env: dict) -> bool:
    """Open the index the settings in ``env`` name in a child process, as a worker will (a bad index fails here
    with the worker's one line, not in a restart loop of workers); True when it opened."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", "import sys; from lsr.service.cli import check_index; "
                                                 "sys.exit(check_index())"], env=env)
    return done.returncode == 0


def check_index() -> int:
    from lsr.errors import LsrError
    from lsr.service.app import open_engine
    from lsr.service.settings import Settings

    try:
        open_engine(Settings())
    except LsrError as exc:
        print(f"lsr serve: error: {exc}", file=sys.stderr)
        return 2
    return 0
