#!/usr/bin/env bash
# Dashboard end-to-end test in real headless Chromium (playwright-core over CDP).
# Idempotent: installs chromium (apt) and playwright-core (npm) only when missing.
# Env: VELOX_BIN (default target/debug/velox, built if missing), SCREENSHOT (default
# target/test-artifacts/dashboard.png).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (apt)..." >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  echo "installing playwright-core (npm)..." >&2
  (cd "$here" && npm install --no-audit --no-fund --silent)
fi

export VELOX_BIN="${VELOX_BIN:-$root/target/debug/velox}"
if [ ! -x "$VELOX_BIN" ]; then
  (cd "$root" && cargo build -p velox)
fi
mkdir -p "$root/target/test-artifacts"
export SCREENSHOT="${SCREENSHOT:-$root/target/test-artifacts/dashboard.png}"
exec node "$here/dashboard.mjs"
