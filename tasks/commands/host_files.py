"""The files the tool keeps in DEPLOY_DIR: create them (setup), record state and history."""

from .base import NO_DEPLOY_DIR, STATE_WRITE_FAILED, mark, q, write_file
from .locking import unlock_lock


def record(settings, *, state_text=None, history_line=None, unlock=False):
    """Write state.json, append to history.jsonl.

    When state.json cannot be written the step stops there with
    STATE_WRITE_FAILED: no history line, so the caller can undo the switch
    and record the failure instead. ``unlock``: then drop the lock, in the
    same step, once both are written (a failed write keeps it).
    """
    d = settings.deploy_dir
    lines = ["set -u", f"cd {q(d)} || exit {NO_DEPLOY_DIR}"]
    if state_text is not None:
        path = d + "/state.json"
        lines.append(f"{write_file(path, state_text)} || "
                     f"{{ echo \"$M error could not write \"{q(path)}; exit {STATE_WRITE_FAILED}; }}")
    if history_line is not None:
        lines.append(f"printf '%s' {q(history_line)} >> {q(d + '/history.jsonl')}"
                     + (" || exit $?" if unlock else ""))
    if unlock:
        lines.append(unlock_lock(settings))
    return "\n".join(lines) + "\n"


def setup(settings, state_text):
    """Create DEPLOY_DIR and its files where missing; say what was created."""
    d = settings.deploy_dir
    return f"""set -u
umask 022
for dir in {q(d)} {q(d + '/blue')} {q(d + '/green')} {q(d + '/logs')}; do
  if [ ! -d "$dir" ]; then mkdir -p "$dir" && echo "$M created $dir" || {{ echo "$M error cannot create $dir"; exit {NO_DEPLOY_DIR}; }}; fi
done
if [ ! -f {q(d + '/state.json')} ]; then {write_file(d + '/state.json', state_text)} && {mark('created', 'state.json')}; fi
if [ ! -f {q(d + '/history.jsonl')} ]; then : > {q(d + '/history.jsonl')} && {mark('created', 'history.jsonl')}; fi
"""


def history(settings, lines):
    return f"tail -n {int(lines)} {q(settings.deploy_dir + '/history.jsonl')} 2>/dev/null; true"
