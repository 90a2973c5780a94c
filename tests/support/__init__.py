"""Helpers the tests share, imported by name (`from support.host_output import ...`).

pyproject.toml's pytest `pythonpath` puts tests/ on sys.path. Test modules
import these, never each other and never a conftest.py.
"""
