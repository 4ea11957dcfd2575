# Helpers shared by bench/run.sh, bench/instructions.sh and scripts/release-build.sh (sourced).

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

# plain_origin DIR PORT: writes DIR/nginx.conf for an nginx origin of origin_documents on PORT, 1
# worker, no access log: /1k is `no-store`, /cached/ is `public, max-age=3600`. Start it with
# nginx -p DIR -c DIR/nginx.conf (it stays in the foreground).
plain_origin() {
    local d="$1" port="$2"
    origin_documents "$d"
    cat > "$d/nginx.conf" <<EOF
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $d/tmp/b; proxy_temp_path $d/tmp/p;
    fastcgi_temp_path $d/tmp/f; uwsgi_temp_path $d/tmp/u; scgi_temp_path $d/tmp/s;
    server {
        listen 127.0.0.1:$port;
        root $d/www;
        location / { add_header Cache-Control "no-store"; }
        location /cached/ { add_header Cache-Control "public, max-age=3600"; }
    }
}
EOF
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
