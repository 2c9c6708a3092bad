"""``perpdex simulate SCENARIO`` and ``perpdex keeper liquidator``: the liquidation
subcommands (registered by ``exchange/cli.py``). The scenarios are pure
(``liquidation/simulate.py``); the I/O lives here: the clock, the optional journal, printing;
the keeper's HTTP loop."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run one stress scenario in-process, report it; the last line is JSON."""
    from liquidation.simulate import Simulation, scenario

    spec = scenario(args.scenario, accounts=args.accounts)
    sim = Simulation(spec, seed=args.seed)
    journal = None
    if args.journal is not None:
        from exchange.engine.journal import Journal

        args.journal.mkdir(parents=True, exist_ok=True)
        journal = Journal.for_data_dir(args.journal)
        sim.on_events = journal.append
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        report = sim.run()
    finally:
        if journal is not None:
            journal.close()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    r = report
    print(f"perpdex simulate {r.scenario}: seed {r.seed}, {r.accounts} accounts, {r.steps} steps")
    print(
        f"  liquidations {r.liquidations} ({r.slices} slices, backstop "
        f"{r.backstop_liquidations}), keeper wins {r.keeper_wins}"
    )
    print(
        f"  bankruptcies {r.bankruptcies}: bad debt {r.bad_debt_quote / 1e6:,.2f}, fund paid "
        f"{r.insurance_paid_quote / 1e6:,.2f}, uncovered {r.uncovered_quote / 1e6:,.2f}, "
        f"ADL events {r.adl_events}"
    )
    print(
        f"  insurance fund {r.insurance_fund_start_quote / 1e6:,.2f} -> "
        f"{r.insurance_fund_end_quote / 1e6:,.2f} (min {r.insurance_fund_min_quote / 1e6:,.2f})"
    )
    print(f"  refusals {r.refusals}; stale attempts refused {r.stale_attempts_refused}")
    if r.scenario == "insurance-drain":
        print(f"  attacker net {r.attacker_net_quote / 1e6:,.2f} (fund paid the bankrupt leg)")
    ok = r.max_conservation_gap_quote == 0 and r.insurance_fund_min_quote >= 0
    ok = ok and r.stale_liquidations == 0
    print(
        f"  checks ({r.invariant_checks} steps): conservation gap {r.max_conservation_gap_quote}, "
        f"fund min >= 0, stale liquidations {r.stale_liquidations}: {'OK' if ok else 'FAILED'}"
    )
    print(
        f"  {r.commands} commands, {r.events} events in {seconds:.2f} s ({cpu_seconds:.2f} CPU s)"
    )
    print(json.dumps({**r.to_json(), "seconds": seconds, "cpu_seconds": cpu_seconds}))
    return 0 if ok else 1


def register(sub: Any) -> None:
    """Add the liquidation subcommands to ``perpdex``'s subparsers."""
    from liquidation.simulate import SCENARIOS

    sim = sub.add_parser("simulate", help="run a liquidation stress scenario in-process")
    sim.add_argument("scenario", choices=SCENARIOS)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--accounts", type=int, default=None, help="scale the population")
    sim.add_argument(
        "--journal", type=Path, default=None, help="also journal the run into this data dir"
    )
    sim.set_defaults(func=cmd_simulate)
