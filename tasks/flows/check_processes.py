"""What `fab check` says of the app's processes: the Procfile parses, SCALE
names its types, and a scheduler-like type is in STOP_FIRST."""

from ..commands.base import block, q
from ..commands.one_off import live_colour
from ..errors import Failure
from ..model.processes import check_scale_types, parse_procfile, unscheduled, worker_types


def procfile_script(settings):
    """The Procfile of the live colour's checkout on the host (BUILD_ON=host)."""
    if not settings.procfile:
        return "true"
    d = settings.deploy_dir
    return block("procfile", f"c={live_colour(settings)}; [ -n \"$c\" ] && "
                             f"cat {q(d)}/\"$c\"/{q(settings.procfile)} 2>/dev/null")


def procfile_rows(text, settings, where):
    """check rows for the Procfile ``text`` read from ``where`` (None: not found)."""
    if not settings.procfile:
        return [("Procfile", "ok", "PROCFILE=none: web only")]
    if text is None or not text.strip():
        return [("Procfile", "ok", f"no {settings.procfile} in {where}: web only")]
    try:
        processes = parse_procfile(text, origin=f"{settings.procfile} in {where}")
        check_scale_types(processes, settings, origin=settings.procfile)
    except Failure as exc:
        return [("Procfile", "FAIL", exc.message)]
    workers = worker_types(processes, settings)
    rows = [("Procfile", "ok", f"{', '.join(processes)} in {where}; workers: "
                               f"{', '.join(workers) or 'none'}")]
    for kind in unscheduled(processes, settings):
        rows.append(("STOP_FIRST", "warn", f"{kind} looks like a scheduler but is not in "
                     f"STOP_FIRST ({' '.join(settings.stop_first) or 'empty'}): during a "
                     "hand-over two would run at once and fire jobs twice"))
    return rows
