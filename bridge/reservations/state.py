"""The automations' records in memory and in the store: loaded once, then every change is
written (with its events) before memory follows, as the engine does with codes."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from bridge.application import Application
from bridge.model import Event, EventType
from bridge.reservations.records import (
    AccessGrant,
    AccessMethod,
    AutomationRun,
    Reservation,
    Space,
    UserIdentity,
    from_document,
    to_document,
)
from bridge.store import Reader, Store, Tx

# Fields kept sealed, per table.
_SECRET_FIELDS = {"access_grants": ("requested_code",), "access_methods": ("issued_code",)}
# Runs kept; older ones are forgotten.
KEEP_RUNS = 1000

Record = Space | UserIdentity | Reservation | AccessGrant | AccessMethod


def _table(record: Record) -> tuple[str, str]:
    """(table, id) of a record."""
    if isinstance(record, Space):
        return "spaces", record.space_id
    if isinstance(record, UserIdentity):
        return "user_identities", record.user_identity_key
    if isinstance(record, Reservation):
        return "reservations", record.reservation_key
    if isinstance(record, AccessGrant):
        return "access_grants", record.access_grant_id
    return "access_methods", record.access_method_id


@dataclass(slots=True)
class Change:
    """Records to put and drop, events and a run, committed together."""

    put: list[Record] = field(default_factory=list)
    drop: list[Record] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    run: AutomationRun | None = None


@dataclass(slots=True)
class AutomationState:
    """Every automation record by id, as committed."""

    spaces: dict[str, Space] = field(default_factory=dict)
    identities: dict[str, UserIdentity] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    grants: dict[str, AccessGrant] = field(default_factory=dict)
    methods: dict[str, AccessMethod] = field(default_factory=dict)
    runs: list[AutomationRun] = field(default_factory=list)

    async def load(self, store: Store) -> None:
        """Read every record from the store."""
        docs = await store.read(_read_all)
        for doc in docs["spaces"]:
            self._remember(from_document(Space, doc))
        for doc in docs["user_identities"]:
            self._remember(from_document(UserIdentity, doc))
        for doc in docs["reservations"]:
            self._remember(from_document(Reservation, doc))
        for doc in docs["access_grants"]:
            self._remember(from_document(AccessGrant, doc))
        for doc in docs["access_methods"]:
            self._remember(from_document(AccessMethod, doc))
        self.runs = [from_document(AutomationRun, d) for d in docs["automation_runs"]]

    async def commit(self, app: Application, change: Change) -> None:
        """Write the change and its events in one transaction, then remember it."""
        await app.record(change.events, _Rows(change))
        for record in change.drop:
            self._forget(record)
        for record in change.put:
            self._remember(record)
        if change.run is not None:
            self.runs.append(change.run)
            del self.runs[:-KEEP_RUNS]

    def methods_of(self, grant_id: str) -> list[AccessMethod]:
        """The access methods of one grant."""
        return [m for m in self.methods.values() if m.access_grant_id == grant_id]

    def grant_of(self, reservation_key: str) -> AccessGrant | None:
        """The access grant a reservation made."""
        return next((g for g in self.grants.values() if g.reservation_key == reservation_key),
                    None)

    def space_by_key(self, space_key: str) -> Space | None:
        """A space by its key."""
        return next((s for s in self.spaces.values() if s.space_key == space_key), None)

    def _remember(self, record: Record) -> None:
        table, key = _table(record)
        self._by_table(table)[key] = record

    def _forget(self, record: Record) -> None:
        table, key = _table(record)
        self._by_table(table).pop(key, None)

    def _by_table(self, table: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {
            "spaces": self.spaces, "user_identities": self.identities,
            "reservations": self.reservations, "access_grants": self.grants,
            "access_methods": self.methods}
        return tables[table]


def new_event(app: Application, kind: EventType, data: dict[str, object]) -> Event:
    """An automation event, stamped now."""
    return Event(event_id=str(uuid.uuid4()), event_type=kind, occurred_at=app.clock.now(),
                 data=data)


@dataclass(frozen=True, slots=True)
class _Rows:
    """An automation's change kept as rows of its own tables, in the transaction that commits
    its events (the engine asks it to write them: an `Engine` receipt)."""

    change: Change

    def record(self, tx: Tx) -> None:
        """Write the change's documents and its run."""
        change = self.change
        for record in change.drop:
            tx.drop_document(*_table(record))
        for record in change.put:
            table, key = _table(record)
            doc = to_document(record)
            secret_names = _SECRET_FIELDS.get(table, ())
            secrets = {name: doc.pop(name) for name in secret_names}
            tx.put_document(table, key, doc, secrets if any(secrets.values()) else None)
        if change.run is not None:
            tx.execute("INSERT INTO automation_runs (id, record) VALUES (?, ?)",
                       (change.run.automation_run_id, _json(to_document(change.run))))
            tx.execute("DELETE FROM automation_runs WHERE seq <= "
                       "(SELECT max(seq) FROM automation_runs) - ?", (KEEP_RUNS,))


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc)


def _read_all(reader: Reader) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for table in ("spaces", "user_identities", "reservations", "access_grants",
                  "access_methods", "automation_runs"):
        out[table] = [{**doc, **secrets} for doc, secrets in reader.documents(table)]
    return out


def grant_event_data(grant: AccessGrant) -> dict[str, object]:
    """What an access_grant.* event carries: the grant and the keys that made it."""
    data: dict[str, object] = {"access_grant_id": grant.access_grant_id}
    if grant.access_grant_key:
        data["access_grant_key"] = grant.access_grant_key
    if grant.reservation_key:
        data["reservation_key"] = grant.reservation_key
    if grant.customer_key:
        data["customer_key"] = grant.customer_key
    return data


def method_event_data(method: AccessMethod, grant: AccessGrant) -> dict[str, object]:
    """What an access_method.* event carries: the method, its grant and the keys that made it
    (never the PIN: that is read from the access method, with a key)."""
    data: dict[str, object] = {"access_method_id": method.access_method_id,
                               "access_grant_ids": [grant.access_grant_id],
                               "access_grant_keys": [grant.access_grant_key]
                               if grant.access_grant_key else []}
    if grant.reservation_key:
        data["reservation_key"] = grant.reservation_key
    if grant.customer_key:
        data["customer_key"] = grant.customer_key
    return data

