"""Journal benchmark: durable group-commit append throughput and replay (read+decode) time.

Run: ``python -m bench.journal [--quick] [--events N] [--group G]``. Prints a short table,
then, as the LAST line, one JSON object of figures.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from exchange.core.events import (
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderRested,
    TradeExecuted,
    encode_events,
)
from exchange.engine.journal import Journal, _decode_payload

TS0 = 1_700_000_000_000_000_000
BASELINE_EVENTS = 2_000
TARGET_EVENTS_PER_S = 200_000
TARGET_REPLAY_S_PER_1M = 3.0


def make_events(n: int, seed: int = 42) -> list[Event]:
    """60% OrderAccepted, 15% OrderRested, 15% OrderCanceled, 10% TradeExecuted."""
    rng = random.Random(seed)
    out: list[Event] = []
    ts = TS0
    for seq in range(1, n + 1):
        ts += rng.randrange(1_000, 50_000)
        market = rng.randrange(1, 9)
        owner = rng.randrange(1, 5_000)
        price = 6_000_000 + rng.randrange(-20_000, 20_000)
        lots = rng.randrange(1, 5_000)
        x = rng.random()
        if x < 0.60:
            out.append(OrderAccepted(
                seq, ts, market, seq, rng.getrandbits(48), owner, rng.randrange(4),
                rng.randrange(2), 0, rng.randrange(4), price, lots, 0, rng.random() < 0.05,
                0, 0,
            ))
        elif x < 0.75:
            out.append(OrderRested(seq, ts, market, seq - 1, price, lots))
        elif x < 0.90:
            out.append(OrderCanceled(
                seq, ts, market, rng.randrange(1, seq + 1), owner, 0, lots, rng.randrange(4)
            ))
        else:
            out.append(TradeExecuted(
                seq, ts, market, rng.randrange(1, seq + 1), seq - 1, owner, 0,
                rng.randrange(1, 5_000), 0, rng.randrange(2), price, lots,
                rng.randrange(0, 5_000), rng.randrange(0, 5_000),
            ))
    return out


def time_append(data_dir: Path, events: list[Event], group: int) -> float:
    """Seconds to append ``events`` durably in groups of ``group`` to a fresh journal."""
    with Journal.for_data_dir(data_dir) as journal:
        start = time.perf_counter()
        for i in range(0, len(events), group):
            journal.append(events[i:i + group])
        elapsed = time.perf_counter() - start
        assert journal.last_seq == len(events)
    return elapsed


def time_replay(data_dir: Path, expected: int) -> float:
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


def codec_times(events: list[Event], group: int) -> tuple[float, float]:
    """Pure in-memory encode / decode seconds for ``events`` in groups (no database)."""
    start = time.perf_counter()
    blobs = [encode_events(events[i:i + group]) for i in range(0, len(events), group)]
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    for blob in blobs:
        _decode_payload(blob)
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

    events = make_events(n)
    root = Path(tempfile.mkdtemp(prefix="perpdex-bench-journal-"))
    try:
        append_s = time_append(root / "grouped", events, group)
        baseline_n = min(BASELINE_EVENTS, n)
        baseline_s = time_append(root / "group1", events[:baseline_n], 1)
        replay_s = time_replay(root / "grouped", n)
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
        "events": n,
        "quick": bool(args.quick),
    }

    def ok(good: bool) -> str:
        return "ok" if good else "MISS"

    rows = [
        ("events", f"{n:,}", ""),
        (f"durable append, group={group}", f"{durable_eps:,.0f} ev/s",
         f"{ok(durable_eps >= TARGET_EVENTS_PER_S)} (target >= {TARGET_EVENTS_PER_S:,})"),
        ("  of which encode_events", f"{encode_s / append_s:.0%} of append time", ""),
        (f"durable append, group=1 ({baseline_n:,} ev)", f"{baseline_eps:,.0f} ev/s",
         "baseline: one fsync per event"),
        ("ratio vs group=1", f"{durable_eps / baseline_eps:,.1f}x", ""),
        ("replay read+decode per 1M", f"{replay_per_1m:.3f} s",
         f"{ok(replay_per_1m <= TARGET_REPLAY_S_PER_1M)} (target <= {TARGET_REPLAY_S_PER_1M} s)"),
        ("  of which decode (in memory)", f"{decode_s / replay_s:.0%} of replay time", ""),
        ("journal size", f"{db_bytes / 1e6:,.1f} MB", f"{db_bytes / n:.0f} B/event"),
        ("replay fold", "skipped", "synthetic events are not a valid order history"),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        sys.stdout.write(f"{label:<{width}}  {value:>22}  {note}\n".rstrip() + "\n")
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
