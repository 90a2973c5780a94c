"""tasks/ssh.py without a connection: where to connect, and how it is named."""

import pytest

from tasks.errors import Failure
from tasks.ssh import destination_label


def test_destination_label():
    assert destination_label("h") == "h"
    assert destination_label("h", "u", 22) == "u@h:22"
    assert destination_label("::1", "u", 2222) == "u@[::1]:2222"
