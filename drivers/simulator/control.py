"""The simulator's opt-in control file: faults injected from outside the daemon (the chaos soak).

The file holds JSON lines, each one command for one lock, which the driver reads as they are
appended (it starts at the end of the file, so commands written before a start are never
replayed). Commands only change a lock's behaviour or what is typed at its keypad; nothing
here reads a PIN back, so the file can never reveal more than the state file already holds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LOG = logging.getLogger(__name__)
POLL_S = 0.2
# A line longer than this is not a command: skip it rather than hold it in memory.
MAX_LINE_BYTES = 4096
OPS = frozenset({"offline", "online", "refuse", "latency", "wipe", "keypad_set",
                 "keypad_clear"})


@dataclass(frozen=True, slots=True)
class ControlCommand:
    """One command: `op` on `lock`, with its argument (count, seconds, slot, PIN)."""

    lock: str
    op: str
    count: int = 0
    seconds: float = 0.0
    slot: int = 0
    pin: str = ""


class ControlFile:
    """Reads the commands appended to the file since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._pending = b""

    def skip_existing(self) -> None:
        """Start after what the file holds now."""
        try:
            self._offset = self.path.stat().st_size
        except OSError:
            self._offset = 0

    def read_new(self) -> list[ControlCommand]:
        """Whole lines appended since the last call, parsed; bad lines are logged and skipped."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self._offset:  # truncated or replaced: start over
            self._offset, self._pending = 0, b""
        if size == self._offset:
            return []
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read(min(size - self._offset, 1 << 20))
        self._offset += len(data)
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_LINE_BYTES:
            self._pending = b""
        commands = []
        for line in lines:
            if not line.strip():
                continue
            command = _parse(line)
            if command is None:
                # The line may hold a PIN: say where, not what.
                _LOG.warning("simulator control file %s: skipped a line that is not a command",
                             self.path)
            else:
                commands.append(command)
        return commands


def _parse(line: bytes) -> ControlCommand | None:
    if len(line) > MAX_LINE_BYTES:
        return None
    try:
        doc: Any = json.loads(line)
        if not isinstance(doc, dict) or doc.get("op") not in OPS \
                or not isinstance(doc.get("lock"), str):
            return None
        pin = str(doc.get("pin", ""))
        if pin and not (pin.isdigit() and len(pin) <= 12):
            return None
        return ControlCommand(lock=doc["lock"], op=doc["op"], count=int(doc.get("count", 0)),
                              seconds=float(doc.get("seconds", 0.0)),
                              slot=int(doc.get("slot", 0)), pin=pin)
    except (ValueError, TypeError):
        return None
