"""The store: durable across SIGKILL, sealed PINs, safe permissions, versioned schema."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge import store as store_module
from bridge.driver import Addressing, LocalWindow, LockState
from bridge.model import Event, EventType
from bridge.records import CodeRecord, DeviceRecord, Held
from bridge.secrets import PinCipher, load_or_create_key
from bridge.store import MIGRATIONS, Reader, Store, StoreError, StoreUnavailable, _row_json
from drivers.simulator.lock import SimLock, SimLockSpec
from tests.paths import ROOT


def _device() -> DeviceRecord:
    info = SimLock(SimLockSpec("l", "L"), clock=None).info()  # type: ignore[arg-type]
    return DeviceRecord("dev", "sim", "l", info, datetime.now(UTC))


async def test_pins_are_never_in_clear_on_disk(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await store.open()
    await store.write(lambda tx: tx.put_device(_device()))
    code = CodeRecord("c1", "dev", datetime.now(UTC), code="93817264", on_lock_pin="93817264")
    await store.write(lambda tx: tx.put_code(code))
    [back] = await store.read(lambda r: r.codes())
    assert back.code == "93817264"
    await store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("db"))
    assert b"93817264" not in raw


async def test_what_the_lock_holds_survives_a_restart(tmp_path: Path) -> None:
    key = os.urandom(32)
    store = Store(tmp_path / "db", PinCipher(key))
    await store.open()
    await store.write(lambda tx: tx.put_device(_device()))
    held = Held(LocalWindow(datetime(2026, 12, 24, 15), datetime(2099, 12, 29, 11), "Asia/Tokyo"),
                "Guest")
    code = CodeRecord("c1", "dev", datetime.now(UTC), code="93817264", on_lock_pin="93817264",
                      on_lock_held=held)
    await store.write(lambda tx: tx.put_code(code))
    await store.close()
    again = Store(tmp_path / "db", PinCipher(key))
    await again.open()
    [back] = await again.read(lambda r: r.codes())
    await again.close()
    assert back.on_lock_held == held and back == code


async def test_a_lock_state_reported_by_its_driver_survives_a_restart(tmp_path: Path) -> None:
    key = os.urandom(32)
    device = _device()
    watched = dataclasses.replace(device, info=dataclasses.replace(
        device.info, state=LockState(locked=False, door_open=True, battery_percent=41)))
    store = Store(tmp_path / "db", PinCipher(key))
    await store.open()
    await store.write(lambda tx: tx.put_device(watched))
    other = dataclasses.replace(device, device_id="other", external_id="m")
    await store.write(lambda tx: tx.put_device(other))
    await store.close()
    again = Store(tmp_path / "db", PinCipher(key))
    await again.open()
    back = await again.read(lambda r: r.devices())
    await again.close()
    assert back == [watched, other] and other.info.state is None


async def test_a_lock_read_back_from_the_store_keeps_its_addressing(tmp_path: Path) -> None:
    """The engine asks `addressing is Addressing.SLOT` before choosing a slot: a lock loaded
    from the store with the plain string got writes with no slot (Z-Wave refused them)."""
    for addressing in Addressing:
        device = _device()
        caps = dataclasses.replace(device.info.capabilities, addressing=addressing)
        device = dataclasses.replace(device, device_id=f"dev-{addressing}",
                                     info=dataclasses.replace(device.info, capabilities=caps))
        store = Store(tmp_path / f"db-{addressing}", PinCipher(os.urandom(32)))
        await store.open()
        await store.write(lambda tx, d=device: tx.put_device(d))  # type: ignore[misc]
        [back] = await store.read(lambda r: r.devices())
        await store.close()
        assert back.info.capabilities.addressing is addressing


async def test_locks_of_one_model_read_back_as_written(tmp_path: Path) -> None:
    """A read of every device builds equal capabilities once and shares them: each lock still
    reads back as it was written, the one with other rules too."""
    same = [dataclasses.replace(_device(), device_id=f"dev-{n}", external_id=f"l{n}")
            for n in range(3)]
    info = _device().info
    info = dataclasses.replace(
        info, capabilities=dataclasses.replace(info.capabilities, slot_count=7),
        constraints=dataclasses.replace(info.constraints, fixed_length=6))
    other = dataclasses.replace(_device(), device_id="dev-other", external_id="l-other",
                                info=info)
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await store.open()
    for device in [*same, other]:
        await store.write(lambda tx, d=device: tx.put_device(d))  # type: ignore[misc]
    back = await store.read(lambda r: r.devices())
    await store.close()
    assert back == [*same, other]
    assert back[0].info.capabilities is back[2].info.capabilities


async def test_database_and_key_files_are_private(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "state" / "pin.key")
    store = Store(tmp_path / "state" / "db", PinCipher(key))
    await store.open()
    await store.write(lambda tx: tx.put_device(_device()))
    for path in (tmp_path / "state" / "db", tmp_path / "state" / "pin.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    conn = sqlite3.connect(tmp_path / "state" / "db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()
    await store.close()


async def test_refuses_a_schema_newer_than_the_code(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    with pytest.raises(StoreError, match="newer"):
        await store.open()


async def test_wrong_key_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await store.open()
    await store.write(lambda tx: tx.put_device(_device()))
    await store.write(lambda tx: tx.put_code(CodeRecord("c", "dev", datetime.now(UTC),
                                                        code="1234")))
    await store.close()
    other = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await other.open()
    with pytest.raises(ValueError, match="wrong key"):
        await other.read(lambda r: r.codes())
    await other.close()


async def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await store.open()
    await store.write(lambda tx: tx.put_device(_device()))

    def half(tx):  # type: ignore[no-untyped-def]
        tx.put_code(CodeRecord("c", "dev", datetime.now(UTC), code="1234"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store.write(half)
    assert await store.read(lambda r: r.codes()) == []
    await store.close()


@pytest.mark.slow
def test_sigkill_while_writing_loses_nothing_committed(tmp_path: Path) -> None:
    """Kill a writing process 12 times; after each, everything it reported committed is there,
    and every code has its event (nothing half-written)."""
    key = os.urandom(32)
    db = tmp_path / "db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = 0
    for round_no in range(12):
        proc = subprocess.Popen(
            # As a module from the checkout: run as a file, its folder would come first on
            # sys.path and tests/drivers/ would hide the real drivers package.
            [sys.executable, "-m", "tests.store_writer", str(db), key.hex(), str(start)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        reported: list[int] = []
        deadline = time.monotonic() + 30
        while len(reported) < 5 + round_no * 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line:
                reported.append(int(line))
        time.sleep(0.01 * round_no)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        rest = proc.stdout.read()
        reported.extend(int(x) for x in rest.split())
        assert reported, "the writer committed nothing"

        async def check() -> tuple[set[str], int, set[int]]:
            store = Store(db, PinCipher(key))
            await store.open()
            codes = await store.read(lambda r: r.codes())
            events = await store.read(lambda r: r.events(limit=10**6))
            await store.close()
            return ({c.access_code_id for c in codes}, len(events),
                    {int(e.data["n"]) for e in events})  # type: ignore[call-overload]

        code_ids, n_events, event_ns = asyncio.run(check())
        for n in reported:
            assert f"code-{n}" in code_ids, f"round {round_no}: committed code {n} lost"
            assert n in event_ns
        assert len(code_ids) == n_events, "a code without its event, or the reverse"
        start = max(event_ns) + 1


def _code_write(n: int):  # type: ignore[no-untyped-def]
    def write(tx):  # type: ignore[no-untyped-def]
        tx.put_code(CodeRecord(f"c{n}", "dev", datetime.now(UTC), code=f"{1000 + n}"))
        tx.add_event(Event(f"e{n}", EventType.ACCESS_CODE_CREATED, datetime.now(UTC), "dev",
                           f"c{n}"))
        return n

    return write


async def test_writes_waiting_together_share_one_commit(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await store.open()
    await store.write(lambda tx: tx.put_device(_device()))
    before = store.groups
    answers = await asyncio.gather(*(store.write(_code_write(n)) for n in range(40)))
    assert [result for result, _ in answers] == list(range(40))
    sequences = [events[0].sequence for _, events in answers]
    assert sequences == sorted(sequences) and len(set(sequences)) == 40
    assert 1 <= store.groups - before < 40
    await store.close()


async def test_a_failing_write_in_a_group_undoes_only_its_own_change(tmp_path: Path) -> None:
    key = os.urandom(32)
    store = Store(tmp_path / "db", PinCipher(key))
    await store.open()
    await store.write(lambda tx: tx.put_device(_device()))

    def half(tx):  # type: ignore[no-untyped-def]
        _code_write(99)(tx)
        raise RuntimeError("boom")

    writes = [store.write(_code_write(n)) for n in range(10)]
    writes.insert(5, store.write(half))
    answers = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(answers[5], RuntimeError)
    assert all(not isinstance(a, BaseException) for i, a in enumerate(answers) if i != 5)
    await store.close()
    reopened = Store(tmp_path / "db", PinCipher(key))
    await reopened.open()
    stored = {c.access_code_id for c in await reopened.read(lambda r: r.codes())}
    events = {e.event_id for e in await reopened.read(lambda r: r.events())}
    assert stored == {f"c{n}" for n in range(10)}
    assert events == {f"e{n}" for n in range(10)}
    await reopened.close()


async def test_a_disk_error_in_a_group_fails_only_its_own_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await store.open()
    await store.write(lambda tx: tx.put_device(_device()))

    def full(tx):  # type: ignore[no-untyped-def]
        _code_write(99)(tx)
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
        raise error

    writes = [store.write(_code_write(n)) for n in range(6)]
    writes.insert(3, store.write(full))
    answers = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(answers[3], StoreUnavailable)
    assert all(not isinstance(a, BaseException) for i, a in enumerate(answers) if i != 3)
    stored = {c.access_code_id for c in await store.read(lambda r: r.codes())}
    assert stored == {f"c{n}" for n in range(6)}
    assert store.health.writable
    await store.close()


async def test_a_full_scan_leaves_the_page_cache_as_it_was(tmp_path: Path) -> None:
    # The scan runs with a small cache (its pages are read once); later queries get the
    # connection's own size back, also when the scan fails.
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await store.open()
    await store.write(lambda tx: tx.put_device(_device()))
    await store.write(lambda tx: tx.put_code(CodeRecord("c1", "dev", datetime.now(UTC))))

    def cache_size(r: Reader) -> int:
        return r.count("PRAGMA cache_size")

    before = await store.read(cache_size)
    seen = await store.read(lambda r: (r.codes(), cache_size(r)))
    assert [c.access_code_id for c in seen[0]] == ["c1"] and seen[1] == before
    await store.write(lambda tx: tx.execute("UPDATE access_codes SET record = 'not json'"))
    with pytest.raises(ValueError):
        await store.read(lambda r: r.codes())
    assert await store.read(cache_size) == before
    await store.close()


async def test_the_startup_read_pauses_the_collector_and_leaves_it_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The full read of every code runs without automatic collection (it was 15% of the read's
    # CPU over 30,000 codes); after it, also after a failed read, the collector is on again,
    # unless it was off before.
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await store.open()
    await store.write(lambda tx: tx.put_device(_device()))
    await store.write(lambda tx: tx.put_code(CodeRecord("c1", "dev", datetime.now(UTC))))
    collector_on_per_row: list[bool] = []
    real_code_from_row = store_module.code_from_row

    def watched(public: dict[str, object], secrets: dict[str, str | None]) -> CodeRecord:
        collector_on_per_row.append(gc.isenabled())
        return real_code_from_row(public, secrets)

    monkeypatch.setattr(store_module, "code_from_row", watched)
    assert gc.isenabled()
    try:
        assert [c.access_code_id for c in await store.read(lambda r: r.codes())] == ["c1"]
        assert collector_on_per_row == [False] and gc.isenabled()
        await store.read(lambda r: r.codes("dev"))  # one lock's codes: no pause
        assert collector_on_per_row == [False, True]
        gc.disable()
        await store.read(lambda r: r.codes())
        assert not gc.isenabled()
        gc.enable()
        await store.write(lambda tx: tx.execute("UPDATE access_codes SET record = 'not json'"))
        with pytest.raises(ValueError):
            await store.read(lambda r: r.codes())
        assert gc.isenabled()
    finally:
        gc.enable()
        await store.close()


@pytest.mark.parametrize("text", ['{"a": 1, "b": [true, null]}', ' {"a": 1} ', '"x"', "[]"])
def test_the_rows_json_reader_reads_what_json_reads(text: str) -> None:
    assert _row_json(text) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1} x', '{"a": 1', "", "nope"])
def test_the_rows_json_reader_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        _row_json(text)
