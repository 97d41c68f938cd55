"""The one backoff every retry in lockbridge uses: capped exponential with jitter.

`Backoff` is the rule (attempt n waits within [d/2, d], d = base * 2^(n-1), at most `cap_s`);
`Throttle` is one thing that keeps failing under that rule (a lock's probes, its failing reads,
a link's reconnects), counting its failures in a row. Code attempts keep their count on the code
record (it survives a restart) and ask the rule directly."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter: attempt n waits within [d/2, d], d = base*2^(n-1)."""

    base_s: float = 1.0
    cap_s: float = 300.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt `attempt` + 1 (attempt counts from 1)."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** max(0, attempt - 1))
        return ceiling * (0.5 + rng.random() / 2)


@dataclass(slots=True)
class Throttle:
    """Failures in a row of one thing, and the pause each calls for."""

    backoff: Backoff
    failures: int = 0

    def failed(self, rng: random.Random) -> float:
        """One more failure: the pause before the next try."""
        self.failures += 1
        return self.backoff.delay(self.failures, rng)

    def reset(self) -> None:
        """It worked: the next failure starts from the base again."""
        self.failures = 0
