"""bluegreen: zero-downtime blue/green releases of a Dockerised app behind nginx."""

import atexit
import gc
import sys

from invoke import Collection

# Invoke turns off the writing of bytecode for everything a run imports (its
# --write-pyc flag, off by default: meant for a project's own tasks.py).
# This suite is a library of some 100 modules; from a checkout (pip install
# -e) nothing compiles them ahead, so every `fab` compiled them all again:
# 0.1-0.15 s of each run, a third of `fab exec --reuse true`. They are
# written like any installed package's, unless Python was told not to
# (-B, PYTHONDONTWRITEBYTECODE); what the run imports after is Invoke's
# choice again.
_invoke_choice, sys.dont_write_bytecode = sys.dont_write_bytecode, sys.flags.dont_write_bytecode
try:
    from .cli.exec_task import exec_
    from .cli.host_tasks import HOST_TASKS
    from .cli.tasks import TASKS
finally:
    sys.dont_write_bytecode = _invoke_choice

ns = Collection(*TASKS, *HOST_TASKS, exec_)

# Once a task is done, Python's last garbage collection walks every object
# paramiko, cryptography and Fabric made: 30-40 ms of each `fab` here, to
# free memory the process is handing back anyway. Freezing them first skips
# that walk; the exit code, atexit handlers and the flushing of stdout and
# stderr are as before. (atexit runs the last registered first: this runs
# before Fabric's and logging's own.)
atexit.register(gc.freeze)
