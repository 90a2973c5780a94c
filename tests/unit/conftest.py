"""Fixtures for the pure unit tests. Their helpers live in tests/support
(settings from plain dicts, real binaries, local runs of remote steps)."""

import pytest

from support.plain_settings import make_settings


@pytest.fixture
def settings():
    """A factory: settings(APP_NAME="shop", SSL_CERT_FILE=...)."""
    return make_settings
