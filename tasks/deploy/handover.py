"""The proof that a reload's old nginx workers stopped accepting.

verify_public (health.py) meets a new worker's answer; until the master
tells the old workers to quit (100 ms after the reload) they accept fresh
connections too, so a task that returned then would leave clients meeting
the old file. The switch script reads nginx's worker processes just before
its reload (commands/switching.py); ``settle`` waits on the host until
every old worker of a master that has new workers is gone or shutting down.
"""

from ..commands import switching

# The host bounds the wait itself (switching.HANDOVER_ROUNDS); this is the
# laptop's bound on the step.
SETTLE_BOUND = 30.0


def note_workers(session, result):
    """Keep the worker processes a switch script saw before its reload."""
    session.nginx_workers = switching.parse_workers(result.blocks.get("nginx-workers"))


def settle(session):
    """After verify met the new file: wait until the old workers stopped
    accepting. Returns a few words for verify's line."""
    workers, session.nginx_workers = session.nginx_workers, None
    if not workers:
        # No nginx worker processes visible before the reload (nginx not
        # in master/worker mode, or /proc hidden): nothing to wait for.
        return "no nginx workers seen to hand over"
    done = session.run(switching.handover(workers), timeout=SETTLE_BOUND).values.get(
        "handover", "")
    if done.startswith("done"):
        return "old workers stopped accepting"
    return f"old workers still running after {switching.HANDOVER_ROUNDS * 0.01:g}s: " \
           f"{done.partition(' ')[2].strip() or '?'}"
