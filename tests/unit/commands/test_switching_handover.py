"""The wait for nginx's old workers after a reload (commands/switching.py),
run by a real `sh` against a made-up /proc."""

import subprocess

from tasks.commands import switching


def fake_proc(root, procs):
    """procs: {pid: (ppid, cmdline[, start ticks])} of nginx processes, plus a
    shell; a process without a start started at tick 10 x its pid."""
    for pid, (ppid, cmdline, *start) in {**procs, 999: (1, "sh")}.items():
        d = root / str(pid)
        d.mkdir(exist_ok=True)
        comm = "nginx" if cmdline.startswith("nginx") else "sh"
        fields = [str(pid), f"({comm})", "S", str(ppid)] + ["0"] * 17 + [
            str(start[0] if start else 10 * pid), "0"]
        (d / "stat").write_text(" ".join(fields) + "\n")
        (d / "cmdline").write_bytes(cmdline.encode() + b"\0")


def run(script):
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                       env={"M": "::T", "PATH": "/usr/bin:/bin"}, timeout=30)
    return [line.split(" ", 2)[2] for line in r.stdout.splitlines()
            if line.startswith("::T handover")]


def test_parse_workers_keeps_the_children_of_an_nginx_process():
    text = "100 1\n101 100\n102 100\n200 1\n201 200\n7 3\n"
    assert switching.parse_workers(text) == ((101, 100), (102, 100), (201, 200))
    assert switching.parse_workers("") == ()


def test_the_switch_script_reads_the_workers_before_its_reload():
    class S:
        nginx_file, deploy_dir = "/etc/nginx/conf.d/app.conf", "/srv/app"
        nginx_test_cmd, nginx_reload_cmd = "nginx -t", "nginx -s reload"
        access_log_path, use_sudo = "/srv/app/logs/access.log", False
    script = switching.switch(S, "server {}")
    assert script.index("begin nginx-workers") < script.index("nginx -s reload")


def test_done_once_old_workers_of_the_reloaded_master_shut_down(tmp_path):
    old = ((101, 100),)
    fake_proc(tmp_path, {100: (1, "nginx: master process"),
                         101: (100, "nginx: worker process is shutting down"),
                         102: (100, "nginx: worker process"),
                         # an unrelated nginx that did not reload
                         200: (1, "nginx: master process"), 201: (200, "nginx: worker process")})
    assert run(switching.handover(old + ((201, 200),), proc=tmp_path)) == ["done 0"]


def test_done_once_old_workers_are_gone(tmp_path):
    fake_proc(tmp_path, {100: (1, "nginx: master process"), 102: (100, "nginx: worker process")})
    assert run(switching.handover(((101, 100),), proc=tmp_path)) == ["done 0"]


def test_waits_while_an_old_worker_still_accepts(tmp_path):
    fake_proc(tmp_path, {100: (1, "nginx: master process"),
                         101: (100, "nginx: worker process"),
                         102: (100, "nginx: worker process")})
    assert run(switching.handover(((101, 100),), rounds=3, proc=tmp_path)) == ["timeout 101 "]


def test_waits_while_the_master_has_not_started_new_workers(tmp_path):
    fake_proc(tmp_path, {100: (1, "nginx: master process"), 101: (100, "nginx: worker process")})
    assert run(switching.handover(((101, 100),), rounds=3, proc=tmp_path)) == ["timeout unmoved"]


def test_a_listed_worker_of_the_new_generation_is_not_waited_for(tmp_path):
    """Another master was mid-reload when the list was taken: its first new
    worker is listed, its second is not; the first never shuts down."""
    fake_proc(tmp_path, {200: (1, "nginx: master process", 10),
                         201: (200, "nginx: worker process is shutting down", 50),
                         202: (200, "nginx: worker process", 1000),  # listed, new
                         203: (200, "nginx: worker process", 1001)})  # not listed
    workers = ((201, 200), (202, 200))
    assert run(switching.handover(workers, rounds=3, proc=tmp_path)) == ["done 0"]
