"""model/compose_file.py: the compose file and the Clojure Dockerfile, as text and
through the real `docker compose config -q` (no daemon, no SSH needed).
"""

import json
import subprocess
import yaml

import pytest

from support.checkout import clean_environ, require_binary
from tasks.model.compose_file import render_clojure_dockerfile, render_compose


# --- compose: text ----------------------------------------------------------------


def compose(s):
    return yaml.safe_load(render_compose(s))


def test_bridge_compose_publishes_on_bind_address(settings):
    s = settings(APP_NAME="shop", APP_PORT="3000")
    text = render_compose(s)
    assert text.splitlines()[0] == "# bluegreen app=shop"
    data = yaml.safe_load(text)
    assert data["name"] == "shop" and set(data["services"]) == {"blue", "green"}
    for colour, port in (("blue", 8081), ("green", 8082)):
        svc = data["services"][colour]
        assert svc["ports"] == [f"127.0.0.1:{port}:3000"]
        assert "network_mode" not in svc
        assert svc["environment"] == {"PORT": "3000", "BLUEGREEN_COLOUR": colour,
                                      "BLUEGREEN_PROCESS": "web"}
        assert svc["build"] == {"context": f"./{colour}"}
        assert svc["image"] == f"bluegreen-shop:{colour}"
        assert svc["init"] is True and svc["restart"] == "unless-stopped"
        assert svc["stop_grace_period"] == "10s"
        assert svc["labels"] == {"bluegreen.app": "shop", "bluegreen.colour": colour,
                                 "bluegreen.process": "web"}
        assert "env_file" not in svc and "command" not in svc


def test_bridge_compose_with_ipv6_bind_is_bracketed(settings):
    data = compose(settings(BIND_ADDRESS="::1"))
    assert data["services"]["green"]["ports"] == ["[::1]:8082:8080"]


def test_bridge_compose_open_to_qa(settings):
    data = compose(settings(BIND_ADDRESS="0.0.0.0"))
    assert data["services"]["blue"]["ports"] == ["0.0.0.0:8081:8080"]


def test_host_network_compose_gives_each_colour_its_port(settings):
    data = compose(settings(DOCKER_NETWORK="host", BLUE_PORT="9101", GREEN_PORT="9102"))
    for colour, port in (("blue", "9101"), ("green", "9102")):
        svc = data["services"][colour]
        assert svc["network_mode"] == "host" and "ports" not in svc
        assert svc["environment"]["PORT"] == port


def test_stop_grace_period_follows_stop_timeout(settings):
    data = compose(settings(STOP_TIMEOUT="3"))
    assert {svc["stop_grace_period"] for svc in data["services"].values()} == {"3s"}


def test_env_file_only_with_app_env_file(settings, tmp_path):
    secrets = tmp_path / "shop.env"
    secrets.write_text("DATABASE_URL=postgres://x\n")
    with_env = compose(settings(APP_ENV_FILE=str(secrets)))
    raw = [{"path": "app.env", "format": "raw"}]  # compose expands nothing in a value
    assert all(svc["env_file"] == raw for svc in with_env["services"].values())
    # the uploaded copy's name, never the local path
    assert str(tmp_path) not in render_compose(settings(APP_ENV_FILE=str(secrets)))
    assert all("env_file" not in svc for svc in compose(settings())["services"].values())
    only_cmd = compose(settings(SECRETS_CMD="vault-read"))
    assert all(svc["env_file"] == raw for svc in only_cmd["services"].values())


@pytest.mark.parametrize("cmd,expected", [
    ("sh -c 'exec app --port $PORT'", "sh -c 'exec app --port $$PORT'"),
    ("run ${HOME} \"$1\" $$", "run $${HOME} \"$$1\" $$$$"),
    ("serve --name 'a: b' # not a comment", "serve --name 'a: b' # not a comment"),
    ("café ünïcode", "café ünïcode"),
])
def test_app_cmd_reaches_compose_literally(settings, cmd, expected):
    data = compose(settings(APP_CMD=cmd))
    assert {svc["command"] for svc in data["services"].values()} == {expected}


def test_clojure_dockerfile_is_the_seeds_build(settings):
    text = render_clojure_dockerfile(settings(APP_PORT="3000"))
    assert "EXPOSE 3000" in text
    assert 'CMD ["clojure", "-M:server", "start"]' in text
    assert text.startswith("# Rendered by bluegreen")
    assert "\nFROM clojure:temurin-21-tools-deps\n" in text


def test_clojure_dockerfile_builds_from_clojure_base_image(settings):
    text = render_clojure_dockerfile(settings(CLOJURE_BASE_IMAGE="registry.example.com/clj:21"))
    assert "\nFROM registry.example.com/clj:21\n" in text
    # The CLI fetches dependencies; Debian's clojure (clojure.main) skips it.
    assert "then clojure -P -M:server;" in text and "grep -q -e '-Sdeps'" in text


def docker_compose_config(deploy_dir, text, app_env=False):
    docker = require_binary("docker")
    version = subprocess.run([docker, "compose", "version"], capture_output=True,
                             text=True, timeout=30)
    if version.returncode != 0:
        pytest.fail("`docker compose` (Compose v2) is not installed: run "
                    "scripts/setup-host.sh (as root) to install it", pytrace=False)
    deploy_dir.mkdir(parents=True, exist_ok=True)
    for colour in ("blue", "green"):
        (deploy_dir / colour).mkdir(exist_ok=True)
        (deploy_dir / colour / "Dockerfile").write_text("FROM scratch\n")
    if app_env:
        (deploy_dir / "app.env").write_text("SECRET=1\n")
    path = deploy_dir / "compose.yml"
    path.write_text(text)
    env = clean_environ()
    for var in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"):
        env.pop(var, None)
    quiet = subprocess.run([docker, "compose", "-f", str(path), "config", "-q"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert quiet.returncode == 0, f"docker compose config refused:\n{quiet.stderr}\n{text}"
    full = subprocess.run([docker, "compose", "-f", str(path), "config", "--format", "json"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert full.returncode == 0, full.stderr
    return json.loads(full.stdout)


def test_real_compose_accepts_the_bridge_file(tmp_path, settings):
    s = settings(APP_NAME="shop", BIND_ADDRESS="127.0.0.1", APP_PORT="3000")
    data = docker_compose_config(tmp_path / "shop", render_compose(s))
    assert data["name"] == "shop"
    blue = data["services"]["blue"]
    assert blue["init"] is True
    assert blue["ports"][0]["published"] == "8081" and blue["ports"][0]["target"] == 3000
    assert blue["ports"][0]["host_ip"] == "127.0.0.1"


def test_real_compose_accepts_an_ipv6_bind(tmp_path, settings):
    data = docker_compose_config(tmp_path / "app", render_compose(settings(BIND_ADDRESS="::1")))
    assert data["services"]["green"]["ports"][0]["host_ip"] == "::1"


def test_real_compose_accepts_the_host_network_file_with_env_file(tmp_path, settings):
    secrets = tmp_path / "local.env"
    secrets.write_text("SECRET=1\n")
    s = settings(APP_NAME="shop", DOCKER_NETWORK="host", APP_ENV_FILE=str(secrets),
                 APP_CMD="sh -c 'exec httpd -f -p $PORT -h /www' # ${HOME}",
                 STOP_TIMEOUT="0")
    data = docker_compose_config(tmp_path / "deploy", render_compose(s), app_env=True)
    green = data["services"]["green"]
    assert green["network_mode"] == "host"
    assert green["environment"]["PORT"] == "8082" and green["environment"]["SECRET"] == "1"
    # compose prints '$' re-escaped as '$$'; unescaped, $HOME would be expanded here
    command = " ".join(green["command"])
    assert "$$PORT" in command and "$${HOME}" in command, command
    assert "/root" not in command


def test_real_compose_without_app_env_needs_no_app_env(tmp_path, settings):
    data = docker_compose_config(tmp_path / "app", render_compose(settings()))
    assert "env_file" not in data["services"]["blue"]


def test_the_procfiles_order_does_not_change_the_file(settings):
    """state.json keeps processes with sorted keys: the file rendered from it is
    the one a release wrote from the Procfile (or a release of the live commit
    would see a change that is none)."""
    procfile = {"web": "sh /app/start.sh", "worker": "sh /app/worker.sh",
                "clock": "sh /app/clock.sh"}
    as_recorded = json.loads(json.dumps(procfile, sort_keys=True))
    assert list(as_recorded) != list(procfile)
    s = settings(APP_NAME="shop", GIT_REPO="/srv/repo.git")
    assert (render_compose(s, {"blue": procfile, "green": as_recorded})
            == render_compose(s, {"blue": as_recorded, "green": procfile}))
