"""Checks of the worker keys: SCALE, STOP_FIRST, VOLUMES, PROCFILE and
COMPOSE_OVERRIDE_FILE (its file is read and checked when the settings load).

Pure functions over the raw text, as in values.py: each returns the typed
value or raises Invalid with the sentence that says what is allowed.
"""

import re

import yaml

from .values import Invalid, check_local_file

PROCESS_TYPE_RE = re.compile(r"[A-Za-z0-9_-]+")
# A compose service is COLOUR-TYPE: Compose allows [a-zA-Z0-9._-] there.
VOLUME_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
VOLUME_PATH_RE = re.compile(r"/[A-Za-z0-9._@+/-]*")
# What the tool writes into every service itself: an override may not set them.
OWNED_KEYS = ("image", "build", "ports", "network_mode", "container_name", "command")


def short(text, limit=40):
    """A word of a value as an error shows it (the whole value is shown once already)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_scale(v):
    """`worker=2 clock=1` -> (("worker", 2), ("clock", 1))."""
    scale, seen = [], set()
    for word in v.split():
        name, sep, count = word.partition("=")
        if not sep or not PROCESS_TYPE_RE.fullmatch(name):
            raise Invalid(f"allowed: TYPE=N words separated by spaces, TYPE of "
                          f"[A-Za-z0-9_-] (worker=2 clock=1); {short(word)} is not one")
        if not (count.isascii() and count.isdigit()) or int(count) > 100:
            raise Invalid(f"allowed: a whole number of containers from 0 to 100 for each "
                          f"type; {short(name + '=' + count)} is not one")
        if name in seen:
            raise Invalid(f"allowed: each type once; {short(name)} is named twice")
        if name in ("web", "release"):
            raise Invalid(f"allowed: worker types only; {name} is not a worker "
                          "(web is the served process, release runs once per release)")
        seen.add(name)
        scale.append((name, int(count)))
    return tuple(scale)


def check_stop_first(v):
    names = tuple(v.split())
    for name in names:
        if not PROCESS_TYPE_RE.fullmatch(name):
            raise Invalid(f"allowed: process types of [A-Za-z0-9_-] separated by spaces; "
                          f"{short(name)} is not one")
    return names


def check_volumes(v):
    """`SOURCE:TARGET[:ro]` specs, space-separated."""
    specs = []
    for spec in v.split():
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise Invalid(f"allowed: SOURCE:TARGET or SOURCE:TARGET:ro, space-separated; "
                          f"{short(spec)} is not one")
        source, target = parts[0], parts[1]
        if not (VOLUME_PATH_RE.fullmatch(source) or VOLUME_NAME_RE.fullmatch(source)):
            raise Invalid(f"allowed: SOURCE an absolute path or a volume name "
                          f"([A-Za-z0-9_.-]); {short(source)} is neither")
        if not VOLUME_PATH_RE.fullmatch(target) or target == "/":
            raise Invalid(f"allowed: TARGET an absolute path in the container; "
                          f"{target!r} in {short(spec)} is not one")
        specs.append(spec)
    return tuple(specs)


def check_procfile(v):
    """A path inside the app's repository, or `none`."""
    if v == "none":
        return ""
    if not v or v.startswith("/") or ".." in v.split("/") or not re.fullmatch(
            r"[A-Za-z0-9._/-]+", v):
        raise Invalid("allowed: a relative path inside the app's repository "
                      "([A-Za-z0-9._/-], no ..), or none")
    return v


def check_compose_override_file(v):
    return check_local_file(v)


def read_compose_override(path):
    """The mapping in COMPOSE_OVERRIDE_FILE, checked: no key the tool owns."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise Invalid(f"allowed: a readable file on this machine ({exc.strerror})") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise Invalid(f"allowed: a YAML mapping of compose service keys ({exc})".replace(
            "\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Invalid("allowed: a YAML mapping of compose service keys (mem_limit: 512m ...)")
    for key in data:
        if key in OWNED_KEYS:
            raise Invalid(f"allowed: keys the tool does not own; {short(str(key))} is written by the "
                          f"tool itself (owned: {', '.join(OWNED_KEYS)}, labels bluegreen.*)")
    labels = data.get("labels") or {}
    names = labels if isinstance(labels, dict) else [str(x).split("=")[0] for x in labels]
    for name in names:
        if str(name).startswith("bluegreen."):
            raise Invalid(f"allowed: labels outside bluegreen.*; 'labels: {name}' is the "
                          "tool's own")
    return data
