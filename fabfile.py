"""fab tasks for zero-downtime blue/green releases: `fab --list` shows them."""

from tasks import ns  # noqa: F401  (Fabric loads the collection named ns)
