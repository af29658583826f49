#!/usr/bin/env bash
# check-includes.sh [TOP]: the layering rules of DESIGN.md ("Modules and the
# direction of their dependencies") and STYLE.md (3), checked on the direct
# #include lines of src/**/*.[ch] and include/wharf/*.h. Tests may include
# anything. Prints one line per violation,
#   FILE:LINE: forbidden include X (RULE: why)
# and exits 1 when there is any; exits 0 and prints a one-line summary when
# there is none. No allow-list: a file that breaks a rule moves or changes.
set -uo pipefail
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top" || exit 2

# Our modules other than core (src/*/ as it is today), for core's rule.
others=$(for d in src/*/; do d=${d#src/}; d=${d%/}; [ "$d" = core ] || printf '%s|' "$d"; done)
others=${others%|}

# One rule a line: ID FILES EXCEPT FORBIDDEN ALLOWED WHY...
#   FILES      ERE on the path from the top: the files the rule applies to
#   EXCEPT     ERE on the path: files exempt from it ("-": none)
#   FORBIDDEN  ERE on the included name (between <> or ""): what they may not include
#   ALLOWED    ERE on the included name: exceptions to FORBIDDEN ("-": none)
#   WHY        the rule in words, printed with each violation
# @OTHERS@ is replaced by the modules under src/ other than core.
rules=$(sed "s/@OTHERS@/$others/g" <<'TABLE'
evhttp     ^(src|include)/ ^src/api/ ^(evhttp\.h|event2/(http|http_struct|http_compat|keyvalq_struct)\.h)$ - evhttp's lenient parser is for the admin API: only src/api/ includes it
libconfig  ^(src|include)/ ^src/config/ ^libconfig\.h$ - libconfig appears only in src/config/
libcurl    ^(src|include)/ ^(src/core/curl_event\.c|include/wharf/curl_event\.h|src/main\.c)$|^src/(runtime|hosts|cli)/ ^(curl/.*|wharf/curl_event\.h)$ - libcurl only in core's curl glue, its callers src/runtime/, src/hosts/, src/cli/, and main.c, which starts the glue
proxy      ^src/proxy/ - ^(wharf/(controller|runtime|api|store)(-t)?\.h|(\.\./)?(controller|runtime|api|store)/.*)$ - the proxy never includes the controller, the runtime, the admin API or the store
core       ^src/core/|^include/wharf/(log|lag|curl_event|addr|obj|query)\.h$ - ^(wharf/.*|\.\./.*|(@OTHERS@)/.*)$ ^wharf/(log|lag|curl_event|addr|obj|query)\.h$ core includes nothing of ours outside core (only wharf/log.h, lag.h, curl_event.h, addr.h, obj.h, query.h)
api-below  ^src/(targets|http|config)/|^include/wharf/(targets|http|config)(-t)?\.h$ - ^(wharf/api(-t)?\.h|(\.\./)?api/.*)$ - targets/, http/ and config/ never include the admin API
TABLE
)

# Names a header may not mention: ID FILES EXCEPT NAME(ERE) WHY...
names=$(cat <<'TABLE'
api-name   ^include/wharf/ ^include/wharf/api\.h$ struct[[:space:]]+wh_api([^[:alnum:]_]|$) only api.h names struct wh_api: the modules below the admin API do not know it
TABLE
)

files=$(find src include/wharf -name '*.[ch]' | LC_ALL=C sort)
violations=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

report() { # FILE LINE WHAT ID WHY
    printf '%s:%s: %s (%s: %s)\n' "$1" "$2" "$3" "$4" "$5" >>"$out"
    violations=$((violations + 1))
}

nfiles=0
for f in $files; do
    nfiles=$((nfiles + 1))
    # "LINE NAME" for every #include <NAME> or #include "NAME".
    incs=$(awk 'match($0, /^[ \t]*#[ \t]*include[ \t]*[<"][^>"]+[>"]/) {
        s = substr($0, RSTART, RLENGTH); sub(/^[^<"]*[<"]/, "", s); sub(/[>"]$/, "", s)
        print NR, s }' "$f")
    while read -r id match except forbid allow why; do
        [[ $f =~ $match ]] || continue
        [ "$except" != - ] && [[ $f =~ $except ]] && continue
        while read -r line inc; do
            [ -n "$inc" ] || continue
            [[ $inc =~ $forbid ]] || continue
            [ "$allow" != - ] && [[ $inc =~ $allow ]] && continue
            report "$f" "$line" "forbidden include $inc" "$id" "$why"
        done <<<"$incs"
    done <<<"$rules"
    while read -r id match except name why; do
        [[ $f =~ $match ]] || continue
        [ "$except" != - ] && [[ $f =~ $except ]] && continue
        while IFS=: read -r line text; do
            [ -n "$line" ] || continue
            report "$f" "$line" "forbidden name '$(grep -oE "$name" <<<"$text" | head -1 |
                sed -E 's/[^[:alnum:]_]$//')'" "$id" "$why"
        done < <(grep -nE "$name" "$f")
    done <<<"$names"
done

nrules=$(($(grep -c . <<<"$rules") + $(grep -c . <<<"$names")))
if [ "$violations" -gt 0 ]; then
    LC_ALL=C sort -t: -k1,1 -k2,2n "$out"
    echo "check-includes: $violations violations in $(cut -d: -f1 "$out" | sort -u | wc -l) files" \
        "($nfiles files, $nrules rules)"
    exit 1
fi
echo "check-includes: OK ($nfiles files, $nrules rules)"
