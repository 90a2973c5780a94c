"""bluegreen: zero-downtime blue/green releases of a Dockerised app behind nginx."""

from invoke import Collection

from . import cli

ns = Collection()
for name in ("render",):
    ns.add_task(getattr(cli, name))
