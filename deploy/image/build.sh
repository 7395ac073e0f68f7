#!/usr/bin/env bash
# Builds the podgate image with buildah: a release build, stripped of debug info, and
# the shared libraries `ldd` names, into a FROM-scratch image. Prints the image id.
#   deploy/image/build.sh [TAG]        (default localhost/podgate:<version>)
# PODGATE_BIN=path skips the cargo build (a binary built elsewhere).
set -euo pipefail
cd "$(dirname "$0")/../.."
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
tag="${1:-localhost/podgate:$version}"
target="${CARGO_TARGET_DIR:-target}"

if [ -z "${PODGATE_BIN:-}" ]; then
  cargo build --release --locked --bin podgate >&2
  PODGATE_BIN="$target/release/podgate"
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
root="$context/rootfs"
install -d "$root/usr/local/bin" "$root/etc" "$root/tmp"
# No debug info in the image (the release profile keeps line tables for backtraces).
strip --strip-debug -o "$root/usr/local/bin/podgate" "$PODGATE_BIN"
# Exactly the libraries the binary links, at the paths the loader looks for.
ldd "$PODGATE_BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
# Trust roots for API servers and LBs outside the cluster's own CA, if the host has them.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
printf 'root:x:0:0:root:/:/sbin/nologin\npodgate:x:65532:65532:podgate:/:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\npodgate:x:65532:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
cp deploy/image/Containerfile "$context/"

buildah ${BUILDAH_STORAGE:+--storage-driver "$BUILDAH_STORAGE"} bud --quiet \
  --isolation chroot --layers=false -f "$context/Containerfile" -t "$tag" "$context"
