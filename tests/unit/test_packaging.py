"""An installed bluegreen (pip install git+URL, as docs/ci.md does) must carry
the templates: model/templating.py finds them inside the package, or beside it in a
checkout. Building a wheel needs the network, so this reads the mapping."""

import fnmatch
import sys
from pathlib import Path

import pytest

from tasks.model.templating import TEMPLATE_DIR

REPO = Path(__file__).resolve().parents[2]

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else None


@pytest.mark.skipif(tomllib is None, reason="tomllib is Python 3.11+")
def test_every_template_is_packaged_inside_tasks():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "tasks.templates" in config["packages"]
    assert config["package-dir"]["tasks.templates"] == "templates"
    patterns = config["package-data"]["tasks.templates"]
    templates = [p.name for p in (REPO / "templates").iterdir() if p.is_file()]
    assert templates
    for name in templates:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_a_checkout_renders_from_its_templates_directory():
    assert TEMPLATE_DIR == REPO / "templates"
    assert (TEMPLATE_DIR / "nginx.conf.j2").is_file()
