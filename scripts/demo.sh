#!/usr/bin/env bash
# The local demo, in one command: sets this machine up (scripts/setup-host.sh),
# starts a production host on loopback (its own sshd and nginx) in .demo/,
# and runs the real tasks against it: setup, release, status, a release
# under load, rollback, status. Run as root on Debian 12.
#
#   ./scripts/demo.sh          start it (again: an earlier demo is replaced)
#   ./scripts/demo.sh down     stop everything it started and remove .demo/
#
# DEMO_DIR, DEMO_APP_NAME, DEMO_PORTS and DEMO_RATE change where and how it
# runs (see scripts/demo.py). A Docker daemon that setup-host.sh had to start
# for the demo is stopped again by `down`; one that was running is left alone.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/run/bluegreen-dockerd.pid}
export DOCKERD_PIDFILE

die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

command=${1:-up}
case "$command" in
    up | down) ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0 ;;
    *)
        printf 'demo: unknown command %q: use `%s` or `%s down`\n' "$command" "$0" "$0" >&2
        exit 2 ;;
esac

[ "$(id -u)" -eq 0 ] || die "run as root: it installs packages and may start dockerd"

if [ "$command" = down ]; then
    command -v python3 >/dev/null || die "python3 is missing: nothing of the demo can be running"
    exec python3 "$REPO/scripts/demo.py" down
fi

started=$(date +%s)

# Was a Docker daemon answering before setup-host.sh? Only one it starts
# now is the demo's to stop (the approach of scripts/test.sh).
DEMO_DOCKER_BEFORE=no
if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then
    DEMO_DOCKER_BEFORE=yes
fi
DEMO_DOCKERD_PID_BEFORE=$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)
export DEMO_DOCKER_BEFORE DEMO_DOCKERD_PID_BEFORE

printf '==> Setting up this machine (scripts/setup-host.sh)\n'
"$REPO/scripts/setup-host.sh" || die "scripts/setup-host.sh failed (its output is above)"

rc=0
python3 "$REPO/scripts/demo.py" up || rc=$?
if [ "$rc" -eq 0 ]; then
    printf '\ndemo: done in %ss (setting up the machine included)\n' "$(($(date +%s) - started))"
fi
exit "$rc"
