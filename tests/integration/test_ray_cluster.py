"""`lsr index --ray`: a 2-node Ray cluster on loopback, inside a network namespace of its own (some of Ray's ports
bind every interface), encodes a corpus slice; the index equals a single-process build bit for bit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

REQUIRED = os.environ.get("LSR_REQUIRE_SCALEOUT") == "1"  # CI installs the ray extra and runs as root: never skip
if REQUIRED:
    import ray  # noqa: F401
pytest.importorskip("ray")

from tests.conftest import NFCORPUS, write_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LSR = [sys.executable, "-m", "lsr"]

CLUSTER = """
set -u
ip link set lo up
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')"
export RAY_TMPDIR="$TMP_RAY"
ray start --head --node-ip-address 127.0.0.1 --port 6380 --num-cpus 1 --include-dashboard=false \
    --disable-usage-stats --temp-dir "$TMP_RAY" > "$TMP_RAY/head.log" 2>&1 || { cat "$TMP_RAY/head.log"; exit 3; }
ray start --address 127.0.0.1:6380 --node-ip-address 127.0.0.1 --num-cpus 1 > "$TMP_RAY/worker.log" 2>&1 \
    || { cat "$TMP_RAY/worker.log"; ray stop --force > /dev/null 2>&1; exit 4; }
"$PYTHON" -m lsr index "$@" --ray 127.0.0.1:6380
rc=$?
ray stop --force > /dev/null 2>&1
exit $rc
"""


def can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def corpus(tmp_path: Path, n: int = 48) -> Path:
    if NFCORPUS.exists():
        lines = (NFCORPUS / "corpus.jsonl").read_text().splitlines()[:n]
        return write_jsonl(tmp_path / "corpus.jsonl", lines)
    words = "statin breast cancer heart disease diet vitamin fish oil risk women men blood pressure".split()
    return write_jsonl(tmp_path / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": " ".join(
        words[(i + j) % len(words)] for j in range(5 + i % 30))} for i in range(n)])


def segment_arrays(directory: Path) -> dict[str, np.ndarray]:
    from lsr.index import storage

    generation = storage.Generation.read(storage.current_generation_file(directory))
    return {f"{entry.name}/{path.name}": np.load(path) for entry in generation.segments
            for path in sorted((directory / "segments" / entry.name).glob("*.npy"))}


def test_two_ray_nodes_build_the_index_a_single_process_builds(tmp_path):
    if not can_unshare():
        if REQUIRED:
            pytest.fail("LSR_REQUIRE_SCALEOUT=1 but this runner cannot make a network namespace (root, unshare, ip)")
        pytest.skip("needs root, unshare and ip (a network namespace for the Ray nodes)")
    source = corpus(tmp_path)
    flags = ["--corpus", str(source), "--chunk-documents", "12", "--impact-dtype", "float32", "--bm25"]
    ray_flags = ["--ray-window", "2"]  # 4 chunks, handed to Ray 2 at a time
    local = subprocess.run([*LSR, "index", *flags, "--out", str(tmp_path / "local")], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-2000:]
    short = Path(tempfile.mkdtemp(prefix="lsr-ray-", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    env = {**os.environ, "TMP_RAY": str(short), "PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    try:
        done = subprocess.run(["unshare", "-n", "bash", "-c", CLUSTER, "cluster", *flags, *ray_flags, "--out",
                               str(tmp_path / "distributed")], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    report = json.loads(done.stdout[done.stdout.index("{"):done.stdout.rindex("}") + 1])
    assert report["ray"]["nodes"] == 2 and report["documents"] == 48
    want, got = segment_arrays(tmp_path / "local"), segment_arrays(tmp_path / "distributed")
    assert want.keys() == got.keys() and any(name.endswith("impacts.npy") for name in want)
    for name in want:  # float32 impacts: the encoder's weights, bit for bit
        assert want[name].dtype == got[name].dtype and np.array_equal(want[name], got[name]), name
    manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("local", "distributed")]
    assert manifests[0]["encoder"] == manifests[1]["encoder"] and manifests[0]["scale"] == manifests[1]["scale"]


def test_a_ray_address_that_does_not_answer_is_named_at_once(tmp_path):
    started = time.perf_counter()
    done = subprocess.run([*LSR, "index", "--corpus", str(corpus(tmp_path, 4)), "--out", str(tmp_path / "x"),
                           "--ray", "127.0.0.1:9"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no Ray cluster answers at 127.0.0.1:9" in done.stderr, done.stderr[-2000:]
    assert time.perf_counter() - started < 60 and not (tmp_path / "x").exists()


def test_a_missing_ray_extra_is_one_line(monkeypatch):
    from lsr.errors import MissingDependency
    from lsr.indexer.distributed import require

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependency, match=r"pip install 'lsr\[ray\]'"):
        require()
