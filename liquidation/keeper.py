"""Who liquidates, and when: the sweeper kept in step with a clearinghouse, the engine's
backstop rule, and a keeper's choice of targets. Pure: time arrives as ``ts_ns``.

* :class:`LiquidationWatch` mirrors a :class:`perp.clearinghouse.Clearinghouse` into a
  :class:`liquidation.sweeper.Sweeper` incrementally: after each batch of events only the
  accounts the events name are re-read (fills, deposits, withdrawals, funding, liquidations,
  ADL, bad-debt payments), and the markets are refreshed from the clearinghouse's index,
  funding index and liquidation validity (valid and fresh, the same rule ``Liquidate`` uses).
  :meth:`LiquidationWatch.candidates` screens (numba) and re-checks exactly.
* :class:`BackstopPolicy` is the engine's rule (``docs/PROTOCOL.md``, "Engine liquidation
  flow"): keepers go first; an account the sweeper has seen liquidatable for
  ``grace_period_ns`` without a keeper acting is liquidated by the engine's own liquidator
  account, at most once per ``retry_ns`` per account.
* :func:`keeper_targets` orders a keeper's candidates (largest shortfall first), and
  :class:`KeeperPlan` is a keeper process's decisions (``perpdex keeper liquidator``): which
  targets to send this round (not one already tried within ``retry_ns``, none while it has no
  free collateral to take positions over), which of its own owner never to target, how long
  to back off after errors, when to probe an unreachable API again.
* :func:`chain_candidates` is the on-chain keeper's view (``--rpc``): the clearing program's
  User and Market accounts and each Market's oracle, judged with the program's own maths
  (funding settled to each Market's index, the oracle guards of ``read_oracle_price``, the
  eligibility and plan of ``rules.plan_liquidation``, the liquidator's initial margin
  afterwards), so a keeper sends ``liquidate`` only where the program would accept it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from exchange.core.events import (
    CollateralDeposited,
    CollateralWithdrawn,
    FillSettled,
    FundingRateApplied,
    FundingSettled,
    InsuranceFundPaidBadDebt,
    LiquidationExecuted,
    MarketParamsSet,
    PositionDeleveraged,
    RiskParamsChanged,
)
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER
from exchange.core.units import NANOS_PER_SECOND, RATIO_PRECISION
from liquidation.errors import LiquidationInputError, ScreenRangeError
from liquidation.rules import (
    Eligibility,
    LiquidationConfig,
    LiquidationPlan,
    OracleReading,
    plan_liquidation,
)
from liquidation.sweeper import LiquidateIntent, Sweeper, SweeperMarket
from oracle_feeds.guards import GuardLimits, Verdict, check
from oracle_feeds.price import OraclePrice
from perp.clearinghouse import Clearinghouse
from perp.margin_check import margin_summary
from perp.math.margin import MarginSchedule
from perp.position import Position, apply_fill, settle_funding


class Candidate(NamedTuple):
    """An account the exact maths finds below maintenance at valid, fresh oracles."""

    owner_id: int
    sub_account_id: int
    equity_quote: int
    maintenance_quote: int

    @property
    def account_id(self) -> int:
        return self.owner_id * SUB_ACCOUNTS_PER_OWNER + self.sub_account_id

    @property
    def shortfall_quote(self) -> int:
        return self.maintenance_quote - self.equity_quote


def _sweeper_market(ch: Clearinghouse, market_id: int) -> SweeperMarket:
    """The screen's bounds for a market: its position limit and its largest price, shrunk
    until they fit the screen (values beyond them still go to the exact check)."""
    spec = ch.core.books[market_id].spec
    params = ch.markets[market_id].params
    max_price = spec.max_price_ticks * spec.tick_size
    max_base = params.max_position_base
    while True:
        market = SweeperMarket(
            schedule=params.margin, max_position_base=max_base, max_price=max_price
        )
        try:
            Sweeper(markets=[market])
        except ScreenRangeError:
            if max_price > 1 << 20:
                max_price >>= 1
            elif max_base > 1 << 20:
                max_base >>= 1
            else:
                raise
            continue
        return market


_ACCOUNT_EVENTS = (
    CollateralDeposited,
    CollateralWithdrawn,
    FundingSettled,
    InsuranceFundPaidBadDebt,
)


class LiquidationWatch:
    """A sweeper over ``ch``'s accounts, updated from the events ``ch`` emits."""

    def __init__(self, ch: Clearinghouse) -> None:
        self.ch = ch
        self._dense: dict[int, int] = {}  # account id -> sweeper row
        self._account_of: list[int] = []  # sweeper row -> account id
        self._market_ids: list[int] = []  # sweeper market -> clearinghouse market
        self._market_index: dict[int, int] = {}
        self.sweeper: Sweeper | None = None
        self.rebuild()

    def rebuild(self) -> None:
        """Load every account afresh (at start, and when a market is listed)."""
        ch = self.ch
        self._market_ids = sorted(ch.markets)
        self._market_index = {m: i for i, m in enumerate(self._market_ids)}
        self._dense, self._account_of = {}, []
        if not self._market_ids:
            self.sweeper = None
            return
        if len(self._market_ids) > 16:
            raise LiquidationInputError(
                f"markets: expected <= 16 for the sweeper, got {len(self._market_ids)}"
            )
        self.sweeper = Sweeper(markets=[_sweeper_market(ch, m) for m in self._market_ids])
        for account_id in sorted(ch.accounts):
            self._load(account_id)

    def _row(self, account_id: int) -> int:
        row = self._dense.get(account_id)
        if row is None:
            row = self._dense[account_id] = len(self._account_of)
            self._account_of.append(account_id)
        return row

    def _load(self, account_id: int) -> None:
        sweeper = self.sweeper
        if sweeper is None:
            return
        acct = self.ch.accounts.get(account_id)
        row = self._row(account_id)
        sweeper.set_collateral(row, acct.collateral_quote if acct is not None else 0)
        held = acct.positions if acct is not None else {}
        for index in sweeper.positions(row):
            if self._market_ids[index] not in held:
                sweeper.set_position(row, index, Position())
        for market_id, position in held.items():
            sweeper.set_position(row, self._market_index[market_id], position)

    def sync(self, events: Iterable[Any]) -> None:
        """Re-read the accounts ``events`` touched (call after each applied batch)."""
        touched: set[int] = set()
        relist = False
        for e in events:
            kind = type(e)
            if kind is FillSettled:
                touched.add(e.maker_owner_id * SUB_ACCOUNTS_PER_OWNER + e.maker_sub_account_id)
                touched.add(e.taker_owner_id * SUB_ACCOUNTS_PER_OWNER + e.taker_sub_account_id)
            elif kind is LiquidationExecuted:
                touched.add(e.owner_id * SUB_ACCOUNTS_PER_OWNER + e.sub_account_id)
                touched.add(
                    e.liquidator_owner_id * SUB_ACCOUNTS_PER_OWNER + e.liquidator_sub_account_id
                )
            elif kind is PositionDeleveraged:
                touched.add(e.owner_id * SUB_ACCOUNTS_PER_OWNER + e.sub_account_id)
                touched.add(
                    e.counterparty_owner_id * SUB_ACCOUNTS_PER_OWNER + e.counterparty_sub_account_id
                )
            elif kind in _ACCOUNT_EVENTS:
                touched.add(e.owner_id * SUB_ACCOUNTS_PER_OWNER + e.sub_account_id)
            elif kind is MarketParamsSet and e.market_id not in self._market_index:
                relist = True
            elif kind is RiskParamsChanged:
                relist = True  # the screen's schedule and position bound changed
            elif kind is FundingRateApplied:
                pass  # the funding index is read at every screen
        if relist:
            self.rebuild()
            return
        for account_id in sorted(touched):
            self._load(account_id)

    def candidates(self, ts_ns: int) -> list[Candidate]:
        """Accounts liquidatable now: the screen, then the exact re-check."""
        sweeper = self.sweeper
        if sweeper is None:
            return []
        oracles = self.ch._liquidation_oracles(ts_ns)
        for index, market_id in enumerate(self._market_ids):
            m = self.ch.markets[market_id]
            reading = oracles.get(market_id)
            if reading is None:
                continue  # never priced: the sweeper keeps it invalid
            sweeper.update_market(
                index,
                oracle_price=reading.price,
                valid_for_liquidation=reading.valid_for_liquidation,
                cumulative_funding=m.cumulative_funding,
            )
        out = []
        for intent in sweeper.sweep():
            owner_id, sub = divmod(self._account_of[intent.account_id], SUB_ACCOUNTS_PER_OWNER)
            out.append(Candidate(owner_id, sub, intent.equity_quote, intent.maintenance_quote))
        return out

    def recheck(self, owner_id: int, sub_account_id: int) -> LiquidateIntent | None:
        """The exact check of one account against the sweeper's stored state."""
        row = self._dense.get(owner_id * SUB_ACCOUNTS_PER_OWNER + sub_account_id)
        if row is None or self.sweeper is None:
            return None
        return self.sweeper.recheck(row)


@dataclass(slots=True)
class BackstopPolicy:
    """The engine's backstop: liquidate what keepers left for ``grace_period_ns``."""

    grace_period_ns: int = 2 * NANOS_PER_SECOND
    retry_ns: int = 1 * NANOS_PER_SECOND
    first_seen_ns: dict[int, int] = field(default_factory=dict)
    last_sent_ns: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("grace_period_ns", "retry_ns"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise LiquidationInputError(f"{name}: expected an int >= 0, got {value!r}")

    def due(self, candidates: Sequence[Candidate], ts_ns: int) -> list[Candidate]:
        """The candidates the engine must liquidate now (in account order); forgets
        accounts that are no longer candidates (a keeper got there, or prices recovered)."""
        live = {c.account_id: c for c in candidates}
        for account_id in list(self.first_seen_ns):
            if account_id not in live:
                del self.first_seen_ns[account_id]
                self.last_sent_ns.pop(account_id, None)
        out = []
        for account_id in sorted(live):
            first = self.first_seen_ns.setdefault(account_id, ts_ns)
            if ts_ns - first < self.grace_period_ns:
                continue
            sent = self.last_sent_ns.get(account_id)
            if sent is not None and ts_ns - sent < self.retry_ns:
                continue
            self.last_sent_ns[account_id] = ts_ns
            out.append(live[account_id])
        return out


def keeper_targets(
    candidates: Iterable[Candidate], *, own_owner_id: int, limit: int
) -> list[Candidate]:
    """A keeper's targets: never its own accounts, largest shortfall first (ties by
    account), at most ``limit``."""
    mine = [c for c in candidates if c.owner_id != own_owner_id]
    mine.sort(key=lambda c: (-c.shortfall_quote, c.account_id))
    return mine[: max(0, limit)]


@dataclass(slots=True)
class KeeperPlan:
    """A keeper process's decisions, pure (time arrives as ``ts_ns``).

    Each round it sends at most ``max_per_round`` liquidations, largest shortfall first,
    never against ``own_owner_id`` (learned from the API's answers; the engine refuses
    self-liquidation anyway) and not twice against one account within ``retry_ns`` (a
    target another keeper took may still be listed until the next screen). Errors back off
    exponentially from ``backoff_min_ns`` to ``backoff_max_ns``; a clean round resets it.
    With an on-chain path, an unreachable API is probed again on the same exponential
    schedule (``api_due``) while the rounds go on-chain.
    """

    own_owner_id: int | None = None
    max_per_round: int = 8
    retry_ns: int = NANOS_PER_SECOND // 2
    backoff_min_ns: int = NANOS_PER_SECOND // 10
    backoff_max_ns: int = 5 * NANOS_PER_SECOND
    # engine account id (API targets) or User address (on-chain targets) -> last attempt
    attempted_ns: dict[int | bytes, int] = field(default_factory=dict)
    consecutive_errors: int = 0
    api_failures: int = 0
    api_retry_at_ns: int = 0

    def __post_init__(self) -> None:
        for name, lo in (
            ("max_per_round", 1),
            ("retry_ns", 0),
            ("backoff_min_ns", 1),
            ("backoff_max_ns", 1),
        ):
            value = getattr(self, name)
            if type(value) is not int or value < lo:
                raise LiquidationInputError(f"{name}: expected an int >= {lo}, got {value!r}")
        if self.backoff_max_ns < self.backoff_min_ns:
            raise LiquidationInputError(
                f"backoff_max_ns: expected >= backoff_min_ns {self.backoff_min_ns}, "
                f"got {self.backoff_max_ns}"
            )

    def _forget_old_attempts(self, ts_ns: int) -> None:
        for key, sent_ns in list(self.attempted_ns.items()):
            if ts_ns - sent_ns >= self.retry_ns:
                del self.attempted_ns[key]

    def choose(
        self, candidates: Iterable[Candidate], ts_ns: int, *, free_collateral_quote: int
    ) -> list[Candidate]:
        """This round's targets (recorded as attempted at ``ts_ns``)."""
        self._forget_old_attempts(ts_ns)
        if free_collateral_quote <= 0:
            return []  # it could not take any position over: the engine would refuse
        own = -1 if self.own_owner_id is None else self.own_owner_id
        ordered = keeper_targets(
            candidates, own_owner_id=own, limit=len(self.attempted_ns) + self.max_per_round
        )
        chosen = [c for c in ordered if c.account_id not in self.attempted_ns]
        chosen = chosen[: self.max_per_round]
        for c in chosen:
            self.attempted_ns[c.account_id] = ts_ns
        return chosen

    def choose_onchain(
        self, candidates: Iterable[ChainCandidate], ts_ns: int
    ) -> list[ChainCandidate]:
        """This round's on-chain targets: largest shortfall first (ties by User address),
        none tried within ``retry_ns``; recorded as attempted at ``ts_ns``. The candidates
        already passed the liquidator's margin check (:func:`chain_candidates`)."""
        self._forget_old_attempts(ts_ns)
        ordered = sorted(candidates, key=lambda c: (-c.shortfall_quote, c.user))
        chosen = [c for c in ordered if c.user not in self.attempted_ns][: self.max_per_round]
        for c in chosen:
            self.attempted_ns[c.user] = ts_ns
        return chosen

    def on_round_ok(self) -> None:
        """A round without transport or API errors."""
        self.consecutive_errors = 0

    def on_error(self) -> int:
        """A failed round: the delay (ns) before the next one."""
        self.consecutive_errors += 1
        delay = self.backoff_min_ns << min(self.consecutive_errors - 1, 32)
        return min(delay, self.backoff_max_ns)

    def api_due(self, ts_ns: int) -> bool:
        """Whether to ask the API this round (always, unless it was unreachable lately)."""
        return ts_ns >= self.api_retry_at_ns

    def on_api_down(self, ts_ns: int) -> int:
        """The API was unreachable at ``ts_ns``: the delay (ns) before it is asked again."""
        self.api_failures += 1
        delay = min(self.backoff_min_ns << min(self.api_failures - 1, 32), self.backoff_max_ns)
        self.api_retry_at_ns = ts_ns + delay
        return delay

    def on_api_up(self) -> None:
        """The API answered."""
        self.api_failures = 0
        self.api_retry_at_ns = 0


# ------------------------------------------------------------------ on-chain keeper


class ChainPosition(NamedTuple):
    """One in-use position slot of a program ``User`` account."""

    market_index: int
    base: int  # BASE_PRECISION, signed
    entry_quote: int  # QUOTE_PRECISION, signed cost basis
    funding_snapshot: int  # the Market's funding index at the slot's last settlement
    funding_carry_numerator: int  # [0, SETTLEMENT_DENOMINATOR)


class ChainUser(NamedTuple):
    """A program ``User`` account (cross margin of one wallet)."""

    address: bytes  # the User PDA, 32 bytes
    owner: bytes  # its wallet, 32 bytes
    collateral_quote: int
    positions: tuple[ChainPosition, ...]  # the slots in use, in slot order


class ChainMarket(NamedTuple):
    """What the program's ``liquidate`` reads from one ``Market`` account."""

    market_index: int
    oracle: bytes  # the oracle account it names, 32 bytes
    lot_size: int  # BASE_PRECISION per lot
    schedule: MarginSchedule
    liquidation: LiquidationConfig  # the Market's fee, liquidator share, buffer
    cumulative_funding: int
    oracle_limits: GuardLimits  # max age (slots, seconds) and confidence; no TWAP on-chain


class ChainCandidate(NamedTuple):
    """A User the program would liquidate now, with the liquidator's margin kept."""

    user: bytes  # the User PDA
    owner: bytes  # its wallet
    equity_quote: int  # at the oracles, funding settled
    maintenance_quote: int
    market_indices: tuple[int, ...]  # the (Market, oracle) pairs ``liquidate`` needs, ascending
    liquidator_fee_quote: int  # the plan's share for the liquidator (a sum over slices)
    num_slices: int

    @property
    def shortfall_quote(self) -> int:
        return self.maintenance_quote - self.equity_quote


class ChainScreen(NamedTuple):
    """One look at the chain: the candidates and why others were passed over."""

    candidates: list[ChainCandidate]
    skipped: dict[str, int]  # reason -> Users (oracle_invalid, bankrupt, liquidator_margin, ...)
    invalid_oracles: tuple[int, ...]  # markets whose oracle the program would refuse now


def chain_oracle_readings(
    markets: Mapping[int, ChainMarket],
    prices: Mapping[int, OraclePrice | None],
    *,
    now_slot: int,
    now_unix_s: int,
) -> dict[int, OracleReading]:
    """Each market's oracle judged as the program's ``read_oracle_price`` judges it at the
    clock (``now_slot``, ``now_unix_s``): verified (status), age in slots and in seconds,
    confidence. ``prices[m]`` is None when the account failed to parse as the Market's feed
    (wrong owner, layout, feed id): no reading, so never valid."""
    out = {}
    for index, market in markets.items():
        price = prices.get(index)
        if price is None:
            continue
        verdict = check(price, market.oracle_limits, now_slot=now_slot, now_s=now_unix_s, twap=None)
        out[index] = OracleReading(price.price, verdict == Verdict.VALID)
    return out


def chain_limits(
    *, max_age_slots: int, max_age_seconds: int, max_confidence_ppm: int
) -> GuardLimits:
    """A Market's oracle guards as ``GuardLimits`` (the program has no TWAP check)."""
    return GuardLimits(
        max_age_slots=max_age_slots,
        max_age_seconds=max_age_seconds,
        max_confidence_ppm=max_confidence_ppm,
        max_twap_deviation_ppm=RATIO_PRECISION,
    )


def _settled(
    user: ChainUser, markets: Mapping[int, ChainMarket]
) -> tuple[int, dict[int, Position]] | None:
    """The User with every slot's funding settled to its Market's index (the program's
    ``liquidation_settle_funding``); None when a slot's Market is unknown."""
    collateral = user.collateral_quote
    positions: dict[int, Position] = {}
    for slot in user.positions:
        market = markets.get(slot.market_index)
        if market is None:
            return None
        position = Position(
            base=slot.base,
            entry_quote=slot.entry_quote,
            funding_snapshot=slot.funding_snapshot,
            funding_carry_numerator=slot.funding_carry_numerator,
        )
        settled = settle_funding(position, market.cumulative_funding)
        collateral -= settled.payment_quote
        positions[slot.market_index] = settled.position
    return collateral, positions


def _liquidator_keeps_initial(
    collateral_quote: int,
    positions: Mapping[int, Position],
    plan: LiquidationPlan,
    prices: Mapping[int, int],
    schedules: Mapping[int, MarginSchedule],
) -> bool:
    """The program's last check: the liquidator, with every slice taken over at the oracle
    and its fee share credited, has equity >= initial margin at the same prices."""
    collateral = collateral_quote
    after = dict(positions)
    for t in plan.transfers:
        fill = apply_fill(after.get(t.market_id, Position()), -t.base_delta, -t.quote_delta)
        after[t.market_id] = fill.position
        collateral += fill.realized_quote + t.liquidator_fee_quote
    summary = margin_summary(collateral, after, {}, prices, schedules)
    return summary.equity_quote >= 0 and summary.equity_quote >= summary.initial_quote


def chain_candidates(
    users: Iterable[ChainUser],
    markets: Mapping[int, ChainMarket],
    oracles: Mapping[int, OracleReading],
    *,
    liquidator: ChainUser,
    insurance_fund_quote: int,
    max_positions: int = 8,
) -> ChainScreen:
    """The Users the program's ``liquidate`` signed by ``liquidator`` would accept now, and
    why the others are passed over. Mirrors the program step by step: both Users' funding
    settled to the Markets' indices; every market either holds needs an oracle valid under
    its Market's guards (``chain_oracle_readings``); eligibility and the plan of
    ``rules.plan_liquidation`` (a bankrupt account is the engine's: refused on-chain); the
    liquidator needs a position slot per market it takes over and must stay at or above
    initial margin afterwards."""
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    invalid = tuple(
        sorted(m for m in markets if not (m in oracles and oracles[m].valid_for_liquidation))
    )
    mine = _settled(liquidator, markets)
    if mine is None:
        return ChainScreen([], {"liquidator_unknown_market": 1}, invalid)
    liquidator_collateral, liquidator_positions = mine
    liquidator_markets = {p.market_index for p in liquidator.positions}
    out: list[ChainCandidate] = []
    for user in users:
        if user.address == liquidator.address or not any(p.base for p in user.positions):
            continue
        settled = _settled(user, markets)
        if settled is None:
            skip("unknown_market")
            continue
        collateral, positions = settled
        needed = tuple(sorted({p.market_index for p in user.positions} | liquidator_markets))
        if any(m in invalid for m in needed):
            skip("oracle_invalid")
            continue
        held = [m for m, p in positions.items() if p.base]
        result = plan_liquidation(
            account_id=0,
            collateral_quote=collateral,
            positions=positions,
            open_order_markets=(),
            oracles={m: oracles[m] for m in needed},
            schedules={m: markets[m].schedule for m in needed},
            lot_sizes={m: markets[m].lot_size for m in held},
            config={m: markets[m].liquidation for m in held},
            insurance_fund_quote=insurance_fund_quote,
            adl_candidates={},
        )
        if isinstance(result, Eligibility):
            continue  # healthy
        if result.equity_before_quote < 0:
            skip("bankrupt")  # AccountBankrupt on-chain: the engine's fund and ADL decide
            continue
        taken = {t.market_id for t in result.transfers}
        if len(liquidator_markets | taken) > max_positions:
            skip("liquidator_slots")
            continue
        prices = {m: oracles[m].price for m in needed}
        schedules = {m: markets[m].schedule for m in needed}
        if not _liquidator_keeps_initial(
            liquidator_collateral, liquidator_positions, result, prices, schedules
        ):
            skip("liquidator_margin")
            continue
        out.append(
            ChainCandidate(
                user=user.address,
                owner=user.owner,
                equity_quote=result.equity_before_quote,
                maintenance_quote=result.maintenance_before_quote,
                market_indices=needed,
                liquidator_fee_quote=sum(t.liquidator_fee_quote for t in result.transfers),
                num_slices=len(result.transfers),
            )
        )
    return ChainScreen(out, skipped, invalid)
