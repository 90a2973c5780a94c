"""verify_public with apps sharing a port: an answer naming our colour from
another app's server does not count as ours."""

import pytest

from support.fake_probes import Clock, Reporter, response
from support.plain_settings import make_settings
from tasks.deploy.health import HealthFailure, verify_public
from tasks.model.nginx_file import render_nginx


class TwoApps:
    """Answers probes with (status, colour, app); the last answer repeats."""

    def __init__(self, answers):
        self.answers, self.probes = list(answers), []

    def http(self, port, path, **kwargs):
        self.probes.append((port, path))
        status, colour, app = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return response(status, {"x-deploy-colour": colour, "x-deploy-app": app}, path)


@pytest.fixture
def s():
    return make_settings(APP_NAME="blog", SERVER_NAME="blog.example.com", HEALTH_PATH="/")


def test_the_other_apps_server_with_our_colour_is_not_ours(s):
    clock = Clock()
    host = TwoApps([(200, "blue", "shop")] * 3 + [(200, "blue", "blog")])
    assert verify_public(host, s, "blue", Reporter(), clock=clock, sleep=clock.sleep) == (
        "http :8080 answers from blue (HTTP 200)")
    assert len(host.probes) == 6


def test_a_verify_that_only_ever_meets_the_other_app_names_it(s):
    clock = Clock()
    host = TwoApps([(200, "blue", "shop")])
    with pytest.raises(HealthFailure) as exc:
        verify_public(host, s, "blue", Reporter(), bound=1.0, clock=clock, sleep=clock.sleep)
    assert "(last: answers from blue of app shop (HTTP 200))" in exc.value.message


@pytest.mark.parametrize("ssl", [False, True])
def test_every_marked_answer_names_the_app(ssl):
    values = {"SSL_CERT_FILE": "/c.pem", "SSL_KEY_FILE": "/k.pem"} if ssl else {}
    text = render_nginx(make_settings(APP_NAME="blog", **values), "green")
    assert text.count("add_header X-Deploy-App blog always;") == \
        text.count("add_header X-Deploy-Colour green always;") == (2 if ssl else 1) + 1
    # (+ 1: the ASSET_PATHS bridge's answers are marked and named too)
