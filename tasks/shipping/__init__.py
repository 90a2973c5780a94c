"""Images made on this machine and sent to the host: BUILD_ON=local and --image.

The local checkout and build (``local_build.Artifacts``, one build per
commit for every host of a run), the ``docker save`` archive read and
trimmed to the layers a host lacks (``image_archive``), gzip'd once per
run (``gzip_archive``), and the ship step over the task's connection.

May import: connection, commands, model, configuration, errors, output.
"""
