#!/usr/bin/env bash
# The release build to deploy and to benchmark: profile-guided (PGO).
#
#   bash scripts/release-build.sh [--out PATH]      (default PATH: target/pgo/velox)
#
# 1. builds Velox instrumented (rustc -Cprofile-generate);
# 2. trains it on the main job, on loopback: an nginx origin serving 1 KiB and 100 KiB files,
#    Velox proxying uncached requests and serving cache hits and misses over HTTP/1.1, h2c and
#    TLS (h1 and h2), with observability off, on (the defaults) and with the access log;
# 3. merges the profiles (llvm-profdata) and builds again with them (rustc -Cprofile-use).
#
# The compiler then lays out and inlines the request path by how it actually runs: 5-7% more
# requests per CPU-second than `cargo build --release` (BENCHMARKS.md). About 5 minutes on 2 cores.
# Installs nginx, wrk, curl, openssl and an llvm-profdata able to read this rustc's profiles
# (Debian's llvm-19 or newer) when they are missing. `velox --version` names the build.
# EXTRA_RUSTFLAGS is added to both builds' RUSTFLAGS, e.g. "-Ctarget-cpu=native" for a binary that
# runs only on CPUs like this one's.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT="$REPO/target/pgo/velox"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

log() { printf '[release-build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

apt_install() {
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    log "installing: $*"
    $sudo apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$@" >&2 \
        || die "could not install $*"
}

missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
[[ ${#missing[@]} -gt 0 ]] && apt_install "${missing[@]}"
export PATH="$PATH:/usr/sbin:/sbin"

# llvm-profdata reads raw profiles only from its own LLVM version or older ones: rustup's
# llvm-tools match rustc exactly; otherwise Debian's llvm-19 or newer reads them (rustc's raw
# profile format has not changed since LLVM 19). With none installed, the newest packaged llvm-N
# is installed (Debian 12 has llvm-22 in bookworm-security: rustc 1.95's own LLVM).
LLVM_MIN=19
find_profdata() {
    local sysroot candidate
    sysroot=$(rustc --print sysroot)
    for candidate in "$sysroot"/lib/rustlib/*/bin/llvm-profdata; do
        [[ -x "$candidate" ]] && { echo "$candidate"; return 0; }
    done
    for candidate in $(ls -d /usr/lib/llvm-*/bin/llvm-profdata 2>/dev/null | sort -V -r); do
        local major=${candidate#/usr/lib/llvm-}
        major=${major%%/*}
        [[ "$major" =~ ^[0-9]+$ && $major -ge $LLVM_MIN ]] && { echo "$candidate"; return 0; }
    done
    return 1
}
PROFDATA=$(find_profdata) || {
    pkg=$(apt-cache search --names-only '^llvm-[0-9]+$' 2>/dev/null | awk '{print $1}' | sort -V | tail -1)
    [[ -n "$pkg" && ${pkg#llvm-} -ge $LLVM_MIN ]] \
        || die "no llvm-profdata for LLVM $LLVM_MIN or newer: run 'rustup component add llvm-tools'"
    apt_install "$pkg"
    PROFDATA=$(find_profdata) || die "$pkg installed no usable llvm-profdata"
}
log "llvm-profdata: $PROFDATA; rustc $(rustc -vV | awk '/^release/{print $2}') with LLVM $(rustc -vV | awk '/^LLVM/{print $3}')"

WORK=$(mktemp -d /tmp/velox-pgo.XXXXXX)
chmod 755 "$WORK"   # nginx workers run unprivileged and read the origin's files from here
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. instrumented build
log "1/3 instrumented build (target/pgo-gen)"
# A fixed profile path: a new one in RUSTFLAGS would rebuild everything each time.
RUSTFLAGS="-Cprofile-generate=$REPO/target/pgo-gen/build-profiles ${EXTRA_RUSTFLAGS:-}" CARGO_TARGET_DIR="$REPO/target/pgo-gen" \
    cargo build --release -p velox >&2 || die "instrumented build failed"
TRAINEE="$REPO/target/pgo-gen/release/velox"

# ---------------------------------------------------------------- 2. training
source "$REPO/bench/lib.sh"
wait_http() {   # URL PID
    local i
    for i in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || die "server for $1 exited during start-up"
        curl -sk -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    die "no answer from $1 within 10 s"
}

log "2/3 training on loopback"
ORIGIN_PORT=$(free_port)
plain_origin "$WORK/origin" "$ORIGIN_PORT"
nginx -p "$WORK/origin" -e "$WORK/origin/error.log" -c "$WORK/origin/nginx.conf" &
PIDS+=($!)
wait_http "http://127.0.0.1:$ORIGIN_PORT/1k" "${PIDS[-1]}"

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1 || die "openssl could not make a certificate"

# train NAME EXTRA_TOML: one Velox run of the request mix, its profile kept under $WORK/train.
train() {
    local name="$1" extra="$2" port tls_port pid d="$WORK/$1"
    port=$(free_port); tls_port=$(free_port)
    mkdir -p "$d/data"
    velox_config "$d/velox.toml" "$port" "$d/data" "$ORIGIN_PORT" "[[server.tls]]
listen = \"127.0.0.1:$tls_port\"
[[server.tls.certificates]]
cert = \"$WORK/cert.pem\"
key = \"$WORK/key.pem\"
$extra"
    LLVM_PROFILE_FILE="$WORK/train/velox-%p.profraw" RUST_LOG=warn \
        "$TRAINEE" serve --config "$d/velox.toml" > "$d/velox.log" 2>&1 &
    pid=$!
    PIDS+=($pid)
    wait_http "http://127.0.0.1:$port/1k" "$pid"
    local base="http://127.0.0.1:$port" tls="https://127.0.0.1:$tls_port" path i
    for path in /1k /cached/1k /cached/100k; do
        wrk -t1 -c32 -d3s "$base$path" > /dev/null || die "wrk failed on $base$path"
    done
    wrk -t1 -c8 -d2s "$tls/cached/1k" > /dev/null || die "wrk failed on $tls/cached/1k"
    # Misses and stores (distinct keys), h2 over TLS and h2c, HEAD, ranges, validation, a body.
    curl -sk --http2 -Z --parallel-max 16 "$tls/cached/1k?miss=[1-2000]" > /dev/null
    # h2c: one connection per request (curl 7.88 fails reusing a prior-knowledge connection:
    # curl/curl#10634, fixed in 8.0).
    for i in $(seq 1 100); do curl -s --http2-prior-knowledge "$base/cached/1k?h2c=$i"; done > /dev/null
    curl -s -I "$base/cached/1k?n=[1-200]" > /dev/null
    curl -s -r 0-99 "$base/cached/100k?r=[1-200]" > /dev/null
    curl -s -H 'If-None-Match: "x"' -H 'If-Modified-Since: Thu, 01 Jan 2026 00:00:00 GMT' "$base/cached/1k?v=[1-200]" > /dev/null
    curl -s -X POST --data-binary @"$WORK/origin/www/1k" "$base/1k?p=[1-200]" > /dev/null
    kill -TERM "$pid"
    for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && die "velox ($name) did not stop within 15 s; its profile would be lost"
    wait "$pid" 2>/dev/null || true
    log "trained: $name"
}
train observability-off $'[observe]\nmetrics = false\nrequest_id = false'
train defaults ""
train access-log $'[access_log]\nenabled = true\npath = "'"$WORK/access-log/access.log"'"'
ls "$WORK"/train/*.profraw > /dev/null 2>&1 || die "training left no profiles"

# ---------------------------------------------------------------- 3. optimised build
"$PROFDATA" merge -o "$WORK/velox.profdata" "$WORK"/train/*.profraw \
    || die "$PROFDATA cannot read these profiles: run 'rustup component add llvm-tools' for a matching one"
log "3/3 profile-guided build (target/pgo)"
RUSTFLAGS="-Cprofile-use=$WORK/velox.profdata ${EXTRA_RUSTFLAGS:-}" VELOX_PGO=1 CARGO_TARGET_DIR="$REPO/target/pgo" \
    cargo build --release -p velox >&2 || die "profile-guided build failed"
mkdir -p "$(dirname "$OUT")"
[[ "$REPO/target/pgo/release/velox" -ef "$OUT" ]] || cp "$REPO/target/pgo/release/velox" "$OUT"
log "done: $OUT ($("$OUT" --version))"
echo "$OUT"
