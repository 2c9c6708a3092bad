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

from exchange.core.units import QUOTE_PRECISION


def _usd(amount_quote: int) -> str:
    """Display text of a quote amount (QUOTE_PRECISION units) in cents, rounded half away from
    zero with exact integer maths (never a float on a money value)."""
    unit = QUOTE_PRECISION // 100
    cents = (abs(amount_quote) + unit // 2) // unit
    sign = "-" if amount_quote < 0 and cents else ""
    return f"{sign}{cents // 100:,}.{cents % 100:02d}"


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
        f"  bankruptcies {r.bankruptcies}: bad debt {_usd(r.bad_debt_quote)}, fund paid "
        f"{_usd(r.insurance_paid_quote)}, uncovered {_usd(r.uncovered_quote)}, "
        f"ADL events {r.adl_events}"
    )
    print(
        f"  insurance fund {_usd(r.insurance_fund_start_quote)} -> "
        f"{_usd(r.insurance_fund_end_quote)} (min {_usd(r.insurance_fund_min_quote)})"
    )
    print(f"  refusals {r.refusals}; stale attempts refused {r.stale_attempts_refused}")
    if r.scenario == "insurance-drain":
        print(f"  attacker net {_usd(r.attacker_net_quote)} (fund paid the bankrupt leg)")
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


#: The program judges oracle age at the slot its transaction lands in, a little after the
#: keeper's snapshot: the keeper judges it that much later, so it never sends at an oracle
#: about to go stale.
CLOCK_MARGIN_SLOTS = 2
CLOCK_MARGIN_S = 1


def _new_summary() -> dict[str, Any]:
    return {
        "rounds": 0, "sent": 0, "liquidated": 0, "rejected": {}, "errors": 0,
        "liquidator_fee_quote": 0, "won": [],
        "onchain": {"rounds": 0, "sent": 0, "liquidated": 0, "rejected": {},
                    "liquidator_fee_quote": 0, "won": []},
    }  # fmt: skip


async def _api_round(api: Any, plan: Any, summary: dict[str, Any], sub_account_id: int) -> bool:
    """One round through the API (transport errors propagate); True when a send failed."""
    from liquidation.keeper import Candidate

    found = await api.liquidation_candidates(limit=1_000)
    if not found:
        return False
    margin = {m["sub_account_id"]: m for m in await api.margin()}
    free = margin.get(sub_account_id, {}).get("free_collateral_quote", 0)
    candidates = [
        Candidate(c.owner_id, c.sub_account_id, c.equity_quote, c.maintenance_margin_quote)
        for c in found
    ]
    chosen = plan.choose(candidates, time.time_ns(), free_collateral_quote=free)
    results = await asyncio.gather(
        *(api.liquidate(c.owner_id, c.sub_account_id, sub_account_id=sub_account_id)
          for c in chosen),
        return_exceptions=True,
    )  # fmt: skip
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
            _say(event="liquidated", via="api", sequence=result.sequence,
                 liquidator_fee_quote=result.liquidator_fee_quote,
                 base_taken={str(m): b for m, b in result.base_taken.items()},
                 **where)  # fmt: skip
        else:
            name = result.reject_code_name or "?"
            summary["rejected"][name] = summary["rejected"].get(name, 0) + 1
            if name == "LIQUIDATION_SELF":
                plan.own_owner_id = target.owner_id
            _say(event="rejected", via="api", sequence=result.sequence, code=name,
                 message=result.message, **where)  # fmt: skip
    return failed


class _ChainRound:
    """The on-chain rounds' memory: what was last said about passed-over Users (said again
    only when it changes: one line per outcome, not per round)."""

    def __init__(self, chain: Any) -> None:
        self.chain = chain
        self.last_skipped: Any = None

    async def run(self, plan: Any, summary: dict[str, Any]) -> bool:
        """One round on-chain (transport errors propagate); True when the round failed."""
        from solders.pubkey import Pubkey

        from liquidation.keeper import chain_candidates, chain_oracle_readings

        onchain = summary["onchain"]
        onchain["rounds"] += 1
        snap = await self.chain.snapshot()
        if snap.me is None:
            _say(event="error", via="chain",
                 error=f"no User for {self.chain.keypair.pubkey()} on-chain: expected the "
                 "keeper's wallet to have deposited (perpdex deposit)")  # fmt: skip
            return True
        readings = chain_oracle_readings(
            snap.markets, snap.oracle_prices,
            now_slot=snap.slot + CLOCK_MARGIN_SLOTS,
            now_unix_s=snap.unix_timestamp + CLOCK_MARGIN_S,
        )  # fmt: skip
        screen = chain_candidates(
            snap.users, snap.markets, readings,
            liquidator=snap.me, insurance_fund_quote=snap.insurance_fund_quote,
        )  # fmt: skip
        skipped = (screen.skipped, screen.invalid_oracles, snap.unusable_markets)
        if skipped != self.last_skipped and (screen.skipped or snap.unusable_markets):
            _say(event="skipped", via="chain", reasons=screen.skipped,
                 invalid_oracle_markets=list(screen.invalid_oracles),
                 unusable_markets={str(k): v for k, v in snap.unusable_markets.items()},
                 slot=snap.slot)  # fmt: skip
        self.last_skipped = skipped
        for target in plan.choose_onchain(screen.candidates, time.time_ns()):
            where = {"target_user": str(Pubkey.from_bytes(target.user)),
                     "target_wallet": str(Pubkey.from_bytes(target.owner)),
                     "equity_quote": target.equity_quote,
                     "maintenance_quote": target.maintenance_quote}  # fmt: skip
            onchain["sent"] += 1
            # one at a time: each changes the keeper's own margin, which the next relies on
            outcome = await self.chain.liquidate(target)
            if outcome.status == "LIQUIDATED":
                onchain["liquidated"] += 1
                onchain["liquidator_fee_quote"] += outcome.liquidator_fee_quote
                onchain["won"].append([where["target_wallet"], outcome.signature])
                _say(event="liquidated", via="chain", signature=outcome.signature,
                     liquidator_fee_quote=outcome.liquidator_fee_quote, slices=outcome.slices,
                     expected_liquidator_fee_quote=target.liquidator_fee_quote,
                     expected_slices=target.num_slices,
                     base_taken={str(m): b for m, b in outcome.base_taken.items()},
                     **where)  # fmt: skip
            else:
                name = outcome.code or "?"
                onchain["rejected"][name] = onchain["rejected"].get(name, 0) + 1
                _say(event="rejected", via="chain", code=name, message=outcome.message,
                     **where)  # fmt: skip
        return False  # a refusal is an answer (a race lost), not a failure


async def run_keeper(
    api_url: str | None,
    keypair: Any,
    *,
    sub_account_id: int,
    interval_s: float,
    max_per_round: int,
    stop: asyncio.Event,
    rpc_url: str | None = None,
    program_id: Any = None,
) -> dict[str, Any]:
    """Watch candidates and the keeper's own margin through the API (``api_url``) and/or the
    clearing program's accounts (``rpc_url``), send liquidations, back off on errors, until
    ``stop``; the run's summary. With both, the chain is the path while the API is
    unreachable (the engine down): its rounds go on and the API is probed again on an
    exponential schedule."""
    import aiohttp
    from solana.exceptions import SolanaRpcException
    from solana.rpc.async_api import AsyncClient
    from solana.rpc.commitment import Confirmed
    from solana.rpc.core import RPCException

    from exchange.client import ApiRequestError, PerpdexRest
    from liquidation.keeper import KeeperPlan
    from settlement.keeper_chain import KeeperChain, KeeperChainError

    plan = KeeperPlan(max_per_round=max_per_round)
    summary = _new_summary()
    transport_errors = (ApiRequestError, aiohttp.ClientError, OSError, asyncio.TimeoutError)
    chain_errors = (
        RPCException, SolanaRpcException, KeeperChainError, OSError, asyncio.TimeoutError,
        aiohttp.ClientError,
    )  # fmt: skip

    async def collateral(api: PerpdexRest) -> int:
        rows = {b.sub_account_id: b.collateral_quote for b in await api.balances()}
        return rows.get(sub_account_id, 0)

    async def pause(seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    timeout = aiohttp.ClientTimeout(total=10, connect=2)
    async with contextlib.AsyncExitStack() as stack:
        api: PerpdexRest | None = None
        chain: KeeperChain | None = None
        if api_url is not None:
            session = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
            api = PerpdexRest(api_url, keypair, session=session)
        if rpc_url is not None:
            client = AsyncClient(rpc_url, commitment=Confirmed, timeout=10)
            stack.push_async_callback(client.close)
            chain = KeeperChain(client, keypair, program_id)
        rounds = _ChainRound(chain)
        while not stop.is_set():  # the starting balance, from whichever path answers
            try:
                if api is not None:
                    summary["collateral_before_quote"] = await collateral(api)
                    plan.on_api_up()
                    break
            except transport_errors as exc:
                if chain is None:
                    _say(event="error", where="start", via="api", error=str(exc))
                    await pause(plan.on_error() / 1e9)
                    continue
                _say(event="api_unreachable", via="api", error=str(exc), onchain=True)
                plan.on_api_down(time.time_ns())
            assert chain is not None
            try:
                summary["collateral_before_quote"] = await chain.own_collateral()
                break
            except chain_errors as exc:
                _say(event="error", where="start", via="chain", error=str(exc))
                await pause(plan.on_error() / 1e9)
        if stop.is_set():
            return summary
        _say(event="started", sub_account_id=sub_account_id,
             collateral_quote=summary["collateral_before_quote"],
             api=api_url, rpc=rpc_url, pubkey=str(keypair.pubkey()))  # fmt: skip
        while not stop.is_set():
            # Rounds on the interval's wall-clock grid: keepers on one host look together.
            await pause(interval_s - time.time() % interval_s)
            if stop.is_set():
                break
            summary["rounds"] += 1
            failed = False
            use_chain = api is None
            if api is not None and plan.api_due(time.time_ns()):
                try:
                    failed = await _api_round(api, plan, summary, sub_account_id)
                    if plan.api_failures:
                        _say(event="api_reachable", via="api")
                    plan.on_api_up()
                except transport_errors as exc:
                    if chain is None:
                        summary["errors"] += 1
                        delay_ns = plan.on_error()
                        _say(event="error", via="api", error=str(exc), backoff_s=delay_ns / 1e9)
                        await pause(delay_ns / 1e9)
                        continue
                    first = plan.api_failures == 0
                    delay_ns = plan.on_api_down(time.time_ns())
                    if first:  # said once per outage; the chain carries on meanwhile
                        _say(event="api_unreachable", via="api", error=str(exc),
                             onchain=True)  # fmt: skip
                    use_chain = True
            elif api is not None:
                use_chain = True  # the API is in its backoff: the chain is the path
            if use_chain and chain is not None:
                try:
                    failed = await rounds.run(plan, summary) or failed
                except chain_errors as exc:
                    failed = True
                    summary["errors"] += 1
                    _say(event="error", via="chain", error=str(exc))
            if failed:
                await pause(plan.on_error() / 1e9)
            else:
                plan.on_round_ok()
        after: int | None = None
        if api is not None:
            with contextlib.suppress(*transport_errors):
                after = await collateral(api)
        if after is None and chain is not None:
            with contextlib.suppress(*chain_errors):
                after = await chain.own_collateral()
        summary["collateral_after_quote"] = after
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
    if args.onchain_only and args.rpc is None:
        raise SystemExit("--onchain-only: expected --rpc URL too, got none")
    if args.api is None and not args.onchain_only:
        raise SystemExit("--api: expected the API's URL (or --onchain-only with --rpc), got none")
    if args.program_id is not None and args.rpc is None:
        raise SystemExit("--program-id: expected --rpc URL too, got none")
    from solders.pubkey import Pubkey

    from settlement.onchain import LOCALNET_PROGRAM_ID

    try:
        program_id = (
            LOCALNET_PROGRAM_ID if args.program_id is None else Pubkey.from_string(args.program_id)
        )
    except ValueError:
        raise SystemExit(
            f"--program-id: expected a base58 public key, got {args.program_id!r}"
        ) from None

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_keeper(
            None if args.onchain_only else args.api.rstrip("/"),
            keypair,
            sub_account_id=args.sub_account,
            interval_s=args.interval_ms / 1000,
            max_per_round=args.max_per_round,
            stop=stop,
            rpc_url=args.rpc,
            program_id=program_id,
        )

    summary = asyncio.run(main())
    onchain = summary["onchain"]
    print(f"perpdex keeper liquidator {keypair.pubkey()}: {summary['liquidated']} liquidated, "
          f"{sum(summary['rejected'].values())} rejected through the API; "
          f"{onchain['liquidated']} liquidated, {sum(onchain['rejected'].values())} rejected "
          f"on-chain; {summary['errors']} errors, fee share "
          f"{(summary['liquidator_fee_quote'] + onchain['liquidator_fee_quote']) / 1e6:,.6f}",
          file=sys.stderr)  # fmt: skip
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
        help="watch margin through the API and/or on-chain and liquidate accounts below "
        "maintenance",
        description="Polls GET /v1/liquidations/candidates and the keeper's own margin, sends "
        "signed POST /v1/liquidations (the liquidator's fee share is credited to its "
        "sub-account), backs off on errors; one JSON object per line, the last one a summary. "
        "The key must be a registered wallet's (its first on-chain deposit registers it: "
        "perpdex deposit) or bound in the API's [api.owners]. With --rpc, while the API is "
        "unreachable (the engine down), or always with --onchain-only, it reads the clearing "
        "program's User and Market accounts and their oracles, judges them with the program's "
        "own maths and guards (never at a stale or invalid oracle) and sends the "
        "permissionless liquidate signed by the key, whose own on-chain User must exist and "
        "have margin.",
    )
    liq.add_argument("--api", default=None, help="the API's base URL, e.g. http://127.0.0.1:8080")
    liq.add_argument("--rpc", default=None, help="a Solana JSON-RPC URL: also watch on-chain")
    liq.add_argument(
        "--program-id", default=None, help="the clearing program (default: the localnet one)"
    )
    liq.add_argument(
        "--onchain-only", action="store_true", help="only on-chain (needs --rpc; no --api)"
    )
    liq.add_argument("--key", required=True, type=Path, help="solana CLI keypair file (JSON)")
    liq.add_argument("--sub-account", type=int, default=0, help="the liquidator sub-account")
    liq.add_argument("--interval-ms", type=int, default=200, help="polling interval")
    liq.add_argument("--max-per-round", type=int, default=8, help="liquidations sent per round")
    liq.set_defaults(func=cmd_keeper_liquidator)
