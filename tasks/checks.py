"""Checks of configuration values: each takes the raw text and returns the
typed value, or raises Invalid with the sentence that says what is allowed.

Pure functions; tasks/config.py names which check each key gets.
"""

import ipaddress
import os
import re
import shlex

class Invalid(ValueError):
    """Raised by a check with the sentence that says what is allowed."""


APP_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
HOSTNAME_RE = re.compile(
    r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
# Paths reach shells and nginx files: keep them to characters that need no
# quoting anywhere (they are still quoted in every script).
SAFE_PATH_RE = re.compile(r"/[A-Za-z0-9._@+/-]*")
HEALTH_PATH_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*")
REF_CHARS_RE = re.compile(r"[A-Za-z0-9._/-]+")
SHA_RE = re.compile(r"[0-9a-fA-F]{4,40}")
GIT_URL_RE = re.compile(r"(https?|ssh|git|file)://[^\s'\"\\]+")
GIT_SCP_RE = re.compile(r"([A-Za-z0-9._-]+@)?[A-Za-z0-9._-]+:[^\s'\"\\]+")
GIT_PATH_RE = re.compile(r"(/|~/)[^\s'\"\\]*")
# Docker's image reference: [registry[:port]/]path[:tag][@digest]. It is the
# FROM of a rendered Dockerfile: a newline or a space would add instructions.
IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF_RE = re.compile(
    r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::\d+)?/)?"
    rf"{IMAGE_COMPONENT}(?:/{IMAGE_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")
BOOLS = {"true": True, "yes": True, "1": True, "on": True,
         "false": False, "no": False, "0": False, "off": False, "": False}


def check_app_name(v):
    if not APP_NAME_RE.fullmatch(v):
        raise Invalid("allowed: lower-case letters, digits and '-', starting "
                      "with a letter or digit, at most 40 characters")
    return v


def _is_digits(v):
    """ASCII digits only: str.isdigit() also accepts '²', which int() refuses."""
    return v.isascii() and v.isdigit()


def check_port(v):
    if not _is_digits(v) or not 1 <= int(v) <= 65535:
        raise Invalid("allowed: a port number from 1 to 65535")
    return int(v)


def check_branch(v):
    """Git's ref-name rules, narrowed to characters that are safe anywhere."""
    allowed = ("allowed: a git branch name of letters, digits, '.', '_', "
               "'-' and '/', not starting with '-', '.' or '/', without "
               "'..' or '//', not ending in '/', '.' or '.lock'")
    if (not REF_CHARS_RE.fullmatch(v) or v[0] in "-./" or ".." in v
            or "//" in v or v.endswith(("/", ".", ".lock"))
            or any(part.startswith(".") for part in v.split("/"))):
        raise Invalid(allowed)
    return v


def check_ref(v):
    """A commit sha, or a branch or tag name."""
    if SHA_RE.fullmatch(v):
        return v
    try:
        return check_branch(v)
    except Invalid:
        raise Invalid("allowed: a commit sha (4 to 40 hex digits) or a branch "
                      "or tag name of letters, digits, '.', '_', '-', '/', "
                      "not starting with '-'") from None


def check_git_repo(v):
    if v.startswith("-") or not (GIT_URL_RE.fullmatch(v) or GIT_SCP_RE.fullmatch(v)
                                 or GIT_PATH_RE.fullmatch(v)):
        raise Invalid("allowed: a URL (https://, ssh://, git://, file://), "
                      "user@host:path, or an absolute path on the host; no "
                      "spaces, quotes or backslashes")
    return v


def check_server_name(v):
    names = v.split()
    if not names or not all(n == "_" or HOSTNAME_RE.fullmatch(n) for n in names):
        raise Invalid("allowed: '_' or host names (letters, digits, '-', '.', "
                      "an optional leading '*.'), separated by spaces")
    return " ".join(names)


def check_abs_path(v):
    if not SAFE_PATH_RE.fullmatch(v) or "/../" in v + "/":
        raise Invalid("allowed: an absolute path of letters, digits and "
                      "'._@+-/', without '..'")
    return v.rstrip("/") or "/"


def check_optional_abs_path(v):
    return check_abs_path(v) if v else ""


def check_deploy_dir(v):
    path = check_abs_path(v)
    if path in ("/", "/etc", "/usr", "/var", "/home", "/root", "/srv", "/tmp"):
        raise Invalid("allowed: a directory of this app's own, such as /srv/<APP_NAME>")
    return path


def check_health_path(v):
    if not HEALTH_PATH_RE.fullmatch(v):
        raise Invalid("allowed: a URL path starting with '/', without spaces "
                      "or quotes")
    return v


def check_positive_number(v):
    try:
        n = float(v)
    except ValueError:
        n = 0
    if not n > 0 or n != n or n == float("inf"):
        raise Invalid("allowed: a number greater than 0")
    return n


def check_positive_int(v):
    if not _is_digits(v) or int(v) < 1:
        raise Invalid("allowed: a whole number of 1 or more")
    return int(v)


def check_non_negative_int(v):
    if not _is_digits(v):
        raise Invalid("allowed: a whole number of 0 or more")
    return int(v)


def check_network(v):
    if v not in ("bridge", "host"):
        raise Invalid("allowed: 'bridge' or 'host'")
    return v


def check_ip(v):
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise Invalid("allowed: an IP address such as 127.0.0.1 or 0.0.0.0") from None


def check_command(v):
    if not v.strip():
        raise Invalid("allowed: a command line (it cannot be empty)")
    return check_optional_command(v)


def check_optional_command(v):
    try:
        shlex.split(v)
    except ValueError:
        raise Invalid("allowed: a command line a shell can parse (a quote is not "
                      "closed)") from None
    return v.strip()


def check_bool(v):
    if v.lower() not in BOOLS:
        raise Invalid("allowed: true or false")
    return BOOLS[v.lower()]


def check_local_path(v):
    return os.path.expanduser(v) if v else ""


def check_local_file(v):
    if not v:
        return ""
    path = os.path.expanduser(v)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise Invalid("allowed: a readable file on this machine (it is not there)")
    return path


def check_private_key(v):
    if v and "PRIVATE KEY" not in v:
        raise Invalid("allowed: the text of a private key ('-----BEGIN ... "
                      "PRIVATE KEY-----' ...)")
    return v


def check_known_hosts_text(v):
    return v


# nginx durations: digits and a unit, largest unit first ("1h30m"); nginx
# itself takes a bare number as seconds.
DURATION_RE = re.compile(r"(?:\d+(?:ms|s|m|h|d))+")
DURATION_PART_RE = re.compile(r"(\d+)(ms|s|m|h|d)")
UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
SIZE_RE = re.compile(r"(\d+)([kmg]?)", re.I)
SIZE_FACTOR = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def duration_seconds(v, units=tuple(UNIT_SECONDS)):
    """Seconds in a duration such as '90', '5s', '500ms', '1h30m'; None if it is not one."""
    if _is_digits(v):
        return float(int(v))
    if not DURATION_RE.fullmatch(v):
        return None
    parts = DURATION_PART_RE.findall(v)
    order = [list(UNIT_SECONDS).index(unit) for _, unit in parts]
    if any(unit not in units for _, unit in parts) or order != sorted(set(order)):
        return None  # an unknown unit, or units out of order or repeated ("5s1m")
    return sum(int(n) * UNIT_SECONDS[unit] for n, unit in parts)


NGINX_DURATION = "an nginx duration such as 60s, 500ms, 1m or 1h30m (digits and a " \
                 "unit ms, s, m, h or d, largest first, no spaces)"


def check_nginx_duration(v):
    seconds = duration_seconds(v)
    if seconds is None or seconds <= 0:
        raise Invalid(f"allowed: {NGINX_DURATION}, more than 0")
    return v


def check_keepalive_min_timeout(v):
    """auto (decided by the host's nginx version), off, or a duration."""
    if v.lower() in ("auto", "off"):
        return v.lower()
    if duration_seconds(v) is None:
        raise Invalid(f"allowed: auto, off, or {NGINX_DURATION}")
    return v


def check_nginx_size(v):
    """nginx's own size syntax, kept as text for the nginx file; 0 = unlimited."""
    if not v.isascii() or not SIZE_RE.fullmatch(v):
        raise Invalid("allowed: a size in bytes with an optional k, m or g, such as "
                      "10m, 512k or 1g (0 = unlimited), no spaces")
    return v.lower()


def check_size_bytes(v):
    if not v.isascii() or not SIZE_RE.fullmatch(v):
        raise Invalid("allowed: a size with an optional k, m or g, such as 2g or 500m, "
                      "no spaces")
    number, unit = SIZE_RE.fullmatch(v).groups()
    return int(number) * SIZE_FACTOR[unit.lower()]


def check_timeout_seconds(v):
    """A bound for a long step: plain seconds, or a duration in s, m and h."""
    if re.fullmatch(r"\d+\.\d+", v):
        seconds = float(v)
    else:
        seconds = duration_seconds(v, units=("h", "m", "s"))
    if seconds is None or seconds <= 0:
        raise Invalid("allowed: a duration such as 30m, 90s, 1h or 1h30m, or plain "
                      "seconds, more than 0")
    return float(seconds)


def check_image_ref(v):
    """A Docker image reference, e.g. clojure:temurin-21-tools-deps."""
    if not IMAGE_REF_RE.fullmatch(v) or len(v) > 255:
        raise Invalid("allowed: a Docker image reference such as "
                      "clojure:temurin-21-tools-deps, registry.example.com/team/clojure:21 "
                      "or name@sha256:<digest> (lower-case name, no spaces)")
    return v


def check_fraction(v):
    try:
        n = float(v)
    except ValueError:
        n = None
    if n is None or not 0 < n < 1:
        raise Invalid("allowed: a number between 0 and 1, both excluded (0.05 = 5%)")
    return n


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
