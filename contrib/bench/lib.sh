# shellcheck shell=bash
# Shared helpers for contrib/bench/*.sh (sourced, not run).
# Everything runs on 127.0.0.1; every process started here is recorded in
# BENCH_PIDS and stopped by bench_cleanup (installed as an EXIT trap).

bench_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench_dir="$bench_top/contrib/bench"
BENCH_PIDS=()

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# install_missing PKG... : apt-get install only what dpkg does not have.
install_missing() {
    "$bench_top/contrib/install-packages.sh" "$@" || die "installing $* failed"
}

# bench_setup: temp dir, fd limit, EXIT trap.
bench_setup() {
    BENCH_TMP=$(mktemp -d /tmp/wharf-bench.XXXXXX)
    mkdir -p "$BENCH_TMP/upstream-tmp" "$BENCH_TMP/nginx-tmp"
    chmod 755 "$BENCH_TMP"
    # The hard limit here is 20000 and cannot be raised; proxies and clients
    # inherit this soft limit and each stays below it.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# stop_pid PID: SIGTERM, wait up to 5 s, then SIGKILL.
stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    local keep=() p
    for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
    return 0
}

bench_cleanup() {
    local rc=$? pid
    set +e
    trap - EXIT
    for pid in "${BENCH_PIDS[@]}"; do
        [ -n "$pid" ] && stop_pid "$pid"
    done
    if [ -n "${BENCH_TMP:-}" ] && [ -d "$BENCH_TMP" ]; then
        if [ "${BENCH_KEEP:-0}" = 1 ]; then
            echo "kept $BENCH_TMP" >&2
        else
            rm -rf "$BENCH_TMP"
        fi
    fi
    exit $rc
}

# free_port: a free TCP port on 127.0.0.1, below the ephemeral range so no
# client socket takes it between the check and the bind.
free_port() {
    /usr/bin/python3 - <<'EOF'
import random, socket
lo = 20000
hi = int(open('/proc/sys/net/ipv4/ip_local_port_range').read().split()[0]) - 1
for _ in range(200):
    p = random.randint(lo, hi)
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
else:
    raise SystemExit('no free port')
EOF
}

# render TEMPLATE OUT KEY=VALUE... : replace @KEY@ with VALUE.
render() {
    local tpl=$1 out=$2 kv args=()
    shift 2
    args=(-e "s|@DIR@|$BENCH_TMP|g")
    for kv in "$@"; do
        args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    sed "${args[@]}" "$tpl" >"$out"
    ! grep -q '@[A-Z_]*@' "$out" || die "unfilled placeholder in $out"
}

# wait_port PORT PID: until 127.0.0.1:PORT accepts (PID must stay alive).
wait_port() {
    local port=$1 pid=$2 _
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# check_hello PORT: one request must answer 200 "hello".
check_hello() {
    check_url "http://127.0.0.1:$1/"
}

# check_url URL: one request (certificate not verified) must answer "hello".
check_url() {
    local body
    body=$(curl -sSk --max-time 5 "$1") || return 1
    [ "$body" = "hello" ]
}

# make_tls_cert: one self-signed EC P-256 certificate for all the proxies:
# $BENCH_TMP/bench-cert.pem, bench-key.pem and bench-combined.pem (both, for
# HAProxy's crt).
make_tls_cert() {
    [ -f "$BENCH_TMP/bench-combined.pem" ] && return 0
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$BENCH_TMP/bench-key.pem" -out "$BENCH_TMP/bench-cert.pem" \
        -subj "/CN=bench.test" -addext "subjectAltName=DNS:bench.test" >/dev/null 2>&1 ||
        die "openssl req failed"
    cat "$BENCH_TMP/bench-cert.pem" "$BENCH_TMP/bench-key.pem" >"$BENCH_TMP/bench-combined.pem"
}

# wharfd_rules N: N rules on one line (libconfig): 1..N-1 match /svcI/*,
# which the benchmark never requests; N matches /bench/*.
wharfd_rules() {
    local n=$1 i out=""
    for i in $(seq $((n - 1))); do
        out+="{ priority = $i; conditions = { path = [ \"/svc$i/*\" ]; }; forward = ( { target_group = \"web\"; } ); }, "
    done
    out+="{ priority = $n; conditions = { path = [ \"/bench/*\" ]; }; forward = ( { target_group = \"web\"; } ); }"
    printf '%s' "$out"
}

# haproxy_acls N: the same as N HAProxy ACL + use_backend pairs, joined by
# a literal backslash-n (sed turns it into a newline).
haproxy_acls() {
    local n=$1 i out=""
    for i in $(seq $((n - 1))); do
        out+="acl r$i path_beg /svc$i/\\n    use_backend web if r$i\\n    "
    done
    out+="acl r$n path_beg /bench/\\n    use_backend web if r$n"
    printf '%s' "$out"
}

# build_wharfd: sets WHARFD (given, or built out-of-tree under build/bench).
build_wharfd() {
    if [ -n "${WHARFD:-}" ]; then
        [ -x "$WHARFD" ] || die "WHARFD=$WHARFD is not an executable"
        return 0
    fi
    install_missing build-essential autoconf automake libtool pkg-config libevent-dev \
        libssl-dev libcurl4-openssl-dev libcjson-dev libconfig-dev
    local b="$bench_top/build/bench"
    log "building wharfd (-O2 -g) in $b"
    (cd "$bench_top" && autoreconf -fi >/dev/null 2>&1) || die "autoreconf failed"
    mkdir -p "$b"
    if [ ! -f "$b/Makefile" ]; then
        (cd "$b" && "$bench_top/configure" -q CFLAGS="-O2 -g" >/dev/null) || die "configure failed"
    fi
    make -C "$b" -j"$(nproc)" wharfd >"$b/make.log" 2>&1 || { tail -20 "$b/make.log" >&2; die "make wharfd failed"; }
    WHARFD="$b/wharfd"
}

# start_upstream: nginx returning "hello\n"; sets UPSTREAM_PORT.
start_upstream() {
    UPSTREAM_PORT=$(free_port)
    render "$bench_dir/conf/upstream-nginx.conf" "$BENCH_TMP/upstream.conf" PORT="$UPSTREAM_PORT"
    nginx -p "$BENCH_TMP" -e "$BENCH_TMP/upstream-error.log" -c "$BENCH_TMP/upstream.conf" \
        -g 'daemon off;' >"$BENCH_TMP/upstream.out" 2>&1 &
    UPSTREAM_PID=$!
    BENCH_PIDS+=("$UPSTREAM_PID")
    wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID" || { cat "$BENCH_TMP/upstream.out" >&2; die "upstream nginx did not start"; }
    check_hello "$UPSTREAM_PORT" || die "upstream nginx does not answer hello"
}

# start_proxy NAME WORKERS CONNS [VARIANT]: sets PROXY_PORT, PROXY_PID and
# PROXY_URL (what wrk requests). VARIANT: "" (plain HTTP), "tls" (the proxy
# terminates TLS with make_tls_cert's certificate) or "rulesN" (N rules or
# ACLs, the last matching PROXY_URL's path; wharfd and haproxy only).
start_proxy() {
    local name=$1 workers=$2 conns=$3 variant=${4:-} out="$BENCH_TMP/$1.out" conf
    PROXY_PORT=$(free_port)
    PROXY_URL="http://127.0.0.1:$PROXY_PORT/"
    case $variant in
    "") conf=$name ;;
    tls)
        make_tls_cert
        conf=$name-tls
        PROXY_URL="https://127.0.0.1:$PROXY_PORT/"
        ;;
    rules*)
        conf=$name-rules
        PROXY_URL="http://127.0.0.1:$PROXY_PORT/bench/x"
        ;;
    *) die "unknown variant $variant" ;;
    esac
    case $name in
    wharfd)
        if [ "$conf" = wharfd-rules ]; then
            render "$bench_dir/conf/proxy-wharfd-rules.conf" "$BENCH_TMP/wharfd.conf" \
                PORT="$PROXY_PORT" UPSTREAM_PORT="$UPSTREAM_PORT" WORKERS="$workers" \
                RULES="$(wharfd_rules "${variant#rules}")"
        else
            render "$bench_dir/conf/proxy-$conf.conf" "$BENCH_TMP/wharfd.conf" \
                PORT="$PROXY_PORT" UPSTREAM_PORT="$UPSTREAM_PORT" WORKERS="$workers"
        fi
        "$WHARFD" -c "$BENCH_TMP/wharfd.conf" >"$out" 2>&1 &
        ;;
    nginx)
        [ "$conf" != nginx-rules ] || die "no nginx configuration for the rules benchmark"
        render "$bench_dir/conf/proxy-$conf.conf" "$BENCH_TMP/nginx.conf" \
            PORT="$PROXY_PORT" UPSTREAM_PORT="$UPSTREAM_PORT" WORKERS="$workers" CONNS="$conns"
        nginx -p "$BENCH_TMP" -e "$BENCH_TMP/nginx-error.log" -c "$BENCH_TMP/nginx.conf" \
            -g 'daemon off;' >"$out" 2>&1 &
        ;;
    haproxy)
        if [ "$conf" = haproxy-rules ]; then
            render "$bench_dir/conf/proxy-haproxy-rules.cfg" "$BENCH_TMP/haproxy.cfg" \
                PORT="$PROXY_PORT" UPSTREAM_PORT="$UPSTREAM_PORT" WORKERS="$workers" CONNS="$conns" \
                ACLS="$(haproxy_acls "${variant#rules}")"
        else
            render "$bench_dir/conf/proxy-$conf.cfg" "$BENCH_TMP/haproxy.cfg" \
                PORT="$PROXY_PORT" UPSTREAM_PORT="$UPSTREAM_PORT" WORKERS="$workers" CONNS="$conns"
        fi
        haproxy -db -f "$BENCH_TMP/haproxy.cfg" >"$out" 2>&1 &
        ;;
    *) die "unknown proxy $name" ;;
    esac
    PROXY_PID=$!
    BENCH_PIDS+=("$PROXY_PID")
    wait_port "$PROXY_PORT" "$PROXY_PID" || { cat "$out" >&2; die "$name${variant:+ ($variant)} did not start"; }
    check_url "$PROXY_URL" || { cat "$out" >&2; die "$name${variant:+ ($variant)} does not proxy hello at $PROXY_URL"; }
}

# tree_rss_kib PID: VmRSS (KiB) summed over PID and all its descendants.
tree_rss_kib() {
    local pid total=0 rss queue=("$1") kids
    while [ ${#queue[@]} -gt 0 ]; do
        pid=${queue[0]}
        queue=("${queue[@]:1}")
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        total=$((total + ${rss:-0}))
        kids=$(cat "/proc/$pid/task/"*/children 2>/dev/null)
        for k in $kids; do queue+=("$k"); done
    done
    echo "$total"
}
