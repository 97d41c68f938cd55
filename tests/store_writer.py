"""Child process for the SIGKILL test: commits a code and its event per transaction, forever,
printing each number only after its transaction committed."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bridge.model import Event, EventType
from bridge.records import CodeRecord, DeviceRecord
from bridge.secrets import PinCipher
from bridge.store import Store, Tx
from drivers.simulator.lock import SimLock, SimLockSpec


async def main(db: Path, key: bytes, start: int) -> None:
    store = Store(db, PinCipher(key))
    await store.open()
    now = datetime.now(UTC)
    info = SimLock(SimLockSpec("l", "L"), clock=None).info()  # type: ignore[arg-type]
    device = DeviceRecord("dev", "sim", "l", info, now)
    await store.write(lambda tx: tx.put_device(device))
    n = start
    while True:
        code = CodeRecord(f"code-{n}", "dev", now, name=f"n{n}", code=f"{n % 10000:04d}")

        def tx_body(tx: Tx, code: CodeRecord = code, n: int = n) -> None:
            tx.put_code(code)
            tx.add_event(Event(str(uuid.uuid4()), EventType.ACCESS_CODE_CREATED, now, "dev",
                               code.access_code_id, {"n": n}))

        await store.write(tx_body)
        sys.stdout.write(f"{n}\n")
        sys.stdout.flush()
        n += 1


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), bytes.fromhex(sys.argv[2]), int(sys.argv[3])))
