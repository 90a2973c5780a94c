"""tasks/ssh.py without a connection: where to connect, and how it is named."""

import pytest

from tasks.errors import Failure
from tasks.ssh import Target, destination_label


@pytest.mark.parametrize("text, host, user, port", [
    ("app.example.com", "app.example.com", None, None),
    ("deploy@app.example.com", "app.example.com", "deploy", None),
    ("deploy@app.example.com:2222", "app.example.com", "deploy", 2222),
    ("app.example.com:22", "app.example.com", None, 22),
    ("ssh://deploy@app.example.com:2222", "app.example.com", "deploy", 2222),
    ("10.0.0.5", "10.0.0.5", None, None),
    ("::1", "::1", None, None),
    ("root@[::1]:2222", "::1", "root", 2222),
    ("[fe80::1]", "fe80::1", None, None),
    ("ci.user@host", "host", "ci.user", None),
])
def test_target_parse(text, host, user, port):
    t = Target.parse(text)
    assert (t.host, t.user, t.port) == (host, user, port)
    assert t.name == text
    assert t.identity_file is None and t.known_hosts is None


@pytest.mark.parametrize("text", ["", "@host", "user@", "host:", "host:0", "host:70000", "host:ssh",
                                  "[::1", "[::1]x", "-oProxyCommand=x", "a b", "host/path"])
def test_target_parse_rejects(text):
    with pytest.raises(Failure) as err:
        Target.parse(text)
    assert err.value.code == 2 and repr(text) in err.value.message


def test_target_keyword_construction_matches_the_interface():
    t = Target(name="prod", host="app.example.com", user="deploy", port=22, identity_file=None, known_hosts=None)
    assert str(t) == "prod" and t.label == "deploy@app.example.com:22"


def test_destination_label():
    assert destination_label("h") == "h"
    assert destination_label("h", "u", 22) == "u@h:22"
    assert destination_label("::1", "u", 2222) == "u@[::1]:2222"
