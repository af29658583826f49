#!/usr/bin/env bash
# Memory per idle keep-alive client connection: wharfd vs nginx vs HAProxy.
#
# For each proxy (1 thread/worker, logs off, in front of one upstream nginx):
# warm it up with a few connections, read its RSS (summed over the process
# and its children: nginx master + workers; HAProxy and wharfd are one
# process), then open IDLE_CONNS client connections with idle_client.py
# (a separate process: client and proxy each stay under the 20000 fd hard
# limit), each sending one request, reading the response and staying open.
# Once all are idle and IDLE_SETTLE seconds have passed, RSS is read again.
# Prints (after - before) / IDLE_CONNS in KiB and the ratios.
#
# Environment:
#   WHARFD=path          use this wharfd instead of building build/bench/wharfd
#   IDLE_CONNS=8000      idle client connections
#   IDLE_WORKERS=1       threads/workers of each proxy
#   IDLE_SETTLE=2        seconds between "all idle" and the second RSS reading
#   IDLE_PROXIES="wharfd haproxy nginx"
#   BENCH_OUT=file       also write the table there
#   BENCH_KEEP=1         keep the temp dir
set -euo pipefail
. "$(dirname "$0")/lib.sh"

IDLE_CONNS=${IDLE_CONNS:-8000}
IDLE_WORKERS=${IDLE_WORKERS:-1}
IDLE_SETTLE=${IDLE_SETTLE:-2}
IDLE_PROXIES=${IDLE_PROXIES:-wharfd haproxy nginx}
client="$bench_dir/idle_client.py"

install_missing nginx-light haproxy curl python3
build_wharfd
bench_setup
[ "$(ulimit -n)" -ge $((IDLE_CONNS + 500)) ] ||
    die "open files limit $(ulimit -n) is too low for $IDLE_CONNS connections"
# Room for the connections plus the proxy's upstream side and listeners.
proxy_conns=$((IDLE_CONNS + 1500))

# run_client PORT N READY: start idle_client.py in the background, wait
# until all N connections are idle; sets CLIENT_PID.
run_client() {
    local port=$1 n=$2 ready=$3 _
    rm -f "$ready"
    /usr/bin/python3 "$client" 127.0.0.1 "$port" "$n" "$ready" >"$ready.log" 2>&1 &
    CLIENT_PID=$!
    BENCH_PIDS+=("$CLIENT_PID")
    for _ in $(seq 1800); do
        [ -s "$ready" ] && return 0
        kill -0 "$CLIENT_PID" 2>/dev/null || { cat "$ready.log" >&2; return 1; }
        sleep 0.1
    done
    return 1
}

# stop_client: SIGTERM it; fails if the proxy closed idle connections.
stop_client() {
    kill -TERM "$CLIENT_PID" 2>/dev/null || true
    local rc=0
    wait "$CLIENT_PID" || rc=$?
    local keep=() p
    for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$CLIENT_PID" ] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
    return $rc
}

: >"$BENCH_TMP/results"
start_upstream
log "upstream nginx on 127.0.0.1:$UPSTREAM_PORT; $IDLE_CONNS idle connections per proxy"
for p in $IDLE_PROXIES; do
    start_proxy "$p" "$IDLE_WORKERS" "$proxy_conns"
    log "$p ($IDLE_WORKERS thread/worker) on 127.0.0.1:$PROXY_PORT (pid $PROXY_PID)"
    # Warm-up: a few connections and requests, closed again, so one-time
    # allocations (buffers, pools, the upstream connection) are in "before".
    run_client "$PROXY_PORT" 64 "$BENCH_TMP/warm.ready" || die "$p: warm-up client failed"
    stop_client >/dev/null || true
    sleep 1
    before=$(tree_rss_kib "$PROXY_PID")
    t0=$(date +%s.%N)
    run_client "$PROXY_PORT" "$IDLE_CONNS" "$BENCH_TMP/$p.ready" ||
        die "$p: could not hold $IDLE_CONNS idle connections"
    t1=$(date +%s.%N)
    sleep "$IDLE_SETTLE"
    after=$(tree_rss_kib "$PROXY_PID")
    held=$(ss -Htn state established "( sport = :$PROXY_PORT )" | wc -l)
    stop_client >"$BENCH_TMP/$p.client" 2>&1 || die "$p closed idle connections: $(cat "$BENCH_TMP/$p.client")"
    log "$p: RSS $before KiB -> $after KiB with $held established (opened in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s)"
    echo "$p $before $after $held" >>"$BENCH_TMP/results"
    stop_pid "$PROXY_PID"
done

report() {
    echo
    echo "wharf idle keep-alive connections: $(date -u '+%Y-%m-%d %H:%M UTC'), $IDLE_CONNS connections, $IDLE_WORKERS thread/worker per proxy"
    echo "RSS summed over the proxy's processes, after - before, divided by $IDLE_CONNS"
    echo
    printf '%-8s %14s %14s %12s %12s\n' proxy "RSS before KiB" "RSS after KiB" established "KiB/conn"
    printf '%-8s %14s %14s %12s %12s\n' ----- -------------- ------------- ----------- --------
    awk -v n="$IDLE_CONNS" '{ printf "%-8s %14d %14d %12d %12.2f\n", $1, $2, $3, $4, ($3 - $2) / n }' "$BENCH_TMP/results"
    echo
    awk -v n="$IDLE_CONNS" '{ k[$1] = ($3 - $2) / n }
        function r(a, b) { return (b > 0 && a != "") ? sprintf("%.2f", a / b) : "n/a" }
        END { printf "ratios (KiB/conn, lower is better for wharfd): wharfd/nginx %s  wharfd/haproxy %s\n",
                     r(k["wharfd"], k["nginx"]), r(k["wharfd"], k["haproxy"]) }' "$BENCH_TMP/results"
}

report | tee ${BENCH_OUT:+"$BENCH_OUT"}
