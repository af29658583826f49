#!/usr/bin/env bash
# The test fleet: real Docker engines as "EC2 hosts" on one machine.
#
#   fleet.sh up N DIR [--app BINARY] [--no-images] [--azs K] [--owner PID]
#       N engines, each in its own network namespace wh<rid>h<i> with a veth
#       pair (root side 10.213.<k>.<4i-3>/30, engine 10.213.<k>.<4i-2>),
#       its own containerd, data/exec roots, bridge and cgroup parent,
#       listening on tcp://ADDR:2376 with mutual TLS and on a unix socket.
#       Imports the demo images, writes DIR/hosts.conf (a libconfig
#       `hosts = (...)` block for wharfd), DIR/fleet.json and DIR/tls/.
#   fleet.sh local DIR [--app BINARY] [--no-images] [--owner PID]
#       One engine in the root namespace on a unix socket only, with its own
#       roots and bridge (wh<rid>br, --iptables=false: published ports are
#       reached at 127.0.0.1:PORT through docker-proxy).
#   fleet.sh down DIR            tear down by pid and namespace, remove DIR
#   fleet.sh sweep [--all]       remove stale runs (owner or engines dead);
#                                --all: every run of ours, live or not
#   fleet.sh stop|start|restart DIR ID    one engine's dockerd (ID: h1...)
#   fleet.sh freeze|thaw DIR ID  SIGSTOP / SIGCONT that engine's dockerd
#   fleet.sh docker DIR ID ARGS...        /usr/bin/docker on that engine
#   fleet.sh status DIR
#
# The demo app binary: --app, else $DEMO_APP, else
# $WHARF_BUILD_DIR/tests/app/demo-app, else <repo>/build/plain/tests/app/demo-app.
# Engine state lives under $WHARF_FLEET_STATE (default /tmp/whf)/<rid>/
# (short paths: unix sockets); DIR holds what callers read.
# A run is stale when its owner (--owner, $WHARF_FLEET_OWNER; none by
# default) has exited or none of its engines runs; `up` and `local` sweep
# stale runs first.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STATE_BASE=${WHARF_FLEET_STATE:-/tmp/whf}
NET=${WHARF_FLEET_NET:-10.213}    # /16 the fleet's veths are taken from
DOCKER=/usr/bin/docker
DOCKER_PORT=2376
PING_TIMEOUT=${WHARF_FLEET_PING_TIMEOUT:-60}

log() { echo "fleet: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

# ----------------------------------------------------------- processes

# Start time of a process (clock ticks since boot), empty if gone.
proc_start() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    [ "$1" = Z ] || echo "${20}" # a zombie has exited
}

# pid alive and its command line mentions PATTERN (guards against reuse)
pid_is() { # PID PATTERN
    local c
    [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] || return 1
    c=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ $c == *"$2"* ]]
}

# TERM, wait up to GRACE seconds, then KILL; only if pid_is PID PATTERN.
stop_pid() { # PID PATTERN GRACE
    local pid=$1 pat=$2 grace=$3 i
    pid_is "$pid" "$pat" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true # a frozen engine cannot exit
    for ((i = 0; i < grace * 20; i++)); do
        pid_is "$pid" "$pat" || return 0
        # a zombie child of ours counts as gone
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# pids whose command line contains PATTERN (not this shell)
pids_matching() {
    local p
    for p in $(grep -lasF -- "$1" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
        [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] || echo "$p"
    done
}

# ------------------------------------------------------------- run state

new_run_id() {
    local rid i
    mkdir -p "$STATE_BASE"
    for i in $(seq 1 100); do
        rid=$(od -An -N2 -tx2 /dev/urandom | tr -d ' \n')
        [ ${#rid} = 4 ] || continue
        [[ $'\n'$(ip netns list 2>/dev/null) == *$'\n'"wh${rid}h"* ]] && continue
        if mkdir "$STATE_BASE/$rid" 2>/dev/null; then
            echo "$rid"
            return
        fi
    done
    die "cannot allocate a run id under $STATE_BASE"
}

# Take the lock for allocating subnets; released when the shell exits or
# unlock is called.
lock() {
    mkdir -p "$STATE_BASE"
    exec {LOCKFD}>"$STATE_BASE/.lock"
    flock "$LOCKFD"
}
unlock() {
    exec {LOCKFD}>&-
    unset LOCKFD
}

# Start CMD detached (own session, no inherited lock fds), pid to PIDFILE.
spawn() { # LOGFILE PIDFILE CMD...
    local logf=$1 pidf=$2
    shift 2
    (
        if [ -n "${RUNLOCK:-}" ]; then exec {RUNLOCK}>&-; fi
        if [ -n "${LOCKFD:-}" ]; then exec {LOCKFD}>&-; fi
        setsid "$@" </dev/null >>"$logf" 2>&1 &
        echo $! >"$pidf"
    )
}

# Smallest k in 1..254 whose 10.213.k.0/24 no run and no root route uses.
alloc_subnet() {
    local used k f
    used=$(
        for f in "$STATE_BASE"/*/run.env; do
            [ -f "$f" ] && sed -n 's/^SUBNET=//p' "$f"
        done
        ip -4 -o addr show | awk '{print $4}' | grep "^${NET//./\\.}\." | cut -d. -f3
        ip -4 route show | awk '{print $1}' | grep "^${NET//./\\.}\." | cut -d. -f3
    )
    for k in $(seq 1 254); do
        grep -qx "$k" <<<"$used" || {
            echo "$k"
            return
        }
    done
    die "no free ${NET}.k.0/24 subnet"
}

load_run() { # DIR -> sets RID RUN KIND N SUBNET DIR OWNER_PID OWNER_START
    local dir=$1
    [ -f "$dir/run" ] || die "$dir is not a fleet directory (no $dir/run)"
    RID=$(sed -n 's/^RID=//p' "$dir/run")
    RUN=$STATE_BASE/$RID
    [ -f "$RUN/run.env" ] || die "run $RID has no state in $RUN"
    load_env "$RUN/run.env"
}

load_env() {
    local line
    while IFS= read -r line; do
        case $line in
        RID=* | KIND=* | N=* | SUBNET=* | DIR=* | OWNER_PID=* | OWNER_START=* | AZS=*)
            printf -v "${line%%=*}" '%s' "${line#*=}"
            ;;
        esac
    done <"$1"
}

host_idx() { # ID -> i
    case $1 in
    h[0-9]*) echo "${1#h}" ;;
    local) echo 0 ;;
    *) die "unknown host id $1" ;;
    esac
}

ns_name() { echo "wh${RID}h$1"; }
host_addr() { echo "${NET}.${SUBNET}.$((4 * $1 - 2))"; }
host_gw() { echo "${NET}.${SUBNET}.$((4 * $1 - 3))"; }
host_dir() { if [ "$1" = 0 ]; then echo "$RUN/local"; else echo "$RUN/h$1"; fi; }
host_id() { if [ "$1" = 0 ]; then echo local; else echo "h$1"; fi; }

# ------------------------------------------------------------------ TLS

make_tls() { # TLSDIR N
    local t=$1 n=$2 i
    mkdir -p "$t"
    cat >"$t/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = wharf-fleet
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[client_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
EOF
    key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ca() { # NAME CN
        key "$t/$1.key"
        openssl req -x509 -new -key "$t/$1.key" -config "$t/openssl.cnf" -extensions ca_ext \
            -subj "/CN=$2" -days 30 -sha256 -out "$t/$1.pem" 2>/dev/null
    }
    sign() { # NAME CN CA EXTFILE EXTSECTION
        key "$t/$1.key"
        openssl req -new -key "$t/$1.key" -config "$t/openssl.cnf" -subj "/CN=$2" \
            -out "$t/$1.csr" 2>/dev/null
        openssl x509 -req -in "$t/$1.csr" -CA "$t/$3.pem" -CAkey "$t/$3.key" \
            -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" -days 30 -sha256 \
            -extfile "$4" -extensions "$5" -out "$t/$1.pem" 2>/dev/null
        rm -f "$t/$1.csr"
    }
    ca ca "wharf-fleet-ca-$RID"
    ca rogue-ca "wharf-fleet-rogue-ca-$RID"
    sign client "wharf-client" ca "$t/openssl.cnf" client_ext &
    sign rogue-client "wharf-client" rogue-ca "$t/openssl.cnf" client_ext &
    for ((i = 1; i <= n; i++)); do
        cat >"$t/h$i.cnf" <<EOF
[server_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:$(host_addr "$i"),DNS:h$i
EOF
        sign "h$i-server" "h$i" ca "$t/h$i.cnf" server_ext &
    done
    wait_all "certificates"
    [ -s "$t/client.pem" ] || die "certificate generation failed"
    chmod 0644 "$t"/*.key # tests may run the client as another user
}

# wait for all background jobs; fail if any failed
wait_all() {
    local rc=0
    while true; do
        wait -n 2>/dev/null || {
            local s=$?
            [ $s = 127 ] && break # no more children
            rc=$s
        }
    done
    [ $rc = 0 ] || die "$1: a step failed (status $rc)"
}

# --------------------------------------------------------------- network

setup_netns() { # i
    local i=$1 ns
    ns=$(ns_name "$i")
    ip netns add "$ns"
    ip link add "$ns" type veth peer name eth0 netns "$ns"
    ip addr add "$(host_gw "$i")/30" dev "$ns"
    ip link set "$ns" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(host_addr "$i")/30" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$(host_gw "$i")"
}

setup_local_bridge() {
    local br="wh${RID}br"
    ip link add "$br" type bridge
    ip addr add "${NET}.${SUBNET}.1/24" dev "$br"
    ip link set "$br" up
}

# ---------------------------------------------------------------- engines

# Start containerd and dockerd of host i (0 = local) in the background.
start_engine() { # i
    local i=$1 s ns='' addr pre=()
    s=$(host_dir "$i")
    mkdir -p "$s"/{data,exec,ctd/root,ctd/state,ctd/opt}
    if [ "$i" != 0 ]; then
        ns=$(ns_name "$i")
        pre=(nsenter "--net=/var/run/netns/$ns")
    fi
    if ! pid_is "$(cat "$s/containerd.pid" 2>/dev/null)" "$s/"; then
        cat >"$s/containerd.toml" <<EOF
version = 2
root = "$s/ctd/root"
state = "$s/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$s/containerd.sock"
[ttrpc]
  address = "$s/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$s/ctd/opt"
EOF
        rm -f "$s/containerd.sock" "$s/containerd.sock.ttrpc"
        spawn "$s/containerd.log" "$s/containerd.pid" \
            "${pre[@]}" containerd --config "$s/containerd.toml"
    fi
    echo '{}' >"$s/daemon.json"
    local args=(
        --config-file "$s/daemon.json"
        --data-root "$s/data" --exec-root "$s/exec" --pidfile "$s/dockerd.pid"
        --containerd "$s/containerd.sock"
        --cgroup-parent "wh${RID}h$i"
        --storage-driver overlay2
        --shutdown-timeout 5
        --insecure-registry "${NET}.0.0/16"
        --ip6tables=false
        -H "unix://$s/docker.sock"
    )
    if [ "$i" = 0 ]; then
        # root namespace: no iptables (shared with everything else), no
        # forwarding change; docker-proxy publishes the ports
        args+=(--bridge "wh${RID}br" --iptables=false --ip-forward=false
            --ip-masq=false --userland-proxy=true)
    else
        local t=$DIR/tls
        addr=$(host_addr "$i")
        args+=(--bip "10.214.$i.1/24"
            -H "tcp://$addr:$DOCKER_PORT" --tlsverify
            --tlscacert "$t/ca.pem" --tlscert "$t/h$i-server.pem" --tlskey "$t/h$i-server.key")
    fi
    rm -f "$s/docker.sock"
    spawn "$s/dockerd.log" "$s/dockerd.pid.0" "${pre[@]}" dockerd "${args[@]}"
}

engine_pid() { # i -> dockerd pid (if running)
    local s p
    s=$(host_dir "$1")
    for p in "$(cat "$s/dockerd.pid" 2>/dev/null)" "$(cat "$s/dockerd.pid.0" 2>/dev/null)"; do
        if pid_is "$p" "$s/"; then
            echo "$p"
            return
        fi
    done
}

wait_engine() { # i
    local i=$1 s deadline
    s=$(host_dir "$i")
    deadline=$(($(date +%s) + PING_TIMEOUT))
    until curl -sf -o /dev/null --max-time 2 --unix-socket "$s/docker.sock" http://docker/_ping; do
        if [ -z "$(engine_pid "$i")" ]; then
            log "$(host_id "$i"): dockerd exited; last lines of $s/dockerd.log:"
            tail -n 15 "$s/dockerd.log" >&2 || true
            tail -n 5 "$s/containerd.log" >&2 || true
            return 1
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "$(host_id "$i"): no /_ping after ${PING_TIMEOUT}s; see $s/dockerd.log"
            return 1
        fi
        sleep 0.05
    done
    if [ "$i" != 0 ]; then
        local t=$DIR/tls
        curl -sf -o /dev/null --max-time 5 --cacert "$t/ca.pem" --cert "$t/client.pem" \
            --key "$t/client.key" "https://$(host_addr "$i"):$DOCKER_PORT/_ping" || {
            log "h$i: /_ping over mutual TLS failed"
            return 1
        }
    fi
}

stop_engine() { # i [GRACE]
    local i=$1 grace=${2:-10} s pid
    s=$(host_dir "$i")
    pid=$(engine_pid "$i")
    [ -n "$pid" ] && stop_pid "$pid" "$s/" "$grace"
    return 0
}

import_images() { # i
    local i=$1 s
    s=$(host_dir "$i")
    DEMO_ROOTFS_TAR=$RUN/rootfs.tar "$REPO/tests/app/make-images.sh" "$APP" \
        -H "unix://$s/docker.sock" || {
        log "$(host_id "$i"): importing the demo images failed"
        return 1
    }
}

find_app() {
    local c
    for c in "${APP:-}" "${DEMO_APP:-}" \
        "${WHARF_BUILD_DIR:+$WHARF_BUILD_DIR/tests/app/demo-app}" \
        "$REPO/build/plain/tests/app/demo-app"; do
        if [ -n "$c" ] && [ -x "$c" ]; then
            APP=$(readlink -f "$c")
            return
        fi
    done
    die "demo app binary not found: pass --app, or set DEMO_APP or WHARF_BUILD_DIR (make tests/app/demo-app)"
}

# --------------------------------------------------------------- outputs

write_outputs() {
    local i id addr s t=$DIR/tls az
    {
        echo "# written by tests/fleet/fleet.sh (run $RID); @include this file or paste it"
        echo "hosts = ("
        for ((i = 1; i <= N; i++)); do
            addr=$(host_addr "$i")
            az="az-$(((i - 1) % AZS + 1))"
            printf '  { id = "h%d"; docker = "tcp://%s:%d";\n' "$i" "$addr" "$DOCKER_PORT"
            printf '    tls = { ca = "%s"; cert = "%s"; key = "%s"; };\n' \
                "$t/ca.pem" "$t/client.pem" "$t/client.key"
            printf '    address = "%s";\n' "$addr"
            printf '    attributes = { az = "%s"; instance_id = "i-wh%sh%d"; instance_type = "fleet.small"; }; }%s\n' \
                "$az" "$RID" "$i" "$([ "$i" -lt "$N" ] && echo ,)"
        done
        if [ "$KIND" = local ]; then
            s=$(host_dir 0)
            printf '  { id = "local"; docker = "unix://%s";\n' "$s/docker.sock"
            printf '    address = "127.0.0.1";\n'
            printf '    attributes = { az = "local-a"; }; }\n'
        fi
        echo ");"
    } >"$DIR/hosts.conf.tmp"
    mv "$DIR/hosts.conf.tmp" "$DIR/hosts.conf"

    {
        printf '{\n  "run_id": "%s",\n  "kind": "%s",\n  "dir": "%s",\n  "state_dir": "%s",\n' \
            "$RID" "$KIND" "$DIR" "$RUN"
        printf '  "hosts_conf": "%s",\n  "app": "%s",\n' "$DIR/hosts.conf" "${APP:-}"
        printf '  "images": [%s],\n' "$IMAGES_JSON"
        if [ "$KIND" = fleet ]; then
            printf '  "tls": {"ca": "%s", "cert": "%s", "key": "%s",\n' "$t/ca.pem" "$t/client.pem" "$t/client.key"
            printf '          "rogue_ca": "%s", "rogue_cert": "%s", "rogue_key": "%s"},\n' \
                "$t/rogue-ca.pem" "$t/rogue-client.pem" "$t/rogue-client.key"
        else
            printf '  "tls": null,\n'
        fi
        printf '  "hosts": [\n'
        local first=1 lo=1 hi=$N pid
        if [ "$KIND" = local ]; then lo=0 hi=0; fi
        for ((i = lo; i <= hi; i++)); do
            s=$(host_dir "$i")
            id=$(host_id "$i")
            [ $first = 1 ] || printf ',\n'
            first=0
            if [ "$i" = 0 ]; then
                printf '    {"id": "local", "addr": "127.0.0.1", "gateway": null, "docker": "unix://%s",\n' "$s/docker.sock"
                printf '     "unix": "%s", "netns": null, "netns_path": null, "az": "local-a",\n' "$s/docker.sock"
                printf '     "bridge": "wh%sbr", "bridge_subnet": "%s.%s.0/24",\n' "$RID" "$NET" "$SUBNET"
            else
                addr=$(host_addr "$i")
                printf '    {"id": "%s", "addr": "%s", "gateway": "%s", "docker": "tcp://%s:%d",\n' \
                    "$id" "$addr" "$(host_gw "$i")" "$addr" "$DOCKER_PORT"
                printf '     "unix": "%s", "netns": "%s", "netns_path": "/var/run/netns/%s", "az": "az-%d",\n' \
                    "$s/docker.sock" "$(ns_name "$i")" "$(ns_name "$i")" $(((i - 1) % AZS + 1))
                printf '     "bridge": "docker0", "bridge_subnet": "10.214.%d.0/24",\n' "$i"
                printf '     "tls": {"ca": "%s", "cert": "%s", "key": "%s", "server_cert": "%s", "server_key": "%s"},\n' \
                    "$t/ca.pem" "$t/client.pem" "$t/client.key" "$t/$id-server.pem" "$t/$id-server.key"
            fi
            printf '     "pid": %s, "containerd_pid": %s, "cgroup_parent": "wh%sh%d",\n' \
                "$(pid=$(engine_pid "$i"); echo "${pid:-null}")" "$(cat "$s/containerd.pid")" "$RID" "$i"
            printf '     "data_root": "%s", "exec_root": "%s", "log": "%s"}' \
                "$s/data" "$s/exec" "$s/dockerd.log"
        done
        printf '\n  ]\n}\n'
    } >"$DIR/fleet.json.tmp"
    mv "$DIR/fleet.json.tmp" "$DIR/fleet.json"
}

# --------------------------------------------------------------- teardown

# Tear down run RID (RUN, and DIR if known) whatever state it is in.
teardown() { # RID
    local rid=$1 run=$STATE_BASE/$1 s ns p d m i
    local KIND='' DIR='' N=0 SUBNET='' RID=$1 AZS='' OWNER_PID='' OWNER_START=''
    [ -f "$run/run.env" ] && load_env "$run/run.env"
    RID=$rid

    # 1. container processes, by cgroup parent (v1 hierarchies or v2)
    for d in /sys/fs/cgroup/*/"wh${rid}"h* /sys/fs/cgroup/"wh${rid}"h*; do
        [ -d "$d" ] || continue
        find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r p; do
            kill -KILL "$p" 2>/dev/null || true
        done
    done
    # 2. engines: dockerd then containerd (TERM, brief grace, KILL)
    for s in "$run"/h* "$run"/local; do
        [ -d "$s" ] || continue
        p=$(cat "$s/dockerd.pid" 2>/dev/null || cat "$s/dockerd.pid.0" 2>/dev/null || true)
        pid_is "$p" "$s/" || p=$(cat "$s/dockerd.pid.0" 2>/dev/null || true)
        pid_is "$p" "$s/" && { stop_pid "$p" "$s/" 3 & }
    done
    wait
    for s in "$run"/h* "$run"/local; do
        [ -d "$s" ] || continue
        p=$(cat "$s/containerd.pid" 2>/dev/null || true)
        pid_is "$p" "$s/" && { stop_pid "$p" "$s/" 2 & }
    done
    wait
    # 3. anything left in our namespaces, or naming our state dir (shims,
    #    docker-proxy of the local engine)
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^wh${rid}h[0-9]+$" || true); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    done
    for p in $(pids_matching "$run/"); do
        shim_socket "$p"
        kill -KILL "$p" 2>/dev/null || true
    done
    for s in "${SHIM_SOCKETS[@]}"; do rm -f "$s"; done
    # 4. mounts under the state dir, deepest first
    for i in 1 2 3; do
        m=$(awk -v r="$run/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | awk '{ print length, $0 }' |
            sort -rn | cut -d' ' -f2-)
        [ -n "$m" ] || break
        while read -r d; do
            umount "$d" 2>/dev/null || umount -l "$d" 2>/dev/null || true
        done <<<"$m"
    done
    # 5. cgroups, deepest first (after their processes died)
    for d in /sys/fs/cgroup/*/"wh${rid}"h* /sys/fs/cgroup/"wh${rid}"h*; do
        [ -d "$d" ] || continue
        for i in 1 2 3 4 5 6 7 8 9 10; do
            find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [ -d "$d" ] || break
            sleep 0.1
        done
    done
    # 6. network: namespaces (their veth ends go with them), root-side links
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^wh${rid}h[0-9]+$" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    for d in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 |
        grep -E "^wh${rid}(h[0-9]+|br)$" || true); do
        ip link del "$d" 2>/dev/null || true
    done
    # 7. files
    if [ -n "${DIR:-}" ] && [ -f "$DIR/run" ] && grep -qx "RID=$rid" "$DIR/run"; then
        rm -rf "$DIR"
    fi
    rm -rf "$run" 2>/dev/null || {
        sleep 0.5
        rm -rf "$run" || log "could not remove $run"
    }
}

# containerd-shim-runc-v2 listens on /run/containerd/s/sha256(address/ns/id);
# remember that socket of shim PID (a killed shim leaves it behind).
SHIM_SOCKETS=()
shim_socket() { # PID
    local -a a
    local k addr='' ns='' id=''
    mapfile -d '' a 2>/dev/null <"/proc/$1/cmdline" || return 0
    [[ ${a[0]:-} == *containerd-shim* ]] || return 0
    for ((k = 1; k < ${#a[@]} - 1; k++)); do
        case ${a[k]} in
        -address) addr=${a[k + 1]} ;;
        -namespace) ns=${a[k + 1]} ;;
        -id) id=${a[k + 1]} ;;
        esac
    done
    [ -n "$addr" ] && [ -n "$ns" ] && [ -n "$id" ] || return 0
    SHIM_SOCKETS+=("/run/containerd/s/$(printf '%s' "$addr/$ns/$id" | sha256sum | cut -d' ' -f1)")
}

# Is run RID stale (no owner alive, or no engine alive)?
run_is_stale() { # RID
    local run=$STATE_BASE/$1 s p alive=0
    local OWNER_PID='' OWNER_START='' KIND='' DIR='' N='' SUBNET='' RID='' AZS=''
    # a run being brought up is not stale (its `up` holds run.lock)...
    if [ -f "$run/run.lock" ] && ! flock -n "$run/run.lock" true 2>/dev/null; then return 1; fi
    if [ ! -f "$run/run.env" ]; then
        # ...nor one whose `up` has only just made its directory
        [ -n "$(find "$run" -maxdepth 0 -mmin +1 2>/dev/null)" ]
        return
    fi
    load_env "$run/run.env"
    if [ -n "$OWNER_PID" ]; then
        [ "$(proc_start "$OWNER_PID")" = "$OWNER_START" ] || return 0
    fi
    for s in "$run"/h* "$run"/local; do
        [ -d "$s" ] || continue
        for p in "$(cat "$s/dockerd.pid" 2>/dev/null)" "$(cat "$s/dockerd.pid.0" 2>/dev/null)" \
            "$(cat "$s/containerd.pid" 2>/dev/null)"; do
            pid_is "$p" "$s/" && alive=1
        done
    done
    [ $alive = 0 ]
}

cmd_sweep() {
    need_root
    local all=0 r rid n=0 d
    [ "${1:-}" = --all ] && all=1
    mkdir -p "$STATE_BASE"
    for r in "$STATE_BASE"/*/; do
        [ -d "$r" ] || continue
        rid=$(basename "$r")
        [[ $rid =~ ^[0-9a-f]{4}$ ]] || continue
        if [ $all = 1 ] || run_is_stale "$rid"; then
            log "sweeping run $rid"
            teardown "$rid"
            n=$((n + 1))
        fi
    done
    # resources of runs whose state directory is gone
    for r in $( (
        ip netns list 2>/dev/null | awk '{print $1}'
        ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1
        for d in /sys/fs/cgroup/*/wh* /sys/fs/cgroup/wh*; do [ -d "$d" ] && basename "$d"; done
    ) | sed -nE 's/^wh([0-9a-f]{4})(h[0-9]+|br)$/\1/p' | sort -u); do
        [ -d "$STATE_BASE/$r" ] && continue
        log "sweeping leftovers of run $r"
        teardown "$r"
        n=$((n + 1))
    done
    [ "${QUIET_SWEEP:-0}" = 1 ] || log "swept $n run(s)"
}

# ------------------------------------------------------------------ up

parse_opts() {
    APP='' NO_IMAGES=0 AZS=3 OWNER=${WHARF_FLEET_OWNER:-}
    while [ $# -gt 0 ]; do
        case $1 in
        --app) APP=$2; shift 2 ;;
        --no-images) NO_IMAGES=1; shift ;;
        --azs) AZS=$2; shift 2 ;;
        --owner) OWNER=$2; shift 2 ;;
        *) die "unknown option $1" ;;
        esac
    done
}

begin_run() { # KIND N DIR
    KIND=$1 N=$2
    mkdir -p "$3"
    DIR=$(cd "$3" && pwd)
    [ -z "$(ls -A "$DIR")" ] || die "$DIR is not empty"
    if [ "$NO_IMAGES" = 0 ]; then find_app; fi
    QUIET_SWEEP=1 cmd_sweep
    RID=$(new_run_id)
    RUN=$STATE_BASE/$RID
    exec {RUNLOCK}>"$RUN/run.lock"
    flock "$RUNLOCK"
    OWNER_START=
    if [ -n "$OWNER" ]; then
        OWNER_START=$(proc_start "$OWNER")
        [ -n "$OWNER_START" ] || die "owner pid $OWNER is not running"
    fi
    printf 'RID=%s\n' "$RID" >"$DIR/run"
    printf 'STATE=%s\n' "$RUN" >>"$DIR/run"
    trap 'rc=$?; if [ $rc != 0 ]; then
        kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
        log "failed: tearing down run $RID"; teardown "$RID"; fi' EXIT
    trap 'exit 130' INT TERM HUP
    lock
    SUBNET=$(alloc_subnet)
    cat >"$RUN/run.env" <<EOF
RID=$RID
KIND=$KIND
N=$N
AZS=$AZS
SUBNET=$SUBNET
DIR=$DIR
OWNER_PID=$OWNER
OWNER_START=$OWNER_START
EOF
}

images_json() {
    if [ "$NO_IMAGES" = 1 ]; then IMAGES_JSON=; else
        IMAGES_JSON='"wharf-demo:v1", "wharf-demo:v2", "wharf-demo:bad", "wharf-demo:hc"'
    fi
}

cmd_up() {
    need_root
    [ $# -ge 2 ] || die "usage: fleet.sh up N DIR [--app BINARY] [--no-images] [--azs K] [--owner PID]"
    local n=$1 dir=$2 i t0 t1 t2
    shift 2
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 63 ] || die "N must be 1..63"
    parse_opts "$@"
    t0=$(now)
    begin_run fleet "$n" "$dir"
    for ((i = 1; i <= N; i++)); do setup_netns "$i"; done
    unlock
    make_tls "$DIR/tls" "$N"
    for ((i = 1; i <= N; i++)); do start_engine "$i"; done
    for ((i = 1; i <= N; i++)); do wait_engine "$i" & done
    wait_all "engine start"
    t1=$(now)
    if [ "$NO_IMAGES" = 0 ]; then
        for ((i = 1; i <= N; i++)); do import_images "$i" & done
        wait_all "image import"
    fi
    t2=$(now)
    images_json
    write_outputs
    flock -u "$RUNLOCK"
    log "run $RID: $N host(s) up in $(elapsed "$t0")s (engines ready after" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')s, images" \
        "$(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.2f", b-a}')s); $DIR/hosts.conf, $DIR/fleet.json"
    trap - EXIT
}

cmd_local() {
    need_root
    [ $# -ge 1 ] || die "usage: fleet.sh local DIR [--app BINARY] [--no-images] [--owner PID]"
    local dir=$1 t0
    shift
    parse_opts "$@"
    t0=$(now)
    begin_run local 0 "$dir"
    setup_local_bridge
    unlock
    start_engine 0
    wait_engine 0
    if [ "$NO_IMAGES" = 0 ]; then import_images 0; fi
    images_json
    write_outputs
    flock -u "$RUNLOCK"
    log "run $RID: local engine up in $(elapsed "$t0")s: unix://$(host_dir 0)/docker.sock"
    trap - EXIT
}

cmd_down() {
    need_root
    [ $# -ge 1 ] || die "usage: fleet.sh down DIR"
    local dir=$1 rid
    if [ ! -f "$dir/run" ]; then
        [ -d "$dir" ] || { log "$dir does not exist: nothing to do"; return 0; }
        die "$dir is not a fleet directory (no $dir/run)"
    fi
    rid=$(sed -n 's/^RID=//p' "$dir/run")
    [[ $rid =~ ^[0-9a-f]{4}$ ]] || die "bad run id in $dir/run"
    local t0
    t0=$(now)
    teardown "$rid"
    # DIR is removed by teardown when run.env knew it; else do it here
    if [ -f "$dir/run" ] && grep -qx "RID=$rid" "$dir/run"; then rm -rf "$dir"; fi
    log "run $rid down in $(elapsed "$t0")s"
}

cmd_engine() { # stop|start|restart|freeze|thaw DIR ID
    need_root
    local what=$1 dir=$2 id=$3 i s pid
    load_run "$dir"
    i=$(host_idx "$id")
    s=$(host_dir "$i")
    [ -d "$s" ] || die "no host $id in run $RID"
    case $what in
    stop) stop_engine "$i" 15 ;;
    start | restart)
        [ "$what" = restart ] && stop_engine "$i" 15
        [ -z "$(engine_pid "$i")" ] || die "$id is running"
        start_engine "$i"
        wait_engine "$i"
        write_outputs_quiet
        ;;
    freeze | thaw)
        pid=$(engine_pid "$i")
        [ -n "$pid" ] || die "$id is not running"
        kill "-$([ "$what" = freeze ] && echo STOP || echo CONT)" "$pid"
        ;;
    esac
}

# rewrite fleet.json (new dockerd pid) keeping the image list
write_outputs_quiet() {
    IMAGES_JSON=$(sed -n 's/^  "images": \[\(.*\)\],$/\1/p' "$DIR/fleet.json")
    APP=$(sed -n 's/^  "app": "\(.*\)",$/\1/p' "$DIR/fleet.json")
    AZS=${AZS:-3}
    write_outputs
}

cmd_docker() {
    local dir=$1 id=$2
    shift 2
    load_run "$dir"
    exec "$DOCKER" -H "unix://$(host_dir "$(host_idx "$id")")/docker.sock" "$@"
}

cmd_status() {
    local dir=$1 i id lo=1 hi
    load_run "$dir"
    hi=$N
    if [ "$KIND" = local ]; then lo=0 hi=0; fi
    echo "run $RID ($KIND), state $RUN"
    for ((i = lo; i <= hi; i++)); do
        id=$(host_id "$i")
        if curl -sf -o /dev/null --max-time 2 --unix-socket "$(host_dir "$i")/docker.sock" http://d/_ping; then
            echo "$id: up (dockerd pid $(engine_pid "$i"))"
        else
            echo "$id: down"
        fi
    done
}

usage() {
    sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
up) cmd_up "$@" ;;
local) cmd_local "$@" ;;
down) cmd_down "$@" ;;
sweep) cmd_sweep "$@" ;;
stop | start | restart | freeze | thaw)
    [ $# = 2 ] || die "usage: fleet.sh $cmd DIR ID"
    cmd_engine "$cmd" "$@"
    ;;
docker)
    [ $# -ge 2 ] || die "usage: fleet.sh docker DIR ID ARGS..."
    cmd_docker "$@"
    ;;
status)
    [ $# = 1 ] || die "usage: fleet.sh status DIR"
    cmd_status "$@"
    ;;
-h | --help | help) usage ;;
*) die "unknown command $cmd (up, local, down, sweep, stop, start, restart, freeze, thaw, docker, status)" ;;
esac
