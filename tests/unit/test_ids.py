"""The engine's ids of codes and events: random UUIDs of version 4, never handed out twice,
also across a fork."""

from __future__ import annotations

import os
import uuid

from bridge.engine.ids import new_id


def test_ids_are_random_version_4_uuids_in_their_usual_text() -> None:
    made = [new_id() for _ in range(1000)]  # several blocks read from the OS
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_does_not_hand_out_its_parents_next_ids() -> None:
    new_id()  # ids read ahead and not yet handed out
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.close(reader)
        os.write(writer, new_id().encode())
        os._exit(0)
    os.close(writer)
    child_id = os.read(reader, 64).decode()
    os.close(reader)
    os.waitpid(pid, 0)
    assert child_id != new_id()
