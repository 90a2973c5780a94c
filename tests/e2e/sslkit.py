"""HTTPS test set-up: a self-signed certificate, a project with SSL keys, and a
DEPLOY_DIR nginx's workers can read (for tests that bridge assets or serve
pages from it). test_ssl, test_assets and test_maintenance import the helpers;
`readable_deploy_dir` is a fixture of the plugin (tests/conftest.py)."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import loophost as lh


def make_cert(directory, name, days):
    """A self-signed certificate for `name` valid `days` days: (cert, key) paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}-{days}d.pem", directory / f"{name}-{days}d.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", str(days), "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def readable_deploy_dir():
    """A DEPLOY_DIR nginx's workers (user nobody) can read, as /srv/<app> is on
    a real host: pytest's own tmp directories are private to root."""
    path = Path(tempfile.mkdtemp(prefix=lh.TEST_PREFIX + "srv-"))
    path.chmod(0o755)
    yield path / "app"
    shutil.rmtree(path, ignore_errors=True)


def ssl_project(make_project, tmp_path, days=90, deploy_dir=None):
    project = make_project()
    if deploy_dir is not None:
        project.set(DEPLOY_DIR=deploy_dir)
        project.deploy_dir = deploy_dir
    name = f"{project.name}.test"
    cert, key = make_cert(tmp_path / "certs", name, days)
    ssl_port = lh.free_port()
    project.set(SERVER_NAME=name, SSL_CERT_FILE=cert, SSL_KEY_FILE=key, SSL_PORT=ssl_port)
    project.server_name, project.ssl_port, project.cert = name, ssl_port, cert
    return project
