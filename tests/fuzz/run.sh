#!/bin/sh
# Build the HTTP parser fuzzer and run it for SECONDS (default 60).
#
#   tests/fuzz/run.sh [SECONDS]
#
# The binary, the working corpus and any crash files go under build/fuzz/
# (or $WH_FUZZ_OUT), never into the source tree: the committed seeds in
# tests/fuzz/corpus/ are copied into a working corpus that libFuzzer grows,
# so runs accumulate coverage without growing the committed corpus.
# Exits non-zero when the fuzzer finds a crash, leak or timeout, and prints
# the file that reproduces it (run the binary on that file to replay).
set -eu

secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${WH_FUZZ_OUT:-$root/build/fuzz}
bin=$out/fuzz_http
work=$out/corpus
artifacts=$out/artifacts
mkdir -p "$out" "$work" "$artifacts"

${CC_FUZZ:-clang} -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Werror -I "$root/include" \
    "$root/src/http/http.c" "$root/tests/fuzz/fuzz_http.c" -o "$bin"

cp "$root/tests/fuzz/corpus/"* "$work/"
marker=$out/.run-start
touch "$marker"

set +e
"$bin" -max_total_time="$secs" -max_len=16384 -timeout=10 -print_final_stats=1 \
    -dict="$root/tests/fuzz/http.dict" -artifact_prefix="$artifacts/" "$work" \
    2>&1 | tee "$out/last-run.log"
set -e
# POSIX sh has no pipefail: the artifacts and the log tell what happened.
found=$(find "$artifacts" -type f -newer "$marker" 2>/dev/null)
if [ -n "$found" ] ||
    grep -q '^==[0-9]*==ERROR\|^SUMMARY: \|deadly signal' "$out/last-run.log"; then
    echo "fuzz_http: FAILURE; reproduce with: $bin FILE" >&2
    for f in $found; do
        echo "crashing input: $f" >&2
    done
    exit 1
fi
echo "fuzz_http: no crash in ${secs}s (corpus: $work)"
