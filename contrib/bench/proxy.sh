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
# Three suites (BENCH_SUITES):
#   http   plain HTTP keep-alive through each proxy (the above)
#   https  each proxy terminates TLS with the same self-signed EC P-256
#          certificate (made in the temp dir with openssl); wrk over https,
#          keep-alive, to the same upstream (plain HTTP behind the proxy)
#   rules  a listener with BENCH_RULES rules whose last one matches the
#          request, against the same proxy with no rules: wharfd (rules) and
#          HAProxy (as many acl + use_backend pairs)
#
# Environment:
#   WHARFD=path         use this wharfd instead of building build/bench/wharfd
#   BENCH_SECONDS=10    seconds per wrk run
#   BENCH_RUNS=3        runs per point (median of each figure is reported)
#   BENCH_WARMUP=2      seconds of uncounted warm-up per proxy and config
#   BENCH_WORKERS="1 2" thread/worker counts to measure (http suite)
#   BENCH_PROXIES="wharfd haproxy nginx"   (http and https suites)
#   BENCH_SUITES="http https rules"
#   BENCH_TLS_WORKERS="1"   thread/worker counts for the https suite
#   BENCH_RULES=100         rules (and HAProxy ACLs) in the rules suite
#   BENCH_RULES_WORKERS="1" thread/worker counts for the rules suite
#   BENCH_RULES_PROXIES="wharfd haproxy"
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
BENCH_SUITES=${BENCH_SUITES:-http https rules}
BENCH_TLS_WORKERS=${BENCH_TLS_WORKERS:-1}
BENCH_RULES=${BENCH_RULES:-100}
BENCH_RULES_WORKERS=${BENCH_RULES_WORKERS:-1}
BENCH_RULES_PROXIES=${BENCH_RULES_PROXIES:-wharfd haproxy}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}

suite() { case " $BENCH_SUITES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
for s in $BENCH_SUITES; do
    case $s in http | https | rules) ;; *) die "unknown suite $s (BENCH_SUITES: http https rules)" ;; esac
done
[ "$BENCH_RULES" -ge 1 ] 2>/dev/null || die "BENCH_RULES must be a number >= 1"

install_missing wrk nginx-light haproxy curl openssl
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

# measure LABEL WORKERS PORT [URL]: BENCH_RUNS wrk runs against URL
# (default http://127.0.0.1:PORT/); appends the medians to
# $BENCH_TMP/results as "workers label rps p50_ms p99_ms errors".
measure() {
    local label=$1 workers=$2 port=$3 i raw rps p50 p99 err
    local url=${4:-"http://127.0.0.1:$port/"}
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
log "upstream nginx on 127.0.0.1:$UPSTREAM_PORT"

if suite http; then
    log "suite http: plain HTTP keep-alive (direct baseline first)"
    measure direct - "$UPSTREAM_PORT"
    for w in $BENCH_WORKERS; do
        for p in $BENCH_PROXIES; do
            start_proxy "$p" "$w" 4096
            log "$p with $w thread(s)/worker(s) on 127.0.0.1:$PROXY_PORT (pid $PROXY_PID)"
            measure "$p" "$w" "$PROXY_PORT"
            stop_pid "$PROXY_PID"
        done
    done
fi

if suite https; then
    log "suite https: each proxy terminates TLS (EC P-256, self-signed), wrk over https keep-alive"
    for w in $BENCH_TLS_WORKERS; do
        for p in $BENCH_PROXIES; do
            start_proxy "$p" "$w" 4096 tls
            log "$p (TLS) with $w thread(s)/worker(s) on $PROXY_URL (pid $PROXY_PID)," \
                "$(curl -sk -o /dev/null -w 'curl: %{http_version}' "$PROXY_URL")" \
                "$(openssl s_client -connect "127.0.0.1:$PROXY_PORT" </dev/null 2>/dev/null |
                    awk '/^New, / {print $2, $NF; exit}')"
            measure "$p-tls" "$w" "$PROXY_PORT" "$PROXY_URL"
            stop_pid "$PROXY_PID"
        done
    done
fi

if suite rules; then
    log "suite rules: $BENCH_RULES rules (the last one matches) against none, on /bench/x"
    for w in $BENCH_RULES_WORKERS; do
        for p in $BENCH_RULES_PROXIES; do
            [ "$p" != nginx ] || { log "rules suite: no nginx configuration, skipped"; continue; }
            start_proxy "$p" "$w" 4096
            log "$p, no rules, with $w thread(s)/worker(s) on 127.0.0.1:$PROXY_PORT (pid $PROXY_PID)"
            measure "$p-r0" "$w" "$PROXY_PORT" "http://127.0.0.1:$PROXY_PORT/bench/x"
            stop_pid "$PROXY_PID"
            start_proxy "$p" "$w" 4096 "rules$BENCH_RULES"
            log "$p, $BENCH_RULES rules, with $w thread(s)/worker(s) on 127.0.0.1:$PROXY_PORT (pid $PROXY_PID)"
            measure "$p-r$BENCH_RULES" "$w" "$PROXY_PORT" "$PROXY_URL"
            stop_pid "$PROXY_PID"
        done
    done
fi

report() {
    echo
    echo "wharf proxy benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, loopback; suites: $BENCH_SUITES"
    echo "load average at start: $load_start, at end: $(cut -d' ' -f1-3 /proc/loadavg) (anything else busy skews the figures)"
    [ ! -s "$BENCH_TMP/busy" ] ||
        echo "WARNING: $(wc -l <"$BENCH_TMP/busy") run(s) started with the machine >10% busy with other work"
    echo "wrk -t$WRK_THREADS -c$WRK_CONNS -d${BENCH_SECONDS}s --latency; median of $BENCH_RUNS runs; upstream nginx (1 worker) returning 6 bytes"
    echo "wharfd: $WHARFD ($(cd "$bench_top" && git describe --always --dirty 2>/dev/null || echo unknown))," \
        "$(nginx -v 2>&1 | sed 's/.*version: //'), $(haproxy -v | head -1 | awk '{print "HAProxy/"$3}'), $(openssl version | awk '{print $1"/"$2}')"
    ! suite https || echo "https: every proxy terminates TLS 1.2/1.3 with one EC P-256 certificate; wrk keep-alive (one handshake per connection)"
    ! suite rules || echo "rules: -rN = N rules (wharfd) or N acl/use_backend pairs (haproxy), the last one matching /bench/x; -r0 = none"
    echo
    printf '%-8s %-13s %12s %10s %10s %7s\n' workers proxy "req/s" "p50 ms" "p99 ms" errors
    printf '%-8s %-13s %12s %10s %10s %7s\n' ------- ----- ----- ------ ------ ------
    awk '{ printf "%-8s %-13s %12.0f %10.3f %10.3f %7d\n", $1, $2, $3, $4, $5, $6 }' "$BENCH_TMP/results"
    echo
    echo "ratios (req/s: higher is better for wharfd; p99: lower is better for wharfd)"
    awk -v nrules="$BENCH_RULES" '
        { rps[$1" "$2] = $3; p99[$1" "$2] = $5; if ($1 != "-") ws[$1] = 1 }
        function r(a, b) { return (b > 0 && a != "") ? sprintf("%.2f", a / b) : "n/a" }
        function vs(w, a, b) { return sprintf("req/s %s  p99 %s", r(rps[w" "a], rps[w" "b]), r(p99[w" "a], p99[w" "b])) }
        function has(w, a) { return (w" "a) in rps }
        END {
            for (w in ws) {
                if (has(w, "wharfd"))
                    printf "  http   %s thread(s): wharfd/haproxy %s   wharfd/nginx %s\n", w,
                        vs(w, "wharfd", "haproxy"), vs(w, "wharfd", "nginx")
                if (has(w, "wharfd-tls"))
                    printf "  https  %s thread(s): wharfd/haproxy %s   wharfd/nginx %s\n", w,
                        vs(w, "wharfd-tls", "haproxy-tls"), vs(w, "wharfd-tls", "nginx-tls")
                if (has(w, "wharfd-tls") && has(w, "wharfd"))
                    printf "  https  %s thread(s): cost of TLS, https/http: wharfd %s   haproxy %s   nginx %s\n", w,
                        r(rps[w" wharfd-tls"], rps[w" wharfd"]), r(rps[w" haproxy-tls"], rps[w" haproxy"]),
                        r(rps[w" nginx-tls"], rps[w" nginx"])
                n = "r" nrules
                if (has(w, "wharfd-" n))
                    printf "  rules  %s thread(s): wharfd %s/none %s   haproxy %s/none %s   wharfd/haproxy at %s %s\n", w,
                        nrules, vs(w, "wharfd-" n, "wharfd-r0"), nrules, vs(w, "haproxy-" n, "haproxy-r0"),
                        nrules, vs(w, "wharfd-" n, "haproxy-" n)
            }
        }' "$BENCH_TMP/results" | sort -k1,1 -k2,2n
}

report | tee ${BENCH_OUT:+"$BENCH_OUT"}
