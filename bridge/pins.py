"""PIN rules: which PINs a lock can take, which clash, and generating ones that fit. Pure."""

from __future__ import annotations

import itertools
import operator
import random
from collections.abc import Callable, Collection

from bridge.driver import PinConstraints


def pin_violation(pin: str, rules: PinConstraints) -> str | None:
    """Why this lock can never take `pin`, or None if it can."""
    if not pin.isdigit():
        return "PIN must contain digits only"
    lengths = rules.allowed_lengths()
    if len(pin) not in lengths:
        if rules.fixed_length is not None:
            return f"every code on this lock must be {rules.fixed_length} digits long"
        return f"PIN must be {lengths.start} to {lengths.stop - 1} digits long"
    if rules.no_leading_zero and pin.startswith("0"):
        return "this lock does not accept a PIN starting with 0"
    # (Most locks forbid no digit: no set of the PIN's digits for them, at every create.)
    banned = sorted({d for d in pin if d in rules.forbidden_digits}) \
        if rules.forbidden_digits else ()
    if banned:
        return f"this lock does not accept the digit{'s' * (len(banned) > 1)} {', '.join(banned)}"
    for prefix in rules.forbidden_prefixes:
        if pin.startswith(prefix):
            # A short fixed prefix (Nuki's 12) is no secret; a programming code is.
            if len(prefix) <= 2:
                return f"this lock does not accept a PIN starting with {prefix}"
            return "PIN may not start with digits this lock reserves (its programming code)"
    return None


def clash_test(rules: PinConstraints) -> Callable[[str, str], bool] | None:
    """The one rule of which two PINs clash on this lock, as `test(pin, other)`; None when the
    lock takes any two PINs side by side.

    Chosen once per lock, not per pair: the planner asks it of every code of the lock at every
    create and every write, and a lock that only rejects duplicates (most) gets `operator.eq`
    itself, no Python frame per code."""
    if rules.matches_prefixes:
        return _same_or_prefix if rules.rejects_duplicates else _prefix_only
    return operator.eq if rules.rejects_duplicates else None


def _same_or_prefix(pin: str, other: str) -> bool:
    # Equal PINs start with each other: one test covers both rules.
    return other.startswith(pin) or pin.startswith(other)


def _prefix_only(pin: str, other: str) -> bool:
    return other != pin and (other.startswith(pin) or pin.startswith(other))


def clash(pin: str, others: Collection[str], rules: PinConstraints) -> str | None:
    """The PIN in `others` that `pin` would collide with on this lock, or None."""
    test = clash_test(rules)
    if test is None:
        return None
    for other in others:
        if test(pin, other):
            return other
    return None


def is_trivial(pin: str) -> bool:
    """True for PINs a guest or burglar would try first: one repeated digit or a straight run."""
    if len(set(pin)) == 1:
        return True
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    return steps in ({1}, {-1})


def generate_pin(
    rules: PinConstraints,
    taken: Collection[str],
    rng: random.Random,
    length: int | None = None,
    attempts: int = 10_000,
) -> str:
    """A random PIN that the lock accepts, clashes with nothing in `taken` and is not trivial."""
    lengths = rules.allowed_lengths()
    if length is None or length not in lengths:
        length = max(lengths.start, min(6, lengths.stop - 1))
    digits = "".join(d for d in "0123456789" if d not in rules.forbidden_digits)
    for _ in range(attempts):
        pin = "".join(rng.choice(digits) for _ in range(length))
        if is_trivial(pin) or pin_violation(pin, rules) or clash(pin, taken, rules):
            continue
        return pin
    raise ValueError(f"no free {length}-digit PIN left on this lock")
