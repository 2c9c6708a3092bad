"""bench.api's C load generator against the real API and engine: every order it sends is
answered once, and the figures it prints are the ones bench.api reads."""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import pytest

from bench.api import (
    build_loadgen,
    loadgen_frames,
    masked_text_frame,
    serve_api,
    start_engine,
    stop_engine,
    ws_paced_latency_loadgen,
)


def unmask(frame: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of one masked client frame."""
    length = frame[1] & 0x7F
    at = 2
    if length == 126:
        length = int.from_bytes(frame[2:4], "big")
        at = 4
    key = frame[at : at + 4]
    body = frame[at + 4 : at + 4 + length]
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(body))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 300, 70_000])
def test_masked_text_frame_round_trips(size: int) -> None:
    # Arrange
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    # Act
    frame = masked_text_frame(payload, b"\x01\x80\xff\x10")
    # Assert
    assert frame[0] == 0x81 and frame[1] & 0x80
    if size >= 1 << 16:
        assert frame[1] & 0x7F == 127 and int.from_bytes(frame[2:10], "big") == size
    else:
        assert unmask(frame) == (1, payload)


def test_loadgen_frames_file_layout() -> None:
    # Act
    blob = loadgen_frames(3, "layout-test")
    # Assert: a count, then (id, length, frame) with the login first
    (count,) = struct.unpack_from("<I", blob)
    at = 4
    ids = []
    for _ in range(count):
        request_id, length = struct.unpack_from("<II", blob, at)
        opcode, payload = unmask(blob[at + 8 : at + 8 + length])
        assert opcode == 1 and f'"id":{request_id}'.encode() in payload
        ids.append(request_id)
        at += 8 + length
    assert ids == [0, 1, 2, 3] and at == len(blob)


def test_loadgen_measures_every_order(tmp_path: Path) -> None:
    # Arrange
    loadgen = build_loadgen(tmp_path)
    if loadgen is None:
        pytest.skip("no C compiler on PATH (make installs clang-19)")

    async def scenario() -> dict[str, object]:
        runner = start_engine(tmp_path / "engine")
        _, web_runner, url = await serve_api(runner)
        try:
            return await ws_paced_latency_loadgen(
                loadgen, url, 2_000, 0.25, {"api": os.getpid(), "engine": runner.pid or 0}
            )
        finally:
            await web_runner.cleanup()
            stop_engine(runner)

    # Act
    figures = asyncio.run(scenario())
    # Assert: 500 orders answered (the load generator exits non-zero on a missing,
    # unknown or repeated answer) at about the offered rate
    assert figures["offered_per_s"] == 2_000
    assert 1_000 < float(figures["achieved_per_s"]) <= 2_100  # type: ignore[arg-type]
    assert 0 < float(figures["p50_ms"]) <= float(figures["p99_ms"]) <= float(figures["max_ms"])  # type: ignore[arg-type]
    cpu = figures["cpu_us_per_order"]
    assert isinstance(cpu, dict) and set(cpu) == {"client", "api", "engine"}
    assert all(value >= 0 for value in cpu.values())
