"""API keys: made by `lockbridge api-key create`, kept only as salted hashes in the store.

A key looks like `seam_bridge_<key id>_<secret>`, which Seam's SDK accepts as an API key. The key
id finds the stored hash; the secret is compared in constant time. Keys carry 256 bits of
randomness, so one HMAC round is as good as a slow password hash here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.clock import Clock
from bridge.serialize import iso
from bridge.store import Reader, Store, Tx

KEY_PREFIX = "seam_bridge_"
_INDEX = "api_key_index"
# Compared against when the key id is unknown, so a miss costs what a hit costs.
_DUMMY = {"salt": "00" * 16, "hash": "00" * 32}


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What is known about a key without its secret."""

    key_id: str
    name: str
    created_at: str


def _kv_key(key_id: str) -> str:
    return f"api_key:{key_id}"


def _digest(salt: bytes, secret: str) -> str:
    return hmac.new(salt, secret.encode(), hashlib.sha256).hexdigest()


def split_key(presented: str) -> tuple[str, str] | None:
    """(key id, secret) of a key in lockbridge's format, else None."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX):].partition("_")
    if not sep or not key_id or not secret or len(presented) > 200:
        return None
    return key_id, secret


async def create_key(store: Store, name: str, now: datetime) -> tuple[KeyInfo, str]:
    """Make a key; returns its info and the key itself, which is shown once and never stored."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    info = KeyInfo(key_id, name, iso(now) or "")
    record = {"salt": salt.hex(), "hash": _digest(salt, secret), "name": name,
              "created_at": info.created_at}

    def write(tx: Tx) -> None:
        tx.put_kv(_kv_key(key_id), json.dumps(record))
        index = _read_index_tx(tx)
        tx.put_kv(_INDEX, json.dumps([*index, key_id]))

    await store.write(write)
    return info, f"{KEY_PREFIX}{key_id}_{secret}"


async def revoke_key(store: Store, key_id: str) -> bool:
    """Forget a key; False when there was no such key."""

    def write(tx: Tx) -> bool:
        index = _read_index_tx(tx)
        if key_id not in index:
            return False
        tx.execute("DELETE FROM kv WHERE key = ?", (_kv_key(key_id),))
        tx.put_kv(_INDEX, json.dumps([k for k in index if k != key_id]))
        return True

    found, _ = await store.write(write)
    return found


def list_keys(reader: Reader) -> list[KeyInfo]:
    """Every key's id, name and creation time."""
    out = []
    for key_id in json.loads(reader.kv(_INDEX) or "[]"):
        raw = reader.kv(_kv_key(key_id))
        if raw is not None:
            record = json.loads(raw)
            out.append(KeyInfo(key_id, record.get("name", ""), record.get("created_at", "")))
    return out


def key_matches(record_json: str | None, secret: str) -> bool:
    """True when `secret` hashes to the stored record's hash (constant time)."""
    record: dict[str, Any] = json.loads(record_json) if record_json else _DUMMY
    digest = _digest(bytes.fromhex(record["salt"]), secret)
    return hmac.compare_digest(digest, record["hash"]) and record_json is not None


async def verify(store: Store, authorization: str | None) -> str | None:
    """The key id of a valid `Authorization: Bearer <key>` header, else None."""
    if not authorization:
        return None
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    parts = split_key(presented.strip())
    if parts is None:
        key_matches(None, presented)
        return None
    key_id, secret = parts
    record = await store.read(lambda r: r.kv(_kv_key(key_id)))
    return key_id if key_matches(record, secret) else None


class Throttle:
    """Slows down a client that keeps sending bad keys: each failure after the first few
    doubles its wait, up to a cap; a success or a quiet spell forgets it."""

    FREE_FAILURES = 5
    BASE_DELAY_S = 0.2
    MAX_DELAY_S = 5.0
    FORGET_AFTER_S = 600.0
    MAX_CLIENTS = 10000

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def delay_for(self, client: str) -> float:
        """How long to hold this client's next answer if its key is bad again."""
        count, last = self._failures.get(client, (0, 0.0))
        if self.clock.monotonic() - last > self.FORGET_AFTER_S:
            count = 0
        if count < self.FREE_FAILURES:
            return 0.0
        return min(self.MAX_DELAY_S, self.BASE_DELAY_S * 2.0 ** (count - self.FREE_FAILURES))

    def failed(self, client: str) -> None:
        """Count a bad key from `client`."""
        now = self.clock.monotonic()
        count, last = self._failures.pop(client, (0, now))
        if now - last > self.FORGET_AFTER_S:
            count = 0
        self._failures[client] = (count + 1, now)
        while len(self._failures) > self.MAX_CLIENTS:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """A good key: forget the client's failures."""
        self._failures.pop(client, None)


def _read_index_tx(tx: Tx) -> list[str]:
    row = tx.execute("SELECT value FROM kv WHERE key = ?", (_INDEX,)).fetchone()
    index: list[str] = json.loads(row[0]) if row else []
    return index
