"""The Jinja2 environment that turns templates/ into the files the host gets."""

import functools
import json
import threading
from pathlib import Path

# An installed package carries the templates inside it (tasks/templates, see
# pyproject.toml); a checkout has them beside tasks/.
_PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = next((d for d in (_PACKAGE / "templates", _PACKAGE.parent / "templates")
                     if d.is_dir()), _PACKAGE.parent / "templates")


@functools.lru_cache(maxsize=None)
def environment():
    import jinja2  # imported on first use: most tasks never render

    class BestEffortCache(jinja2.FileSystemBytecodeCache):
        """Compiled templates kept between runs (Jinja2's own cache: a 0700
        directory of this user's in the temp dir, checked for its owner; an
        entry serves only the same template text): the nginx template
        compiles in ~10 ms and loads in ~1 ms. A cache that cannot be read
        or written (a full disk) is a compile, never a failure."""

        def load_bytecode(self, bucket):
            try:
                super().load_bytecode(bucket)
            except OSError:
                pass

        def dump_bytecode(self, bucket):
            try:
                super().dump_bytecode(bucket)
            except OSError:
                pass

    try:
        cache = BestEffortCache()
    except (OSError, RuntimeError):  # no temp dir of this user's: compile every time
        cache = None
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        bytecode_cache=cache,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


_preloading = None  # the thread of preload(), while it runs


def preload(*names):
    """Import Jinja2 and compile the templates ``names`` in a background thread.

    That is about 30 ms of CPU here. A task starts it while it waits on the
    host (its remote shell starting, ~0.1 s), which takes it off the task's
    path; render_template waits for it, so nothing is compiled twice.
    """
    global _preloading
    if _preloading is None:
        _preloading = threading.Thread(target=_load, args=names, name="template-preload",
                                       daemon=True)
        _preloading.start()


def _load(*names):
    try:
        for name in names:
            environment().get_template(name)
    except Exception:
        pass  # render_template meets the same error and reports it


def render_template(name, **context):
    if _preloading is not None:
        _preloading.join()
    return environment().get_template(name).render(**context)


def yaml_string(text):
    """A YAML scalar for any text (JSON strings are YAML strings)."""
    return json.dumps(text)
