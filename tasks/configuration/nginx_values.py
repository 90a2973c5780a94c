"""The checks of the files and paths nginx serves from this app's settings:
NGINX_SNIPPET_FILE (its braces balance), ASSET_PATHS, MAINTENANCE_PAGE_FILE.
Each returns the value it allows or raises Invalid, as values.py's do.
"""

import os
import re

from .values import Invalid, check_local_file


def check_nginx_snippet_file(v):
    return check_local_file(v)


def brace_problem(text):
    """Why ``text`` cannot sit inside a server block, or None when its braces balance.

    Braces in comments, quoted strings and ``${variable}`` do not count, as
    nginx's own parser reads them.
    """
    opened, line, i = [], 1, 0
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == "#":
            while i + 1 < len(text) and text[i + 1] != "\n":
                i += 1
        elif ch in "'\"":
            quote = ch
            i += 1
            while i < len(text) and text[i] != quote:
                if text[i] == "\\":
                    i += 1
                elif text[i] == "\n":
                    line += 1
                i += 1
        elif ch == "$" and text[i + 1:i + 2] == "{":
            i = text.find("}", i) if "}" in text[i:] else len(text)
        elif ch == "{":
            opened.append(line)
        elif ch == "}":
            if not opened:
                return (f"line {line}: this '}}' would close the app's server block "
                        f"early")
            opened.pop()
        i += 1
    if opened:
        return f"line {opened[-1]}: this '{{' is never closed"
    return None


def read_nginx_snippet(path):
    """The text of NGINX_SNIPPET_FILE, checked to stay inside the server block."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            data = f.read()
        text = data.decode("utf-8")
    except OSError as exc:
        raise Invalid(f"allowed: a readable file on this machine ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise Invalid("allowed: a UTF-8 text file of nginx directives") from None
    if "\x00" in text:
        raise Invalid("allowed: a text file of nginx directives (it has NUL characters)")
    problem = brace_problem(text)
    if problem:
        raise Invalid(f"allowed: nginx directives for inside the server block, with "
                      f"balanced braces ({problem})")
    return text.replace("\r\n", "\n").strip("\n")


# ASSET_PATHS: URL path prefixes that become nginx `location` prefixes, so
# only characters nginx reads as part of one plain word.
ASSET_PATH_RE = re.compile(r"/[A-Za-z0-9._~@+/-]*")


def check_asset_paths(v):
    """ASSET_PATHS: path prefixes separated by spaces (empty: no bridging) -> tuple."""
    paths = tuple(dict.fromkeys(v.split()))
    for path in paths:
        if not ASSET_PATH_RE.fullmatch(path) or "//" in path or "/../" in path + "/":
            raise Invalid("allowed: URL path prefixes separated by spaces, each starting "
                          "with '/' (letters, digits, '.', '_', '~', '@', '+', '-', '/'; "
                          "e.g. /assets/ /static/), or empty to turn bridging off")
    if "/" in paths:
        raise Invalid("allowed: prefixes narrower than '/' (every 404 would be asked of "
                      "the other colour), e.g. /assets/ /static/; empty turns bridging off")
    return paths


MAINTENANCE_PAGE_MAX_BYTES = 1024 * 1024


def check_maintenance_page_file(v):
    """MAINTENANCE_PAGE_FILE: a readable local file of at most 1 MB."""
    path = check_local_file(v)
    if path and os.path.getsize(path) > MAINTENANCE_PAGE_MAX_BYTES:
        raise Invalid(f"allowed: a file of at most 1 MB (it has "
                      f"{os.path.getsize(path)} bytes)")
    return path
