"""``ws.text_frames``: server frames written back to back, read back per RFC 6455."""

from __future__ import annotations

import struct

from exchange.api.ws import text_frames


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(first byte, payload) of each frame; fails on a masked frame or a short buffer."""
    out = []
    at = 0
    while at < len(data):
        first, second = data[at], data[at + 1]
        assert not second & 0x80, "server frames are unmasked"
        n = second & 0x7F
        at += 2
        if n == 126:
            (n,) = struct.unpack_from("!H", data, at)
            at += 2
        elif n == 127:
            (n,) = struct.unpack_from("!Q", data, at)
            at += 8
        assert at + n <= len(data), "frame longer than the buffer"
        out.append((first, data[at : at + n]))
        at += n
    return out


def test_text_frames_carry_each_payload_with_the_right_length_encoding() -> None:
    # Arrange: payloads at every length boundary (1-byte, 2-byte and 8-byte lengths)
    payloads = [
        bytes([65 + k % 26]) * n for k, n in enumerate((0, 1, 125, 126, 127, 65535, 65536, 70000))
    ]
    # Act
    data = text_frames(payloads)
    # Assert: final text frames with the same payloads, nothing left over
    assert parse_frames(data) == [(0x81, p) for p in payloads]
    assert len(data) == sum(len(p) for p in payloads) + 2 * 3 + 4 * 3 + 10 * 2


def test_no_payloads_make_no_bytes() -> None:
    assert text_frames([]) == b""
