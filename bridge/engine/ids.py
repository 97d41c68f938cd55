"""Random ids (UUID version 4) for codes and events, drawn from the OS in blocks.

`uuid.uuid4()` reads 16 bytes with one `os.urandom` call per id, and that system call lets go
of the GIL: on the event loop, with the store's writer thread busy, each id then waited for
the GIL to come back (about 45 us per id in the cold converge, three ids per code). One read of
`_BLOCK_IDS` ids' worth of bytes pays that once per block; the ids are the same kind of
random (the OS's cryptographic generator), only read ahead."""

from __future__ import annotations

import os

# Ids made per read of the OS's random bytes (16 bytes each).
_BLOCK_IDS = 128
# Ids made and not yet handed out; list.pop() is atomic, so threads may share it.
_ready: list[str] = []


def new_id() -> str:
    """A new random UUID (version 4) in its usual text form."""
    try:
        return _ready.pop()
    except IndexError:
        _refill()
        return _ready.pop()


def _refill() -> None:
    # The text of uuid.UUID(bytes=..., version=4) written directly (the UUID object's checks
    # cost more than the bytes): the version nibble set to 4, the variant's two bits to 10.
    digits = os.urandom(16 * _BLOCK_IDS).hex()
    _ready.extend(
        f"{digits[at:at + 8]}-{digits[at + 8:at + 12]}-4{digits[at + 13:at + 16]}-"
        f"{_VARIANT[digits[at + 16]]}{digits[at + 17:at + 20]}-{digits[at + 20:at + 32]}"
        for at in range(0, len(digits), 32))


# A hex digit with its two high bits replaced by the RFC 4122 variant (binary 10).
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


# A forked child must not hand out the ids its parent will also hand out.
os.register_at_fork(after_in_child=_ready.clear)
