"""Checks of configuration values: each takes the raw text and returns the
typed value, or raises Invalid with the sentence that says what is allowed.

Pure functions; tasks/configuration/settings.py names which check each key gets.
"""

import difflib
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
GIT_URL_RE = re.compile(r"(https?|ssh|git|file)://[^\s'\"\\\x00-\x1f\x7f]+")
GIT_SCP_RE = re.compile(r"([A-Za-z0-9._-]+@)?[A-Za-z0-9._-]+:[^\s'\"\\\x00-\x1f\x7f]+")
GIT_PATH_RE = re.compile(r"(/|~/)[^\s'\"\\\x00-\x1f\x7f]*")
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


# Numbers are plain ASCII decimals: str.isdigit() also takes '²' (which
# int() refuses), int() and float() take '٣', ' 5', '1_0', '1e9', 'nan' and
# 'inf', and int() refuses more than 4300 digits. A bound on the digits keeps
# every conversion below from raising.
WHOLE_RE = re.compile(r"[0-9]{1,15}")
DECIMAL_RE = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?|\.[0-9]{1,9}")


def whole_number(v):
    """The int of plain ASCII digits ('90'), else None."""
    return int(v) if isinstance(v, str) and WHOLE_RE.fullmatch(v) else None


def decimal_number(v):
    """The float of a plain decimal ('90', '0.5', '.5'), else None: no sign,
    exponent, spaces, '_', 'nan' or digits other than ASCII ones."""
    return float(v) if isinstance(v, str) and DECIMAL_RE.fullmatch(v) else None


def _is_digits(v):
    return whole_number(v) is not None


def check_port(v):
    port = whole_number(v)
    if port is None or not 1 <= port <= 65535:
        raise Invalid("allowed: a port number from 1 to 65535")
    return port


# Git keeps a ref in a file named after it: a part longer than a file name
# (255 bytes) cannot exist, and no host needs a longer ref name at all.
MAX_REF_LENGTH = 255


def check_branch(v):
    """Git's ref-name rules (git check-ref-format), narrowed to characters that
    are safe anywhere."""
    allowed = (f"allowed: a git branch name of at most {MAX_REF_LENGTH} letters, digits, "
               "'.', '_', '-' and '/', not starting with '-', '.' or '/', without "
               "'..' or '//', no part starting with '.' or ending in '.lock', "
               "not ending in '/' or '.'")
    if (len(v) > MAX_REF_LENGTH or not REF_CHARS_RE.fullmatch(v) or v[0] in "-./"
            or ".." in v or "//" in v or v.endswith(("/", "."))
            or any(part.startswith(".") or part.endswith(".lock") for part in v.split("/"))):
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
                      f"or tag name of at most {MAX_REF_LENGTH} letters, digits, '.', '_', "
                      "'-', '/', not starting with '-' (git's ref name rules)") from None


MAX_GIT_REPO_LENGTH = 1024


def check_git_repo(v):
    if len(v) > MAX_GIT_REPO_LENGTH or v.startswith("-") or not (GIT_URL_RE.fullmatch(v) or GIT_SCP_RE.fullmatch(v)
                                 or GIT_PATH_RE.fullmatch(v)):
        raise Invalid("allowed: a URL (https://, ssh://, git://, file://), "
                      "user@host:path, or an absolute path on the host; no "
                      "spaces, quotes, backslashes or control characters, at most "
                      f"{MAX_GIT_REPO_LENGTH} characters")
    return v


def check_server_name(v):
    names = [n for n in re.split(r"[ \t]+", v) if n]
    if not names or not all(n == "_" or (len(n) <= 253 and HOSTNAME_RE.fullmatch(n))
                            for n in names):
        raise Invalid("allowed: '_' or host names (letters, digits, '-', '.', "
                      "an optional leading '*.', at most 253 characters each), "
                      "separated by spaces")
    return " ".join(names)


MAX_PATH_LENGTH = 1024


def check_abs_path(v):
    if len(v) > MAX_PATH_LENGTH or not SAFE_PATH_RE.fullmatch(v) or "/../" in v + "/":
        raise Invalid("allowed: an absolute path of letters, digits and "
                      f"'._@+-/', without '..', at most {MAX_PATH_LENGTH} characters")
    return v.rstrip("/") or "/"


def check_optional_abs_path(v):
    return check_abs_path(v) if v else ""


def check_deploy_dir(v):
    path = check_abs_path(v)
    if path in ("/", "/etc", "/usr", "/var", "/home", "/root", "/srv", "/tmp"):
        raise Invalid("allowed: a directory of this app's own, such as /srv/<APP_NAME>")
    return path


def check_health_path(v):
    if len(v) > MAX_PATH_LENGTH or not HEALTH_PATH_RE.fullmatch(v):
        raise Invalid("allowed: a URL path starting with '/', without spaces "
                      f"or quotes, at most {MAX_PATH_LENGTH} characters")
    return v


# Seconds in any key or flag: a day is more than any step may take.
MAX_SECONDS = 86400
MAX_COUNT = 1000000


def check_positive_number(v):
    n = decimal_number(v)
    if n is None or not 0 < n <= MAX_SECONDS:
        raise Invalid(f"allowed: a number greater than 0 and at most {MAX_SECONDS} "
                      "(digits and an optional '.', such as 10 or 0.5)")
    return n


def check_positive_int(v):
    n = whole_number(v)
    if n is None or not 1 <= n <= MAX_COUNT:
        raise Invalid(f"allowed: a whole number of 1 or more, at most {MAX_COUNT}")
    return n


def did_you_mean(name, names):
    """' (did you mean main?)' when ``name`` is close to some of ``names``, else ''."""
    close = difflib.get_close_matches(name or "", sorted(set(names or ())), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def check_non_negative_int(v):
    n = whole_number(v)
    if n is None or n > MAX_SECONDS:
        raise Invalid(f"allowed: a whole number of 0 or more, at most {MAX_SECONDS}")
    return n


def check_network(v):
    if v not in ("bridge", "host"):
        raise Invalid("allowed: 'bridge' or 'host'")
    return v


def check_build_on(v):
    if v not in ("host", "local"):
        raise Invalid("allowed: 'host' (the host checks out and builds) or 'local' "
                      "(this machine builds and ships the image)")
    return v


def check_pre_switch_on(v):
    if v not in ("first", "every"):
        raise Invalid("allowed: 'first' (PRE_SWITCH_CMD on the run's first host only, so one "
                      "shared database migrates once) or 'every' (on each host)")
    return v


def check_local_dir(v):
    """A directory on this machine (made when missing): ~ expanded, one line."""
    if not v or not v.strip():
        raise Invalid("allowed: a directory on this machine, e.g. ~/.cache/bluegreen")
    return os.path.abspath(os.path.expanduser(v))


def check_ip(v):
    try:
        if "%" in v:  # an IPv6 scope ("fe80::1%eth0") may hold any text
            raise ValueError(v)
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise Invalid("allowed: an IP address such as 127.0.0.1 or 0.0.0.0 "
                      "(no IPv6 scope)") from None


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


# Linux's PATH_MAX: no file on this machine has a longer name.
MAX_LOCAL_PATH = 4096


def check_local_path(v):
    if len(v) > MAX_LOCAL_PATH:
        raise Invalid(f"allowed: a path on this machine of at most {MAX_LOCAL_PATH} characters")
    return os.path.expanduser(v) if v else ""


def check_local_file(v):
    if not v:
        return ""
    check_local_path(v)
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
# ASCII digits only (a plain \\d also matches '٣', which nginx refuses), and
# at most 15 of them, so int() never meets a number it cannot convert.
DURATION_RE = re.compile(r"(?:[0-9]{1,15}(?:ms|s|m|h|d))+")
DURATION_PART_RE = re.compile(r"([0-9]{1,15})(ms|s|m|h|d)")
UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
SIZE_RE = re.compile(r"([0-9]{1,15})([kmgKMG]?)")
SIZE_FACTOR = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
# nginx refuses what overflows its 64-bit numbers; a year, or a pebibyte,
# is past any sensible timeout or size and far below that.
MAX_DURATION_SECONDS = 365 * 86400
MAX_SIZE_BYTES = 1024 ** 5


def duration_seconds(v, units=tuple(UNIT_SECONDS)):
    """Seconds in a duration such as '90', '5s', '500ms', '1h30m'; None if it is not one
    (or more than a year)."""
    if _is_digits(v):
        seconds = float(int(v))
    elif not DURATION_RE.fullmatch(v):
        return None
    else:
        parts = DURATION_PART_RE.findall(v)
        order = [list(UNIT_SECONDS).index(unit) for _, unit in parts]
        if any(unit not in units for _, unit in parts) or order != sorted(set(order)):
            return None  # an unknown unit, or units out of order or repeated ("5s1m")
        seconds = sum(int(n) * UNIT_SECONDS[unit] for n, unit in parts)
    return seconds if seconds <= MAX_DURATION_SECONDS else None


NGINX_DURATION = "an nginx duration such as 60s, 500ms, 1m or 1h30m (digits and a " \
                 "unit ms, s, m, h or d, largest first, no spaces, at most 365d)"


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
    if size_bytes(v) is None:
        raise Invalid("allowed: a size in bytes with an optional k, m or g, such as "
                      "10m, 512k or 1g (0 = unlimited), no spaces, at most 1048576g")
    return v.lower()


def check_size_bytes(v):
    size = size_bytes(v)
    if size is None:
        raise Invalid("allowed: a size with an optional k, m or g, such as 2g or 500m, "
                      "no spaces, at most 1048576g")
    return size


def size_bytes(v):
    """Bytes in a size such as '512', '10m', '2g'; None if it is not one (or past 1 PiB)."""
    m = SIZE_RE.fullmatch(v)
    if not m:
        return None
    size = int(m.group(1)) * SIZE_FACTOR[m.group(2).lower()]
    return size if size <= MAX_SIZE_BYTES else None


def check_timeout_seconds(v):
    """A bound for a long step: plain seconds, or a duration in s, m and h."""
    seconds = decimal_number(v)
    if seconds is None:
        seconds = duration_seconds(v, units=("h", "m", "s"))
    if seconds is None or not 0 < seconds <= 7 * 86400:
        raise Invalid("allowed: a duration such as 30m, 90s, 1h or 1h30m, or plain "
                      "seconds, more than 0 and at most 168h")
    return float(seconds)


def check_image_ref(v):
    """A Docker image reference, e.g. clojure:temurin-21-tools-deps."""
    if not IMAGE_REF_RE.fullmatch(v) or len(v) > 255:
        raise Invalid("allowed: a Docker image reference such as "
                      "clojure:temurin-21-tools-deps, registry.example.com/team/clojure:21 "
                      "or name@sha256:<digest> (lower-case name, no spaces)")
    return v


def check_fraction(v):
    n = decimal_number(v)
    if n is None or not 0 < n < 1:
        raise Invalid("allowed: a number between 0 and 1, both excluded (0.05 = 5%)")
    return n
