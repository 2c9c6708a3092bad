"""Journal benchmark: durable group-commit append throughput and replay (read+decode) time.

Run: ``python -m bench.journal [--quick] [--events N] [--group G]``. Prints a short table,
then, as the LAST line, one JSON object of figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.workload import ADD, generate
from exchange.core.events import (
    Event,
    decode_events,
    encode_events,
)
from exchange.engine.journal import Journal

TS0 = 1_700_000_000_000_000_000
BASELINE_EVENTS = 2_000
TARGET_EVENTS_PER_S = 200_000
TARGET_REPLAY_S_PER_1M = 3.0


def make_events(n: int, seed: int = 42) -> tuple[list[Event], str]:
    """A real order history of at least ``n`` events (whole commands): the matching workload
    run through ``ExchangeCore`` (accepts, rests, trades, cancels), and its state hash."""
    from exchange.core.commands import CancelOrder, CreateMarket
    from exchange.core.state import ExchangeCore

    core = ExchangeCore()
    out: list[Any] = []
    core.execute(CreateMarket(0, "BENCH-PERP", 1_000_000, 1_000_000_000, 1, 10**7, 10**6), 1, out)
    place, cancel = core.place_order, core.cancel_order
    ops_needed = n // 2 + 1_000  # about 2.5 events per op: generate generously, then trim
    workload = generate(ops_needed, seed=seed, warmup=0)
    ts = 1
    for kind, order_id, side, price_ticks, lots in workload.ops:
        ts += 1
        if kind == ADD:
            place(
                0,
                order_id,
                0,
                side,
                price_ticks * 1_000_000,
                lots * 1_000_000_000,
                ts_ns=ts,
                out=out,
            )
        else:
            cancel(CancelOrder(0, order_id, 0, order_id), ts, out)
        if len(out) >= n:
            break
    if len(out) < n:
        raise RuntimeError(f"workload produced {len(out)} events, expected >= {n}")
    replayed = ExchangeCore()
    for event in out:
        replayed.apply(event)
    return out, replayed.state_hash()


def time_append(data_dir: Path, events: list[Event], group: int) -> float:
    """Seconds to append ``events`` durably in groups of ``group`` to a fresh journal."""
    with Journal.for_data_dir(data_dir) as journal:
        start = time.perf_counter()
        for i in range(0, len(events), group):
            journal.append(events[i : i + group])
        elapsed = time.perf_counter() - start
        assert journal.last_seq == len(events)
    return elapsed


def time_replay(data_dir: Path, expected: int) -> float:
    """Seconds to read and decode every event (no state)."""
    with Journal.for_data_dir(data_dir, read_only=True) as journal:
        start = time.perf_counter()
        count = 0
        last = 0
        for event in journal.read():
            count += 1
            last = event.seq
        elapsed = time.perf_counter() - start
    assert count == expected and last == expected, (count, last)
    return elapsed


def time_recovery(data_dir: Path, expected_hash: str) -> float:
    """Seconds for a full recovery: read, decode and fold every event into a fresh core."""
    from exchange.core.state import ExchangeCore

    with Journal.for_data_dir(data_dir, read_only=True) as journal:
        start = time.perf_counter()
        core = ExchangeCore()
        apply = core.apply
        for event in journal.read():
            apply(event)
        elapsed = time.perf_counter() - start
    if core.state_hash() != expected_hash:
        raise RuntimeError("replayed state hash differs from the executed one")
    return elapsed


def codec_times(events: list[Event], group: int) -> tuple[float, float]:
    """Pure in-memory encode / decode seconds for ``events`` in groups (no database)."""
    start = time.perf_counter()
    blobs = [encode_events(events[i : i + group]) for i in range(0, len(events), group)]
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    for blob in blobs:
        decode_events(blob)
    decode_s = time.perf_counter() - start
    return encode_s, decode_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k events instead of 1M")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--group", type=int, default=1_000)
    args = parser.parse_args(argv)
    n = args.events or (100_000 if args.quick else 1_000_000)
    group: int = args.group

    events, expected_hash = make_events(n)
    n = len(events)
    root = Path(tempfile.mkdtemp(prefix="perpdex-bench-journal-"))
    try:
        append_s = time_append(root / "grouped", events, group)
        baseline_n = min(BASELINE_EVENTS, n)
        baseline_s = time_append(root / "group1", events[:baseline_n], 1)
        replay_s = time_replay(root / "grouped", n)
        recovery_s = time_recovery(root / "grouped", expected_hash)
        db_bytes = sum(p.stat().st_size for p in (root / "grouped").iterdir())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    encode_s, decode_s = codec_times(events, group)

    durable_eps = n / append_s
    baseline_eps = baseline_n / baseline_s
    replay_per_1m = replay_s * 1_000_000 / n
    figures = {
        "durable_events_per_s": round(durable_eps),
        "group_size": group,
        "baseline_events_per_s_group1": round(baseline_eps),
        "ratio_vs_group1": round(durable_eps / baseline_eps, 1),
        "replay_read_s_per_1M": round(replay_per_1m, 3),
        "replay_fold_s_per_1M": round(recovery_s * 1_000_000 / n, 3),
        "events": n,
        "quick": bool(args.quick),
    }

    def ok(good: bool) -> str:
        return "ok" if good else "MISS"

    rows = [
        ("events", f"{n:,}", ""),
        (
            f"durable append, group={group}",
            f"{durable_eps:,.0f} ev/s",
            f"{ok(durable_eps >= TARGET_EVENTS_PER_S)} (target >= {TARGET_EVENTS_PER_S:,})",
        ),
        ("  of which encode_events", f"{encode_s / append_s:.0%} of append time", ""),
        (
            f"durable append, group=1 ({baseline_n:,} ev)",
            f"{baseline_eps:,.0f} ev/s",
            "baseline: one fsync per event",
        ),
        ("ratio vs group=1", f"{durable_eps / baseline_eps:,.1f}x", ""),
        (
            "replay read+decode per 1M",
            f"{replay_per_1m:.3f} s",
            f"{ok(replay_per_1m <= TARGET_REPLAY_S_PER_1M)} (target <= {TARGET_REPLAY_S_PER_1M} s)",
        ),
        ("  of which decode (in memory)", f"{decode_s / replay_s:.0%} of replay time", ""),
        ("journal size", f"{db_bytes / 1e6:,.1f} MB", f"{db_bytes / n:.0f} B/event"),
        (
            "replay read+decode+fold per 1M",
            f"{recovery_s * 1_000_000 / n:.3f} s",
            f"{ok(recovery_s * 1_000_000 / n <= TARGET_REPLAY_S_PER_1M)} (target <= "
            f"{TARGET_REPLAY_S_PER_1M} s; hash checked equal)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        sys.stdout.write(f"{label:<{width}}  {value:>22}  {note}\n".rstrip() + "\n")
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
