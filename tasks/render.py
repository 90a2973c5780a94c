"""The Jinja2 environment that turns templates/ into the files the host gets."""

import functools
import json
from pathlib import Path

# An installed package carries the templates inside it (see pyproject.toml);
# a checkout has them beside tasks/.
_HERE = Path(__file__).resolve().parent
TEMPLATE_DIR = next((d for d in (_HERE / "templates", _HERE.parent / "templates")
                     if d.is_dir()), _HERE.parent / "templates")


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
