#!/usr/bin/env bash
# Create .venv (once) and install lsr into it with its test tools. Source it or run it; safe to rerun.
#   LSR_EXTRAS   extras to install (default dev,lucene,bench,milvus,ray: tests, Pyserini + a JDK, the benchmark's
#                peers, Milvus Lite, Ray Data)
#   TORCH_SPEC   the torch to install first (default torch==2.13.0, the local CPU wheel on this kind of machine;
#                on a GPU host set e.g. TORCH_SPEC=torch to keep/get a CUDA build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
quiet_pip() {  # pip, minus this machine's harmless "Location ... is ignored" notes; fails when pip fails
  python -m pip install -q "$@" 2>&1 | { grep -v -E "^WARNING: Location .* is ignored" || true; }
  return "${PIPESTATUS[0]}"
}
if ! python -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing ${TORCH_SPEC:-torch==2.13.0}"
  quiet_pip "${TORCH_SPEC:-torch==2.13.0}"
fi
EXTRAS="${LSR_EXTRAS:-dev,lucene,bench,milvus,ray}"
echo "[setup] installing lsr (editable) with extras: $EXTRAS"
quiet_pip -e ".[$EXTRAS]"
python -c "import lsr.service.app, lsr.indexer.cli, lsr.training.trainer, lsr.encoders, torch, numba, fastapi, uvicorn, pytrec_eval, \
pydantic_settings, httpx, pytest, faiss, prometheus_client, schemathesis" || { echo "[setup] install failed: see the errors above" >&2; exit 1; }
