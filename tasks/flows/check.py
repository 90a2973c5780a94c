"""fab check: preflight of a host in one round trip, judged by pure code.

The script only gathers facts (versions, listening ports, disk, nginx -t,
git ls-remote, SSL files, the other nginx files); ``evaluate`` decides what
is ok, what is a warning and what fails.
"""

import json
import re
import shlex
from dataclasses import dataclass

from ..commands import base
from ..commands.base import block, first_command
from ..commands.host_reading import inspect, parse_listening, parse_view
from ..configuration.settings import COLOURS
from ..errors import FAILED, Failure
from ..model.nginx_file import keepalive_verdict
from ..output import table
from ..shipping.local_build import local_facts
from .check_processes import procfile_rows, procfile_script

q = shlex.quote

CERT_WARN_DAYS = 21
MIN_FREE_KB = 1024 * 1024  # warn below 1 GiB
CRITICAL_FREE_KB = 200 * 1024  # fail below 200 MiB


def tools_script(settings):
    """Versions of git, docker (and its daemon), Compose v2, nginx."""
    nginx = first_command(settings.nginx_test_cmd)
    return f"""PATH="$PATH:/usr/sbin:/sbin"
if command -v git >/dev/null 2>&1; then echo "$M git $(git --version | cut -d' ' -f3)"; else echo "$M git missing"; fi
if ! command -v docker >/dev/null 2>&1; then echo "$M docker missing"
elif v=$(docker version --format '{{{{.Server.Version}}}}' 2>/dev/null) && [ -n "$v" ]; then echo "$M docker $v"
else echo "$M docker daemon-down"; fi
if v=$({settings.compose_cmd} version --short 2>/dev/null) && [ -n "$v" ]; then echo "$M compose $v"; else echo "$M compose missing"; fi
if command -v {q(nginx)} >/dev/null 2>&1; then echo "$M nginx $({q(nginx)} -v 2>&1 | sed 's|.*/||')"; else echo "$M nginx missing"; fi
"""


def compose_v2_or_later(version):
    """Compose v2 and the majors after it (v5 followed v2: 3 and 4 were skipped)."""
    major = version.lstrip("v").split(".", 1)[0]
    return major.isascii() and major.isdigit() and int(major) >= 2


def tool_problems(values, need_git=True):
    """What is wrong with the tools, as sentences; empty when all is well.
    A host that gets its images shipped (BUILD_ON=local) needs no git."""
    problems = []
    for tool in ("git", "docker", "compose", "nginx")[0 if need_git else 1:]:
        value = values.get(tool, "missing")
        if value == "missing":
            problems.append(f"{tool} is not installed (or not in the deploy user's PATH)")
        elif value == "daemon-down":
            problems.append("the Docker daemon does not answer (is it running? may the "
                            "deploy user use it?)")
        elif tool == "compose" and not compose_v2_or_later(value):
            problems.append(f"Compose {value} is not v2 (install the docker compose plugin)")
    return problems


def check_script(settings):
    s = settings
    sudo = base.sudo(s)
    d = s.deploy_dir
    mark = base.mark
    lines = [
        tools_script(s),
        inspect(s, listening=True),
        # Before setup DEPLOY_DIR (even its parent) may not exist yet: the
        # space is that of the nearest directory above it that does.
        f't={q(d)}; while [ ! -d "$t" ] && [ "$t" != / ]; do t=$(dirname "$t"); done',
        mark("disk_kb", "$(df -Pk \"$t\" 2>/dev/null | awk 'NR==2 {print $4}')"),
        mark("disk_dir", "$t"),
        f"if out=$({sudo}{s.nginx_test_cmd} 2>&1); then {mark('nginx_test', 'ok')}; "
        f"else {mark('nginx_test', 'fail')}; fi; "
        + block("nginx_test_output", 'printf "%s" "$out"'),
        block("others", f"for f in {q(s.nginx_conf_dir)}/*.conf; do "
                            f"[ -f \"$f\" ] && [ \"$f\" != {q(s.nginx_file)} ] && "
                            "{ echo \"::file $f\"; cat \"$f\"; echo; }; done; true"),
    ]
    if s.build_on == "local":  # the host reads no repository; say how it stores layers
        lines.append(mark("driver", "$(docker info --format '{{.Driver}}' 2>/dev/null)"))
        lines.append(block("driver_status", "docker info --format "
                                                    "'{{json .DriverStatus}}' 2>/dev/null"))
    else:
        lines.append(
            f"if out=$(GIT_TERMINAL_PROMPT=0 GIT_SSH_COMMAND='ssh -o BatchMode=yes' "
            f"timeout 30 git ls-remote --heads {q(s.git_repo)} 2>&1); then "
            + mark("git_remote", "ok $(printf '%s\\n' \"$out\" | grep -c refs/heads/)") + "; "
            "else " + mark("git_remote", "fail $(printf '%s' \"$out\" | tail -n 1)") + "; fi")
    lines.append(disk_script(s))
    lines.append(procfile_script(s))
    if s.ssl:
        for key, path in (("cert", s.ssl_cert_file), ("key", s.ssl_key_file)):
            lines.append(f"if {sudo}test -r {q(path)}; then {mark('ssl_' + key, 'ok')}; "
                         f"else {mark('ssl_' + key, 'missing')}; fi")
        lines.append(mark("ssl_end", f"$({sudo}openssl x509 -enddate -noout -in "
                                     f"{q(s.ssl_cert_file)} 2>/dev/null | cut -d= -f2)"))
        lines.append(
            f"if {sudo}openssl x509 -checkend {CERT_WARN_DAYS * 86400} -noout "
            f"-in {q(s.ssl_cert_file)} >/dev/null 2>&1; then {mark('ssl_expiry', 'ok')}; "
            f"else {mark('ssl_expiry', 'soon')}; fi")
    return "\n".join(lines) + "\n"


def dump_command(test_cmd):
    """NGINX_TEST_CMD with -T for -t: the same nginx and files, printed whole."""
    words = shlex.split(test_cmd)
    if "-t" in words:
        return shlex.join(["-T" if w == "-t" else w for w in words])
    return "nginx -T"


def disk_script(settings):
    """Where Docker keeps images and how much is free there; the app's images
    and the build cache (`docker system df -v`); nginx's worker_shutdown_timeout."""
    mark = base.mark
    return "\n".join([
        "root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null)",
        mark("docker_root", "$root"),
        mark("docker_free_kb", "$([ -n \"$root\" ] && df -Pk \"$root\" 2>/dev/null "
                               "| awk 'NR==2 {print $4}')"),
        block("docker_df", "docker system df -v --format '{{json .}}' 2>/dev/null"),
        f"if out=$({base.sudo(settings)}{dump_command(settings.nginx_test_cmd)} 2>/dev/null); then "
        "v=$(printf '%s\\n' \"$out\" | sed -n 's/^[[:space:]]*worker_shutdown_timeout"
        "[[:space:]][[:space:]]*\\([^;]*\\);.*/\\1/p' | head -n 1); "
        + mark("shutdown_timeout", "${v:-unset}") + "; "
        "else " + mark("shutdown_timeout", "unknown") + "; fi",
    ])


DOCKER_SIZE_RE = re.compile(r"([0-9.]+)\s*([kKMGTP]?B)")
DOCKER_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15}


def docker_bytes(text):
    """Docker's human sizes (go-units, powers of 1000: `1.98MB`, `758B`) in bytes."""
    m = DOCKER_SIZE_RE.fullmatch((text or "").strip())
    return int(float(m.group(1)) * DOCKER_UNITS[m.group(2)]) if m else 0


def disk_usage(df_json, app):
    """(app's image count, bytes only its images hold, build cache bytes) from
    `docker system df -v`; None when Docker gave nothing readable."""
    try:
        data = json.loads(df_json)
    except ValueError:
        return None
    ours = {}
    for image in data.get("Images") or []:
        if image.get("Repository") == f"bluegreen-{app}":
            ours[image.get("ID")] = docker_bytes(image.get("UniqueSize"))
    cache = sum(docker_bytes(c.get("Size")) for c in data.get("BuildCache") or [])
    return len(ours), sum(ours.values()), cache


def gib(n):
    return f"{n / 1024 ** 3:.1f} GiB"


def disk_rows(values, blocks, settings):
    """Free space where Docker keeps images against MIN_FREE_DISK; what the
    app's images and the build cache use; worker_shutdown_timeout."""
    s, rows = settings, []
    kb = values.get("docker_free_kb", "")
    root = values.get("docker_root") or "Docker's data directory"
    if kb.isascii() and kb.isdigit():
        free = int(kb) * 1024
        level = "ok" if free >= s.min_free_disk else "FAIL"
        rows.append(("docker disk", level, f"{gib(free)} free in {root} (MIN_FREE_DISK "
                     f"{gib(s.min_free_disk)}){'' if level == 'ok' else ': prune or grow it'}"))
    else:
        rows.append(("docker disk", "warn", "could not read the free space where Docker "
                                            "keeps images"))
    usage = disk_usage(blocks.get("docker_df", ""), s.app_name)
    if usage is not None:
        count, unique, cache = usage
        rows.append(("images", "ok", f"{count} image(s) of {s.app_name}: {unique / 1e6:.1f} MB "
                     f"of their own (KEEP_RELEASES={s.keep_releases}); build cache of all "
                     f"apps: {cache / 1e6:.1f} MB"))
    wst = values.get("shutdown_timeout", "unknown")
    if wst == "unset":
        rows.append(("nginx reload", "warn", "worker_shutdown_timeout is not set: after a "
                     "reload, old workers live until their long-lived connections "
                     "(WebSockets) close; set it in nginx.conf's main context to bound them"))
    elif wst != "unknown":
        rows.append(("nginx reload", "ok", f"worker_shutdown_timeout {wst}: old workers end "
                                           "at most that long after a reload"))
    return rows


LISTEN_RE = re.compile(r"^\s*listen\s+(?:\S*:)?(\d+)\b", re.M)
SERVER_NAME_RE = re.compile(r"^\s*server_name\s+([^;]+);", re.M)
UPSTREAM_PORT_RE = re.compile(r"^\s*server\s+\S+:(\d+)\b", re.M)
APP_HEADER_RE = re.compile(r"^# bluegreen app=(\S+)", re.M)


@dataclass(frozen=True)
class OtherFile:
    path: str
    app: str  # bluegreen app name, or None for a file we did not write
    listen: frozenset
    names: frozenset
    upstream_ports: frozenset


def parse_other_files(text):
    files, current, lines = [], None, []

    def close():
        if current is None:
            return
        body = "\n".join(lines)
        app = APP_HEADER_RE.search(body)
        names = set()
        for m in SERVER_NAME_RE.finditer(body):
            names.update(m.group(1).split())
        files.append(OtherFile(
            path=current, app=app.group(1) if app else None,
            listen=frozenset(int(p) for p in LISTEN_RE.findall(body)),
            names=frozenset(names or {"_"}),
            upstream_ports=frozenset(int(p) for p in UPSTREAM_PORT_RE.findall(body))))

    for line in text.splitlines():
        if line.startswith("::file "):
            close()
            current, lines = line[len("::file "):], []
        else:
            lines.append(line)
    close()
    return files


def names_overlap(a, b):
    return bool(a & b) or "_" in a or "_" in b


def evaluate(values, blocks, view, settings):
    """[(check, level, detail)] with level in ok / warn / FAIL."""
    s = settings
    local = s.build_on == "local"
    rows = []
    problems = tool_problems(values, need_git=not local)
    for problem in problems:
        rows.append(("tools", "FAIL", problem))
    if not problems:
        rows.append(("tools", "ok", ", ".join(f"{t} {values.get(t)}" for t in
                                               ("git", "docker", "compose", "nginx")[local:])))
    if local:
        rows += build_here_rows(values, blocks)
    keepalive = keepalive_verdict(s, view.nginx_version or None)
    rows.append(("keep-alive", "ok" if keepalive.protected else "warn", keepalive.line))
    if values.get("nginx_test") == "ok":
        rows.append(("nginx -t", "ok", s.nginx_test_cmd))
    else:
        out = [line for line in blocks.get("nginx_test_output", "").splitlines() if line.strip()]
        rows.append(("nginx -t", "FAIL", (out[-1] if out else "failed") +
                     f" (NGINX_TEST_CMD={s.nginx_test_cmd})"))

    listening = parse_listening(blocks.get("listening", ""))
    others = parse_other_files(blocks.get("others", ""))
    ours_public = view.nginx is not None
    public_ports = [("PUBLIC_PORT", s.public_port)] + (
        [("SSL_PORT", s.ssl_port)] if s.ssl else [])
    for key, port in public_ports:
        sharing = [o for o in others if port in o.listen]
        clash = [o for o in sharing if names_overlap(o.names, set(s.server_name.split()))]
        proc = listening.get(port)
        if clash:
            o = clash[0]
            rows.append((key, "FAIL", f"{port} is also served by {o.path} with server_name "
                         f"{' '.join(sorted(o.names))}: give the apps different ports or "
                         "SERVER_NAMEs"))
        elif port in listening and proc not in ("", "nginx"):
            rows.append((key, "FAIL", f"{port} is used by {proc}, not nginx"))
        elif port in listening and not (ours_public or sharing or proc == "nginx"):
            rows.append((key, "FAIL", f"{port} is in use by another program"))
        else:
            shared = f" (shared by name with {', '.join(o.path for o in sharing)})" if sharing else ""
            rows.append((key, "ok", f"{port} {'ours' if ours_public else 'free'}{shared}"))
    for colour in COLOURS:
        key, port = f"{colour.upper()}_PORT", s.port_of(colour)
        users = [o for o in others if port in o.upstream_ports]
        running = view.containers[colour].state in ("running", "restarting")
        if users:
            rows.append((key, "FAIL", f"{port} is also an upstream of {users[0].path}"
                         + (f" (app {users[0].app})" if users[0].app else "")))
        elif port in listening and not running:
            proc = listening[port]
            rows.append((key, "FAIL", f"{port} is in use by {proc or 'another program'}, "
                         f"not by {colour}'s container"))
        else:
            rows.append((key, "ok", f"{port} {'ours' if running else 'free'}"))
    for o in others:
        if o.app == s.app_name:
            rows.append(("APP_NAME", "FAIL", f"{o.path} belongs to an app named {o.app} too"))
    if view.nginx is not None and view.nginx.served is None:
        # Our file name, someone else's ports: another app with this APP_NAME
        # (its compose project and containers would be ours too).
        rows.append(("APP_NAME", "FAIL", f"{s.nginx_file} proxies to port {view.nginx.port}, "
                     "neither BLUE_PORT nor GREEN_PORT: another app uses APP_NAME "
                     f"{s.app_name} (give this one its own), or the file was edited"))

    kb = values.get("disk_kb", "")
    if kb.isascii() and kb.isdigit():
        kb = int(kb)
        level = "ok" if kb >= MIN_FREE_KB else ("warn" if kb >= CRITICAL_FREE_KB else "FAIL")
        where = values.get("disk_dir") or s.deploy_dir
        rows.append(("disk", level, f"{kb / 1024 / 1024:.1f} GiB free for {s.deploy_dir}"
                     + ("" if where == s.deploy_dir else f" (on {where}: it does not exist yet)")))
    else:
        rows.append(("disk", "warn", "could not read free space"))

    rows += disk_rows(values, blocks, s)

    status, _, detail = values.get("git_remote", "fail").partition(" ")
    where = "this machine" if local else "the host"
    if status == "ok":
        rows.append(("GIT_REPO", "ok", f"reachable from {where} ({detail} branches)"))
    else:
        rows.append(("GIT_REPO", "FAIL", f"{where} cannot read {s.git_repo}: {detail}"))

    if s.ssl:
        for key, name in (("cert", "SSL_CERT_FILE"), ("key", "SSL_KEY_FILE")):
            if values.get(f"ssl_{key}") == "ok":
                rows.append((name, "ok", "present and readable"))
            else:
                rows.append((name, "FAIL", f"{getattr(s, name.lower())} is missing or "
                                           "unreadable on the host"))
        if values.get("ssl_cert") == "ok":
            end = values.get("ssl_end", "?")
            if values.get("ssl_expiry") == "ok":
                rows.append(("certificate", "ok", f"valid until {end}"))
            else:
                rows.append(("certificate", "warn", f"expires within {CERT_WARN_DAYS} days "
                                                    f"({end}): renew it"))
    if view.holder is not None:
        rows.append(("lock", "warn", f"held by {view.holder.describe()}"))
    if view.drift:
        rows.append(("state", "warn", view.drift))
    if view.state_error is not None:
        rows.append(("state", "warn", view.state_error.message + " (run `fab repair`)"))
    return rows


def build_here_rows(values, blocks):
    """BUILD_ON=local: this machine's Docker, and how the host's stores layers."""
    rows = []
    mine = values.get("local_docker", "")
    if mine.startswith("ok "):
        rows.append(("local Docker", "ok", mine[3:]))
    else:
        rows.append(("local Docker", "FAIL", f"BUILD_ON=local builds here, but {mine[5:]}"))
    if "io.containerd.snapshotter" in blocks.get("driver_status", ""):
        rows.append(("layer store", "warn", "the host's Docker uses the containerd image "
                     "store: every release ships the whole image, not only what it lacks"))
    else:
        rows.append(("layer store", "ok", f"the host's Docker uses {values.get('driver') or '?'}"
                     ": only the layers it lacks are shipped"))
    return rows


def check(session):
    s, rep = session.settings, session.reporter
    session.connect()
    with rep.phase("check") as ph:
        result = session.run(check_script(s), timeout=120)
        values, blocks = result.values, result.blocks
        if s.build_on == "local":
            values = {**values, **local_facts(s)}
        view = parse_view(result, s)
        rows = evaluate(values, blocks, view, s) + procfile_rows(
            blocks.get("procfile"), s, f"the live checkout on {session.name}")
        failed = [r for r in rows if r[1] == "FAIL"]
        ph.detail = f"{len(rows) - len(failed)} ok, {len(failed)} failed"
    for line in table([list(r) for r in rows], ["check", "result", "detail"]).splitlines():
        rep.line(line)
    if failed:
        first = failed[0]
        raise Failure(f"{len(failed)} check(s) failed on {session.name}; first: {first[0]}: "
                      f"{first[2]}", "fix them and run `fab check` again", code=FAILED)
    return {"host": session.name, "checks": [{"check": c, "result": r, "detail": d}
                                             for c, r, d in rows]}
