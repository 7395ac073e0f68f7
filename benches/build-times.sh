#!/usr/bin/env bash
# Test-build cost of a commit, on a fresh clone with its own target/:
#   benches/build-times.sh [COMMIT] [FILE_TO_TOUCH]
# prints the wall time of `cargo test --no-run` from clean, the size of target/ after
# it, and the wall time of an incremental `cargo test --no-run` after appending one
# comment line to FILE_TO_TOUCH (default: src/proxy/router.rs). Crates are fetched
# before the clock starts. Loopback only; nothing is sent anywhere.
set -euo pipefail
commit=${1:-HEAD}
touch_file=${2:-src/proxy/router.rs}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
git clone -q "$repo" "$dir/podgate"
cd "$dir/podgate"
git checkout -q "$commit"
cargo fetch -q
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
echo "commit $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "clean test build: $(seconds cargo test --no-run) s"
echo "target/ after it: $(du -sh target | cut -f1)"
echo "// one-line change" >>"$touch_file"
echo "incremental test build after touching $touch_file: $(seconds cargo test --no-run) s"
