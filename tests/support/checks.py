"""What `fab check` reads from a host (tools, listening ports, other apps'
nginx files, disk use) in sample form, and its verdicts on them."""

from support.host_output import container_line, host_output, released_state
from support.local_step import M, read_step
from tasks.commands.host_reading import parse_view
from tasks.flows.check import evaluate
from tasks.model.nginx_file import render_nginx


TOOLS = {"git": "2.39.2", "docker": "24.0.7", "compose": "2.24.5", "nginx": "1.22.1"}
NGINX_OK = ("nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
            "nginx: configuration file /etc/nginx/nginx.conf test is successful\n")

DOCKER_DF = ('{"Images":[{"Repository":"bluegreen-shop","Tag":"blue","ID":"sha256:a",'
             '"UniqueSize":"12.5MB","SharedSize":"166MB"},{"Repository":"bluegreen-shop",'
             '"Tag":"0123456789012345678901234567890123456789","ID":"sha256:a",'
             '"UniqueSize":"12.5MB"},{"Repository":"bluegreen-shop","Tag":"green",'
             '"ID":"sha256:b","UniqueSize":"758B"},{"Repository":"bluegreen-blog","Tag":"blue",'
             '"ID":"sha256:c","UniqueSize":"1GB"}],'
             '"BuildCache":[{"Size":"51.66MB"},{"Size":"5B"}]}')


def ss_line(port, proc=None, address="0.0.0.0"):
    users = f' users:(("{proc}",pid=812,fd=6),("{proc}",pid=811,fd=6))' if proc else ""
    return f"LISTEN 0      511      {address}:{port}  0.0.0.0:*{users}"


NGINX_8080 = ss_line(8080, "nginx")
BLUE_PROXY = ss_line(8081, "docker-proxy", "127.0.0.1")
SSHD = ss_line(22, "sshd")


def check_output(s, *, tools=TOOLS, listening=(NGINX_8080, BLUE_PROXY, SSHD), others="",
                 disk_kb="20971520", nginx_test="ok", nginx_test_output=NGINX_OK,
                 git_remote="ok 3", ssl=None, live="blue", docker_free_kb="20971520",
                 docker_df=DOCKER_DF, shutdown_timeout="10s", **inspect_kw):
    """What check_script prints on a host (blue live and healthy by default)."""
    out = "".join(f"{M} {tool} {value}\n" for tool, value in tools.items())
    inspect_kw.setdefault("nginx_version", "1.28.0")
    if live:
        inspect_kw.setdefault("state", released_state(s, live))
        inspect_kw.setdefault("nginx", render_nginx(s, live))
        inspect_kw.setdefault("containers", {live: container_line(s, live)})
    out += host_output(s, **inspect_kw)
    out += f"{M} begin listening\n" + "".join(line + "\n" for line in listening)
    out += f"\n{M} end listening\n"
    out += f"{M} disk_kb {disk_kb}\n{M} nginx_test {nginx_test}\n"
    out += f"{M} begin nginx_test_output\n{nginx_test_output}\n{M} end nginx_test_output\n"
    out += f"{M} begin others\n{others}\n{M} end others\n"
    out += f"{M} git_remote {git_remote}\n"
    out += f"{M} docker_root /var/lib/docker\n{M} docker_free_kb {docker_free_kb}\n"
    out += f"{M} begin docker_df\n{docker_df}\n{M} end docker_df\n"
    out += f"{M} shutdown_timeout {shutdown_timeout}\n"
    for key, value in (ssl or {}).items():
        out += f"{M} ssl_{key} {value}\n"
    return out


def judge(s, **kw):
    result = read_step(check_output(s, **kw))
    return evaluate(result.values, result.blocks, parse_view(result, s), s)


def rows(result, check):
    return [(level, detail) for name, level, detail in result if name == check]


def only(result, check):
    found = rows(result, check)
    assert len(found) == 1, found
    return found[0]


def failures(result):
    return [(name, detail) for name, level, detail in result if level == "FAIL"]
