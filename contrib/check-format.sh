#!/usr/bin/env bash
# check-format.sh [TOP]: fails when clang-format (Debian's clang-format 14
# and the repository's .clang-format) would change any *.c or *.h under
# src/, include/ or tests/. `make format` fixes what it reports.
# CLANG_FORMAT names the program (configure finds clang-format-14 first).
set -uo pipefail
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top" || exit 2
cf=${CLANG_FORMAT:-$(command -v clang-format-14 || echo clang-format)}
if ! ver=$("$cf" --version 2>/dev/null); then
    echo "check-format: $cf not found: install the Debian package clang-format"
    exit 1
fi
case $ver in
*" version 14."*) ;;
*) echo "check-format: warning: $cf is not clang-format 14 ($ver); results may differ" ;;
esac
mapfile -t files < <(find src include tests -name '*.[ch]' | LC_ALL=C sort)
if [ ${#files[@]} -eq 0 ]; then
    echo "check-format: no *.c/*.h found under $top"
    exit 1
fi
out=$("$cf" --dry-run -Werror --style=file "${files[@]}" 2>&1)
rc=$?
if [ $rc -ne 0 ]; then
    # One line per place to fix, then the files (clang-format also prints
    # the offending source lines: left out, run `make format` and diff).
    grep -E '^[^ ]+:[0-9]+:[0-9]+: error' <<<"$out" | sed 's|^\./||' | head -30
    bad=$(grep -oE '^[^ :]+\.[ch]:[0-9]+:[0-9]+: error' <<<"$out" | cut -d: -f1 | sort -u)
    [ -n "$bad" ] || printf '%s\n' "$out" | head -20
    echo "check-format: $(grep -c . <<<"$bad") of ${#files[@]} files need clang-format" \
        "(run make format): $(paste -sd' ' - <<<"$bad")"
    exit 1
fi
echo "check-format: OK (${#files[@]} files as clang-format leaves them)"
