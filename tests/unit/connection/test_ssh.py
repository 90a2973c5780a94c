"""tasks/connection/ssh.py without a connection: where to connect, and how it is named."""

from support.known_hosts_files import OTHER_PUB, PUB
from tasks.connection.ssh import _known_hosts, destination_label


def test_destination_label():
    assert destination_label("h") == "h"
    assert destination_label("h", "u", 22) == "u@h:22"
    assert destination_label("::1", "u", 2222) == "u@[::1]:2222"


def test_a_known_hosts_file_is_parsed_once_per_content():
    # Twenty hosts of one run sharing ~/.ssh/known_hosts parse it once;
    # a file that changed (accept-new appended a line) is parsed again.
    text = f"[127.0.0.1]:2222 ssh-ed25519 {PUB}\n"
    first = _known_hosts(text, "/k")
    assert _known_hosts(text, "/k") is first and len(first) == 1
    more = _known_hosts(text + f"other ssh-ed25519 {OTHER_PUB}\n", "/k")
    assert len(more) == 2 and more[0].entry.hostnames == ["[127.0.0.1]:2222"]
