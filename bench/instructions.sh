#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind: a deterministic measure of
# Velox's own work that, unlike requests per CPU-second, does not move with the load of a shared
# machine. Use it to compare two builds of the request path; use bench/run.sh for throughput.
#
#   bash bench/instructions.sh [--velox PATH] [--requests N] [--no-build] [--keep DIR]
#
# An nginx origin (1 worker, on 127.0.0.1) serves /1k (`no-store`) and /cached/1k (`max-age=3600`).
# Each case starts Velox under callgrind, warms it with 2,000 requests, zeroes the counters,
# sends N requests (default 10,000) over 4 keep-alive connections from a Python client, dumps the
# counters and divides all instructions of all Velox threads by N; the second column is the share
# of the threads other than the one serving requests (with the access log on: its writer).
# Velox is pinned to CPU 0, as in bench/run.sh, so it runs the same one-CPU runtime. Cases:
#   hit-off       1 KiB memory hit, [observe] metrics and request ids off
#   hit           1 KiB memory hit, defaults (metrics and request ids on)
#   hit-log       1 KiB memory hit, defaults plus the JSON access log to a file
#   uncached      1 KiB through a `mode = "bypass"` route, defaults (bench/run.sh scenario A)
# Instruction counts include libc and the allocator; valgrind counts a `rep movsb` copy byte by
# byte, so large copies weigh more than they cost. The kernel's share is not counted.
# --keep DIR keeps each case's callgrind profiles, one per thread, as DIR/CASE.callgrind-NN (01:
# the thread serving requests), for callgrind_annotate.
# Installs valgrind, nginx and curl with apt-get when they are missing. Loopback only; bounded.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
VELOX_BIN=""
REQUESTS=10000
BUILD=1
KEEP=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        --velox) VELOX_BIN="$2"; shift 2 ;;
        --requests) REQUESTS="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || { echo "error: --requests must be a positive integer" >&2; exit 2; }

log() { printf '[instructions %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

source "$BENCH_DIR/lib.sh"   # install_missing, free_port, wait_200, plain_origin, velox_config
install_missing valgrind nginx curl python3

if [[ -z "$VELOX_BIN" ]]; then
    VELOX_BIN="$REPO_DIR/target/release/velox"
    if [[ $BUILD -eq 1 ]]; then
        log "building $VELOX_BIN"
        (cd "$REPO_DIR" && cargo build --release -p velox >&2)
    fi
fi
[[ -x "$VELOX_BIN" ]] || { echo "error: no velox binary at $VELOX_BIN" >&2; exit 1; }

TMP="$(mktemp -d /tmp/velox-instructions.XXXXXX)"
chmod 755 "$TMP"
stop_all_on_exit


# N requests over C keep-alive connections, each response read whole.
cat > "$TMP/client.py" <<'EOF'
import http.client, sys, threading
port, path, n, conns = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def run(k):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
    for _ in range(k):
        c.request('GET', path)
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
threads = [threading.Thread(target=run, args=(n // conns,)) for _ in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
EOF

ORIGIN_PORT=$(free_port)
plain_origin "$TMP/origin" "$ORIGIN_PORT"
nginx -p "$TMP/origin" -c "$TMP/origin/nginx.conf" >/dev/null 2>&1 &
ORIGIN_PID=$!
PIDS+=("$ORIGIN_PID")
wait_200 "$ORIGIN_PORT" /1k "$ORIGIN_PID"

# measure NAME PATH [EXTRA_TOML]: prints instructions per request.
measure() {
    local name="$1" path="$2" extra="${3:-}" d="$TMP/$1" port pid total serving f
    mkdir -p "$d/data"
    port=$(free_port)
    velox_config "$d/velox.toml" "$port" "$d/data" "$ORIGIN_PORT" "$extra"
    # Pinned to one CPU like bench/run.sh's servers, so Velox runs its one-CPU (current-thread)
    # runtime, as it does there.
    RUST_LOG=warn taskset -c 0 valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$d/cg.out" \
        "$VELOX_BIN" serve --config "$d/velox.toml" >"$d/velox.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_200 "$port" "$path" "$pid"
    python3 "$TMP/client.py" "$port" "$path" 2000 4
    callgrind_control -z "$pid" >/dev/null 2>&1
    python3 "$TMP/client.py" "$port" "$path" "$REQUESTS" 4
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    total=0
    for f in "$d"/cg.out.1-*; do
        total=$((total + $(awk '/^summary:/ {print $2; exit}' "$f")))
        if [[ -n "$KEEP" ]]; then mkdir -p "$KEEP" && cp "$f" "$KEEP/$name.callgrind-${f##*-}"; fi
    done
    serving=$(awk '/^summary:/ {print $2; exit}' "$d/cg.out.1-01")
    echo "$((total / REQUESTS)) $(((total - serving) / REQUESTS))"
}

log "velox: $VELOX_BIN ($("$VELOX_BIN" --version 2>&1 | head -1)); $REQUESTS requests per case"
declare -A RESULT
RESULT[hit-off]=$(measure hit-off /cached/1k $'[observe]\nmetrics = false\nrequest_id = false')
RESULT[hit]=$(measure hit /cached/1k)
RESULT[hit-log]=$(measure hit-log /cached/1k $'[access_log]\nenabled = true\npath = "'"$TMP"'/access.log"')
RESULT[uncached]=$(measure uncached /1k)

echo "| case | user-space instructions per request | of which other threads (the access-log writer) |"
echo "|---|---:|---:|"
for c in hit-off hit hit-log uncached; do
    read -r all other <<<"${RESULT[$c]}"
    printf '| %s | %s | %s |\n' "$c" "$(python3 -c "print(f'{$all:,}')")" "$(python3 -c "print(f'{$other:,}')")"
done
total() { cut -d' ' -f1 <<<"${RESULT[$1]}"; }
printf '\nhit / hit-off: %s; hit-log / hit-off: %s\n' \
    "$(python3 -c "print(f'{$(total hit)/$(total hit-off):.3f}')")" \
    "$(python3 -c "print(f'{$(total hit-log)/$(total hit-off):.3f}')")"
