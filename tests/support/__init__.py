"""Helpers the tests share, imported by name (`from support.facts import ...`).

pyproject.toml's pytest `pythonpath` puts tests/ on sys.path. Test modules
import these, never each other and never a conftest.py.
"""
