#!/usr/bin/env bash
# The whole Velox test suite, on a fresh machine: installs what the tests need, then
# formatting check, lints, unit tests and integration tests over real sockets.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v kill >/dev/null 2>&1 || need_apt+=(procps)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust from https://rustup.rs first" >&2
  exit 1
fi

# The debug build and its test binaries take about 2 GiB: say so plainly rather than let the
# linker fail half-way with "No space left on device".
need_kib=$((3 * 1024 * 1024))
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ -n "$free_kib" ] && [ "$free_kib" -lt "$need_kib" ]; then
  echo "error: the build needs about 3 GiB free disk here; only $((free_kib / 1024)) MiB are free" >&2
  exit 1
fi

# Enough descriptors for the connection-heavy tests.
ulimit -n 65536 2>/dev/null || true

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> cargo test"
cargo test --workspace --quiet

echo "==> dashboard in headless Chromium"
bash tests/browser/run.sh

echo "==> all tests passed"
