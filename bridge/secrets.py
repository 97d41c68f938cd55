"""PINs at rest: AES-GCM with a key from a file or a systemd credential, made on first start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bridge.startup import StartupError

_CREDENTIAL_NAME = "lockbridge.key"


class PinCipher:
    """Encrypts and decrypts small secrets; the database never holds a PIN in clear."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the PIN key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, context: str) -> bytes:
        """Nonce followed by ciphertext; `context` (the row id) binds it to its row."""
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())

    def open(self, sealed: bytes, context: str) -> str:
        """The plaintext, or ValueError if the key or context is wrong."""
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], context.encode()).decode()
        except InvalidTag as exc:
            raise ValueError("cannot decrypt a stored PIN: wrong key file?") from exc


def key_path(configured: Path | None, state_dir: Path) -> Path:
    """Where the key is: the configured file, a systemd credential, or under the state dir."""
    if configured is not None:
        return configured
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / _CREDENTIAL_NAME).exists():
        return Path(cred_dir) / _CREDENTIAL_NAME
    return state_dir / "pin.key"


def load_or_create_key(path: Path) -> bytes:
    """Read the key, creating it with mode 0600 when absent; StartupError when it is unusable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return _create_key(path)
    except OSError as exc:
        raise StartupError(f"cannot read the PIN key {path} ({exc.strerror})",
                           _OWNER_FIX.format(path=path)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StartupError(f"the PIN key {path} is not a file",
                               "restore pin.key from the backup made with the database")
        if st.st_mode & 0o077 and not _is_credential(path):
            raise StartupError(
                f"the PIN key {path} is mode {stat.S_IMODE(st.st_mode):04o}, readable by "
                "other users", f"chmod 600 {path} (owned by the service user)")
        data = os.read(fd, 33)
    finally:
        os.close(fd)
    if len(data) != 32:
        raise StartupError(f"the PIN key {path} holds {len(data)} bytes, not 32",
                           "restore pin.key from the backup made with the database")
    return data


_OWNER_FIX = ("make it readable by the service user only: chown lockbridge:lockbridge {path} "
              "&& chmod 600 {path}")


def _create_key(path: Path) -> bytes:
    data = os.urandom(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise StartupError(f"cannot create the PIN key {path} ({exc.strerror})",
                           f"let the service user write {path.parent}: chown lockbridge:"
                           f"lockbridge {path.parent} && chmod 700 {path.parent}") from None
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return data


def _is_credential(path: Path) -> bool:
    """A systemd credential: systemd grants the service user read access through an ACL, which
    shows as group bits in the mode, on a private file system no other user can see."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    return cred_dir is not None and cred_dir != "" and path.parent == Path(cred_dir)
