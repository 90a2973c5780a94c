"""The tasks operators call. Thin: each reads like its step list in the README."""

import functools
import sys

from invoke import Exit, task

from . import config as cfg
from .errors import Failure
from .inventory import load_inventory


def operator_task(fn):
    """Turn expected failures into two lines and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        try:
            return fn(c, *args, **kwargs)
        except Failure as exc:
            sys.stdout.flush()
            raise Exit(str(exc), code=exc.code) from None
        except BrokenPipeError:  # `fab render | head`
            sys.stderr.close()
            raise Exit(code=0) from None
        except KeyboardInterrupt:
            sys.stdout.flush()
            raise Exit("interrupted: the host's lock was released; nothing live changed "
                       "unless a switch had been reported", code=130) from None

    return wrapper


def cli_hosts(c):
    """The -H list our Executor put in the config (empty without -H)."""
    try:
        return list(c.config["bluegreen_hosts"])
    except KeyError:
        return []


@task(help={"colour": "the live colour to render the nginx file for (blue or green)"})
@operator_task
def render(c, colour="blue"):
    """Print the rendered nginx and compose files (local only, no SSH)."""
    from .compose import render_compose
    from .nginx import render_nginx

    colour = cfg.check_flag("--colour", colour, check_colour)
    inventory = load_inventory()
    names = cli_hosts(c)
    layer = inventory.resolve(names[0]).env if names else None
    settings = cfg.load_settings(host_layer=layer, require_repo=False)
    print(f"# ---- {settings.nginx_file}")
    print(render_nginx(settings, colour), end="")
    print(f"# ---- {settings.deploy_dir}/compose.yml")
    print(render_compose(settings), end="")


def check_colour(value):
    if value not in cfg.COLOURS:
        raise cfg.Invalid("allowed: blue or green")
    return value
