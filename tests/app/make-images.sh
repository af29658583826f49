#!/usr/bin/env bash
# Make the demo images offline on one Docker engine:
#
#   tests/app/make-images.sh BINARY [DOCKER_CLI_ARGS...]
#
# BINARY is the static demo-app (`make tests/app/demo-app` in a build dir).
# DOCKER_CLI_ARGS are passed to /usr/bin/docker before the subcommand, e.g.
#   -H unix:///tmp/x/docker.sock
#   -H tcp://10.213.1.2:2376 --tlsverify --tlscacert ca.pem --tlscert c.pem --tlskey c.key
#
# Images (each a single layer: the binary as /app; CMD ["/app"]; port 8080;
# default stop signal SIGTERM; `docker import` refuses STOPSIGNAL):
#   wharf-demo:v1   DEMO_VERSION=v1
#   wharf-demo:v2   DEMO_VERSION=v2
#   wharf-demo:bad  DEMO_VERSION=bad, DEMO_FAIL_HEALTH=1 (never healthy)
#   wharf-demo:hc   DEMO_VERSION=v1 with a Docker HEALTHCHECK
#                   (/app -healthcheck every 1 s) for tests of health status
#
# Env DEMO_ROOTFS_TAR=PATH: reuse that rootfs tar if it exists, else write it
# there (lets a caller importing on many engines build it once).
# Env DOCKER (default /usr/bin/docker).
set -euo pipefail

if [ $# -lt 1 ]; then
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
BINARY=$1
shift
DOCKER=${DOCKER:-/usr/bin/docker}
[ -x "$BINARY" ] || { echo "make-images: $BINARY is not an executable" >&2; exit 1; }
# A dynamically linked binary has a program interpreter; the image has no libc.
if command -v readelf >/dev/null && [[ $(readelf -l "$BINARY" 2>/dev/null) == *INTERP* ]]; then
    echo "make-images: $BINARY is not statically linked" >&2
    exit 1
fi

tmp=$(mktemp -d /tmp/wharf-demo-img.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

build_tar() { # OUT
    local root=$tmp/rootfs
    mkdir -p "$root"/{etc,tmp,proc,sys,dev}
    install -m 0755 "$BINARY" "$root/app"
    : >"$root/etc/hostname"
    : >"$root/etc/hosts"
    : >"$root/etc/resolv.conf"
    printf 'root:x:0:0:root:/:/app\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    chmod 1777 "$root/tmp"
    # Fixed owner and mtime: the same binary gives the same layer digest.
    tar --numeric-owner --owner=0 --group=0 --mtime='2020-01-01 00:00:00' \
        --sort=name -C "$root" -cf "$1.part.$$" .
    mv -f "$1.part.$$" "$1"
}

if [ -n "${DEMO_ROOTFS_TAR:-}" ]; then
    tarball=$DEMO_ROOTFS_TAR
    [ -s "$tarball" ] || build_tar "$tarball"
else
    tarball=$tmp/rootfs.tar
    build_tar "$tarball"
fi

import() { # TAG VERSION [extra --change...]
    local tag=$1 version=$2
    shift 2
    "$DOCKER" "${DOCKER_ARGS[@]}" import \
        --change 'CMD ["/app"]' \
        --change 'EXPOSE 8080/tcp' \
        --change "ENV DEMO_VERSION=$version" \
        --change 'LABEL org.wharf.demo=true' \
        "$@" "$tarball" "wharf-demo:$tag" >/dev/null
}

DOCKER_ARGS=("$@")
import v1 v1
import v2 v2
import bad bad --change 'ENV DEMO_FAIL_HEALTH=1'
import hc v1 --change 'HEALTHCHECK --interval=1s --timeout=2s --start-period=1s --retries=2 CMD ["/app", "-healthcheck"]'
