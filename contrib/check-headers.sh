#!/usr/bin/env bash
# check-headers.sh [TOP]: every public header include/wharf/*.h compiles on
# its own (STYLE.md 2): a translation unit holding only
#   #include "wharf/X.h"   (twice, so a missing include guard shows too)
# with -I include and the dependencies' flags, and nothing from src/.
# `make header-check` runs it with configure's CC and dependency flags;
# standalone it asks pkg-config for the same modules as configure.ac.
# Prints one line per header that fails (and the compiler's messages);
# exits 1 when any does.
set -uo pipefail
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top" || exit 2
cc=${CC:-cc}
deps=${WH_DEPS_CFLAGS-$(pkg-config --cflags libevent libevent_openssl libevent_pthreads openssl \
    libcurl libcjson libconfig 2>/dev/null)}

n=0
bad=0
for h in include/wharf/*.h; do
    [ -f "$h" ] || continue
    n=$((n + 1))
    b=${h#include/}
    # shellcheck disable=SC2086 # $deps is a list of flags
    if ! msg=$(printf '#include "%s"\n#include "%s"\n' "$b" "$b" |
        $cc -fsyntax-only -x c -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
            -Werror -I include $deps - 2>&1); then
        echo "$h: does not compile on its own:"
        printf '%s\n' "$msg" | head -20 | sed 's/^/    /'
        bad=$((bad + 1))
    fi
done
if [ "$n" -eq 0 ]; then
    echo "check-headers: no include/wharf/*.h found under $top"
    exit 1
fi
if [ "$bad" -gt 0 ]; then
    echo "check-headers: $bad of $n public headers do not compile on their own"
    exit 1
fi
echo "check-headers: OK ($n public headers compile on their own)"
