#!/usr/bin/env bash
# Purge benchmark (issue 4): the cost of a tag purge, and what purge records add to a hit.
#
#   bash bench/purge.sh [--objects N] [--records N] [--duration S] [--rounds N] [--velox PATH] [--no-build]
#
# 1. Tag purge: Velox (memory tier only) in front of an nginx origin whose /obj/ responses carry
#    `Surrogate-Key: bulk`; wrk fills N objects (default 100,000; 32 connections, each URL once),
#    then `POST /api/purge {"tags":["bulk"]}`: the server-side time (`took_us`, measured in the
#    handler around recording the purge) and the client round trip (curl, which includes the
#    up-to-1-ms wait for the clock to leave the record's millisecond), first purge and median of
#    5 more; then the next requests for purged objects must be misses (`detail=purged`).
# 2. Hit cost: two fresh Velox instances pinned to CPU 0, one with no purge records and one with
#    N records (default 10,000 tag purges of tags nothing carries); wrk -t1 -c32 on CPU 1 on one
#    cached URL carrying two tags, rounds interleaved; requests per server CPU-second
#    (utime+stime from /proc) for both, medians, and their ratio (goal >= 0.95). The origin's
#    request counter (stub_status) must stay flat during each run (all hits).
#
# Needs: nginx, wrk, curl, jq, python3, taskset. Builds with
# CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/velox-head-target} cargo build --release -p velox.
# Results: Markdown on stdout and in bench/results/purge-latest.md.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/velox-head-target}"
VELOX_BIN="$TARGET_DIR/release/velox"
OBJECTS=100000
RECORDS=10000
DURATION=10
ROUNDS=3
BUILD=1
PROXY_CPU=0
LOAD_CPU=1

while [ $# -gt 0 ]; do
    case "$1" in
        --objects) OBJECTS="$2"; shift 2 ;;
        --records) RECORDS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --velox) VELOX_BIN="$2"; BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "purge.sh: $*" >&2; exit 1; }
for tool in nginx wrk curl jq python3 taskset; do
    command -v "$tool" >/dev/null 2>&1 || die "needs $tool"
done
if [ "$BUILD" = 1 ]; then
    (cd "$REPO_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p velox) || die "build failed"
fi
[ -x "$VELOX_BIN" ] || die "no velox binary at $VELOX_BIN"

TMP="$(mktemp -d /tmp/velox-purge.XXXXXX)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # free_port, nginx_conf

wait_http() { # PORT PATH PID
    local i
    for i in $(seq 1 200); do
        kill -0 "$3" 2>/dev/null || die "server (pid $3) exited during start-up"
        curl -s -o /dev/null "http://127.0.0.1:$1$2" && return 0
        sleep 0.05
    done
    die "nothing answered on port $1"
}

# utime+stime in seconds of one process (fields 14 and 15 of /proc/PID/stat).
cpu_seconds() {
    local ticks
    ticks=$(sed 's/.*) //' /proc/"$1"/stat | awk '{print $12 + $13}')
    python3 -c "import os; print($ticks / os.sysconf('SC_CLK_TCK'))"
}

origin_requests() {
    curl -s "http://127.0.0.1:$ORIGIN_PORT/origin_status" | awk 'NR == 3 {print $3}'
}

# ------------------------------------------------------------------ the origin (nginx)
d="$TMP/origin"
ORIGIN_PORT=$(free_port)
nginx_conf "$d" 1024 "
    default_type text/plain;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location /obj/ {
            add_header Cache-Control 'public, max-age=3600';
            add_header Surrogate-Key 'bulk';
            return 200 'small object\n';
        }
        location = /hot {
            add_header Cache-Control 'public, max-age=3600';
            add_header Surrogate-Key 'hot page';
            return 200 'a cached page that is hit over and over\n';
        }
        location = /origin_status { stub_status; }
    }"
taskset -c "$LOAD_CPU" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
ORIGIN_PID=$!
PIDS+=("$ORIGIN_PID")
wait_http "$ORIGIN_PORT" /hot "$ORIGIN_PID"

# start_velox NAME CPUS: sets PORT_<NAME>, ADMIN_<NAME>, PID_<NAME>.
start_velox() {
    local name="$1" cpus="$2" d="$TMP/$1" port admin pid
    mkdir -p "$d/data"
    port=$(free_port)
    admin=$(free_port)
    cat > "$d/velox.toml" <<EOF
[server]
listen = ["127.0.0.1:$port"]
data_dir = "$d/data"

[admin]
listen = "127.0.0.1:$admin"
token = "bench"

[cache]
memory_size = "1GiB"
disk_size = 0

[[upstreams]]
name = "origin"
servers = ["http://127.0.0.1:$ORIGIN_PORT"]

[[routes]]
path_prefix = "/"
upstream = "origin"
EOF
    RUST_LOG=warn taskset -c "$cpus" "$VELOX_BIN" serve --config "$d/velox.toml" >"$d/velox.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "$port" /hot "$pid"
    printf -v "PORT_$name" '%s' "$port"
    printf -v "ADMIN_$name" '%s' "$admin"
    printf -v "PID_$name" '%s' "$pid"
}

purge_call() { # ADMIN_PORT BODY_FILE OUT_JSON -> prints the round trip in µs
    local t
    t=$(curl -s -o "$3" -w '%{time_total}' -H 'Authorization: Bearer bench' \
        -H 'Content-Type: application/json' --data-binary @"$2" "http://127.0.0.1:$1/api/purge")
    jq -e '.at_ms' "$3" >/dev/null || die "purge failed: $(cat "$3")"
    python3 -c "print(round($t * 1e6))"
}

cache_status() { # PORT PATH
    curl -s -D - -o /dev/null "http://127.0.0.1:$1$2" | tr -d '\r' | awk -F': ' 'tolower($1) == "cache-status" {print $2}'
}

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# ------------------------------------------------------------------ 1. tag purge of N objects
start_velox fill "$PROXY_CPU,$LOAD_CPU"
cat > "$TMP/fill.lua" <<EOF
local n, i, done = $OBJECTS, 0, 0
request = function()
    i = i + 1
    return wrk.format("GET", "/obj/" .. ((i - 1) % n))
end
response = function(status)
    if status ~= 200 then error("status " .. status) end
    done = done + 1
    if done >= n then wrk.thread:stop() end
end
EOF
stored_objects() {
    curl -s "http://127.0.0.1:$ADMIN_fill/metrics" | awk '/^velox_cache_objects\{tier="memory"\}/ {print $2}'
}
echo "filling $OBJECTS objects tagged 'bulk'..." >&2
fill_start=$(date +%s.%N)
# wrk stops sending after N responses but runs out its duration: stop it once all are stored
# (N objects plus /hot, stored when the instance started).
wrk -t1 -c32 -d180s -s "$TMP/fill.lua" "http://127.0.0.1:$PORT_fill" >"$TMP/fill.log" 2>&1 &
WRK_PID=$!
stored=0
while kill -0 "$WRK_PID" 2>/dev/null; do
    stored=$(stored_objects)
    [ "${stored:-0}" -gt "$OBJECTS" ] && break
    sleep 0.2
done
kill "$WRK_PID" 2>/dev/null || true
wait "$WRK_PID" 2>/dev/null || true
fill_secs=$(python3 -c "print(round($(date +%s.%N) - $fill_start, 1))")
stored=$(stored_objects)
[ "${stored:-0}" -gt "$OBJECTS" ] || die "only ${stored:-0} objects stored (expected $OBJECTS + /hot): $(cat "$TMP/fill.log")"
for path in /obj/0 /obj/$((OBJECTS / 2)) /obj/$((OBJECTS - 1)); do
    case "$(cache_status "$PORT_fill" "$path")" in
        "velox; hit"*) ;;
        *) die "$path is not a hit before the purge" ;;
    esac
done

echo '{"tags":["bulk"]}' > "$TMP/bulk.json"
first_rtt=$(purge_call "$ADMIN_fill" "$TMP/bulk.json" "$TMP/first.json")
first_took=$(jq -r .took_us "$TMP/first.json")
missed=0
for path in /obj/0 /obj/$((OBJECTS / 2)) /obj/$((OBJECTS - 1)); do
    status=$(cache_status "$PORT_fill" "$path")
    case "$status" in
        *fwd=uri-miss*detail=purged*) missed=$((missed + 1)) ;;
        *) die "$path after the purge: $status (expected a purged miss)" ;;
    esac
done
: > "$TMP/took"
: > "$TMP/rtt"
for _ in 1 2 3 4 5; do
    purge_call "$ADMIN_fill" "$TMP/bulk.json" "$TMP/again.json" >> "$TMP/rtt"
    jq -r .took_us "$TMP/again.json" >> "$TMP/took"
done
again_took=$(median < "$TMP/took")
again_rtt=$(median < "$TMP/rtt")
kill "$PID_fill"

# ------------------------------------------------------------------ 2. hit cost of N records
start_velox base "$PROXY_CPU"
start_velox loaded "$PROXY_CPU"
python3 -c "import json; print(json.dumps({'tags': ['unused-%d' % i for i in range($RECORDS)]}))" > "$TMP/records.json"
purge_call "$ADMIN_loaded" "$TMP/records.json" "$TMP/records-answer.json" >/dev/null
records=$(jq -r .records "$TMP/records-answer.json")
[ "$records" = "$RECORDS" ] || die "expected $RECORDS records, the node holds $records"
for name in base loaded; do
    port_var="PORT_$name"
    curl -s -o /dev/null "http://127.0.0.1:${!port_var}/hot"
    case "$(cache_status "${!port_var}" /hot)" in
        "velox; hit"*) ;;
        *) die "/hot is not a hit on $name" ;;
    esac
done

declare -A PER_CPU RPS
for round in $(seq 1 "$ROUNDS"); do
    for name in base loaded; do
        port_var="PORT_$name" pid_var="PID_$name"
        o0=$(origin_requests)
        c0=$(cpu_seconds "${!pid_var}")
        out=$(taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"${DURATION}s" "http://127.0.0.1:${!port_var}/hot")
        c1=$(cpu_seconds "${!pid_var}")
        o1=$(origin_requests)
        # The two stub_status reads count one request between them.
        [ $((o1 - o0)) -le 1 ] || die "$name: the origin saw $((o1 - o0 - 1)) requests: not all hits"
        echo "$out" | grep -q 'Non-2xx' && die "$name: errors: $out"
        requests=$(echo "$out" | awk '/requests in/ {print $1}')
        PER_CPU[$name]+="$(python3 -c "print(round($requests / ($c1 - $c0)))") "
        RPS[$name]+="$(echo "$out" | awk '/^Requests\/sec/ {printf "%d", $2}') "
        echo "round $round $name: $requests requests, $(python3 -c "print(round($c1 - $c0, 2))") CPU s" >&2
    done
done
base_cpu=$(echo "${PER_CPU[base]}" | tr ' ' '\n' | grep . | median)
loaded_cpu=$(echo "${PER_CPU[loaded]}" | tr ' ' '\n' | grep . | median)
base_rps=$(echo "${RPS[base]}" | tr ' ' '\n' | grep . | median)
loaded_rps=$(echo "${RPS[loaded]}" | tr ' ' '\n' | grep . | median)
ratio=$(python3 -c "print(f'{$loaded_cpu / $base_cpu:.3f}')")

mkdir -p "$BENCH_DIR/results"
{
    echo "### Purge ($(date -u +%Y-%m-%d), velox $(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo '?'))"
    echo
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)."
    echo "Command: \`bash bench/purge.sh --objects $OBJECTS --records $RECORDS --duration $DURATION --rounds $ROUNDS\`"
    echo
    echo "| Tag purge of $OBJECTS stored objects | server (took_us) | client round trip |"
    echo "|---|---|---|"
    echo "| first purge | ${first_took} µs | ${first_rtt} µs |"
    echo "| median of 5 more | ${again_took} µs | ${again_rtt} µs |"
    echo
    echo "Fill: $OBJECTS objects in ${fill_secs} s (wrk -c32). After the purge, $missed of $missed sampled objects were misses (\`detail=purged\`)."
    echo
    echo "| Hits on one URL, wrk -t1 -c32 ${DURATION}s x $ROUNDS | req/s (median) | req per server CPU-second (median) |"
    echo "|---|---|---|"
    echo "| 0 purge records | $base_rps | $base_cpu |"
    echo "| $RECORDS purge records | $loaded_rps | $loaded_cpu |"
    echo
    echo "Ratio (records / none), per CPU-second: **$ratio** (goal >= 0.95)."
} | tee "$BENCH_DIR/results/purge-latest.md"
