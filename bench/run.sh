#!/usr/bin/env bash
# Side-by-side benchmark: Velox vs nginx vs Varnish in front of the same origin, in one run.
#
#   bash bench/run.sh [--duration 10] [--rounds 3] [--quick] ...   (see --help)
#
# Scenario A: uncached proxying of a 1 KiB response (wrk -t1 -c50), req/s, p50/p99 and
#             requests per server CPU-second (utime+stime of all server processes, /proc),
#             plus p50 added latency at low load (wrk -t1 -c1, proxy p50 - direct p50).
#             Two nginx targets: `nginx` (plain proxy_pass) and `nginx_eq`, which also adds the
#             headers Velox adds by default (X-Forwarded-*, Via, X-Request-Id both ways,
#             Cache-Status); what each proxy sent the origin and the client is checked and reported.
# Scenario B: idle keep-alive connections (bench/idle_conns.py): server RSS growth per
#             connection with 10,000 open idle connections.
# Scenario C: cache hits from memory, 1 KiB and 100 KiB (/cached/, which the origin marks
#             `public, max-age=3600`): Velox (default cache), nginx proxy_cache, Varnish
#             (default caching VCL); hits verified by response headers and by the origin's
#             request counter (stub_status) staying flat during each measured run.
# Scenario D: Velox 1 KiB and 100 KiB hits with observability on (metrics + request ids, the
#             defaults), off (metrics = false, request_id = false), and on plus the JSON access
#             log; and, for comparison, nginx's 1 KiB proxy_cache hits with its access log off
#             and on (a JSON line of the same fields, buffered).
# Scenario E: the ceiling for 1 KiB hits: bench/canned.c (epoll, a prebuilt 1 KiB response to
#             every request head, no HTTP work), nginx proxy_cache hits and Velox hits, with
#             user and system CPU microseconds per request; only with --only-e.
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
RUN_C=1
RUN_D=1
RUN_E=0              # scenario E runs only when asked for (--only-e)
ONLY_SEEN=0
SAME_CPU_LAT=1
BUSY_POLL=1
VELOX_BIN=""
BUILD=1
PGO=1
PROXY_CPU=0
LOAD_CPU=1

usage() {
    cat <<EOF
usage: bash bench/run.sh [--duration S] [--rounds N] [--conns N] [--latency-duration S]
                         [--idle-conns N] [--quick] [--only-a] [--only-b] [--only-c] [--only-d]
                         [--only-e]
                         [--velox PATH] [--no-pgo] [--no-build] [--no-same-cpu] [--no-busy-poll]
                         [-h|--help]

  --duration S          seconds per throughput run, wrk -t1 -c\$CONNS   (default $DURATION)
  --rounds N            interleaved rounds, medians reported             (default $ROUNDS)
  --conns N             wrk connections in the throughput runs           (default $CONNS)
  --latency-duration S  seconds per low-load latency run, wrk -t1 -c1    (default $LAT_DURATION)
  --idle-conns N        idle keep-alive connections in scenario B        (default $IDLE_CONNS)
  --quick               smoke run: --duration 3 --rounds 1 --latency-duration 2 --idle-conns 2000
  --only-a .. --only-e  run only the named scenario(s); repeat to combine (e.g. --only-c --only-d).
                        Without any, A-D run; E (canned-response ceiling for 1 KiB hits) runs
                        only when named
  --velox PATH          use this velox binary (default: target/pgo/velox, the profile-guided
                        release build of scripts/release-build.sh, built first)
  --no-pgo              without --velox: a plain cargo build --release (target/release/velox)
  --no-build            do not build; fail if the binary is missing
  --no-same-cpu         skip the diagnostic low-load latency runs with the proxy moved to CPU 1
  --no-busy-poll        skip scenario A's runs of Velox with server.busy_poll = true
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
        --only-[abcde])
            [[ $ONLY_SEEN -eq 0 ]] && { RUN_A=0; RUN_B=0; RUN_C=0; RUN_D=0; RUN_E=0; ONLY_SEEN=1; }
            case "$1" in
                --only-a) RUN_A=1 ;; --only-b) RUN_B=1 ;; --only-c) RUN_C=1 ;; --only-d) RUN_D=1 ;; --only-e) RUN_E=1 ;;
            esac
            shift ;;
        --velox) VELOX_BIN="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-pgo) PGO=0; shift ;;
        --no-same-cpu) SAME_CPU_LAT=0; shift ;;
        --no-busy-poll) BUSY_POLL=0; shift ;;
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
    command -v gcc >/dev/null 2>&1 || missing+=(gcc)   # varnishd compiles its VCL with cc; bench/canned.c
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
    if [[ -z "$VELOX_BIN" && $PGO -eq 1 ]]; then
        VELOX_BIN="$REPO_DIR/target/pgo/velox"
        if [[ $BUILD -eq 1 ]]; then
            log "scripts/release-build.sh (the profile-guided release build: about 5 minutes)"
            bash "$REPO_DIR/scripts/release-build.sh" --out "$VELOX_BIN" > /dev/null || die "velox build failed"
        fi
    elif [[ -z "$VELOX_BIN" ]]; then
        VELOX_BIN="$REPO_DIR/target/release/velox"
        if [[ $BUILD -eq 1 ]]; then
            log "cargo build --release -p velox (LTO: takes minutes the first time)"
            (cd "$REPO_DIR" && cargo build --release -p velox) >&2 || die "velox build failed"
        fi
    fi
    [[ -x "$VELOX_BIN" ]] || die "velox binary not found at $VELOX_BIN"
}

source "$BENCH_DIR/lib.sh"   # free_port, origin_documents, velox_config

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

# "UTIME STIME": clock ticks summed over a server's processes (fields 14 and 15 of /proc/PID/stat,
# each covering all the process's threads; comm may contain spaces, so count fields after the last ')').
measure_cpu() {
    local u=0 s=0 p t
    for p in $(proc_tree "$1"); do
        t=($(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12, $13}'))
        u=$((u + ${t[0]:-0})); s=$((s + ${t[1]:-0}))
    done
    echo "$u $s"
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
# Each start_* sets <NAME>_PID and <NAME>_PORT (through spawn).

# spawn NAME PORT CPU CMD...: run CMD pinned to CPU, its output in $TMP/NAME/NAME.log; set
# ${NAME^^}_PID and ${NAME^^}_PORT, stop it at exit, and wait until GET /1k on PORT answers 200.
spawn() {
    local name="$1" port="$2" cpu="$3" pid
    shift 3
    mkdir -p "$TMP/$name"
    taskset -c "$cpu" "$@" >"$TMP/$name/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    printf -v "${name^^}_PID" '%s' "$pid"
    printf -v "${name^^}_PORT" '%s' "$port"
    wait_http "$name" "$port" /1k "$pid"
}

# The origin: nginx serving a static 1 KiB file, 1 worker, pinned to the load CPU.
# /1k is `no-store`; /cached/1k and /cached/100k are `public, max-age=3600` (scenarios C, D).
# /origin_status (stub_status) counts the requests the origin has served. /headers answers with the
# forwarding headers it received (scenario A's check of what each proxy adds; never in a measured run).
start_origin() {
    local d="$TMP/origin" port
    origin_documents "$d"
    port=$(free_port)
    nginx_conf "$d" 4096 "
    default_type application/octet-stream;
    open_file_cache max=16 inactive=300s;
    open_file_cache_valid 300s;
    server {
        listen 127.0.0.1:$port;
        root $d/www;
        location / { add_header Cache-Control 'no-store'; }
        location /cached/ { add_header Cache-Control 'public, max-age=3600'; }
        location = /origin_status { stub_status; }
        location = /headers {
            default_type text/plain;
            add_header Cache-Control 'no-store';
            return 200 'x-forwarded-for: \$http_x_forwarded_for\nx-forwarded-proto: \$http_x_forwarded_proto\nx-forwarded-host: \$http_x_forwarded_host\nvia: \$http_via\nx-request-id: \$http_x_request_id\n';
        }
    }" "worker_rlimit_nofile $NOFILE;"
    spawn origin "$port" "$LOAD_CPU" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf"
}

# start_velox [NAME [EXTRA_TOML]]: a Velox instance; sets ${NAME^^}_PORT and ${NAME^^}_PID.
# "velox" is the default config (scenarios A-D); scenario D adds "velox_off" (metrics and
# request ids off) and "velox_log" (defaults plus the JSON access log to a file).
start_velox() {
    local name="${1:-velox}" extra="${2:-}"
    local d="$TMP/$name" port
    mkdir -p "$d/data"
    port=$(free_port)
    # Scenarios C and D hit /cached/; scenario A goes through the bypass route (see velox_config).
    velox_config "$d/velox.toml" "$port" "$d/data" "$ORIGIN_PORT" "[limits]
max_connections = 20000
idle_timeout = \"300s\"
$extra"
    [[ -n "${VELOX_SERVER_TOML:-}" ]] && sed -i "s|^\[server\]\$|[server]\n$VELOX_SERVER_TOML|" "$d/velox.toml"
    spawn "$name" "$port" "$PROXY_CPU" env RUST_LOG=warn "$VELOX_BIN" serve --config "$d/velox.toml"
}

# What Velox adds by default to every proxied request and response, done the nginx way: the extra
# directives of nginx_eq's "/" location (scenario A). $request_id is generated per request; the
# same value goes to the origin and back to the client.
NGINX_EQ_DIRECTIVES='proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header Via "1.1 nginx";
            proxy_set_header X-Request-Id $request_id;
            add_header Via "1.1 nginx";
            add_header X-Request-Id $request_id;
            add_header Cache-Status "nginx; fwd=bypass";'

# nginx's access log for scenario D's peer comparison: the fields of Velox's JSON line, buffered
# (written when 256 KiB are full, or after a second), as a production nginx would log.
NGINX_LOG_FORMAT='log_format velox_json escape=json '"'"'{"time":"$time_iso8601","client":"$remote_addr",'"'"'
        '"'"'"method":"$request_method","host":"$host","path":"$request_uri","status":$status,'"'"'
        '"'"'"bytes":$body_bytes_sent,"duration_ms":$request_time,"upstream_ms":"$upstream_response_time",'"'"'
        '"'"'"cache":"$upstream_cache_status","route":"cached","request_id":"$request_id"}'"'"';'

# start_nginx [NAME [DIRECTIVES [CACHED_DIRECTIVES]]]: nginx as a reverse proxy: 1 worker, keep-alive
# to the origin, no access log. DIRECTIVES go into the "/" location: "nginx" has none, "nginx_eq"
# $NGINX_EQ_DIRECTIVES. CACHED_DIRECTIVES go into the "/cached/" location: "nginx_log" (scenario D)
# turns the access log on there.
start_nginx() {
    local name="${1:-nginx}" extra="${2:-}" cached_extra="${3:-}"
    local d="$TMP/$name" port
    port=$(free_port)
    nginx_conf "$d" 20000 "
    $NGINX_LOG_FORMAT
    # Scenario C: keys in shared memory, bodies in files under the temp dir (served from the
    # page cache once warm; nginx has no memory-only body store).
    proxy_cache_path $d/cache levels=1:2 keys_zone=hits:10m max_size=1g inactive=1h use_temp_path=off;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            $extra
        }
        location /cached/ {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_cache hits;
            proxy_cache_valid 200 1h;
            add_header X-Cache-Status \$upstream_cache_status always;
            $cached_extra
        }
    }" "worker_rlimit_nofile $NOFILE;"
    spawn "$name" "$port" "$PROXY_CPU" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf"
}

# Varnish passing everything (uncached proxying) except /cached/, which takes the built-in
# (caching) vcl_recv (scenario C); small malloc storage, foreground.
start_varnish() {
    local d="$TMP/varnish" port
    mkdir -p "$d/work"
    port=$(free_port)
    cat > "$d/pass.vcl" <<EOF
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN_PORT"; }
sub vcl_recv { if (req.url !~ "^/cached/") { return (pass); } }
sub vcl_deliver { if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; } }
EOF
    # -j none: no privilege separation, so the temp dir needs no chown.
    # timeout_idle: keep idle client connections (default 5 s would close them in scenario B).
    spawn varnish "$port" "$PROXY_CPU" varnishd -F -j none -n "$d/work" -a "127.0.0.1:$port" \
        -f "$d/pass.vcl" -s malloc,16m -T none -p timeout_idle=300
}

# Scenario E: bench/canned.c, built with gcc -O2 into the temp dir.
start_canned() {
    local d="$TMP/canned" port
    mkdir -p "$d"
    gcc -O2 -Wall -o "$d/canned" "$BENCH_DIR/canned.c" 2>"$d/gcc.txt" \
        || { cat "$d/gcc.txt" >&2; die "could not build bench/canned.c"; }
    port=$(free_port)
    spawn canned "$port" "$PROXY_CPU" "$d/canned" "$port"
}

# rotate R NAME...: the names rotated left by (R-1), so that no target always goes first in a round.
rotate() {
    local r="$1"; shift
    local n=$# i
    local a=("$@")
    for ((i = 0; i < n; i++)); do echo "${a[$(( (i + r - 1) % n ))]}"; done
}

# ---------------------------------------------------------------- measurements
# direct -> ORIGIN_PORT, velox_off -> VELOX_OFF_PORT, ...
port_of() { local v; [[ $1 == direct ]] && v=ORIGIN_PORT || v="${1^^}_PORT"; echo "${!v}"; }
pid_of()  { local v; [[ $1 == direct ]] && v=ORIGIN_PID || v="${1^^}_PID"; echo "${!v}"; }

# Requests the origin has served so far (stub_status; the query itself counts as one).
origin_requests() {
    curl -s --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/origin_status" | awk 'NR==3{print $3}'
}

# is_hit NAME PATH: one GET through a proxy; true when it is 200, has the expected body size
# and the proxy's own header says it was a cache hit (canned has no cache: status and size only).
# Headers go to the raw log.
is_hit() {
    local name="$1" path="$2" out want hdr
    case "$path" in */100k) want=102400 ;; *) want=1024 ;; esac
    out=$(curl -s -D "$TMP/hit.headers" -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 \
            "http://127.0.0.1:$(port_of "$name")$path")
    { echo "### $name GET $path -> $out"; cat "$TMP/hit.headers"; } >> "$RAW_LOG"
    [[ "$out" == "200 $want" ]] || return 1
    case "$name" in
        velox*) hdr='^cache-status: velox; hit' ;;
        nginx|nginx_log) hdr='^x-cache-status: hit' ;;
        varnish) hdr='^x-cache: hit' ;;
        canned) return 0 ;;
        *) return 1 ;;
    esac
    tr -d '\r' < "$TMP/hit.headers" | grep -qi "$hdr"
}

# warm_cache NAME PATH: request until the proxy reports a hit (at most 5 tries).
warm_cache() {
    local i
    for i in 1 2 3 4 5; do
        is_hit "$1" "$2" && return 0
        sleep 0.2
    done
    log "warning: $1 does not report a cache hit for $2 after 5 requests; see $RAW_LOG"
    return 1
}

# Check one response through a target: status 200 and a 1024-byte body.
check_response() {
    local name="$1" port out
    port=$(port_of "$name")
    out=$(curl -s -D "$TMP/$name.headers" -o "$TMP/$name.body" -w '%{http_code} %{size_download}' --max-time 5 "http://127.0.0.1:$port/1k")
    { echo "### $name response headers"; cat "$TMP/$name.headers"; } >> "$RAW_LOG"
    [[ "$out" == "200 1024" ]] || die "$name: expected '200 1024', got '$out'"
}

# header_value FILE NAME: the value of header NAME (case-insensitive) in FILE, empty if absent.
header_value() {
    tr -d '\r' < "$1" | awk -v h="$2:" 'index(tolower($0), h) == 1 { v = substr($0, length(h) + 1); sub(/^[ \t]+/, "", v); print v; exit }'
}

# added_headers NAME: one GET /headers through a proxy. The origin answers with the forwarding
# headers it received; with the response headers the client received, they go to $HEADERS_TSV
# (NAME, "origin" or "client", header, value; the value is empty when the header was absent).
added_headers() {
    local name="$1" h
    curl -s -D "$TMP/added.headers" -o "$TMP/added.body" --max-time 5 "http://127.0.0.1:$(port_of "$name")/headers"
    { echo "### $name GET /headers: the request headers the origin received, then the response headers";
      cat "$TMP/added.body" "$TMP/added.headers"; } >> "$RAW_LOG"
    for h in x-forwarded-for x-forwarded-proto x-forwarded-host via x-request-id; do
        printf '%s\torigin\t%s\t%s\n' "$name" "$h" "$(header_value "$TMP/added.body" "$h")"
    done >> "$HEADERS_TSV"
    for h in via x-request-id cache-status; do
        printf '%s\tclient\t%s\t%s\n' "$name" "$h" "$(header_value "$TMP/added.headers" "$h")"
    done >> "$HEADERS_TSV"
}

# run_wrk TARGET CONNS DURATION KIND ROUND [PATH]: one bounded wrk run on the load CPU, measuring
# the target server's CPU ticks (user and system) and the origin's request count around it;
# appends a line to $RESULTS_TSV. With CHECK_HIT set, a hit is checked just before and just after
# the run (hit_before=, hit_after=); POST_HOOK names a function whose output (key=value) is appended.
run_wrk() {
    local name="$1" conns="$2" dur="$3" kind="$4" round="$5" path="${6:-/1k}"
    local port pid u0 s0 u1 s1 ticks o0 o1 out line
    port=$(port_of "$name"); pid=$(pid_of "$name")
    kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) is not running"
    local pre="" post=""
    if [[ -n "${CHECK_HIT:-}" ]]; then
        is_hit "$name" "$path" && pre="hit_before=1" || pre="hit_before=0"
    fi
    o0=$(origin_requests)
    read -r u0 s0 < <(measure_cpu "$pid")
    out=$(timeout $((dur + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${dur}s" --timeout 5s --latency \
            -s "$BENCH_DIR/report.lua" "http://127.0.0.1:$port$path" 2>&1)
    local rc=$?
    read -r u1 s1 < <(measure_cpu "$pid")
    ticks=$((u1 - u0 + s1 - s0))
    o1=$(origin_requests)
    if [[ -n "${CHECK_HIT:-}" ]]; then
        is_hit "$name" "$path" && post="hit_after=1" || post="hit_after=0"
    fi
    [[ -n "${POST_HOOK:-}" ]] && post+=" $($POST_HOOK "$name")"
    # Origin requests during the run (minus the second stub_status query itself).
    local origin_reqs=$(( ${o1:-0} - ${o0:-0} - 1 ))
    { echo "### $kind $name round $round (wrk -t1 -c$conns -d${dur}s $path, rc=$rc, server cpu ticks $ticks (user $((u1 - u0)), system $((s1 - s0))), origin requests $origin_reqs)"; echo "$out"; } >> "$RAW_LOG"
    line=$(grep '^WRKRESULT' <<<"$out")
    if [[ $rc -ne 0 || -z "$line" ]]; then
        log "warning: wrk against $name failed (rc=$rc); see $RAW_LOG"
        return 0
    fi
    [[ $kind == warmup ]] && return 0
    # kind name round cpu_ticks clk_tck key=value...
    echo "$kind $name $round $ticks $CLK_TCK ${line#WRKRESULT } origin_reqs=$origin_reqs" \
         "utime_ticks=$((u1 - u0)) stime_ticks=$((s1 - s0)) $pre $post" >> "$RESULTS_TSV"
    local rps
    rps=$(awk -v l="$line" 'BEGIN{split(l,a," "); for(i in a){split(a[i],kv,"="); v[kv[1]]=kv[2]} printf "%.0f", v["requests"]/(v["duration_us"]/1e6)}')
    log "$kind $name round $round: ${rps} req/s, server CPU $ticks ticks, origin requests $origin_reqs $pre $post"
    [[ "$pre $post" == *hit_before=0* || "$pre $post" == *hit_after=0* ]] && log "warning: $name $path was not a cache hit before/after the run ($pre $post)"
    [[ -n "${CHECK_HIT:-}" && $origin_reqs -gt 0 ]] && log "warning: $origin_reqs origin requests during the $name hit run"
    return 0
}

# Move every thread of a server's processes to one CPU.
repin() {
    local p
    for p in $(proc_tree "$1"); do
        taskset -a -p -c "$2" "$p" >/dev/null 2>&1 || log "warning: cannot repin pid $p to CPU $2"
    done
}

scenario_a() {
    local targets=(direct velox nginx nginx_eq varnish) t r
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
            for t in "${targets[@]:1}"; do
                repin "$(pid_of "$t")" "$LOAD_CPU"
                run_wrk "$t" 1 "$LAT_DURATION" lat1cpu "$r"
                repin "$(pid_of "$t")" "$PROXY_CPU"
            done
        fi
        [[ $BUSY_POLL -eq 1 ]] && busy_poll_runs "$r"
    done
}

# Scenario A's runs of Velox with `server.busy_poll = true` (target velox_busy): started for its
# own runs and stopped after them, since it keeps CPU 0 busy and would slow every other server
# measured there. Its req per CPU-s counts the polling: at -c$CONNS Velox is not saturated here.
busy_poll_runs() {
    local r="$1"
    VELOX_SERVER_TOML="busy_poll = true" start_velox velox_busy
    log "scenario A round $r/$ROUNDS: velox with busy_poll (throughput, then low-load latency)"
    run_wrk velox_busy "$CONNS" "$WARMUP" warmup 0
    run_wrk velox_busy "$CONNS" "$DURATION" tput "$r"
    run_wrk velox_busy 1 "$LAT_DURATION" lat "$r"
    kill "$VELOX_BUSY_PID" 2>/dev/null
    wait "$VELOX_BUSY_PID" 2>/dev/null
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

scenario_c() {
    local proxies=(velox nginx varnish) sizes=(1k 100k) t r sz
    log "scenario C: warming the caches (/cached/1k, /cached/100k)"
    for sz in "${sizes[@]}"; do
        for t in "${proxies[@]}"; do warm_cache "$t" "/cached/$sz"; done
    done
    export CHECK_HIT=1
    for sz in "${sizes[@]}"; do
        for t in "${proxies[@]}"; do run_wrk "$t" "$CONNS" "$WARMUP" warmup 0 "/cached/$sz"; done
    done
    for r in $(seq 1 "$ROUNDS"); do
        for sz in "${sizes[@]}"; do
            log "scenario C round $r/$ROUNDS: $sz hits (wrk -t1 -c$CONNS -d${DURATION}s)"
            for t in $(rotate "$r" "${proxies[@]}"); do run_wrk "$t" "$CONNS" "$DURATION" "hit$sz" "$r" "/cached/$sz"; done
        done
    done
    unset CHECK_HIT
}

# Scenario D helper: access-log lines written during the run; then empties the log file.
access_log_lines() {
    local f="$TMP/$1/access.log" n=0
    if [[ -f "$f" ]]; then
        sleep 0.5     # let the background writer drain its queue
        n=$(wc -l < "$f")
        : > "$f"
    fi
    echo "log_lines=$n"
}

# hit_rounds KIND LABEL PATH TARGET...: warm each target's cache on PATH until it reports a hit,
# one unrecorded warm-up run each, then $ROUNDS rounds in rotating order of measured runs, each
# bracketed by hit checks (scenarios D and E).
hit_rounds() {
    local kind="$1" label="$2" path="$3" t r
    shift 3
    for t in "$@"; do warm_cache "$t" "$path"; done
    export CHECK_HIT=1
    for t in "$@"; do run_wrk "$t" "$CONNS" "$WARMUP" warmup 0 "$path"; done
    for r in $(seq 1 "$ROUNDS"); do
        log "$label round $r/$ROUNDS (wrk -t1 -c$CONNS -d${DURATION}s $path)"
        for t in $(rotate "$r" "$@"); do run_wrk "$t" "$CONNS" "$DURATION" "$kind" "$r" "$path"; done
    done
    unset CHECK_HIT
}

scenario_d() {
    log "scenario D: Velox 1 KiB hits, observability off / on (defaults) / on + access log"
    POST_HOOK=access_log_lines
    hit_rounds obs "scenario D" /cached/1k velox_off velox velox_log
    # The same cost on larger hits, and what nginx's own access log costs its 1 KiB hits.
    log "scenario D: Velox 100 KiB hits, observability off / on / on + access log"
    hit_rounds obs100k "scenario D (100 KiB)" /cached/100k velox_off velox velox_log
    log "scenario D: nginx 1 KiB proxy_cache hits, access log off / on"
    hit_rounds logpeer "scenario D (nginx)" /cached/1k nginx nginx_log
    unset POST_HOOK
}

# Scenario E: how close to a server that does no HTTP work at all can 1 KiB hits get?
scenario_e() {
    log "scenario E: 1 KiB hits, canned response (bench/canned.c) / nginx proxy_cache / Velox"
    hit_rounds ceil1k "scenario E" /cached/1k canned nginx velox
}

machine_info() {
    echo "- CPUs: $(nproc) (proxy pinned to CPU $PROXY_CPU; wrk, idle client and origin pinned to CPU $LOAD_CPU)"
    echo "- CPU: $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}')"
    echo "- Kernel: $(uname -sr)"
    local rev dirty=""
    rev=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [[ -n "$(git -C "$REPO_DIR" status --porcelain --untracked-files=no 2>/dev/null)" ]] && dirty=" (working tree has uncommitted changes)"
    echo "- Velox binary: $VELOX_BIN, built $(date -u -r "$VELOX_BIN" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$VELOX_BIN" | cut -c1-12); repository HEAD at the start of the run $rev$dirty"
    echo "- Versions: $("$VELOX_BIN" --version 2>&1 | head -1); nginx $(nginx -v 2>&1 | sed 's/.*\///'); varnish $(varnishd -V 2>&1 | head -1 | sed -E 's/.*varnish-([0-9.]+).*/\1/'); $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
    [[ $RUN_E -eq 1 ]] && echo "- Scenario E: bench/canned.c built with gcc $(gcc -dumpfullversion 2>/dev/null) -O2"
    return 0
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
    # Record what is measured now, and run a private copy of the binary: on a shared machine someone
    # may rebuild the original path during the run.
    MACHINE_INFO=$(machine_info)
    cp "$VELOX_BIN" "$TMP/velox-bin" || die "cannot copy $VELOX_BIN"
    VELOX_BIN="$TMP/velox-bin"
    RESULTS_TSV="$TMP/results.tsv"
    IDLE_TSV="$TMP/idle.tsv"
    HEADERS_TSV="$TMP/headers.tsv"
    : > "$RAW_LOG"; : > "$RESULTS_TSV"; : > "$IDLE_TSV"; : > "$HEADERS_TSV"
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
    local servers=(velox nginx varnish) t
    if [[ $RUN_A -eq 1 ]]; then
        start_nginx nginx_eq "$NGINX_EQ_DIRECTIVES"
        servers+=(nginx_eq)
        log "scenario A: nginx_eq port $NGINX_EQ_PORT"
    fi
    if [[ $RUN_D -eq 1 ]]; then
        start_velox velox_off $'[observe]\nmetrics = false\nrequest_id = false'
        start_velox velox_log $'[access_log]\nenabled = true\npath = "'"$TMP/velox_log/access.log"'"'
        : > "$TMP/velox_log/access.log"   # drop the start-up probe's line
        start_nginx nginx_log "" "access_log $TMP/nginx_log/access.log velox_json buffer=256k flush=1s;"
        servers+=(velox_off velox_log nginx_log)
        log "scenario D ports: velox_off $VELOX_OFF_PORT, velox_log $VELOX_LOG_PORT, nginx_log $NGINX_LOG_PORT"
    fi
    if [[ $RUN_E -eq 1 ]]; then
        start_canned
        servers+=(canned)
        log "scenario E: canned port $CANNED_PORT"
    fi
    for t in direct "${servers[@]}"; do check_response "$t"; done
    # What each proxy adds to the request and the response (scenario A's equal-work check).
    if [[ $RUN_A -eq 1 ]]; then
        for t in velox nginx nginx_eq varnish; do added_headers "$t"; done
    fi

    [[ $RUN_A -eq 1 ]] && scenario_a
    [[ $RUN_B -eq 1 ]] && scenario_b
    [[ $RUN_C -eq 1 ]] && scenario_c
    [[ $RUN_D -eq 1 ]] && scenario_d
    [[ $RUN_E -eq 1 ]] && scenario_e

    for t in "${servers[@]}"; do
        kill -0 "$(pid_of "$t")" 2>/dev/null || log "warning: $t is no longer running at the end of the run"
    done
    local f
    for f in "$TMP"/*/*.log; do
        { echo "### server log $f (last 50 lines)"; tail -n 50 "$f"; } >> "$RAW_LOG"
    done

    local cmd="bash bench/run.sh"
    [[ ${#ORIG_ARGS[@]} -gt 0 ]] && cmd+=" ${ORIG_ARGS[*]}"
    # Keep the raw results, so that summarize.py can be re-run on them.
    cp "$RESULTS_TSV" "$RESULTS_DIR/latest.tsv"; cp "$IDLE_TSV" "$RESULTS_DIR/latest-idle.tsv"
    cp "$HEADERS_TSV" "$RESULTS_DIR/latest-headers.tsv"
    python3 "$BENCH_DIR/summarize.py" \
        --results "$RESULTS_TSV" --idle "$IDLE_TSV" --headers "$HEADERS_TSV" \
        --command "$cmd" --duration "$DURATION" --rounds "$ROUNDS" --conns "$CONNS" \
        --latency-duration "$LAT_DURATION" --idle-conns "$IDLE_CONNS" \
        --machine "$MACHINE_INFO" \
        | tee "$RESULTS_DIR/latest.md"
}

main
