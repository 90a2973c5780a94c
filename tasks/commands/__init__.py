"""Builders of the scripts a task runs on the host, by topic, beside the parsers of what they print.

Each builder is a pure function that returns one step's shell script
(every value shlex-quoted); where a script's output is read, its parser
sits in the same module, as pyinfra keeps a fact's command and process
together. ``base`` holds what every script is made of (markers, sudo, the
compose command, atomic writes, exit codes).

May import: model, configuration, errors, output. No I/O of its own.
"""
