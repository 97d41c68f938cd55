"""What the Z-Wave JS UI MQTT driver knows of its lock nodes: settings, per-node state, and what
it remembers of them between runs (no I/O here)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

from bridge.driver import Availability, DeviceInfo
from drivers import zwave_usercode as usercode
from drivers.mqtt.lockdriver import LockSettings, LockState, MqttOptions, slot_lock_info
from drivers.zwavejs_mqtt import mapping

# Z-Wave JS UI's own name in its MQTT settings ("Name"); its client is ZWAVE_GATEWAY-<name>.
DEFAULT_GATEWAY_NAME = "zwave-js-ui"
_DEFAULT_SLOTS = 30
# Levels a node's topic may have when it is not configured: `<name>` or `<loc>/<name>`, and one
# more for a `/` inside a name or location (the gateway keeps it).
_NODE_LEVELS = (1, 2, 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class LockOptions(LockSettings):
    """One lock node from the configuration; None means "as discovered"."""

    node_id: int
    external_id: str
    # The node's topic under the prefix; None: as the gateway's layout makes it from getNodes.
    topic: str | None = None
    masks_pins: bool = False


@dataclass(frozen=True, slots=True)
class Options(MqttOptions[LockOptions]):
    """One Z-Wave JS UI gateway: its MQTT prefix and name, and the layout of its node topics
    (Gateway settings)."""

    prefix: str = "zwave"
    gateway_name: str = DEFAULT_GATEWAY_NAME
    layout: mapping.TopicLayout = field(default_factory=mapping.TopicLayout)
    answer_timeout_s: float = 30.0


@dataclass(slots=True)
class Call:
    """One API call waiting for its answer."""

    request_id: str
    answer: asyncio.Future[mapping.ApiAnswer]


@dataclass(slots=True, kw_only=True)
class Lock(LockState):
    """One lock node: the base's state, and what the gateway said of the node."""

    options: LockOptions
    facts: mapping.NodeFacts = field(default_factory=mapping.NodeFacts)
    status: Availability | None = None
    # The last (userIdStatus, userCode) seen per slot, from reads and value topics.
    known: dict[int, tuple[object, object]] = field(default_factory=dict)
    # Counts what the lock said, so a command can tell what came after it was sent: the lock's
    # "new user code not added: duplicate" notices (per slot; 0 for a notice naming no slot)
    # and the node's reports of being Dead (a Fail after one was a NoAck, not a refusal).
    seq: int = 0
    duplicate_at: dict[int, int] = field(default_factory=dict)
    duplicate_seen: asyncio.Event = field(default_factory=asyncio.Event)
    dead_at: int = -1
    # getNodes answered for this node (its slots, name and location are known).
    learned: bool = False
    # The node's topic under the prefix: as configured, or as the layout makes it from getNodes.
    topic: str = ""

    def went_dead(self, since: int) -> bool:
        """Whether the node was reported Dead after `since` (a `seq`), or is Dead now."""
        return self.dead_at > since or self.status is Availability.OFFLINE

    def noticed_duplicate(self, slot: int, since: int) -> bool:
        """Whether a duplicate notice for `slot` (or naming none) came after `since` (a `seq`)."""
        return usercode.noticed_duplicate(self.duplicate_at, slot, since)

    def learn_users_count(self, count: int) -> None:
        """The lock has `count` users: slots beyond them are not missing, they do not exist."""
        self.facts = replace(self.facts, slot_count=count, missing_slots=tuple(
            s for s in self.facts.missing_slots if s <= count))


def node_info(options: LockOptions, facts: mapping.NodeFacts, hub_id: str,
              spacing_s: float) -> DeviceInfo:
    """The node as lockbridge describes it: the configuration over what getNodes said."""
    slot_count = options.slot_count or facts.slot_count or _DEFAULT_SLOTS
    min_length = options.min_length or facts.min_length or 4
    return slot_lock_info(
        options.external_id, options, display_name=facts.name or f"Z-Wave node {options.node_id}",
        maker=(facts.manufacturer or "Z-Wave", facts.product or "Z-Wave lock"),
        device_type="zwave_lock", hub_id=hub_id, first_slot=1, slot_count=slot_count,
        # Slots the lock reports as not available are reserved: no code can go there.
        reserved={*options.reserved_slots, *(s for s in facts.missing_slots if s <= slot_count)},
        masks_pins=options.masks_pins,
        lengths=(min_length, options.max_length or facts.max_length or max(10, min_length)),
        spacing_s=spacing_s)


def node_topic_filters(prefix: str, layout: mapping.TopicLayout,
                       locks: Sequence[LockOptions]) -> list[str]:
    """What to subscribe for the nodes' status, User Code and notification topics.

    Node names and locations are known only once getNodes answers, so every node topic the
    layout can make is subscribed; a configured topic those wildcards already match is not
    subscribed twice (each matching subscription would hand the message over again)."""
    wildcards = _NODE_LEVELS if any(lock.topic is None for lock in locks) else ()
    nodes = ["/".join([prefix] + ["+"] * levels) for levels in wildcards]
    nodes += [f"{prefix}/{lock.topic}" for lock in locks
              if lock.topic is not None and lock.topic.count("/") + 1 not in wildcards]
    return [topic_filter for node in nodes for topic_filter in mapping.node_filters(node, layout)]


def memory(locks: list[Lock]) -> dict[str, object]:
    """The memory file's document: each node's facts but its status."""
    nodes: dict[str, object] = {}
    for lock in locks:
        nodes[str(lock.options.node_id)] = {k: list(v) if isinstance(v, tuple) else v
                                            for k, v in asdict(lock.facts).items()
                                            if k != "status"}
    return {"nodes": nodes}


def recall(doc: Mapping[str, object]) -> dict[int, mapping.NodeFacts]:
    """Node facts saved by an earlier run (entries of the wrong shape are skipped)."""
    nodes = doc.get("nodes")
    if not isinstance(nodes, dict):
        return {}
    recalled: dict[int, mapping.NodeFacts] = {}
    for key, facts in nodes.items():
        if not str(key).isdigit() or not isinstance(facts, dict):
            continue
        fields = {name: facts.get(name) for name in ("manufacturer", "product", "slot_count",
                                                    "min_length", "max_length", "name",
                                                    "location")}
        text_ok = all(v is None or isinstance(v, str)
                      for v in (fields["manufacturer"], fields["product"], fields["name"],
                                fields["location"]))
        numbers_ok = all(_positive(v) for v in (fields["slot_count"], fields["min_length"],
                                                 fields["max_length"]) if v is not None)
        missing = facts.get("missing_slots", [])
        if not isinstance(missing, list) or not all(_positive(v) for v in missing):
            missing = []
        if text_ok and numbers_ok:
            recalled[int(key)] = mapping.NodeFacts(**fields, missing_slots=tuple(missing))
    return recalled


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
