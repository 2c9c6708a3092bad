"""Matching benchmark: this repo's core against installable order-book peers and a naive
pure-Python baseline, on the anchor workload (``bench.workload``).

Run: ``python -m bench.matching [--quick] [--ops N] [--seed S] [--engines a,b] [--profile]``.

Every engine runs in its own forked child process (a crash or a hang past ``--timeout`` just
records an error for that engine), twice, each time on a fresh book after the same untimed
warm-up: once for throughput (the whole timed loop under one pair of clock reads, no per-op
timers) and once for latency (``time.perf_counter_ns`` around every call). The GC is treated
the same for every engine: ``gc.collect(); gc.freeze(); gc.disable()`` just before each
timed loop, ``gc.enable(); gc.unfreeze()`` after it. Orders/s counts every timed operation
(adds and cancels). Every ``BATCH`` (1,024) ops the harness calls the adapter's ``poll`` (ours
counts and clears its reused event list there): outside the per-op timers, inside the
throughput loop. End states (best bid/ask, resting lots per side, fills, filled lots) are
compared with ours on every figure an engine exposes, and ours with the generator's
reference book.

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
BATCH = 1024  # ops between ``poll()`` calls (our adapter clears its event list there)
TARGET_ORDERS_PER_S = 1_000_000
TARGET_P99_US = 3.0

_W: Workload | None = None  # set before forking: children inherit it


def _warm(adapter: peers.Adapter) -> None:
    add = adapter.add_limit
    for _kind, oid, side, price, qty in _W.warmup:  # type: ignore[union-attr]
        add(oid, side, price, qty)


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


def _child(name: str, mode: str, conn: Any) -> None:
    try:
        _touch_ops()
        adapter = peers.make(name)
        try:
            _warm(adapter)
            result = _throughput(adapter) if mode == "throughput" else _latency(adapter)
            result["end_state"] = adapter.end_state()
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


def profile_core(top: int = 25) -> None:
    """cProfile our core on the workload (after warm-up, GC handled as in the benchmark)."""
    import cProfile
    import pstats

    adapter = peers.make("perpdex")
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
        help="comma-separated subset of: " + ", ".join(peers.FACTORIES),
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per engine run (default 60 + 400 us per op)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile our core on the workload (printed before the table)",
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
                **{k: v for k, v in lat.items() if k != "end_state"},
            )
            r["end_state"] = thr["end_state"]
            r["end_state_runs_agree"] = thr["end_state"] == lat["end_state"]
        results[name] = r
        status = r.get("error") or f"{r['orders_per_s']:,.0f} orders/s"
        print(f"  ran {name}: {status}", file=sys.stderr)

    ours = results["perpdex"]
    ours_state = ours.get("end_state", {})
    expected = dict(_W.expected._asdict())
    ref_ok, ref_diffs, _ = _compare(expected, ours_state) if ours_state else (False, [], 0)
    checks = ours_state.get("checks", {})
    all_accepted = checks.get("rejected") == 0 and checks.get("accepted") == _W.n_adds
    all_equal = "error" not in ours and ours.get("end_state_runs_agree", False)
    for name, r in results.items():
        if "error" in r or name == "perpdex":
            r["state_ok"], r["compared"] = ("ok" if ref_ok else "DIFF vs reference"), 6
            continue
        ok, diffs, compared = _compare(ours_state, r["end_state"])
        ok = ok and r["end_state_runs_agree"]
        r["state_ok"] = "ok" if ok else "DIFF: " + "; ".join(diffs or ["runs disagree"])
        r["compared"] = compared
        all_equal = all_equal and ok

    # ------------------------------------------------------------------ table
    print()
    print(
        f"{'engine':<20} {'version':<9} {'orders/s':>10} {'p50 us':>7} {'p99 us':>7} "
        f"{'p99.9':>7} {'max us':>8}  end state"
    )
    for name, r in results.items():
        ver = "repo" if name in ("perpdex", "naive") else (_version(name) or "?")
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
    if "error" not in ours:
        print(
            f"ours: add p50/p99 {ours['add_p50_us']}/{ours['add_p99_us']} us, cancel p50/p99 "
            f"{ours['cancel_p50_us']}/{ours['cancel_p99_us']} us; all ops accepted: "
            f"{all_accepted}; matches reference book: {ref_ok} {'; '.join(ref_diffs)}"
        )
    for r in results.values():
        if r.get("traceback"):
            print(f"--- {r['name']} traceback (tail):\n{r['traceback']}", file=sys.stderr)

    # ------------------------------------------------------------------ JSON
    def key(name: str) -> str:
        return name.replace("-", "_")

    ok_peers = {n: r for n, r in results.items() if n in peers.PEERS and "error" not in r}
    fastest = max(ok_peers, key=lambda n: ok_peers[n]["orders_per_s"], default=None)
    ours_ops = ours.get("orders_per_s")
    naive = results.get("naive", {})
    out: dict[str, Any] = {
        "orders_per_s": round(ours_ops) if ours_ops else None,
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
    for name in (*peers.PEERS, "naive"):
        if name not in results:
            continue
        r = results[name]
        out[f"orders_per_s_{key(name)}"] = round(r["orders_per_s"]) if "error" not in r else None
        out[f"p50_us_{key(name)}"] = r.get("p50_us")
        out[f"p99_us_{key(name)}"] = r.get("p99_us")
        if "error" in r:
            out[f"error_{key(name)}"] = r["error"]
        elif name != "naive":
            out[f"end_state_equal_{key(name)}"] = r["state_ok"] == "ok"
    out["ratio_vs_naive"] = (
        round(ours_ops / naive["orders_per_s"], 3) if ours_ops and "orders_per_s" in naive else None
    )
    out["ratio_vs_fastest_peer"] = (
        round(ours_ops / ok_peers[fastest]["orders_per_s"], 3) if ours_ops and fastest else None
    )
    out["fastest_peer"] = fastest
    out.update(
        meets_target=bool(
            ours_ops
            and ours_ops >= TARGET_ORDERS_PER_S
            and ours.get("p99_us", 1e9) <= TARGET_P99_US
        ),
        target=f">= {TARGET_ORDERS_PER_S:,} orders/s and p99 <= {TARGET_P99_US} us",
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
