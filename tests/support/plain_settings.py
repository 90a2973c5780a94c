"""Settings from plain dicts, as if read from .env."""

from tasks.configuration.env_layers import Layer
from tasks.configuration.settings import check_all, merge_layers


def make_settings(require_repo=False, **values):
    """Settings from built-in defaults plus ``values`` (as if from .env)."""
    layer = Layer(".env (test)", {k: str(v) for k, v in values.items()})
    return check_all(merge_layers([layer]), require_repo=require_repo)
