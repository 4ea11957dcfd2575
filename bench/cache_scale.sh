#!/usr/bin/env bash
# Cache scale and hit-ratio benchmark (issue 3): the two cache targets that bench/run.sh does not measure.
#
#   bash bench/cache_scale.sh [--objects N] [--requests N] [--sample N] [--fill-conns N] [--replay-conns N]
#                             [--only-disk | --only-zipf] [--velox PATH] [--no-build]
#
# Part 1 (disk tier at scale): an nginx origin answers any /o/N with a fixed 256-byte body and
#   `Cache-Control: public, max-age=86400`. Velox runs with [cache] memory_size = "32MiB",
#   disk_size = "4GiB" (data_dir in the temp dir), default route policy, admin on a free port.
#   wrk walks a counter over /o/0 .. /o/N-1, each URL requested once (-t1, one Lua state shared
#   by all connections). Until the disk-tier object count (velox_cache_objects{tier="disk"}) is
#   stable, the script waits; then it reports Velox's VmRSS, objects and bytes per tier, and
#   re-requests 1,000 random earlier URLs (hit = Cache-Status contains "hit"; origin requests
#   counted with the origin's stub_status). Then SIGTERM, restart on the same data_dir, and the
#   time until the listener accepts, until the first sampled URL is a hit, and until the disk
#   index (rebuilt in the background) has its final object count.
# Part 2 (Zipf hit ratio): one deterministic request stream (Zipf alpha = 0.9 over N objects,
#   fixed seed, ranks shuffled onto object ids), replayed by the same wrk client through Velox
#   (memory_size = "100MiB", disk_size = 0) and Varnish (-s malloc,100M), one after the other,
#   each with a cold cache, both in front of the same origin (1 KiB bodies, max-age=86400).
#   Origin requests are counted with stub_status around each half of each replay;
#   hit ratio = 1 - origin requests / requests.
#
# Proxies are pinned to CPU 0; wrk and the origin to CPU 1 (as in bench/run.sh). Everything
# listens on 127.0.0.1 only; every wrk run is bounded by a request count and a timeout.
# Results: Markdown on stdout and in bench/results/cache-scale-latest.md; raw log in
# bench/results/cache-scale-latest.log.

set -uo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS_DIR="$BENCH_DIR/results"
TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/velox-head-target}"

OBJECTS=1000000        # part 1: distinct URLs filled; part 2: Zipf universe
REQUESTS=2000000       # part 2: length of the request stream
ALPHA=0.9
SEED=20261125
SAMPLE=1000            # part 1: random earlier URLs re-requested
FILL_CONNS=16          # part 1: wrk connections during the fill
REPLAY_CONNS=32        # part 2: wrk connections during the replays
ZIPF_BODY=1024         # part 2 body size
DISK_BODY=256          # part 1 body size
CACHE_MEM="100MiB"     # part 2 Velox memory tier
VARNISH_MEM="100M"     # part 2 Varnish malloc storage (same 100 MiB)
FILL_TIMEOUT=600       # seconds; hard bound on the fill
REPLAY_TIMEOUT=600     # seconds; hard bound on each replay half
RUN_DISK=1
RUN_ZIPF=1
VELOX_BIN=""
BUILD=1
PROXY_CPU=0
LOAD_CPU=1

usage() { sed -n '2,27p' "$0"; }
ORIG_ARGS=("$@")
while [[ $# -gt 0 ]]; do
    case "$1" in
        --objects) OBJECTS="$2"; shift 2 ;;
        --requests) REQUESTS="$2"; shift 2 ;;
        --sample) SAMPLE="$2"; shift 2 ;;
        --fill-conns) FILL_CONNS="$2"; shift 2 ;;
        --replay-conns) REPLAY_CONNS="$2"; shift 2 ;;
        --only-disk) RUN_ZIPF=0; shift ;;
        --only-zipf) RUN_DISK=0; shift ;;
        --velox) VELOX_BIN="$2"; BUILD=0; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in OBJECTS REQUESTS SAMPLE FILL_CONNS REPLAY_CONNS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "error: $v must be a positive integer" >&2; exit 2; }
done

log() { printf '[cache_scale %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

export PATH="$PATH:/usr/sbin:/sbin"
for tool in nginx wrk curl python3 taskset; do command -v "$tool" >/dev/null 2>&1 || die "needs $tool"; done
[[ $RUN_ZIPF -eq 0 ]] || { command -v varnishd >/dev/null 2>&1 && command -v varnishstat >/dev/null 2>&1; } || die "needs varnishd and varnishstat"
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs"

if [[ -z "$VELOX_BIN" ]]; then
    VELOX_BIN="$TARGET_DIR/release/velox"
    if [[ $BUILD -eq 1 ]]; then
        log "CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p velox"
        (cd "$REPO_DIR" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p velox) >&2 || die "build failed"
    fi
fi
[[ -x "$VELOX_BIN" ]] || die "no velox binary at $VELOX_BIN"

# ---------------------------------------------------------------- temp dir, cleanup
TMP=$(mktemp -d /tmp/velox-cache-scale.XXXXXX)
chmod 755 "$TMP"
PIDS=()
proc_tree() {
    local pid="$1" child
    echo "$pid"
    for child in $(pgrep -P "$pid" 2>/dev/null); do proc_tree "$child"; done
}
cleanup() {
    local pid i all=()
    for pid in "${PIDS[@]}"; do all+=($(proc_tree "$pid")); done
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for i in $(seq 1 100); do
        local alive=0
        for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
    [[ -n "${TMP:-}" && -d "$TMP" ]] && rm -rf "$TMP"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$RESULTS_DIR"
RAW_LOG="$RESULTS_DIR/cache-scale-latest.log"
OUT_MD="$RESULTS_DIR/cache-scale-latest.md"
: > "$RAW_LOG"
raw() { echo "$*" >> "$RAW_LOG"; }

# Record what is measured, then run a private copy (someone may rebuild the original path).
REV=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
BIN_INFO="$VELOX_BIN, built $(date -u -r "$VELOX_BIN" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$VELOX_BIN" | cut -c1-12); repository HEAD at the start of the run $REV (the binary may predate it)"
cp "$VELOX_BIN" "$TMP/velox-bin" || die "cannot copy $VELOX_BIN"
VELOX="$TMP/velox-bin"

hard=$(ulimit -Hn); [[ "$hard" == unlimited ]] && hard=1048576
ulimit -n $(( hard < 65536 ? hard : 65536 )) || true

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # free_port, nginx_conf

wait_http() { # NAME PORT PATH PID
    local i
    for i in $(seq 1 600); do
        kill -0 "$4" 2>/dev/null || { tail -n 20 "$TMP/$1"/*.log >&2 2>/dev/null; die "$1 (pid $4) exited during start-up"; }
        [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$2$3")" == 200 ]] && return 0
        sleep 0.1
    done
    die "$1 did not answer 200 on port $2 within 60 s"
}

rss_kib() { local t=0 p r; for p in $(proc_tree "$1"); do r=$(awk '/^VmRSS:/{print $2}' /proc/"$p"/status 2>/dev/null); t=$((t + ${r:-0})); done; echo "$t"; }
cpu_ticks() { local t=0 p x; for p in $(proc_tree "$1"); do x=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12 + $13}'); t=$((t + ${x:-0})); done; echo "$t"; }
CLK_TCK=$(getconf CLK_TCK)

origin_requests() { curl -s --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/origin_status" | awk 'NR==3{print $3}'; }

# metric ADMIN_PORT NAME TIER
metric() {
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v n="$2" -v t="$3" '$1 == n "{tier=\"" t "\"}" {print $2}'
}

# ---------------------------------------------------------------- origin
# Any /o/N: DISK_BODY bytes; any /z/N: ZIPF_BODY bytes; both public, max-age=86400.
start_origin() {
    local d="$TMP/origin" small big
    small=$(head -c "$DISK_BODY" /dev/zero | tr '\0' 's')
    big=$(head -c "$ZIPF_BODY" /dev/zero | tr '\0' 'z')
    ORIGIN_PORT=$(free_port)
    nginx_conf "$d" 4096 "
    default_type text/plain;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location /o/ {
            add_header Cache-Control 'public, max-age=86400' always;
            return 200 '$small';
        }
        location /z/ {
            add_header Cache-Control 'public, max-age=86400' always;
            return 200 '$big';
        }
        location = /origin_status { stub_status; }
    }"
    taskset -c "$LOAD_CPU" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
    ORIGIN_PID=$!
    PIDS+=("$ORIGIN_PID")
    wait_http origin "$ORIGIN_PORT" /origin_status "$ORIGIN_PID"
    local body
    body=$(curl -s "http://127.0.0.1:$ORIGIN_PORT/o/1" | wc -c)
    [[ "$body" == "$DISK_BODY" ]] || die "origin /o/1 body is $body bytes, expected $DISK_BODY"
    body=$(curl -s "http://127.0.0.1:$ORIGIN_PORT/z/1" | wc -c)
    [[ "$body" == "$ZIPF_BODY" ]] || die "origin /z/1 body is $body bytes, expected $ZIPF_BODY"
}

# write_velox_config NAME MEMORY DISK -> $TMP/NAME/velox.toml; sets NAME_PORT, NAME_ADMIN
write_velox_config() {
    local name="$1" mem="$2" disk="$3" d="$TMP/$1" port admin
    mkdir -p "$d/data"
    port=$(free_port); admin=$(free_port)
    printf -v "${name^^}_PORT" '%s' "$port"
    printf -v "${name^^}_ADMIN" '%s' "$admin"
    cat > "$d/velox.toml" <<EOF
[server]
listen = ["127.0.0.1:$port"]
data_dir = "$d/data"

[admin]
listen = "127.0.0.1:$admin"

[limits]
max_connections = 20000
idle_timeout = "300s"

[cache]
memory_size = "$mem"
disk_size = $disk

[[upstreams]]
name = "origin"
servers = ["http://127.0.0.1:$ORIGIN_PORT"]

[[routes]]
path_prefix = "/"
upstream = "origin"
EOF
}

# launch_velox NAME: starts (or restarts) Velox from its config; sets NAME_PID (no waiting).
launch_velox() {
    local name="$1" d="$TMP/$1" pid
    RUST_LOG=warn taskset -c "$PROXY_CPU" "$VELOX" serve --config "$d/velox.toml" >>"$d/velox.log" 2>&1 &
    pid=$!
    printf -v "${name^^}_PID" '%s' "$pid"
    PIDS+=("$pid")
}

# ---------------------------------------------------------------- Python helpers
cat > "$TMP/helpers.py" <<'PYEOF'
import bisect, json, os, random, socket, sys, time

def http_get(sock, path):
    """One keep-alive GET on an open socket; returns (status, headers dict, body length).
    Host is 127.0.0.1:PORT, as wrk sends it, so the cache key is the one the fill stored."""
    host = "127.0.0.1:%d" % sock.getpeername()[1]
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return status, hdrs, len(rest)

def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def cmd_sample(port, objects, n, seed, out):
    """Re-request n random earlier URLs /o/K on one keep-alive connection; hit = 'hit' in Cache-Status."""
    rng = random.Random(seed)
    ids = rng.sample(range(objects), n)
    s = connect(port)
    hits = bad = 0
    statuses = {}
    t0 = time.monotonic()
    for k in ids:
        st, h, blen = http_get(s, f"/o/{k}")
        cs = h.get("cache-status", "")
        statuses[cs.split(";")[1].strip().split("=")[0] if ";" in cs else cs] = statuses.get(cs.split(";")[1].strip().split("=")[0] if ";" in cs else cs, 0) + 1
        if st != 200 or blen <= 0:
            bad += 1
        if "hit" in cs:
            hits += 1
    dt = time.monotonic() - t0
    with open(out, "w") as f:
        f.write("\n".join(f"/o/{k}" for k in ids) + "\n")
    print(json.dumps({"requests": n, "hits": hits, "bad": bad, "seconds": round(dt, 3), "statuses": statuses}))

def cmd_restart_probe(port, path, t_start, timeout):
    """From t_start (time.time() when the new process was spawned): time until a TCP connect
    succeeds, and until GET path answers with a hit."""
    deadline = t_start + timeout
    t_accept = None
    while time.time() < deadline:
        try:
            s = connect(port, timeout=1.0)
            t_accept = time.time()
            break
        except OSError:
            time.sleep(0.005)
    if t_accept is None:
        print(json.dumps({"error": "no listener"})); return
    first_status = None
    while time.time() < deadline:
        try:
            st, h, blen = http_get(s, path)
            cs = h.get("cache-status", "")
            if first_status is None:
                first_status = f"{st} {cs}"
            if st == 200 and "hit" in cs:
                t_hit = time.time()
                print(json.dumps({"accept_s": round(t_accept - t_start, 3), "hit_s": round(t_hit - t_start, 3),
                                  "first_response": first_status}))
                return
        except OSError:
            s = connect(port, timeout=1.0)
        time.sleep(0.01)
    print(json.dumps({"accept_s": round(t_accept - t_start, 3), "error": "no hit", "first_response": first_status}))

def cmd_zipf(objects, requests, alpha, seed, out):
    """Zipf(alpha) over ranks 1..objects (P(k) ~ k^-alpha), inverse-CDF sampling with a fixed
    seed; ranks are mapped to object ids by a seeded permutation. One path per line."""
    rng = random.Random(seed)
    cdf = []
    acc = 0.0
    for k in range(1, objects + 1):
        acc += k ** -alpha
        cdf.append(acc)
    total = acc
    perm = list(range(objects))
    rng.shuffle(perm)
    seen = set()
    with open(out, "w") as f:
        for _ in range(requests):
            r = bisect.bisect_left(cdf, rng.random() * total)
            if r >= objects:
                r = objects - 1
            oid = perm[r]
            seen.add(oid)
            f.write(f"/z/{oid}\n")
    # the best a cache of C objects could do (top-C ranks by probability), for reference
    ref = {c: round(cdf[c - 1] / total, 4) for c in (50000, 70000, 100000) if c <= objects}
    print(json.dumps({"requests": requests, "distinct": len(seen), "top_c_mass": ref}))

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "sample":
        cmd_sample(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    elif cmd == "restart_probe":
        cmd_restart_probe(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "zipf":
        cmd_zipf(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
PYEOF

# wrk scripts. Both run with -t1 (one Lua state), so one counter walks the whole list across all
# connections. wrk 4.1 runs out its -d duration even after wrk.thread:stop(), so the script writes
# $DONE_FILE once every response is in, and bounded_wrk then stops wrk with SIGINT (wrk still
# prints its summary and calls done()).
cat > "$TMP/fill.lua" <<'EOF'
local n = tonumber(os.getenv("FILL_N"))
local i, got, bad = 0, 0, 0
request = function()
    local k = i
    i = i + 1
    if k >= n then k = 0 end          -- the last few connections re-ask /o/0 (a hit) until we stop
    return wrk.format("GET", "/o/" .. k)
end
response = function(status)
    if status ~= 200 then bad = bad + 1 end
    got = got + 1
    if got == n then
        local f = io.open(os.getenv("DONE_FILE"), "w"); f:write("done\n"); f:close()
        wrk.thread:stop()
    end
end
done = function(summary, latency, requests)
    io.write(string.format("WRKRESULT requests=%d duration_us=%d issued=%d non200=%d err_read=%d err_timeout=%d\n",
        summary.requests, summary.duration, i, bad, summary.errors.read, summary.errors.timeout))
end
EOF
cat > "$TMP/replay.lua" <<'EOF'
local paths = {}
for line in io.lines(os.getenv("REPLAY_FILE")) do paths[#paths + 1] = line end
local n = #paths
local i, got, bad = 0, 0, 0
request = function()
    i = i + 1
    local p = paths[i] or paths[n]     -- past the end (only while stopping): repeat the last path
    return wrk.format("GET", p)
end
response = function(status)
    if status ~= 200 then bad = bad + 1 end
    got = got + 1
    if got == n then
        local f = io.open(os.getenv("DONE_FILE"), "w"); f:write("done\n"); f:close()
        wrk.thread:stop()
    end
end
done = function(summary, latency, requests)
    io.write(string.format("WRKRESULT requests=%d duration_us=%d lines=%d issued=%d non200=%d err_read=%d err_timeout=%d\n",
        summary.requests, summary.duration, n, i, bad, summary.errors.read, summary.errors.timeout))
end
EOF

# bounded_wrk TIMEOUT ARGS...: wrk in the background on the load CPU; returns when $DONE_FILE
# appears (then SIGINT) or after TIMEOUT seconds (SIGINT, then SIGKILL). Output in $WRK_OUT.
bounded_wrk() {
    local limit="$1" i wpid; shift
    rm -f "$DONE_FILE"
    taskset -c "$LOAD_CPU" wrk "$@" > "$TMP/wrk.out" 2>&1 &
    wpid=$!
    for ((i = 0; i < limit * 10; i++)); do
        [[ -e "$DONE_FILE" ]] && break
        kill -0 "$wpid" 2>/dev/null || break
        sleep 0.1
    done
    [[ -e "$DONE_FILE" ]] || log "warning: wrk did not finish its list within $limit s; stopping it"
    kill -INT "$wpid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$wpid" 2>/dev/null
    wait "$wpid" 2>/dev/null
    WRK_OUT=$(cat "$TMP/wrk.out")
}
export DONE_FILE="$TMP/wrk.done"

kv() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<"$2" | head -1; }
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval("d"+sys.argv[2]))' "$1" "$2"; }
fmt() { python3 -c 'import sys; print(f"{int(float(sys.argv[1])):,}")' "$1"; }
mib() { python3 -c 'import sys; print(f"{float(sys.argv[1])/1048576:.1f}")' "$1"; }

MD="$TMP/report.md"
: > "$MD"
md() { echo "$*" >> "$MD"; }

start_origin
log "origin on 127.0.0.1:$ORIGIN_PORT"

# ================================================================ part 1: disk tier at scale
part_disk() {
    write_velox_config disk '32MiB' '"4GiB"'
    launch_velox disk
    wait_http disk "$DISK_PORT" /o/0 "$DISK_PID"
    log "part 1: velox on $DISK_PORT (admin $DISK_ADMIN), filling $OBJECTS objects (wrk -t1 -c$FILL_CONNS)"
    local rss0 o0 o1 t0 t1 out rc
    rss0=$(rss_kib "$DISK_PID")
    o0=$(origin_requests)
    t0=$(date +%s.%N)
    export FILL_N=$OBJECTS; bounded_wrk "$FILL_TIMEOUT" -t1 -c"$FILL_CONNS" -d"$((FILL_TIMEOUT + 60))s" \
            --timeout 10s -s "$TMP/fill.lua" "http://127.0.0.1:$DISK_PORT"
    out=$WRK_OUT; rc=0
    t1=$(date +%s.%N)
    o1=$(origin_requests)
    raw "### fill (rc=$rc)"; raw "$out"
    local line; line=$(grep '^WRKRESULT' <<<"$out")
    [[ -n "$line" ]] || die "fill failed (rc=$rc): $out"
    FILL_SECS=$(python3 -c "print(round($t1 - $t0, 1))")
    FILL_ORIGIN=$(( o1 - o0 - 1 ))
    FILL_NON200=$(kv non200 "$line")
    log "fill: $(kv requests "$line") responses in ${FILL_SECS}s, origin requests $FILL_ORIGIN, non-200 $FILL_NON200"

    # Wait until the disk write queue has drained: disk object count unchanged for 5 s (max 300 s).
    local prev=-1 cur stable=0 i
    for i in $(seq 1 300); do
        cur=$(metric "$DISK_ADMIN" velox_cache_objects disk)
        if [[ "$cur" == "$prev" ]]; then stable=$((stable + 1)); else stable=0; fi
        [[ $stable -ge 5 ]] && break
        prev=$cur
        sleep 1
    done
    DRAIN_SECS=$(python3 -c "print(round($(date +%s.%N) - $t1, 1))")
    DISK_OBJ=$(metric "$DISK_ADMIN" velox_cache_objects disk)
    DISK_BYTES=$(metric "$DISK_ADMIN" velox_cache_bytes disk)
    MEM_OBJ=$(metric "$DISK_ADMIN" velox_cache_objects memory)
    MEM_BYTES=$(metric "$DISK_ADMIN" velox_cache_bytes memory)
    SKIPPED=$(metric "$DISK_ADMIN" velox_cache_writes_skipped_total disk)
    RSS1=$(rss_kib "$DISK_PID")
    HWM1=$(awk '/^VmHWM:/{print $2}' /proc/"$DISK_PID"/status)
    DU_DATA=$(du -sb "$TMP/disk/data" | cut -f1)
    NFILES=$(find "$TMP/disk/data" -type f | wc -l)
    raw "### after fill: $(curl -s "http://127.0.0.1:$DISK_ADMIN/metrics" | grep -E '^velox_cache')"
    log "after drain (${DRAIN_SECS}s): disk $DISK_OBJ objects / $DISK_BYTES B, skipped writes $SKIPPED, memory $MEM_OBJ / $MEM_BYTES B, RSS $RSS1 KiB (peak $HWM1 KiB)"

    # 1,000 random earlier URLs.
    o0=$(origin_requests)
    SAMPLE_JSON=$(timeout 300 taskset -c "$LOAD_CPU" python3 "$TMP/helpers.py" sample "$DISK_PORT" "$OBJECTS" "$SAMPLE" "$SEED" "$TMP/sample.txt")
    o1=$(origin_requests)
    SAMPLE_ORIGIN=$(( o1 - o0 - 1 ))
    raw "### sample: $SAMPLE_JSON"
    RSS2=$(rss_kib "$DISK_PID")
    log "sample: $SAMPLE_JSON, origin requests $SAMPLE_ORIGIN, RSS after $RSS2 KiB"

    # Restart on the same data_dir.
    local first; first=$(head -1 "$TMP/sample.txt")
    local ts te
    ts=$(date +%s.%N)
    kill -TERM "$DISK_PID"
    for i in $(seq 1 600); do kill -0 "$DISK_PID" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$DISK_PID" 2>/dev/null && die "velox did not exit within 30 s of SIGTERM"
    wait "$DISK_PID" 2>/dev/null
    te=$(date +%s.%N)
    STOP_SECS=$(python3 -c "print(round($te - $ts, 2))")
    o0=$(origin_requests)
    local tstart; tstart=$(python3 -c 'import time; print(repr(time.time()))')
    launch_velox disk
    RESTART_JSON=$(taskset -c "$LOAD_CPU" python3 "$TMP/helpers.py" restart_probe "$DISK_PORT" "$first" "$tstart" 120)
    o1=$(origin_requests)
    RESTART_ORIGIN=$(( o1 - o0 - 1 ))
    raw "### restart: stop ${STOP_SECS}s, $RESTART_JSON, origin $RESTART_ORIGIN"
    # The index is rebuilt in the background and its count appears when the rebuild ends: wait
    # (max 240 s) until the disk object count is back at its value before the restart, or is
    # non-zero and unchanged for 5 s. The rebuild time is from the spawn to the last change.
    local last_change; last_change=$(date +%s.%N); prev=-1; stable=0
    for i in $(seq 1 960); do
        cur=$(metric "$DISK_ADMIN" velox_cache_objects disk)
        if [[ "$cur" == "$prev" ]]; then stable=$((stable + 1)); else stable=0; last_change=$(date +%s.%N); fi
        [[ "$cur" == "$DISK_OBJ" ]] && break
        [[ "${cur:-0}" != 0 && $stable -ge 20 ]] && break
        prev=$cur
        sleep 0.25
    done
    REBUILD_SECS=$(python3 -c "print(round($last_change - $tstart, 1))")
    RSS3=$(rss_kib "$DISK_PID")
    HWM3=$(awk '/^VmHWM:/{print $2}' /proc/"$DISK_PID"/status)
    DISK_OBJ3=$(metric "$DISK_ADMIN" velox_cache_objects disk)
    DISK_BYTES3=$(metric "$DISK_ADMIN" velox_cache_bytes disk)
    log "restart: stop ${STOP_SECS}s; $RESTART_JSON; origin requests $RESTART_ORIGIN; index rebuilt after ${REBUILD_SECS}s: disk objects $DISK_OBJ3 / $DISK_BYTES3 B; RSS $RSS3 KiB (peak $HWM3 KiB)"

    kill -TERM "$DISK_PID" 2>/dev/null
    for i in $(seq 1 600); do kill -0 "$DISK_PID" 2>/dev/null || break; sleep 0.05; done
    rm -rf "$TMP/disk/data"

    local hits; hits=$(jget "$SAMPLE_JSON" "['hits']")
    md "### Part 1: $(fmt "$OBJECTS") small objects on the disk tier"
    md ""
    md "| figure | value |"
    md "|---|---:|"
    md "| fill: responses / time (wrk -t1 -c$FILL_CONNS, each URL once) | $(fmt "$(kv requests "$line")") in ${FILL_SECS} s (non-200: $FILL_NON200) |"
    md "| origin requests during the fill | $(fmt "$FILL_ORIGIN") |"
    md "| wait until the disk object count was stable for 5 s | ${DRAIN_SECS} s |"
    md "| \`velox_cache_objects{tier=\"disk\"}\` | **$(fmt "$DISK_OBJ")** |"
    md "| \`velox_cache_writes_skipped_total{tier=\"disk\"}\` | **$(fmt "$SKIPPED")** |"
    md "| \`velox_cache_bytes{tier=\"disk\"}\` | $(fmt "$DISK_BYTES") ($(mib "$DISK_BYTES") MiB) |"
    md "| \`velox_cache_objects{tier=\"memory\"}\` / bytes | $(fmt "$MEM_OBJ") / $(fmt "$MEM_BYTES") ($(mib "$MEM_BYTES") MiB) |"
    md "| files under data_dir / du | $(fmt "$NFILES") / $(mib "$DU_DATA") MiB |"
    md "| Velox VmRSS: at start / after the fill and drain / peak (VmHWM) | $(mib $((rss0 * 1024))) / **$(mib $((RSS1 * 1024))) MiB** / $(mib $((HWM1 * 1024))) MiB |"
    md "| $SAMPLE random earlier URLs re-requested: hits | **$hits / $SAMPLE** ($(jget "$SAMPLE_JSON" "['statuses']")) in $(jget "$SAMPLE_JSON" "['seconds']") s |"
    md "| origin requests during that sample | **$SAMPLE_ORIGIN** |"
    md "| VmRSS after the sample | $(mib $((RSS2 * 1024))) MiB |"
    md "| SIGTERM until the process exited | ${STOP_SECS} s |"
    md "| restart: spawn until the listener accepts | **$(jget "$RESTART_JSON" ".get('accept_s')") s** |"
    md "| restart: spawn until the first sampled URL is a hit | **$(jget "$RESTART_JSON" ".get('hit_s')") s** (first answer: \`$(jget "$RESTART_JSON" ".get('first_response')")\`) |"
    md "| restart: spawn until the disk index is rebuilt (object count final) | $REBUILD_SECS s |"
    md "| after the rebuild: disk objects / bytes | $(fmt "$DISK_OBJ3") / $(fmt "$DISK_BYTES3") |"
    md "| after the rebuild: VmRSS / peak (VmHWM) / origin requests during the probe | $(mib $((RSS3 * 1024))) MiB / $(mib $((HWM3 * 1024))) MiB / $RESTART_ORIGIN |"
    md ""
}

# ================================================================ part 2: Zipf hit ratio
start_varnish() {
    local d="$TMP/varnish"
    mkdir -p "$d/work"
    VARNISH_PORT=$(free_port)
    cat > "$d/default.vcl" <<EOF
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN_PORT"; }
EOF
    taskset -c "$PROXY_CPU" varnishd -F -j none -n "$d/work" -a "127.0.0.1:$VARNISH_PORT" \
        -f "$d/default.vcl" -s "malloc,$VARNISH_MEM" -T none -p timeout_idle=300 >"$d/varnish.log" 2>&1 &
    VARNISH_PID=$!
    PIDS+=("$VARNISH_PID")
    wait_http varnish "$VARNISH_PORT" /origin_status "$VARNISH_PID"
}

# replay NAME PORT FILE -> sets R_REQ R_ORIGIN R_SECS R_NON200; prints nothing
replay() {
    local name="$1" port="$2" file="$3" o0 o1 t0 t1 out rc line
    o0=$(origin_requests)
    t0=$(date +%s.%N)
    export REPLAY_FILE="$file"; bounded_wrk "$REPLAY_TIMEOUT" -t1 -c"$REPLAY_CONNS" -d"$((REPLAY_TIMEOUT + 60))s" \
            --timeout 10s -s "$TMP/replay.lua" "http://127.0.0.1:$port"
    out=$WRK_OUT; rc=0
    t1=$(date +%s.%N)
    o1=$(origin_requests)
    raw "### replay $name $file (rc=$rc, origin $o0 -> $o1)"; raw "$out"
    line=$(grep '^WRKRESULT' <<<"$out")
    [[ -n "$line" ]] || die "replay through $name failed (rc=$rc): $out"
    R_LINES=$(kv lines "$line")
    R_REQ=$(kv requests "$line")
    R_NON200=$(kv non200 "$line")
    R_ERR=$(( $(kv err_read "$line") + $(kv err_timeout "$line") ))
    R_ORIGIN=$(( o1 - o0 - 1 ))
    R_SECS=$(python3 -c "print(round($t1 - $t0, 1))")
}

part_zipf() {
    log "part 2: generating the Zipf($ALPHA) stream: $REQUESTS requests over $OBJECTS objects, seed $SEED"
    ZIPF_JSON=$(python3 "$TMP/helpers.py" zipf "$OBJECTS" "$REQUESTS" "$ALPHA" "$SEED" "$TMP/stream.txt")
    raw "### zipf: $ZIPF_JSON"
    local half=$(( REQUESTS / 2 ))
    head -n "$half" "$TMP/stream.txt" > "$TMP/stream1.txt"
    tail -n +"$((half + 1))" "$TMP/stream.txt" > "$TMP/stream2.txt"
    STREAM_SHA=$(sha256sum "$TMP/stream.txt" | cut -c1-12)
    log "stream: $ZIPF_JSON (sha256 $STREAM_SHA)"

    write_velox_config zipf "$CACHE_MEM" 0
    launch_velox zipf
    wait_http zipf "$ZIPF_PORT" /origin_status "$ZIPF_PID"
    start_varnish
    # the start-up probes above went to /origin_status, which neither proxy stores

    declare -gA EXTRAREQ REQ1 REQ2 ORG1 ORG2 SECS NON200 ERRS EXTRA
    local t
    for t in velox varnish; do
        local port
        [[ $t == velox ]] && port=$ZIPF_PORT || port=$VARNISH_PORT
        log "replaying through $t (wrk -t1 -c$REPLAY_CONNS), first half"
        replay "$t" "$port" "$TMP/stream1.txt"
        REQ1[$t]=$R_LINES; EXTRAREQ[$t]=$(( R_REQ - R_LINES )); ORG1[$t]=$R_ORIGIN; SECS[$t]=$R_SECS; NON200[$t]=$R_NON200; ERRS[$t]=$R_ERR
        [[ "$R_REQ" -ge "$R_LINES" ]] || log "warning: $t answered $R_REQ of $R_LINES"
        log "$t first half: $R_REQ requests in ${R_SECS}s, origin $R_ORIGIN"
        log "replaying through $t, second half"
        replay "$t" "$port" "$TMP/stream2.txt"
        REQ2[$t]=$R_LINES; EXTRAREQ[$t]=$(( EXTRAREQ[$t] + R_REQ - R_LINES )); ORG2[$t]=$R_ORIGIN; SECS[$t]="${SECS[$t]} + $R_SECS"
        NON200[$t]=$(( NON200[$t] + R_NON200 )); ERRS[$t]=$(( ERRS[$t] + R_ERR ))
        log "$t second half: $R_REQ requests in ${R_SECS}s, origin $R_ORIGIN"
        if [[ $t == velox ]]; then
            EXTRA[$t]="memory tier: $(fmt "$(metric "$ZIPF_ADMIN" velox_cache_objects memory)") objects, $(mib "$(metric "$ZIPF_ADMIN" velox_cache_bytes memory)") MiB charged; VmRSS $(mib $(( $(rss_kib "$ZIPF_PID") * 1024 ))) MiB"
            raw "### velox metrics after replay"; raw "$(curl -s "http://127.0.0.1:$ZIPF_ADMIN/metrics" | grep -E '^velox_cache')"
            # Stop Velox before Varnish runs: nothing else on CPU 0.
            kill -TERM "$ZIPF_PID" 2>/dev/null
        else
            local vs
            vs=$(varnishstat -n "$TMP/varnish/work" -1 2>/dev/null)
            raw "### varnishstat"; raw "$vs"
            EXTRA[$t]="$(fmt "$(awk '$1=="MAIN.n_object"{print $2}' <<<"$vs")") objects, SMA.s0 $(mib "$(awk '$1=="SMA.s0.g_bytes"{print $2}' <<<"$vs")") MiB used of $(mib "$(( $(awk '$1=="SMA.s0.g_bytes"{print $2}' <<<"$vs") + $(awk '$1=="SMA.s0.g_space"{print $2}' <<<"$vs") ))") MiB, $(fmt "$(awk '$1=="MAIN.n_lru_nuked"{print $2}' <<<"$vs")") LRU-nuked, Transient $(mib "$(awk '$1=="SMA.Transient.g_bytes"{print $2}' <<<"$vs")") MiB; RSS $(mib $(( $(rss_kib "$VARNISH_PID") * 1024 ))) MiB"
        fi
    done

    ratio() { python3 -c "import sys; r=int(sys.argv[1]); o=int(sys.argv[2]); print(f'{100*(1-o/r):.2f}')" "$1" "$2"; }
    md "### Part 2: Zipf($ALPHA) hit ratio, Velox vs Varnish"
    md ""
    md "Stream: $(fmt "$REQUESTS") requests over $(fmt "$OBJECTS") objects of $ZIPF_BODY bytes, seed $SEED, sha256 $STREAM_SHA;"
    md "$(fmt "$(jget "$ZIPF_JSON" "['distinct']")") distinct objects appear (each costs at least one origin request: a hit-ratio ceiling of"
    md "$(python3 -c "print(f'{100*(1-$(jget "$ZIPF_JSON" "['distinct']")/$REQUESTS):.2f}')") %). Replayed in two halves of $(fmt "$half") through each proxy with a cold cache."
    md ""
    md "| proxy | cache memory | requests | origin requests | **hit ratio** | first half | second half | replay time (s) | non-200 / socket errors |"
    md "|---|---|---:|---:|---:|---:|---:|---|---|"
    for t in velox varnish; do
        local req=$(( REQ1[$t] + REQ2[$t] )) org=$(( ORG1[$t] + ORG2[$t] )) mem
        [[ $t == velox ]] && mem="memory_size = \"$CACHE_MEM\", disk_size = 0" || mem="-s malloc,$VARNISH_MEM"
        HR[$t]=$(ratio "$req" "$org")
        md "| $t | \`$mem\` | $(fmt "$req") | $(fmt "$org") | **${HR[$t]} %** | $(ratio "${REQ1[$t]}" "${ORG1[$t]}") % | $(ratio "${REQ2[$t]}" "${ORG2[$t]}") % | ${SECS[$t]} | ${NON200[$t]} / ${ERRS[$t]} |"
    done
    md ""
    md "Difference: **$(python3 -c "print(f'{${HR[velox]} - ${HR[varnish]}:+.2f}')") points** overall; second half $(python3 -c "print(f'{($(ratio "${REQ2[velox]}" "${ORG2[velox]}")) - ($(ratio "${REQ2[varnish]}" "${ORG2[varnish]}")):+.2f}')") points."
    md ""
    md "- Requests = lines of the stream. While stopping, wrk sent a few more requests for the last path of each half (velox ${EXTRAREQ[velox]}, varnish ${EXTRAREQ[varnish]}); they are not counted (they can add at most one origin request per half)."
    md "- Velox after the replay: ${EXTRA[velox]}"
    md "- Varnish after the replay: ${EXTRA[varnish]}"
    md "- Reference: the $(jget "$ZIPF_JSON" "['top_c_mass']") = share of requests that go to the C most popular objects (the steady-state hit ratio of a perfect cache holding C objects)."
    md ""
}
declare -A HR

[[ $RUN_DISK -eq 1 ]] && part_disk
[[ $RUN_ZIPF -eq 1 ]] && part_zipf

{
    echo "## Cache scale and hit ratio ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "- Command: \`bash bench/cache_scale.sh${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}\`"
    echo "- Velox: $BIN_INFO"
    echo "- Machine: $(nproc) CPUs ($(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}')), $(uname -sr), load average at the end $(cut -d' ' -f1-3 /proc/loadavg); proxies on CPU $PROXY_CPU, wrk and origin on CPU $LOAD_CPU"
    echo "- Versions: nginx $(nginx -v 2>&1 | sed 's/.*\///'), varnish $(varnishd -V 2>&1 | head -1 | sed -E 's/.*varnish-([0-9.]+).*/\1/'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
    echo
    cat "$MD"
} | tee "$OUT_MD"
