"""configuration/nginx_values.py: NGINX_SNIPPET_FILE read and checked when the
settings load (balanced braces, text, a file).
"""

import pytest

from support.config_errors import assert_names_everything
from support.plain_settings import make_settings
from tasks.configuration.settings import load_settings
from tasks.errors import ConfigError


def write_env(tmp_path, text, name=".env"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


SNIPPET = """\
# rate limits for the API (a comment may say { or })
location /api/ {
    limit_req zone=api burst=20;
    proxy_pass http://bluegreen_shop;
}
add_header X-Frame-Options "DENY" always;
set $x "${host}}";
"""


def test_snippet_file_is_read_when_settings_load(tmp_path):
    path = tmp_path / "extra.conf"
    path.write_text(SNIPPET)
    s = make_settings(NGINX_SNIPPET_FILE=str(path))
    assert s.nginx_snippet_file == str(path)
    assert s.nginx_snippet == SNIPPET.strip("\n")
    assert "nginx_snippet" not in s.public()  # the path is shown, not the text
    assert s.public()["NGINX_SNIPPET_FILE"] == str(path)


@pytest.mark.parametrize("text,why", [
    ("}\nserver { listen 80; }\n", "line 1: this '}' would close the app's server block early"),
    ("location / {\n  return 204;\n}\n}\n", "line 4: this '}' would close"),
    ("location / {\n  return 204;\n", "line 1: this '{' is never closed"),
    ("if ($x) { return 403; }}", "line 1: this '}' would close"),
])
def test_snippet_file_with_unbalanced_braces_is_refused(tmp_path, text, why):
    path = tmp_path / "extra.conf"
    path.write_text(text)
    env_file = write_env(tmp_path, f"NGINX_SNIPPET_FILE={path}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(env_file=env_file, environ={}, require_repo=False)
    assert_names_everything(err.value, "NGINX_SNIPPET_FILE", str(path), [env_file])
    assert "balanced braces" in str(err.value) and why in str(err.value)


def test_snippet_file_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "extra.conf"
    path.write_bytes(b"\xff\xfe binary")
    with pytest.raises(ConfigError) as err:
        make_settings(NGINX_SNIPPET_FILE=str(path))
    assert "UTF-8" in str(err.value) and err.value.key == "NGINX_SNIPPET_FILE"


def test_snippet_file_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        make_settings(NGINX_SNIPPET_FILE=str(tmp_path))
    assert "readable file" in str(err.value)
