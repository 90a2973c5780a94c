"""The steps of a changing task: bring up, health gate, switch, verify, record, undo.

``steps.Attempt`` is what a task did so far, undone and recorded on any
failure; each step names its phase once. Beside the steps: the health gate
and the verify through nginx, the access-log watch, pruning kept releases,
and the repair of an idle colour a dead task left half-released.

May import: shipping, connection, commands, model, configuration, errors,
output. Never cli or flows.
"""
