# Helpers shared by the scripts under bench/ and scripts/release-build.sh (sourced).

# install_missing COMMAND...: installs with apt-get the Debian packages of those names whose
# commands are missing (a command in /usr/sbin counts), then puts /usr/sbin on PATH.
install_missing() {
    local missing=() c sudo=""
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || [[ -x "/usr/sbin/$c" ]] || missing+=("$c")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "installing: ${missing[*]}" >&2
        [[ $(id -u) -ne 0 ]] && sudo="sudo"
        $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    export PATH="$PATH:/usr/sbin"
}

# stop_all_on_exit: on exit, stops every process whose pid the caller added to PIDS and removes
# the caller's TMP directory.
stop_all_on_exit() {
    PIDS=()
    trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"' EXIT
}

# A free TCP port on 127.0.0.1 (bound then released; the kernel will not hand it out again at once).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# origin_documents DIR: the origin's files under DIR/www: /1k (1,024 bytes), /cached/1k and
# /cached/100k (102,400 bytes).
origin_documents() {
    mkdir -p "$1/www/cached" "$1/tmp"
    head -c 1024 /dev/zero | tr '\0' 'x' > "$1/www/1k"
    cp "$1/www/1k" "$1/www/cached/1k"
    head -c 102400 /dev/zero | tr '\0' 'y' > "$1/www/cached/100k"
}

# wait_200 PORT PATH PID: waits until GET http://127.0.0.1:PORT/PATH answers 200 (at most 60 s);
# fails at once if process PID exits.
wait_200() {
    local port="$1" path="$2" pid="$3" i
    for i in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || { echo "error: process $pid exited" >&2; return 1; }
        [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port$path")" == 200 ]] && return 0
        sleep 0.2
    done
    echo "error: no 200 from port $port within 60 s" >&2
    return 1
}

# nginx_conf DIR CONNECTIONS HTTP [MAIN]: writes DIR/nginx.conf in the frame every benchmark nginx
# shares: one worker in the foreground; pid, error log and temp files under DIR; no access log;
# keep-alive connections kept for a million requests and 300 s. HTTP goes into the http block
# (servers, upstreams, caches, formats), MAIN into the main context (worker_rlimit_nofile).
# Start it with nginx -p DIR -c DIR/nginx.conf.
nginx_conf() {
    local d="$1" conns="$2" http="$3" main="${4:-}"
    mkdir -p "$d/tmp"
    cat > "$d/nginx.conf" <<EOF
worker_processes 1;
$main
pid $d/nginx.pid;
error_log $d/error.log warn;
daemon off;
events { worker_connections $conns; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
$http
}
EOF
}

# plain_origin DIR PORT: writes DIR/nginx.conf for an nginx origin of origin_documents on PORT
# (in nginx_conf's frame): /1k is `no-store`, /cached/ is `public, max-age=3600`.
plain_origin() {
    local d="$1" port="$2"
    origin_documents "$d"
    nginx_conf "$d" 4096 "
    server {
        listen 127.0.0.1:$port;
        root $d/www;
        location / { add_header Cache-Control 'no-store'; }
        location /cached/ { add_header Cache-Control 'public, max-age=3600'; }
    }"
}

# velox_config FILE PORT DATA_DIR ORIGIN_PORT [EXTRA_TOML]: the benchmarks' Velox config, admin
# listener off. Two routes: /cached/ with the default cache policy ("respect": the origin's
# max-age=3600 makes it cacheable), and a catch-all that bypasses the cache, as Varnish's
# "return (pass)" and nginx without proxy_cache do (nginx's static files carry validators and
# would otherwise be cached heuristically). Metrics and request ids stay on, as by default.
# EXTRA_TOML goes after [admin]: tables such as [limits], [observe], [access_log], [[server.tls]].
velox_config() {
    cat > "$1" <<EOF
[server]
listen = ["127.0.0.1:$2"]
data_dir = "$3"

[admin]
listen = false
${5:-}

[[upstreams]]
name = "origin"
servers = ["http://127.0.0.1:$4"]

[[routes]]
path_prefix = "/cached/"
upstream = "origin"

[[routes]]
path_prefix = "/"
upstream = "origin"
[routes.cache]
mode = "bypass"
EOF
}
