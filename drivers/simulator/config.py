"""Settings of the simulator driver, and building it; imports nothing heavy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.driver import RejectReason
from bridge.drivercontext import DriverContext
from bridge.zones import TimeZoneName
from drivers.simulator.driver import SimulatorDriver
from drivers.simulator.lock import SimLockSpec

# Published traits of common locks, so a demo or test can ask for "a Schlage" by name.
PRESETS: dict[str, dict[str, object]] = {
    "schlage_be469": {"model": "Schlage BE469 (simulated)", "slot_count": 30, "fixed_length": 4,
                      "min_length": 4, "max_length": 8},
    "kwikset_916": {"model": "Kwikset 916 (simulated)", "slot_count": 30},
    "yale_assure": {"model": "Yale Assure (simulated)", "slot_count": 250,
                    "native_schedules": True},
    "masked_reader": {"model": "Masked-read lock (simulated)", "masks_pins": True},
    "algorithmic": {"model": "Offline keypad (simulated)", "algorithmic_pins": True,
                    "can_read": False, "id_addressed": True},
}


class Faults(BaseModel):
    """Faults injected at start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_next_sets: Annotated[int, Field(ge=0)] = 0
    fail_next_clears: Annotated[int, Field(ge=0)] = 0
    reject_reason: RejectReason | None = None
    offline_for_s: Annotated[float, Field(gt=0)] | None = None
    offline: bool = False
    slots_full: bool = False
    account_disconnected: bool = False
    keypad_codes: dict[int, Annotated[str, Field(pattern=r"^[0-9]{1,12}$")]] = {}
    # A buggy driver: each call for this lock raises an unexpected exception with this chance.
    chaos: Annotated[float, Field(ge=0, le=1)] = 0.0
    chaos_seed: int | None = None


class LockConfig(BaseModel):
    """One simulated lock."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    name: str
    preset: Literal["schlage_be469", "kwikset_916", "yale_assure", "masked_reader",
                    "algorithmic"] | None = None
    model: str | None = None
    first_slot: Annotated[int, Field(ge=0)] | None = None
    slot_count: Annotated[int, Field(ge=1, le=10000)] | None = None
    reserved_slots: list[int] | None = None
    min_length: Annotated[int, Field(ge=1, le=12)] | None = None
    max_length: Annotated[int, Field(ge=1, le=12)] | None = None
    fixed_length: Annotated[int, Field(ge=1, le=12)] | None = None
    no_leading_zero: bool | None = None
    matches_prefixes: bool | None = None
    masks_pins: bool | None = None
    can_read: bool | None = None
    native_schedules: bool | None = None
    algorithmic_pins: bool | None = None
    id_addressed: bool | None = None
    latency_s: Annotated[float, Field(ge=0)] | None = None
    command_spacing_s: Annotated[float, Field(ge=0)] | None = None
    confirmation_window_s: Annotated[float, Field(ge=0)] | None = None
    time_zone: TimeZoneName | None = None
    refuses_sets: bool | None = None
    # A factory, not a shared default: pydantic deep-copies a model default for every lock.
    faults: Faults = Field(default_factory=Faults)

    @model_validator(mode="after")
    def _lengths(self) -> LockConfig:
        if self.min_length and self.max_length and self.min_length > self.max_length:
            raise ValueError("min_length is larger than max_length")
        return self

    def spec(self) -> SimLockSpec:
        """The simulator's spec: preset first, then every field set here."""
        values: dict[str, object] = dict(PRESETS.get(self.preset or "", {}))
        for key in SimLockSpec.__dataclass_fields__:
            if key in ("lock_id", "name"):
                continue
            given = getattr(self, key, None)
            if given is not None:
                values[key] = tuple(given) if key == "reserved_slots" else given
        return SimLockSpec(lock_id=self.id, name=self.name, **values)  # type: ignore[arg-type]


class Config(BaseModel):
    """The simulator driver's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["simulator"]
    name: str = "simulator"
    property: str | None = None
    state_file: Path | None = None
    # Opt-in fault injection from outside the daemon (drivers/simulator/control.py).
    control_file: Path | None = None
    locks: list[LockConfig] = []

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
        counts = Counter(lock.id for lock in self.locks)
        dupes = sorted(i for i, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"lock ids used twice: {', '.join(dupes)}")
        return self


def build(config: Config, context: DriverContext) -> SimulatorDriver:
    """Make the simulator with its locks and their injected faults."""
    state_file = config.state_file
    if state_file is not None and not state_file.is_absolute():
        state_file = context.state_dir / state_file
    control_file = config.control_file
    if control_file is not None and not control_file.is_absolute():
        control_file = context.state_dir / control_file
    driver = SimulatorDriver(config.name, [lock.spec() for lock in config.locks], context.clock,
                             state_file, control_file)
    for lock_cfg in config.locks:
        lock = driver.lock(lock_cfg.id)
        f = lock_cfg.faults
        lock.fail_sets = f.fail_next_sets
        lock.fail_clears = f.fail_next_clears
        lock.fail_reason = f.reject_reason
        lock.full = f.slots_full
        lock.chaos = f.chaos
        if f.chaos_seed is not None:
            lock.chaos_random().seed(f.chaos_seed)
        if f.offline or f.offline_for_s:
            lock.go_offline(f.offline_for_s)
        if f.account_disconnected:
            lock.disconnect_account()
        for slot, pin in f.keypad_codes.items():
            lock.keypad_set(slot, pin)
    return driver
