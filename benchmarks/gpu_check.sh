#!/usr/bin/env bash
# The GPU goals of the performance round in one short device run (about 5 minutes on an H200): document encoding
# against the naive SPLADE loop at batch 256 (fp32, bf16, fp16), and query encoding through /search with a siamese
# splade-tiny index served with --device cuda (wrk and httpx, c=1 and c=8). Results land in $OUT (default var/bench/gpu).
#   bash benchmarks/gpu_check.sh            # on the device machine, after scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
S="${LSR_SHARED:-../shared}"
OUT="${OUT:-var/bench/gpu}"
PY="${PYTHON:-.venv/bin/python}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1 || true
"$PY" benchmarks/encode_throughput.py --device "$DEVICE" --docs "${DOCS:-4096}" --batch-size 256 \
      --model "$S/models/splade-tiny" --corpus "$S/data/beir/nfcorpus" --output "$OUT/encode.json" | tee "$OUT/encode.txt"
"$PY" -m lsr index --corpus "$S/data/beir/nfcorpus" --encoder "$S/models/splade-tiny" --kind splade \
      --device "$DEVICE" --batch-size 256 --limit "${INDEX_DOCS:-3633}" --out var/indexes/gpu-splade > "$OUT/index.txt" 2>&1
"$PY" benchmarks/load.py --index var/indexes/gpu-splade --modes sparse --workers 1 --duration "${DURATION:-8}" \
      --device "$DEVICE" --beir "$S/data/beir/nfcorpus" --output "$OUT/load.json" | tee "$OUT/load.txt"
