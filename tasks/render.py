"""The Jinja2 environment that turns templates/ into the files the host gets."""

import functools
import json
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


@functools.lru_cache(maxsize=None)
def environment():
    import jinja2  # imported on first use: most tasks never render

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_template(name, **context):
    return environment().get_template(name).render(**context)


def yaml_string(text):
    """A YAML scalar for any text (JSON strings are YAML strings)."""
    return json.dumps(text)
