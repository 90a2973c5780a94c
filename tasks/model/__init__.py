"""Pure decisions and records: no SSH, no processes, no files of the host.

The release plan, state.json and history.jsonl, the pending (staged,
canary, reverted) colour, the host view, the lock owner, kept releases,
the access log's figures, and the nginx and compose files rendered from
templates/.

May import: configuration, errors, output.
"""
