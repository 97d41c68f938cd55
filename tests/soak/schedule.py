"""The seeded plan of a soak: which operation or fault happens when, decided before the run so a
seed replays the same sequence (targets are then drawn from a per-step generator)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

# Workload, with weights.
OPERATIONS: dict[str, int] = {
    "api_create": 6, "api_update": 3, "api_delete": 2,
    "upstream_create": 4, "upstream_update": 2, "upstream_delete": 1,
    "backup_pull": 1, "keypad": 2, "device_cycle": 1, "unmanaged_cleanup": 1,
}
# Every fault, each once per round in a shuffled order; with its duration range in seconds.
FAULTS: dict[str, tuple[float, float]] = {
    "lock_offline": (1.0, 8.0),
    "lock_refusing": (0.0, 0.0),
    "lock_slow": (3.0, 10.0),
    "lock_hanging": (3.0, 8.0),
    "lock_reset": (0.0, 0.0),
    "broker_restart": (0.5, 6.0),
    "upstream_kill": (0.5, 8.0),
    "upstream_half_open": (6.0, 14.0),
    "daemon_kill": (0.2, 2.0),
    "disk_full": (1.0, 6.0),
    "clock_jump": (4.0, 12.0),
}
OPERATION_GAP_S = 0.4
FAULT_GAP_S = 5.0


@dataclass(frozen=True, slots=True)
class Step:
    """One planned step: at `at` seconds, `kind` (an operation or a fault) for `duration`."""

    index: int
    at: float
    kind: str
    fault: bool
    duration: float

    def rng(self, seed: int) -> random.Random:
        """This step's own generator: its targets do not depend on earlier outcomes' timing."""
        return random.Random(f"{seed}:{self.index}")


def plan(seed: int, seconds: float, skip: frozenset[str] = frozenset()) -> list[Step]:
    """Every step of a run of `seconds`, in time order."""
    rng = random.Random(seed)
    steps: list[tuple[float, str, bool, float]] = []
    t = 0.0
    kinds, weights = list(OPERATIONS), list(OPERATIONS.values())
    while True:
        t += rng.expovariate(1 / OPERATION_GAP_S)
        if t >= seconds:
            break
        steps.append((t, rng.choices(kinds, weights)[0], False, 0.0))
    t = 2.0
    faults = [f for f in FAULTS if f not in skip]
    round_: list[str] = []
    rounds = 0
    while True:
        t += rng.expovariate(1 / FAULT_GAP_S)
        if t >= seconds:
            break
        if not round_:
            # The daemon is killed every other round, so some of its runs last long enough to
            # judge its memory and descriptors.
            chosen = [f for f in faults if f != "daemon_kill" or rounds % 2 == 0]
            round_ = rng.sample(chosen, len(chosen))
            rounds += 1
        kind = round_.pop()
        low, high = FAULTS[kind]
        steps.append((t, kind, True, rng.uniform(low, high)))
    steps.sort()
    return [Step(i, at, kind, fault, duration)
            for i, (at, kind, fault, duration) in enumerate(steps)]


def fingerprint(steps: list[Step]) -> str:
    """A short hash of the plan, printed so two runs of a seed can be compared."""
    text = ";".join(f"{s.at:.3f}:{s.kind}:{s.duration:.3f}" for s in steps)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
