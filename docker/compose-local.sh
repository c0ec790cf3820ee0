#!/usr/bin/env bash
# Run the real compose deployment on a machine without a registry: start dockerd if none answers, build the local
# base image, build the images, run the indexing job, start the API, wait for /readyz and answer a query.
# Needs the Debian packages docker.io docker-compose debootstrap (apt-get install -y docker.io docker-compose
# debootstrap), and root to start dockerd.
#   LSR_SHARED   data and models (default ../shared);  LSR_PORT (default 8000)
#   KEEP=1       leave the API (and a dockerd this script started) running; it prints the DOCKER_HOST to reach it
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export LSR_SHARED="${LSR_SHARED:-$(cd "$ROOT/../shared" && pwd)}"
export LSR_PORT="${LSR_PORT:-8000}" BASE_IMAGE=local/debian-python:bookworm TORCH_INDEX_URL=
STATE="${LSR_DOCKER_STATE:-/var/tmp/lsr-docker}"
STARTED_DAEMON=0
for tool in docker dockerd docker-compose debootstrap; do
  command -v "$tool" >/dev/null || { echo "[compose-local] $tool is missing: apt-get install -y docker.io docker-compose debootstrap" >&2; exit 1; }
done
stop_daemon() {  # the dockerd this script started goes when the script ends, unless KEEP=1
  if [ "$STARTED_DAEMON" = 1 ] && [ "${KEEP:-0}" != 1 ] && [ -f "$STATE/dockerd.pid" ]; then
    echo "[compose-local] stopping the dockerd it started (pid $(cat "$STATE/dockerd.pid"))"
    kill "$(cat "$STATE/dockerd.pid")" 2>/dev/null || true
    for _ in $(seq 1 30); do [ -f "$STATE/dockerd.pid" ] || break; sleep 1; done
  fi
}
trap stop_daemon EXIT
if ! docker info >/dev/null 2>&1; then
  mkdir -p "$STATE"
  export DOCKER_HOST="unix://$STATE/docker.sock"
  if ! docker info >/dev/null 2>&1; then
    echo "[compose-local] starting dockerd (data root $STATE/data)"
    dockerd --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid" \
      -H "$DOCKER_HOST" >"$STATE/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $STATE/dockerd.log" >&2; exit 1; }
    STARTED_DAEMON=1
  fi
  echo "[compose-local] dockerd at DOCKER_HOST=$DOCKER_HOST (in another shell: export DOCKER_HOST=$DOCKER_HOST, then" \
       "docker-compose ps / logs / down)"
fi
bash docker/local-base.sh
WHEEL="$(ls docker/wheels/torch-*.whl 2>/dev/null | head -1 || true)"
if [ -n "$WHEEL" ]; then  # pin the local CPU wheel, or pip prefers a newer (CUDA, several GB) torch from PyPI
  export TORCH_SPEC="torch==$(basename "$WHEEL" | cut -d- -f2)"
  echo "[compose-local] torch from $WHEEL ($TORCH_SPEC)"
fi
docker-compose config -q
docker-compose build
docker volume inspect "$(basename "$ROOT" | tr -cd 'a-z0-9_-')_lsr-indexes" >/dev/null 2>&1 \
  && echo "[compose-local] index volume exists; skipping the indexing job (docker-compose down -v to redo)" \
  || docker-compose --profile index run --rm indexer
docker-compose up -d api
for _ in $(seq 1 120); do
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$(docker-compose ps -q api)")" = healthy ] && break
  sleep 2
done
docker-compose ps
curl -sf "http://127.0.0.1:$LSR_PORT/readyz"; echo
curl -sf -X POST "http://127.0.0.1:$LSR_PORT/collections/${LSR_INDEX_NAME:-nfcorpus}/search" -H 'content-type: application/json' \
  -d '{"query": "do statins reduce breast cancer mortality", "k": 3, "mode": "hybrid"}'; echo
if [ "${KEEP:-0}" = 1 ]; then
  echo "[compose-local] the API stays up: DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock} docker-compose down stops it"
  if [ "$STARTED_DAEMON" = 1 ]; then
    echo "[compose-local] and kill \$(cat $STATE/dockerd.pid) stops the dockerd it started"
  fi
else
  docker-compose down
fi
