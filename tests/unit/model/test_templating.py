"""model/templating.py: preloaded templates render the same, compile once, and a
cache that cannot be written is only slower.
"""

import jinja2.bccache
import shutil
import tempfile

import pytest

from tasks.model import templating
from tasks.model.nginx_file import render_nginx
from tasks.model.templating import preload


def test_preloaded_templates_render_the_same(settings, monkeypatch):
    s = settings(APP_NAME="shop")
    expected = render_nginx(s, "green")
    monkeypatch.setattr(templating, "_preloading", None)
    templating.environment.cache_clear()
    preload("nginx.conf.j2", "no-such-template.j2")  # a bad name is render's to report
    assert render_nginx(s, "green") == expected
    assert not templating._preloading.is_alive()


# --- the compiled templates' cache ------------------------------------------------------


@pytest.fixture
def fresh_environment(tmp_path, monkeypatch):
    """templating.environment() built anew, with its cache under tmp_path."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    templating.environment.cache_clear()
    yield templating
    templating.environment.cache_clear()


def test_templates_compile_once_and_load_from_the_cache(fresh_environment, settings, tmp_path):
    s = settings(APP_NAME="shop")
    first = render_nginx(s, "green")
    cached = list(tmp_path.glob("_jinja2-cache-*/*.cache"))
    assert cached, list(tmp_path.iterdir())
    fresh_environment.environment.cache_clear()
    assert render_nginx(s, "green") == first  # loaded from the cache: the same file


def test_a_cache_that_cannot_be_written_or_used_is_only_slower(fresh_environment, settings,
                                                                tmp_path, monkeypatch):
    s = settings(APP_NAME="shop")
    expected = render_nginx(s, "blue")
    named_temporary_file = tempfile.NamedTemporaryFile

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    fresh_environment.environment.cache_clear()
    for entry in tmp_path.glob("_jinja2-cache-*/*.cache"):
        entry.unlink()
    monkeypatch.setattr(jinja2.bccache.tempfile, "NamedTemporaryFile", full_disk)
    assert render_nginx(s, "blue") == expected
    monkeypatch.setattr(jinja2.bccache.tempfile, "NamedTemporaryFile", named_temporary_file)
    # A cache directory that is not this user's own: no cache at all.
    fresh_environment.environment.cache_clear()
    for d in tmp_path.glob("_jinja2-cache-*"):
        shutil.rmtree(d)
        d.write_text("not a directory")
    assert fresh_environment.environment().bytecode_cache is None
    assert render_nginx(s, "blue") == expected
