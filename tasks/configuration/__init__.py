"""Settings: the keys, where each value came from, and the check of every value.

``keys`` (the KEYS table: one row per key), ``settings`` (the layers
.env < hosts.yml env: < BLUEGREEN_* < flags, and Settings), ``values``
(what each key allows), ``nginx_values`` (the keys whose values reach the
nginx file), ``env_layers`` (.env and the environment), ``inventory``
(hosts.yml).

May import: errors, output. The bottom layer.
"""
