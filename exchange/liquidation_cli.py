"""``perpdex simulate SCENARIO`` and ``perpdex keeper liquidator``: the liquidation
subcommands (registered by ``exchange/cli.py``). The scenarios are pure
(``liquidation/simulate.py``); the I/O lives here: the clock, the optional journal, printing;
the keeper's HTTP loop (its decisions are ``liquidation.keeper.KeeperPlan``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
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


# ---------------------------------------------------------------------- keeper liquidator
def _load_keypair(path: Path) -> Any:
    """A solana CLI keypair file (a JSON array of 64 bytes)."""
    from solders.keypair import Keypair

    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(
            f"--key {path}: expected a readable JSON keypair file, got {exc}"
        ) from None
    if (
        not isinstance(raw, list)
        or len(raw) != 64
        or not all(type(b) is int and 0 <= b <= 255 for b in raw)
    ):
        raise SystemExit(f"--key {path}: expected a JSON array of 64 bytes")
    return Keypair.from_bytes(bytes(raw))


def _say(**fields: Any) -> None:
    # one JSON object per line: the keeper's log is machine-readable
    print(json.dumps(fields, sort_keys=True), flush=True)


async def run_keeper(
    api_url: str,
    keypair: Any,
    *,
    sub_account_id: int,
    interval_s: float,
    max_per_round: int,
    stop: asyncio.Event,
) -> dict[str, Any]:
    """Watch candidates and the keeper's own margin through the API, send liquidations,
    back off on errors, until ``stop``; the run's summary."""
    import aiohttp

    from exchange.client import ApiRequestError, PerpdexRest
    from liquidation.keeper import Candidate, KeeperPlan

    plan = KeeperPlan(max_per_round=max_per_round)
    summary: dict[str, Any] = {
        "rounds": 0, "sent": 0, "liquidated": 0, "rejected": {}, "errors": 0,
        "liquidator_fee_quote": 0, "won": [],
    }  # fmt: skip
    transport_errors = (ApiRequestError, aiohttp.ClientError, OSError, asyncio.TimeoutError)

    async def collateral(api: PerpdexRest) -> int:
        rows = {b.sub_account_id: b.collateral_quote for b in await api.balances()}
        return rows.get(sub_account_id, 0)

    async def pause(seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = PerpdexRest(api_url, keypair, session=session)
        while not stop.is_set():
            try:
                summary["collateral_before_quote"] = await collateral(api)
                break
            except transport_errors as exc:
                _say(event="error", where="start", error=str(exc))
                await pause(plan.on_error() / 1e9)
        if stop.is_set():
            return summary
        _say(event="started", sub_account_id=sub_account_id,
             collateral_quote=summary["collateral_before_quote"])  # fmt: skip
        while not stop.is_set():
            # Rounds on the interval's wall-clock grid: keepers on one host look together.
            await pause(interval_s - time.time() % interval_s)
            if stop.is_set():
                break
            summary["rounds"] += 1
            try:
                found = await api.liquidation_candidates(limit=1_000)
                if not found:
                    plan.on_round_ok()
                    continue
                margin = {m["sub_account_id"]: m for m in await api.margin()}
                free = margin.get(sub_account_id, {}).get("free_collateral_quote", 0)
                candidates = [
                    Candidate(c.owner_id, c.sub_account_id, c.equity_quote,
                              c.maintenance_margin_quote)
                    for c in found
                ]  # fmt: skip
                chosen = plan.choose(candidates, time.time_ns(), free_collateral_quote=free)
                results = await asyncio.gather(
                    *(
                        api.liquidate(c.owner_id, c.sub_account_id, sub_account_id=sub_account_id)
                        for c in chosen
                    ),
                    return_exceptions=True,
                )
            except transport_errors as exc:
                summary["errors"] += 1
                delay_ns = plan.on_error()
                _say(event="error", error=str(exc), backoff_s=delay_ns / 1e9)
                await pause(delay_ns / 1e9)
                continue
            failed = False
            for target, result in zip(chosen, results, strict=True):
                summary["sent"] += 1
                where = {"target_owner_id": target.owner_id,
                         "target_sub_account_id": target.sub_account_id}  # fmt: skip
                if isinstance(result, BaseException):
                    failed = True
                    summary["errors"] += 1
                    _say(event="error", error=str(result), **where)
                elif result.status == "LIQUIDATED":
                    summary["liquidated"] += 1
                    summary["liquidator_fee_quote"] += result.liquidator_fee_quote
                    summary["won"].append([target.owner_id, target.sub_account_id, result.sequence])
                    _say(event="liquidated", sequence=result.sequence,
                         liquidator_fee_quote=result.liquidator_fee_quote,
                         base_taken={str(m): b for m, b in result.base_taken.items()},
                         **where)  # fmt: skip
                else:
                    name = result.reject_code_name or "?"
                    summary["rejected"][name] = summary["rejected"].get(name, 0) + 1
                    if name == "LIQUIDATION_SELF":
                        plan.own_owner_id = target.owner_id
                    _say(event="rejected", sequence=result.sequence, code=name,
                         message=result.message, **where)  # fmt: skip
            if failed:
                await pause(plan.on_error() / 1e9)
            else:
                plan.on_round_ok()
        with contextlib.suppress(*transport_errors):
            summary["collateral_after_quote"] = await collateral(api)
    return summary


def cmd_keeper_liquidator(args: argparse.Namespace) -> int:
    """``perpdex keeper liquidator``: runs until SIGINT / SIGTERM; the last line is JSON."""
    keypair = _load_keypair(args.key)
    from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER

    if args.interval_ms < 1:
        raise SystemExit(f"--interval-ms: expected >= 1, got {args.interval_ms}")
    if not 0 <= args.sub_account < SUB_ACCOUNTS_PER_OWNER:
        raise SystemExit(
            f"--sub-account: expected 0..{SUB_ACCOUNTS_PER_OWNER - 1}, got {args.sub_account}"
        )
    if args.max_per_round < 1:
        raise SystemExit(f"--max-per-round: expected >= 1, got {args.max_per_round}")

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_keeper(
            args.api.rstrip("/"),
            keypair,
            sub_account_id=args.sub_account,
            interval_s=args.interval_ms / 1000,
            max_per_round=args.max_per_round,
            stop=stop,
        )

    summary = asyncio.run(main())
    print(f"perpdex keeper liquidator {keypair.pubkey()}: {summary['liquidated']} liquidated, "
          f"{sum(summary['rejected'].values())} rejected, {summary['errors']} errors, "
          f"fee share {summary['liquidator_fee_quote'] / 1e6:,.6f}", file=sys.stderr)  # fmt: skip
    _say(event="stopped", pubkey=str(keypair.pubkey()), **summary)
    return 0


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

    keeper = sub.add_parser("keeper", help="keeper bots (separate processes with their own key)")
    kinds = keeper.add_subparsers(dest="keeper_kind", required=True)
    liq = kinds.add_parser(
        "liquidator",
        help="watch margin through the API and liquidate accounts below maintenance",
        description="Polls GET /v1/liquidations/candidates and the keeper's own margin, sends "
        "signed POST /v1/liquidations (the liquidator's fee share is credited to its "
        "sub-account), backs off on errors; one JSON object per line, the last one a summary. "
        "The key must be a registered wallet's (its first on-chain deposit registers it: "
        "perpdex deposit) or bound in the API's [api.owners].",
    )
    liq.add_argument("--api", required=True, help="the API's base URL, e.g. http://127.0.0.1:8080")
    liq.add_argument("--key", required=True, type=Path, help="solana CLI keypair file (JSON)")
    liq.add_argument("--sub-account", type=int, default=0, help="the liquidator sub-account")
    liq.add_argument("--interval-ms", type=int, default=200, help="polling interval")
    liq.add_argument("--max-per-round", type=int, default=8, help="liquidations sent per round")
    liq.set_defaults(func=cmd_keeper_liquidator)
