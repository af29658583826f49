#!/usr/bin/env bash
# wharf quickstart: build wharfd, make sure a local Docker engine runs
# (start one if none), make the demo image offline, and run wharfd on :8080
# with the demo as a service of three tasks that its controller places on
# the local engine and registers in the target group; then exit leaving
# them running.
#   contrib/quickstart.sh          start (or restart) the demo
#   contrib/quickstart.sh --stop   stop everything it started
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
state=${WHARF_QUICKSTART_DIR:-/tmp/wharf-quickstart}
port=${WHARF_QUICKSTART_PORT:-8080}
admin_port=${WHARF_QUICKSTART_ADMIN_PORT:-9901}
cluster=quickstart                  # label wharf.cluster of the service's containers
build="$top/build/quickstart"
DOCKER=/usr/bin/docker
sock=/var/run/docker.sock

# The service's containers (wharfd leaves its tasks running when it exits,
# by design), and those of the quickstart's first version.
stop_containers() {
    curl -fsS --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1 || return 0
    local ids
    ids=$({ $DOCKER -H "unix://$sock" ps -aq --filter "label=wharf.cluster=$cluster" \
                --filter label=wharf.service=demo
            $DOCKER -H "unix://$sock" ps -aq --filter label=wharf.quickstart; } 2>/dev/null || true)
    [ -z "$ids" ] || $DOCKER -H "unix://$sock" rm -f $ids >/dev/null
}

# Wait up to $2 seconds for the processes listed in file $1 to exit.
wait_pids() {
    local deadline=$((SECONDS + $2)) alive pid
    while :; do
        alive=0
        while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$1"
        [ $alive -eq 0 ] && return 0
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

# wharfd first (else it replaces the tasks being removed), then the
# containers, then the engine if the quickstart started it.
stop() {
    if [ -f "$state/pids" ]; then # the first version's file: wharfd and an engine
        while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$state/pids"
        wait_pids "$state/pids" 30 || true
        rm -f "$state/pids"
    fi
    if [ -f "$state/wharfd.pid" ]; then
        kill "$(cat "$state/wharfd.pid")" 2>/dev/null || true
        wait_pids "$state/wharfd.pid" 40 || echo "warning: wharfd did not exit" >&2
        rm -f "$state/wharfd.pid"
    fi
    stop_containers
    if [ -f "$state/engine.pid" ]; then
        kill "$(cat "$state/engine.pid")" 2>/dev/null || true
        wait_pids "$state/engine.pid" 30 || echo "warning: the quickstart's dockerd did not exit" >&2
        rm -f "$state/engine.pid"
    fi
}

if [ "${1:-}" = "--stop" ]; then
    stop
    echo "wharf quickstart stopped"
    exit 0
fi

install_packages() {
    "$top/contrib/install-packages.sh" \
        build-essential autoconf automake libtool pkg-config libevent-dev libssl-dev \
        libcurl4-openssl-dev libcjson-dev libconfig-dev curl docker.io
}

echo "==> installing build dependencies"
install_packages
echo "==> building wharfd"
(cd "$top" && autoreconf -fi >/dev/null 2>&1)
mkdir -p "$build"
(cd "$build" && "$top/configure" -q CFLAGS="-O2 -g" && make -s -j"$(nproc)" wharfd tests/app/demo-app) \
    >"$build.log" 2>&1 || { cat "$build.log"; exit 1; }

stop
mkdir -p "$state"

# A running engine is used as it is; else one is started here and stopped
# again by --stop.
if ! curl -fsS --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; then
    echo "==> starting a local Docker engine"
    setsid dockerd -H "unix://$sock" --pidfile "$state/dockerd.pid" \
        >"$state/dockerd.log" 2>&1 </dev/null &
    echo $! >"$state/engine.pid"
    deadline=$((SECONDS + 30))
    until curl -fsS --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { tail -20 "$state/dockerd.log" >&2; exit 1; }
        sleep 0.2
    done
fi
echo "==> making the demo images offline (wharf-demo:v1, :v2, :bad)"
"$top/tests/app/make-images.sh" "$build/tests/app/demo-app" -H "unix://$sock" >/dev/null

# The admin API's bearer token (first line of the file).
if [ ! -s "$state/admin.token" ]; then
    (umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/admin.token")
fi

cat >"$state/wharfd.conf" <<CONF
# Written by contrib/quickstart.sh: the demo as a service of 3 tasks on the
# local Docker engine; wharfd places them, registers each as
# 127.0.0.1:PUBLISHED-PORT in target group "demo" and replaces any that dies.
workers = 0;
log = { level = "info"; };
listeners = (
  { name = "http"; bind = "0.0.0.0:$port"; protocol = "http";
    default_action = { forward = ( { target_group = "demo"; } ); }; }
);
target_groups = (
  { name = "demo"; deregistration_delay = 5;
    health_check = { path = "/health"; interval = 2; timeout = 1;
                     healthy_threshold = 2; unhealthy_threshold = 2; };
    targets = ( ); }                 # no static target: the service registers its tasks
);
cluster = "$cluster";
hosts = (
  { id = "local"; docker = "unix://$sock";
    address = "127.0.0.1";             # where the tasks' published ports are reached
    attributes = { az = "local-a"; }; }
);
services = (
  { name = "demo"; target_group = "demo"; desired_count = 3;
    task = { image = "wharf-demo:v1"; container_port = 8080; pull_policy = "never";
             memory = 64; stop_timeout = 5; };
    health_check_grace_period = 5; }
);
admin = { bind = "127.0.0.1:$admin_port"; token_file = "$state/admin.token"; };
CONF
"$build/wharfd" -t -c "$state/wharfd.conf"
echo "==> starting wharfd on :$port (admin API on 127.0.0.1:$admin_port)"
setsid "$build/wharfd" -c "$state/wharfd.conf" >"$state/wharfd.log" 2>&1 </dev/null &
echo $! >"$state/wharfd.pid"

auth="Authorization: Bearer $(cat "$state/admin.token")"
healthy() {
    curl -fsS -H "$auth" "http://127.0.0.1:$admin_port/v1/target-groups" 2>/dev/null |
        grep -o '"state": *"healthy"' | wc -l
}
echo "==> waiting for the controller to start 3 tasks and their health checks to pass"
deadline=$((SECONDS + 60))
until [ "$(healthy)" -ge 3 ]; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$(cat "$state/wharfd.pid")" 2>/dev/null; then
        echo "the service did not get 3 healthy tasks within 60 s; wharfd's log:" >&2
        cat "$state/wharfd.log" >&2
        exit 1
    fi
    sleep 0.2
done
grep -E 'controller: .*(has started|registered|steady)' "$state/wharfd.log" | sed 's/^/    /' || true

echo "==> three requests on one keep-alive connection (round robin across the tasks):"
url="http://127.0.0.1:$port/"
curl -fsS -w '\n' "$url" "$url" "$url"
cat <<MSG

wharf is running: wharfd on :$port in front of service "demo", three tasks
on the local engine (docker ps --filter label=wharf.service=demo).
  curl http://127.0.0.1:$port/       # the next task answers (each worker thread
                                     # keeps its own round robin)
  curl -H "Authorization: Bearer \$(cat $state/admin.token)" \\
       http://127.0.0.1:$admin_port/v1/target-groups        # the tasks' targets and health
  curl -H "Authorization: Bearer \$(cat $state/admin.token)" \\
       http://127.0.0.1:$admin_port/v1/services/demo        # the service: counts, events
  docker rm -f <a task's container>  # wharfd replaces it within a second
  contrib/quickstart.sh --stop       # stop wharfd, the tasks and an engine it started
Config: $state/wharfd.conf; wharfd's log: $state/wharfd.log
MSG
