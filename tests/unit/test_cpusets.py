"""The pure half of scripts/cpusets.py (CPU lists, /proc lines) and of
bench/build_load.py (which CPU time was whose, the goal's verdict): data in,
figures out. Nothing here needs root or cgroups."""

import pytest

import build_load as bl  # bench/ and scripts/ are on pytest's pythonpath (pyproject.toml)
import cpusets as cs


@pytest.mark.parametrize("text, cpus", [
    ("0", {0}), ("0-1", {0, 1}), ("0-2,5,7-8\n", {0, 1, 2, 5, 7, 8}), ("", set()),
])
def test_cpu_lists_read_and_write_the_kernels_format(text, cpus):
    assert cs.parse_cpu_list(text) == frozenset(cpus)
    assert cs.format_cpu_list(cpus) == text.strip()


def test_proc_lines_say_where_a_task_may_run_ran_and_in_which_cpuset():
    status = "Name:\tsh\nCpus_allowed:\t1\nCpus_allowed_list:\t0\nMems_allowed_list:\t0\n"
    assert cs.allowed_from_status(status) == {0}
    assert cs.allowed_from_status("Name:\tsh\n") is None
    # comm may hold spaces and ")"; field 39 (processor) is the 37th after it
    stat = "42 (a (b) c) R 1 " + " ".join(str(n) for n in range(5, 39)) + " 1 0 0\n"
    assert cs.last_cpu_from_stat(stat) == 1
    v1 = "4:memory:/x\n3:cpuset:/bluegreen-bench-7-host/procs\n0::/\n"
    assert cs.cpuset_from_cgroup(v1) == "/bluegreen-bench-7-host/procs"
    assert cs.cpuset_from_cgroup("0::/bluegreen-bench-7-fab/abc\n") == "/bluegreen-bench-7-fab/abc"


def test_below_finds_every_descendant_and_nothing_else():
    parents = {1: 0, 10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 21: 20}
    assert sorted(cs.below([10], parents)) == [10, 11, 12, 13]
    assert cs.below([], parents) == []


def test_busy_ticks_leave_out_idle_and_iowait():
    stat = ("cpu  10 0 10 100 5 0 0 0 0 0\n"
            "cpu0 7 1 3 50 4 1 1 0 0 0\ncpu1 3 0 7 50 1 0 0 0 0 0\nintr 1 2\n")
    assert cs.busy_from_stat(stat) == {0: (13, 67), 1: (10, 61)}


def snap(ticks, used):
    return {"ticks": ticks, "tick": 0.01, "used": used}


def test_cpu_use_splits_each_machines_busy_time_between_our_cpusets_and_the_rest():
    cpus = {"host": frozenset({0}), "fab": frozenset({1}), "load": frozenset({0})}
    before = snap({0: (0, 0), 1: (0, 0)}, {"host": 1.0, "fab": 2.0, "load": 0.0})
    after = snap({0: (900, 1000), 1: (300, 1000)}, {"host": 5.0, "fab": 3.0, "load": 1.5})
    use = bl.cpu_use(cpus, before, after)
    assert use["host"] == {"cpus": "0", "busy": 9.0, "of": 10.0,
                           "ours": {"host": 4.0, "load": 1.5}, "others": 3.5}
    assert use["fab"] == {"cpus": "1", "busy": 3.0, "of": 10.0, "ours": {"fab": 1.0},
                          "others": 2.0}


def test_cpu_use_without_accounting_counts_everything_as_others():
    cpus = {"host": frozenset({0}), "fab": frozenset({1})}
    before = snap({0: (0, 0), 1: (0, 0)}, {"host": None, "fab": None})
    after = snap({0: (500, 1000), 1: (100, 1000)}, {"host": None, "fab": None})
    assert bl.cpu_use(cpus, before, after)["host"]["others"] == 5.0


def test_only_the_loop_itself_is_a_busy_loop():
    marker = bl.lh.BUSY_BUILD_MARKER
    loop = ["/bin/busybox", "sh", "-c", "while :; do :; done", marker]
    assert bl.is_busy_loop(loop)
    assert not bl.is_busy_loop(["/bin/busybox", "timeout", "20", *loop])
    assert not bl.is_busy_loop(["/bin/busybox", "sh", "-c", f"n=$(nproc); ... {marker} & wait"])


def column(p99, failed=0):
    return {"release": {"n": 100, "p50": 1.0, "p99": p99}, "failed": failed}


@pytest.mark.parametrize("none, host, local, failed, verdict", [
    (10.0, 40.0, 14.0, 0, (1.4, True)),
    (10.0, 40.0, 16.0, 0, (1.6, False)),
    (10.0, 40.0, 12.0, 1, (1.2, False)),  # a failed request misses the goal whatever p99 says
    (None, 40.0, 12.0, 0, (None, False)),
])
def test_the_goal_is_locals_p99_within_1_5x_of_no_release_and_nothing_failed(
        none, host, local, failed, verdict):
    columns = {"none": column(none), "host": column(host, failed), "local": column(local)}
    assert bl.judge(columns) == verdict


def test_latency_figures_are_nearest_rank_percentiles_in_ms():
    assert bl.latency_figures([i / 1000 for i in range(1, 101)]) == \
        {"n": 100, "p50": 50.0, "p99": 99.0}
    assert bl.latency_figures([]) == {"n": 0, "p50": None, "p99": None}
