#!/usr/bin/env bash
# Throughput and latency of wharfd against nginx and HAProxy, on loopback.
#
# One upstream (nginx, 1 worker, `return 200 "hello\n"`), proxied in turn by
# wharfd, nginx (upstream keepalive 64, HTTP/1.1) and HAProxy (http-reuse
# always), access logs off for all three; first with 1 thread/worker each,
# then with 2. Each point is the median of BENCH_RUNS wrk runs of
# BENCH_SECONDS seconds (after a BENCH_WARMUP-second warm-up run that is not
# counted). A direct-to-upstream baseline is measured first.
#
# Environment:
#   WHARFD=path         use this wharfd instead of building build/bench/wharfd
#   BENCH_SECONDS=10    seconds per wrk run
#   BENCH_RUNS=3        runs per point (median of each figure is reported)
#   BENCH_WARMUP=2      seconds of uncounted warm-up per proxy and config
#   BENCH_WORKERS="1 2" thread/worker counts to measure
#   BENCH_PROXIES="wharfd haproxy nginx"
#   BENCH_OUT=file      also write the table there
#   BENCH_KEEP=1        keep the temp dir (configs, raw wrk output)
# wrk flags are fixed: -t2 -c64 --latency (WRK_THREADS / WRK_CONNS override).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_WORKERS=${BENCH_WORKERS:-1 2}
BENCH_PROXIES=${BENCH_PROXIES:-wharfd haproxy nginx}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}

install_missing wrk nginx-light haproxy curl
build_wharfd
bench_setup

# to_ms VALUE: wrk latency ("812.00us", "1.23ms", "1.01s") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

median() { # numbers on stdin
    sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit }
        if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# cpu_busy: percent of CPU time busy over the next second, machine-wide.
cpu_busy() {
    local a b
    a=$(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat)
    echo "$a $b" | awk '{ t = $3 - $1; i = $4 - $2; if (t > 0) printf "%d", 100 * (t - i) / t; else print 0 }'
}

# measure LABEL WORKERS PORT: BENCH_RUNS wrk runs; appends the medians to
# $BENCH_TMP/results as "workers label rps p50_ms p99_ms errors".
measure() {
    local label=$1 workers=$2 port=$3 i raw rps p50 p99 err
    local url="http://127.0.0.1:$port/"
    local flags=(-t"$WRK_THREADS" -c"$WRK_CONNS" --latency)
    if [ "$BENCH_WARMUP" -gt 0 ]; then
        wrk "${flags[@]}" -d"${BENCH_WARMUP}s" "$url" >/dev/null
    fi
    : >"$BENCH_TMP/runs"
    for i in $(seq "$BENCH_RUNS"); do
        raw="$BENCH_TMP/wrk-$label-$workers-$i.txt"
        busy=$(cpu_busy)
        [ "$busy" -le 10 ] || {
            log "warning: the machine is ${busy}% busy before this run: figures will be skewed"
            echo "$label $workers $i $busy" >>"$BENCH_TMP/busy"
        }
        wrk "${flags[@]}" -d"${BENCH_SECONDS}s" "$url" >"$raw"
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$raw")
        p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$raw")")
        p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$raw")")
        err=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 }
                   /Non-2xx or 3xx responses:/ { s += $5 } END { print s + 0 }' "$raw")
        [ -n "$rps" ] || { cat "$raw" >&2; die "wrk gave no result for $label"; }
        printf '%s %s %s %s\n' "$rps" "$p50" "$p99" "$err" >>"$BENCH_TMP/runs"
        printf '    run %d: %10.0f req/s  p50 %8.3f ms  p99 %8.3f ms  errors %s\n' \
            "$i" "$rps" "$p50" "$p99" "$err" >&2
        [ "$err" = 0 ] || grep -E 'Socket errors|Non-2xx' "$raw" | sed 's/^/      /' >&2
    done
    printf '%s %s %s %s %s %s\n' "$workers" "$label" \
        "$(awk '{print $1}' "$BENCH_TMP/runs" | median)" \
        "$(awk '{print $2}' "$BENCH_TMP/runs" | median)" \
        "$(awk '{print $3}' "$BENCH_TMP/runs" | median)" \
        "$(awk '{s += $4} END {print s + 0}' "$BENCH_TMP/runs")" >>"$BENCH_TMP/results"
}

: >"$BENCH_TMP/results"
: >"$BENCH_TMP/busy"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "wharfd: $WHARFD"
log "wrk -t$WRK_THREADS -c$WRK_CONNS -d${BENCH_SECONDS}s --latency, median of $BENCH_RUNS runs"
start_upstream
log "upstream nginx on 127.0.0.1:$UPSTREAM_PORT (direct baseline)"
measure direct - "$UPSTREAM_PORT"

for w in $BENCH_WORKERS; do
    for p in $BENCH_PROXIES; do
        start_proxy "$p" "$w" 4096
        log "$p with $w thread(s)/worker(s) on 127.0.0.1:$PROXY_PORT (pid $PROXY_PID)"
        measure "$p" "$w" "$PROXY_PORT"
        stop_pid "$PROXY_PID"
    done
done

report() {
    echo
    echo "wharf proxy benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, loopback"
    echo "load average at start: $load_start, at end: $(cut -d' ' -f1-3 /proc/loadavg) (anything else busy skews the figures)"
    [ ! -s "$BENCH_TMP/busy" ] ||
        echo "WARNING: $(wc -l <"$BENCH_TMP/busy") run(s) started with the machine >10% busy with other work"
    echo "wrk -t$WRK_THREADS -c$WRK_CONNS -d${BENCH_SECONDS}s --latency; median of $BENCH_RUNS runs; upstream nginx (1 worker) returning 6 bytes"
    echo "wharfd: $WHARFD ($(cd "$bench_top" && git describe --always --dirty 2>/dev/null || echo unknown))," \
        "$(nginx -v 2>&1 | sed 's/.*version: //'), $(haproxy -v | head -1 | awk '{print "HAProxy/"$3}')"
    echo
    printf '%-8s %-8s %12s %10s %10s %7s\n' workers proxy "req/s" "p50 ms" "p99 ms" errors
    printf '%-8s %-8s %12s %10s %10s %7s\n' ------- ----- ----- ------ ------ ------
    awk '{ printf "%-8s %-8s %12.0f %10.3f %10.3f %7d\n", $1, $2, $3, $4, $5, $6 }' "$BENCH_TMP/results"
    echo
    echo "ratios (req/s: higher is better for wharfd; p99: lower is better for wharfd)"
    awk '{ rps[$1" "$2] = $3; p99[$1" "$2] = $5; if ($1 != "-") ws[$1] = 1 }
        function r(a, b) { return (b > 0 && a != "") ? sprintf("%.2f", a / b) : "n/a" }
        END {
            for (w in ws) {
                printf "  %s thread(s): wharfd/haproxy req/s %s  p99 %s   wharfd/nginx req/s %s  p99 %s\n", w,
                    r(rps[w" wharfd"], rps[w" haproxy"]), r(p99[w" wharfd"], p99[w" haproxy"]),
                    r(rps[w" wharfd"], rps[w" nginx"]), r(p99[w" wharfd"], p99[w" nginx"])
            }
        }' "$BENCH_TMP/results" | sort
}

report | tee ${BENCH_OUT:+"$BENCH_OUT"}
