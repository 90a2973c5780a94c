"""One module per task family: the steps of a task on one host, in order.

release, stage and canary, promote, what a watch leads to, rollback and
switch, setup, kept releases, maintenance, check, status, preview, host
care (unlock, repair, logs, history). Each flow reads like the release
steps in SPEC.md: connect, ``with session.locked() as view:``, ``with
Attempt(...)``, then plain calls to the steps of ``deploy``.

May import: deploy, shipping, connection, commands, model, configuration,
errors, output; one flow may use another's (setup runs the first release).
"""

# The cli reaches every flow as flows.MODULE.FUNCTION (its task functions
# bear the flows' module names).
from . import (check, host_care, maintenance, plan, preview, promote, release,  # noqa: F401
               releases, remove, setup, status, switch)
