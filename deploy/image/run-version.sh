#!/usr/bin/env bash
# Runs `podgate --version` inside the image: with `podman run` where it can start a
# container, else by chroot into the image's mounted filesystem (as the image's user).
# Prints which way on stderr, the output on stdout.
#   deploy/image/run-version.sh TAG
set -euo pipefail
tag="$1"
storage=(${BUILDAH_STORAGE:+--storage-driver "$BUILDAH_STORAGE"})
if out="$(podman "${storage[@]}" run --rm --network none "$tag" --version 2>/dev/null)"; then
  echo "ran with podman run" >&2
  printf '%s\n' "$out"
  exit 0
fi
container="$(buildah "${storage[@]}" from "$tag")"
trap 'buildah "${storage[@]}" rm "$container" >/dev/null' EXIT
mount="$(buildah "${storage[@]}" mount "$container")"
user="$(buildah "${storage[@]}" inspect --format '{{.OCIv1.Config.User}}' "$tag")"
echo "podman run cannot start a container here; ran by chroot into the image as $user" >&2
chroot --userspec="$user" "$mount" /usr/local/bin/podgate --version
