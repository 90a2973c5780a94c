"""deploy/prune.py: after a release, KEEP_RELEASES images stay and the rest go,
in one prune script; a failure of housekeeping is a warning, never a failure."""

from types import SimpleNamespace

from support.plain_settings import make_settings
from tasks.commands.kept_images import prune_script
from tasks.connection.step_shell import StepResult
from tasks.deploy.prune import gather, prune_releases
from tasks.errors import Failure
from tasks.model.state import empty_state
from tasks.output import Reporter

COMMIT = {n: n * 40 for n in "abcd"}


def listing(*names):
    """list_script's result with one commit-tagged image per name, oldest first."""
    lines = [f"sha256:{n * 64}|2025-01-0{i + 1}T10:00:00Z|1000|bluegreen-shop:{COMMIT[n]} "
             for i, n in enumerate(names)]
    return StepResult(0, "", "", {}, {"images": "\n".join(lines), "containers": "",
                                      "history": ""})


class FakeSession:
    def __init__(self, answer=None, keep="2"):
        self.settings = make_settings(APP_NAME="shop", KEEP_RELEASES=keep)
        self.reporter = Reporter("prod")
        self.view = SimpleNamespace(state=empty_state("shop"))
        self.answer, self.scripts = answer, []

    def run(self, script, timeout=None):
        self.scripts.append((script, timeout))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_only_the_releases_beyond_keep_releases_are_removed(capsys):
    answer = StepResult(0, "", "", {}, {"cache": "Total reclaimed space: 5MB\n"},
                        marks=(("removed", f"bluegreen-shop:{COMMIT['b']}"),
                               ("not_removed", f"bluegreen-shop:{COMMIT['a']} in use")))
    session = FakeSession(answer)
    plan = prune_releases(session, None, listing("a", "b", "c", "d"))
    assert [r.commit for r in plan.keep] == [COMMIT["d"], COMMIT["c"]]
    assert plan.remove_tags == [f"bluegreen-shop:{COMMIT['b']}", f"bluegreen-shop:{COMMIT['a']}"]
    assert session.scripts == [(prune_script(plan.remove_tags, plan.remove_ids, plan.cache_age),
                                300)]
    out = capsys.readouterr().out
    assert ("2 kept (KEEP_RELEASES=2), 1 removed; build cache: Total reclaimed space: 5MB"
            in out)
    assert f"warning: could not remove bluegreen-shop:{COMMIT['a']} in use" in out


def test_nothing_beyond_keep_releases_runs_no_script(capsys):
    session = FakeSession(keep="5")
    plan = prune_releases(session, empty_state("shop"), listing("a", "b"))
    assert plan.remove_tags == [] and session.scripts == []
    assert "2 kept (KEEP_RELEASES=5)" in capsys.readouterr().out


def test_a_failed_prune_is_a_warning_and_the_release_stands(capsys):
    session = FakeSession(Failure("lost the connection"))
    assert prune_releases(session, empty_state("shop"), listing("a", "b", "c")) is None
    assert ("warning: pruning old releases failed: lost the connection; the release stands"
            in capsys.readouterr().out)


def test_gather_reads_the_host_when_no_listing_is_given():
    session = FakeSession(listing("a", "b"))
    images, releases, containers, history = gather(session)
    assert [r.commit for r in releases] == [COMMIT["b"], COMMIT["a"]]
    assert len(images) == 2 and history == [] and len(session.scripts) == 1
