"""Liquidation sizing: ``perpdex simulate cascade10k`` with the closed-form sizing of
``liquidation.rules`` against the same run with the old search by trial transfers (kept in
``tests/property/test_liquidation_sizing_properties.py``), interleaved, CPU time.

``python -m bench.liquidation_sizing [--quick]`` (quick: 1,000 accounts, one pair); prints
the CPU ratio; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from liquidation import rules
from liquidation.simulate import simulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "property"))
from test_liquidation_sizing_properties import reference_smallest_close  # type: ignore[import-not-found,unused-ignore]


def run(sizing: str, accounts: int) -> dict[str, Any]:
    closed_form = rules._smallest_close
    if sizing == "search":
        rules._smallest_close = reference_smallest_close
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        report = simulate("cascade10k", seed=1, accounts=accounts)
        return {
            "sizing": sizing,
            "cpu_seconds": time.process_time() - cpu_started,
            "seconds": time.perf_counter() - started,
            "liquidations": report.liquidations,
            "state_hash": report.to_json()["state_hash"],
        }
    finally:
        rules._smallest_close = closed_form


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    accounts, pairs = (1_000, 1) if args.quick else (10_000, 2)
    runs = []
    for _ in range(pairs):
        for sizing in ("search", "closed"):
            runs.append(run(sizing, accounts))
            print(json.dumps(runs[-1]))
    for a, b in zip(runs[::2], runs[1::2], strict=True):
        if (a["liquidations"], a["state_hash"]) != (b["liquidations"], b["state_hash"]):
            raise SystemExit(f"sizings disagree: {a} vs {b}")
    cpu = {s: statistics.median(r["cpu_seconds"] for r in runs if r["sizing"] == s)
           for s in ("search", "closed")}  # fmt: skip
    ratio = cpu["search"] / cpu["closed"]
    print(f"cascade10k, {accounts} accounts: CPU {cpu['search']:.2f} s with the search, "
          f"{cpu['closed']:.2f} s closed form: {ratio:.2f}x")  # fmt: skip
    print(json.dumps({"accounts": accounts, "liquidations": runs[-1]["liquidations"],
                      "cpu_search_s": cpu["search"], "cpu_closed_s": cpu["closed"],
                      "speedup": ratio}))  # fmt: skip


if __name__ == "__main__":
    main()
