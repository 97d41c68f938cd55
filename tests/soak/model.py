"""What the soak asked for: every code it created, changed or deleted, with the states it will
accept for a code whose last request has no known outcome yet."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.soak.world import MQTT_LOCKS, SIM_LOCKS

# A native schedule goes onto the lock this long before it starts (schedule.native_lead_time_days).
NATIVE_LEAD = timedelta(days=9)
# What a reset lock may need written back: its codes, its backup pool, with room to spare.
MAX_PER_LOCK_WITH_BACKUPS = 12


@dataclass(frozen=True, slots=True)
class Want:
    """One state of a code: its PIN (None: the lock chooses it), its window, or deleted."""

    pin: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    deleted: bool = False

    def on_lock(self, now: datetime, native: bool) -> bool:
        """Whether this state belongs on the lock at `now`."""
        if self.deleted:
            return False
        if self.starts_at is None or self.ends_at is None:
            return True
        if self.ends_at <= now:
            return False
        return self.starts_at - (NATIVE_LEAD if native else timedelta(0)) <= now

    def near_edge(self, now: datetime, margin: timedelta) -> bool:
        """True when `now` is within `margin` of this window's start or end."""
        return any(t is not None and abs(t - now) < margin
                   for t in (self.starts_at, self.ends_at))


@dataclass
class Code:
    """A code the soak knows the id of."""

    code_id: str
    lock: str
    name: str
    want: Want
    # States the code may be in instead, while a request's outcome is unknown.
    maybe: list[Want] = field(default_factory=list)
    busy: bool = False
    pool: bool = False
    # Every PIN the code ever had or was asked to have: none may stay on a lock once it ended.
    pins: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.note(self.want)

    def note(self, want: Want) -> None:
        """Remember a state's PIN."""
        if want.pin:
            self.pins.add(want.pin)

    @property
    def settled(self) -> bool:
        """Free for another operation."""
        return not self.busy and not self.maybe


@dataclass
class Model:
    """Every code and every PIN the soak ever used."""

    codes: dict[str, Code] = field(default_factory=dict)
    # Creates whose outcome is unknown: name -> (lock, state).
    unknown_creates: dict[str, tuple[str, Want]] = field(default_factory=dict)
    pins: set[str] = field(default_factory=set)
    names: int = 0

    def new_name(self, prefix: str) -> str:
        """A name no other code of the soak has."""
        self.names += 1
        return f"{prefix}-{self.names}"

    def new_pin(self, rng: random.Random, length: int) -> str:
        """A PIN never used before, that cannot be mistaken for a year in a log line."""
        for _ in range(10_000):
            pin = str(rng.randrange(10 ** (length - 1), 10 ** length))
            if pin not in self.pins and not pin.startswith(("19", "20")):
                self.pins.add(pin)
                return pin
        raise RuntimeError("ran out of PINs")

    def live(self, lock: str | None = None) -> list[Code]:
        """Codes not deleted (in their last known state), optionally of one lock."""
        return [c for c in self.codes.values()
                if not c.want.deleted and (lock is None or c.lock == lock)]

    def occupying(self, lock: str, now: datetime) -> int:
        """Codes of a lock that hold or will hold a slot (ended ones no longer do)."""
        return sum(1 for c in self.live(lock)
                   if c.want.ends_at is None or c.want.ends_at > now)

    def pick(self, rng: random.Random, lock: str | None = None) -> Code | None:
        """A settled live code, chosen by `rng` in a stable order; a short stay is left to end
        on its own (that its guest loses access then is what the soak must see)."""
        soon = datetime.now(UTC) + timedelta(minutes=1)
        ready = sorted((c for c in self.live(lock) if c.settled and not (
            c.want.ends_at is not None and datetime.now(UTC) < c.want.ends_at < soon)),
            key=lambda c: c.name)
        return rng.choice(ready) if ready else None


def code_locks() -> list[str]:
    """The locks guests' codes go on (the spare lock is only removed and restored)."""
    return [lock for lock in [*SIM_LOCKS, *MQTT_LOCKS] if lock != "spare"]


def reconcilable_locks() -> list[str]:
    """Guest locks the bridge can read back: a keypad edit or a factory reset of a write-only
    lock (the algorithmic one, an offline keypad) is invisible to any bridge, so the soak does
    neither to it."""
    return [lock for lock in code_locks() if lock != "algo"]


def pin_length(lock: str) -> int:
    """The PIN length the soak asks for on a lock (0: the lock makes its PINs)."""
    spec = SIM_LOCKS.get(lock) or MQTT_LOCKS[lock]
    return int(spec["pin_length"])


def native(lock: str) -> bool:
    """Whether the lock keeps schedules itself."""
    spec = SIM_LOCKS.get(lock) or MQTT_LOCKS[lock]
    return bool(spec["native"])


def window(rng: random.Random, now: datetime, kind: str) -> tuple[datetime, datetime]:
    """A window: short (opens and closes within the run), long (open now) or future."""
    now = now.replace(microsecond=0)
    if kind == "short":
        starts = now + timedelta(seconds=rng.randint(2, 8))
        return starts, starts + timedelta(seconds=rng.randint(5, 15))
    if kind == "long":
        return now - timedelta(hours=1), now + timedelta(days=rng.randint(1, 5))
    starts = now + timedelta(days=rng.randint(1, 3))
    return starts, starts + timedelta(days=2)


def iso(value: datetime | None) -> str | None:
    """As the API is sent times."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """A time as the API shows it."""
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def observed(body: dict[str, Any]) -> Want:
    """The state an access code object shows."""
    return Want(pin=body.get("code"), starts_at=parse_time(body.get("starts_at")),
                ends_at=parse_time(body.get("ends_at")))


def matches(want: Want, seen: Want | None) -> bool:
    """Whether what the daemon shows is this state (None: the code is gone)."""
    if seen is None:
        return want.deleted
    if want.deleted:
        return False
    return (want.pin is None or want.pin == seen.pin) and want.starts_at == seen.starts_at \
        and want.ends_at == seen.ends_at
