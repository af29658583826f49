#!/bin/sh
# Build the HTTP parser fuzzer and run it for SECONDS (default 60).
#
#   tests/fuzz/run.sh [SECONDS]
#
# The binary, the working corpus and any crash files go under build/fuzz/
# (or $WH_FUZZ_OUT), never into the source tree: the committed seeds in
# tests/fuzz/corpus/ are copied into a working corpus that libFuzzer grows,
# so runs accumulate coverage without growing the committed corpus.
# Exits non-zero when the fuzzer finds a crash, leak or timeout (and prints
# the file that reproduces it: run the binary on that file to replay), when
# the fuzzer itself exits non-zero (a bad flag, a missing binary, a failed
# start), and when it executed fewer inputs than WH_FUZZ_MIN_EXECS (default
# 100,000 per 60 s, pro rata: this machine does about 1.2 million in 60 s,
# so a run under the floor did not really fuzz).
set -eu

secs=${1:-60}
min_execs=${WH_FUZZ_MIN_EXECS:-$((secs * 100000 / 60))}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${WH_FUZZ_OUT:-$root/build/fuzz}
bin=$out/fuzz_http
work=$out/corpus
artifacts=$out/artifacts
mkdir -p "$out" "$work" "$artifacts"

# No stale binary: a failed build must not fuzz yesterday's parser.
rm -f "$bin"
${CC_FUZZ:-clang} -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Werror -I "$root/include" \
    "$root"/src/http/*.c "$root/tests/fuzz/fuzz_http.c" -o "$bin"

cp "$root/tests/fuzz/corpus/"* "$work/"
marker=$out/.run-start
touch "$marker"

# POSIX sh has no pipefail: the fuzzer's exit status goes through a file.
rm -f "$out/.rc"
set +e
{
    "$bin" -max_total_time="$secs" -max_len=16384 -timeout=10 -print_final_stats=1 \
        -dict="$root/tests/fuzz/http.dict" -artifact_prefix="$artifacts/" "$work" 2>&1
    echo $? >"$out/.rc"
} | tee "$out/last-run.log"
set -e
rc=$(cat "$out/.rc" 2>/dev/null || echo "unknown")
found=$(find "$artifacts" -type f -newer "$marker" 2>/dev/null)
if [ -n "$found" ] ||
    grep -q '^==[0-9]*==ERROR\|^SUMMARY: \|deadly signal' "$out/last-run.log"; then
    echo "fuzz_http: FAILURE (exit status $rc); reproduce with: $bin FILE" >&2
    for f in $found; do
        echo "crashing input: $f" >&2
    done
    exit 1
fi
if [ "$rc" != 0 ]; then
    echo "fuzz_http: FAILURE: the fuzzer exited with status $rc (see $out/last-run.log)" >&2
    exit 1
fi
# libFuzzer's -print_final_stats=1 line; "#N DONE" when stats are missing.
execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$out/last-run.log" |
    tail -n 1)
[ -n "$execs" ] ||
    execs=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]]*DONE.*/\1/p' "$out/last-run.log" | tail -n 1)
if [ -z "$execs" ]; then
    echo "fuzz_http: FAILURE: no executed-inputs count in the fuzzer's output" >&2
    exit 1
fi
if [ "$execs" -lt "$min_execs" ]; then
    echo "fuzz_http: FAILURE: only $execs inputs executed in ${secs}s (floor: $min_execs)" >&2
    exit 1
fi
echo "fuzz_http: no crash in ${secs}s, $execs inputs executed (floor: $min_execs; corpus: $work)"
