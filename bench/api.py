"""API benchmark: ``python -m bench.api [--quick]``.

A real engine (SQLite journal in a temporary directory, group commit) behind the real
aiohttp app on a loopback port; clients are aiohttp websockets in the same process and
event loop as the server (so every figure also pays for its own load generator):

* acks/s over the websocket with batches: ``place_batch`` of 50 IOC orders (each accepted,
  then its unfilled rest canceled: the full validation and journal path), a window of
  batches in flight. Same-run baseline: the same orders through the engine port directly
  (``EnginePort.submit_many``, no HTTP, no JSON), the ceiling the API can approach.
* p50 / p99 acknowledgement latency of single ``place`` messages paced at a fixed rate
  (10k orders/s, the target's rate, and 1k orders/s), send to answer, from a client in its own
  process: the C load generator ``bench/ws_loadgen.c`` (built with the first C compiler on
  PATH: clang-19, clang, cc, gcc, or ``$CC``), which sends the Python client's frames at its
  pacing for ~13 us of CPU per order; on these two cores the aiohttp client's ~30 us per order
  is taken from the server it measures. The 10k/s run is repeated with the aiohttp client
  (``--client-paced``; also the fallback when nothing compiles), as a Python market maker on
  the same host would see it. When the offered rate is above what the engine or the loop
  sustains, the latency is queueing time.
* event-loop CPU per order during the batch run (``time.thread_time`` of the loop thread:
  the API server and the bench client; the engine thread is not in it), and with the client
  in its own process the whole API process's CPU per order (``time.process_time``: the loop
  plus the engine pipe's encoding and event decoding, on the loop since round 5; the pipe
  threads of an engine process not bound to a loop).
* the host's vCPU stalls: one spinning child per vCPU, while the bench is idle, times the
  gaps over 1 ms in its loop (``vcpu_stalls``).
* the vCPU time the hypervisor stole during each paced run (``/proc/stat``): orders wait
  through it whatever the code does, so a run's tail is read next to it.
* the disk's ``fdatasync`` (4 KiB appended, then flushed, in the journal's directory) just
  before the latency runs: a durable acknowledgement waits for at least one, so its p50 / p99
  is the floor under the acknowledgement latency target.
* book-delta fan-out: 100 websocket subscribers of one market's book while orders come to rest;
  latency from the command's submit (and, apart, from the port's fold of its batch,
  where fan-out starts) to the last subscriber's receipt of its delta; frames per second.

``--engine process|inline|thread`` picks where the engine runs: a child process (the
default), inline on the API's event loop with its commits on a journal writer thread
(``exchange.engine.inline``), or a sequencer thread of the API's process. For the paced
runs the client also samples each process's CPU per order (``/proc/<pid>/stat``, from 10%
to 90% of the orders sent): the client, the API process and the engine child if any.

Targets (issue 7): >= 50k acks/s with batches; p99 <= 2 ms at 10k orders/s.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp import web
from solders.keypair import Keypair

from exchange.api.app import PORT_KEY, create_app
from exchange.api.config import ApiConfig
from exchange.api.ws import signed_login
from exchange.core import commands
from exchange.core.commands import CreateMarket, PlaceOrder
from exchange.engine.config import EngineConfig
from exchange.engine.inline import InlineEngine
from exchange.engine.process import EngineProcess
from exchange.engine.runners import EngineThread, open_runner
from exchange.engine.sequencer import Engine, EngineRunner

TICK = 1_000_000
LOT = 1_000_000_000
MARKET = 1
OWNER = 1
SUB_ACCOUNTS = 16  # spread orders so the engine's per-account order rate is never the limit
KEY = Keypair.from_seed(bytes([42]) * 32)
TARGET_ACKS_PER_S = 50_000
WINDOW_BATCHES = 40  # batches in flight: 2000 orders queued, so group commits stay large
TARGET_P99_MS = 2.0
ENGINE_MODES = ("process", "inline", "thread")
AnyRunner = EngineRunner | EngineProcess | InlineEngine | EngineThread


def ioc_order(i: int) -> dict[str, Any]:
    """A buy IOC below every ask: accepted, nothing to fill, remainder canceled."""
    return {
        "market_id": MARKET,
        "sub_account_id": i % SUB_ACCOUNTS,
        "side": "BID",
        "price": 99 * TICK,
        "size_base": LOT,
        "time_in_force": "IOC",
    }


def start_engine(
    data_dir: Path,
    *,
    in_process: bool = False,
    mode: str = "process",
    hold_cpu_latency: bool = True,
) -> AnyRunner:
    """The bench's market and funded sub-accounts in a journal under ``data_dir``, then the
    engine over it, as ``exchange.engine.runners.open_runner`` opens it for ``perpdex run``:
    ``mode`` "process" (a child process, the default), "thread" (a sequencer thread of this
    process) or "inline" (executing on this process's event loop, committing on a writer
    thread). Each holds the engine's PM QoS CPU-latency request unless ``hold_cpu_latency``
    is false. ``in_process=True``: a bare ``EngineRunner`` over the set-up engine (which its
    caller may drive directly once the runner is closed), with no such request."""
    if mode not in ENGINE_MODES:
        raise ValueError(f"engine mode: expected one of {ENGINE_MODES}, got {mode!r}")
    config = EngineConfig(
        data_dir=data_dir,
        hold_cpu_latency=hold_cpu_latency,
        runner="thread" if in_process else mode,
    )
    engine = Engine(config)
    engine.process([CreateMarket(MARKET, "BENCH-PERP", TICK, LOT)])
    if hasattr(commands, "UpdateOraclePrice"):  # the perp clearinghouse needs an index price
        engine.process(
            [
                commands.UpdateOraclePrice(MARKET, 100 * TICK, 0, 1, time.time_ns() // 10**9, True),
                *(commands.Deposit(OWNER, sub, 10**15) for sub in range(SUB_ACCOUNTS)),
            ]
        )
    if in_process:
        return EngineRunner(engine)
    engine.close()
    return open_runner(config)  # recovers the setup from the journal


def stop_engine(runner: AnyRunner) -> None:
    """Finish what is queued and close the journal (and release the CPU-latency request)."""
    runner.close()
    if isinstance(runner, EngineRunner) and not isinstance(runner, EngineThread):
        runner.engine.close()


def cpu_latency_detail(runner: AnyRunner) -> str:
    """The runner's PM QoS CPU-latency status line (none for a bare ``EngineRunner``)."""
    status = getattr(runner, "cpu_latency", None)
    return "not held (bare engine runner)" if status is None else str(status.detail)


def settle_client_heap() -> None:
    """Move the load generator's heap (aiohttp, solders, the prepared frames: ~100k tracked
    objects) out of the cyclic GC before the timed loop. Otherwise the client's own full
    collection, 30-50 ms on this machine and due a second or so into a run, holds back its
    reading of acks and is measured as server latency: the 1% slowest orders of such a run
    all fall into that one pause."""
    gc.collect()
    gc.freeze()


def login_frame(nonce: str) -> bytes:
    """The bench key's signed, read-write websocket login (request id 0), as JSON."""
    return orjson.dumps({"id": 0, **signed_login(KEY, time.time_ns() // 1_000_000, nonce, False)})


async def login(ws: aiohttp.ClientWebSocketResponse, nonce: str) -> None:
    await ws.send_str(login_frame(nonce).decode())
    answer = orjson.loads((await ws.receive()).data)
    assert "result" in answer, answer


async def last_json_line(*argv: str) -> Any:
    """Run a bench child process (``argv``) to its end; the JSON object its last line holds."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {argv[:3]}: expected exit 0, got {proc.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1])


async def engine_baseline(app: web.Application, n: int, batch: int, window: int) -> float:
    """Orders/s through the engine port alone, batches of ``batch``, ``window`` in flight."""
    port = app[PORT_KEY]
    cmds = [
        PlaceOrder(MARKET, OWNER, i % SUB_ACCOUNTS, 0, 99 * TICK, LOT, time_in_force=1)
        for i in range(n)
    ]
    chunks = [cmds[i : i + batch] for i in range(0, n, batch)]
    started = time.perf_counter()
    pending: set[asyncio.Task[Any]] = set()
    for chunk in chunks:
        pending.add(asyncio.ensure_future(port.submit_many(chunk)))
        if len(pending) >= window:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*pending)
    return n / (time.perf_counter() - started)


async def ws_batch_acks(url: str, n: int, batch: int, window: int) -> tuple[float, int]:
    """Acks/s for ``place_batch`` over one websocket; also the number accepted."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await login(ws, f"bench-batch-{os.getpid()}")
        orders = [ioc_order(i) for i in range(n)]
        frames = [
            orjson.dumps(
                {"op": "place_batch", "id": k + 1, "params": {"orders": orders[i : i + batch]}}
            ).decode()
            for k, i in enumerate(range(0, n, batch))
        ]
        settle_client_heap()
        accepted = 0
        received = 0
        sent = 0
        started = time.perf_counter()
        while sent < min(window, len(frames)):
            await ws.send_str(frames[sent])
            sent += 1
        while received < len(frames):
            msg = orjson.loads((await ws.receive()).data)
            if "result" not in msg:
                raise RuntimeError(f"bench: expected results, got {msg}")
            received += 1
            accepted += sum(r["status"] == "ACCEPTED" for r in msg["result"]["results"])
            if sent < len(frames):
                await ws.send_str(frames[sent])
                sent += 1
        return n / (time.perf_counter() - started), accepted


async def ws_batch_acks_in_subprocess(url: str, n: int) -> tuple[float, int]:
    """``ws_batch_acks`` run by a child process (``--client-batch``), so the server's loop
    thread does only the server's work."""
    acks_per_s, accepted = await last_json_line(
        sys.executable, "-m", "bench.api", "--client-batch", url, str(n)
    )
    return float(acks_per_s), int(accepted)


def fdatasync_probe(directory: Path, n: int) -> dict[str, float]:
    """``n`` appends of 4 KiB, each followed by ``fdatasync``: latency percentiles (ms)."""
    path = directory / "fdatasync-probe"
    block = b"\0" * 4096
    latencies_ns: list[int] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n):
            os.write(fd, block)
            started = time.perf_counter_ns()
            os.fdatasync(fd)
            latencies_ns.append(time.perf_counter_ns() - started)
    finally:
        os.close(fd)
        path.unlink()
    latencies_ns.sort()
    return {
        "p50_ms": latencies_ns[n // 2] / 1e6,
        "p99_ms": latencies_ns[int(n * 0.99)] / 1e6,
    }


def host_steal_s(stat_path: str = "/proc/stat") -> float | None:
    """CPU seconds the hypervisor has taken from this VM's vCPUs so far, all vCPUs summed
    (``steal``, the 8th figure of ``/proc/stat``'s ``cpu`` line); ``None`` where the kernel
    has no such figure."""
    try:
        with open(stat_path) as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if fields[0] != "cpu" or len(fields) < 9:
        return None
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def ws_paced_latency(
    url: str, rate_per_s: int, seconds: float, pids: dict[str, int] | None = None
) -> dict[str, Any]:
    """Single ``place`` messages at ``rate_per_s``; ack latency percentiles (ms). With
    ``pids`` (name -> process id) also each process's CPU per order (us, "client" this
    one) over the steady middle of the run (from 10% to 90% of the orders sent)."""
    n = int(rate_per_s * seconds)
    watched = {"client": os.getpid(), **(pids or {})}
    cpu_marks: list[tuple[float, dict[str, float]]] = []
    mark_at = {n // 10, (n * 9) // 10}
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await login(ws, f"bench-latency-{rate_per_s}-{os.getpid()}-{time.time_ns()}")
        frames = [
            orjson.dumps({"op": "place", "id": i + 1, "params": ioc_order(i)}).decode()
            for i in range(n)
        ]
        sent_at = [0] * (n + 1)
        latencies_ns: list[int] = []
        settle_client_heap()

        async def reader() -> None:
            while len(latencies_ns) < n:
                data = (await ws.receive()).data
                now = time.perf_counter_ns()
                msg = orjson.loads(data)
                latencies_ns.append(now - sent_at[msg["id"]])

        read_task = asyncio.ensure_future(reader())
        started = time.perf_counter_ns()
        period_ns = 1_000_000_000 // rate_per_s
        for i in range(n):
            due = started + i * period_ns
            now = time.perf_counter_ns()
            if due > now + 200_000:  # sleep only when more than 0.2 ms early
                await asyncio.sleep((due - now) / 1e9)
            if i in mark_at:
                cpu_marks.append((i, {k: process_cpu_s(pid) for k, pid in watched.items()}))
            sent_at[i + 1] = time.perf_counter_ns()
            await ws.send_str(frames[i])
        await read_task
        elapsed_s = (time.perf_counter_ns() - started) / 1e9
    latencies_ns.sort()
    cpu_us: dict[str, float] = {}
    if len(cpu_marks) == 2:
        (i0, cpu0), (i1, cpu1) = cpu_marks
        cpu_us = {k: (cpu1[k] - cpu0[k]) * 1e6 / (i1 - i0) for k in watched}
    return {
        "offered_per_s": rate_per_s,
        "achieved_per_s": n / elapsed_s,
        "p50_ms": latencies_ns[n // 2] / 1e6,
        "p99_ms": latencies_ns[int(n * 0.99)] / 1e6,
        "max_ms": latencies_ns[-1] / 1e6,
        "cpu_us_per_order": cpu_us,
    }


async def ws_paced_latency_in_subprocess(
    url: str, rate_per_s: int, seconds: float, pids: dict[str, int] | None = None
) -> dict[str, Any]:
    """``ws_paced_latency`` run by a child process (``--client-paced``); ``pids`` as there
    (the server's processes, whose CPU per order the client samples)."""
    watched = ",".join(f"{name}={pid}" for name, pid in (pids or {}).items())
    figures: dict[str, Any] = await last_json_line(
        sys.executable,
        "-m",
        "bench.api",
        "--client-paced",
        url,
        str(rate_per_s),
        str(seconds),
        watched,
    )
    return figures


STALL_NS = 1_000_000  # a gap in a spinning loop longer than this is a vCPU stall


def vcpu_stalls(cpu: int, seconds: float) -> dict[str, float]:
    """Pin this process to vCPU ``cpu``, spin for ``seconds`` reading the clock and time
    every gap over ``STALL_NS`` between two reads: the loop has nothing to wait for, so each
    gap is time the vCPU was taken away (by the host, or by a kernel thread) and an order
    on it would have waited as long."""
    os.sched_setaffinity(0, {cpu})
    now = time.perf_counter_ns
    started = previous = now()
    end = started + int(seconds * 1e9)
    gaps: list[int] = []
    while previous < end:
        t = now()
        if t - previous > STALL_NS:
            gaps.append(t - previous)
        previous = t
    return {
        "cpu": cpu,
        "stalls": len(gaps),
        "stalled_ms": sum(gaps) / 1e6,
        "max_ms": max(gaps, default=0) / 1e6,
    }


async def vcpu_stall_probe(seconds: float) -> dict[str, float]:
    """``vcpu_stalls`` on every vCPU this process may use at once (one child each), while
    nothing else of the bench runs: how often and how long the host takes a vCPU away."""
    cpus = sorted(os.sched_getaffinity(0))
    per_cpu = await asyncio.gather(
        *(
            last_json_line(
                sys.executable, "-m", "bench.api", "--stall-probe", str(cpu), str(seconds)
            )
            for cpu in cpus
        )
    )
    vcpu_s = seconds * len(cpus)
    return {
        "vcpus": len(cpus),
        "stalls_per_vcpu_s": sum(r["stalls"] for r in per_cpu) / vcpu_s,
        "stalled_pct": sum(r["stalled_ms"] for r in per_cpu) / (vcpu_s * 1e3) * 100,
        "max_ms": max(r["max_ms"] for r in per_cpu),
    }


LOADGEN_SOURCE = Path(__file__).with_name("ws_loadgen.c")
LOADGEN_COMPILERS = ("clang-19", "clang", "cc", "gcc")


def build_loadgen(directory: Path) -> Path | None:
    """Compile ``ws_loadgen.c`` into ``directory``; ``None`` (and why, on stderr) when no C
    compiler is on PATH or the build fails: the run then measures with the Python client."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else list(LOADGEN_COMPILERS)
    compiler = next((c for c in candidates if shutil.which(c)), None)
    if compiler is None:
        print(f"bench: no C compiler among {candidates}: Python client only", file=sys.stderr)
        return None
    binary = directory / "ws_loadgen"
    built = subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(LOADGEN_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        print(f"bench: {compiler} ws_loadgen.c failed: {built.stderr.strip()}", file=sys.stderr)
        return None
    return binary


def masked_text_frame(payload: bytes, mask_key: bytes) -> bytes:
    """One client-to-server websocket text frame (RFC 6455: clients mask every frame)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = (mask_key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return header + mask_key + masked


def loadgen_frames(n: int, nonce: str) -> bytes:
    """``ws_loadgen``'s input: a signed login (id 0), then ``n`` single ``place`` frames
    (ids 1..n, the Python client's orders), each masked with a key from a seeded RNG."""
    rng = random.Random(7)
    payloads = [login_frame(nonce)] + [
        orjson.dumps({"op": "place", "id": i + 1, "params": ioc_order(i)}) for i in range(n)
    ]
    out = [struct.pack("<I", len(payloads))]
    for request_id, payload in enumerate(payloads):
        frame_bytes = masked_text_frame(payload, rng.randbytes(4))
        out.append(struct.pack("<II", request_id, len(frame_bytes)))
        out.append(frame_bytes)
    return b"".join(out)


async def ws_paced_latency_loadgen(
    loadgen: Path, url: str, rate_per_s: int, seconds: float, pids: dict[str, int] | None = None
) -> dict[str, Any]:
    """``ws_paced_latency`` measured by the C load generator ``loadgen`` (``build_loadgen``):
    the same frames, pacing and figures, at a few us of client CPU per order instead of
    ~30 (on 2 cores the Python client's CPU is taken from the server it measures)."""
    n = int(rate_per_s * seconds)
    parsed = urlsplit(url)
    with tempfile.TemporaryDirectory() as tmp:
        frames_path = Path(tmp) / "frames"
        frames_path.write_bytes(loadgen_frames(n, f"bench-c-{rate_per_s}-{time.time_ns()}"))
        watched = pids or {}
        figures: dict[str, Any] = await last_json_line(
            str(loadgen),
            parsed.hostname or "127.0.0.1",
            str(parsed.port),
            parsed.path,
            str(frames_path),
            str(rate_per_s),
            *(str(pid) for pid in watched.values()),
        )
    by_pid = figures.pop("cpu_us_per_order")
    figures["cpu_us_per_order"] = {
        "client": by_pid["client"],
        **{name: by_pid[str(pid)] for name, pid in watched.items()},
    }
    return figures


async def fan_out(
    app: web.Application, url: str, subscribers: int, orders: int
) -> dict[str, float]:
    """Deltas to ``subscribers`` book subscribers: last-receipt latency and frames/s."""
    port = app[PORT_KEY]
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(url) for _ in range(subscribers)]
        subscribe = orjson.dumps({"op": "subscribe", "channel": "book", "market_id": MARKET})
        for ws in sockets:
            await ws.send_str(subscribe.decode())
            await ws.receive()  # ack
            await ws.receive()  # snapshot
        submit_ns: dict[int, int] = {}  # book_seq -> when its command was submitted
        last_seen_ns: dict[int, int] = {}  # book_seq -> latest receipt over all subscribers
        seen_upto = [0] * subscribers
        frames = 0

        async def consume(k: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal frames
            while True:
                msg = orjson.loads((await ws.receive()).data)
                now = time.perf_counter_ns()
                seq = msg["book_seq"]
                frames += 1
                if now > last_seen_ns.get(seq, 0):
                    last_seen_ns[seq] = now
                seen_upto[k] = seq

        folded_ns: dict[int, int] = {}  # book_seq -> when the port folded it (fan-out starts)

        def on_fold(events: Any, update: Any) -> None:
            now = time.perf_counter_ns()
            for delta in update.book_deltas:
                folded_ns[delta.book_seq] = now

        stop_listening = port.listen(on_fold)
        consumers = [asyncio.ensure_future(consume(k, ws)) for k, ws in enumerate(sockets)]
        started = time.perf_counter()
        for i in range(orders):
            # resting bids over five prices: each command changes one level (one delta)
            price = (95 + i % 5) * TICK
            cmd = PlaceOrder(MARKET, OWNER, i % SUB_ACCOUNTS, 0, price, LOT)
            t0 = time.perf_counter_ns()
            await port.submit(cmd)  # returns after the read model folded it (and fanned out)
            submit_ns[port.model.book_seq[MARKET]] = t0
        final = port.model.book_seq[MARKET]
        deadline = time.perf_counter() + 60
        while min(seen_upto) < final and time.perf_counter() < deadline:
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        for ws in sockets:
            await ws.close()
    if min(seen_upto) < final:
        raise RuntimeError(
            f"fan-out: expected every subscriber at seq {final}, got {min(seen_upto)}"
        )
    stop_listening()
    lat = sorted(last_seen_ns[s] - t for s, t in submit_ns.items() if s in last_seen_ns)
    fan = sorted(last_seen_ns[s] - folded_ns[s] for s in submit_ns if s in last_seen_ns)
    return {
        "subscribers": subscribers,
        "deltas": len(lat),
        "frames_per_s": frames / elapsed,
        "last_receipt_p50_ms": lat[len(lat) // 2] / 1e6,
        "last_receipt_p99_ms": lat[int(len(lat) * 0.99)] / 1e6,
        "fold_to_last_p50_ms": fan[len(fan) // 2] / 1e6,
        "fold_to_last_p99_ms": fan[int(len(fan) * 0.99)] / 1e6,
    }


async def serve_api(
    runner: AnyRunner,
) -> tuple[web.Application, web.AppRunner, str]:
    """The API over ``runner`` on a loopback port, without rate limits: the app, its runner
    (``cleanup()`` it) and the websocket URL."""
    config = ApiConfig(
        port=0,
        owners=((str(KEY.pubkey()), OWNER),),
        rate_limit_burst=10**9,
        rate_limit_per_second=10**9,
        public_rate_limit_burst=10**9,
        public_rate_limit_per_second=10**9,
        ws_send_queue_max=10**6,
    )
    app = create_app(config, runner)
    web_runner = web.AppRunner(app)
    await web_runner.setup()
    await web.TCPSite(web_runner, "127.0.0.1", 0).start()
    return app, web_runner, f"http://127.0.0.1:{web_runner.addresses[0][1]}/ws"


async def run(quick: bool, mode: str = "process", hold_cpu_latency: bool = True) -> dict[str, Any]:
    n_batch = 20_000 if quick else 100_000
    latency_s = 1.0 if quick else 3.0
    fan_orders = 200 if quick else 1_000
    with tempfile.TemporaryDirectory() as tmp:
        runner = start_engine(Path(tmp), mode=mode, hold_cpu_latency=hold_cpu_latency)
        cpu_latency = cpu_latency_detail(runner)
        app, web_runner, url = await serve_api(runner)
        pids = {"api": os.getpid()}
        if isinstance(runner, EngineProcess) and runner.pid is not None:
            pids["engine"] = runner.pid
        try:
            baseline = await engine_baseline(app, n_batch, 50, WINDOW_BATCHES)
            cpu_before = time.thread_time()
            acks_per_s, accepted = await ws_batch_acks(url, n_batch, 50, WINDOW_BATCHES)
            # CPU of the event-loop thread (server and client: everything but the engine)
            loop_cpu_us = (time.thread_time() - cpu_before) * 1e6 / n_batch
            # the same with the client in its own process: the loop thread is the server only
            cpu_before = time.thread_time()
            process_cpu_before = time.process_time()
            remote_acks_per_s, _ = await ws_batch_acks_in_subprocess(url, n_batch)
            server_cpu_us = (time.thread_time() - cpu_before) * 1e6 / n_batch
            process_cpu_us = (time.process_time() - process_cpu_before) * 1e6 / n_batch
            fsync = fdatasync_probe(Path(tmp), 200)
            stalls = await vcpu_stall_probe(1.0 if quick else 3.0)
            loadgen = build_loadgen(Path(tmp))

            async def paced(rate_per_s: int) -> dict[str, Any]:
                steal_before = host_steal_s()
                if loadgen is None:
                    figures = await ws_paced_latency_in_subprocess(url, rate_per_s, latency_s, pids)
                else:
                    figures = await ws_paced_latency_loadgen(
                        loadgen, url, rate_per_s, latency_s, pids
                    )
                steal_after = host_steal_s()
                # Time the hypervisor ran something else on our vCPUs: orders wait through
                # it whatever the code does, so a run's tail is read next to it.
                figures["host_steal_ms"] = (
                    None
                    if steal_before is None or steal_after is None
                    else round((steal_after - steal_before) * 1e3)
                )
                return figures

            latency = await paced(10_000)
            light = await paced(1_000)
            # the same 10k/s run from the aiohttp client (its ~30 us per order competes
            # with the server for the two cores): what a Python market maker on the same
            # host would see
            python_client = await ws_paced_latency_in_subprocess(url, 10_000, latency_s, pids)
            fan = await fan_out(app, url, 100, fan_orders)
        finally:
            await web_runner.cleanup()
            stop_engine(runner)
    return {
        "quick": quick,
        "engine": mode,
        "engine_cpu_latency": cpu_latency,
        "ws_batch_acks_per_s": round(acks_per_s),
        "ws_batch_accepted": accepted,
        "ws_batch_orders": n_batch,
        "engine_port_baseline_per_s": round(baseline),
        "ratio_ws_vs_engine_port": round(acks_per_s / baseline, 3),
        "target_acks_per_s": TARGET_ACKS_PER_S,
        "latency_offered_per_s": latency["offered_per_s"],
        "latency_achieved_per_s": round(latency["achieved_per_s"]),
        "latency_p50_ms": round(latency["p50_ms"], 3),
        "latency_p99_ms": round(latency["p99_ms"], 3),
        "latency_max_ms": round(latency["max_ms"], 3),
        "latency_host_steal_ms": latency["host_steal_ms"],
        "latency_client": "python-aiohttp" if loadgen is None else "c-loadgen",
        "latency_python_client_p50_ms": round(python_client["p50_ms"], 3),
        "latency_python_client_p99_ms": round(python_client["p99_ms"], 3),
        **{
            f"latency_python_client_cpu_us_per_order_{name}": round(us, 1)
            for name, us in python_client["cpu_us_per_order"].items()
        },
        "latency_1k_p50_ms": round(light["p50_ms"], 3),
        "latency_1k_p99_ms": round(light["p99_ms"], 3),
        "latency_1k_host_steal_ms": light["host_steal_ms"],
        **{
            f"latency_cpu_us_per_order_{name}": round(us, 1)
            for name, us in latency["cpu_us_per_order"].items()
        },
        **{
            f"latency_1k_cpu_us_per_order_{name}": round(us, 1)
            for name, us in light["cpu_us_per_order"].items()
        },
        "loop_cpu_us_per_order": round(loop_cpu_us, 2),
        "ws_batch_acks_per_s_client_process": round(remote_acks_per_s),
        "server_loop_cpu_us_per_order": round(server_cpu_us, 2),
        "api_process_cpu_us_per_order": round(process_cpu_us, 2),
        "fdatasync_p50_ms": round(fsync["p50_ms"], 3),
        "fdatasync_p99_ms": round(fsync["p99_ms"], 3),
        "host_vcpus": stalls["vcpus"],
        "host_vcpu_stalls_per_s": round(stalls["stalls_per_vcpu_s"], 2),
        "host_vcpu_stalled_pct": round(stalls["stalled_pct"], 3),
        "host_vcpu_stall_max_ms": round(stalls["max_ms"], 2),
        "target_p99_ms": TARGET_P99_MS,
        "fanout_subscribers": fan["subscribers"],
        "fanout_deltas": fan["deltas"],
        "fanout_frames_per_s": round(fan["frames_per_s"]),
        "fanout_last_receipt_p50_ms": round(fan["last_receipt_p50_ms"], 3),
        "fanout_last_receipt_p99_ms": round(fan["last_receipt_p99_ms"], 3),
        "fanout_fold_to_last_p50_ms": round(fan["fold_to_last_p50_ms"], 3),
        "fanout_fold_to_last_p99_ms": round(fan["fold_to_last_p99_ms"], 3),
    }


def cpu_row(figures: dict[str, Any], prefix: str) -> str:
    """``name N us`` for each process's CPU per order under ``prefix``."""
    return ", ".join(
        f"{key[len(prefix) :]} {value:.0f} us"
        for key, value in figures.items()
        if key.startswith(prefix)
    )


def steal_text(steal_ms: int | None) -> str:
    """A run's stolen vCPU time for the table."""
    return "not reported by this kernel" if steal_ms is None else f"{steal_ms} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs for development")
    parser.add_argument(
        "--engine",
        choices=ENGINE_MODES,
        default="process",
        help="where the engine runs: a child process (default), inline on the API's event"
        " loop with a journal writer thread, or a sequencer thread of the API's process",
    )
    parser.add_argument("--engine-thread", action="store_true", help="the same as --engine thread")
    parser.add_argument(
        "--no-cpu-latency",
        action="store_true",
        help="the engine holds no PM QoS CPU-latency request ([engine] hold_cpu_latency = false)",
    )
    parser.add_argument("--client-batch", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    parser.add_argument(  # URL RATE SECONDS [PIDS]
        "--client-paced", nargs="+", metavar="ARG", help=argparse.SUPPRESS
    )
    parser.add_argument(  # CPU SECONDS
        "--stall-probe", nargs=2, metavar=("CPU", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.stall_probe:  # the child side of vcpu_stall_probe
        stalls = vcpu_stalls(int(args.stall_probe[0]), float(args.stall_probe[1]))
        sys.stdout.write(json.dumps(stalls) + "\n")
        return 0
    if args.client_paced:  # the child side of ws_paced_latency_in_subprocess
        url, rate, seconds, *rest = args.client_paced
        watched = rest[0] if rest else ""
        pids = {k: int(v) for k, v in (kv.split("=") for kv in watched.split(",") if kv)}
        paced = asyncio.run(ws_paced_latency(url, int(rate), float(seconds), pids))
        sys.stdout.write(json.dumps(paced) + "\n")
        return 0
    if args.client_batch:  # the child side of ws_batch_acks_in_subprocess
        url, n = args.client_batch[0], int(args.client_batch[1])
        result = asyncio.run(ws_batch_acks(url, n, 50, WINDOW_BATCHES))
        sys.stdout.write(json.dumps(list(result)) + "\n")
        return 0
    figures = asyncio.run(
        run(
            args.quick,
            "thread" if args.engine_thread else args.engine,
            hold_cpu_latency=not args.no_cpu_latency,
        )
    )

    def ok(good: bool) -> str:
        return "met" if good else "NOT met"

    rows = [
        ("engine PM QoS CPU-latency request", figures["engine_cpu_latency"], ""),
        (
            "engine port, batches of 50 (baseline)",
            f"{figures['engine_port_baseline_per_s']:,} orders/s",
            "",
        ),
        (
            "websocket place_batch of 50",
            f"{figures['ws_batch_acks_per_s']:,} acks/s",
            f"{ok(figures['ws_batch_acks_per_s'] >= TARGET_ACKS_PER_S)} (target >= {TARGET_ACKS_PER_S:,})",
        ),
        ("  ratio vs engine port", f"{figures['ratio_ws_vs_engine_port']:.2f}x", ""),
        (
            "  event-loop CPU per order",
            f"{figures['loop_cpu_us_per_order']:.1f} us",
            "API server + bench client, engine thread excluded",
        ),
        (
            "  client in its own process",
            f"{figures['ws_batch_acks_per_s_client_process']:,} acks/s",
            f"server loop CPU {figures['server_loop_cpu_us_per_order']:.1f} us per order "
            f"(one loop core: ~{1e6 / max(figures['server_loop_cpu_us_per_order'], 0.01):,.0f}/s "
            "without the engine)",
        ),
        (
            "  API process CPU per order",
            f"{figures['api_process_cpu_us_per_order']:.1f} us",
            "loop + engine pipe I/O and codecs (client and engine processes excluded)",
        ),
        (
            "fdatasync (4 KiB append) on this disk",
            f"p50 {figures['fdatasync_p50_ms']:.3f} ms, p99 {figures['fdatasync_p99_ms']:.3f} ms",
            "a durable acknowledgement waits for at least one",
        ),
        (
            f"vCPU stalls over {STALL_NS / 1e6:g} ms (idle spin, {figures['host_vcpus']} vCPUs)",
            f"{figures['host_vcpu_stalls_per_s']:.1f}/s per vCPU, "
            f"max {figures['host_vcpu_stall_max_ms']:.1f} ms",
            f"{figures['host_vcpu_stalled_pct']:.2f}% of the time: orders queue behind each",
        ),
        (
            f"single place at {figures['latency_offered_per_s']:,}/s ({figures['latency_client']})",
            f"p50 {figures['latency_p50_ms']:.3f} ms, p99 {figures['latency_p99_ms']:.3f} ms",
            f"{ok(figures['latency_p99_ms'] <= TARGET_P99_MS)} (target p99 <= {TARGET_P99_MS} ms; "
            f"achieved {figures['latency_achieved_per_s']:,}/s)",
        ),
        (
            "  CPU per order by process",
            cpu_row(figures, "latency_cpu_us_per_order_"),
            "over the middle 80% of the run",
        ),
        (
            "  vCPU time stolen by the host",
            steal_text(figures["latency_host_steal_ms"]),
            "during the run, all vCPUs (/proc/stat steal)",
        ),
        (
            "  the same from the Python (aiohttp) client",
            f"p50 {figures['latency_python_client_p50_ms']:.3f} ms, "
            f"p99 {figures['latency_python_client_p99_ms']:.3f} ms",
            f"its own CPU {figures['latency_python_client_cpu_us_per_order_client']:.0f} us per "
            "order, taken from the server's two cores",
        ),
        (
            "single place at 1,000/s",
            f"p50 {figures['latency_1k_p50_ms']:.3f} ms, p99 {figures['latency_1k_p99_ms']:.3f} ms",
            "below the engine's capacity: the API's own latency plus one group commit",
        ),
        ("  CPU per order by process", cpu_row(figures, "latency_1k_cpu_us_per_order_"), ""),
        ("  vCPU time stolen by the host", steal_text(figures["latency_1k_host_steal_ms"]), ""),
        (
            f"fan-out to {figures['fanout_subscribers']} subscribers",
            f"{figures['fanout_frames_per_s']:,} frames/s",
            f"submit -> last receipt p50 {figures['fanout_last_receipt_p50_ms']:.3f} ms, "
            f"p99 {figures['fanout_last_receipt_p99_ms']:.3f} ms",
        ),
        (
            "  fold -> last of 100 receipts",
            f"p50 {figures['fanout_fold_to_last_p50_ms']:.3f} ms",
            f"p99 {figures['fanout_fold_to_last_p99_ms']:.3f} ms (fan-out alone, no journal)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        sys.stdout.write(f"{label:<{width}}  {value:>36}  {note}\n".rstrip() + "\n")
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
