#!/usr/bin/env bash
# Every test, on this machine, as root: sets the machine up
# (scripts/setup-host.sh), runs the unit tests, then the end-to-end tests
# against the loopback host. Fails if an e2e test failed, was skipped, or
# none ran. A Docker daemon this run had to start is stopped again at the
# end, so the machine's process list is as it was.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/run/bluegreen-dockerd.pid}
export DOCKERD_PIDFILE

say() { printf 'test.sh: %s\n' "$*"; }
now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

t_start=$(now)
work=$(mktemp -d)

docker_before=no
if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then
    docker_before=yes
fi
pid_before=$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)

is_dockerd() {  # pid: alive (not a zombie) and a dockerd
    [ -n "${1:-}" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = dockerd ] \
        && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

finish() {
    local rc=$?
    # Stop dockerd only if none answered before this run and setup-host.sh
    # recorded a new one: never a daemon somebody else started.
    local pid
    pid=$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)
    if [ "$docker_before" = no ] && [ "$pid" != "$pid_before" ] && is_dockerd "$pid"; then
        say "stopping the dockerd this run started (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do
            is_dockerd "$pid" || break
            sleep 0.5
        done
        if is_dockerd "$pid"; then
            say "dockerd (pid $pid) still runs after 30s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$DOCKERD_PIDFILE"
    fi
    rm -rf "$work"
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

./scripts/setup-host.sh

# The e2e tests start `fab` thousands of times, each a fresh Python; where
# PYTHONDONTWRITEBYTECODE is set (as in many CI shells) each would compile
# tasks/ anew (~0.1 s of CPU a run). Compiled once here, every run reads it.
.venv/bin/python -m compileall -q tasks >/dev/null

status=0

say "unit tests"
t_unit=$(now)
unit_rc=0
# Two workers: the unit tests are pure and independent, one per core.
.venv/bin/python -m pytest tests/unit -q -n 2 || unit_rc=$?
unit_secs=$(seconds "$t_unit" "$(now)")
if [ "$unit_rc" -eq 5 ]; then
    # Nothing collected: tests/unit may legitimately be empty.
    say "unit: no tests collected"
    unit_result="none collected"
elif [ "$unit_rc" -ne 0 ]; then
    unit_result="FAILED (pytest exit $unit_rc)"
    status=1
else
    unit_result=passed
fi

say "end-to-end tests (sshd, nginx, dockerd, Compose v2 and git on loopback)"
t_e2e=$(now)
e2e_rc=0
# Three workers, one test file each at a time (files share module-scoped
# projects): most of an e2e test is waiting on Docker, nginx and sleeps, so
# three fit on two cores (the slowest modules first: tests/e2e/conftest.py).
# The whole run: 22.8 minutes on this 2-core machine (2026-12-07), of 25.
.venv/bin/python -m pytest tests/e2e -m "e2e and not docker_restart" -rs \
    -n "${E2E_WORKERS:-3}" --dist loadfile --junitxml="$work/e2e.xml" || e2e_rc=$?
# Then, alone, the tests that restart a Docker daemon (their own, never the
# machine's): a Docker daemon restarted during a build, and a "reboot".
say "end-to-end tests that restart the Docker daemon, on their own"
.venv/bin/python -m pytest tests/e2e -m "e2e and docker_restart" -rs \
    --junitxml="$work/e2e-restart.xml" || e2e_rc=$?
e2e_secs=$(seconds "$t_e2e" "$(now)")

# Count from the JUnit report: a skip is a failure here, and so is an
# empty run (pytest exit 5), because CI must prove the real host works.
read -r e2e_tests e2e_skipped e2e_failed < <(.venv/bin/python - "$work/e2e.xml" \
        "$work/e2e-restart.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
cases = []
for path in sys.argv[1:]:
    try:
        cases += list(ET.parse(path).getroot().iter("testcase"))
    except (OSError, ET.ParseError):
        pass
skipped = sum(1 for c in cases if c.find("skipped") is not None)
failed = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
print(len(cases), skipped, failed)
EOF
)
e2e_result="$e2e_tests run, $e2e_failed failed, $e2e_skipped skipped"
if [ "$e2e_rc" -ne 0 ] || [ "$e2e_tests" -eq 0 ] || [ "$e2e_skipped" -ne 0 ]; then
    status=1
    [ "$e2e_tests" -eq 0 ] && e2e_result="$e2e_result: NO e2e test ran"
    [ "$e2e_skipped" -ne 0 ] && e2e_result="$e2e_result: skipped e2e tests count as failures"
    [ "$e2e_rc" -ne 0 ] && e2e_result="$e2e_result (pytest exit $e2e_rc)"
fi

total_secs=$(seconds "$t_start" "$(now)")
say "unit: $unit_result (${unit_secs}s)"
say "e2e:  $e2e_result (${e2e_secs}s)"
say "total ${total_secs}s, of which e2e ${e2e_secs}s ($(awk -v e="$e2e_secs" -v t="$total_secs" \
    'BEGIN { printf "%d", (t > 0 ? 100 * e / t : 0) }')%)"
if [ "$status" -eq 0 ]; then say "OK"; else say "FAILED"; fi
exit "$status"
