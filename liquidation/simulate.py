"""Stress scenarios for liquidation: a seeded population and price path driven through the
clearinghouse, with keepers racing, the engine's backstop, and checks after every step.

Pure: no clock, no I/O, no ``random`` (a SplitMix64 stream gives the seeded draws, integers
only). ``perpdex simulate SCENARIO`` (``exchange/cli.py``) runs one, times it and prints the
report. Scenarios (``SCENARIOS``):

* ``fall40``: the oracle falls 40 % in 60 s (one reading a second), then holds.
* ``gap25``: a 25 % gap in one tick.
* ``outage5m``: a 5-minute oracle outage (150 s of invalid readings, then 150 s of silence)
  while the true price falls 15 %; a naive keeper keeps trying at the last price it saw, and
  every such attempt must be refused; the oracle comes back 15 % lower.
* ``cascade10k``: 10,000 mostly long, highly leveraged accounts through a 30 % fall in 120 s.
* ``insurance-drain``: one owner self-trades between two sub-accounts (self-trade prevention
  stops it), tries to liquidate itself (refused), then uses a second owner as the other side of
  a maximum-leverage pair and gaps the price to bankrupt one leg: the fund pays at most the
  leg's deficit and never goes negative; the report shows what the attacker gained and paid.

Every step checks: conservation to the unit and positions equal to the core's fills
(``check_invariants``), the insurance fund never negative, and every liquidation slice at the
oracle price of a valid reading no older than the staleness bound (no liquidation at a stale
price). The report counts liquidations, slices, bad debt, insurance fund use, ADL events,
keeper wins and refusals by code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from exchange.core.commands import (
    CreateMarket,
    Deposit,
    DepositInsurance,
    Liquidate,
    PlaceOrder,
    Tick,
    UpdateOraclePrice,
    Withdraw,
)
from exchange.core.errors import InvariantViolation, RejectCode
from exchange.core.events import (
    AccountLiquidated,
    FillSettled,
    InsuranceFundPaidBadDebt,
    LiquidationExecuted,
    OraclePriceUpdated,
    OrderRejected,
    PositionDeleveraged,
    SelfTradeDecremented,
)
from exchange.core.orders import SelfTradePrevention, Side, TimeInForce
from exchange.core.units import (
    BASE_PRECISION,
    NANOS_PER_SECOND,
    PRICE_PRECISION,
    QUOTE_PRECISION,
)
from liquidation.errors import LiquidationInputError
from liquidation.keeper import BackstopPolicy, Candidate, LiquidationWatch, keeper_targets
from perp.clearinghouse import Clearinghouse
from perp.params import PerpMarketParams

MARKET = 0
TICK = 10_000  # 0.01 quote
LOT = BASE_PRECISION // 10  # 0.1 base
START_PRICE = 100 * PRICE_PRECISION
USDC = QUOTE_PRECISION
S = NANOS_PER_SECOND
T0 = 1_700_000_000 * S  # the simulated clock starts here
BACKSTOP_OWNER = 1  # the engine's own liquidator account
MAKER_OWNER = 10
KEEPER_OWNERS = (20, 21)
NAIVE_KEEPER_OWNER = 22
TRADER_OWNER_BASE = 1_000
ATTACKER_OWNER, SYBIL_OWNER = 900, 901


class SplitMix64:
    """A tiny seeded integer stream (SplitMix64): deterministic, no floats, no ``random``."""

    def __init__(self, seed: int) -> None:
        self.state = seed & (2**64 - 1)

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & (2**64 - 1)
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """Uniform-enough integer in ``0..n-1`` (modulo bias < 2^-40 for n < 2^24)."""
        return self.next() % n

    def between(self, lo: int, hi: int) -> int:
        return lo + self.below(hi - lo + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioSpec:
    """A scenario's population and price path shape."""

    name: str
    accounts: int
    long_ppm: int  # share of long accounts
    min_leverage: int
    max_leverage: int
    insurance_fund_quote: int
    path: Callable[[SplitMix64], list[int | None]]  # per second; None: no reading
    invalid_steps: frozenset[int] = frozenset()  # steps whose reading is invalid
    true_path: Callable[[SplitMix64], list[int]] | None = None  # the price naive keepers see
    keeper_online_ppm: int = 900_000


def _noise(rng: SplitMix64, price: int, ppm: int) -> int:
    """``price`` moved by a uniform draw in +-``ppm``, rounded to a tick."""
    moved = price + price * rng.between(-ppm, ppm) // 1_000_000
    return max(TICK, moved // TICK * TICK)


def _segment(rng: SplitMix64, start: int, end: int, steps: int, noise_ppm: int) -> list[int]:
    return [_noise(rng, start + (end - start) * (k + 1) // steps, noise_ppm) for k in range(steps)]


def _fall40(rng: SplitMix64) -> list[int | None]:
    low = START_PRICE * 60 // 100
    return [
        *_segment(rng, START_PRICE, START_PRICE, 10, 1_000),
        *_segment(rng, START_PRICE, low, 60, 2_000),
        *_segment(rng, low, low, 60, 1_000),
    ]


def _gap25(rng: SplitMix64) -> list[int | None]:
    low = START_PRICE * 75 // 100
    return [
        *_segment(rng, START_PRICE, START_PRICE, 10, 1_000),
        low,
        *_segment(rng, low, low, 60, 1_000),
    ]


_OUTAGE_START, _OUTAGE_STEPS = 10, 300


def _outage_true(rng: SplitMix64) -> list[int]:
    low = START_PRICE * 85 // 100
    return [
        *_segment(rng, START_PRICE, START_PRICE, _OUTAGE_START, 1_000),
        *_segment(rng, START_PRICE, low, _OUTAGE_STEPS, 1_000),
        *_segment(rng, low, low, 60, 1_000),
    ]


def _outage5m(rng: SplitMix64) -> list[int | None]:
    true = _outage_true(rng)
    half = _OUTAGE_START + _OUTAGE_STEPS // 2
    return [
        None if _OUTAGE_START <= k < _OUTAGE_START + _OUTAGE_STEPS and k >= half else p
        for k, p in enumerate(true)
    ]


def _cascade(rng: SplitMix64) -> list[int | None]:
    low = START_PRICE * 70 // 100
    return [
        *_segment(rng, START_PRICE, START_PRICE, 5, 500),
        *_segment(rng, START_PRICE, low, 120, 1_500),
        *_segment(rng, low, low, 30, 500),
    ]


def _drain(rng: SplitMix64) -> list[int | None]:
    # 9 % down in one reading: under the breaker's 10 %, beyond a 19x leg's margin.
    low = START_PRICE * 91 // 100
    return [*_segment(rng, START_PRICE, START_PRICE, 10, 500), low, *[low] * 30]


# name, price path, accounts at full size, long share (ppm), leverage range, insurance fund (USDC)
_SCENARIO_ROWS: tuple[
    tuple[str, Callable[[SplitMix64], list[int | None]], int, int, tuple[int, int], int], ...
] = (
    ("fall40", _fall40, 1_000, 700_000, (2, 19), 100_000),
    ("gap25", _gap25, 1_000, 700_000, (2, 19), 20_000),
    ("outage5m", _outage5m, 1_000, 700_000, (4, 19), 100_000),
    ("cascade10k", _cascade, 10_000, 850_000, (5, 19), 500_000),
    ("insurance-drain", _drain, 200, 500_000, (2, 5), 10_000),
)
# Each scenario at its full size; ``scenario`` rescales the population only.
_SCENARIO_SPECS: dict[str, ScenarioSpec] = {
    name: ScenarioSpec(
        name=name,
        accounts=accounts,
        long_ppm=long_ppm,
        min_leverage=min_leverage,
        max_leverage=max_leverage,
        insurance_fund_quote=insurance_fund_usdc * USDC,
        path=path,
    )
    for name, path, accounts, long_ppm, (min_leverage, max_leverage), insurance_fund_usdc in (
        _SCENARIO_ROWS
    )
}
# The outage's first half is invalid readings (then silence); naive keepers see the true path.
_SCENARIO_SPECS["outage5m"] = replace(
    _SCENARIO_SPECS["outage5m"],
    invalid_steps=frozenset(range(_OUTAGE_START, _OUTAGE_START + _OUTAGE_STEPS // 2)),
    true_path=_outage_true,
)
SCENARIOS = tuple(_SCENARIO_SPECS)


def scenario(name: str, *, accounts: int | None = None) -> ScenarioSpec:
    """The named scenario; ``accounts`` scales its population (tests run smaller ones)."""
    spec = _SCENARIO_SPECS.get(name)
    if spec is None:
        raise LiquidationInputError(f"scenario: expected one of {SCENARIOS}, got {name!r}")
    return replace(spec, accounts=accounts or spec.accounts)


@dataclass(slots=True)
class SimulationReport:
    """What a run did and what it checked (amounts in quote units)."""

    scenario: str
    seed: int
    accounts: int
    steps: int = 0
    commands: int = 0
    events: int = 0
    liquidations: int = 0  # AccountLiquidated
    slices: int = 0  # LiquidationExecuted
    adl_events: int = 0  # PositionDeleveraged
    bankruptcies: int = 0
    bad_debt_quote: int = 0
    insurance_paid_quote: int = 0
    uncovered_quote: int = 0
    insurance_fund_start_quote: int = 0
    insurance_fund_min_quote: int = 0
    insurance_fund_end_quote: int = 0
    liquidation_fees_quote: int = 0
    liquidator_fees_quote: int = 0
    keeper_wins: dict[int, int] = field(default_factory=dict)
    backstop_liquidations: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    stale_attempts_refused: int = 0
    self_trades_prevented: int = 0
    attacker_net_quote: int = 0  # insurance-drain: attacker's end value minus deposits
    invariant_checks: int = 0
    stale_liquidations: int = 0  # must be 0
    max_conservation_gap_quote: int = 0  # must be 0
    state_hash: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            name: ({str(k): v for k, v in value.items()} if isinstance(value, dict) else value)
            for name in self.__slots__
            for value in (getattr(self, name),)
        }


class Simulation:
    """One scenario run; :meth:`run` returns the report (and raises on a broken invariant)."""

    def __init__(self, spec: ScenarioSpec, *, seed: int) -> None:
        self.spec = spec
        self.rng = SplitMix64(seed)
        self.ch = Clearinghouse(default_params=PerpMarketParams())
        self.report = SimulationReport(spec.name, seed, spec.accounts)
        self.ts = T0
        self.journal_events = 0
        self.last_valid: tuple[int, int] | None = None  # (price, ts) of the last valid reading
        self.deposits: dict[int, int] = {}
        self.on_events: Callable[[list[Any]], object] | None = None  # e.g. a journal writer

    # ------------------------------------------------------------------ plumbing
    def run_command(self, cmd: Any) -> list[Any]:
        events = self.ch.execute(cmd, self.ts)
        self.report.commands += 1
        self.report.events += len(events)
        self._observe(events)
        if self.on_events is not None:
            self.on_events(events)
        fund = self.ch.insurance_fund_quote
        if fund < 0:
            raise InvariantViolation(f"insurance fund: expected >= 0, got {fund}")
        self.report.insurance_fund_min_quote = min(self.report.insurance_fund_min_quote, fund)
        return events

    def _observe(self, events: list[Any]) -> None:
        r = self.report
        max_age = self.ch.liquidation_max_oracle_age_ns
        for e in events:
            kind = type(e)
            if kind is OraclePriceUpdated and e.valid:
                self.last_valid = (e.price, e.ts_ns)
            elif kind is LiquidationExecuted or kind is PositionDeleveraged:
                fresh = self.last_valid is not None and e.ts_ns - self.last_valid[1] <= max_age
                at_oracle = kind is PositionDeleveraged or (
                    self.last_valid is not None and e.price == self.last_valid[0]
                )
                if not (fresh and at_oracle):
                    r.stale_liquidations += 1
                if kind is LiquidationExecuted:
                    r.slices += 1
                    r.liquidation_fees_quote += e.fee_quote
                    r.liquidator_fees_quote += e.liquidator_fee_quote
                else:
                    r.adl_events += 1
            elif kind is AccountLiquidated:
                r.liquidations += 1
            elif kind is InsuranceFundPaidBadDebt:
                r.bankruptcies += 1
                r.bad_debt_quote += e.bad_debt_quote
                r.insurance_paid_quote += e.amount_quote
                r.uncovered_quote += e.uncovered_quote
            elif kind is OrderRejected:
                name = RejectCode(e.code).name
                r.refusals[name] = r.refusals.get(name, 0) + 1
            elif kind is SelfTradeDecremented:
                r.self_trades_prevented += 1

    def deposit(self, owner_id: int, sub: int, amount_quote: int) -> None:
        self.run_command(Deposit(owner_id, sub, amount_quote))
        key = owner_id * 65536 + sub
        self.deposits[key] = self.deposits.get(key, 0) + amount_quote

    def check(self) -> None:
        gap = self.ch.conservation_gap_quote()
        self.report.max_conservation_gap_quote = max(self.report.max_conservation_gap_quote, gap)
        self.ch.check_invariants()
        self.report.invariant_checks += 1

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        spec, rng = self.spec, self.rng
        self.run_command(CreateMarket(MARKET, "SIM-PERP", TICK, LOT))
        self.run_command(UpdateOraclePrice(MARKET, START_PRICE, TICK, 1, self.ts // S, True))
        self.run_command(DepositInsurance(spec.insurance_fund_quote))
        self.report.insurance_fund_start_quote = self.ch.insurance_fund_quote
        self.report.insurance_fund_min_quote = self.ch.insurance_fund_quote
        for owner in (BACKSTOP_OWNER, *KEEPER_OWNERS):
            self.deposit(owner, 0, 100_000_000 * USDC)
        self.deposit(MAKER_OWNER, 0, 1_000_000_000 * USDC)
        longs: list[tuple[int, int]] = []
        shorts: list[tuple[int, int]] = []
        for i in range(spec.accounts):
            owner = TRADER_OWNER_BASE + i
            collateral = rng.between(100, 10_000) * USDC
            leverage = rng.between(spec.min_leverage, spec.max_leverage)
            lots = collateral * leverage * BASE_PRECISION // START_PRICE // LOT
            if lots <= 0:
                continue
            self.deposit(owner, 0, collateral)
            (longs if rng.below(1_000_000) < spec.long_ppm else shorts).append((owner, lots))
        self._open(longs, Side.BID)
        self._open(shorts, Side.ASK)
        self.check()

    def _open(self, takers: list[tuple[int, int]], taker_side: Side) -> None:
        """The maker rests the other side in chunks (within its order limits), each taker
        takes its size with an IOC at the maker's price."""
        if not takers:
            return
        maker_side = Side.ASK if taker_side == Side.BID else Side.BID
        price = START_PRICE if taker_side == Side.BID else START_PRICE - TICK
        params = self.ch.markets[MARKET].params
        chunk_lots = (
            min(
                params.max_order_base,
                params.max_order_notional_quote * BASE_PRECISION // price,
            )
            // LOT
        )
        total = sum(lots for _, lots in takers)
        while total > 0:
            lots = min(total, chunk_lots)
            self.run_command(PlaceOrder(MARKET, MAKER_OWNER, 0, maker_side, price, lots * LOT))
            total -= lots
        for owner, lots in takers:
            self.run_command(
                PlaceOrder(
                    MARKET,
                    owner,
                    0,
                    taker_side,
                    price,
                    lots * LOT,
                    time_in_force=int(TimeInForce.IOC),
                )
            )

    # ------------------------------------------------------------------ the run
    def run(self) -> SimulationReport:
        """Set up, then one step per second of the path: the oracle reading (or none), a
        tick, the sweep, keepers racing, the backstop; checks after every step."""
        self.setup()
        spec = self.spec
        if spec.name == "insurance-drain":
            self._drain_setup()
        path = spec.path(self.rng)
        true_path = spec.true_path(SplitMix64(self.report.seed + 1)) if spec.true_path else None
        watch = LiquidationWatch(self.ch)
        backstop = BackstopPolicy(grace_period_ns=2 * S, retry_ns=1 * S)
        wins: Counter[int] = Counter()
        slot = 2
        for step, price in enumerate(path):
            self.ts += S
            batch: list[Any] = []
            if price is not None:
                valid = step not in spec.invalid_steps
                slot += 1
                batch += self.run_command(
                    UpdateOraclePrice(
                        MARKET, price if valid else 0, TICK, slot, self.ts // S, valid
                    )
                )
            batch += self.run_command(Tick())
            watch.sync(batch)
            candidates = watch.candidates(self.ts)
            self._race(candidates, wins, watch)
            if true_path is not None:
                self._naive_keeper(true_path[step], watch)
            for candidate in backstop.due(watch.candidates(self.ts), self.ts):
                events = self.run_command(
                    Liquidate(BACKSTOP_OWNER, 0, candidate.owner_id, candidate.sub_account_id)
                )
                watch.sync(events)
                if any(type(e) is AccountLiquidated for e in events):
                    self.report.backstop_liquidations += 1
            self.check()
            self.report.steps += 1
        if spec.name == "insurance-drain":
            self._drain_settle()
        self.report.keeper_wins = {owner: wins[owner] for owner in KEEPER_OWNERS}
        self.report.insurance_fund_end_quote = self.ch.insurance_fund_quote
        self.report.state_hash = self.ch.state_hash()
        return self.report

    def _race(
        self, candidates: list[Candidate], wins: Counter[int], watch: LiquidationWatch
    ) -> list[Candidate]:
        """Both keepers (each online with the scenario's probability) submit a Liquidate
        for every candidate, in a seeded order: the first valid one wins."""
        online = [
            owner
            for owner in KEEPER_OWNERS
            if self.rng.below(1_000_000) < self.spec.keeper_online_ppm
        ]
        done = []
        for candidate in keeper_targets(candidates, own_owner_id=-1, limit=len(candidates)):
            order = list(online)
            if len(order) == 2 and self.rng.below(2):
                order.reverse()
            for owner in order:
                events = self.run_command(
                    Liquidate(owner, 0, candidate.owner_id, candidate.sub_account_id)
                )
                watch.sync(events)
                if any(type(e) is AccountLiquidated for e in events):
                    wins[owner] += 1
            done.append(candidate)
        return done

    def _naive_keeper(self, true_price: int, watch: LiquidationWatch) -> None:
        """During an outage, a keeper that trusts a price the engine has not seen tries
        every account that price would make liquidatable: each attempt must be refused."""
        m = self.ch.markets[MARKET]
        fresh = m.oracle_valid and self.ts - m.index_updated_ns <= (
            self.ch.liquidation_max_oracle_age_ns
        )
        if fresh:
            return
        maintenance_ppm = m.params.margin.tiers[0].maintenance_ppm
        tried = 0
        for account_id, acct in list(self.ch.accounts.items()):
            position = acct.positions.get(MARKET)
            if position is None or account_id // 65536 < TRADER_OWNER_BASE:
                continue
            value = position.base * true_price // BASE_PRECISION
            equity = acct.collateral_quote + value + position.entry_quote
            if equity * 1_000_000 >= abs(value) * maintenance_ppm:
                continue
            owner, sub = divmod(account_id, 65536)
            events = self.run_command(Liquidate(NAIVE_KEEPER_OWNER, 0, owner, sub))
            if any(type(e) is AccountLiquidated for e in events):
                raise InvariantViolation(f"liquidated during an oracle outage: {events[-1]!r}")
            self.report.stale_attempts_refused += 1
            tried += 1
            if tried >= 20:  # a sample each second is enough to prove the refusal
                return

    # ------------------------------------------------------------------ insurance drain
    def _drain_setup(self) -> None:
        """Self-trade between two sub-accounts (blocked by STP), self-liquidation (refused),
        then a maximum-leverage pair across two owners of one attacker."""
        price = START_PRICE
        for owner, sub in ((ATTACKER_OWNER, 0), (ATTACKER_OWNER, 1), (SYBIL_OWNER, 0)):
            self.deposit(owner, sub, 10_000 * USDC)
        lots = 10_000 * USDC * 19 * BASE_PRECISION // price // LOT
        self.run_command(PlaceOrder(MARKET, ATTACKER_OWNER, 1, Side.ASK, price, lots * LOT))
        events = self.run_command(
            PlaceOrder(
                MARKET,
                ATTACKER_OWNER,
                0,
                Side.BID,
                price,
                lots * LOT,
                time_in_force=int(TimeInForce.IOC),
                stp_mode=int(SelfTradePrevention.DECREMENT_BOTH),
            )
        )
        if any(type(e) is FillSettled for e in events):
            raise InvariantViolation("self-trade between sub-accounts of one owner filled")
        self.run_command(Liquidate(ATTACKER_OWNER, 1, ATTACKER_OWNER, 0))  # LIQUIDATION_SELF
        # The other side from a second owner the attacker controls.
        self.run_command(PlaceOrder(MARKET, SYBIL_OWNER, 0, Side.ASK, price - TICK, lots * LOT))
        self.run_command(
            PlaceOrder(
                MARKET,
                ATTACKER_OWNER,
                0,
                Side.BID,
                price - TICK,
                lots * LOT,
                time_in_force=int(TimeInForce.IOC),
            )
        )
        self.check()

    def _drain_settle(self) -> None:
        """The attacker withdraws what it can; its net is what it holds and took out minus
        what it put in."""
        took = 0
        for owner, sub in ((ATTACKER_OWNER, 0), (ATTACKER_OWNER, 1), (SYBIL_OWNER, 0)):
            margin = self.ch.margin(owner, sub)
            acct = self.ch.account(owner, sub)
            free = max(0, min(margin.free_collateral_quote, acct.collateral_quote))
            if free:
                events = self.run_command(Withdraw(owner, sub, free))
                if not any(type(e) is OrderRejected for e in events):
                    took += free
        held = sum(
            self.ch.margin(owner, sub).equity_quote
            for owner, sub in ((ATTACKER_OWNER, 0), (ATTACKER_OWNER, 1), (SYBIL_OWNER, 0))
        )
        put_in = sum(
            self.deposits.get(owner * 65536 + sub, 0)
            for owner, sub in ((ATTACKER_OWNER, 0), (ATTACKER_OWNER, 1), (SYBIL_OWNER, 0))
        )
        self.report.attacker_net_quote = took + held - put_in
        self.check()


def simulate(name: str, *, seed: int = 1, accounts: int | None = None) -> SimulationReport:
    """Run scenario ``name`` (see the module docstring) and return its report."""
    return Simulation(scenario(name, accounts=accounts), seed=seed).run()
