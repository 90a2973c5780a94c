"""Settings from plain dicts, as if read from .env."""

from tasks import config as cfg


def make_settings(require_repo=False, **values):
    """Settings from built-in defaults plus ``values`` (as if from .env)."""
    layer = cfg.Layer(".env (test)", {k: str(v) for k, v in values.items()})
    return cfg.check_all(cfg.merge_layers([layer]), require_repo=require_repo)
