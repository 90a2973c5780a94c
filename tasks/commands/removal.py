"""Taking an app off a host (`fab remove`): what is there, and the script that removes it.

Everything is found by the app's own names and labels (bluegreen-APP
images, containers labelled bluegreen.app=APP or with Compose project
APP, the nginx file whose header names the app), so other apps on the
host are untouched.
"""

from ..model.kept_releases import PROJECT_LABEL
from .base import NGINX_RELOAD_FAILED, NGINX_TEST_FAILED, block, mark, q, sudo


def ours(settings):
    """A test that the nginx file is this app's (its first line names it)."""
    pattern = "^# bluegreen app=" + settings.app_name + r"\( \|$\)"
    return f"head -n 1 {q(settings.nginx_file)} 2>/dev/null | grep -q {q(pattern)}"


def facts(settings):
    """What of the app is on the host, one block each."""
    app = settings.app_name
    labels = (f"label=bluegreen.app={app}", f"label={PROJECT_LABEL}={app}")
    containers = "; ".join(f"docker ps -a --filter {q(label)} --format '{{{{.ID}}}} {{{{.Names}}}}'"
                           for label in labels)
    images = (f"docker images {q('bluegreen-' + app)} --format '{{{{.Repository}}}}:{{{{.Tag}}}}' "
              f"| grep -v ':<none>$'; docker images -q --no-trunc --filter dangling=true "
              f"--filter {q(labels[1])}")
    return "\n".join([
        block("containers", f"{{ {containers}; }} 2>/dev/null | sort -u"),
        block("images", f"{{ {images}; }} 2>/dev/null | sort -u"),
        f"if {ours(settings)}; then {mark('nginx', 'ours')}; "
        f"elif [ -e {q(settings.nginx_file)} ]; then {mark('nginx', 'foreign')}; fi",
        f"[ -d {q(settings.deploy_dir)} ] && {mark('deploy_dir', 'yes')}",
        "true",
    ]) + "\n"


def parse_facts(result):
    """{containers: [(id, name)], images: [name or id], nginx: bool, deploy_dir: bool}."""
    containers = [tuple(line.split(None, 1)) for line in
                  result.blocks.get("containers", "").splitlines() if len(line.split()) == 2]
    images = [line.strip() for line in result.blocks.get("images", "").splitlines()
              if line.strip()]
    return {"containers": containers, "images": images,
            "nginx": result.values.get("nginx") == "ours",
            "foreign_nginx": result.values.get("nginx") == "foreign",
            "deploy_dir": result.values.get("deploy_dir") == "yes"}


def remove(settings, found):
    """Take the nginx file out first (tested, reloaded: it goes back if nginx
    refuses), then the containers, the images and DEPLOY_DIR."""
    s, f = sudo(settings), settings.nginx_file
    lines = ["set -u"]
    if found["nginx"]:
        back = f"cat \"$bk\" | {s}tee {q(f)} >/dev/null; rm -f \"$bk\""
        lines.append(f"""bk=$(mktemp) && cat {q(f)} > "$bk" && {s}rm -f {q(f)} || exit {NGINX_TEST_FAILED}
if ! out=$({s}{settings.nginx_test_cmd} 2>&1); then
  {back}
  {block('output', 'printf "%s" "$out"')}
  exit {NGINX_TEST_FAILED}
fi
if ! out=$({s}{settings.nginx_reload_cmd} 2>&1); then
  {back}
  {s}{settings.nginx_reload_cmd} >/dev/null 2>&1
  {block('output', 'printf "%s" "$out"')}
  exit {NGINX_RELOAD_FAILED}
fi
rm -f "$bk"; {mark('removed', 'nginx')}""")
    if found["containers"]:
        # Stopped first, as a release stops them: a worker finishes its job and a
        # scheduler says it stopped (SIGTERM, then WORKER_STOP_TIMEOUT).
        grace = max(settings.stop_timeout, settings.worker_stop_timeout)
        ids = " ".join(q(cid) for cid, _ in found["containers"])
        lines.append(f"docker stop -t {int(grace)} {ids} >/dev/null 2>&1")
    for cid, name in found["containers"]:
        lines.append(f"docker rm -f {q(cid)} >/dev/null 2>&1 && {mark('removed', q('container ' + name))}")
    for image in found["images"]:
        lines.append(f"docker rmi {q(image)} >/dev/null 2>&1 && {mark('removed', q('image ' + image))}")
    if found["deploy_dir"]:
        lines.append(f"rm -rf {q(settings.deploy_dir)} && {mark('removed', 'deploy_dir')}")
    lines.append("true")
    return "\n".join(lines) + "\n"
