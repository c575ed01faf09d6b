"""The per-trap setup secret: the key of the setup link and the page's password.

Random, typed by a technician on a phone in the cold, so it is short words of
letters and digits that cannot be confused (no 0/o, 1/l): 5 groups of 5
from 32 characters, 125 bits. Kept in a file only its owner can read (0600);
a file others can read is refused, because anyone on the Pi could then
open the link.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from trapd.errors import TrapdError

ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"   # 32: no 0/o, 1/l
GROUPS, GROUP_CHARS = 5, 5


class SecretError(TrapdError):
    """The setup secret is missing, unreadable or readable by others."""


def new_secret() -> str:
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(GROUP_CHARS))
                    for _ in range(GROUPS))


def create_secret(path: str | os.PathLike) -> tuple[str, bool]:
    """The secret in `path`, made (0600) if there is none; (secret, made now)."""
    path = Path(path)
    if path.exists():
        return read_secret(path).decode(), False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = new_secret()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            if os.geteuid() == 0:    # `sudo trapd setup --secret`: the daemon's user must read it
                folder = os.stat(path.parent)
                os.fchown(f.fileno(), folder.st_uid, folder.st_gid)
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise SecretError(f"cannot write the setup secret {path}: {exc.strerror or exc}") from None
    return secret, True


def secret_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with the secret file (for check-config), or None."""
    try:
        read_secret(path)
    except SecretError as exc:
        return str(exc)
    return None


def read_secret(path: str | os.PathLike) -> bytes:
    """The secret's bytes (the link's authkey); SecretError with one line if it
    is missing, empty or readable by anyone but its owner."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise SecretError(f"no setup secret at {path}: make one with `trapd setup --secret`") from None
    except OSError as exc:
        raise SecretError(f"cannot read the setup secret {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd) as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise SecretError(f"setup secret {path} is readable by others (mode {mode:04o}): "
                              f"refused; chmod 600 {path}")
        secret = f.read().strip()
    if not secret:
        raise SecretError(f"setup secret {path} is empty: remove it and run `trapd setup --secret`")
    return secret.encode()
