#!/usr/bin/env bash
# wharf quickstart: build wharfd, make sure a local Docker engine runs
# (start one if none), make the demo image offline, run three demo
# containers and wharfd in front of them on :8080, then exit leaving them
# running.
#   contrib/quickstart.sh          start (or restart) the demo
#   contrib/quickstart.sh --stop   stop everything it started
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
state=${WHARF_QUICKSTART_DIR:-/tmp/wharf-quickstart}
port=${WHARF_QUICKSTART_PORT:-8080}
build="$top/build/quickstart"
DOCKER=/usr/bin/docker
sock=/var/run/docker.sock

stop_containers() {
    [ -S "$sock" ] || return 0
    local ids
    ids=$($DOCKER -H "unix://$sock" ps -aq --filter label=wharf.quickstart 2>/dev/null || true)
    [ -z "$ids" ] || $DOCKER -H "unix://$sock" rm -f $ids >/dev/null
}

stop() {
    stop_containers
    [ -f "$state/pids" ] || return 0
    while read -r pid; do
        kill "$pid" 2>/dev/null || true
    done <"$state/pids"
    for _ in $(seq 50); do
        alive=0
        while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$state/pids"
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    rm -f "$state/pids"
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
: >"$state/pids"

# A running engine is used as it is; else one is started here and stopped
# again by --stop.
if ! curl -fsS --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; then
    echo "==> starting a local Docker engine"
    setsid dockerd -H "unix://$sock" --pidfile "$state/dockerd.pid" \
        >"$state/dockerd.log" 2>&1 </dev/null &
    echo $! >>"$state/pids"
    deadline=$((SECONDS + 30))
    until curl -fsS --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { tail -20 "$state/dockerd.log" >&2; exit 1; }
        sleep 0.2
    done
fi
echo "==> making the demo images offline (wharf-demo:v1, :v2, :bad)"
"$top/tests/app/make-images.sh" "$build/tests/app/demo-app" -H "unix://$sock" >/dev/null

echo "==> running three demo containers"
targets=()
for i in 1 2 3; do
    $DOCKER -H "unix://$sock" run -d --name "wharf-demo-$i" --label wharf.quickstart=1 \
        -e WHARF_TASK_ID="demo-$i" -p 0.0.0.0::8080 wharf-demo:v1 >/dev/null
    hostport=$($DOCKER -H "unix://$sock" port "wharf-demo-$i" 8080/tcp | grep -m1 '^0.0.0.0:')
    targets+=("\"127.0.0.1:${hostport##*:}\"")
done
target_list=$(IFS=,; echo "${targets[*]}")

cat >"$state/wharfd.conf" <<CONF
# Written by contrib/quickstart.sh
workers = 0;
log = { level = "info"; };
listeners = (
  { name = "http"; bind = "0.0.0.0:$port"; protocol = "http";
    default_action = { forward = ( { target_group = "web"; } ); }; }
);
target_groups = (
  { name = "web"; targets = ( $target_list ); }
);
CONF
"$build/wharfd" -t -c "$state/wharfd.conf"
echo "==> starting wharfd on :$port"
setsid "$build/wharfd" -c "$state/wharfd.conf" >"$state/wharfd.log" 2>&1 </dev/null &
echo $! >>"$state/pids"

deadline=$((SECONDS + 15))
until curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
        echo "wharfd did not answer on :$port; its log:" >&2
        cat "$state/wharfd.log" >&2
        exit 1
    fi
    sleep 0.2
done

echo "==> three requests on one keep-alive connection (round robin across the containers):"
url="http://127.0.0.1:$port/"
curl -fsS -w '\n' "$url" "$url" "$url"
cat <<MSG

wharf is running: wharfd on :$port in front of three demo containers
(docker ps --filter label=wharf.quickstart).
  curl http://127.0.0.1:$port/       # the next container answers (each worker thread
                                     # keeps its own round robin)
X
  contrib/quickstart.sh --stop       # stop wharfd, the containers and an engine it started
MSG
