"""`fab status` over ten hosts at once, fifty times in a row: every run
answers for every host (issue 26).

The hosts' threads once shared Fabric's config, which fabric.Connection()
writes into and Invoke then rebuilds from empty: a run failed at random with
"No attribute or config key found for 'gateway'". Ten hosts.yml names point
at the one loopback host here (ten SSH connections at once, as ten machines
would get); tests/unit/cli/test_on_hosts.py shows the race itself.
"""

import re

import pytest
import yaml

from released import fab, output

pytestmark = pytest.mark.e2e

HOSTS = [f"web{n}" for n in range(10)]
RUNS = 50


def test_status_over_ten_hosts_fifty_times(project):
    fab(project, "setup")
    entry = project.host.hosts_entry("x")["x"]
    project.hosts_file.write_text(yaml.safe_dump(
        {"hosts": {name: dict(entry) for name in HOSTS}, "default_hosts": HOSTS},
        sort_keys=False))
    everyone = f"status: done: {', '.join(HOSTS)}; failed: -; not started: -"

    failures = []
    for run in range(RUNS):
        r = project.fab("status", timeout=120)
        text = output(r)
        if r.returncode != 0 or everyone not in text or "Traceback" in text:
            failures.append(f"run {run + 1}: exit {r.returncode}\n{text}")
    assert not failures, f"{len(failures)} of {RUNS} runs failed; the first:\n{failures[0]}"

    # Every host answered with the same live colour: one table, ten rows.
    rows = [line for line in r.stdout.splitlines() if re.match(r"web\d\s", line)]
    assert {row.split()[0] for row in rows} == set(HOSTS), r.stdout
