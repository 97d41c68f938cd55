"""What the driver put on each lock, kept in a file of its own.

Igloohome lists no PINs: nothing can be read back, an algoPIN's end decides when it may be
forgotten, and a custom PIN is deleted by sending the PIN itself. So the driver keeps, per lock,
each code it made under the id it gave it (the engine's slot): the kind, the window, and the PIN
sealed with a key of its own (AES-GCM, mode 0600), written atomically on every change.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from bridge.secrets import PinCipher, load_or_create_key
from bridge.startup import StartupError

CUSTOM = "custom"


@dataclass(slots=True)
class CodeRecord:
    """One code the driver made on a lock."""

    slot: int
    kind: str  # hourly, daily, permanent (algoPINs) or custom (a bridge job)
    start: str  # ISO 8601 with offset
    end: str | None
    sealed_pin: str
    key: str | None = None
    variance: int | None = None
    pin_id: str | None = None
    # A custom PIN's job while it runs; None once the lock has the PIN.
    job_id: str | None = None
    made_at: str = ""

    @property
    def pending(self) -> bool:
        return self.job_id is not None

    def ends_at(self) -> datetime | None:
        return datetime.fromisoformat(self.end) if self.end else None


class CodeBook:
    """The driver's records of every lock, backed by `path`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._cipher: PinCipher | None = None
        self._locks: dict[str, dict[int, CodeRecord]] = {}
        self._next_slot = 1
        self._loaded = False

    def prepare(self) -> None:
        """Read the file and the key (made on first start); StartupError when unusable."""
        self.load()
        self._key()

    def load(self) -> None:
        """Read the file (nothing yet when it is missing)."""
        if self._loaded:
            return
        try:
            data = json.loads(self._path.read_text())
            self._next_slot = int(data.get("next_slot", 1))
            for lock_id, records in data.get("locks", {}).items():
                self._locks[lock_id] = {int(slot): CodeRecord(**record)
                                        for slot, record in records.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise StartupError(f"cannot read the Igloohome driver's records {self._path} "
                               f"({type(exc).__name__})", "restore it from the backup made "
                               "with the database (without it, custom PINs cannot be "
                               "deleted through the bridge)") from None
        self._loaded = True

    def of(self, lock_id: str) -> dict[int, CodeRecord]:
        """The lock's records by slot (a live view: change it through `put` and `drop`)."""
        self.load()
        return self._locks.setdefault(lock_id, {})

    def new_slot(self) -> int:
        self.load()
        slot = self._next_slot
        self._next_slot += 1
        return slot

    def put(self, lock_id: str, record: CodeRecord) -> None:
        self.of(lock_id)[record.slot] = record
        self._save()

    def drop(self, lock_id: str, slot: int) -> None:
        if self.of(lock_id).pop(slot, None) is not None:
            self._save()

    def seal(self, pin: str, lock_id: str) -> str:
        return base64.b64encode(self._key().seal(pin, lock_id)).decode()

    def pin(self, record: CodeRecord, lock_id: str) -> str:
        return self._key().open(base64.b64decode(record.sealed_pin), lock_id)

    def _key(self) -> PinCipher:
        if self._cipher is None:
            key_file = self._path.with_suffix(".key")
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._cipher = PinCipher(load_or_create_key(key_file))
        return self._cipher

    def _save(self) -> None:
        data = {"next_slot": self._next_slot,
                "locks": {lock_id: {str(s): asdict(r) for s, r in records.items()}
                          for lock_id, records in self._locks.items() if records}}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self._path)
