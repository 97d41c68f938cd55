"""PINs at rest: AES-GCM with a key from a file or a systemd credential, made on first start."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
    """Read the key, creating it with mode 0600 when absent."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return data
    if len(data) != 32:
        raise ValueError(f"{path} must hold exactly 32 bytes, it has {len(data)}")
    return data
