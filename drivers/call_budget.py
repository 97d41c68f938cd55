"""The pacing of one cloud account's calls (TTLock, Igloohome, SmartThings): a budget of calls
refilled at a steady rate, and a pause the cloud asked for (a rate refusal) that holds every
call of the account until it ends.

A call waits its turn within the budget; during a pause it waits when the pause ends soon
enough, else fails at once with RetryLater (the engine retries later)."""

from __future__ import annotations

from bridge.clock import Clock
from bridge.driver import RetryLater


class CallBudget:
    """At most `rate` calls a second on average, `burst` at once; no call during a pause."""

    def __init__(self, clock: Clock, *, service: str, rate: float, burst: float,
                 inline_wait_s: float) -> None:
        self._clock = clock
        self._service = service
        self._rate = rate
        self._burst = burst
        # A pause that ends later than this fails the call instead of holding it.
        self._inline_wait_s = inline_wait_s
        # Below zero: calls already waiting their turn.
        self._budget = burst
        self._budget_at = clock.monotonic()
        self._paused_until = 0.0
        # Rate refusals in a row (a call that went through ends the run).
        self.strikes = 0

    async def take(self) -> None:
        """One call's turn: after a pause that ends soon, then within the budget."""
        now = self._clock.monotonic()
        if self._paused_until > now:
            wait = self._paused_until - now
            if wait > self._inline_wait_s:
                raise RetryLater(f"{self._service} asked for fewer calls; calls resume in "
                                 f"{wait:.0f} s")
            await self._clock.sleep(wait)
            now = self._clock.monotonic()
        self._budget = min(self._burst, self._budget + (now - self._budget_at) * self._rate)
        self._budget_at = now
        self._budget -= 1.0
        if self._budget < 0:
            await self._clock.sleep(-self._budget / self._rate)

    def strike(self) -> int:
        """One more rate refusal in a row; returns how many."""
        self.strikes += 1
        return self.strikes

    def doubling(self, base_s: float, cap_s: float) -> float:
        """One more rate refusal: `base_s` doubled for each earlier one in the run, at most
        `cap_s`."""
        return min(cap_s, base_s * 2.0 ** (self.strike() - 1))

    def calm(self) -> None:
        """A call went through: the next refusal starts the doubling again."""
        self.strikes = 0

    def pause(self, wait_s: float) -> None:
        """No call for `wait_s` from now (a longer pause already set stands)."""
        self._paused_until = max(self._paused_until, self._clock.monotonic() + wait_s)

    def spend_burst(self) -> None:
        """After a pause calls resume at the budget's pace, not in a burst."""
        self._budget = min(self._budget, 0.0)
