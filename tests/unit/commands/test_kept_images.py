"""commands/kept_images.py: the prune script reports each removal and goes on
past a failure, run with a stubbed docker.
"""

import os

from support.local_step import run_step
from tasks.commands.kept_images import prune_script

A = "a" * 40  # a commit


def test_prune_script_reports_each_removal_and_survives_failures(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    # A stand-in docker: rmi of "busy" fails as the real one does for a used image.
    docker.write_text('#!/bin/sh\nif [ "$1" = rmi ] && [ "$2" = busy ]; then\n'
                      '  echo "Error: conflict: image is being used"; exit 1; fi\n'
                      'if [ "$1" = builder ]; then echo "Total reclaimed space: 5MB"; fi\n')
    docker.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    result = run_step(prune_script(["bluegreen-shop:" + A, "busy"], [], 7200), env=env)
    assert ("removed", "bluegreen-shop:" + A) in result.marks
    assert ("not_removed", "busy Error: conflict: image is being used") in result.marks
    assert result.blocks["cache"] == "Total reclaimed space: 5MB\n"
