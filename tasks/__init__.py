"""bluegreen: zero-downtime blue/green releases of a Dockerised app behind nginx."""

import atexit
import gc

from invoke import Collection

from .cli.exec_task import exec_
from .cli.host_tasks import HOST_TASKS
from .cli.tasks import TASKS

ns = Collection(*TASKS, *HOST_TASKS, exec_)

# Once a task is done, Python's last garbage collection walks every object
# paramiko, cryptography and Fabric made: 30-40 ms of each `fab` here, to
# free memory the process is handing back anyway. Freezing them first skips
# that walk; the exit code, atexit handlers and the flushing of stdout and
# stderr are as before. (atexit runs the last registered first: this runs
# before Fabric's and logging's own.)
atexit.register(gc.freeze)
