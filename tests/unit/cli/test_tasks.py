"""cli/tasks.py through the real `fab` (no host needed): `fab --list` and
`fab render`, its refusals of bad values and flags with exit 2.
"""

import shutil

import pytest

from support.checkout import REPO, clean_environ, run_fab


# --- the real fab ------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path):
    """A directory with only .env.example copied to .env, as an operator starts."""
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    return tmp_path


def test_fab_list_shows_the_tasks(tmp_path):
    result = run_fab(["--list"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "render" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("told_not_to", [False, True])
def test_a_fab_run_leaves_the_suite_compiled(tmp_path, told_not_to):
    """Invoke writes no bytecode for what a run imports; the suite's modules
    are written anyway (else every `fab` compiles ~100 modules again), unless
    Python was told not to."""
    cache = tmp_path / "pyc"
    env = clean_environ(PYTHONPYCACHEPREFIX=str(cache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if told_not_to:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = run_fab(["--list"], tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    suite = {p.name.split(".")[0] for p in cache.rglob("tasks/**/*.pyc")}
    if told_not_to:
        assert not suite
    else:
        assert {"exec_task", "one_off", "settings", "session"} <= suite


def test_fab_render_with_the_example_env(workdir):
    result = run_fab(["render"], workdir)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "# ---- /etc/nginx/conf.d/app.conf" in out
    assert "# bluegreen app=app live=blue" in out
    assert "# ---- /srv/app/compose.yml" in out
    # OpenSSL's SSL_CERT_FILE in the environment does not turn SSL on
    assert " ssl;" not in out


def test_fab_render_green_for_a_hosts_yml_host(workdir):
    shutil.copy(REPO / "hosts.example.yml", workdir / "hosts.yml")
    result = run_fab(["-H", "staging", "render", "--colour", "green"], workdir)
    assert result.returncode == 0, result.stderr
    assert "live=green" in result.stdout
    assert "server_name staging.example.com;" in result.stdout
    assert '"0.0.0.0:8081:8080"' in result.stdout


def test_fab_render_reads_other_files_when_named(tmp_path):
    shutil.copy(REPO / ".env.example", tmp_path / "shop.env")
    with open(tmp_path / "shop.env", "a") as f:
        f.write("APP_NAME=shop\n")
    env = clean_environ(BLUEGREEN_ENV_FILE=str(tmp_path / "shop.env"),
                        BLUEGREEN_PUBLIC_PORT="9080")
    result = run_fab(["render"], tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "# ---- /etc/nginx/conf.d/shop.conf" in result.stdout
    assert "listen 9080;" in result.stdout


# (how the value arrives, key, value)
FAB_BAD_VALUES = [
    ("env", "BLUE_BRANCH", "main;rm -rf /"),
    ("env", "GREEN_BRANCH", "$(id)"),
    ("env", "BLUE_BRANCH", "`id`"),
    ("env", "GREEN_BRANCH", "-x"),
    ("env", "APP_NAME", "Shop/Api"),
    ("env", "BLUE_PORT", "8080"),
    ("env", "PUBLIC_PORT", "70000"),
    ("env", "APP_PORT", "abc"),
    ("env", "SSL_PORT", "\u00b2"),
    ("env", "SERVER_NAME", "a.example.com;"),
    ("env", "DEPLOY_DIR", "/"),
    ("env", "NGINX_CONF_DIR", "conf.d"),
    ("env", "APP_CMD", "serve\nreboot"),
    ("env", "HEALTH_PATH", "health"),
    ("env", "HEALTH_TIMEOUT", "nan"),
    ("env", "HEALTH_PASSES", "1.5"),
    ("env", "DOCKER_NETWORK", "overlay"),
    ("env", "BIND_ADDRESS", "localhost"),
    ("env", "USE_SUDO", "maybe"),
    ("env", "SSL_CERT_FILE", "/etc/ssl/only-cert.pem"),
    ("env", "GIT_REPO", "-oops"),
    ("env", "APP_ENV_FILE", "/nonexistent/app.env"),
    ("dotenv", "SERVER_NAME", "example.com {"),
    ("dotenv", "DEPLOY_DIR", "relative/dir"),
    ("dotenv", "GIT_REPO", "https://example.com/my repo.git"),
    ("dotenv", "HEALTH_PASSES", "0"),
    ("dotenv", "GREEN_BRANCH", "main.lock"),
    ("dotenv", "BLUE_BRANCH", "a..b"),
    ("dotenv", "STOP_TIMEOUT", "-1"),
    ("env", "KEEPALIVE_MIN_TIMEOUT", "banana"),
    ("dotenv", "KEEPALIVE_MIN_TIMEOUT", "-1"),
    ("env", "KEEPALIVE_MIN_TIMEOUT", "5 s"),
    ("env", "KEEP_RELEASES", "0"),
    ("dotenv", "KEEP_RELEASES", "-3"),
    ("env", "CLIENT_MAX_BODY_SIZE", "10 mb"),
    ("dotenv", "PROXY_READ_TIMEOUT", "soon"),
    ("env", "NGINX_SNIPPET_FILE", "/nonexistent/extra.conf"),
    ("env", "WATCH_MAX_ERROR_RATE", "2"),
    ("dotenv", "WATCH_MIN_REQUESTS", "lots"),
    ("env", "MIN_FREE_DISK", "lots"),
    ("dotenv", "BUILD_TIMEOUT", "soon"),
]


@pytest.mark.parametrize("how,key,value", FAB_BAD_VALUES,
                         ids=[f"{h}-{k}-{i}" for i, (h, k, _) in enumerate(FAB_BAD_VALUES)])
def test_fab_render_refuses_a_bad_value_in_one_line(workdir, how, key, value):
    env = clean_environ()
    if how == "env":
        env[f"BLUEGREEN_{key}"] = value
    else:
        with open(workdir / ".env", "a") as f:
            f.write(f"{key}='{value}'\n")
    result = run_fab(["render"], workdir, env=env)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {key}="), lines[0]
    assert (f"BLUEGREEN_{key}" if how == "env" else ".env") in lines[0]
    assert "allowed" in lines[0] or "must be set" in lines[0]
    assert result.stdout == ""  # nothing rendered from a bad configuration


def test_fab_render_refuses_a_snippet_that_closes_the_server_block(workdir):
    snippet = workdir / "extra.conf"
    snippet.write_text("return 204;\n}\nserver { listen 9999; }\n")
    env = clean_environ(BLUEGREEN_NGINX_SNIPPET_FILE=str(snippet))
    result = run_fab(["render"], workdir, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: NGINX_SNIPPET_FILE="), lines
    assert str(snippet) in lines[0] and "BLUEGREEN_NGINX_SNIPPET_FILE" in lines[0]
    assert "line 2: this '}' would close the app's server block early" in lines[0]
    assert result.stdout == ""


def test_fab_render_puts_the_snippet_in_the_server_block(workdir):
    snippet = workdir / "extra.conf"
    snippet.write_text("location /api/ {\n    return 204;\n}\n")
    env = clean_environ(BLUEGREEN_NGINX_SNIPPET_FILE=str(snippet))
    result = run_fab(["render"], workdir, env=env)
    assert result.returncode == 0, result.stderr
    assert f"    # From NGINX_SNIPPET_FILE ({snippet}):\n    location /api/ {{\n" \
           f"        return 204;\n    }}\n" in result.stdout
    # a local render does not know the host's nginx: it says so instead of guessing
    assert "keepalive_min_timeout: decided on the host" in result.stdout


def test_fab_render_hides_a_bad_deploy_key(workdir):
    secret = "not-a-key-but-secret-anyway"
    result = run_fab(["render"], workdir, env=clean_environ(BLUEGREEN_DEPLOY_SSH_KEY=secret))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "DEPLOY_SSH_KEY" in result.stderr and secret not in result.stderr + result.stdout


def test_fab_render_unknown_key_suggests_the_nearest(workdir):
    with open(workdir / ".env", "a") as f:
        f.write("GREEN_BRANHC=main\n")
    result = run_fab(["render"], workdir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown key GREEN_BRANHC" in result.stderr
    assert "did you mean GREEN_BRANCH?" in result.stderr


@pytest.mark.parametrize("args", [["render", "--colour", "purple"],
                                  ["-H", "bad host", "render"]])
def test_fab_render_bad_flags_exit_2(workdir, args):
    result = run_fab(args, workdir)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")


def test_fab_render_missing_env_file_exit_2(tmp_path):
    env = clean_environ(BLUEGREEN_ENV_FILE=str(tmp_path / "typo.env"))
    result = run_fab(["render"], tmp_path, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "typo.env" in result.stderr
