"""scripts/ports.py: test ports come from below the ephemeral range, are
claimed per process (pid plus start time) and are free when handed out."""

import os
import socket
import subprocess
import sys

import ports  # scripts/ports.py: scripts/ is on pytest's pythonpath (pyproject.toml)


def test_the_range_ends_just_below_the_ephemeral_one(tmp_path):
    f = tmp_path / "range"
    f.write_text("32768\t60999\n")
    low, high = ports.ephemeral_range(f)
    assert (low, high) == (32768, 60999)
    first, last = ports.reserved_range((low, high), span=1000)
    assert (first, last) == (31768, 32767)
    assert ports.reserved_range((2000, 60999), span=5000) == (1024, 1999)


def test_ports_are_distinct_claimed_and_free(tmp_path):
    alloc = ports.Allocator(claims_dir=tmp_path)
    taken = alloc.take(5)
    assert len(set(taken)) == 5
    low, _ = ports.ephemeral_range()
    assert all(p < low for p in taken)
    me = f"{os.getpid()} {ports.process_start(os.getpid())}\n"
    assert all((tmp_path / str(p)).read_text() == me for p in taken)
    assert not set(alloc.take(5)) & set(taken)


def test_a_port_in_use_or_claimed_by_a_live_process_is_skipped(tmp_path):
    first, last = ports.reserved_range()
    alloc = ports.Allocator((first, first + 2), claims_dir=tmp_path)
    alloc.next = first
    busy = socket.socket()
    try:
        busy.bind(("127.0.0.1", first))
    except OSError:
        busy.close()
        return  # someone else holds it: the point is made either way
    try:
        # first: bound here; first+1: claimed by a live process (pid 1, its start time)
        (tmp_path / str(first + 1)).write_text(f"1 {ports.process_start(1)}\n")
        if ports.bindable(first + 2):
            assert alloc.take(1) == [first + 2]
    finally:
        busy.close()


def test_a_claim_of_a_gone_process_is_taken_over(tmp_path):
    first, _ = ports.reserved_range()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / str(first)).write_text(f"{gone.pid} 12345\n")
    alloc = ports.Allocator((first, first), claims_dir=tmp_path)
    if ports.bindable(first):
        assert alloc.take(1) == [first]
        assert (tmp_path / str(first)).read_text().startswith(f"{os.getpid()} ")
