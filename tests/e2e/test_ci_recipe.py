"""docs/ci.md's recipes, run as written: the GitHub Actions and GitLab CI jobs'
release command, in a workspace laid out as the page says (deploy/fabfile.py,
fabric.yaml, .env, hosts.yml without key paths), with the deploy key and
known_hosts only in the environment, HOME empty, and the key authorized on
the host with the page's restrictions.

Everything is parsed out of docs/ci.md, so the page and this test cannot
drift apart. Only the `pip install` step is not run (no network): the
command runs this checkout's installed bluegreen from PATH instead.
"""

import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest
import yaml

from traffic import settled

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "ci.md"
VENV_BIN = Path(sys.executable).parent
FENCE_RE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```\s*$", re.M | re.S)
PIP_RE = re.compile(r'^pip install "bluegreen @ git\+https://\S+/bluegreen\.git@[\w.-]+"$')


class Recipe:
    """The pieces of docs/ci.md the test needs."""

    def __init__(self, text):
        blocks = [(m.group("info").strip(), m.group("body")) for m in FENCE_RE.finditer(text)]

        def one(info, needle):
            found = [body for i, body in blocks if i == info and needle in body]
            assert len(found) == 1, f"docs/ci.md: expected one ```{info} block with {needle!r}"
            return found[0]

        self.fabfile = one("python", "from tasks import ns")
        self.fabric_yaml = one("yaml", "executor_class")
        self.hosts = yaml.safe_load(one("yaml", "default_hosts"))
        self.authorized_keys = one("text", "restrict").strip()
        self.github = yaml.safe_load(one("yaml", "runs-on"))
        self.gitlab = yaml.safe_load(one("yaml", "resource_group"))

    def github_step(self):
        """(pip install line, the release step) of the GitHub job."""
        steps = self.github["jobs"]["release"]["steps"]
        pip = [s["run"] for s in steps if "pip install" in s.get("run", "")]
        release = [s for s in steps if "fab " in s.get("run", "")]
        assert len(pip) == 1 and len(release) == 1, steps
        return pip[0], release[0]

    def gitlab_script(self):
        """(pip install line, the other script lines) of the GitLab job."""
        script = self.gitlab["release"]["script"]
        pip = [line for line in script if line.startswith("pip install")]
        assert len(pip) == 1, script
        return pip[0], [line for line in script if not line.startswith("pip install")]


@pytest.fixture(scope="module")
def recipe():
    return Recipe(DOC.read_text())


def test_the_recipes_agree_and_install_with_pip_from_the_repository(recipe):
    gh_pip, step = recipe.github_step()
    gl_pip, script = recipe.gitlab_script()
    assert gh_pip == gl_pip and PIP_RE.match(gh_pip), gh_pip
    assert step["run"] == script[-1] == "fab -H prod release --json > release.json"
    assert step["env"] == {"BLUEGREEN_DEPLOY_SSH_KEY": "${{ secrets.DEPLOY_SSH_KEY }}",
                           "BLUEGREEN_DEPLOY_KNOWN_HOSTS": "${{ secrets.DEPLOY_KNOWN_HOSTS }}"}
    # Both keep the JSON summary, also when the release failed.
    upload = [s for s in recipe.github["jobs"]["release"]["steps"]
              if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload and upload[0]["if"] == "always()"
    assert upload[0]["with"]["path"] == f"{step['working-directory']}/release.json"
    artifacts = recipe.gitlab["release"]["artifacts"]
    assert artifacts["when"] == "always" and artifacts["paths"] == ["deploy/release.json"]
    entry = recipe.hosts["hosts"]["prod"]
    assert "identity_file" not in entry and "known_hosts" not in entry


@pytest.fixture
def deploy_key(tmp_path, loophost, recipe):
    """A CI-only key, authorized on the loophost with the page's restrictions.

    Yields (private key text, the options line's template); the test adds
    the line once it knows the app's ports, and it is removed afterwards.
    """
    key = tmp_path / "deploy_ci"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci@bluegreen",
                    "-f", str(key)], check=True, capture_output=True, timeout=30)
    original = loophost.authorized_keys.read_text()

    def authorize(ports):
        options = recipe.authorized_keys.split(" ssh-ed25519 ")[0]
        for default, port in ports.items():
            options = options.replace(f'"127.0.0.1:{default}"', f'"127.0.0.1:{port}"')
        pub = key.with_suffix(".pub").read_text().strip()
        with open(loophost.authorized_keys, "a") as f:
            f.write(f"{options} {pub}\n")
        return options

    yield key.read_text(), authorize
    loophost.authorized_keys.write_text(original)


def run_job(command, shell, cwd, env, timeout=300):
    result = subprocess.run([*shell, command], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return result


def summaries(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_the_documented_jobs_release_with_secrets_only_in_the_environment(
        recipe, make_project, sample_app, loophost, deploy_key, tmp_path):
    project = make_project()
    sample_app.commit("v1")
    project.fab("setup", check=0)  # the host as an operator set it up

    key_text, authorize = deploy_key
    options = authorize({8080: project.public_port, 8081: project.blue_port,
                         8082: project.green_port})
    assert options.startswith("restrict,port-forwarding,permitopen=")

    # The app's repository, laid out as the page says.
    workspace = tmp_path / "workspace"
    deploy = workspace / "deploy"
    deploy.mkdir(parents=True)
    (deploy / "fabfile.py").write_text(recipe.fabfile)
    (deploy / "fabric.yaml").write_text(recipe.fabric_yaml)
    (deploy / ".env").write_text(project.env_file.read_text())
    hosts = recipe.hosts
    hosts["hosts"]["prod"].update(host=loophost.host, user=loophost.user,
                                  port=loophost.ssh_port)
    (deploy / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    home = tmp_path / "home"  # no ~/.ssh: no key file, no known_hosts
    home.mkdir()
    secrets = {"DEPLOY_SSH_KEY": key_text,
               "DEPLOY_KNOWN_HOSTS": loophost.known_hosts.read_text()}
    base_env = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                "HOME": str(home), "LANG": "C.UTF-8"}

    # GitHub Actions: the Release step, in its working-directory, with its env:
    # mapped from the secrets, under the shell GitHub uses for `run:`.
    _, step = recipe.github_step()
    env = dict(base_env)
    for name, value in step["env"].items():
        secret = re.fullmatch(r"\$\{\{ secrets\.(\w+) \}\}", value).group(1)
        env[name] = secrets[secret]
    github_shell = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]
    cwd = workspace / step["working-directory"]
    sample_app.commit("v2")
    result = run_job(step["run"], github_shell, cwd, env)
    assert result.returncode == 0, result.stderr
    artifact = workspace / "deploy" / "release.json"
    [summary] = summaries(artifact)
    assert (summary["host"], summary["result"], summary["live"], summary["commit"]) == (
        "prod", "ok", "green", sample_app.commits["v2"]), summary
    assert "DEPLOY_SSH_KEY" not in result.stderr and "PRIVATE KEY" not in result.stderr
    assert key_text.splitlines()[1] not in artifact.read_text() + result.stderr

    # GitLab CI: the job's script after `pip install`, from the repository
    # root, with the CI/CD variables exported under their own names.
    _, script = recipe.gitlab_script()
    env = dict(base_env, BLUEGREEN_DEPLOY_SSH_KEY=secrets["DEPLOY_SSH_KEY"],
               BLUEGREEN_DEPLOY_KNOWN_HOSTS=secrets["DEPLOY_KNOWN_HOSTS"])
    artifact.unlink()
    sample_app.commit("v3")
    result = run_job("\n".join(script), ["sh", "-e", "-c"], workspace, env)
    assert result.returncode == 0, result.stderr
    [summary] = summaries(workspace / recipe.gitlab["release"]["artifacts"]["paths"][0])
    assert (summary["result"], summary["live"], summary["commit"]) == (
        "ok", "blue", sample_app.commits["v3"]), summary
    status, headers, body = settled(lambda: project.get("/version"),
                                    lambda s, h, b: h.get("x-deploy-colour") == "blue")
    assert (status, headers.get("x-deploy-colour"), body.strip()) == (200, "blue", "v3")

    # The host key really comes from the variable: without it the job stops
    # at the connection (exit 3), and the artifact says so.
    env.pop("BLUEGREEN_DEPLOY_KNOWN_HOSTS")
    result = run_job("\n".join(script), ["sh", "-e", "-c"], workspace, env)
    assert result.returncode == 3, result.stdout + result.stderr
    [failure] = summaries(workspace / "deploy" / "release.json")
    assert (failure["host"], failure["result"], failure["code"]) == ("prod", "failed", 3)
    assert "known" in failure["error"].lower() or "host key" in failure["error"].lower()
    assert shlex.split(script[-1])[:3] == ["fab", "-H", "prod"]

    # The restrictions are in force: a channel to a port not listed is refused.
    client = paramiko.SSHClient()
    client.load_host_keys(str(loophost.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(loophost.host, port=loophost.ssh_port, username=loophost.user,
                   pkey=paramiko.Ed25519Key.from_private_key(io.StringIO(key_text)),
                   look_for_keys=False, allow_agent=False, timeout=10)
    try:
        with pytest.raises(paramiko.ChannelException) as refused:
            client.get_transport().open_channel(
                "direct-tcpip", ("127.0.0.1", loophost.ssh_port), ("127.0.0.1", 0), timeout=10)
        assert refused.value.code == 1  # administratively prohibited
    finally:
        client.close()
