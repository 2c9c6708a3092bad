"""Matching benchmark: this repo's cores against installable order-book peers and a naive
pure-Python baseline, on the anchor workload (``bench.workload``).

Run: ``python -m bench.matching [--quick] [--ops N] [--seed S] [--engines a,b] [--cold]
[--profile]``.

Engines (``bench.peers``): ``perpdex`` is the numba-compiled ``FastMarket`` called once per
order from Python (the headline figures), ``perpdex-python`` the pure-Python reference
``ExchangeCore``; then ``naive`` and the PyPI peers. ``perpdex`` always runs.

Every engine runs in its own forked child process (a crash or a hang past ``--timeout`` just
records an error for that engine), twice, each time on a fresh book after the same untimed
warm-up: once for throughput (the whole timed loop under one pair of clock reads, no per-op
timers) and once for latency (``time.perf_counter_ns`` around every call). The GC is treated
the same for every engine: ``gc.collect(); gc.freeze(); gc.disable()`` just before each
timed loop, ``gc.enable(); gc.unfreeze()`` after it. Orders/s counts every timed operation
(adds and cancels). Every ``BATCH`` (1,024) ops the harness calls the adapter's ``poll`` (ours
counts and clears its reused event list there): outside the per-op timers, inside the
throughput loop (the warm-up polls as often, untimed). End states (best bid/ask, resting lots
per side, fills, filled lots) are compared with ours on every figure an engine exposes, and
ours with the generator's reference book; the two perpdex engines must also agree on their
event counts (the compiled core emits the same events as the reference).

Batch path (replay / backtest use), measured in the same run, in its own child: the whole
workload as an int64 op array processed inside numba by ``FastMarket.run_batch`` (ops
converted before the clock starts), on a fresh book after the same warm-up, ``BATCH_REPEATS``
times, median reported. ``batch_orders_per_s`` keeps every event row (as a replay needs
them): ``run_batch`` over ``BATCH_CHUNK``-op slices, each slice's rows counted by kind and
cleared, inside the clock. ``batch_orders_per_s_events_counted_only`` is one ``run_batch``
call that only counts rows (each command overwrites the previous one's). Both end states,
event-row counts included, must equal the per-call run's. Each batch figure also has a
CPU-time twin (``batch_cpu_orders_per_s*``: the thread's CPU time instead of the wall clock),
steadier on a machine shared with other jobs; the wall-clock figures are the headline.

``--cold`` also times a cold start (import + first calls) in a fresh interpreter whose
``NUMBA_CACHE_DIR`` is an empty temporary directory (everything compiles), and the same with
the normal cache for comparison.

Prints a table, then, as the LAST line, one JSON object of figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import platform
import sys
import time
import traceback
from importlib import metadata
from typing import Any

from bench import peers
from bench.workload import ADD, FULL_OPS, QUICK_OPS, WARMUP_ORDERS, Op, Workload, generate

FIGURES = ("best_bid", "best_ask", "bid_qty", "ask_qty", "fills", "filled_qty")
GC_POLICY = (
    "gc.collect(); gc.freeze(); gc.disable() before each timed loop, "
    "gc.enable(); gc.unfreeze() after; same for every engine"
)
BATCH = 1024  # ops between ``poll()`` calls (our adapters count and clear events there)
TARGET_ORDERS_PER_S = 1_000_000
TARGET_P99_US = 3.0
BATCH_CHUNK = 1024  # ops per run_batch call when events are kept: rows consumed while in L2
BATCH_REPEATS = 5
TARGET_BATCH_ORDERS_PER_S = 10_000_000
OURS = ("perpdex", "perpdex-python")
COMMON_CHECKS = ("rejected", "accepted", "resting", "events")  # both perpdex engines report

_W: Workload | None = None  # set before forking: children inherit it


def _warm(adapter: peers.Adapter) -> None:
    add, poll = adapter.add_limit, adapter.poll
    warmup = _W.warmup  # type: ignore[union-attr]
    for i in range(0, len(warmup), BATCH):
        for _kind, oid, side, price, qty in warmup[i : i + BATCH]:
            add(oid, side, price, qty)
        if poll is not None:
            poll()


def _chunks() -> list[list[Op]]:
    ops = _W.ops  # type: ignore[union-attr]
    return [ops[i : i + BATCH] for i in range(0, len(ops), BATCH)]


def _throughput(adapter: peers.Adapter) -> dict[str, Any]:
    chunks = _chunks()
    add, cancel, poll = adapter.add_limit, adapter.cancel, adapter.poll
    gc.collect()
    gc.freeze()
    gc.disable()
    t0 = time.perf_counter_ns()
    for chunk in chunks:
        for kind, oid, side, price, qty in chunk:
            if kind:
                cancel(oid)
            else:
                add(oid, side, price, qty)
        if poll is not None:
            poll()
    t1 = time.perf_counter_ns()
    gc.enable()
    gc.unfreeze()
    n = len(_W.ops)  # type: ignore[union-attr]
    return {"seconds": (t1 - t0) / 1e9, "orders_per_s": n * 1e9 / (t1 - t0)}


def _latency(adapter: peers.Adapter) -> dict[str, Any]:
    ops = _W.ops  # type: ignore[union-attr]
    chunks = _chunks()
    add, cancel, poll = adapter.add_limit, adapter.cancel, adapter.poll
    lat = [0] * len(ops)
    pc = time.perf_counter_ns
    gc.collect()
    gc.freeze()
    gc.disable()
    i = 0
    for chunk in chunks:
        for kind, oid, side, price, qty in chunk:
            if kind:
                t0 = pc()
                cancel(oid)
                t1 = pc()
            else:
                t0 = pc()
                add(oid, side, price, qty)
                t1 = pc()
            lat[i] = t1 - t0
            i += 1
        if poll is not None:
            poll()
    gc.enable()
    gc.unfreeze()
    adds = sorted(v for v, op in zip(lat, ops) if op[0] == ADD)
    cancels = sorted(v for v, op in zip(lat, ops) if op[0] != ADD)
    lat.sort()
    n = len(lat)

    def pct(q: float, xs: list[int] = lat) -> float:
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] / 1000, 3) if xs else 0.0

    return {
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": round(lat[-1] / 1000, 1),
        "mean_us": round(sum(lat) / n / 1000, 3),
        "add_p50_us": pct(0.5, adds),
        "add_p99_us": pct(0.99, adds),
        "cancel_p50_us": pct(0.5, cancels),
        "cancel_p99_us": pct(0.99, cancels),
    }


def _touch_ops() -> None:
    """Write every op's refcounts once, so the copy-on-write page copies of the forked child
    happen before the timed loop, not inside it."""
    for _kind, _oid, _side, _price, _qty in _W.ops:  # type: ignore[union-attr]
        pass


def _batch_run(warm: Any, ops: Any, keep: bool) -> tuple[float, float, dict[str, Any]]:
    """One batch-path run on a fresh book: (wall seconds, this thread's CPU seconds, end
    state). The CPU time leaves out the time the process waited for a core, so on a
    machine shared with other jobs it is the steadier figure; wall time is the headline."""
    from exchange.core.fastbook import K_REJ, K_TRADE

    fm = peers.fast_market()
    count = peers.FastEventCounter(fm)
    fm.run_batch(warm, keep_events=True)
    count()
    run_batch, n = fm.run_batch, len(ops)
    gc.collect()
    gc.freeze()
    gc.disable()
    c0 = time.thread_time_ns()
    t0 = time.perf_counter_ns()
    if keep:
        for i in range(0, n, BATCH_CHUNK):
            run_batch(ops[i : i + BATCH_CHUNK], keep_events=True)
            count()
    else:
        rows = run_batch(ops)
    t1 = time.perf_counter_ns()
    c1 = time.thread_time_ns()
    gc.enable()
    gc.unfreeze()
    k = count.by_kind
    if keep:
        fills, lots, n_rows = int(k[K_TRADE]), count.filled_lots, count.rows
    else:  # rows only counted: fills from the core's statistics
        (fills, lots), n_rows = fm.fill_stats(), count.rows + rows
    state = peers.fast_end_state(fm, fills, lots, n_rows, int(k[K_REJ]))
    return (t1 - t0) / 1e9, (c1 - c0) / 1e9, state


def _batch() -> dict[str, Any]:
    warm = peers.fastbook_ops(_W.warmup)  # type: ignore[union-attr]
    ops = peers.fastbook_ops(_W.ops)  # type: ignore[union-attr]
    out: dict[str, Any] = {}
    for keep, tag in ((True, "kept"), (False, "counted_only")):
        runs = [_batch_run(warm, ops, keep) for _ in range(BATCH_REPEATS)]
        rates = sorted(len(ops) / sec for sec, _, _ in runs)
        cpu_rates = sorted(len(ops) / cpu for _, cpu, _ in runs)
        out[tag] = {
            "orders_per_s": rates[len(rates) // 2],
            "runs_orders_per_s": [round(r) for r in rates],
            "cpu_orders_per_s": cpu_rates[len(cpu_rates) // 2],
            "end_state": runs[0][2],
            "end_state_runs_agree": all(st == runs[0][2] for _, _, st in runs),
        }
    return out


def _child(name: str, mode: str, conn: Any) -> None:
    try:
        if mode == "batch":
            conn.send(("ok", _batch()))
            return
        _touch_ops()
        adapter = peers.make(name)
        try:
            _warm(adapter)
            result = _throughput(adapter) if mode == "throughput" else _latency(adapter)
            result["end_state"] = adapter.end_state()
            result["kind"] = adapter.kind
        finally:
            adapter.close()
        conn.send(("ok", result))
    except BaseException as exc:  # report, never hang the parent
        conn.send(
            ("error", f"{type(exc).__name__}: {exc}".strip()[:300], traceback.format_exc()[-1500:])
        )
    finally:
        conn.close()


def _run_child(name: str, mode: str, timeout: float) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(name, mode, send), daemon=True)
    t0 = time.monotonic()
    proc.start()
    send.close()
    msg = None
    if recv.poll(timeout):
        try:
            msg = recv.recv()
        except EOFError:
            msg = None
    proc.join(max(1.0, timeout - (time.monotonic() - t0)))
    if proc.is_alive():
        proc.kill()
        proc.join()
        if msg is None:
            return {"error": f"timeout after {timeout:.0f}s ({mode})"}
    if msg is None:
        return {"error": f"{mode} child died: exit code {proc.exitcode}"}
    if msg[0] != "ok":
        return {"error": f"{mode}: {msg[1]}", "traceback": msg[2]}
    return msg[1]  # type: ignore[no-any-return]


def _compare(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[bool, list[str], int]:
    """Equal on every figure ``theirs`` exposes? Also the differing figures and how many
    figures were compared."""
    diffs, compared = [], 0
    for f in FIGURES:
        if theirs.get(f) is None or ours.get(f) is None:
            continue
        compared += 1
        if theirs[f] != ours[f]:
            diffs.append(f"{f}: {theirs[f]} != ours {ours[f]}")
    return not diffs, diffs, compared


def _timer_overhead_ns() -> int:
    pc = time.perf_counter_ns
    xs = []
    for _ in range(20_000):
        t0 = pc()
        t1 = pc()
        xs.append(t1 - t0)
    xs.sort()
    return xs[len(xs) // 2]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_COLD_CODE = """
import json, time
t0 = time.perf_counter()
import numpy as np
from bench import peers
from exchange.core import fastbook
t1 = time.perf_counter()
fm = peers.fast_market()
fm.place_limit(1, 0, 0, 100 * peers.TICK_SIZE, peers.LOT_SIZE, peers.TS_NS)
fm.cancel(1, 0, 1, 0, peers.TS_NS)
fm.run_batch(peers.fastbook_ops([(0, 2, 1, 100, 1), (1, 2, 1, 100, 0)]), keep_events=True)
fm.canonical()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_calls_s": t2 - t1, "total_s": t2 - t0}))
"""


def _start_time(empty_cache: bool, timeout: float = 900.0) -> dict[str, Any]:
    """Import + first calls of ``FastMarket`` in a fresh interpreter; with ``empty_cache``
    its ``NUMBA_CACHE_DIR`` is a new empty directory, so every kernel compiles."""
    import os
    import subprocess
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="numba-cold-") as d:
        env = dict(os.environ)
        if empty_cache:
            env["NUMBA_CACHE_DIR"] = d
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _COLD_CODE],
                env=env,
                cwd=root,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timeout after {timeout:.0f}s"}
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    r: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    r["process_wall_s"] = wall
    return {k: round(v, 2) for k, v in r.items()}


def profile_core(top: int = 25) -> None:
    """cProfile the pure-Python core on the workload (after warm-up, GC handled as in the
    benchmark); the compiled core's kernels are opaque to cProfile."""
    import cProfile
    import pstats

    adapter = peers.make("perpdex-python")
    _warm(adapter)
    prof = cProfile.Profile()
    gc.collect()
    gc.freeze()
    gc.disable()
    prof.enable()
    add, cancel, poll = adapter.add_limit, adapter.cancel, adapter.poll
    for chunk in _chunks():
        for kind, oid, side, price, qty in chunk:
            if kind:
                cancel(oid)
            else:
                add(oid, side, price, qty)
        if poll is not None:
            poll()
    prof.disable()
    gc.enable()
    gc.unfreeze()
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def _ours_extra(r: dict[str, Any], ours_state: dict[str, Any]) -> list[str]:
    """Differences of a perpdex engine's self-checks: ops refused, and (vs ``ours_state``)
    the event counts both perpdex engines report."""
    checks = r["end_state"].get("checks", {})
    diffs = []
    if checks.get("rejected") != 0 or checks.get("accepted") != _W.n_adds:  # type: ignore[union-attr]
        diffs.append(f"rejected {checks.get('rejected')}, accepted {checks.get('accepted')}")
    for f in ("uncounted_fills", "uncounted_lots"):
        if checks.get(f, 0) != 0:
            diffs.append(f"{f} {checks[f]}")
    theirs = ours_state.get("checks", {})
    for f in COMMON_CHECKS:
        if checks.get(f) != theirs.get(f):
            diffs.append(f"{f}: {checks.get(f)} != ours {theirs.get(f)}")
    return diffs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    global _W
    ap = argparse.ArgumentParser(
        prog="python -m bench.matching", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_OPS:,} timed ops")
    ap.add_argument("--ops", type=int, default=None, help=f"timed ops (default {FULL_OPS:,})")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--engines",
        default=",".join(peers.FACTORIES),
        help="comma-separated subset of: " + ", ".join(peers.FACTORIES) + " (perpdex always runs)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per engine run (default 60 + 400 us per op)",
    )
    ap.add_argument(
        "--cold",
        action="store_true",
        help="also time FastMarket's cold start (empty NUMBA_CACHE_DIR: everything compiles)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile the pure-Python core on the workload (printed before the table)",
    )
    args = ap.parse_args(argv)
    n_ops = args.ops if args.ops is not None else (QUICK_OPS if args.quick else FULL_OPS)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in peers.FACTORIES:
            ap.error(f"--engines: expected names from {list(peers.FACTORIES)}, got {e!r}")
    if "perpdex" not in engines:
        engines.insert(0, "perpdex")
    timeout = args.timeout or 60 + 400e-6 * (n_ops + WARMUP_ORDERS)

    t0 = time.perf_counter()
    _W = generate(n_ops, args.seed)
    gen_s = time.perf_counter() - t0
    n_cancel = sum(1 for op in _W.ops if op[0] != ADD)
    print(
        f"workload: seed {args.seed}, {WARMUP_ORDERS:,} warm-up orders + {n_ops:,} timed ops "
        f"({n_ops - n_cancel:,} limits, {n_cancel:,} cancels), "
        f"{_W.timed_fills / max(1, n_ops):.3f} fills/op, resting orders: "
        f"{_W.resting_after_warmup:,} after warm-up, max {_W.max_resting:,}, "
        f"{_W.resting_at_end:,} at end; generated in {gen_s:.1f}s"
    )
    print(f"GC: {GC_POLICY}")
    sys.stdout.flush()
    if args.profile:
        profile_core()

    results: dict[str, dict[str, Any]] = {}
    for name in engines:
        r: dict[str, Any] = {"name": name}
        thr = _run_child(name, "throughput", timeout)
        lat = _run_child(name, "latency", timeout) if "error" not in thr else {}
        if "error" in thr or "error" in lat:
            r["error"] = thr.get("error") or lat.get("error")
            r["traceback"] = thr.get("traceback") or lat.get("traceback")
        else:
            r.update(
                orders_per_s=thr["orders_per_s"],
                seconds=thr["seconds"],
                **{k: v for k, v in lat.items() if k not in ("end_state", "kind")},
            )
            r["kind"] = thr["kind"]
            r["end_state"] = thr["end_state"]
            r["end_state_runs_agree"] = thr["end_state"] == lat["end_state"]
        results[name] = r
        status = r.get("error") or f"{r['orders_per_s']:,.0f} orders/s"
        print(f"  ran {name}: {status}", file=sys.stderr)
    batch = _run_child("perpdex", "batch", timeout)
    print(f"  ran perpdex batch path: {batch.get('error', 'ok')}", file=sys.stderr)
    cold = _start_time(empty_cache=True) if args.cold else None
    warm_start = _start_time(empty_cache=False) if args.cold else None

    ours = results["perpdex"]
    ours_state = ours.get("end_state", {})
    expected = dict(_W.expected._asdict())
    ref_ok, ref_diffs, _ = _compare(expected, ours_state) if ours_state else (False, [], 0)
    all_accepted = "error" not in ours
    all_equal = "error" not in ours and ours.get("end_state_runs_agree", False)
    for name, r in results.items():
        if "error" in r:
            r["state_ok"], r["compared"] = "-", 0
            continue
        if name == "perpdex":
            ok, diffs, compared = ref_ok, list(ref_diffs), 6
            if not ref_ok:
                diffs.insert(0, "vs reference")
        else:
            ok, diffs, compared = _compare(ours_state, r["end_state"])
        if name in OURS:
            extra = _ours_extra(r, ours_state)
            all_accepted = all_accepted and not any(d.startswith("rejected") for d in extra)
            ok, diffs = ok and not extra, diffs + extra
        ok = ok and r["end_state_runs_agree"]
        r["state_ok"] = "ok" if ok else "DIFF: " + "; ".join(diffs or ["runs disagree"])
        r["compared"] = compared
        all_equal = all_equal and ok

    batch_rows: dict[str, dict[str, Any]] = {}
    for tag in ("kept", "counted_only"):
        b = dict(batch.get(tag, {"error": batch.get("error", "not run")}))
        if "error" not in b:
            same = b["end_state"] == ours_state and b["end_state_runs_agree"]
            b["state_ok"] = "ok" if same else "DIFF vs per-call"
        batch_rows[tag] = b
    batch_equal = bool(ours_state) and all(b.get("state_ok") == "ok" for b in batch_rows.values())

    # ------------------------------------------------------------------ table
    print()
    print(
        f"{'engine':<20} {'version':<9} {'orders/s':>10} {'p50 us':>7} {'p99 us':>7} "
        f"{'p99.9':>7} {'max us':>8}  end state"
    )
    for name, r in results.items():
        ver = "repo" if name in (*OURS, "naive") else (_version(name) or "?")
        if "error" in r:
            print(
                f"{name:<20} {ver:<9} {'-':>10} {'-':>7} {'-':>7} {'-':>7} {'-':>8}  "
                f"ERROR {r['error']}"
            )
            continue
        print(
            f"{name:<20} {ver:<9} {r['orders_per_s']:>10,.0f} {r['p50_us']:>7.2f} "
            f"{r['p99_us']:>7.2f} {r['p999_us']:>7.2f} {r['max_us']:>8.1f}  "
            f"{r['state_ok']} ({r['compared']}/6 figures)"
        )
        if name == "perpdex":
            for tag, label in (("kept", "batch"), ("counted_only", "batch,cnt")):
                b = batch_rows[tag]
                bname = f"perpdex[{label}]"
                if "error" in b:
                    print(f"{bname:<20} {'repo':<9} {'-':>10}  ERROR {b['error']}")
                else:
                    print(
                        f"{bname:<20} {'repo':<9} {b['orders_per_s']:>10,.0f} {'-':>7} "
                        f"{'-':>7} {'-':>7} {'-':>8}  {b['state_ok']} (= per-call, all figures;"
                        f" by CPU time {b['cpu_orders_per_s']:,.0f})"
                    )
    if "error" not in ours:
        print(
            f"ours: add p50/p99 {ours['add_p50_us']}/{ours['add_p99_us']} us, cancel p50/p99 "
            f"{ours['cancel_p50_us']}/{ours['cancel_p99_us']} us; all ops accepted: "
            f"{all_accepted}; matches reference book: {ref_ok} {'; '.join(ref_diffs)}"
        )
        print(f"perpdex: {ours['kind']}")
    print(
        f"perpdex[batch]: FastMarket.run_batch, median of {BATCH_REPEATS} (wall clock; the "
        "CPU-time rate leaves out waits for a core), events kept "
        f"({BATCH_CHUNK:,}-op calls, rows counted by kind and cleared between); [batch,cnt]: "
        "one call, rows only counted"
    )
    if cold is not None:
        print(f"cold start (empty numba cache): {cold}; with the cache: {warm_start}")
    for r in (*results.values(), batch):
        if r.get("traceback"):
            print(
                f"--- {r.get('name', 'batch')} traceback (tail):\n{r['traceback']}", file=sys.stderr
            )

    # ------------------------------------------------------------------ JSON
    def key(name: str) -> str:
        return name.replace("-", "_")

    def rate(r: dict[str, Any]) -> int | None:
        return round(r["orders_per_s"]) if "orders_per_s" in r else None

    ok_peers = {n: r for n, r in results.items() if n in peers.PEERS and "error" not in r}
    fastest = max(ok_peers, key=lambda n: ok_peers[n]["orders_per_s"], default=None)
    ours_ops = ours.get("orders_per_s")
    naive = results.get("naive", {})
    python = results.get("perpdex-python", {})
    b_kept, b_count = batch_rows["kept"], batch_rows["counted_only"]
    out: dict[str, Any] = {
        "orders_per_s": rate(ours),
        "p50_us": ours.get("p50_us"),
        "p99_us": ours.get("p99_us"),
        "p999_us": ours.get("p999_us"),
        "max_us": ours.get("max_us"),
        "mean_us": ours.get("mean_us"),
        "end_state_equal": bool(all_equal),
        "end_state_matches_reference": bool(ref_ok),
        "all_ops_accepted": bool(all_accepted),
    }
    if "error" in ours:
        out["error"] = ours["error"]
    for name in ("perpdex-python", *peers.PEERS, "naive"):
        if name not in results:
            continue
        r = results[name]
        out[f"orders_per_s_{key(name)}"] = rate(r)
        out[f"p50_us_{key(name)}"] = r.get("p50_us")
        out[f"p99_us_{key(name)}"] = r.get("p99_us")
        if "error" in r:
            out[f"error_{key(name)}"] = r["error"]
        elif name != "naive":
            out[f"end_state_equal_{key(name)}"] = r["state_ok"] == "ok"

    def ratio(r: dict[str, Any]) -> float | None:
        return round(ours_ops / r["orders_per_s"], 3) if ours_ops and "orders_per_s" in r else None

    out["ratio_vs_naive"] = ratio(naive)
    out["ratio_vs_fastest_peer"] = ratio(ok_peers[fastest]) if fastest else None
    out["ratio_vs_perpdex_python"] = ratio(python)
    out["fastest_peer"] = fastest
    out.update(
        meets_target=bool(
            ours_ops
            and ours_ops >= TARGET_ORDERS_PER_S
            and ours.get("p99_us", 1e9) <= TARGET_P99_US
        ),
        target=f">= {TARGET_ORDERS_PER_S:,} orders/s and p99 <= {TARGET_P99_US} us",
        batch_orders_per_s=rate(b_kept),
        batch_orders_per_s_events_counted_only=rate(b_count),
        batch_runs_orders_per_s=b_kept.get("runs_orders_per_s"),
        batch_cpu_orders_per_s=rate({"orders_per_s": b_kept["cpu_orders_per_s"]})
        if "cpu_orders_per_s" in b_kept
        else None,
        batch_cpu_orders_per_s_events_counted_only=rate(
            {"orders_per_s": b_count["cpu_orders_per_s"]}
        )
        if "cpu_orders_per_s" in b_count
        else None,
        batch_runs_orders_per_s_events_counted_only=b_count.get("runs_orders_per_s"),
        batch_end_state_equal=batch_equal,
        batch_meets_target=b_kept.get("orders_per_s", 0) >= TARGET_BATCH_ORDERS_PER_S,
        batch_target=f">= {TARGET_BATCH_ORDERS_PER_S:,} orders/s, events kept",
        batch_method=(
            f"FastMarket.run_batch, median of {BATCH_REPEATS}; events kept: "
            f"{BATCH_CHUNK}-op calls, rows counted by kind and cleared between; counted only: "
            "one call, rows counted"
        ),
        cold_compile_s=cold.get("total_s") if cold else None,
        cold_start=cold,
        warm_start=warm_start,
        engine_kinds={n: r.get("kind") for n, r in results.items()},
        ops=n_ops,
        warmup=WARMUP_ORDERS,
        seed=args.seed,
        quick=bool(args.quick),
        fills_per_op=round(_W.timed_fills / max(1, n_ops), 3),
        resting_at_end=_W.resting_at_end,
        max_resting=_W.max_resting,
        gc=GC_POLICY,
        timer_overhead_ns=_timer_overhead_ns(),
        python=platform.python_version(),
        peer_versions={n: _version(n) for n in peers.PEERS},
    )
    print(json.dumps(out, sort_keys=False))
    return out


if __name__ == "__main__":
    main()
