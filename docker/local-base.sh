#!/usr/bin/env bash
# Build the base image local/debian-python:bookworm from Debian packages (debootstrap + docker import), for machines
# that cannot pull from a registry; and drop the local torch CPU wheel into docker/wheels/ when one is on disk.
# Needs root, debootstrap and a running docker engine (DOCKER_HOST). About 70 s.
#   MIRROR        Debian mirror (default: the one apt already uses here, else deb.debian.org)
#   IMAGE         tag to create (default local/debian-python:bookworm)
#   TORCH_WHEELS  folder with a torch CPU wheel to copy (default /opt/wheels)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-local/debian-python:bookworm}"
if [ -z "${MIRROR:-}" ]; then  # the mirror apt uses: deb822 "URIs:" lines, else one-line "deb URL suite" entries
  MIRROR="$(sed -n 's/^URIs: *\(https\{0,1\}:[^ ]*\/debian\)\/\{0,1\}$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | head -1 || true)"
  [ -z "$MIRROR" ] && MIRROR="$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list \
    2>/dev/null || true)"
  MIRROR="${MIRROR:-http://deb.debian.org/debian}"
fi
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "[local-base] $IMAGE exists"
else
  ROOTFS="$(mktemp -d /tmp/lsr-rootfs.XXXXXX)"
  trap 'rm -rf "$ROOTFS"' EXIT
  echo "[local-base] debootstrap bookworm from $MIRROR"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$ROOTFS" \
    "$MIRROR" >/dev/null
  # HTTPS here goes through an intercepting proxy: containers must trust its CA as the host does
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
    chroot "$ROOTFS" update-ca-certificates >/dev/null
  fi
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb
  : >"$ROOTFS/etc/resolv.conf"
  : >"$ROOTFS/etc/hostname"
  tar -C "$ROOTFS" -c . | docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
  echo "[local-base] built $IMAGE"
fi
WHEELS="${TORCH_WHEELS:-/opt/wheels}"
for wheel in "$WHEELS"/torch-*+cpu-cp311-*.whl; do
  [ -f "$wheel" ] && cp -n "$wheel" "$ROOT/docker/wheels/" && echo "[local-base] torch wheel: $(basename "$wheel")"
  break
done
