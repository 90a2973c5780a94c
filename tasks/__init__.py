"""bluegreen: zero-downtime blue/green releases of a Dockerised app behind nginx."""

from invoke import Collection

from .cli import TASKS

ns = Collection(*TASKS)
