#!/usr/bin/env bash
# Set up, build the default index on first run (NFCorpus encoded by the shipped default encoder,
# models/inference-free-default, plus a BM25 side and the stored texts),
# start the HTTP service on 127.0.0.1:8000, answer a few real queries, then keep serving until Ctrl-C.
#   LSR_SHARED   folder with data/ and models/ (default ../shared)
#   LSR_INDEX    index directory (default var/indexes/nfcorpus-default)
#   LSR_PORT     port (default 8000)
#   LSR_DEMO_ONLY=1   stop the server after the demo queries instead of serving on
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
. .venv/bin/activate
SHARED="${LSR_SHARED:-$ROOT/../shared}"
INDEX="${LSR_INDEX:-var/indexes/nfcorpus-default}"
PORT="${LSR_PORT:-8000}"
for need in "$SHARED/data/beir/nfcorpus/corpus.jsonl"; do
  [ -f "$need" ] || { echo "missing $need: put the shared folder beside the checkout or set LSR_SHARED" >&2; exit 1; }
done
if [ ! -f "$INDEX/manifest.json" ]; then
  echo "[quickstart] first run: encoding NFCorpus (3,633 documents) into $INDEX, about 2 minutes on 2 cores"
  lsr index --corpus "$SHARED/data/beir/nfcorpus" --bm25 --store-documents --out "$INDEX"
fi
lsr serve --index "$INDEX" --host 127.0.0.1 --port "$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "the server exited; see its output above" >&2; exit 1; }
  sleep 0.5
done
for query in "do statins reduce breast cancer mortality" "vitamin d and depression" "is coffee bad for the heart"; do
  echo "[quickstart] POST /search {\"query\": \"$query\", \"k\": 3}"
  curl -s -X POST "http://127.0.0.1:$PORT/search" -H 'content-type: application/json' \
    -d "{\"query\": \"$query\", \"k\": 3}"
  echo
done
echo '[quickstart] POST /search {"query": "vitamin d and depression", "k": 3, "mode": "hybrid", fusion: learned sparse + BM25, "explain": true}'
curl -s -X POST "http://127.0.0.1:$PORT/search" -H 'content-type: application/json' \
  -d '{"query": "vitamin d and depression", "k": 3, "mode": "hybrid", "fusion": {"components": ["sparse", "bm25"]}, "explain": true}'
echo
if [ "${LSR_DEMO_ONLY:-0}" = "1" ]; then exit 0; fi
echo "[quickstart] serving on http://127.0.0.1:$PORT (docs at /docs); Ctrl-C to stop"
wait $SERVER
