"""The lock's scripts: take it (mkdir, atomic), adopt it from a new shell, release it."""

from .base import block, mark, q


def take_lock(settings, owner_json):
    """mkdir the lock; take over one whose holder's shell on this host is gone.

    The owner record names the holder's shell (host_pid) and its start time
    (host_pid_start, from /proc): a shell that no longer runs, or a pid now
    given to another process, means the task that held the lock has ended
    (its SSH connection is gone). So does a shell whose parent is no longer
    the sshd session it was started by (host_ppid): when a connection is cut
    or fab is killed, sshd's session process ends at once, but its shell
    keeps running the step it was in (a build) with no one to read it, and
    a zombie nobody reaps keeps its /proc entry. Such an orphaned step is
    stopped (SIGTERM to the shell's process group) before the lock is taken
    over. A holder that is still connected is never overridden. Prints
    ``$M lock taken|taken-over|held``.
    """
    lock = q(settings.deploy_dir + "/.lock")
    owner = q(settings.deploy_dir + "/.lock/owner.json")
    stale = q(settings.deploy_dir + "/.lock.stale")
    return f"""if mkdir {lock} 2>/dev/null; then
  printf '%s\\n' {q(owner_json)} > {owner}; {mark('lock', 'taken')}
else
  holder=$(sed -n 's/.*"host_pid": *\\([0-9][0-9]*\\).*/\\1/p' {owner} 2>/dev/null)
  start=$(sed -n 's/.*"host_pid_start": *\\([0-9][0-9]*\\).*/\\1/p' {owner} 2>/dev/null)
  parent=$(sed -n 's/.*"host_ppid": *\\([0-9][0-9]*\\).*/\\1/p' {owner} 2>/dev/null)
  gone=no; orphan=no
  if [ -n "$holder" ] && [ -n "$start" ]; then
    set -- $(cut -d' ' -f3,4,5,22 /proc/"$holder"/stat 2>/dev/null)
    if [ "${{4:-}}" != "$start" ]; then gone=yes
    elif [ "$1" = Z ] || {{ [ -n "$parent" ] && [ "$2" != "$parent" ]; }}; then
      gone=yes; [ "$3" = "$holder" ] && [ "$1" != Z ] && orphan=yes
    fi
  fi
  if [ "$gone" = yes ] && rm -rf {stale} && mv {lock} {stale} 2>/dev/null && mkdir {lock} 2>/dev/null; then
    if [ "$orphan" = yes ]; then {stop_session('"$holder"')} && {mark('stopped_orphan', '$holder')}; fi
    {block('stale_owner', f'cat {stale}/owner.json 2>/dev/null')}
    rm -rf {stale}
    printf '%s\\n' {q(owner_json)} > {owner}; {mark('lock', 'taken-over')}
  else
    {mark('lock', 'held')}
  fi
fi"""


def stop_session(pid):
    """SIGTERM to every process of the session that the task's shell ``pid`` leads.

    By session, not process group: timeout(1) puts what it bounds (a build)
    in a group of its own, which a signal to the shell's group misses.
    """
    return f"{{ pkill -TERM -s {pid} 2>/dev/null || kill -TERM -{pid} 2>/dev/null; }}"


def adopt_lock(settings, old_pid, owner_json):
    """Name a new shell of the same task as the lock's holder, if the lock is still ours.

    A step stopped part-way (timeout, Ctrl-C) ends the task's shell; the
    task carries on (undo, record) in a new one, which must hold the lock
    or another task could take it over as stale.
    """
    owner = q(settings.deploy_dir + "/.lock/owner.json")
    return (f"if grep -q '\"host_pid\": {int(old_pid)}[,}}]' {owner} 2>/dev/null; then "
            f"printf '%s\\n' {q(owner_json)} > {owner}; fi")


def unlock_lock(settings):
    lock = settings.deploy_dir + "/.lock"
    return f"rm -f {q(lock + '/owner.json')}; rmdir {q(lock)} 2>/dev/null; true"
