"""Host keys and private keys: known_hosts lines, fingerprints, key text.

Pure helpers plus the two missing-host-key policies (reject, OpenSSH's
accept-new). paramiko does the parsing and matching; this module adds what
an operator needs to see: where a key came from and its fingerprint.
"""

import io
import os
import re
from typing import Callable, List, NamedTuple

import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys, InvalidHostKey

from ..errors import BAD_INPUT, Failure


def key_fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's fingerprint of a key: `SHA256:<base64, no padding>`."""
    return key.fingerprint


def known_hosts_name(host: str, port: int) -> str:
    """The name OpenSSH (and paramiko) file a host's key under."""
    return host if int(port) == 22 else f"[{host}]:{int(port)}"


def known_hosts_line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}"


class KnownHost(NamedTuple):
    source: str  # a file path or "DEPLOY_KNOWN_HOSTS"
    lineno: int
    entry: HostKeyEntry

    @property
    def where(self) -> str:
        if self.source == "DEPLOY_KNOWN_HOSTS":
            return f"line {self.lineno} of DEPLOY_KNOWN_HOSTS"
        return f"{self.source}:{self.lineno}"


def parse_known_hosts(text: str, source: str) -> List[KnownHost]:
    """Every usable line, with its line number; bad or unsupported lines are skipped.

    Skipping (rather than failing) matches OpenSSH, and paramiko's own loader
    raises on one corrupt base64 line, which would lock an operator out over
    an unrelated entry. Marker lines (@cert-authority, @revoked) are not
    supported by paramiko and are skipped too.
    """
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("@"):
            continue
        try:
            entry = HostKeyEntry.from_line(line, lineno)
        except (InvalidHostKey, paramiko.SSHException, ValueError):
            continue
        if entry is not None and entry.key is not None:
            found.append(KnownHost(source, lineno, entry))
    return found


def host_matches(name: str, entry: HostKeyEntry) -> bool:
    """Whether a known_hosts entry names `name` (plain or hashed names)."""
    for pattern in entry.hostnames:
        if pattern.startswith("|1|"):
            if HostKeys.hash_host(name, pattern) == pattern:
                return True
        elif pattern == name:
            return True
    return False


def normalize_key_text(text: str) -> str:
    """Undo what CI secret stores do to a private key: CRLF, literal \\n, indent."""
    text = text.strip().replace("\r\n", "\n").replace("\r", "\n")
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    return "\n".join(line.strip() for line in text.split("\n")) + "\n"


def load_private_key(text: str, source: str = "DEPLOY_SSH_KEY") -> paramiko.PKey:
    """A private key from its text (OpenSSH or PEM format); Failure(code=2) if unusable."""
    text = normalize_key_text(text)
    if re.match(r"(ssh-|ecdsa-|sk-)\S+ AAAA", text):
        raise Failure(
            f"{source} holds a public key, not a private key",
            f"put the private key (the file without .pub, starting with '-----BEGIN') in {source}",
            code=BAD_INPUT,
        )
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException:
            raise Failure(
                f"{source} is encrypted with a passphrase",
                "use a deploy key without a passphrase for unattended runs "
                "(keep it in the CI secret store instead)",
                code=BAD_INPUT,
            ) from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError) as exc:
            errors.append(f"{cls.__name__}: {exc}")
    raise Failure(
        f"{source} is not a private key this tool can read (tried Ed25519, ECDSA, RSA)",
        f"paste the whole key file, from '-----BEGIN' to '-----END ... KEY-----' ({errors[-1]})",
        code=BAD_INPUT,
    )


class UnknownHostKey(paramiko.SSHException):
    def __init__(self, name: str, key: paramiko.PKey):
        super().__init__(f"no known host key for {name}")
        self.name, self.key = name, key


class RejectUnknown(paramiko.RejectPolicy):
    """RejectPolicy that keeps the offered key, so the error can show its fingerprint."""

    def missing_host_key(self, client, hostname, key):
        raise UnknownHostKey(hostname, key)


class AcceptNew(paramiko.MissingHostKeyPolicy):
    """OpenSSH's `accept-new`: trust a host seen for the first time, and remember it.

    Only reached when no key at all is known for the host; a changed key is
    refused by paramiko before a policy is asked.
    """

    def __init__(self, path: str, on_accept: Callable[[str, paramiko.PKey], None]):
        self.path = path
        self.on_accept = on_accept

    def missing_host_key(self, client, hostname, key):
        append_known_host(self.path, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.on_accept(hostname, key)


def append_known_host(path: str, name: str, key: paramiko.PKey) -> None:
    """Append one line to a known_hosts file, creating it (0600) and its directory (0700)."""
    line = known_hosts_line(name, key) + "\n"
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line  # never glue our entry onto a last line without newline
            f.write(line.encode("ascii"))
    except OSError as exc:
        raise Failure(
            f"cannot record the new host key of {name} in {path}: {exc.strerror or exc}",
            "make the file writable, or add the key yourself (ssh-keyscan) and connect without --accept-new-host-key",
            code=BAD_INPUT,
        ) from exc
