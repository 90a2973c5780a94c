"""One task's time on one host: the SSH connection and everything that rides on it.

``session.Session`` (the lock block, the record, the summary), ``ssh.Host``
(strict host keys, uploads, the health channel), the task's one remote
shell (``step_shell``), HTTP over a direct-tcpip channel
(``http_channel``), the preview tunnel, TCP options, the keep-alive
watchdog, host keys and the wording of connection errors.

May import: commands, model, configuration, errors, output.
"""
