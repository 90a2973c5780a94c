"""Tasks that look after a whole host's copy of the app (beside cli/tasks.py)."""

from .. import flows
from .flags import task
from .on_hosts import on_hosts, operator_task

HOST_KEY_HELP = "trust an unknown host key on first contact and add it to KNOWN_HOSTS"


@task(help={"yes": "really remove (without it: say what would go, exit 2)",
            "json": "print a JSON summary per host", "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def remove(c, yes=False, json=False, accept_new_host_key=False):
    """Take the app off the host: containers, images, nginx file, DEPLOY_DIR."""

    on_hosts(c, "remove", lambda session: flows.remove.remove(session, yes),
             json_mode=json, accept_new_host_key=accept_new_host_key, require_repo=False)


HOST_TASKS = (remove,)
