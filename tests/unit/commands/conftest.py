"""The `box` fixture of the script tests: a host in a temporary directory."""

import pytest

from support.script_box import make_box


@pytest.fixture
def box(tmp_path):
    """box(script) runs the script as one step of a local `sh -s` in tmp_path."""
    return make_box(tmp_path)
