"""The engine process's wire format: frames, compact commands, replies (no process here)."""

from __future__ import annotations

import random
from typing import Any, get_type_hints

import pytest

from exchange.core.commands import COMMAND_TYPES, PlaceOrder
from exchange.core.orders import Side
from exchange.engine import process
from exchange.engine.sequencer import EngineStopped


def _sample(cls: Any, seed: int) -> Any:
    """A command of ``cls`` with every field set (ints, bools, strings as declared)."""
    rng = random.Random(seed)
    values: list[Any] = []
    for name, kind in get_type_hints(cls).items():
        if kind is str:
            values.append(f"{name}-{rng.randrange(100)}")
        elif kind is bool:
            values.append(rng.random() < 0.5)
        else:
            values.append(rng.randrange(0, 2**15))
    return cls(*values)


def test_frames_come_back_whole_from_any_split_of_the_bytes() -> None:
    # Arrange: three frames (one empty, one larger than a header) on one byte stream
    payloads = [b"first", b"", bytes(range(256)) * 3]
    stream = b"".join(process.frame(p) for p in payloads)
    for piece in (1, 3, 7, 8, 9, len(stream)):
        frames = process._Frames()
        # Act: fed in pieces of `piece` bytes
        for at in range(0, len(stream), piece):
            frames.feed(stream[at : at + piece])
        # Assert: every frame once, in order, nothing left over
        assert list(frames.ready) == payloads, piece
        assert not frames._buf


def test_every_command_type_travels_compactly_with_exact_types() -> None:
    # Arrange: one command of every type, all fields set, in two requests and a snapshot
    commands = tuple(_sample(cls, i) for i, cls in enumerate(COMMAND_TYPES.values()))
    requests = [
        (process._CMDS, 7, commands[:5]),
        (process._SNAPSHOT, 8),
        (process._CMDS, 9, commands[5:]),
    ]
    # Act
    data = process.encode_requests(requests)
    back = process.decode_requests(data)
    # Assert: the compact form, the same requests, each field of the same type
    assert data[0] == ord("R")
    assert back == requests
    got = [c for r in back if r[0] == process._CMDS for c in r[2]]
    for sent, received in zip(commands, got, strict=True):
        assert type(received) is type(sent)
        assert [type(v) for v in received] == [type(v) for v in sent]


@pytest.mark.parametrize(
    "odd",
    [
        PlaceOrder(0, 1, 0, Side.BID, 100, 1),  # an IntEnum member: must stay one
        PlaceOrder(0, 1, 0, 0, 100.0, 1),  # type: ignore[arg-type]  # a float: refused later
        PlaceOrder(0, 1, 0, 0, 100, 1, client_order_id=2**100),  # beyond 64 bits
        {"type": "place"},  # not a command: the engine refuses it as malformed
    ],
)
def test_what_json_cannot_carry_exactly_is_pickled(odd: Any) -> None:
    # Arrange
    requests = [(process._CMDS, 1, (PlaceOrder(0, 1, 0, 0, 100, 1), odd))]
    # Act
    data = process.encode_requests(requests)
    back = process.decode_requests(data)
    # Assert: the pickle, and the odd value exactly as given
    assert data[0] == ord("P")
    assert back == requests
    received = back[0][2][1]
    assert type(received) is type(odd)
    if isinstance(odd, tuple):
        assert [type(v) for v in received] == [type(v) for v in odd]


def test_replies_round_trip() -> None:
    # Arrange
    done = (process._DONE, b'{"journal":"bytes"}', [[3, 2, 0], [4, 5]])
    events = (process._EVENTS, b"payload")
    failed = (process._FAILED, (1, 2), "disk full")
    # Act / Assert
    for reply in (done, events, failed, (process._STOPPED,)):
        assert process.decode_reply(process.encode_reply(reply)) == reply


def test_an_unknown_reply_tag_is_refused() -> None:
    with pytest.raises(EngineStopped, match="expected a reply frame tag, got 90"):
        process.decode_reply(b"Zjunk")
