#!/usr/bin/env bash
# Same-noise A/B of Velox cache hits: two Velox instances on CPU 0, loaded at the same time by two
# wrk processes (-t1 -c25 each) on CPU 1, so that both see whatever else the shared machine is
# doing at that moment. Each instance's cost is its threads' run time per request
# (/proc/PID/task/*/schedstat, in ns); a round's ratio is A's cost over B's, i.e. B's requests per
# CPU-second relative to A's. On this project's shared VMs, back-to-back runs of one server move
# by 10-30% between rounds while these ratios stay within about a point.
# The ratios of one pair of processes do move between starts, though: two starts of the same
# pair read up to 5 points apart (memory placement, address layout), while the rounds of one start
# agree within 2. So every case is measured over several starts (fresh instances, caches filled
# again) and the table gives the median of the starts' medians and the range of those medians.
#
#   bash bench/ab.sh [--no-build] [--velox BIN] [--base BIN] [--starts N] [--rounds N] [--duration S]
#
# Without --base (issue 5's question): one binary with observability off (A) against metrics and
# request ids on (the defaults) and against those plus the JSON access log to a file (B), on
# 1 KiB hits, 100 KiB hits and 1 KiB hits spread over 10,000 URLs (log-uniform: a few hot, a
# long tail, about Zipf(1)).
# With --base BASE: a code change's effect, BASE (A) against BIN (B), both with the access log on,
# on 1 KiB hits. Two builds can differ by up to about 5% through code layout alone (BENCHMARKS.md),
# so also measure the part changed directly (a thread's CPU, bench/instructions.sh).
#
# The default binary is the profile-guided build (scripts/release-build.sh, target/pgo/velox);
# --no-build uses it as it is. Defaults: 5 starts, 4 rounds of 3 s per pair and start.
# Caveat: the two instances share CPU 0's caches and take turns on it. A change in how much of
# the cache one of them pushes out shows less here than when each runs alone
# (bench/run.sh, scenario D): use both.
# Installs nginx, wrk and curl with apt-get when missing. Loopback only; bounded in time.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
VELOX_BIN=""
BASE_BIN=""
STARTS=5
ROUNDS=4
DURATION=3
BUILD=1

while [[ $# -gt 0 ]]; do
    case "$1" in
        --velox) VELOX_BIN="$2"; shift 2 ;;
        --base) BASE_BIN="$2"; shift 2 ;;
        --starts) STARTS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
[[ "$STARTS" =~ ^[1-9][0-9]*$ ]] || { echo "error: --starts must be a positive integer" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "error: --rounds must be a positive integer" >&2; exit 2; }
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || { echo "error: --duration must be whole seconds" >&2; exit 2; }

log() { printf '[ab %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

source "$BENCH_DIR/lib.sh"   # install_missing, free_port, wait_200, plain_origin, velox_config
install_missing nginx wrk curl
[[ $(nproc) -ge 2 ]] || { echo "error: needs two CPUs (servers on CPU 0, load on CPU 1)" >&2; exit 1; }

if [[ -z "$VELOX_BIN" ]]; then
    VELOX_BIN="$REPO_DIR/target/pgo/velox"
    if [[ $BUILD -eq 1 ]]; then
        log "scripts/release-build.sh (the profile-guided release build: about 5 minutes)"
        bash "$REPO_DIR/scripts/release-build.sh" --out "$VELOX_BIN" >/dev/null
    fi
fi
for bin in "$VELOX_BIN" ${BASE_BIN:+"$BASE_BIN"}; do
    [[ -x "$bin" ]] || { echo "error: no velox binary at $bin" >&2; exit 1; }
done

TMP="$(mktemp -d /tmp/velox-ab.XXXXXX)"
chmod 755 "$TMP"   # nginx workers run as an unprivileged user and must read the origin's files
stop_all_on_exit
trap 'exit 130' INT TERM


ORIGIN_PORT=$(free_port)
plain_origin "$TMP/origin" "$ORIGIN_PORT"
taskset -c 1 nginx -p "$TMP/origin" -c "$TMP/origin/nginx.conf" >/dev/null 2>&1 &
PIDS+=("$!")
wait_200 "$ORIGIN_PORT" /cached/1k "$!"

# Log-uniform over 10,000 cached URLs (the origin serves /cached/1k whatever the query; Velox
# stores each query apart).
cat > "$TMP/spread.lua" <<'EOF'
request = function()
  return wrk.format("GET", "/cached/1k?i=" .. math.floor(10000 ^ math.random()))
end
EOF
# Every one of those URLs in turn, to store them all before measuring.
cat > "$TMP/fill.lua" <<'EOF'
n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/cached/1k?i=" .. (n % 10000))
end
EOF

# start NAME BIN EXTRA_TOML: a Velox instance on CPU 0; sets PORT[NAME] and PID[NAME]. Its cache is
# memory only: every case reads memory hits, and a fill of a memory-only cache never waits for the
# disk tier's write queue (which paces fills to what the disk takes).
declare -A PORT PID
start() {
    local name="$1" bin="$2" extra="$3" d="$TMP/$1"
    mkdir -p "$d/data"
    PORT[$name]=$(free_port)
    velox_config "$d/velox.toml" "${PORT[$name]}" "$d/data" "$ORIGIN_PORT" \
        "$(printf '[cache]\ndisk_size = "0"\n%s' "${extra//@DIR@/$d}")"
    RUST_LOG=warn taskset -c 0 "$bin" serve --config "$d/velox.toml" >"$d/velox.log" 2>&1 &
    PID[$name]=$!
    PIDS+=("$!")
    wait_200 "${PORT[$name]}" /cached/1k "${PID[$name]}"
}

# stop NAME...: ends those instances (the next start begins afresh: new process, empty cache).
stop() {
    local name
    for name in "$@"; do
        kill "${PID[$name]}" 2>/dev/null || true
        wait "${PID[$name]}" 2>/dev/null || true
        rm -rf "${TMP:?}/$name"
    done
}

# warm NAME: stores the objects every case reads (all 10,000 of the spread's URLs, each several
# times over, through wrk itself).
warm() {
    local port="${PORT[$1]}" i
    for path in /cached/1k /cached/100k; do
        for i in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$port$path"; done
    done
    taskset -c 1 wrk -t1 -c25 -d2s -s "$TMP/fill.lua" "http://127.0.0.1:$port/" >/dev/null
    [[ "$(curl -s -D- -o /dev/null "http://127.0.0.1:$port/cached/1k" | tr -d '\r' | grep -i '^cache-status:')" == *hit* ]] ||
        { echo "error: $1 does not serve /cached/1k from its cache" >&2; exit 1; }
}

# The measurement: N rounds of both wrk runs at once; appends one line per pair and start to
# RESULTS: label, A, B, the median of A's and of B's ns per request, the median ratio.
RESULTS="$TMP/results.tsv"
cat > "$TMP/pair.py" <<'EOF'
import os, statistics, subprocess, sys
rounds, secs, label, script, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
(a_name, a_pid, a_port), (b_name, b_pid, b_port) = [t.split(':') for t in sys.argv[6:8]]
results = sys.argv[8]

def cpu_ns(pid):
    total = 0
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            total += int(open(f'/proc/{pid}/task/{tid}/schedstat').read().split()[0])
        except (OSError, ValueError):
            pass  # a thread that ended
    return total

def wrk(port):
    cmd = ['taskset', '-c', '1', 'wrk', '-t1', '-c25', f'-d{secs}s']
    if script != '-':
        cmd += ['-s', script]
    return subprocess.Popen(cmd + [f'http://127.0.0.1:{port}{path}'], stdout=subprocess.PIPE, text=True)

def requests(out):
    lines = [l for l in out.splitlines() if 'requests in' in l]
    if not lines or 'Non-2xx' in out or 'Socket errors' in out:
        sys.exit(f'error: wrk failed or saw errors:\n{out}')
    return int(lines[0].split()[0])

ratios, a_ns, b_ns = [], [], []
for i in range(rounds):
    before = cpu_ns(a_pid), cpu_ns(b_pid)
    # Which load starts first alternates, so that neither instance always has a head start.
    if i % 2 == 0:
        runs = wrk(a_port), wrk(b_port)
    else:
        runs = tuple(reversed((wrk(b_port), wrk(a_port))))
    outs = [r.communicate()[0] for r in runs]
    after = cpu_ns(a_pid), cpu_ns(b_pid)
    a = (after[0] - before[0]) / requests(outs[0])
    b = (after[1] - before[1]) / requests(outs[1])
    a_ns.append(a); b_ns.append(b); ratios.append(a / b)
m = statistics.median
with open(results, 'a') as out:
    out.write(f'{label}\t{a_name}\t{b_name}\t{m(a_ns):.0f}\t{m(b_ns):.0f}\t{m(ratios):.4f}\n')
print(f'  {label}, {a_name} against {b_name}: {m(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})', file=sys.stderr)
EOF

# The table: per case, the median over starts of A's and B's cost and of the ratio.
cat > "$TMP/table.py" <<'EOF'
import statistics, sys
starts = sys.argv[2]
cases = {}
for line in open(sys.argv[1]):
    label, a, b, a_ns, b_ns, ratio = line.rstrip('\n').split('\t')
    cases.setdefault((label, a, b), []).append((float(a_ns), float(b_ns), float(ratio)))
m = statistics.median
print(f"| case | A | B | A: ns of CPU per request | B: ns of CPU per request | B's requests per CPU-s / A's (median of {starts} starts) | range of the starts' medians |")
print('|---|---|---|---:|---:|---:|---:|')
for (label, a, b), runs in cases.items():
    ratios = [r for _, _, r in runs]
    print(f'| {label} | {a} | {b} | {m(x for x, _, _ in runs):,.0f} | {m(y for _, y, _ in runs):,.0f} '
          f'| **{m(ratios):.3f}×** | {min(ratios):.3f}–{max(ratios):.3f} |')
EOF

# pair LABEL SCRIPT PATH A B
pair() {
    log "$1: ${4} against ${5}, $ROUNDS rounds of ${DURATION} s"
    python3 "$TMP/pair.py" "$ROUNDS" "$DURATION" "$1" "$2" "$3" \
        "$4:${PID[$4]}:${PORT[$4]}" "$5:${PID[$5]}:${PORT[$5]}" "$RESULTS"
    # Keep the access logs from filling the disk: truncated files are continued at their end.
    for f in "$TMP"/*/access.log; do [[ -f "$f" ]] && : > "$f"; done
    return 0
}

OFF=$'[observe]\nmetrics = false\nrequest_id = false'
LOG=$'[access_log]\nenabled = true\npath = "@DIR@/access.log"'

log "velox: $VELOX_BIN${BASE_BIN:+ against base $BASE_BIN}; $STARTS starts of $ROUNDS rounds of ${DURATION} s per case"
for s in $(seq 1 "$STARTS"); do
    log "start $s of $STARTS"
    # The order the instances start in rotates from start to start (it decides where their
    # memory lands).
    if [[ -n "$BASE_BIN" ]]; then
        if (( s % 2 )); then
            start base "$BASE_BIN" "$LOG"; start change "$VELOX_BIN" "$LOG"
        else
            start change "$VELOX_BIN" "$LOG"; start base "$BASE_BIN" "$LOG"
        fi
        warm base; warm change
        pair "1 KiB hits, access log on" - /cached/1k base change
        stop base change
    else
        names=(off on log); configs=("$OFF" "" "$LOG")
        for k in 0 1 2; do
            i=$(( (k + s) % 3 ))
            start "${names[$i]}" "$VELOX_BIN" "${configs[$i]}"
        done
        for t in off on log; do warm "$t"; done
        pair "1 KiB hits" - /cached/1k off on
        pair "1 KiB hits" - /cached/1k off log
        pair "100 KiB hits" - /cached/100k off log
        pair "1 KiB hits over 10,000 URLs" "$TMP/spread.lua" / off log
        stop off on log
    fi
done

echo "Machine: $(nproc) CPUs, $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}'), $(uname -sr); servers on CPU 0, wrk and the origin on CPU 1"
echo "Velox: $VELOX_BIN (sha256 $(sha256sum "$VELOX_BIN" | cut -c1-12))${BASE_BIN:+; base: $BASE_BIN (sha256 $(sha256sum "$BASE_BIN" | cut -c1-12))}"
echo "$STARTS starts (fresh instances) of $ROUNDS rounds of ${DURATION} s per case"
echo
python3 "$TMP/table.py" "$RESULTS" "$STARTS"
