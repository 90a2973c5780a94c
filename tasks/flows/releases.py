"""fab releases (a host's kept releases) and rollback --to COMMIT (one of them, started again)."""

from ..commands.building import restore
from ..configuration.settings import other
from ..deploy import health
from ..deploy.prune import gather, prune_releases
from ..deploy.signatures import verify_kept
from ..deploy.steps import Attempt, go_live, step_bound
from ..deploy.workers import hand_over
from ..errors import FAILED, Failure
from ..model.kept_releases import human_size, not_releases, resolve
from ..model.lock_owner import describe_who
from ..model.pending import refuse_during_canary
from ..model.plan import require_setup
from ..model.processes import processes_of, procfile_of_commit, with_processes, worker_types
from ..model.state import with_release, with_signer
from ..output import emit, emit_json, table


def releases(session, json_mode):
    """fab releases: the kept releases, newest first."""
    s, name = session.settings, session.name
    session.connect()
    view = session.inspect()
    require_setup(view, name)
    _, found, _, _ = gather(session)
    if json_mode:
        for release in found:
            emit_json(release.to_json(name, s.app_name))
        return None
    emit(f"{name}  kept releases of {s.app_name} (most recently released first; "
         f"KEEP_RELEASES={s.keep_releases}; failed and reverted builds are not kept)")
    if not found:
        emit("  none yet")
        return None
    rows = [[r.commit[:12], r.ref and f"ref {r.ref}" or r.branch or "-",
             r.built_at or "-", human_size(r.size),
             ", ".join(r.colours) + (" (live)" if r.live else "") if r.colours else "-",
             "yes" if r.ever_live else "never", r.signed_by or "-"]
            for r in found]
    emit(table(rows, ["commit", "branch", "built at", "size", "runs in", "was live",
                      "signed by"]))
    return None


def rollback_to(session, prefix, *, wait_lock=0.0):
    """Start a kept release's image in the idle colour, health gate, switch,
    verify, record: a release without git or a build."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    with session.locked(wait=wait_lock, ports=False) as view:
        require_setup(view, name)
        # The idle colour it starts the release in serves a canary's clients.
        refuse_during_canary(view, name)
        images, kept, _, history = gather(session)
        release = resolve(prefix, kept, name,
                          not_kept=not_releases(images, s.app_name, view.state, history))
        live_commit = ((view.runs(view.live) or view.record(view.live).get("commit"))
                       if view.live else None)
        if release.commit == live_commit:
            raise Failure(f"{release.commit[:12]} is already live on {name} ({view.live}); "
                          "nothing changed", "`fab releases` lists the other kept ones",
                          code=FAILED)
        target = other(view.live) if view.live else "blue"
        commit = release.commit
        signer = verify_kept(session, commit)  # ALLOWED_SIGNERS: before anything changes
        with Attempt(session, live=view.live, fields={
            "from_colour": view.live, "to_colour": target, "branch": release.branch,
            "commit": commit, "ref": release.ref, "kept": True,
            "signer": signer or None}) as attempt:
            attempt.rebuilt, attempt.before = target, view.containers[target]
            with attempt.step("start") as ph:
                result = session.run(restore(s, target, commit),
                                     timeout=step_bound(s))
                if result.code != 0:
                    why = result.values.get("error") or "see the output above"
                    raise Failure(f"could not start the kept release {commit[:12]} in "
                                  f"{target}: {why}; nothing live changed",
                                  f"`fab -H {name} logs --colour {target}` shows why",
                                  code=FAILED)
                ph.detail = f"{target} runs kept image of {commit[:12]} (no build)"

            with attempt.step("health") as ph:
                ph.detail = health.gate(session.host, s, target, rep)

            branch = release.branch or view.record(target).get("branch") or s.branch_of(target)
            state = with_processes(
                with_release(view.state, target, branch=branch, commit=commit,
                             image=release.image, who=describe_who(session.who),
                             live=True, ref=release.ref),
                target, procfile_of_commit(view.state, commit), commit, workers=target)
            state = with_signer(state, target, signer)
            attempt.fields["workers"] = worker_types(processes_of(state, target), s) or None
            go_live(session, attempt, target, state)
            hand_over(session, state, target, view.live, before=view.state)
        prune_releases(session, state)
    summary = session.summary("ok", live=target, previous=view.live, commit=commit,
                              branch=branch, image=release.image)
    keep = f"; {view.live} keeps running" if view.live else ""
    rep.line(f"rolled back to {commit[:12]} ({branch}) in {target} in "
             f"{summary['seconds']:.1f}s{keep}")
    return summary
