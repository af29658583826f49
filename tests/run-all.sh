#!/usr/bin/env bash
# Runs every wharf test on a fresh Debian 12 machine (as root):
#   1. installs what the build and the tests need,
#   2. static checks: clang-format, public headers on their own, the
#      forbidden includes of DESIGN.md (one test case each),
#   3. builds with ASan+UBSan and runs the unit tests (cmocka): every
#      tests/unit/*.c must yield a result, judged by its exit status (the
#      .trs automake's driver writes), so a sanitizer report after cmocka's
#      summary or a program that did not compile is a failure,
#   4. builds plain and optimised and runs the integration and end-to-end
#      tests (pytest, real processes, real Docker engines),
#   5. runs the proxy data-path integration tests again against the
#      ASan+UBSan wharfd (the harness fails a test whose wharfd printed a
#      sanitizer report),
#   6. fuzzes the HTTP parser for 60 s (libFuzzer); a failed start or too
#      few inputs executed is a failure.
# The last line is "N passed, M failed" over all suites; a skipped test
# counts as failed; the exit status is non-zero on any failure.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
jobs=$(nproc)
asan_built=no # set by run_unit: a stale build/asan/wharfd must not be tested
passed=0
failed=0
log() { printf '==> %s\n' "$*"; }
count() { passed=$((passed + $1)); failed=$((failed + $2)); }

# Sanitizer reports go to stderr (no log_path) and stop the program, so the
# test that provoked one fails with it in its output.
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

install_packages() {
    "$top/contrib/install-packages.sh" \
        build-essential autoconf automake libtool pkg-config libevent-dev libssl-dev \
        libcurl4-openssl-dev libcjson-dev libconfig-dev libcmocka-dev python3 python3-pytest \
        python3-pytest-timeout python3-websockets clang libclang-rt-14-dev clang-format \
        docker.io iproute2 openssl curl procps psmisc docker-registry apache2-utils
}

configure_dir() { # configure_dir DIR CONFIGURE-ARGS...
    local dir=$1
    shift
    mkdir -p "$dir"
    (cd "$dir" && "$top/configure" -q "$@") >"$dir.configure.log" 2>&1 || {
        cat "$dir.configure.log"
        return 1
    }
}

build() { # build DIR CONFIGURE-ARGS...
    local dir=$1
    configure_dir "$@" || return 1
    (cd "$dir" && make -j"$jobs" -s) >"$dir.build.log" 2>&1 || {
        cat "$dir.build.log"
        return 1
    }
}

# Static checks: make format-check, header-check, include-check (Makefile.am,
# contrib/check-*.sh), each one test case.
run_checks() {
    log "static checks (clang-format, public headers, forbidden includes)"
    local dir=$top/build/asan t p=0 f=0 out
    if ! configure_dir "$dir" --enable-sanitizers --enable-werror; then
        log "checks: 0 passed, 3 failed (configure failed)"
        count 0 3
        return
    fi
    for t in format-check header-check include-check; do
        if out=$(cd "$dir" && make -s --no-print-directory "$t" 2>&1); then
            out=$(tail -n 1 <<<"$out")
            echo "    PASS: $t: ${out#check-*: }"
            p=$((p + 1))
        else
            echo "    FAIL: $t"
            grep -v '^make: \*\*\*' <<<"$out" | head -60 | sed 's/^/      /'
            f=$((f + 1))
        fi
    done
    log "checks: $p passed, $f failed"
    count "$p" "$f"
}

# One unit test program: its .trs (PASS/FAIL/ERROR/SKIP from its exit status)
# and its cmocka log ("[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s),"
# per group). Prints "PASSED FAILED" test cases; a program whose .trs is not
# PASS, or which printed no cmocka summary, counts at least one failure.
judge_unit() { # judge_unit BASE (build/asan/tests/unit/test_x)
    local base=$1 res p f
    res=$(sed -n 's/^:test-result: *//p' "$base.trs" | sort -u | tr '\n' ' ')
    p=$(grep -oP '^\[  PASSED  \] \K[0-9]+' "$base.log" | awk '{ n += $1 } END { print n + 0 }')
    f=$(grep -oP '^\[  FAILED  \] \K[0-9]+' "$base.log" | awk '{ n += $1 } END { print n + 0 }')
    if [ "$res" != "PASS " ] && [ "$f" -eq 0 ]; then
        f=1
    elif ! grep -q '^\[  PASSED  \]\|^\[  FAILED  \]' "$base.log" && [ "$f" -eq 0 ]; then
        f=1 # exit 0 without a cmocka summary: it did not run its tests
    fi
    echo "$p $f ${res% }"
}

run_unit() {
    log "unit tests (ASan+UBSan)"
    local dir=$top/build/asan src name base rc p f res tp=0 tf=0 missing=()
    if ! build "$dir" --enable-sanitizers --enable-werror; then
        log "unit: 0 passed, 1 failed (the ASan build failed)"
        count 0 1
        return
    fi
    asan_built=yes
    # Results of an earlier run must not stand in for this one.
    rm -f "$dir"/tests/unit/*.log "$dir"/tests/unit/*.trs "$dir"/test-suite.log
    (cd "$dir" && make -k -j"$jobs" check) >"$dir/make-check.log" 2>&1
    rc=$?
    # A test program that does not compile stops make check before any test
    # runs: run the others one by one, so they still give their results.
    for src in "$top"/tests/unit/*.c; do
        name=$(basename "$src" .c)
        [ -f "$dir/tests/unit/$name.trs" ] || missing+=("tests/unit/$name.log")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        (cd "$dir" && make -k -j"$jobs" "${missing[@]}") >>"$dir/make-check.log" 2>&1
    fi
    for src in "$top"/tests/unit/*.c; do
        name=$(basename "$src" .c)
        base=$dir/tests/unit/$name
        if [ ! -f "$base.trs" ] || [ ! -f "$base.log" ]; then
            echo "    FAIL: tests/unit/$name.c: no result (did not build, or is not in TESTS)"
            grep -F "$name" "$dir/make-check.log" | grep -i 'error:\|no rule' |
                awk '!seen[$0]++' | head -8 | sed 's/^/      /'
            tf=$((tf + 1))
            continue
        fi
        read -r p f res < <(judge_unit "$base")
        if [ "$f" -eq 0 ]; then
            echo "    PASS: tests/unit/$name ($p cases)"
        else
            echo "    FAIL: tests/unit/$name ($p passed, $f failed; result: ${res:-none})"
            # From the first failure or sanitizer report, else the end.
            if grep -q '^\[  FAILED  \]\|ERROR: \|runtime error:' "$base.log"; then
                sed -n '/^\[  FAILED  \]\|ERROR: \|runtime error:/,$p' "$base.log" | head -40
            else
                tail -40 "$base.log"
            fi | sed 's/^/      /'
        fi
        tp=$((tp + p))
        tf=$((tf + f))
    done
    if [ "$rc" -ne 0 ] && [ "$tf" -eq 0 ]; then
        echo "    FAIL: make check exited with status $rc:"
        tail -20 "$dir/make-check.log" | sed 's/^/      /'
        tf=1
    fi
    log "unit: $tp passed, $tf failed"
    count "$tp" "$tf"
}

# Counts a junit xml file: "PASSED FAILED" (errors and skips are failures).
count_junit() {
    /usr/bin/python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get(k, 0)) for s in suites for k in ("failures", "errors", "skipped"))
print(t - bad, bad)
PY
}

# pytest LABEL BUILD-DIR XML PYTEST-ARGS...: runs, prints, counts.
run_pytest() {
    local label=$1 bdir=$2 xml=$3 p f
    shift 3
    rm -f "$xml"
    WHARF_BUILD_DIR="$bdir" /usr/bin/python3 -m pytest "$@" \
        -p no:cacheprovider -o junit_family=xunit1 -q -rfEs --junitxml="$xml" 2>&1 | tail -40
    if [ ! -f "$xml" ]; then
        log "$label: 0 passed, 1 failed (pytest wrote no results)"
        count 0 1
        return
    fi
    read -r p f < <(count_junit "$xml")
    log "$label: $p passed, $f failed (a skip counts as a failure)"
    count "$p" "$f"
}

run_integration() {
    log "integration and end-to-end tests (plain build)"
    if ! build "$top/build/plain" --enable-werror CFLAGS="-O2 -g"; then
        log "integration: 0 passed, 1 failed (the plain build failed)"
        count 0 1
        return
    fi
    (cd "$top/build/plain" && make -s tests/app/demo-app >/dev/null 2>&1) || true
    [ -x tests/fleet/fleet.sh ] && tests/fleet/fleet.sh sweep >/dev/null 2>&1
    run_pytest integration "$top/build/plain" "$top/build/pytest.xml" tests/integration tests/app
}

# The proxy's data path against the ASan+UBSan wharfd that run_unit built:
# the harness fails a test whose wharfd stderr holds a sanitizer report.
# Streaming: only the SSE test; the two 2 GiB transfers stay in the plain run
# (minutes of ASan-instrumented copying, and their RSS bound is meaningless
# under ASan).
run_integration_asan() {
    log "proxy data-path integration tests (ASan+UBSan wharfd)"
    if [ "$asan_built" != yes ] || [ ! -x "$top/build/asan/wharfd" ]; then
        log "integration (ASan): 0 passed, 1 failed (no fresh build/asan/wharfd)"
        count 0 1
        return
    fi
    local d=tests/integration
    run_pytest "integration (ASan)" "$top/build/asan" "$top/build/pytest-asan.xml" \
        $d/test_proxy_forwarding.py $d/test_proxy_refusals.py $d/test_proxy_headers.py \
        $d/test_tunnels.py $d/test_signals.py $d/test_streaming.py \
        -k "not test_streaming.py or sse"
}

run_fuzz() {
    log "fuzzing the HTTP parser for ${FUZZ_SECONDS}s"
    if [ ! -f tests/fuzz/run.sh ]; then
        log "fuzz: 0 passed, 1 failed (no tests/fuzz/run.sh)"
        count 0 1
    elif sh tests/fuzz/run.sh "$FUZZ_SECONDS" >"$top/build/fuzz.log" 2>&1; then
        grep '^stat::number_of_executed_units\|^fuzz_http:' "$top/build/fuzz.log" | sed 's/^/    /'
        log "fuzz: 1 passed, 0 failed"
        count 1 0
    else
        tail -30 "$top/build/fuzz.log" | sed 's/^/    /'
        log "fuzz: 0 passed, 1 failed"
        count 0 1
    fi
}

install_packages || { echo "package installation failed"; echo "0 passed, 1 failed"; exit 1; }
autoreconf -fi >/dev/null 2>&1 || { echo "autoreconf failed"; echo "0 passed, 1 failed"; exit 1; }
mkdir -p build
run_checks
run_unit
run_integration
run_integration_asan
run_fuzz
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
