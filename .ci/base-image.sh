#!/usr/bin/env bash
# Build the local debian:bookworm-slim base image with debootstrap (no registry is reachable here).
# Reuses the image when it already exists. Usage: .ci/base-image.sh [TAG]
set -euo pipefail
TAG="${1:-debian:bookworm-slim}"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG present"
  exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
ROOTFS="$(mktemp -d /tmp/fedsim-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "building $TAG with debootstrap into $ROOTFS ..."
debootstrap --variant=minbase bookworm "$ROOTFS" >/tmp/fedsim-debootstrap.log 2>&1 || {
  tail -20 /tmp/fedsim-debootstrap.log; exit 1; }
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" -c . | docker import --change 'CMD ["bash"]' - "$TAG" >/dev/null
echo "base image $TAG built"
