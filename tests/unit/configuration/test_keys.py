"""configuration/keys.py: the KEYS table, one row per key, and the places that
must agree with it (Settings' fields, .env.example, README's key list).
"""

from dotenv import dotenv_values

import pytest

from support.checkout import REPO
from support.plain_settings import make_settings
from tasks.configuration import keys
from tasks.configuration.keys import CHECKS, Key
from tasks.configuration.settings import NOT_KEYS, Settings, global_defaults, load_settings
from tasks.configuration.values import check_positive_int


def test_every_key_has_a_check_and_a_field():
    names = [key.name for key in keys.KEYS]
    assert len(set(names)) == len(names), "a key listed twice"
    assert list(global_defaults()) == names and list(CHECKS) == names
    fields = set(Settings.__dataclass_fields__) - NOT_KEYS
    assert fields == {key.attribute for key in keys.KEYS}
    assert names[:8] == ["APP_CMD", "APP_PORT", "BLUE_BRANCH", "GREEN_BRANCH",
                        "GIT_REPO", "SERVER_NAME", "SSL_CERT_FILE", "SSL_KEY_FILE"]


def test_every_default_passes_its_check_into_the_fields_type():
    s = make_settings()
    for name, field in Settings.__dataclass_fields__.items():
        if name in NOT_KEYS:
            continue
        value = getattr(s, name)
        assert type(value) is field.type, (name, value, field.type)
    assert all(key.meaning and "\n" not in key.meaning for key in keys.KEYS)


def test_the_example_env_file_is_complete_and_valid():
    example = REPO / ".env.example"
    values = dotenv_values(example, interpolate=False)
    assert list(values) == list(global_defaults()), \
        "every key of the KEYS table, in its order, and no other"
    for key in keys.KEYS:
        expected = key.default if key.example is None else key.example
        assert values[key.name] == expected, f".env.example gives another value for {key.name}"
    s = load_settings(env_file=str(example), environ={})  # GIT_REPO is set
    assert s.git_repo
    # every key line follows a comment saying what it is
    lines = example.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"
    text = example.read_text()
    for word in ("BLUEGREEN_", "BLUEGREEN_ENV_FILE", "BLUEGREEN_HOSTS_FILE"):
        assert word in text


def readme_key_rows():
    """{key: default cell} of the key table in docs/configuration.md."""
    page = (REPO / "docs" / "configuration.md").read_text()
    table = page.split("\n| key | default | meaning |\n", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            assert len(cells) == 3 and cells[2], f"a row needs key, default, meaning: {line}"
            assert cells[0] not in rows, f"{cells[0]} has two rows"
            rows[cells[0]] = cells[1]
    return rows


def test_the_readme_documents_every_key_and_no_other():
    rows = readme_key_rows()
    assert list(rows) == [f"`{key.name}`" for key in keys.KEYS], \
        "docs/configuration.md's key table: every key of the KEYS table, in its order"
    for key in keys.KEYS:
        assert rows[f"`{key.name}`"] == key.documented_default(), \
            f"docs/configuration.md gives another default for {key.name}"


def test_the_docs_check_would_notice_a_stale_row(monkeypatch):
    """The two checks above must fail when the table changes and the docs do not."""
    extra = Key("SHINY_NEW_KEY", "7", check_positive_int, "nothing yet")
    monkeypatch.setattr(keys, "KEYS", keys.KEYS + (extra,))
    with pytest.raises(AssertionError):
        test_the_readme_documents_every_key_and_no_other()
    with pytest.raises(AssertionError):
        test_the_example_env_file_is_complete_and_valid()
