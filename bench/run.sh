#!/usr/bin/env bash
# Side-by-side benchmark: Velox vs nginx vs Varnish in front of the same origin, in one run.
#
#   bash bench/run.sh [--duration 10] [--rounds 3] [--quick] ...   (see --help)
#
# Scenario A: uncached proxying of a 1 KiB response (wrk -t1 -c50), req/s, p50/p99 and
#             requests per server CPU-second (utime+stime of all server processes, /proc),
#             plus p50 added latency at low load (wrk -t1 -c1, proxy p50 - direct p50).
# Scenario B: idle keep-alive connections (bench/idle_conns.py): server RSS growth per
#             connection with 10,000 open idle connections.
#
# Every proxy under test runs pinned to CPU 0; wrk, the idle-connection client and the
# origin run pinned to CPU 1. Each server has its own temp dir and ports on 127.0.0.1.
# Results: a Markdown table on stdout and in bench/results/latest.md; raw wrk output in
# bench/results/latest.log.

set -uo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS_DIR="$BENCH_DIR/results"

# ---------------------------------------------------------------- options
DURATION=10          # seconds per throughput run (scenario A)
ROUNDS=3             # interleaved rounds; medians are reported
CONNS=50             # wrk connections for throughput
LAT_DURATION=5       # seconds per low-load latency run (wrk -c1)
WARMUP=2             # seconds of unrecorded warm-up per target
IDLE_CONNS=10000     # scenario B connections
RUN_A=1
RUN_B=1
SAME_CPU_LAT=1
VELOX_BIN=""
BUILD=1
PROXY_CPU=0
LOAD_CPU=1

usage() {
    cat <<EOF
usage: bash bench/run.sh [--duration S] [--rounds N] [--conns N] [--latency-duration S]
                         [--idle-conns N] [--quick] [--only-a | --only-b]
                         [--velox PATH] [--no-build] [--no-same-cpu] [-h|--help]

  --duration S          seconds per throughput run, wrk -t1 -c\$CONNS   (default $DURATION)
  --rounds N            interleaved rounds, medians reported             (default $ROUNDS)
  --conns N             wrk connections in the throughput runs           (default $CONNS)
  --latency-duration S  seconds per low-load latency run, wrk -t1 -c1    (default $LAT_DURATION)
  --idle-conns N        idle keep-alive connections in scenario B        (default $IDLE_CONNS)
  --quick               smoke run: --duration 3 --rounds 1 --latency-duration 2 --idle-conns 2000
  --only-a | --only-b   run one scenario only
  --velox PATH          use this velox binary (default: target/release/velox, built if missing)
  --no-build            do not run cargo build; fail if the binary is missing
  --no-same-cpu         skip the diagnostic low-load latency runs with the proxy moved to CPU 1
EOF
}

ORIG_ARGS=("$@")
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --conns) CONNS="$2"; shift 2 ;;
        --latency-duration) LAT_DURATION="$2"; shift 2 ;;
        --idle-conns) IDLE_CONNS="$2"; shift 2 ;;
        --quick) DURATION=3; ROUNDS=1; LAT_DURATION=2; WARMUP=1; IDLE_CONNS=2000; shift ;;
        --only-a) RUN_B=0; shift ;;
        --only-b) RUN_A=0; shift ;;
        --velox) VELOX_BIN="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-same-cpu) SAME_CPU_LAT=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in DURATION ROUNDS CONNS LAT_DURATION IDLE_CONNS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "error: $v must be a positive integer" >&2; usage >&2; exit 2; }
done

echo "usage: bash bench/run.sh [--duration S] [--rounds N] [--quick] ... (--help for all options)"
echo "running: duration=${DURATION}s rounds=$ROUNDS conns=$CONNS latency-duration=${LAT_DURATION}s idle-conns=$IDLE_CONNS"

# ---------------------------------------------------------------- helpers
log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

ensure_tools() {
    local missing=()
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v varnishd >/dev/null 2>&1 || [[ -x /usr/sbin/varnishd ]] || missing+=(varnish)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v gcc >/dev/null 2>&1 || missing+=(gcc)   # varnishd compiles its VCL with cc
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    command -v pgrep >/dev/null 2>&1 || missing+=(procps)
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing: ${missing[*]}"
        local sudo=""
        [[ $(id -u) -ne 0 ]] && sudo="sudo"
        $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" \
            || die "could not install ${missing[*]}"
    fi
    export PATH="$PATH:/usr/sbin:/sbin"
    [[ $(nproc) -ge 2 ]] || die "needs at least 2 CPUs (proxy on CPU $PROXY_CPU, load on CPU $LOAD_CPU)"
}

ensure_velox() {
    if [[ -z "$VELOX_BIN" ]]; then
        VELOX_BIN="$REPO_DIR/target/release/velox"
        if [[ $BUILD -eq 1 ]]; then
            log "cargo build --release -p velox (LTO: takes minutes the first time)"
            (cd "$REPO_DIR" && cargo build --release -p velox) >&2 || die "velox build failed"
        fi
    fi
    [[ -x "$VELOX_BIN" ]] || die "velox binary not found at $VELOX_BIN"
}

# A free TCP port on 127.0.0.1 (bound then released; the kernel will not hand it out again at once).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Wait until GET http://127.0.0.1:PORT/PATH answers 200 (or die after ~10 s).
wait_http() {
    local name="$1" port="$2" path="${3:-/1k}" pid="$4" i
    for i in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$TMP/$name"/*.log >&2 2>/dev/null
            die "$name (pid $pid) exited during start-up"
        fi
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port$path")" == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$TMP/$name"/*.log >&2 2>/dev/null
    die "$name did not answer 200 on port $port within 10 s"
}

# The pid and all its descendants.
proc_tree() {
    local pid="$1" child
    echo "$pid"
    for child in $(pgrep -P "$pid" 2>/dev/null); do
        proc_tree "$child"
    done
}

# utime+stime in clock ticks summed over a server's processes (fields 14+15 of /proc/PID/stat;
# comm may contain spaces, so count fields after the last ')').
measure_cpu() {
    local total=0 p t
    for p in $(proc_tree "$1"); do
        t=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12 + $13}')
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# Sum of VmRSS (KiB) over a server's processes.
measure_rss_kib() {
    local total=0 p r
    for p in $(proc_tree "$1"); do
        r=$(awk '/^VmRSS:/{print $2}' /proc/"$p"/status 2>/dev/null)
        total=$((total + ${r:-0}))
    done
    echo "$total"
}

PIDS=()
cleanup() {
    local pid i all=()
    for pid in "${PIDS[@]}"; do
        all+=($(proc_tree "$pid"))            # our servers and their own children only
    done
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for i in $(seq 1 50); do
        local alive=0
        for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${all[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    [[ -n "${TMP:-}" && -d "$TMP" ]] && rm -rf "$TMP"
    return 0
}

# ---------------------------------------------------------------- servers
# Each start_* sets <NAME>_PID and <NAME>_PORT.

# The origin: nginx serving a static 1 KiB file, 1 worker, pinned to the load CPU.
start_origin() {
    local d="$TMP/origin"
    mkdir -p "$d/www" "$d/tmp"
    head -c 1024 /dev/zero | tr '\0' 'x' > "$d/www/1k"
    ORIGIN_PORT=$(free_port)
    cat > "$d/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $d/nginx.pid;
error_log $d/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    open_file_cache max=16 inactive=300s;
    open_file_cache_valid 300s;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $d/www;
        location / { add_header Cache-Control "no-store"; }
    }
}
EOF
    taskset -c "$LOAD_CPU" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
    ORIGIN_PID=$!
    PIDS+=("$ORIGIN_PID")
    wait_http origin "$ORIGIN_PORT" /1k "$ORIGIN_PID"
}

start_velox() {
    local d="$TMP/velox"
    mkdir -p "$d/data"
    VELOX_PORT=$(free_port)
    cat > "$d/velox.toml" <<EOF
[server]
listen = ["127.0.0.1:$VELOX_PORT"]
data_dir = "$d/data"

[admin]
listen = false

[limits]
max_connections = 20000
idle_timeout = "300s"

[[upstreams]]
name = "origin"
servers = ["http://127.0.0.1:$ORIGIN_PORT"]

[[routes]]
path_prefix = "/"
upstream = "origin"

# Scenario A measures uncached proxying, as Varnish's "return (pass)" and nginx without
# proxy_cache do: the route bypasses the cache (nginx's static 1k has validators and would
# otherwise be cached heuristically). Metrics and request ids stay on, as by default.
[routes.cache]
mode = "bypass"
EOF
    RUST_LOG=warn taskset -c "$PROXY_CPU" "$VELOX_BIN" serve --config "$d/velox.toml" >"$d/velox.log" 2>&1 &
    VELOX_PID=$!
    PIDS+=("$VELOX_PID")
    wait_http velox "$VELOX_PORT" /1k "$VELOX_PID"
}

# nginx as a reverse proxy: 1 worker, keep-alive to the origin, no access log.
start_nginx() {
    local d="$TMP/nginx"
    mkdir -p "$d/tmp"
    NGINX_PORT=$(free_port)
    cat > "$d/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $d/nginx.pid;
error_log $d/error.log warn;
daemon off;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    taskset -c "$PROXY_CPU" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_http nginx "$NGINX_PORT" /1k "$NGINX_PID"
}

# Varnish passing everything (uncached proxying), small malloc storage, foreground.
start_varnish() {
    local d="$TMP/varnish"
    mkdir -p "$d/work"
    VARNISH_PORT=$(free_port)
    cat > "$d/pass.vcl" <<EOF
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN_PORT"; }
sub vcl_recv { return (pass); }
EOF
    # -j none: no privilege separation, so the temp dir needs no chown.
    # timeout_idle: keep idle client connections (default 5 s would close them in scenario B).
    taskset -c "$PROXY_CPU" varnishd -F -j none -n "$d/work" -a "127.0.0.1:$VARNISH_PORT" \
        -f "$d/pass.vcl" -s malloc,16m -T none -p timeout_idle=300 >"$d/varnish.log" 2>&1 &
    VARNISH_PID=$!
    PIDS+=("$VARNISH_PID")
    wait_http varnish "$VARNISH_PORT" /1k "$VARNISH_PID"
}

# ---------------------------------------------------------------- measurements
port_of() { case "$1" in direct) echo "$ORIGIN_PORT" ;; velox) echo "$VELOX_PORT" ;; nginx) echo "$NGINX_PORT" ;; varnish) echo "$VARNISH_PORT" ;; esac; }
pid_of()  { case "$1" in direct) echo "$ORIGIN_PID" ;; velox) echo "$VELOX_PID" ;; nginx) echo "$NGINX_PID" ;; varnish) echo "$VARNISH_PID" ;; esac; }

# Check one response through a target: status 200 and a 1024-byte body.
check_response() {
    local name="$1" port out
    port=$(port_of "$name")
    out=$(curl -s -D "$TMP/$name.headers" -o "$TMP/$name.body" -w '%{http_code} %{size_download}' --max-time 5 "http://127.0.0.1:$port/1k")
    { echo "### $name response headers"; cat "$TMP/$name.headers"; } >> "$RAW_LOG"
    [[ "$out" == "200 1024" ]] || die "$name: expected '200 1024', got '$out'"
}

# run_wrk TARGET CONNS DURATION KIND ROUND: one bounded wrk run on the load CPU, measuring the
# target server's CPU ticks around it; appends a line to $RESULTS_TSV.
run_wrk() {
    local name="$1" conns="$2" dur="$3" kind="$4" round="$5"
    local port pid c0 c1 out line
    port=$(port_of "$name"); pid=$(pid_of "$name")
    kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) is not running"
    c0=$(measure_cpu "$pid")
    out=$(timeout $((dur + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${dur}s" --timeout 5s --latency \
            -s "$BENCH_DIR/report.lua" "http://127.0.0.1:$port/1k" 2>&1)
    local rc=$?
    c1=$(measure_cpu "$pid")
    { echo "### $kind $name round $round (wrk -t1 -c$conns -d${dur}s, rc=$rc, server cpu ticks $((c1 - c0)))"; echo "$out"; } >> "$RAW_LOG"
    line=$(grep '^WRKRESULT' <<<"$out")
    if [[ $rc -ne 0 || -z "$line" ]]; then
        log "warning: wrk against $name failed (rc=$rc); see $RAW_LOG"
        return 0
    fi
    [[ $kind == warmup ]] && return 0
    # kind name round cpu_ticks clk_tck key=value...
    echo "$kind $name $round $((c1 - c0)) $CLK_TCK ${line#WRKRESULT }" >> "$RESULTS_TSV"
    local rps
    rps=$(awk -v l="$line" 'BEGIN{split(l,a," "); for(i in a){split(a[i],kv,"="); v[kv[1]]=kv[2]} printf "%.0f", v["requests"]/(v["duration_us"]/1e6)}')
    log "$kind $name round $round: ${rps} req/s, server CPU $((c1 - c0)) ticks"
}

# Move every thread of a server's processes to one CPU.
repin() {
    local p
    for p in $(proc_tree "$1"); do
        taskset -a -p -c "$2" "$p" >/dev/null 2>&1 || log "warning: cannot repin pid $p to CPU $2"
    done
}

scenario_a() {
    local targets=(direct velox nginx varnish) t r
    log "scenario A: warm-up ${WARMUP}s per target"
    for t in "${targets[@]}"; do run_wrk "$t" "$CONNS" "$WARMUP" warmup 0; done
    for r in $(seq 1 "$ROUNDS"); do
        log "scenario A round $r/$ROUNDS: throughput (wrk -t1 -c$CONNS -d${DURATION}s)"
        for t in "${targets[@]}"; do run_wrk "$t" "$CONNS" "$DURATION" tput "$r"; done
        log "scenario A round $r/$ROUNDS: low-load latency (wrk -t1 -c1 -d${LAT_DURATION}s)"
        for t in "${targets[@]}"; do run_wrk "$t" 1 "$LAT_DURATION" lat "$r"; done
        if [[ $SAME_CPU_LAT -eq 1 ]]; then
            # Diagnostic: the same low-load run with the proxy moved onto the load CPU, next to
            # wrk and the origin, so no request has to wake an idle CPU (see BENCHMARKS.md).
            log "scenario A round $r/$ROUNDS: low-load latency, proxy on CPU $LOAD_CPU (diagnostic)"
            for t in velox nginx varnish; do
                repin "$(pid_of "$t")" "$LOAD_CPU"
                run_wrk "$t" 1 "$LAT_DURATION" lat1cpu "$r"
                repin "$(pid_of "$t")" "$PROXY_CPU"
            done
        fi
    done
}

scenario_b() {
    local t out
    for t in velox nginx varnish; do
        log "scenario B: $IDLE_CONNS idle keep-alive connections to $t"
        out=$(timeout 300 taskset -c "$LOAD_CPU" python3 "$BENCH_DIR/idle_conns.py" \
                --pid "$(pid_of "$t")" --port "$(port_of "$t")" --path /1k --conns "$IDLE_CONNS" --settle 2 2>&1)
        { echo "### idle $t"; echo "$out"; } >> "$RAW_LOG"
        local json
        json=$(grep '^{' <<<"$out" | tail -1)
        if [[ -z "$json" ]]; then
            log "warning: idle_conns.py against $t produced no result; see $RAW_LOG"
            continue
        fi
        echo "$t $json" >> "$IDLE_TSV"
        log "scenario B $t: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["conns_open"], "open,", r["alive"], "alive,", r["bytes_per_conn"], "B/conn")' "$json")"
        sleep 1
    done
}

machine_info() {
    echo "- CPUs: $(nproc) (proxy pinned to CPU $PROXY_CPU; wrk, idle client and origin pinned to CPU $LOAD_CPU)"
    echo "- CPU: $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}')"
    echo "- Kernel: $(uname -sr)"
    local rev dirty=""
    rev=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [[ -n "$(git -C "$REPO_DIR" status --porcelain --untracked-files=no 2>/dev/null)" ]] && dirty=" (working tree has uncommitted changes)"
    echo "- Velox binary: $VELOX_BIN, built $(date -u -r "$VELOX_BIN" '+%Y-%m-%d %H:%M UTC'); repository HEAD $rev$dirty"
    echo "- Versions: $("$VELOX_BIN" --version 2>&1 | head -1); nginx $(nginx -v 2>&1 | sed 's/.*\///'); varnish $(varnishd -V 2>&1 | head -1 | sed -E 's/.*varnish-([0-9.]+).*/\1/'); $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
}

# ---------------------------------------------------------------- main
main() {
    ensure_tools
    ensure_velox

    TMP=$(mktemp -d /tmp/velox-bench.XXXXXX)
    chmod 755 "$TMP"   # nginx workers run as an unprivileged user and must read the origin file
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$RESULTS_DIR"
    RAW_LOG="$RESULTS_DIR/latest.log"
    RESULTS_TSV="$TMP/results.tsv"
    IDLE_TSV="$TMP/idle.tsv"
    : > "$RAW_LOG"; : > "$RESULTS_TSV"; : > "$IDLE_TSV"
    CLK_TCK=$(getconf CLK_TCK)

    # File descriptors: 10,000 idle connections plus upstream ones, within the hard limit.
    local hard
    hard=$(ulimit -Hn)
    [[ "$hard" == unlimited ]] && hard=1048576
    NOFILE=$(( hard < 65536 ? hard : 65536 ))
    ulimit -n "$NOFILE" || die "cannot raise the open-file limit to $NOFILE"
    [[ $NOFILE -ge $((IDLE_CONNS + 1024)) ]] || die "open-file hard limit $hard is too low for $IDLE_CONNS connections"

    log "starting origin (nginx, static 1 KiB) and proxies"
    start_origin
    start_velox
    start_nginx
    start_varnish
    log "ports: origin $ORIGIN_PORT, velox $VELOX_PORT, nginx $NGINX_PORT, varnish $VARNISH_PORT"
    local t
    for t in direct velox nginx varnish; do check_response "$t"; done

    [[ $RUN_A -eq 1 ]] && scenario_a
    [[ $RUN_B -eq 1 ]] && scenario_b

    for t in velox nginx varnish; do
        kill -0 "$(pid_of "$t")" 2>/dev/null || log "warning: $t is no longer running at the end of the run"
    done
    local f
    for f in "$TMP"/*/*.log; do
        { echo "### server log $f (last 50 lines)"; tail -n 50 "$f"; } >> "$RAW_LOG"
    done

    local cmd="bash bench/run.sh"
    [[ ${#ORIG_ARGS[@]} -gt 0 ]] && cmd+=" ${ORIG_ARGS[*]}"
    python3 "$BENCH_DIR/summarize.py" \
        --results "$RESULTS_TSV" --idle "$IDLE_TSV" \
        --command "$cmd" --duration "$DURATION" --rounds "$ROUNDS" --conns "$CONNS" \
        --latency-duration "$LAT_DURATION" --idle-conns "$IDLE_CONNS" \
        --machine "$(machine_info)" \
        | tee "$RESULTS_DIR/latest.md"
}

main
