"""What an operator types: the @task functions, their flags, the run over hosts.

The top layer. A task checks its flags (``flags``) before any connection,
then hands one flow per host to ``on_hosts``, which checks every host's
settings first and turns a Failure into two lines and an exit code.

May import: flows, and every layer below them (deploy, shipping,
connection, commands, model, configuration) and the top modules (errors,
output). Nothing below imports cli.
"""
