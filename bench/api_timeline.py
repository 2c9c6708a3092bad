"""Timeline of single orders through the API and the engine process:
``python -m bench.api_timeline [--rate N] [--seconds S]``.

Where does a single ``place`` wait at 10k orders/s? One paced run like ``bench.api``'s
(client in its own process, engine in its own process), with timestamps taken per order at
every hop, all on ``time.perf_counter_ns`` (CLOCK_MONOTONIC: one clock for the three
processes):

client send -> API frame read (``_order_op``) -> hand-off to the engine (``EnginePort._flush``)
-> pipe write (sender thread) -> engine pipe read -> execute start / end -> journal commit
start / end -> reply write -> API reply read (reader thread) -> fold on the loop -> ack queued
(``send_json``) -> client receive.

Instrumentation wraps functions of this process and of the engine child (a child target that
wraps before running the real ``_child_main``); nothing else changes. It costs a few us per
hop, so absolute figures are a little above ``bench.api``'s. Prints per-hop percentiles of
the gap to the previous hop, the group commits' sizes, and the slowest orders' whole
timelines; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import gc
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.api import ioc_order, login, serve_api, settle_client_heap, start_engine, stop_engine
from exchange.api import engine_port, ws
from exchange.engine import process as engine_process
from exchange.engine.config import EngineConfig

_now = time.perf_counter_ns
_ENV_OUT = "PERPDEX_TIMELINE_OUT"


def _timed(real: Callable[[Any], Any], hook: Callable[[Any], None], *, on_result: bool) -> Any:
    """``real`` with ``hook`` told of its argument (or its result) when it runs."""

    def wrapped(arg: Any) -> Any:
        if on_result:
            out = real(arg)
            hook(out)
            return out
        hook(arg)
        return real(arg)

    return wrapped


def _coids(commands: Any) -> tuple[int, ...]:
    # tuples of ints: the cyclic GC stops tracking them, so the records do not grow the
    # heap it walks (which would distort the very pauses measured here)
    return tuple([getattr(c, "client_order_id", 0) for c in commands])


def timeline_child(config: EngineConfig, conn: Connection) -> None:
    """The engine child with timestamps; writes them to ``$PERPDEX_TIMELINE_OUT`` at stop."""
    from exchange.engine import journal as journal_mod
    from exchange.engine import sequencer

    records: list[tuple[Any, ...]] = []  # (hop, ns, client order ids or a count)

    def on_loads(obj: Any) -> None:
        if isinstance(obj, list):
            for request in obj:
                if request[0] == engine_process._CMDS:
                    records.append(("engine_read", _now(), _coids(request[2])))

    def on_dumps(obj: Any) -> None:
        if obj[0] == engine_process._DONE:
            records.append(("reply_write", _now(), len(obj[2])))

    engine_process.decode_requests = _timed(
        engine_process.decode_requests, on_loads, on_result=True
    )
    engine_process.encode_reply = _timed(engine_process.encode_reply, on_dumps, on_result=False)
    real_process = sequencer.Engine.process
    real_append = journal_mod.Journal.append

    def process(self: Any, commands: Any) -> Any:
        records.append(("execute_start", _now(), _coids(commands)))
        return real_process(self, commands)

    def append(self: Any, events: Any) -> bytes:
        records.append(("commit_start", _now(), len(events)))
        payload = real_append(self, events)
        records.append(("commit_end", _now(), len(events)))
        return payload

    sequencer.Engine.process = process  # type: ignore[method-assign]
    journal_mod.Journal.append = append  # type: ignore[method-assign]
    gc_pauses: list[tuple[int, int, int]] = []
    gc_started = [0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = _now()
        else:
            gc_pauses.append((gc_started[0], _now() - gc_started[0], info["generation"]))

    gc.callbacks.append(on_gc)
    try:
        engine_process._child_main(config, conn)
    finally:
        with open(os.environ[_ENV_OUT], "w") as out:
            json.dump({"records": records, "gc": gc_pauses}, out)


async def paced_client(url: str, rate_per_s: int, seconds: float) -> dict[str, Any]:
    """Single ``place`` messages at ``rate_per_s`` (client order id = frame id)."""
    n = int(rate_per_s * seconds)
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as sock:
        await login(sock, f"bench-timeline-{os.getpid()}-{time.time_ns()}")
        frames = []
        for i in range(n):
            params = ioc_order(i)
            params["client_order_id"] = i + 1
            frames.append(orjson.dumps({"op": "place", "id": i + 1, "params": params}).decode())
        sent_at = [0] * (n + 1)
        received_at = [0] * (n + 1)
        settle_client_heap()  # the client's own GC pass is not the server's latency

        async def reader() -> None:
            got = 0
            while got < n:
                data = (await sock.receive()).data
                now = _now()
                received_at[orjson.loads(data)["id"]] = now
                got += 1

        read_task = asyncio.ensure_future(reader())
        started = _now()
        period_ns = 1_000_000_000 // rate_per_s
        for i in range(n):
            due = started + i * period_ns
            now = _now()
            if due > now + 200_000:
                await asyncio.sleep((due - now) / 1e9)
            sent_at[i + 1] = _now()
            await sock.send_str(frames[i])
        await read_task
    return {"sent": sent_at, "received": received_at}


def _instrument_api(records: list[tuple[Any, ...]]) -> Callable[[], None]:
    """Wrap the API process's hops; returns a function that undoes it."""
    real_order_op = ws._order_op
    real_flush = engine_port.EnginePort._flush
    real_fold = engine_port.EnginePort._fold
    real_send_json = ws.WsSession.send_json
    real_encode_requests = engine_process.encode_requests
    real_decode_reply = engine_process.decode_reply

    def order_op(session: Any, op: str, msg: dict[str, Any], request_id: Any) -> None:
        records.append(("api_read", _now(), (request_id,)))
        real_order_op(session, op, msg, request_id)

    def flush(self: Any) -> None:
        records.append(
            ("handoff", _now(), tuple([c for cmds, _ in self._outgoing for c in _coids(cmds)]))
        )
        real_flush(self)

    def fold(self: Any, events: Any) -> None:
        records.append(("fold", _now(), _coids(events)))
        real_fold(self, events)

    def send_json(self: Any, obj: Any) -> None:
        if isinstance(obj, dict) and "id" in obj:
            records.append(("ack_queued", _now(), (obj["id"],)))
        real_send_json(self, obj)

    def on_dumps(obj: Any) -> None:
        if isinstance(obj, tuple | list):
            ids = tuple([c for r in obj if r[0] == engine_process._CMDS for c in _coids(r[2])])
            records.append(("pipe_write", _now(), ids))

    def on_loads(obj: Any) -> None:
        if obj[0] == engine_process._DONE:
            records.append(("reply_read", _now(), len(obj[2])))

    ws._order_op = order_op
    engine_port.EnginePort._flush = flush  # type: ignore[method-assign]
    engine_port.EnginePort._fold = fold  # type: ignore[method-assign]
    ws.WsSession.send_json = send_json  # type: ignore[method-assign]
    engine_process.encode_requests = _timed(real_encode_requests, on_dumps, on_result=False)
    engine_process.decode_reply = _timed(real_decode_reply, on_loads, on_result=True)

    def undo() -> None:
        ws._order_op = real_order_op
        engine_port.EnginePort._flush = real_flush  # type: ignore[method-assign]
        engine_port.EnginePort._fold = real_fold  # type: ignore[method-assign]
        ws.WsSession.send_json = real_send_json  # type: ignore[method-assign]
        engine_process.encode_requests = real_encode_requests
        engine_process.decode_reply = real_decode_reply

    return undo


HOPS = (
    "client_send",
    "api_read",
    "handoff",
    "pipe_write",
    "engine_read",
    "execute_start",
    "commit_start",
    "commit_end",
    "reply_write",
    "reply_read",
    "fold",
    "ack_queued",
    "client_receive",
)


def assemble(
    client: dict[str, Any], api: list[tuple[Any, ...]], child: dict[str, Any]
) -> list[dict[str, int]]:
    """One dict of hop -> ns per order (by client order id)."""
    n = len(client["sent"]) - 1
    per: list[dict[str, int]] = [{} for _ in range(n + 1)]
    for i in range(1, n + 1):
        per[i]["client_send"] = client["sent"][i]
        per[i]["client_receive"] = client["received"][i]
    # Per-order hops: the first time an id is seen at that hop.
    batch_of: dict[int, int] = {}  # id -> index of its execute_start in the child's records
    batches: list[dict[str, int]] = []
    current: dict[str, int] | None = None
    for hop, ns, what in child["records"]:
        if hop == "engine_read":
            for i in what:
                if 0 < i <= n:
                    per[i].setdefault("engine_read", ns)
        elif hop == "execute_start":
            current = {"execute_start": ns, "commands": len(what)}
            batches.append(current)
            for i in what:
                if 0 < i <= n:
                    batch_of[i] = len(batches) - 1
        elif current is not None and hop in ("commit_start", "commit_end"):
            current.setdefault(hop, ns)
            if hop == "commit_start":
                current["events"] = what
        elif current is not None and hop == "reply_write":
            current.setdefault("reply_write", ns)
    for i, b in batch_of.items():
        for hop in ("execute_start", "commit_start", "commit_end", "reply_write"):
            if hop in batches[b]:
                per[i][hop] = batches[b][hop]
    replies = [ns for hop, ns, _ in api if hop == "reply_read"]
    for hop, ns, what in api:
        if hop in ("api_read", "handoff", "pipe_write", "fold", "ack_queued"):
            for i in what:
                if isinstance(i, int) and 0 < i <= n:
                    per[i].setdefault(hop, ns)
    # reply_read: the first reply read at or after the order's reply_write
    for i in range(1, n + 1):
        w = per[i].get("reply_write")
        if w is not None:
            k = bisect.bisect_left(replies, w)
            if k < len(replies):
                per[i]["reply_read"] = replies[k]
    return per[1:]


def gc_summary(passes: list[Any]) -> dict[str, Any]:
    """Per generation: passes, total and longest pause (ms)."""
    out: dict[str, Any] = {}
    for gen in (0, 1, 2):
        pauses = [d for _, d, g in passes if g == gen]
        out[f"gen{gen}"] = [
            len(pauses),
            round(sum(pauses) / 1e6, 3),
            round(max(pauses, default=0) / 1e6, 3),
        ]
    return out


def summarize(per: list[dict[str, int]], child: dict[str, Any]) -> dict[str, Any]:
    """Percentiles of each hop's gap to the previous hop, over orders with every hop."""
    full = [p for p in per if all(h in p for h in HOPS)]
    out: dict[str, Any] = {"orders": len(per), "orders_with_every_hop": len(full)}

    def pct(values: list[int], q: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(len(values) * q))] / 1e6

    gaps: dict[str, dict[str, float]] = {}
    for a, b in itertools.pairwise(HOPS):
        vals = [p[b] - p[a] for p in full]
        gaps[f"{a}->{b}"] = {
            "p50_ms": round(pct(vals, 0.5), 3),
            "p99_ms": round(pct(vals, 0.99), 3),
            "max_ms": round(pct(vals, 1.0), 3),
        }
    total = [p["client_receive"] - p["client_send"] for p in full]
    out["total"] = {
        "p50_ms": round(pct(total, 0.5), 3),
        "p99_ms": round(pct(total, 0.99), 3),
        "max_ms": round(pct(total, 1.0), 3),
    }
    out["gaps"] = gaps
    # the slowest 1%: which hop took the largest share of their time
    slow = sorted(full, key=lambda p: p["client_receive"] - p["client_send"])[
        -max(1, len(full) // 100) :
    ]
    blame: dict[str, int] = {}
    for p in slow:
        worst = max(itertools.pairwise(HOPS), key=lambda ab: p[ab[1]] - p[ab[0]])
        key = f"{worst[0]}->{worst[1]}"
        blame[key] = blame.get(key, 0) + 1
    out["slowest_1pct_worst_hop"] = blame
    out["slowest_order"] = (
        {h: round((slow[-1][h] - slow[-1]["client_send"]) / 1e6, 3) for h in HOPS} if slow else {}
    )
    gcs = child.get("gc", [])
    out["engine_gc"] = gc_summary(gcs)
    return out


async def run(rate: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "child-timeline.json"
        os.environ[_ENV_OUT] = str(out_path)
        real_child = engine_process._child_main
        engine_process._child_main = timeline_child
        try:
            runner = start_engine(Path(tmp) / "data")
        finally:
            engine_process._child_main = real_child
        _, web_runner, url = await serve_api(runner)
        api_records: list[tuple[Any, ...]] = []
        api_gc: list[tuple[int, int, int]] = []
        gc_started = [0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_started[0] = _now()
            else:
                api_gc.append((gc_started[0], _now() - gc_started[0], info["generation"]))

        objects_before = len(gc.get_objects())
        undo = _instrument_api(api_records)
        gc.callbacks.append(on_gc)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.api_timeline",
                "--client",
                url,
                str(rate),
                str(seconds),
                stdout=asyncio.subprocess.PIPE,
            )
            raw, _ = await proc.communicate()

            objs = gc.get_objects()
            objects_after = len(objs)
            top = collections.Counter(type(o).__name__ for o in objs).most_common(12)
            del objs
            if proc.returncode != 0:
                raise RuntimeError(f"timeline client: expected exit 0, got {proc.returncode}")
        finally:
            gc.callbacks.remove(on_gc)
            undo()
            await web_runner.cleanup()
            stop_engine(runner)
        client = json.loads(raw.decode().strip().splitlines()[-1])
        child = json.loads(out_path.read_text())
    per = assemble(client, api_records, child)
    summary = summarize(per, child)
    summary["rate_per_s"] = rate
    summary["api_gc"] = gc_summary(api_gc)
    summary["api_objects"] = [objects_before, objects_after, top]
    execs = [r for r in child["records"] if r[0] == "execute_start"]
    sizes = sorted(len(r[2]) for r in execs)
    summary["group_commits"] = len(sizes)
    summary["group_commit_commands_p50_max"] = [sizes[len(sizes) // 2], sizes[-1]] if sizes else []
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=10_000, help="orders per second offered")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the paced run")
    parser.add_argument(
        "--client", nargs=3, metavar=("URL", "RATE", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.client:
        url, rate, seconds = args.client
        figures = asyncio.run(paced_client(url, int(rate), float(seconds)))
        sys.stdout.write(json.dumps(figures) + "\n")
        return 0
    summary = asyncio.run(run(args.rate, args.seconds))
    for name, gap in summary["gaps"].items():
        sys.stdout.write(
            f"{name:<32} p50 {gap['p50_ms']:8.3f}  p99 {gap['p99_ms']:8.3f}  max {gap['max_ms']:8.3f} ms\n"
        )
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
