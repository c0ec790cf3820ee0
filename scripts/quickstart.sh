#!/usr/bin/env bash
# Set up, build the default index on first run (NFCorpus encoded by the shipped default encoder, plus a BM25 side and
# the stored texts), start the HTTP service on 127.0.0.1:8000, answer a few real queries, then keep serving until
# Ctrl-C. NFCorpus comes from the shared folder when it is there, else through ir_datasets (`beir/nfcorpus`, the
# `datasets` extra; a download on first use).
#   LSR_SHARED   folder with data/ and models/ (default ../shared)
#   LSR_INDEX    index directory (default var/indexes/nfcorpus-default)
#   LSR_PORT     port (default 8000)
#   LSR_DEMO_ONLY=1   stop the server after the demo queries instead of serving on
#   LSR_SKIP_SETUP=1  use the existing .venv as it is
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${LSR_SHARED:-$ROOT/../shared}"
CORPUS="$SHARED/data/beir/nfcorpus"
if [ ! -f "$CORPUS/corpus.jsonl" ]; then
  echo "[quickstart] $CORPUS is missing: reading NFCorpus through ir_datasets (beir/nfcorpus) instead"
  CORPUS=beir/nfcorpus
  export LSR_EXTRAS="${LSR_EXTRAS:-dev},datasets"  # the tests need ../shared anyway: no Lucene/peers here
fi
[ "${LSR_SKIP_SETUP:-0}" = "1" ] || bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
. .venv/bin/activate
INDEX="${LSR_INDEX:-var/indexes/nfcorpus-default}"
PORT="${LSR_PORT:-8000}"
if [ ! -f "$INDEX/manifest.json" ]; then
  echo "[quickstart] first run: encoding NFCorpus (3,633 documents) into $INDEX, about 2 minutes on 2 cores"
  lsr index --corpus "$CORPUS" --bm25 --store-documents --out "$INDEX"
fi
lsr serve --index "$INDEX" --host 127.0.0.1 --port "$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "the server exited; see its output above" >&2; exit 1; }
  sleep 0.5
done
ask() {  # POST /search with a JSON body, print the request and the answer
  echo "[quickstart] POST /search $1"
  curl -sf -X POST "http://127.0.0.1:$PORT/search" -H 'content-type: application/json' -d "$1"
  echo
}
for query in "do statins reduce breast cancer mortality" "vitamin d and depression" "is coffee bad for the heart"; do
  ask "{\"query\": \"$query\", \"k\": 3}"  # the index's default: learned sparse + BM25, fused
done
ask '{"query": "vitamin d and depression", "k": 3, "mode": "sparse"}'
ask '{"query": "vitamin d and depression", "k": 1, "explain": true, "return_documents": true}'
if [ "${LSR_DEMO_ONLY:-0}" = "1" ]; then exit 0; fi
echo "[quickstart] serving on http://127.0.0.1:$PORT (docs at /docs); Ctrl-C to stop"
wait $SERVER
