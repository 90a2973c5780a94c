"""The nginx switch: put the file in place, test it, reload; rotate the access
log; and the proof that the reload's old workers stopped accepting."""

from .base import (NGINX_RELOAD_FAILED, NGINX_TEST_FAILED, NGINX_WRITE_FAILED, block, mark, q,
                   sudo, write_file)


def switch(settings, nginx_text):
    """Put the nginx file in place, test it, reload; put the old one back on failure.

    The old file is kept as DEPLOY_DIR/nginx.previous.conf. A lost
    connection (a killed fab, a cut network: SIGHUP, SIGPIPE, the next
    task's SIGTERM to a dead holder's session) never stops the step between
    the file and the reload, where nginx would serve one colour while its
    file names the other.
    """
    s = sudo(settings)
    f, backup = settings.nginx_file, f"{settings.deploy_dir}/nginx.previous.conf"
    tmp = f + ".tmp"
    restore = (f"if [ \"$had\" = 1 ]; then cat {q(backup)} | {s}tee {q(tmp)} >/dev/null "
               f"&& {s}mv -f {q(tmp)} {q(f)}; else {s}rm -f {q(f)}; fi")
    return f"""set -u
trap '' HUP TERM PIPE
[ -d {q(settings.deploy_dir + '/logs')} ] || mkdir -p {q(settings.deploy_dir + '/logs')}
had=0
if [ -f {q(f)} ]; then cat {q(f)} > {q(backup)} && had=1; fi
if ! out=$({write_file(f, nginx_text, prefix=s)} 2>&1); then
  echo "$M error could not write "{q(f)}
  {block('output', 'printf "%s" "$out"')}
  exit {NGINX_WRITE_FAILED}
fi
if ! out=$({s}{settings.nginx_test_cmd} 2>&1); then
  {restore}
  {block('output', 'printf "%s" "$out"')}
  exit {NGINX_TEST_FAILED}
fi
{rotate_access_log(settings)}
{block('nginx-workers', NGINX_PROCS)}
if ! out=$({s}{settings.nginx_reload_cmd} 2>&1); then
  {restore}
  {s}{settings.nginx_reload_cmd} >/dev/null 2>&1
  {block('output', 'printf "%s" "$out"')}
  exit {NGINX_RELOAD_FAILED}
fi
"""


# The access log is rotated at a switch once it is larger than this; one
# older file (access.log.1) is kept, so the logs take at most twice this.
ACCESS_LOG_MAX_BYTES = 64 * 1024 * 1024


def rotate_access_log(settings, max_bytes=ACCESS_LOG_MAX_BYTES):
    """access.log -> access.log.1 when it is over ACCESS_LOG_MAX_BYTES.

    Runs before the reload of a switch: the reload makes nginx open
    access.log afresh, while its old workers finish writing to the renamed
    file. So the log never grows without bound, and nothing is lost.
    """
    log = settings.access_log_path
    return (f"if [ \"$(wc -c 2>/dev/null < {q(log)} || echo 0)\" -gt {int(max_bytes)} ]; "
            f"then mv -f {q(log)} {q(log + '.1')} && {mark('rotated', 'access.log')}; fi")


# --- the hand-over: old workers stop accepting ---------------------------------------
#
# On a reload nginx's master starts new workers, sleeps 100 ms (ngx_msleep in
# ngx_process_cycle.c), then sends the old ones QUIT; until then both accept
# new connections. An old worker that got QUIT retitles itself "worker
# process is shutting down" and closes its listening sockets in the same
# step, then exits once its requests are done. So: the worker processes
# before the reload (read by the switch script), and after verify met a new
# worker, wait until every old worker of a master that has new workers is
# gone or shutting down. /proc/PID/stat and cmdline are readable by any user.

def nginx_procs(proc="/proc"):
    """Prints ``PID PPID STARTTIME`` of every nginx process (its comm is `nginx`;
    its start in clock ticks since boot)."""
    return (f"cat {proc}/[0-9]*/stat 2>/dev/null | "
            f"awk '$2==\"(nginx)\" {{print $1, $4, $22}}'")


NGINX_PROCS = nginx_procs()


def parse_workers(text):
    """The nginx processes a switch script saw before its reload -> the
    workers among them: ((pid, master pid), ...), children of another nginx
    process (a master's ppid is not an nginx process)."""
    procs = {}
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            procs[int(fields[0])] = int(fields[1])
    return tuple(sorted((pid, ppid) for pid, ppid in procs.items() if ppid in procs))


# Bound on the wait: the old workers get QUIT 100 ms after the reload; a
# master still busy after this long is a matter for verify's own bound.
HANDOVER_ROUNDS = 300  # x (10 ms + a look at /proc)

# A master's generations of workers start at least 100 ms apart (it sleeps
# that long between starting new workers and stopping the old): a listed
# worker that started within 50 ms of its master's newest unlisted one is of
# that new generation (another nginx master on the machine was mid-reload
# when the list was taken), not an old worker.
SAME_GENERATION_TICKS = 5  # clock ticks of 10 ms


def handover(workers, rounds=HANDOVER_ROUNDS, proc="/proc"):
    """Wait until the old workers (``parse_workers``) of every master that has
    new workers are gone or shutting down (those listed that are of the new
    generation: SAME_GENERATION_TICKS). Prints ``$M handover done N`` (N
    rounds of 10 ms) or ``$M handover timeout PIDS``; always exits 0.
    ``proc``: where /proc is (tests give a made-up one)."""
    old = " ".join(f"{pid}:{ppid}" for pid, ppid in workers)
    return f"""set -u
old=$(printf '%s\\n' {old} | tr : ' ')
i=0
while :; do
  left=$({{ printf '%s\\n--\\n' "$old"; {nginx_procs(proc)}; }} | awk '
    $1 == "--" {{ now = 1; next }}
    !now {{ master[$1] = $2; is_master[$2] = 1; next }}
    {{ alive[$1] = 1; start[$1] = $3
       if (!($1 in master) && ($2 in is_master) && (!($2 in newest) || $3 < newest[$2]))
         newest[$2] = $3 }}
    END {{ n = 0; for (m in newest) n++
           if (!n) {{ print "unmoved"; exit }}
           for (p in master) if ((master[p] in newest) && (p in alive) &&
                                 start[p] < newest[master[p]] - {SAME_GENERATION_TICKS})
             printf "%s ", p }}')
  busy=""
  if [ "$left" != unmoved ]; then
    for p in $left; do
      [ -r {proc}/$p/cmdline ] || continue
      grep -aq 'shutting down' {proc}/$p/cmdline 2>/dev/null || busy="$busy $p"
    done
    [ -z "$busy" ] && {{ {mark('handover', 'done $i')}; exit 0; }}
  fi
  i=$((i + 1))
  [ "$i" -ge {int(rounds)} ] && {{ {mark('handover', 'timeout $left')}; exit 0; }}
  sleep 0.01
done
"""
