"""Plugins of the whole test tree.

tests/e2e/ownhostkit.py holds the fixtures of a host with a Docker daemon of
its own (own_daemon, own_host, local_app, isolated_host, local_project), and
tests/e2e/sslkit.py `readable_deploy_dir`: plugins, so test modules take
these fixtures by name and import only plain helpers. pytest
accepts `pytest_plugins` only in a conftest it loads before collection (this
one, not tests/e2e/conftest.py: `pytest tests` would refuse that one).
Fixture functions run only when a test asks for them.
"""

pytest_plugins = ["ownhostkit", "sslkit"]
