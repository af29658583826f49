#!/usr/bin/env bash
# Runs every wharf test on a fresh Debian 12 machine (as root):
#   1. installs what the build and the tests need,
#   2. builds with ASan+UBSan and runs the unit tests (cmocka),
#   3. builds plain and optimised and runs the integration and end-to-end
#      tests (pytest, real processes, real Docker engines),
#   4. fuzzes the HTTP parser for 60 s (libFuzzer).
# The last line is "N passed, M failed" over all suites; the exit status is
# non-zero on any failure.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
passed=0
failed=0
log() { printf '==> %s\n' "$*"; }
count() { passed=$((passed + $1)); failed=$((failed + $2)); }

install_packages() {
    "$top/contrib/install-packages.sh" \
        build-essential autoconf automake libtool pkg-config libevent-dev libssl-dev \
        libcurl4-openssl-dev libcjson-dev libconfig-dev libcmocka-dev python3 python3-pytest \
        python3-pytest-timeout python3-websockets clang libclang-rt-14-dev docker.io iproute2 \
        openssl curl procps psmisc docker-registry apache2-utils
}

# cmocka prints "[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s)".
count_cmocka_logs() {
    local dir=$1 p=0 f=0 logf n
    for logf in "$dir"/tests/unit/test_*.log; do
        [ -f "$logf" ] || continue
        n=$(grep -oP '\[  PASSED  \] \K[0-9]+' "$logf" | tail -1)
        p=$((p + ${n:-0}))
        n=$(grep -oP '\[  FAILED  \] \K[0-9]+' "$logf" | tail -1)
        f=$((f + ${n:-0}))
        # A program that died (sanitizer report, crash) printed no summary.
        grep -q '\[  PASSED  \]\|\[  FAILED  \]' "$logf" || { f=$((f + 1)); cat "$logf"; }
    done
    echo "$p $f"
}

build() { # build DIR CONFIGURE-ARGS...
    local dir=$1
    shift
    mkdir -p "$dir"
    (cd "$dir" && "$top/configure" -q "$@" && make -j"$(nproc)" -s) >"$dir.build.log" 2>&1 || {
        cat "$dir.build.log"
        return 1
    }
}

run_unit() {
    log "unit tests (ASan+UBSan)"
    if ! build "$top/build/asan" --enable-sanitizers --enable-werror; then
        count 0 1
        return
    fi
    (cd "$top/build/asan" && ASAN_OPTIONS=detect_leaks=1 make -s check >/dev/null 2>&1)
    grep -h '^[A-Z]*: ' "$top"/build/asan/tests/unit/test_*.trs 2>/dev/null | sed 's/^/    /'
    read -r p f < <(count_cmocka_logs "$top/build/asan")
    log "unit: $p passed, $f failed"
    count "$p" "$f"
}

run_integration() {
    log "integration and end-to-end tests (plain build)"
    if ! build "$top/build/plain" --enable-werror CFLAGS="-O2 -g"; then
        count 0 1
        return
    fi
    (cd "$top/build/plain" && make -s tests/app/demo-app >/dev/null 2>&1) || true
    [ -x tests/fleet/fleet.sh ] && tests/fleet/fleet.sh sweep >/dev/null 2>&1
    local xml="$top/build/pytest.xml"
    rm -f "$xml"
    WHARF_BUILD_DIR="$top/build/plain" /usr/bin/python3 -m pytest tests/integration tests/app \
        -p no:cacheprovider -o junit_family=xunit1 -q -rfEs --junitxml="$xml" 2>&1 | tail -40
    if [ ! -f "$xml" ]; then
        count 0 1
        return
    fi
    read -r p f < <(/usr/bin/python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get(k, 0)) for s in suites for k in ("failures", "errors", "skipped"))
print(t - bad, bad)
PY
)
    log "integration: $p passed, $f failed (a skip counts as a failure)"
    count "$p" "$f"
}

run_fuzz() {
    log "fuzzing the HTTP parser for ${FUZZ_SECONDS}s"
    if [ -x tests/fuzz/run.sh ] && tests/fuzz/run.sh "$FUZZ_SECONDS" >"$top/build/fuzz.log" 2>&1; then
        tail -3 "$top/build/fuzz.log"
        count 1 0
    else
        tail -30 "$top/build/fuzz.log" 2>/dev/null
        count 0 1
    fi
}

install_packages || { echo "package installation failed"; echo "0 passed, 1 failed"; exit 1; }
autoreconf -fi >/dev/null 2>&1 || { echo "autoreconf failed"; echo "0 passed, 1 failed"; exit 1; }
mkdir -p build
run_unit
run_integration
run_fuzz
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
