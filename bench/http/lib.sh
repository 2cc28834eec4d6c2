# bench/http/lib.sh - start and stop the HTTP fronts and FastCGI backends (sourced by
# bench/http/run.sh and bench/mem/run.sh, after bench/lib/common.sh).
#
# Every front gets backends of its own (a libfcgi responder and a php-fpm), so that idle
# pooled connections of one front never hold the workers another front needs: php-fpm and
# libfcgi serve one connection per worker/thread and stay on a kept-alive connection.
#
#   HTTP_W            scratch dir (docroot $HTTP_W/www, sockets, configs, logs)
#   TASKSET           command prefix for fronts and backends ("" or "taskset -c 1")
#   PHP_WORKERS       php-fpm workers per instance (default 20)
#   FCGI_CONNS        FastCGI connections per backend and worker, heisen-httpd
#                     -fastcgi-conns and nginx upstream keepalive (default 8)
#   NO_PHP=1          start_backends starts no php-fpm
#   FRONT_PREFIX      command prefix for the fronts (e.g. valgrind --tool=callgrind ...);
#                     nginx then runs in the foreground as a single process
#                     (daemon off; master_process off), in the background of this shell

HTTP_W="${HTTP_W:-$BENCH_TMP/http}"
TASKSET="${TASKSET:-}"
PHP_WORKERS="${PHP_WORKERS:-20}"
FCGI_CONNS="${FCGI_CONNS:-8}"
PHP_FPM_SH="$ROOT/scripts/php-fpm.sh"
mkdir -p "$HTTP_W"

# the shared docroot: the PHP one-liner, an (empty) file for the .fcgi route (the libfcgi
# responder ignores SCRIPT_FILENAME), and a small static page for the idle connections
make_docroot() {
    mkdir -p "$HTTP_W/www"
    if [ -f "$ROOT/tests/php/oneline.php" ]; then
        cp "$ROOT/tests/php/oneline.php" "$HTTP_W/www/oneline.php"
    else
        printf '<?php echo "ok\\n";\n' > "$HTTP_W/www/oneline.php"
    fi
    : > "$HTTP_W/www/hello.fcgi"
    printf 'hello\n' > "$HTTP_W/www/index.html"
}

have_php_fpm() { [ -x "$PHP_FPM_SH" ] && { ls /usr/sbin/php-fpm* >/dev/null 2>&1 || have php-fpm; }; }
have_nginx() { have nginx || [ -x /usr/sbin/nginx ]; }
NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"

# start_backends NAME -> sets R_SOCK_<NAME>, R_PID_<NAME>, P_SOCK_<NAME>, P_DIR_<NAME>
start_backends() {
    local name=$1 rs rp pd
    rs="$HTTP_W/r-$name.sock"
    rp=$(TASKSET="$TASKSET" "$BENCH_DIR/fcgi/start-responder.sh" "$rs" 512) || rp=""
    printf -v "R_SOCK_$name" '%s' "$rs"
    printf -v "R_PID_$name" '%s' "$rp"
    pd="$HTTP_W/php-$name"
    printf -v "P_DIR_$name" '%s' "$pd"
    printf -v "P_SOCK_$name" '%s' ""
    if [ "${NO_PHP:-0}" != 1 ] && have_php_fpm; then
        if $TASKSET "$PHP_FPM_SH" start "$pd" --workers "$PHP_WORKERS" --quiet >/dev/null 2>>"$HTTP_W/php-fpm.err"; then
            printf -v "P_SOCK_$name" '%s' "$pd/php-fpm.sock"
        fi
    fi
}

stop_backends() {
    local name=$1 v
    v="R_PID_$name"; stop_pid "${!v:-}"
    v="P_DIR_$name"; [ -n "${!v:-}" ] && [ -x "$PHP_FPM_SH" ] && "$PHP_FPM_SH" stop "${!v}" >/dev/null 2>&1
    return 0
}

backend_pids() { # NAME KIND(libfcgi|php-fpm)
    local name=$1 v
    if [ "$2" = libfcgi ]; then
        v="R_PID_$name"; descendants "${!v:-}"
    else
        v="P_DIR_$name"; [ -s "${!v}/php-fpm.pid" ] && descendants "$(cat "${!v}/php-fpm.pid")"
    fi
}

# ---- nginx: one instance, two servers: nginx-ka (upstream keepalive + fastcgi_keep_conn)
#      on NGINX_KA_PORT and nginx (a connection per request) on NGINX_PORT
nginx_params() {
    cat <<'EOF'
        fastcgi_param  QUERY_STRING       $query_string;
        fastcgi_param  REQUEST_METHOD     $request_method;
        fastcgi_param  CONTENT_TYPE       $content_type;
        fastcgi_param  CONTENT_LENGTH     $content_length;
        fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
        fastcgi_param  SCRIPT_FILENAME    $document_root$fastcgi_script_name;
        fastcgi_param  REQUEST_URI        $request_uri;
        fastcgi_param  DOCUMENT_URI       $document_uri;
        fastcgi_param  DOCUMENT_ROOT      $document_root;
        fastcgi_param  SERVER_PROTOCOL    $server_protocol;
        fastcgi_param  GATEWAY_INTERFACE  CGI/1.1;
        fastcgi_param  SERVER_SOFTWARE    nginx;
        fastcgi_param  REMOTE_ADDR        $remote_addr;
        fastcgi_param  REMOTE_PORT        $remote_port;
        fastcgi_param  SERVER_ADDR        $server_addr;
        fastcgi_param  SERVER_PORT        $server_port;
        fastcgi_param  SERVER_NAME        $server_name;
        fastcgi_param  REDIRECT_STATUS    200;
EOF
}

# start_nginx WORKERS [PRELOAD_ENV...] -> NGINX_PID, NGINX_KA_PORT, NGINX_PORT
start_nginx() {
    local workers=$1; shift
    local d="$HTTP_W/nginx"
    mkdir -p "$d/tmp"
    NGINX_KA_PORT=$(free_port); NGINX_PORT=$(free_port)
    local php_ka="" php_no=""
    [ -n "${P_SOCK_nginxka:-}" ] && php_ka="location ~ \\.php\$ { fastcgi_pass php_ka; fastcgi_keep_conn on;
$(nginx_params)
        }"
    [ -n "${P_SOCK_nginx:-}" ] && php_no="location ~ \\.php\$ { fastcgi_pass unix:${P_SOCK_nginx};
$(nginx_params)
        }"
    local up_php=""
    [ -n "${P_SOCK_nginxka:-}" ] && up_php="upstream php_ka { server unix:${P_SOCK_nginxka}; keepalive $FCGI_CONNS; keepalive_requests 1000000; keepalive_timeout 600s; }"
    cat > "$d/nginx.conf" <<EOF
# generated by bench/http/lib.sh
user root;
worker_processes $workers;
worker_rlimit_nofile 20000;
pid $d/nginx.pid;
error_log $d/error.log warn;
daemon $([ -n "${FRONT_PREFIX:-}" ] && echo off || echo on);
master_process $([ -n "${FRONT_PREFIX:-}" ] && echo off || echo on);
events { worker_connections 16384; use epoll; multi_accept off; }
http {
    access_log off;
    keepalive_timeout 600s;
    keepalive_requests 1000000;
    client_body_temp_path $d/tmp/body;
    fastcgi_temp_path $d/tmp/fastcgi;
    proxy_temp_path $d/tmp/proxy;
    scgi_temp_path $d/tmp/scgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    default_type text/plain;
    upstream responder_ka { server unix:${R_SOCK_nginxka:-$HTTP_W/r-nginxka.sock}; keepalive $FCGI_CONNS; keepalive_requests 1000000; keepalive_timeout 600s; }
    $up_php
    server {
        listen 127.0.0.1:$NGINX_KA_PORT backlog=4096;
        root $HTTP_W/www;
        location ~ \\.fcgi\$ { fastcgi_pass responder_ka; fastcgi_keep_conn on;
$(nginx_params)
        }
        $php_ka
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        root $HTTP_W/www;
        location ~ \\.fcgi\$ { fastcgi_pass unix:${R_SOCK_nginx:-$HTTP_W/r-nginx.sock};
$(nginx_params)
        }
        $php_no
    }
}
EOF
    rm -f "$d/nginx.pid"
    if [ -n "${FRONT_PREFIX:-}" ]; then
        env "$@" $TASKSET $FRONT_PREFIX "$NGINX_BIN" -c "$d/nginx.conf" -p "$d" >>"$d/start.log" 2>&1 &
        NGINX_PID=$!
        wait_tcp_port "$NGINX_KA_PORT" 30 && wait_tcp_port "$NGINX_PORT" 5
        return
    fi
    if ! env "$@" $TASKSET "$NGINX_BIN" -c "$d/nginx.conf" -p "$d" >>"$d/start.log" 2>&1; then
        NGINX_PID=""
        return 1
    fi
    local i
    for ((i = 0; i < 100; i++)); do [ -s "$d/nginx.pid" ] && break; sleep 0.05; done
    NGINX_PID=$(cat "$d/nginx.pid" 2>/dev/null)
    wait_tcp_port "$NGINX_KA_PORT" 5 && wait_tcp_port "$NGINX_PORT" 5
}

stop_nginx() {
    [ -n "${NGINX_PID:-}" ] && stop_pid "$NGINX_PID" "$([ -n "${FRONT_PREFIX:-}" ] && echo TERM || echo QUIT)"
    NGINX_PID=""
}

nginx_worker_pids() { descendants "$NGINX_PID" | grep -vx "$NGINX_PID"; }

# start_heisen WORKERS [PRELOAD_ENV...] -> HEISEN_PID, HEISEN_PORT
start_heisen() {
    local workers=$1; shift
    HEISEN_PORT=$(free_port)
    local php=()
    [ -n "${P_SOCK_heisen:-}" ] && php=(-fastcgi .php "unix:$P_SOCK_heisen")
    env "$@" $TASKSET ${FRONT_PREFIX:-} "$HEISEN_BIN_DIR/heisen-httpd" -bind "127.0.0.1:$HEISEN_PORT" -sandbox "$HTTP_W/www" \
        -fastcgi .fcgi "unix:$R_SOCK_heisen" "${php[@]}" -cpu "$workers" -foreground -accesslog off \
        -fastcgi-conns "$FCGI_CONNS" -keepalive-timeout 600000 -max-conns 20000 \
        >>"$HTTP_W/heisen-httpd.log" 2>&1 &
    HEISEN_PID=$!
    wait_tcp_port "$HEISEN_PORT" 30
}

stop_heisen() {
    [ -n "${HEISEN_PID:-}" ] && stop_pid "$HEISEN_PID" TERM
    HEISEN_PID=""
}
