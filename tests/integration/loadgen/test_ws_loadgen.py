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
    host_steal_s,
    loadgen_frames,
    masked_text_frame,
    serve_api,
    start_engine,
    stop_engine,
    vcpu_stall_probe,
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


def test_host_steal_reads_the_cpu_line(tmp_path: Path) -> None:
    # Arrange: user nice system idle iowait irq softirq steal guest guest_nice
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 5 900 1 0 2 250 0 0\ncpu0 5 0 2 450 1 0 1 125 0 0\n")
    old_kernel = tmp_path / "old"
    old_kernel.write_text("cpu  10 0 5 900\n")
    # Act / Assert
    assert host_steal_s(str(stat)) == 250 / os.sysconf("SC_CLK_TCK")
    assert host_steal_s(str(old_kernel)) is None
    assert host_steal_s(str(tmp_path / "missing")) is None


def test_vcpu_stall_probe_spins_on_every_vcpu() -> None:
    # Act: one spinning child per vCPU for 0.3 s
    stalls = asyncio.run(vcpu_stall_probe(0.3))
    # Assert: figures of every vCPU, within what 0.3 s of spinning can hold
    assert stalls["vcpus"] == len(os.sched_getaffinity(0))
    assert stalls["stalls_per_vcpu_s"] >= 0
    assert 0 <= stalls["stalled_pct"] < 100
    assert 0 <= stalls["max_ms"] < 300
    assert (stalls["max_ms"] > 0) == (stalls["stalls_per_vcpu_s"] > 0)
