"""The clearinghouse: the matching core plus accounts, positions, prices, funding, fees, the
insurance fund, the pre-trade risk gate and market status, as one pure state machine.

``execute(command, ts_ns, out)`` decides and appends events; ``apply(event)`` folds them back
(restart, replay). Both paths change money through the same functions (``_settle_fill``,
``_settle_funding`` and the appliers), so a fold of the journal reproduces the live state and
``state_hash`` proves it. Orders go through the risk gate (``perp.risk_gate`` then the margin
check of ``perp.margin_check``) before the matching core; every ``TradeExecuted`` the core
emits is followed, after the command's core events, by one ``FillSettled`` carrying its money.

Accounts are ``owner_id x SUB_ACCOUNTS_PER_OWNER + sub_account_id``; margin is cross within a
sub-account (an isolated position is a sub-account of its own). Time arrives as ``ts_ns``;
time-driven work (funding samples and intervals, expiry) comes as a ``Tick`` command.

Units: money at ``QUOTE_PRECISION``, base at ``BASE_PRECISION``, prices at
``PRICE_PRECISION``, rates at ``FUNDING_RATE_PRECISION``. Rules: ``docs/PROTOCOL.md``.

Conservation, exact after every event (``check_invariants``):
``sum(collateral) + sum(entry_quote) + fee_pool + insurance_fund + sum(funding_pool)
== net_deposits + insurance_deposits``.

Rate-limit buckets are admission state, not ledger state: they are not journaled, are left
out of the hash, and start full after a restart (a restart can only admit more, never undo
what was admitted; every refusal they caused is a journaled ``OrderRejected``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exchange.core.commands import (
    FIRST_REGISTERED_OWNER_ID,
    AmendOrder,
    BookOnChainLiquidation,
    BookOnChainWithdrawal,
    CancelAll,
    CancelOrder,
    Command,
    CreateMarket,
    Deposit,
    DepositInsurance,
    ExpireOrders,
    Liquidate,
    PlaceOrder,
    RecordReconciliationClean,
    RecordReconciliationMismatch,
    RegisterAccount,
    SetKillSwitch,
    SetMarketStatus,
    SetRiskParams,
    Tick,
    UpdateOraclePrice,
    UpdateTriggerPrice,
    Withdraw,
)
from exchange.core.errors import InvariantViolation, RejectCode
from exchange.core.events import (
    NO_MARKET_ID,
    AccountLiquidated,
    AccountRegistered,
    CollateralDeposited,
    CollateralWithdrawn,
    Event,
    FillSettled,
    FundingRateApplied,
    FundingSampled,
    FundingSettled,
    InsuranceFundDeposited,
    InsuranceFundPaidBadDebt,
    LiquidationExecuted,
    MarketCreated,
    MarketParamsSet,
    MarketStatusChanged,
    MarkPriceUpdated,
    OnChainLiquidationBooked,
    OnChainWithdrawalBooked,
    OraclePriceUpdated,
    PositionDeleveraged,
    ReconciliationMismatchDetected,
    ReconciliationMismatchResolved,
    RiskParamsChanged,
    TradeExecuted,
)
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER, Side, TimeInForce
from exchange.core.state import ExchangeCore
from exchange.core.units import (
    BASE_PRECISION,
    I64_MAX,
    I64_MIN,
    NANOS_PER_SECOND,
    RATIO_PRECISION,
)
from liquidation.rules import (
    AdlCandidate,
    Health,
    LiquidationPlan,
    OracleReading,
    check_eligibility,
    plan_liquidation,
)
from liquidation.rules import adl_ranks as rank_adl_candidates
from perp.circuit_breaker import (
    BreakerReason,
    BreakerState,
    StatusChange,
    kill,
    on_oracle,
    release,
    set_status,
)
from perp.margin_check import MarginSummary, OpenOrders, margin_summary, order_margin_shortfall
from perp.math.fees import fill_fees
from perp.math.funding import (
    SETTLEMENT_DENOMINATOR,
    average_premium,
    funding_rate,
    index_delta,
    premium_rate,
    sweep_surplus,
)
from perp.math.margin import (
    unrealized_pnl_quote,
    worst_case_base,
)
from perp.math.mark import impact_price, mark_price, update_ema_basis
from perp.params import PerpMarketParams, check_params_change
from perp.position import Position, apply_fill, settle_funding
from perp.risk_gate import (
    AccountRiskState,
    MarketStatus,
    OrderIntent,
    TokenBucket,
    check_limits,
    check_order,
    side_reach_base,
    spend_request_tokens,
)

DAY_NS = 86_400 * NANOS_PER_SECOND
_SECOND_NS = NANOS_PER_SECOND  # the per-second token bucket's window
_MINUTE_NS = 60 * NANOS_PER_SECOND  # the per-minute one's
_new_tuple = tuple.__new__
_BID = int(Side.BID)
_ASK = int(Side.ASK)
_POST_ONLY_TIFS = frozenset({int(TimeInForce.POST_ONLY), int(TimeInForce.POST_ONLY_SLIDE)})
_IMPACT_DEPTH_LEVELS = 64  # levels read per side for an impact price (thinner: no price)
_NO_RATE_STATE = AccountRiskState()
_ACTIVE = MarketStatus.ACTIVE
_HALTED = MarketStatus.HALTED
_CANCEL_ONLY = MarketStatus.CANCEL_ONLY
_WALLET_HEX = re.compile(r"[0-9a-f]{64}")  # a registry wallet: 32 bytes of public key
_RECONCILED_FIELD = re.compile(r"[a-z_]{1,64}")  # the name of a value the reconciler compared
#: An oracle reading older than this (engine time since the last valid reading) is stale:
#: no liquidation on it.
DEFAULT_LIQUIDATION_MAX_ORACLE_AGE_NS = 30 * NANOS_PER_SECOND


@dataclass(slots=True)
class AccountState:
    """One sub-account: collateral, open positions (flat ones are dropped), statistics."""

    collateral_quote: int = 0
    positions: dict[int, Position] = field(default_factory=dict)  # market -> base != 0
    realized_pnl_quote: int = 0  # cumulative statistic (the cash is in collateral)
    fees_paid_quote: int = 0  # cumulative, rebates negative
    funding_paid_quote: int = 0  # cumulative, received negative
    day: int = 0  # ts_ns // DAY_NS of day_pnl_quote
    day_pnl_quote: int = 0  # realised PnL - fees - funding since the day began

    def book_pnl(self, ts_ns: int, delta_quote: int) -> None:
        day = ts_ns // DAY_NS
        if day != self.day:
            self.day, self.day_pnl_quote = day, 0
        self.day_pnl_quote += delta_quote

    def day_loss_quote(self, ts_ns: int) -> int:
        """Loss since the day began (> 0 is a loss), for the daily loss limit."""
        if ts_ns // DAY_NS != self.day:
            return 0
        return max(0, -self.day_pnl_quote)


@dataclass(slots=True)
class PerpMarket:
    """A market's perpetual state: parameters, status, prices, funding."""

    params: PerpMarketParams
    listed_ns: int
    breaker: BreakerState = field(default_factory=BreakerState)
    index_price: int = 0  # last valid oracle price, 0 = none yet
    index_confidence: int = 0
    index_slot: int = 0
    index_publish_time_s: int = 0
    oracle_valid: bool = False  # the last reading's verdict
    # the last reading's liquidation verdict (the strictest guard; implies oracle_valid)
    oracle_liquidation_valid: bool = False
    index_updated_ns: int = 0  # engine time of the last valid reading (liquidation staleness)
    mark_price: int = 0  # 0 = none yet
    ema_basis: int = 0
    ema_updated_ns: int = 0
    impact_bid: int = 0
    impact_ask: int = 0
    cumulative_funding: int = 0  # quote x FUNDING_RATE_PRECISION per whole base unit
    funding_pool_quote: int = 0  # paid in - paid out - swept (0 once all have settled)
    funding_surplus_numerator: int = 0  # rounding surplus not yet swept
    premium_samples: list[int] = field(default_factory=list)
    last_sample_ns: int = 0
    last_funding_ns: int = 0
    # Derived from ``params`` (not state, not hashed): the initial-margin brackets as
    # (up_to_notional_quote, initial_ppm) pairs, rebuilt when ``params`` is another object.
    tiers_params: PerpMarketParams | None = field(default=None, repr=False, compare=False)
    initial_tiers: tuple[tuple[int, int], ...] = field(default=(), repr=False, compare=False)

    @property
    def price_for_margin(self) -> int:
        return self.mark_price or self.index_price

    def initial_quote(self, notional: int) -> int:
        """``requirement_quote(notional, params.margin, INITIAL)`` for ``notional >= 0``: the
        same brackets and rounding (up), without the enum and dataclass reads per call."""
        params = self.params
        if self.tiers_params is not params:
            self.initial_tiers = tuple(
                (t.up_to_notional_quote, t.initial_ppm) for t in params.margin.tiers
            )
            self.tiers_params = params
        charged = lower = 0
        for up_to, ppm in self.initial_tiers:
            if notional <= lower:
                break
            charged += ((notional if notional < up_to else up_to) - lower) * ppm
            lower = up_to
        return -(-charged // RATIO_PRECISION)


class Clearinghouse:
    """All markets and accounts; deterministic and I/O-free. See the module docstring."""

    def __init__(
        self,
        *,
        default_params: PerpMarketParams | None = None,
        params_by_symbol: Mapping[str, PerpMarketParams] | None = None,
        liquidation_max_oracle_age_ns: int = DEFAULT_LIQUIDATION_MAX_ORACLE_AGE_NS,
    ) -> None:
        self.core = ExchangeCore()
        # Liquidation fee, share and buffer are each market's parameters (journaled with it);
        # the events carry the amounts they decided, so the fold never reads them.
        if type(liquidation_max_oracle_age_ns) is not int or liquidation_max_oracle_age_ns < 0:
            raise ValueError(
                f"liquidation_max_oracle_age_ns: expected an int >= 0, got "
                f"{liquidation_max_oracle_age_ns!r}"
            )
        self.liquidation_max_oracle_age_ns = liquidation_max_oracle_age_ns
        # What new markets are listed with (journaled with them; the fold never reads these).
        self.default_params = default_params if default_params is not None else PerpMarketParams()
        self.params_by_symbol = dict(params_by_symbol or {})
        self.accounts: dict[int, AccountState] = {}
        self.markets: dict[int, PerpMarket] = {}
        self.fee_pool_quote = 0
        self.insurance_fund_quote = 0
        self.net_deposits_quote = 0  # collateral deposited minus withdrawn
        self.insurance_deposits_quote = 0  # operator top-ups of the insurance fund
        # "signature:slice" of every on-chain liquidation slice booked (exactly once)
        self.onchain_liquidations: set[str] = set()
        # "signature:index" of every escape-hatch withdrawal booked (exactly once)
        self.onchain_withdrawals: set[str] = set()
        # market_id (NO_MARKET_ID: collateral / exchange-wide) -> mismatches recorded in its
        # open reconciliation incident; absent when the market has none open
        self.reconciliation_incidents: dict[int, int] = {}
        # account registry (open sign-up): wallet hex public key <-> (owner_id, sub)
        self.registry: dict[str, tuple[int, int]] = {}
        self.registry_by_account: dict[tuple[int, int], str] = {}
        self._rate_state: dict[tuple[int, int], AccountRiskState] = {}  # admission, not hashed
        self._pending_breaker: StatusChange | None = None  # fold: the oracle's status change
        self._handlers: dict[type, Any] = {
            PlaceOrder: self._place,
            CancelOrder: self._cancel,
            CancelAll: self._cancel,
            AmendOrder: self._amend,
            UpdateTriggerPrice: self._trigger_price,
            ExpireOrders: self._core_only,
            CreateMarket: self._create_market,
            Deposit: self._deposit,
            Withdraw: self._withdraw,
            UpdateOraclePrice: self._oracle,
            Tick: self._tick,
            SetMarketStatus: self._set_status,
            SetKillSwitch: self._kill_switch,
            DepositInsurance: self._deposit_insurance,
            SetRiskParams: self._set_risk_params,
            Liquidate: self._liquidate,
            BookOnChainLiquidation: self._book_onchain_liquidation,
            BookOnChainWithdrawal: self._book_onchain_withdrawal,
            RegisterAccount: self._register_account,
            RecordReconciliationMismatch: self._record_reconciliation_mismatch,
            RecordReconciliationClean: self._record_reconciliation_clean,
        }

    # ------------------------------------------------------------------ views
    @property
    def books(self) -> dict[int, Any]:
        return self.core.books

    @property
    def next_seq(self) -> int:
        return self.core.next_seq

    def account(self, owner_id: int, sub_account_id: int) -> AccountState:
        """The sub-account's state (an empty one if it never deposited or traded)."""
        return self.accounts.get(owner_id * SUB_ACCOUNTS_PER_OWNER + sub_account_id) or (
            AccountState()
        )

    def margin(self, owner_id: int, sub_account_id: int) -> MarginSummary:
        """Equity, initial and maintenance margin of a sub-account at the current marks."""
        account_id = owner_id * SUB_ACCOUNTS_PER_OWNER + sub_account_id
        return self._summary(account_id, self.accounts.get(account_id) or AccountState())

    # ================================================================== commands
    def execute(self, cmd: Command, ts_ns: int, out: list[Any] | None = None) -> list[Any]:
        """Run one command at ``ts_ns``; append its events to ``out`` and return it."""
        if out is None:
            out = []
        handler = self._handlers.get(type(cmd))
        if handler is None:
            raise TypeError(f"expected a command, got {type(cmd).__name__}")
        handler(cmd, ts_ns, out)
        return out

    def reject(
        self,
        out: list[Any],
        ts_ns: int,
        market_id: int,
        order_id: int,
        client_order_id: int,
        owner_id: int,
        sub_account_id: int,
        code: RejectCode,
        message: str,
    ) -> None:
        """Record one refused command as ``OrderRejected``; nothing else changes."""
        self.core.reject(
            out,
            ts_ns,
            market_id,
            order_id,
            client_order_id,
            owner_id,
            sub_account_id,
            code,
            message,
        )

    def _core_only(self, cmd: Any, ts_ns: int, out: list[Any]) -> None:
        start = len(out)
        self.core.execute(cmd, ts_ns, out)
        self._settle_trades(out, start, ts_ns)

    def _emit(self, out: list[Any], event: Any) -> None:
        """Append a clearinghouse event and fold it with the same applier replay uses."""
        self.apply(event)
        out.append(event)

    def _emit_status_change(
        self, out: list[Any], ts_ns: int, market_id: int, change: StatusChange | None
    ) -> None:
        """Emit ``MarketStatusChanged`` for a breaker transition (nothing when ``None``)."""
        if change is not None:
            self._emit(
                out,
                MarketStatusChanged(
                    self.core.next_seq,
                    ts_ns,
                    market_id,
                    int(change.old),
                    int(change.new),
                    int(change.reason),
                ),
            )

    def _append(self, out: list[Any], event: Any) -> None:
        """Append an event whose effect the caller has already made (fills, funding)."""
        if event.seq != self.core.next_seq:
            raise InvariantViolation(f"emit: expected seq {self.core.next_seq}, got {event.seq}")
        self.core.next_seq += 1
        out.append(event)

    def _status_refusal(
        self, m: PerpMarket, refused: tuple[MarketStatus, ...], what: str
    ) -> str | None:
        status = m.breaker.status
        if status in refused:
            return f"market status: expected one that takes {what}, got {status.name}"
        return None

    # ------------------------------------------------------------------ orders
    def _place(self, cmd: PlaceOrder, ts_ns: int, out: list[Any]) -> None:
        """The engine's hot path: the same decisions and events as ``_place_reference`` (the
        readable rule; ``tests/unit/perp/test_clearinghouse_fast_path.py`` compares their
        journals byte for byte), with the account's open base read once and the margin
        check done in one pass (``_place_shortfall``)."""
        # the fields by position: a NamedTuple's attribute is a descriptor call
        market_id, owner_id, sub_account_id, side, price, size = cmd[:6]
        m = self.markets.get(market_id)
        if m is None:  # the core refuses it as UNKNOWN_MARKET
            self._core_only(cmd, ts_ns, out)
            return
        status = m.breaker.status
        if m.index_price == 0 and status != _HALTED and status != _CANCEL_ONLY:
            self._place_reference(cmd, ts_ns, out)  # refused: no index price yet
            return
        account_id = owner_id * SUB_ACCOUNTS_PER_OWNER + sub_account_id
        acct = self.accounts.get(account_id)
        position = acct.positions.get(market_id) if acct is not None else None
        position_base = position.base if position is not None else 0
        is_bid = side == _BID
        book = self.core.books[market_id]
        open_lots = book.open_lots.get(account_id)
        if open_lots is None:
            open_bids = open_asks = 0
        else:
            lot = book.spec.lot_size
            open_bids, open_asks = open_lots[_BID] * lot, open_lots[_ASK] * lot
        key = (account_id, market_id)
        rate_state = self._rate_state.get(key, _NO_RATE_STATE)
        admitted = (
            self._gate_admits(
                rate_state, m, ts_ns, is_bid, size, price, position_base, open_bids, open_asks, acct
            )
            if status == _ACTIVE
            else None
        )
        if admitted is not None:
            self._rate_state[key] = admitted
        else:  # refused (or a status rule applies): the gate says which and why
            gate = check_order(
                OrderIntent(
                    is_bid, size, price, cmd.reduce_only, cmd.time_in_force in _POST_ONLY_TIFS
                ),
                now_ns=ts_ns,
                status=status,
                limits=m.params.limits,
                state=rate_state,
                position_base=position_base,
                open_bid_base=open_bids,
                open_ask_base=open_asks,
                oracle_price=m.index_price,
                day_loss_quote=acct.day_loss_quote(ts_ns) if acct is not None else 0,
                margin_shortfall_quote=0,  # the costly check runs below, if all else passed
            )
            self._rate_state[key] = gate.state
            if gate.code is not None:
                self.reject(
                    out,
                    ts_ns,
                    market_id,
                    0,
                    cmd.client_order_id,
                    cmd.owner_id,
                    cmd.sub_account_id,
                    gate.code,
                    gate.message,
                )
                return
        if size > 0 and price > 0:
            # Does the worst-case base grow (``_worst_case_grows``)? Open base is >= 0.
            # |long reach| and |short reach|; the order moves one of them outward
            long_reach, short_reach = position_base + open_bids, position_base - open_asks
            long_abs = long_reach if long_reach >= 0 else -long_reach
            short_abs = short_reach if short_reach >= 0 else -short_reach
            before = long_abs if long_abs > short_abs else short_abs
            if is_bid:
                after = long_reach + size
                after = after if after >= 0 else -after
                grows = (after if after > short_abs else short_abs) > before
            else:
                after = short_reach - size
                after = after if after >= 0 else -after
                grows = (long_abs if long_abs > after else after) > before
            if grows:
                if acct is not None and acct.positions:  # funding is settled per position
                    self._touch(out, ts_ns, account_id, acct)
                shortfall = self._place_shortfall(
                    account_id, acct, market_id, m, is_bid, size, price, open_bids, open_asks
                )
                if shortfall > 0:
                    self.reject(
                        out,
                        ts_ns,
                        market_id,
                        0,
                        cmd.client_order_id,
                        cmd.owner_id,
                        cmd.sub_account_id,
                        RejectCode.INSUFFICIENT_MARGIN,
                        f"margin: expected equity >= initial margin after the fill, short by "
                        f"{shortfall}",
                    )
                    return
        # the core's place_order directly (what _core_only reaches through its dispatch)
        start = len(out)
        self.core.place_order(*cmd, ts_ns=ts_ns, out=out)
        self._settle_trades(out, start, ts_ns)

    @staticmethod
    def _gate_admits(
        state: AccountRiskState,
        m: PerpMarket,
        now_ns: int,
        is_bid: bool,
        size: int,
        price: int,
        position_base: int,
        open_bids: int,
        open_asks: int,
        acct: AccountState | None,
    ) -> AccountRiskState | None:
        """``check_order`` of an ACTIVE market when the order passes every step but the
        margin check: the rate-limit state after it; ``None`` when some step refuses (the
        caller then runs ``check_order`` on the unchanged state for the code and message).
        Same integers as ``take_token`` / ``check_limits``, without their tuples."""
        limits = m.params.limits
        per_second_limit = limits.max_orders_per_second
        per_minute_limit = limits.max_orders_per_minute
        capacity_s = per_second_limit * _SECOND_NS
        capacity_m = per_minute_limit * _MINUTE_NS
        bucket = state.per_second
        if bucket is None:
            tokens_s = capacity_s
        else:
            tokens, updated_ns = bucket
            if now_ns > updated_ns:
                tokens += (now_ns - updated_ns) * per_second_limit
            tokens_s = tokens if tokens < capacity_s else capacity_s
        bucket = state.per_minute
        if bucket is None:
            tokens_m = capacity_m
        else:
            tokens, updated_ns = bucket
            if now_ns > updated_ns:
                tokens += (now_ns - updated_ns) * per_minute_limit
            tokens_m = tokens if tokens < capacity_m else capacity_m
        if tokens_s < _SECOND_NS or tokens_m < _MINUTE_NS or size > limits.max_order_base:
            return None
        oracle = m.index_price
        band = oracle * limits.price_band_ppm // RATIO_PRECISION
        if not oracle - band <= price <= oracle + band:
            return None
        if -(-abs(size) * price // BASE_PRECISION) > limits.max_order_notional_quote:
            return None
        if is_bid:
            reach = position_base + open_bids + size
            extent, reduces = reach, position_base < 0 and reach <= 0
        else:
            reach = position_base - open_asks - size
            extent, reduces = -reach, position_base > 0 and reach >= 0
        if extent > limits.max_position_base:
            return None
        if (
            not reduces
            and limits.daily_loss_limit_quote
            and acct is not None
            and acct.day_loss_quote(now_ns) >= limits.daily_loss_limit_quote
        ):
            return None
        # NamedTuples built as plain tuples (the fields in order): no keyword handling
        return _new_tuple(
            AccountRiskState,
            (
                _new_tuple(TokenBucket, (tokens_s - _SECOND_NS, now_ns)),
                _new_tuple(TokenBucket, (tokens_m - _MINUTE_NS, now_ns)),
            ),
        )

    def _place_shortfall(
        self,
        account_id: int,
        acct: AccountState | None,
        market_id: int,
        m: PerpMarket,
        is_bid: bool,
        base: int,
        price: int,
        open_bids: int,
        open_asks: int,
    ) -> int:
        """``_order_shortfall`` of a new order (no ``replacing``) in one pass over the books:
        ``order_margin_shortfall`` with the order market's open base already known, and
        without the maintenance requirement it does not need. Same integers, same rounding."""
        equity = 0
        positions: Mapping[int, Position] = {}
        if acct is not None:
            equity, positions = acct.collateral_quote, acct.positions
        initial = 0
        markets = self.markets
        for mid, book in self.core.books.items():
            if mid == market_id:
                bids, asks = (
                    (open_bids + base, open_asks) if is_bid else (open_bids, open_asks + base)
                )
            else:
                open_lots = book.open_lots.get(account_id)
                if open_lots is None:
                    bids = asks = 0
                else:
                    lot = book.spec.lot_size
                    bids, asks = open_lots[_BID] * lot, open_lots[_ASK] * lot
            position = positions.get(mid)
            if position is None:
                if not bids and not asks:
                    continue
                position_base = 0
            else:
                position_base = position.base
                if not position_base and not bids and not asks:
                    continue
            pm = markets[mid]
            mark = pm.mark_price or pm.index_price
            if position is not None:
                equity += (position_base * mark) // BASE_PRECISION + position.entry_quote
            long_reach, short_reach = position_base + bids, position_base - asks
            if long_reach < 0:
                long_reach = -long_reach
            if short_reach < 0:
                short_reach = -short_reach
            worst = long_reach if long_reach > short_reach else short_reach
            initial += pm.initial_quote(-(-worst * mark // BASE_PRECISION))
        mark = m.mark_price or m.index_price
        gap = (price - mark) if is_bid else (mark - price)  # > 0: filling here loses value
        adverse = -(-gap * base // BASE_PRECISION) if gap > 0 else 0
        # fee_quote of the fill's notional (rounded up), taker side: owed rounds up, a
        # rebate toward zero
        notional = -(-base * price // BASE_PRECISION)
        rate_ppm = m.params.taker_fee_ppm
        if rate_ppm >= 0:
            fee = -(-notional * rate_ppm // RATIO_PRECISION)
        else:
            fee = -(notional * -rate_ppm // RATIO_PRECISION)
        shortfall = initial - (equity - adverse - fee)
        return shortfall if shortfall > 0 else 0

    def _place_reference(self, cmd: PlaceOrder, ts_ns: int, out: list[Any]) -> None:
        """A new order, as the rule reads (gate, margin after the fill, then the core)."""
        m = self.markets.get(cmd.market_id)
        if m is None:  # the core refuses it as UNKNOWN_MARKET
            self._core_only(cmd, ts_ns, out)
            return
        account_id = cmd.owner_id * SUB_ACCOUNTS_PER_OWNER + cmd.sub_account_id

        def refuse(code: RejectCode, message: str) -> None:
            self.reject(
                out,
                ts_ns,
                cmd.market_id,
                0,
                cmd.client_order_id,
                cmd.owner_id,
                cmd.sub_account_id,
                code,
                message,
            )

        if m.index_price == 0 and m.breaker.status not in (
            MarketStatus.HALTED,
            MarketStatus.CANCEL_ONLY,
        ):
            refuse(
                RejectCode.MARKET_NOT_ACCEPTING,
                "index price: expected an oracle price, the market has none yet",
            )
            return
        acct = self.accounts.get(account_id)
        position = acct.positions.get(cmd.market_id) if acct is not None else None
        position_base = position.base if position is not None else 0
        is_bid = cmd.side == _BID
        key = (account_id, cmd.market_id)
        open_bids, open_asks = self._open_base(account_id, cmd.market_id)
        gate = check_order(
            OrderIntent(
                is_bid, cmd.size, cmd.price, cmd.reduce_only, cmd.time_in_force in _POST_ONLY_TIFS
            ),
            now_ns=ts_ns,
            status=m.breaker.status,
            limits=m.params.limits,
            state=self._rate_state.get(key, _NO_RATE_STATE),
            position_base=position_base,
            open_bid_base=open_bids,
            open_ask_base=open_asks,
            oracle_price=m.index_price,
            day_loss_quote=acct.day_loss_quote(ts_ns) if acct is not None else 0,
            margin_shortfall_quote=0,  # the costly check runs below, only if all else passed
        )
        self._rate_state[key] = gate.state
        if gate.code is not None:
            refuse(gate.code, gate.message)
            return
        if (
            cmd.size > 0
            and cmd.price > 0
            and self._worst_case_grows(account_id, cmd.market_id, position_base, is_bid, cmd.size)
        ):
            if acct is not None:
                self._touch(out, ts_ns, account_id, acct)
            shortfall = self._order_shortfall(
                account_id, acct, cmd.market_id, is_bid, cmd.size, cmd.price, None
            )
            if shortfall > 0:
                refuse(
                    RejectCode.INSUFFICIENT_MARGIN,
                    f"margin: expected equity >= initial margin after the fill, short by "
                    f"{shortfall}",
                )
                return
        self._core_only(cmd, ts_ns, out)

    def _amend(self, cmd: AmendOrder, ts_ns: int, out: list[Any]) -> None:
        m = self.markets.get(cmd.market_id)
        if m is None:
            self._core_only(cmd, ts_ns, out)
            return
        account_id = cmd.owner_id * SUB_ACCOUNTS_PER_OWNER + cmd.sub_account_id
        order = self.core.books[cmd.market_id].account_orders.get(account_id, {}).get(cmd.order_id)
        problem = self._status_refusal(
            m, (MarketStatus.HALTED, MarketStatus.CANCEL_ONLY), "order changes"
        )
        if problem is None and order is not None:
            if m.breaker.status == MarketStatus.POST_ONLY and (
                order.time_in_force not in _POST_ONLY_TIFS
            ):
                problem = "market status: expected a post-only order, market is POST_ONLY"
            elif m.breaker.status == MarketStatus.REDUCE_ONLY and (
                cmd.new_size > order.remaining_lots * self.core.books[cmd.market_id].spec.lot_size
            ):
                problem = "market status: expected a smaller size, market is REDUCE_ONLY"
        code = RejectCode.MARKET_NOT_ACCEPTING
        acct = self.accounts.get(account_id)
        position = acct.positions.get(cmd.market_id) if acct is not None else None
        if problem is None:
            # An amend spends a rate-limit token like a new order, then passes the gate's
            # limits on its new size and price (its own status rules replaced step 1).
            key = (account_id, cmd.market_id)
            gate = spend_request_tokens(
                self._rate_state.get(key, _NO_RATE_STATE), ts_ns, m.params.limits
            )
            self._rate_state[key] = gate.state
            if (
                gate.code is None
                and order is not None
                and cmd.new_size > 0
                and cmd.new_price > 0
                and m.index_price
            ):
                is_bid = order.side == _BID
                intent = OrderIntent(
                    is_bid,
                    cmd.new_size,
                    cmd.new_price,
                    order.reduce_only,
                    order.time_in_force in _POST_ONLY_TIFS,
                )
                # the side's open orders without this one's old size
                open_bids, open_asks = self._open_base(account_id, cmd.market_id)
                old_base = order.remaining_lots * self.core.books[cmd.market_id].spec.lot_size
                reach, reduces = side_reach_base(
                    intent,
                    position.base if position is not None else 0,
                    open_bids - old_base if is_bid else open_bids,
                    open_asks if is_bid else open_asks - old_base,
                )
                gate = check_limits(
                    intent,
                    limits=m.params.limits,
                    state=gate.state,
                    reach_base=reach,
                    reduces=reduces,
                    oracle_price=m.index_price,
                    day_loss_quote=acct.day_loss_quote(ts_ns) if acct is not None else 0,
                    margin_shortfall_quote=0,  # the margin check runs below
                )
            if gate.code is not None:
                code, problem = gate.code, gate.message
        if problem is not None:
            self.reject(
                out,
                ts_ns,
                cmd.market_id,
                cmd.order_id,
                0,
                cmd.owner_id,
                cmd.sub_account_id,
                code,
                problem,
            )
            return
        lot = self.core.books[cmd.market_id].spec.lot_size
        replacing = None if order is None else (order.side == _BID, order.remaining_lots * lot)
        if (
            order is not None
            and replacing is not None
            and cmd.new_size > 0
            and cmd.new_price > 0
            and m.index_price
            and self._worst_case_grows(
                account_id,
                cmd.market_id,
                position.base if position is not None else 0,
                order.side == _BID,
                cmd.new_size,
                replacing,
            )
        ):
            if acct is not None:
                self._touch(out, ts_ns, account_id, acct)
            shortfall = self._order_shortfall(
                account_id,
                acct,
                cmd.market_id,
                order.side == _BID,
                cmd.new_size,
                cmd.new_price,
                replacing,
            )
            if shortfall > 0:
                self.reject(
                    out,
                    ts_ns,
                    cmd.market_id,
                    cmd.order_id,
                    0,
                    cmd.owner_id,
                    cmd.sub_account_id,
                    RejectCode.INSUFFICIENT_MARGIN,
                    f"margin: expected equity >= initial margin after the fill, short by "
                    f"{shortfall}",
                )
                return
        self._core_only(cmd, ts_ns, out)

    def _cancel(self, cmd: CancelOrder | CancelAll, ts_ns: int, out: list[Any]) -> None:
        m = self.markets.get(cmd.market_id)
        problem = None if m is None else self._status_refusal(m, (MarketStatus.HALTED,), "cancels")
        if problem is not None:
            order_id = cmd.order_id if type(cmd) is CancelOrder else 0
            client_id = cmd.client_order_id if type(cmd) is CancelOrder else 0
            self.reject(
                out,
                ts_ns,
                cmd.market_id,
                order_id,
                client_id,
                cmd.owner_id,
                cmd.sub_account_id,
                RejectCode.MARKET_NOT_ACCEPTING,
                problem,
            )
            return
        self._core_only(cmd, ts_ns, out)

    def _trigger_price(self, cmd: UpdateTriggerPrice, ts_ns: int, out: list[Any]) -> None:
        m = self.markets.get(cmd.market_id)
        problem = (
            None
            if m is None
            else self._status_refusal(
                m,
                (
                    MarketStatus.HALTED,
                    MarketStatus.CANCEL_ONLY,
                    MarketStatus.POST_ONLY,
                    MarketStatus.REDUCE_ONLY,
                ),
                "triggered orders",
            )
        )
        if problem is not None:
            self.reject(
                out, ts_ns, cmd.market_id, 0, 0, 0, 0, RejectCode.MARKET_NOT_ACCEPTING, problem
            )
            return
        self._core_only(cmd, ts_ns, out)

    def _create_market(self, cmd: CreateMarket, ts_ns: int, out: list[Any]) -> None:
        start = len(out)
        self.core.execute(cmd, ts_ns, out)
        if any(type(e) is MarketCreated for e in out[start:]):
            self._emit(
                out,
                MarketParamsSet(
                    self.core.next_seq,
                    ts_ns,
                    cmd.market_id,
                    self.params_by_symbol.get(cmd.symbol, self.default_params).to_json(),
                ),
            )

    # ------------------------------------------------------------------ margin
    def _open_orders(self, account_id: int) -> dict[int, OpenOrders]:
        """Resting and trigger-pending orders of the account, per market, in base units
        (the books' open lots per account, kept as orders rest, fill, end)."""
        out: dict[int, OpenOrders] = {}
        for market_id, book in self.core.books.items():
            open_lots = book.open_lots.get(account_id)
            if open_lots is None:
                continue
            lot = book.spec.lot_size
            out[market_id] = OpenOrders(open_lots[_BID] * lot, open_lots[_ASK] * lot)
        return out

    def _worst_case_grows(
        self,
        account_id: int,
        market_id: int,
        position_base: int,
        is_bid: bool,
        base: int,
        replacing: tuple[bool, int] | None = None,
    ) -> bool:
        """Whether this order (an amended order: in place of its old side and base) raises
        the market's worst-case base. One that does not cannot raise the initial requirement,
        so it skips the margin check: an account under initial margin can always reduce (and
        close) its position."""
        bids, asks = self._open_base(account_id, market_id)
        before = worst_case_base(position_base, bids, asks)
        if replacing is not None:
            was_bid, old_base = replacing
            bids, asks = (bids - old_base, asks) if was_bid else (bids, asks - old_base)
        bids, asks = (bids + base, asks) if is_bid else (bids, asks + base)
        return worst_case_base(position_base, bids, asks) > before

    def _open_base(self, account_id: int, market_id: int) -> tuple[int, int]:
        """The account's open (resting and trigger-pending) bid and ask base in a market."""
        book = self.core.books[market_id]
        open_lots = book.open_lots.get(account_id)
        if open_lots is None:
            return 0, 0
        lot = book.spec.lot_size
        return open_lots[_BID] * lot, open_lots[_ASK] * lot

    def _marks_and_schedules(self) -> tuple[dict[int, int], dict[int, Any]]:
        marks = {mid: m.price_for_margin for mid, m in self.markets.items()}
        schedules = {mid: m.params.margin for mid, m in self.markets.items()}
        return marks, schedules

    def _summary(self, account_id: int, acct: AccountState) -> MarginSummary:
        marks, schedules = self._marks_and_schedules()
        return margin_summary(
            acct.collateral_quote, acct.positions, self._open_orders(account_id), marks, schedules
        )

    def _order_shortfall(
        self,
        account_id: int,
        acct: AccountState | None,
        market_id: int,
        is_bid: bool,
        base: int,
        price: int,
        replacing: tuple[bool, int] | None,
    ) -> int:
        """Initial-margin shortfall if this order filled (``replacing``: an amended order's
        side and base, taken out of the open orders first)."""
        orders = self._open_orders(account_id)
        if replacing is not None:
            old = orders.get(market_id, OpenOrders())
            was_bid, old_base = replacing
            orders[market_id] = (
                OpenOrders(old.bid_base - old_base, old.ask_base)
                if was_bid
                else OpenOrders(old.bid_base, old.ask_base - old_base)
            )
        marks, schedules = self._marks_and_schedules()
        return order_margin_shortfall(
            acct.collateral_quote if acct is not None else 0,
            acct.positions if acct is not None else {},
            orders,
            marks,
            schedules,
            market_id=market_id,
            is_bid=is_bid,
            base=base,
            price=price,
            taker_fee_ppm=self.markets[market_id].params.taker_fee_ppm,
        )

    # ------------------------------------------------------------------ money
    def _account(self, account_id: int) -> AccountState:
        acct = self.accounts.get(account_id)
        if acct is None:
            acct = self.accounts[account_id] = AccountState()
        return acct

    def _settle_funding(
        self, acct: AccountState, market_id: int, m: PerpMarket, ts_ns: int
    ) -> tuple[int, int]:
        """Settle one position's funding to the market's index: (paid, swept to insurance:
        always 0 now, the rounding stays in the position's carry)."""
        return self._settle_funding_to(acct, market_id, m, ts_ns, m.cumulative_funding), 0

    def _settle_funding_to(
        self, acct: AccountState, market_id: int, m: PerpMarket, ts_ns: int, index: int
    ) -> int:
        """Settle one position's funding to ``index``; returns what it paid (< 0: got)."""
        position = acct.positions.get(market_id)
        if position is None or position.funding_snapshot == index:
            return 0
        result = settle_funding(position, index)
        acct.positions[market_id] = result.position
        payment = result.payment_quote
        acct.collateral_quote -= payment
        acct.funding_paid_quote += payment
        acct.book_pnl(ts_ns, -payment)
        m.funding_pool_quote += payment
        return payment

    def _close_position(self, acct: AccountState, market_id: int, position: Position) -> int:
        """Drop a flat position: its funding carry joins the market's surplus, whole units of
        which go to the insurance fund. Returns what was swept."""
        acct.positions.pop(market_id, None)
        m = self.markets[market_id]
        swept, m.funding_surplus_numerator = sweep_surplus(
            m.funding_surplus_numerator + position.funding_carry_numerator
        )
        m.funding_pool_quote -= swept
        self.insurance_fund_quote += swept
        return swept

    def _touch(self, out: list[Any], ts_ns: int, account_id: int, acct: AccountState) -> None:
        """Settle the account's funding in every market it holds (lazy settlement)."""
        owner_id, sub_account_id = divmod(account_id, SUB_ACCOUNTS_PER_OWNER)
        for market_id in sorted(acct.positions):
            m = self.markets[market_id]
            if acct.positions[market_id].funding_snapshot == m.cumulative_funding:
                continue
            seq = self.core.next_seq
            payment, swept = self._settle_funding(acct, market_id, m, ts_ns)
            self._append(
                out,
                FundingSettled(seq, ts_ns, market_id, owner_id, sub_account_id, payment, swept),
            )

    def _settle_fill(
        self,
        ts_ns: int,
        market_id: int,
        maker_id: int,
        taker_id: int,
        taker_buys: bool,
        base: int,
        notional: int,
        maker_fee: int,
        taker_fee: int,
        insurance: int,
    ) -> tuple[int, int, int, int, int]:
        """Book one fill (live and fold alike): funding first, then both positions, then
        fees. Returns (maker realised, taker realised, maker funding, taker funding, swept)."""
        m = self.markets[market_id]
        maker, taker = self._account(maker_id), self._account(taker_id)
        maker_funding, _ = self._settle_funding(maker, market_id, m, ts_ns)
        taker_funding, _ = self._settle_funding(taker, market_id, m, ts_ns)
        sign = 1 if taker_buys else -1
        realized = []
        swept = 0
        for acct, base_delta, quote_delta in (
            (maker, -sign * base, sign * notional),
            (taker, sign * base, -sign * notional),
        ):
            position = acct.positions.get(market_id) or Position(
                funding_snapshot=m.cumulative_funding
            )
            result = apply_fill(position, base_delta, quote_delta)
            if result.position.base:
                acct.positions[market_id] = result.position
            else:  # a flat position has no basis left (a full close releases all of it)
                swept += self._close_position(acct, market_id, result.position)
            acct.collateral_quote += result.realized_quote
            acct.realized_pnl_quote += result.realized_quote
            acct.book_pnl(ts_ns, result.realized_quote)
            realized.append(result.realized_quote)
        for acct, fee in ((maker, maker_fee), (taker, taker_fee)):
            acct.collateral_quote -= fee
            acct.fees_paid_quote += fee
            acct.book_pnl(ts_ns, -fee)
        self.fee_pool_quote += maker_fee + taker_fee - insurance
        self.insurance_fund_quote += insurance
        return realized[0], realized[1], maker_funding, taker_funding, swept

    def _settle_trades(self, out: list[Any], start: int, ts_ns: int) -> None:
        """Follow the core's events with one ``FillSettled`` per ``TradeExecuted``."""
        end = len(out)
        for i in range(start, end):
            t = out[i]
            if type(t) is not TradeExecuted:
                continue
            m = self.markets[t.market_id]
            spec = self.core.books[t.market_id].spec
            base = t.num_base_lots * spec.lot_size
            notional, rest = divmod(t.price_ticks * spec.tick_size * base, BASE_PRECISION)
            if rest:
                raise InvariantViolation(f"fill notional: expected a whole quote unit, got {t!r}")
            fees = fill_fees(notional, m.params.fees)
            maker_id = t.maker_owner_id * SUB_ACCOUNTS_PER_OWNER + t.maker_sub_account_id
            taker_id = t.taker_owner_id * SUB_ACCOUNTS_PER_OWNER + t.taker_sub_account_id
            seq = self.core.next_seq
            results = self._settle_fill(
                ts_ns,
                t.market_id,
                maker_id,
                taker_id,
                t.taker_side == _BID,
                base,
                notional,
                fees.maker_fee_quote,
                fees.taker_fee_quote,
                fees.insurance_quote,
            )
            self._append(
                out,
                FillSettled(
                    seq,
                    ts_ns,
                    t.market_id,
                    t.seq,
                    t.maker_owner_id,
                    t.maker_sub_account_id,
                    t.taker_owner_id,
                    t.taker_sub_account_id,
                    t.taker_side,
                    base,
                    notional,
                    fees.maker_fee_quote,
                    fees.taker_fee_quote,
                    fees.insurance_quote,
                    *results,
                ),
            )

    # ------------------------------------------------------------------ accounts
    def _deposit(self, cmd: Deposit, ts_ns: int, out: list[Any]) -> None:
        held = self.account(cmd.owner_id, cmd.sub_account_id).collateral_quote
        if cmd.amount_quote <= 0 or held + cmd.amount_quote > I64_MAX:
            self.reject(
                out,
                ts_ns,
                NO_MARKET_ID,
                0,
                0,
                cmd.owner_id,
                cmd.sub_account_id,
                RejectCode.NON_POSITIVE_AMOUNT,
                f"amount_quote: expected 1..{I64_MAX - held}, got {cmd.amount_quote}",
            )
            return
        self._emit(
            out,
            CollateralDeposited(
                self.core.next_seq,
                ts_ns,
                NO_MARKET_ID,
                cmd.owner_id,
                cmd.sub_account_id,
                cmd.amount_quote,
                held + cmd.amount_quote,
            ),
        )

    def _withdraw(self, cmd: Withdraw, ts_ns: int, out: list[Any]) -> None:
        account_id = cmd.owner_id * SUB_ACCOUNTS_PER_OWNER + cmd.sub_account_id

        def refuse(code: RejectCode, message: str) -> None:
            self.reject(
                out, ts_ns, NO_MARKET_ID, 0, 0, cmd.owner_id, cmd.sub_account_id, code, message
            )

        if cmd.amount_quote <= 0:
            refuse(RejectCode.NON_POSITIVE_AMOUNT, "amount_quote: expected > 0, got 0")
            return
        acct = self.accounts.get(account_id)
        if acct is None:
            refuse(
                RejectCode.WITHDRAWAL_ABOVE_FREE_COLLATERAL,
                f"amount_quote: expected <= free collateral 0, got {cmd.amount_quote}",
            )
            return
        self._touch(out, ts_ns, account_id, acct)
        free = self._summary(account_id, acct).free_collateral_quote
        # Unrealised profit counts toward equity but is not cash: only collateral can leave.
        allowed = max(0, min(free, acct.collateral_quote))
        if cmd.amount_quote > allowed:
            refuse(
                RejectCode.WITHDRAWAL_ABOVE_FREE_COLLATERAL,
                f"amount_quote: expected <= free collateral {allowed}, got {cmd.amount_quote}",
            )
            return
        self._emit(
            out,
            CollateralWithdrawn(
                self.core.next_seq,
                ts_ns,
                NO_MARKET_ID,
                cmd.owner_id,
                cmd.sub_account_id,
                cmd.amount_quote,
                acct.collateral_quote - cmd.amount_quote,
            ),
        )

    def _book_onchain_withdrawal(
        self, cmd: BookOnChainWithdrawal, ts_ns: int, out: list[Any]
    ) -> None:
        """Book a wallet's escape-hatch ``withdraw`` as a fact: the tokens left the vault, so
        no free-collateral check (the program checked its own view); refused, changing
        nothing, when already booked or malformed."""
        key = f"{cmd.tx_signature}:{cmd.withdrawal_index}"

        def refuse(code: RejectCode, message: str) -> None:
            self.reject(
                out, ts_ns, NO_MARKET_ID, 0, 0, cmd.owner_id, cmd.sub_account_id, code, message
            )

        if key in self.onchain_withdrawals:
            refuse(
                RejectCode.ONCHAIN_WITHDRAWAL_DUPLICATE,
                f"tx_signature: expected a withdrawal not yet booked, got {key}",
            )
            return
        if not 0 < len(cmd.tx_signature) <= 128:
            refuse(
                RejectCode.MALFORMED_COMMAND,
                f"tx_signature: expected 1..128 characters, got {cmd.tx_signature!r}",
            )
            return
        held = self.account(cmd.owner_id, cmd.sub_account_id).collateral_quote
        # the engine may hold less than the chain did (journaled losses not settled yet): the
        # collateral may go below zero, never below i64 (liquidation then sees the deficit)
        if not 0 < cmd.amount_quote <= held - I64_MIN:
            refuse(
                RejectCode.NON_POSITIVE_AMOUNT,
                f"amount_quote: expected 1..{held - I64_MIN}, got {cmd.amount_quote}",
            )
            return
        self._emit(
            out,
            OnChainWithdrawalBooked(
                self.core.next_seq,
                ts_ns,
                NO_MARKET_ID,
                cmd.owner_id,
                cmd.sub_account_id,
                cmd.amount_quote,
                held - cmd.amount_quote,
                cmd.tx_signature,
                cmd.withdrawal_index,
            ),
        )

    # ------------------------------------------------------------------ reconciliation
    def _reconciliation_refusal(
        self, market_id: int, settled_through_seq: int, owner_id: int, sub_account_id: int
    ) -> tuple[RejectCode, str] | None:
        if market_id != NO_MARKET_ID and market_id not in self.markets:
            return RejectCode.UNKNOWN_MARKET, (
                f"market_id: expected a listed market or {NO_MARKET_ID}, got {market_id}"
            )
        if settled_through_seq >= self.core.next_seq:
            return RejectCode.MALFORMED_COMMAND, (
                f"settled_through_seq: expected 0..{self.core.next_seq - 1}, got "
                f"{settled_through_seq}"
            )
        if (owner_id < 0) != (sub_account_id < 0):
            return RejectCode.MALFORMED_COMMAND, (
                f"account: expected both ids >= 0 or both -1, got ({owner_id}, {sub_account_id})"
            )
        return None

    def _record_reconciliation_mismatch(
        self, cmd: RecordReconciliationMismatch, ts_ns: int, out: list[Any]
    ) -> None:
        """Journal one difference the reconciler found (a fact about the chain): the
        market's incident opens or counts it; refused, changing nothing, when malformed."""
        owner, sub = cmd.account_owner_id, cmd.account_sub_account_id
        refusal = self._reconciliation_refusal(cmd.market_id, cmd.settled_through_seq, owner, sub)
        malformed = RejectCode.MALFORMED_COMMAND
        if refusal is None and not _RECONCILED_FIELD.fullmatch(cmd.field):
            refusal = malformed, f"field: expected 1..64 of [a-z_], got {cmd.field!r}"
        if refusal is None and cmd.engine_value == cmd.onchain_value:
            same = cmd.engine_value
            refusal = malformed, f"onchain_value: expected a value other than {same}, got {same}"
        if refusal is not None:
            market = cmd.market_id if cmd.market_id in self.markets else NO_MARKET_ID
            self.reject(out, ts_ns, market, 0, 0, max(owner, 0), max(sub, 0), *refusal)
            return
        self._emit(
            out,
            ReconciliationMismatchDetected(
                self.core.next_seq,
                ts_ns,
                cmd.market_id,
                owner,
                sub,
                cmd.field,
                cmd.engine_value,
                cmd.onchain_value,
                cmd.settled_through_seq,
                cmd.chain_slot,
                self.reconciliation_incidents.get(cmd.market_id, 0) + 1,
            ),
        )

    def _record_reconciliation_clean(
        self, cmd: RecordReconciliationClean, ts_ns: int, out: list[Any]
    ) -> None:
        """A clean reconciliation of a market closes its open incident; with none open,
        nothing happened (no event)."""
        refusal = self._reconciliation_refusal(cmd.market_id, cmd.settled_through_seq, 0, 0)
        if refusal is not None:
            market = cmd.market_id if cmd.market_id in self.markets else NO_MARKET_ID
            self.reject(out, ts_ns, market, 0, 0, 0, 0, *refusal)
            return
        recorded = self.reconciliation_incidents.get(cmd.market_id)
        if recorded is None:
            return
        self._emit(
            out,
            ReconciliationMismatchResolved(
                self.core.next_seq,
                ts_ns,
                cmd.market_id,
                recorded,
                cmd.settled_through_seq,
                cmd.chain_slot,
            ),
        )

    # ------------------------------------------------------------------ account registry
    def registered_account(self, wallet_pubkey_hex: str) -> tuple[int, int] | None:
        """The ``(owner_id, sub_account_id)`` a wallet (hex public key) registered as."""
        return self.registry.get(wallet_pubkey_hex)

    def registered_wallet(self, owner_id: int, sub_account_id: int) -> str | None:
        """The wallet (hex public key) registered as this sub-account, if any."""
        return self.registry_by_account.get((owner_id, sub_account_id))

    def _register_account(self, cmd: RegisterAccount, ts_ns: int, out: list[Any]) -> None:
        wallet = cmd.wallet_pubkey_hex
        if not _WALLET_HEX.fullmatch(wallet):
            self.reject(
                out, ts_ns, NO_MARKET_ID, 0, 0, 0, 0, RejectCode.MALFORMED_COMMAND,
                f"wallet_pubkey_hex: expected 64 lower-case hex digits, got {wallet!r}",
            )  # fmt: skip
            return
        held = self.registry.get(wallet)
        if held is not None:  # one wallet, one account: a second registration changes nothing
            self.reject(
                out, ts_ns, NO_MARKET_ID, 0, 0, held[0], held[1],
                RejectCode.ACCOUNT_ALREADY_REGISTERED,
                f"wallet {wallet}: expected an unregistered wallet, got one registered as "
                f"owner {held[0]} sub-account {held[1]}",
            )  # fmt: skip
            return
        # Deterministic: the next owner id in registration (journal) order, sub-account 0.
        owner_id = FIRST_REGISTERED_OWNER_ID + len(self.registry)
        self._emit(
            out, AccountRegistered(self.core.next_seq, ts_ns, NO_MARKET_ID, owner_id, 0, wallet)
        )

    def _deposit_insurance(self, cmd: DepositInsurance, ts_ns: int, out: list[Any]) -> None:
        if cmd.amount_quote <= 0 or self.insurance_fund_quote + cmd.amount_quote > I64_MAX:
            self.reject(
                out,
                ts_ns,
                NO_MARKET_ID,
                0,
                0,
                0,
                0,
                RejectCode.NON_POSITIVE_AMOUNT,
                f"amount_quote: expected 1..{I64_MAX - self.insurance_fund_quote}, got "
                f"{cmd.amount_quote}",
            )
            return
        self._emit(
            out,
            InsuranceFundDeposited(
                self.core.next_seq,
                ts_ns,
                NO_MARKET_ID,
                cmd.amount_quote,
                self.insurance_fund_quote + cmd.amount_quote,
            ),
        )

    # ------------------------------------------------------------------ prices
    def _unknown_market(self, market_id: int, ts_ns: int, out: list[Any]) -> None:
        self.reject(
            out,
            ts_ns,
            market_id,
            0,
            0,
            0,
            0,
            RejectCode.UNKNOWN_MARKET,
            f"market_id: expected one of {sorted(self.markets)}, got {market_id}",
        )

    def _oracle(self, cmd: UpdateOraclePrice, ts_ns: int, out: list[Any]) -> None:
        m = self.markets.get(cmd.market_id)
        if m is None:
            self._unknown_market(cmd.market_id, ts_ns, out)
            return
        valid = cmd.valid and cmd.price > 0
        # liquidation's guard is the strictest: never valid for it when not for trading
        liquidation_valid = valid and cmd.liquidation_valid
        self._emit(
            out,
            OraclePriceUpdated(
                self.core.next_seq,
                ts_ns,
                cmd.market_id,
                cmd.price,
                cmd.confidence,
                cmd.slot,
                cmd.publish_time_s,
                valid,
                liquidation_valid,
            ),
        )
        self._emit_status_change(out, ts_ns, cmd.market_id, self._pending_breaker)
        if not valid:
            return
        self._refresh_mark(out, ts_ns, cmd.market_id, m)
        if m.breaker.status == MarketStatus.ACTIVE:
            # Stop / take-profit orders arm on the mark price.
            self._core_only(UpdateTriggerPrice(cmd.market_id, m.mark_price), ts_ns, out)

    def _impact_prices(self, market_id: int, notional_quote: int) -> tuple[int, int]:
        book = self.core.books[market_id]
        tick, lot = book.spec.tick_size, book.spec.lot_size
        prices = []
        for side in (Side.BID, Side.ASK):
            levels = [(p * tick, n * lot) for p, n in book.depth(side, _IMPACT_DEPTH_LEVELS)]
            price = impact_price(levels, notional_quote, is_bid=side == Side.BID)
            prices.append(price or 0)
        return prices[0], prices[1]

    def _refresh_mark(self, out: list[Any], ts_ns: int, market_id: int, m: PerpMarket) -> None:
        """Recompute the mark (impact prices, basis EMA) and record it."""
        params = m.params
        impact_bid, impact_ask = self._impact_prices(market_id, params.impact_notional_quote)
        book = self.core.books[market_id]
        best_bid, best_ask = book.best_bid(), book.best_ask()
        ema = m.ema_basis
        if best_bid and best_ask:  # no two-sided book: the EMA holds still
            mid_price = (best_bid + best_ask) * book.spec.tick_size // 2
            ema = update_ema_basis(
                ema,
                mid_price - m.index_price,
                max(0, ts_ns - m.ema_updated_ns),
                params.mark_ema_window_ns,
            )
        mark = mark_price(
            m.index_price,
            ema,
            impact_bid or None,
            impact_ask or None,
            params.mark_band_ppm,
        )
        self._emit(
            out,
            MarkPriceUpdated(
                self.core.next_seq, ts_ns, market_id, mark, ema, impact_bid, impact_ask
            ),
        )

    def _tick(self, cmd: Tick, ts_ns: int, out: list[Any]) -> None:
        self.core.execute(ExpireOrders(), ts_ns, out)
        for market_id in sorted(self.markets):
            m = self.markets[market_id]
            params = m.params
            if not (m.oracle_valid and m.index_price):
                continue  # no funding on a market without a valid index
            if ts_ns - m.last_sample_ns >= params.funding_sample_interval_ns:
                self._refresh_mark(out, ts_ns, market_id, m)
                if m.impact_bid and m.impact_ask:
                    self._emit(
                        out,
                        FundingSampled(
                            self.core.next_seq,
                            ts_ns,
                            market_id,
                            m.index_price,
                            m.impact_bid,
                            m.impact_ask,
                            premium_rate(m.impact_bid, m.impact_ask, m.index_price),
                        ),
                    )
            interval = params.funding_interval_ns
            if ts_ns // interval > m.last_funding_ns // interval:
                average = average_premium(m.premium_samples)
                rate = funding_rate(
                    average,
                    interest_rate=params.funding_interest_rate,
                    interest_band=params.funding_interest_band,
                    cap_rate=params.funding_cap_rate,
                )
                self._emit(
                    out,
                    FundingRateApplied(
                        self.core.next_seq,
                        ts_ns,
                        market_id,
                        len(m.premium_samples),
                        average,
                        rate,
                        m.index_price,
                        m.cumulative_funding + index_delta(rate, m.index_price),
                    ),
                )

    # ------------------------------------------------------------------ parameters
    def _set_risk_params(self, cmd: SetRiskParams, ts_ns: int, out: list[Any]) -> None:
        """A parameter change takes effect at its ``RiskParamsChanged``: every later order,
        margin check, fill, funding interval and oracle reading uses the new values."""
        m = self.markets.get(cmd.market_id)
        if m is None:
            self._unknown_market(cmd.market_id, ts_ns, out)
            return
        refusal: tuple[RejectCode, str] | None
        try:
            proposed = PerpMarketParams.from_mapping(json.loads(cmd.params_json), base=m.params)
        except ValueError as exc:  # bad JSON, unknown keys, wrong types, a broken record
            refusal = (RejectCode.RISK_PARAMS_OUT_OF_BOUNDS, f"params: {exc}")
        else:
            refusal = check_params_change(m.params, proposed)
        if refusal is not None:
            self.reject(out, ts_ns, cmd.market_id, 0, 0, 0, 0, refusal[0], refusal[1])
            return
        self._emit(
            out,
            RiskParamsChanged(
                self.core.next_seq, ts_ns, cmd.market_id, cmd.proposal_id, proposed.to_json()
            ),
        )

    # ------------------------------------------------------------------ market status
    def _set_status(self, cmd: SetMarketStatus, ts_ns: int, out: list[Any]) -> None:
        m = self.markets.get(cmd.market_id)
        if m is None:
            self._unknown_market(cmd.market_id, ts_ns, out)
            return
        if m.breaker.killed:
            self.reject(
                out,
                ts_ns,
                cmd.market_id,
                0,
                0,
                0,
                0,
                RejectCode.STATUS_CHANGE_REFUSED,
                f"status: expected no kill switch, got one holding {m.breaker.status.name}",
            )
            return
        _, change = set_status(m.breaker, MarketStatus(cmd.status))
        self._emit_status_change(out, ts_ns, cmd.market_id, change)

    def _kill_switch(self, cmd: SetKillSwitch, ts_ns: int, out: list[Any]) -> None:
        if cmd.all_markets:
            targets = sorted(self.markets)
        elif cmd.market_id in self.markets:
            targets = [cmd.market_id]
        else:
            self._unknown_market(cmd.market_id, ts_ns, out)
            return
        if not cmd.engaged and not any(self.markets[t].breaker.killed for t in targets):
            self.reject(
                out,
                ts_ns,
                NO_MARKET_ID if cmd.all_markets else cmd.market_id,
                0,
                0,
                0,
                0,
                RejectCode.STATUS_CHANGE_REFUSED,
                "kill switch: expected one engaged to release, got none",
            )
            return
        for market_id in targets:
            m = self.markets[market_id]
            if cmd.engaged:
                _, change = kill(m.breaker, global_switch=cmd.all_markets)
            else:
                _, change = release(m.breaker)
            self._emit_status_change(out, ts_ns, market_id, change)
            if cmd.engaged:
                book = self.core.books[market_id]
                for account_id in sorted(book.account_orders):
                    owner_id, sub_account_id = divmod(account_id, SUB_ACCOUNTS_PER_OWNER)
                    self.core.execute(CancelAll(market_id, owner_id, sub_account_id), ts_ns, out)

    # ================================================================== liquidation
    def _liquidation_oracles(self, ts_ns: int) -> dict[int, OracleReading]:
        """Each priced market's index and whether liquidation may use it: the last reading
        passed the liquidation guard (which implies trading's) and is at most
        ``liquidation_max_oracle_age_ns`` old (engine time)."""
        age = self.liquidation_max_oracle_age_ns
        return {
            market_id: OracleReading(
                m.index_price,
                m.oracle_valid and m.oracle_liquidation_valid and ts_ns - m.index_updated_ns <= age,
            )
            for market_id, m in self.markets.items()
            if m.index_price > 0
        }

    def _settled_copy(self, acct: AccountState | None) -> tuple[int, dict[int, Position]]:
        """(collateral, positions) with funding settled to every index, on copies: what
        ``_touch`` would leave, without changing anything."""
        if acct is None:
            return 0, {}
        collateral = acct.collateral_quote
        positions = {}
        for market_id, position in acct.positions.items():
            result = settle_funding(position, self.markets[market_id].cumulative_funding)
            collateral -= result.payment_quote
            positions[market_id] = result.position
        return collateral, positions

    def _oracle_equity(self, acct: AccountState) -> int:
        """Collateral plus unrealised PnL at the index prices (unsettled funding left out):
        the equity ADL ranks by."""
        return acct.collateral_quote + sum(
            unrealized_pnl_quote(p.base, p.entry_quote, self.markets[mid].index_price)
            for mid, p in acct.positions.items()
        )

    def _adl_candidates(
        self, market_ids: list[int] | tuple[int, ...], exclude_account_id: int = -1
    ) -> dict[int, list[AdlCandidate]]:
        """Every open position in ``market_ids`` (but ``exclude_account_id``'s) as an ADL
        candidate, with its account's equity at the index prices."""
        wanted = set(market_ids)
        out: dict[int, list[AdlCandidate]] = {m: [] for m in wanted}
        for account_id, acct in self.accounts.items():
            if account_id == exclude_account_id or wanted.isdisjoint(acct.positions):
                continue
            equity = self._oracle_equity(acct)
            for market_id in wanted.intersection(acct.positions):
                p = acct.positions[market_id]
                out[market_id].append(AdlCandidate(account_id, p.base, p.entry_quote, equity))
        return out

    def adl_ranks(self, market_id: int) -> dict[int, int]:
        """Every open position's current ADL rank in ``market_id`` (account id -> rank,
        1 = deleveraged first) within its side: the published order of ``docs/PROTOCOL.md``."""
        m = self.markets.get(market_id)
        if m is None or not m.index_price:
            return {}
        candidates = self._adl_candidates((market_id,))[market_id]
        return rank_adl_candidates(candidates, oracle_price=m.index_price)

    def adl_rank(self, owner_id: int, sub_account_id: int, market_id: int) -> int | None:
        """The sub-account's ADL rank in ``market_id`` (None without a position there)."""
        account_id = owner_id * SUB_ACCOUNTS_PER_OWNER + sub_account_id
        return self.adl_ranks(market_id).get(account_id)

    def liquidation_health(self, owner_id: int, sub_account_id: int, ts_ns: int) -> Health:
        """What a ``Liquidate`` of the sub-account at ``ts_ns`` would find (funding settled
        on copies, oracles valid and fresh): a read-model query for keepers."""
        account_id = owner_id * SUB_ACCOUNTS_PER_OWNER + sub_account_id
        collateral, positions = self._settled_copy(self.accounts.get(account_id))
        schedules = {mid: m.params.margin for mid, m in self.markets.items()}
        if not positions and collateral >= 0:
            return Health.HEALTHY
        return check_eligibility(
            collateral, positions, self._liquidation_oracles(ts_ns), schedules
        ).health

    def _liquidate(self, cmd: Liquidate, ts_ns: int, out: list[Any]) -> None:
        """Decide the whole liquidation on copies (refusals change nothing), then: cancel
        the target's orders, settle funding of every account it moves, book the slices,
        ADL fills and the fund's payment as events, and keep reduce-only orders reducing."""
        liquidator_id = cmd.owner_id * SUB_ACCOUNTS_PER_OWNER + cmd.sub_account_id
        target_id = cmd.target_owner_id * SUB_ACCOUNTS_PER_OWNER + cmd.target_sub_account_id

        def refuse(code: RejectCode, message: str) -> None:
            self.reject(
                out, ts_ns, cmd.market_id, 0, 0, cmd.owner_id, cmd.sub_account_id, code, message
            )

        if cmd.market_id != NO_MARKET_ID and cmd.market_id not in self.markets:
            refuse(
                RejectCode.UNKNOWN_MARKET,
                f"market_id: expected one of {sorted(self.markets)} or {NO_MARKET_ID} (all), "
                f"got {cmd.market_id}",
            )
            return
        if cmd.owner_id == cmd.target_owner_id:
            refuse(
                RejectCode.LIQUIDATION_SELF,
                f"target_owner_id: expected another owner than the liquidator {cmd.owner_id}, "
                f"got {cmd.target_owner_id}",
            )
            return
        target = self.accounts.get(target_id)
        collateral, positions = self._settled_copy(target)
        if target is None or (not positions and collateral >= 0):
            refuse(
                RejectCode.LIQUIDATION_NOT_ELIGIBLE,
                f"target {cmd.target_owner_id}/{cmd.target_sub_account_id}: expected an account "
                f"below maintenance, got one with no positions",
            )
            return
        oracles = self._liquidation_oracles(ts_ns)
        schedules = {mid: m.params.margin for mid, m in self.markets.items()}
        eligibility = check_eligibility(collateral, positions, oracles, schedules)
        if eligibility.health == Health.ORACLE_INVALID:
            refuse(
                RejectCode.LIQUIDATION_ORACLE_INVALID,
                f"oracle: expected fresh valid prices in markets "
                f"{list(eligibility.invalid_markets)}, got invalid or stale ones",
            )
            return
        if eligibility.health == Health.HEALTHY:
            refuse(
                RejectCode.LIQUIDATION_NOT_ELIGIBLE,
                f"equity: expected < maintenance {eligibility.maintenance_quote}, got "
                f"{eligibility.equity_quote}",
            )
            return
        held = sorted(positions)
        deficit = -eligibility.equity_quote
        candidates = (
            self._adl_candidates(held, target_id) if deficit > self.insurance_fund_quote else {}
        )
        plan = plan_liquidation(
            account_id=target_id,
            collateral_quote=collateral,
            positions=positions,
            open_order_markets=self._open_orders(target_id).keys(),
            oracles=oracles,
            schedules=schedules,
            lot_sizes={mid: self.core.books[mid].spec.lot_size for mid in held},
            config={mid: self.markets[mid].params.liquidation for mid in held},
            insurance_fund_quote=self.insurance_fund_quote,
            adl_candidates=candidates,
        )
        if not isinstance(plan, LiquidationPlan):  # check_eligibility said LIQUIDATABLE
            raise InvariantViolation(f"liquidation plan: expected a plan, got {plan!r}")
        transfers = plan.transfers
        insurance_payment = plan.insurance_payment_quote
        if cmd.market_id != NO_MARKET_ID and not plan.bankrupt:
            transfers = tuple(t for t in plan.transfers if t.market_id == cmd.market_id)
            if not transfers:
                refuse(
                    RejectCode.LIQUIDATION_NOT_ELIGIBLE,
                    f"market_id: expected a market the liquidation closes "
                    f"{sorted({t.market_id for t in plan.transfers})}, got {cmd.market_id}",
                )
                return
            if len(transfers) != len(plan.transfers):
                insurance_payment = 0  # positions are left: no rounding deficit to cover
        if transfers:
            shortfall = self._liquidator_shortfall(liquidator_id, transfers)
            if shortfall > 0:
                refuse(
                    RejectCode.LIQUIDATOR_INSUFFICIENT_MARGIN,
                    f"liquidator margin: expected equity >= initial margin after the "
                    f"takeover, short by {shortfall}",
                )
                return
        # Decided: from here on every step applies.
        for market_id in plan.cancel_orders_in_markets:
            self.core.execute(
                CancelAll(market_id, cmd.target_owner_id, cmd.target_sub_account_id), ts_ns, out
            )
        self._touch(out, ts_ns, target_id, self._account(target_id))
        moved: set[tuple[int, int]] = set()  # (market, account) whose position moves
        if transfers:
            self._touch(out, ts_ns, liquidator_id, self._account(liquidator_id))
            moved.update((t.market_id, liquidator_id) for t in transfers)
        for counterparty_id in sorted({f.counterparty_account_id for f in plan.adl_fills}):
            self._touch(out, ts_ns, counterparty_id, self._account(counterparty_id))
        moved.update((f.market_id, f.counterparty_account_id) for f in plan.adl_fills)
        for t in transfers:
            seq = self.core.next_seq
            results = self._book_liquidation(
                ts_ns,
                t.market_id,
                liquidator_id,
                target_id,
                t.base_delta,
                t.quote_delta,
                t.fee_quote,
                t.liquidator_fee_quote,
                t.insurance_fee_quote,
            )
            self._append(
                out,
                LiquidationExecuted(
                    seq,
                    ts_ns,
                    t.market_id,
                    cmd.owner_id,
                    cmd.sub_account_id,
                    cmd.target_owner_id,
                    cmd.target_sub_account_id,
                    t.base_delta,
                    t.quote_delta,
                    t.price,
                    t.fee_quote,
                    t.liquidator_fee_quote,
                    t.insurance_fee_quote,
                    *results,
                ),
            )
        for f in plan.adl_fills:
            counterparty_owner, counterparty_sub = divmod(
                f.counterparty_account_id, SUB_ACCOUNTS_PER_OWNER
            )
            seq = self.core.next_seq
            results = self._book_deleverage(
                ts_ns,
                f.market_id,
                target_id,
                f.counterparty_account_id,
                f.base_delta,
                f.quote_delta,
            )
            self._append(
                out,
                PositionDeleveraged(
                    seq,
                    ts_ns,
                    f.market_id,
                    cmd.target_owner_id,
                    cmd.target_sub_account_id,
                    counterparty_owner,
                    counterparty_sub,
                    f.base_delta,
                    f.quote_delta,
                    f.bankruptcy_price,
                    *results,
                ),
            )
        if plan.bankrupt or insurance_payment:
            self._emit(
                out,
                InsuranceFundPaidBadDebt(
                    self.core.next_seq,
                    ts_ns,
                    NO_MARKET_ID,
                    cmd.target_owner_id,
                    cmd.target_sub_account_id,
                    insurance_payment,
                    plan.bad_debt_quote,
                    plan.uncovered_quote,
                    self.insurance_fund_quote - insurance_payment,
                ),
            )
        after_collateral, after_positions = self._settled_copy(self.accounts.get(target_id))
        after = check_eligibility(after_collateral, after_positions, oracles, schedules)
        self._emit(
            out,
            AccountLiquidated(
                self.core.next_seq,
                ts_ns,
                cmd.market_id,
                cmd.owner_id,
                cmd.sub_account_id,
                cmd.target_owner_id,
                cmd.target_sub_account_id,
                eligibility.equity_quote,
                eligibility.maintenance_quote,
                after.equity_quote,
                after.maintenance_quote,
                len(transfers),
                len(plan.adl_fills),
                plan.bad_debt_quote,
            ),
        )
        # Positions moved outside the matcher: the liquidator's and the ADL counterparties'
        # resting reduce-only orders must still only reduce (the target has none left).
        core = self.core
        for market_id, account_id in sorted(moved):
            if account_id in core.books[market_id].reduce_only_live:
                core._reduce_only_touched.add((market_id, account_id))
        if core._reduce_only_touched:
            core._enforce_reduce_only(ts_ns, out)

    def _book_onchain_liquidation(
        self, cmd: BookOnChainLiquidation, ts_ns: int, out: list[Any]
    ) -> None:
        """Book a slice the clearing program's ``liquidate`` already applied, as a fact (no
        eligibility or margin check): cancel the target's orders in the market, settle both
        accounts' funding there to the program's index, book the slice (and the fund's
        payment the transaction ended with). Refused, changing nothing, when already booked
        or when the engine's state cannot take it (a reconciliation incident)."""
        target_id = cmd.owner_id * SUB_ACCOUNTS_PER_OWNER + cmd.sub_account_id
        liquidator_id = (
            cmd.liquidator_owner_id * SUB_ACCOUNTS_PER_OWNER + cmd.liquidator_sub_account_id
        )
        key = f"{cmd.tx_signature}:{cmd.slice_index}"

        def refuse(code: RejectCode, message: str) -> None:
            self.reject(
                out, ts_ns, cmd.market_id, 0, 0, cmd.owner_id, cmd.sub_account_id, code, message
            )

        inconsistent = RejectCode.ONCHAIN_LIQUIDATION_INCONSISTENT
        if key in self.onchain_liquidations:
            refuse(
                RejectCode.ONCHAIN_LIQUIDATION_DUPLICATE,
                f"tx_signature: expected a slice not yet booked, got {key}",
            )
            return
        m = self.markets.get(cmd.market_id)
        if m is None:
            refuse(
                RejectCode.UNKNOWN_MARKET,
                f"market_id: expected one of {sorted(self.markets)}, got {cmd.market_id}",
            )
            return
        if not 0 < len(cmd.tx_signature) <= 128:
            refuse(inconsistent, f"tx_signature: expected 1..128 characters, got {key!r}")
            return
        if target_id == liquidator_id:
            refuse(inconsistent, f"liquidator: expected another account than {target_id}")
            return
        if cmd.fee_quote != cmd.liquidator_fee_quote + cmd.insurance_fee_quote:
            refuse(
                inconsistent,
                f"fee_quote: expected {cmd.liquidator_fee_quote} + {cmd.insurance_fee_quote}, "
                f"got {cmd.fee_quote}",
            )
            return
        lot = self.core.books[cmd.market_id].spec.lot_size
        target = self.accounts.get(target_id)
        position = target.positions.get(cmd.market_id) if target is not None else None
        held = position.base if position is not None else 0
        if (
            cmd.base_delta == 0
            or cmd.base_delta % lot
            or not held
            or (held > 0) == (cmd.base_delta > 0)
            or abs(cmd.base_delta) > abs(held)
        ):
            refuse(
                inconsistent,
                f"base_delta: expected whole lots of {lot} reducing the position {held}, got "
                f"{cmd.base_delta}",
            )
            return
        if cmd.insurance_payment_quote > self.insurance_fund_quote + cmd.insurance_fee_quote:
            refuse(
                inconsistent,
                f"insurance_payment_quote: expected <= the fund "
                f"{self.insurance_fund_quote + cmd.insurance_fee_quote}, got "
                f"{cmd.insurance_payment_quote}",
            )
            return
        # Decided: from here on every step applies.
        if self.core.books[cmd.market_id].account_orders.get(target_id):
            self.core.execute(
                CancelAll(cmd.market_id, cmd.owner_id, cmd.sub_account_id), ts_ns, out
            )
        payments = []
        for account_id in (target_id, liquidator_id):
            held_position = self._account(account_id).positions.get(cmd.market_id)
            payments.append(
                settle_funding(held_position, cmd.cumulative_funding).payment_quote
                if held_position is not None
                else 0
            )
        self._emit(
            out,
            OnChainLiquidationBooked(
                self.core.next_seq,
                ts_ns,
                cmd.market_id,
                cmd.owner_id,
                cmd.sub_account_id,
                cmd.liquidator_owner_id,
                cmd.liquidator_sub_account_id,
                cmd.cumulative_funding,
                cmd.tx_signature,
                cmd.slice_index,
                *payments,
            ),
        )
        seq = self.core.next_seq
        results = self._book_liquidation(
            ts_ns,
            cmd.market_id,
            liquidator_id,
            target_id,
            cmd.base_delta,
            cmd.quote_delta,
            cmd.fee_quote,
            cmd.liquidator_fee_quote,
            cmd.insurance_fee_quote,
        )
        self._append(
            out,
            LiquidationExecuted(
                seq,
                ts_ns,
                cmd.market_id,
                cmd.liquidator_owner_id,
                cmd.liquidator_sub_account_id,
                cmd.owner_id,
                cmd.sub_account_id,
                cmd.base_delta,
                cmd.quote_delta,
                cmd.price,
                cmd.fee_quote,
                cmd.liquidator_fee_quote,
                cmd.insurance_fee_quote,
                *results,
            ),
        )
        if cmd.insurance_payment_quote:
            self._emit(
                out,
                InsuranceFundPaidBadDebt(
                    self.core.next_seq,
                    ts_ns,
                    NO_MARKET_ID,
                    cmd.owner_id,
                    cmd.sub_account_id,
                    cmd.insurance_payment_quote,
                    cmd.insurance_payment_quote,
                    0,
                    self.insurance_fund_quote - cmd.insurance_payment_quote,
                ),
            )
        core = self.core
        if liquidator_id in core.books[cmd.market_id].reduce_only_live:
            core._reduce_only_touched.add((cmd.market_id, liquidator_id))
            core._enforce_reduce_only(ts_ns, out)

    def _apply_onchain_liquidation(self, e: OnChainLiquidationBooked) -> None:
        """Mark the slice booked and settle both accounts' funding in the market to the
        program's index (the slice itself follows as ``LiquidationExecuted``)."""
        self.onchain_liquidations.add(f"{e.tx_signature}:{e.slice_index}")
        m = self.markets[e.market_id]
        paid = []
        for owner_id, sub_account_id in (
            (e.owner_id, e.sub_account_id),
            (e.liquidator_owner_id, e.liquidator_sub_account_id),
        ):
            acct = self._account(owner_id * SUB_ACCOUNTS_PER_OWNER + sub_account_id)
            paid.append(
                self._settle_funding_to(acct, e.market_id, m, e.ts_ns, e.cumulative_funding)
            )
        if paid != [e.funding_quote, e.liquidator_funding_quote]:
            raise InvariantViolation(f"on-chain liquidation replay disagrees with state: {e!r}")

    def _liquidator_shortfall(self, liquidator_id: int, transfers: Any) -> int:
        """Initial-margin shortfall of the liquidator after taking ``transfers`` over (and
        its fee share), at the current marks with its open orders: 0 when it can."""
        collateral, positions = self._settled_copy(self.accounts.get(liquidator_id))
        for t in transfers:
            position = positions.get(t.market_id) or Position(
                funding_snapshot=self.markets[t.market_id].cumulative_funding
            )
            result = apply_fill(position, -t.base_delta, -t.quote_delta)
            positions[t.market_id] = result.position
            collateral += result.realized_quote + t.liquidator_fee_quote
        positions = {mid: p for mid, p in positions.items() if p.base}
        marks, schedules = self._marks_and_schedules()
        summary = margin_summary(
            collateral, positions, self._open_orders(liquidator_id), marks, schedules
        )
        return max(0, summary.initial_quote - summary.equity_quote)

    def _book_position(
        self,
        acct: AccountState,
        market_id: int,
        base_delta: int,
        quote_delta: int,
        ts_ns: int,
        must_reduce: bool,
        index: int,
    ) -> int:
        """Book a position change off the matcher (liquidation, ADL) on one account, its
        funding already settled to ``index`` (the market's index, or the on-chain index an
        on-chain liquidation moved at): returns the realised PnL (into collateral)."""
        position = acct.positions.get(market_id)
        if position is not None and position.funding_snapshot != index:
            raise InvariantViolation(
                f"liquidation: expected funding settled in market {market_id}, got snapshot "
                f"{position.funding_snapshot} vs index {index}"
            )
        held = position.base if position is not None else 0
        if must_reduce and (
            not held or (held > 0) == (base_delta > 0) or abs(base_delta) > abs(held)
        ):
            raise InvariantViolation(
                f"liquidation: expected a position reduced by {abs(base_delta)} in market "
                f"{market_id}, got base {held}"
            )
        result = apply_fill(position or Position(funding_snapshot=index), base_delta, quote_delta)
        if result.position.base:
            acct.positions[market_id] = result.position
        else:
            self._close_position(acct, market_id, result.position)
        acct.collateral_quote += result.realized_quote
        acct.realized_pnl_quote += result.realized_quote
        acct.book_pnl(ts_ns, result.realized_quote)
        return result.realized_quote

    def _slice_index(self, target: AccountState, market_id: int) -> int:
        """The funding index a liquidation or ADL slice moves at: the one the target's position
        was just settled to (the market's index; an on-chain liquidation's: the program's)."""
        position = target.positions.get(market_id)
        if position is None:
            raise InvariantViolation(f"liquidation: expected a position in market {market_id}")
        return position.funding_snapshot

    def _move_core_position(
        self, market_id: int, from_id: int, to_id: int, base_delta: int
    ) -> None:
        """Mirror a liquidation / ADL move on the matching core's fill-derived positions
        (``from_id`` changes by ``base_delta``, ``to_id`` by its opposite)."""
        lots, rest = divmod(base_delta, self.core.books[market_id].spec.lot_size)
        if rest or not lots:
            raise InvariantViolation(
                f"liquidation: expected whole lots in market {market_id}, got base {base_delta}"
            )
        self.core._add_position(from_id, market_id, lots)
        self.core._add_position(to_id, market_id, -lots)

    def _book_liquidation(
        self,
        ts_ns: int,
        market_id: int,
        liquidator_id: int,
        target_id: int,
        base_delta: int,
        quote_delta: int,
        fee: int,
        liquidator_fee: int,
        insurance_fee: int,
    ) -> tuple[int, int]:
        """Book one slice (live and fold alike): both positions, the fee and its split.
        Returns (target realised, liquidator realised)."""
        if min(fee, liquidator_fee, insurance_fee) < 0 or fee != liquidator_fee + insurance_fee:
            raise InvariantViolation(
                f"liquidation fee: expected {liquidator_fee} + {insurance_fee} >= 0, got {fee}"
            )
        if liquidator_id == target_id:
            raise InvariantViolation(f"liquidation: liquidator is the target {target_id}")
        target, liquidator = self._account(target_id), self._account(liquidator_id)
        index = self._slice_index(target, market_id)
        realized_target = self._book_position(
            target, market_id, base_delta, quote_delta, ts_ns, True, index
        )
        realized_liquidator = self._book_position(
            liquidator, market_id, -base_delta, -quote_delta, ts_ns, False, index
        )
        target.collateral_quote -= fee
        target.fees_paid_quote += fee
        target.book_pnl(ts_ns, -fee)
        liquidator.collateral_quote += liquidator_fee
        liquidator.fees_paid_quote -= liquidator_fee  # received, like a rebate
        liquidator.book_pnl(ts_ns, liquidator_fee)
        self.insurance_fund_quote += insurance_fee
        self._move_core_position(market_id, target_id, liquidator_id, base_delta)
        return realized_target, realized_liquidator

    def _book_deleverage(
        self,
        ts_ns: int,
        market_id: int,
        target_id: int,
        counterparty_id: int,
        base_delta: int,
        quote_delta: int,
    ) -> tuple[int, int]:
        """Book one ADL fill (live and fold alike): both positions reduce. Returns
        (bankrupt account realised, counterparty realised)."""
        if counterparty_id == target_id:
            raise InvariantViolation(f"ADL: counterparty is the bankrupt account {target_id}")
        target = self._account(target_id)
        index = self._slice_index(target, market_id)
        realized_target = self._book_position(
            target, market_id, base_delta, quote_delta, ts_ns, True, index
        )
        realized_counterparty = self._book_position(
            self._account(counterparty_id), market_id, -base_delta, -quote_delta, ts_ns, True, index
        )
        self._move_core_position(market_id, target_id, counterparty_id, base_delta)
        return realized_target, realized_counterparty

    def _apply_liquidation(self, e: LiquidationExecuted) -> None:
        results = self._book_liquidation(
            e.ts_ns,
            e.market_id,
            e.liquidator_owner_id * SUB_ACCOUNTS_PER_OWNER + e.liquidator_sub_account_id,
            e.owner_id * SUB_ACCOUNTS_PER_OWNER + e.sub_account_id,
            e.base_delta,
            e.quote_delta,
            e.fee_quote,
            e.liquidator_fee_quote,
            e.insurance_fee_quote,
        )
        if results != (e.realized_quote, e.liquidator_realized_quote):
            raise InvariantViolation(f"liquidation replay disagrees with state: {e!r}")

    def _apply_deleveraged(self, e: PositionDeleveraged) -> None:
        results = self._book_deleverage(
            e.ts_ns,
            e.market_id,
            e.owner_id * SUB_ACCOUNTS_PER_OWNER + e.sub_account_id,
            e.counterparty_owner_id * SUB_ACCOUNTS_PER_OWNER + e.counterparty_sub_account_id,
            e.base_delta,
            e.quote_delta,
        )
        if results != (e.realized_quote, e.counterparty_realized_quote):
            raise InvariantViolation(f"ADL replay disagrees with state: {e!r}")

    def _apply_bad_debt(self, e: InsuranceFundPaidBadDebt) -> None:
        if e.amount_quote < 0 or e.amount_quote > self.insurance_fund_quote:
            raise InvariantViolation(
                f"insurance fund: expected a payment of 0..{self.insurance_fund_quote}, got {e!r}"
            )
        self.insurance_fund_quote -= e.amount_quote
        self._account(
            e.owner_id * SUB_ACCOUNTS_PER_OWNER + e.sub_account_id
        ).collateral_quote += e.amount_quote
        if self.insurance_fund_quote != e.balance_quote:
            raise InvariantViolation(f"insurance replay disagrees with state: {e!r}")

    def _apply_account_liquidated(self, e: AccountLiquidated) -> None:
        """A record of the liquidation just booked: nothing left to change."""

    # ================================================================== fold
    def apply(self, e: Event) -> None:
        """Fold one journaled event into the state (replay / recovery)."""
        handler = self._appliers.get(type(e))
        if handler is None:
            self.core.apply(e)
            return
        if e.seq != self.core.next_seq:
            raise InvariantViolation(f"apply: expected seq {self.core.next_seq}, got {e.seq}")
        self.core.next_seq = e.seq + 1
        handler(self, e)

    def _apply_params(self, e: MarketParamsSet) -> None:
        if e.market_id not in self.core.books:
            raise InvariantViolation(f"params for an unknown market: {e!r}")
        params = PerpMarketParams.from_json(e.params_json)
        existing = self.markets.get(e.market_id)
        if existing is None:
            self.markets[e.market_id] = PerpMarket(
                params=params,
                listed_ns=e.ts_ns,
                ema_updated_ns=e.ts_ns,
                last_sample_ns=e.ts_ns,
                last_funding_ns=e.ts_ns,
            )
        else:
            existing.params = params

    def _apply_deposited(self, e: CollateralDeposited) -> None:
        acct = self._account(e.owner_id * SUB_ACCOUNTS_PER_OWNER + e.sub_account_id)
        acct.collateral_quote += e.amount_quote
        self.net_deposits_quote += e.amount_quote
        if acct.collateral_quote != e.collateral_quote:
            raise InvariantViolation(f"deposit replay disagrees with state: {e!r}")

    def _apply_withdrawn(self, e: CollateralWithdrawn) -> None:
        acct = self._account(e.owner_id * SUB_ACCOUNTS_PER_OWNER + e.sub_account_id)
        acct.collateral_quote -= e.amount_quote
        self.net_deposits_quote -= e.amount_quote
        if acct.collateral_quote != e.collateral_quote or acct.collateral_quote < 0:
            raise InvariantViolation(f"withdrawal replay disagrees with state: {e!r}")

    def _apply_onchain_withdrawal(self, e: OnChainWithdrawalBooked) -> None:
        key = f"{e.tx_signature}:{e.withdrawal_index}"
        acct = self._account(e.owner_id * SUB_ACCOUNTS_PER_OWNER + e.sub_account_id)
        acct.collateral_quote -= e.amount_quote
        self.net_deposits_quote -= e.amount_quote
        if key in self.onchain_withdrawals or acct.collateral_quote != e.collateral_quote:
            raise InvariantViolation(f"on-chain withdrawal replay disagrees with state: {e!r}")
        self.onchain_withdrawals.add(key)

    def _onchain_withdrawals_canonical(self) -> dict[str, Any]:
        # Absent while empty, so the hash of a state without them is unchanged.
        if not self.onchain_withdrawals:
            return {}
        return {"onchain_withdrawals": sorted(self.onchain_withdrawals)}

    def _apply_registered(self, e: AccountRegistered) -> None:
        account = (e.owner_id, e.sub_account_id)
        expected = (FIRST_REGISTERED_OWNER_ID + len(self.registry), 0)
        wallet = e.wallet_pubkey_hex
        if account != expected or wallet in self.registry or not _WALLET_HEX.fullmatch(wallet):
            raise InvariantViolation(
                f"registration: expected account {expected} for a new wallet, got {e!r}"
            )
        self.registry[wallet] = account
        self.registry_by_account[account] = wallet

    def _apply_mismatch_detected(self, e: ReconciliationMismatchDetected) -> None:
        open_mismatches = self.reconciliation_incidents.get(e.market_id, 0) + 1
        if e.open_mismatches != open_mismatches:
            raise InvariantViolation(f"reconciliation replay disagrees with state: {e!r}")
        self.reconciliation_incidents[e.market_id] = open_mismatches

    def _apply_mismatch_resolved(self, e: ReconciliationMismatchResolved) -> None:
        if self.reconciliation_incidents.pop(e.market_id, None) != e.mismatches:
            raise InvariantViolation(f"reconciliation replay disagrees with state: {e!r}")

    def _reconciliation_canonical(self) -> dict[str, Any]:
        # Absent while no incident is open, so the hash of a state without them is unchanged.
        if not self.reconciliation_incidents:
            return {}
        return {
            "reconciliation_incidents": sorted(map(list, self.reconciliation_incidents.items()))
        }

    def _registry_canonical(self) -> dict[str, Any]:
        # Absent while empty, so the hash of a state without registrations is unchanged.
        if not self.registry:
            return {}
        rows = sorted([*account, wallet] for wallet, account in self.registry.items())
        return {"registry": rows}

    def _apply_insurance_deposit(self, e: InsuranceFundDeposited) -> None:
        self.insurance_fund_quote += e.amount_quote
        self.insurance_deposits_quote += e.amount_quote
        if self.insurance_fund_quote != e.balance_quote:
            raise InvariantViolation(f"insurance replay disagrees with state: {e!r}")

    def _apply_oracle(self, e: OraclePriceUpdated) -> None:
        m = self.markets[e.market_id]
        if e.liquidation_valid and not e.valid:
            raise InvariantViolation(
                f"oracle reading: expected liquidation_valid only with valid, got {e!r}"
            )
        m.oracle_valid = e.valid
        m.oracle_liquidation_valid = e.liquidation_valid
        if e.valid:
            m.index_price = e.price
            m.index_confidence = e.confidence
            m.index_slot = e.slot
            m.index_publish_time_s = e.publish_time_s
            m.index_updated_ns = e.ts_ns
        m.breaker, self._pending_breaker = on_oracle(
            m.breaker, m.params.breaker, e.ts_ns, e.price if e.valid else None
        )

    def _apply_mark(self, e: MarkPriceUpdated) -> None:
        m = self.markets[e.market_id]
        m.mark_price = e.mark_price
        m.ema_basis = e.ema_basis
        m.ema_updated_ns = e.ts_ns
        m.impact_bid = e.impact_bid
        m.impact_ask = e.impact_ask

    def _apply_fill(self, e: FillSettled) -> None:
        fees = fill_fees(e.notional_quote, self.markets[e.market_id].params.fees)
        if (fees.maker_fee_quote, fees.taker_fee_quote, fees.insurance_quote) != tuple(e[11:14]):
            raise InvariantViolation(f"fill fees disagree with the market's schedule: {e!r}")
        results = self._settle_fill(
            e.ts_ns,
            e.market_id,
            e.maker_owner_id * SUB_ACCOUNTS_PER_OWNER + e.maker_sub_account_id,
            e.taker_owner_id * SUB_ACCOUNTS_PER_OWNER + e.taker_sub_account_id,
            e.taker_side == _BID,
            e.base,
            e.notional_quote,
            e.maker_fee_quote,
            e.taker_fee_quote,
            e.insurance_quote,
        )
        if results != tuple(e[14:19]):
            raise InvariantViolation(f"fill replay disagrees with state: {e!r} vs {results}")

    def _apply_funding_settled(self, e: FundingSettled) -> None:
        acct = self._account(e.owner_id * SUB_ACCOUNTS_PER_OWNER + e.sub_account_id)
        got = self._settle_funding(acct, e.market_id, self.markets[e.market_id], e.ts_ns)
        if got != (e.payment_quote, e.swept_quote):
            raise InvariantViolation(f"funding replay disagrees with state: {e!r} vs {got}")

    def _apply_sampled(self, e: FundingSampled) -> None:
        m = self.markets[e.market_id]
        m.premium_samples.append(e.premium_rate)
        m.last_sample_ns = e.ts_ns

    def _apply_rate(self, e: FundingRateApplied) -> None:
        m = self.markets[e.market_id]
        m.cumulative_funding += index_delta(e.funding_rate, e.index_price)
        if m.cumulative_funding != e.cumulative_funding:
            raise InvariantViolation(f"funding index replay disagrees with state: {e!r}")
        m.premium_samples = []
        m.last_funding_ns = e.ts_ns

    def _apply_risk_params(self, e: RiskParamsChanged) -> None:
        m = self.markets.get(e.market_id)
        if m is None:
            raise InvariantViolation(f"params change for an unknown market: {e!r}")
        m.params = PerpMarketParams.from_json(e.params_json)

    def _apply_status(self, e: MarketStatusChanged) -> None:
        m = self.markets[e.market_id]
        reason = BreakerReason(e.reason)
        if reason in (BreakerReason.KILL_SWITCH, BreakerReason.GLOBAL_KILL_SWITCH):
            state, change = kill(
                m.breaker, global_switch=reason == BreakerReason.GLOBAL_KILL_SWITCH
            )
        elif reason == BreakerReason.OPERATOR:
            if m.breaker.killed:
                state, change = release(m.breaker)
            else:
                state, change = set_status(m.breaker, MarketStatus(e.new_status))
        else:  # the breaker already moved while folding the oracle reading before this
            state, change = m.breaker, self._pending_breaker
            self._pending_breaker = None
        expected = StatusChange(
            MarketStatus(e.old_status), MarketStatus(e.new_status), BreakerReason(e.reason)
        )
        if change != expected:
            raise InvariantViolation(f"status replay disagrees with state: {e!r} vs {change}")
        m.breaker = state

    _appliers: dict[type, Any] = {}  # filled in below the class body

    # ================================================================== state hash
    def canonical(self) -> dict[str, Any]:
        """Everything that defines the state (matching core and perp), JSON-ready."""
        if self._pending_breaker is not None:
            raise InvariantViolation("canonical: a breaker status change is still pending")
        accounts = [
            [
                account_id,
                a.collateral_quote,
                a.realized_pnl_quote,
                a.fees_paid_quote,
                a.funding_paid_quote,
                a.day,
                a.day_pnl_quote,
                [[mid, *a.positions[mid]] for mid in sorted(a.positions)],
            ]
            for account_id, a in sorted(self.accounts.items())
        ]
        markets = []
        for market_id in sorted(self.markets):
            m = self.markets[market_id]
            b = m.breaker
            markets.append(
                {
                    "market_id": market_id,
                    "params": m.params.to_dict(),
                    "listed_ns": m.listed_ns,
                    "breaker": [
                        int(b.status),
                        int(b.reason),
                        b.killed,
                        b.last_breach_ns,
                        [list(s) for s in b.samples],
                    ],
                    "index": [
                        m.index_price,
                        m.index_confidence,
                        m.index_slot,
                        m.index_publish_time_s,
                        m.oracle_valid,
                        m.index_updated_ns,
                        m.oracle_liquidation_valid,
                    ],
                    "mark": [
                        m.mark_price,
                        m.ema_basis,
                        m.ema_updated_ns,
                        m.impact_bid,
                        m.impact_ask,
                    ],
                    "funding": [
                        m.cumulative_funding,
                        m.funding_pool_quote,
                        m.funding_surplus_numerator,
                        list(m.premium_samples),
                        m.last_sample_ns,
                        m.last_funding_ns,
                    ],
                }
            )
        return {
            "core": self.core.canonical(),
            "accounts": accounts,
            "perp_markets": markets,
            "fee_pool_quote": self.fee_pool_quote,
            "insurance_fund_quote": self.insurance_fund_quote,
            "net_deposits_quote": self.net_deposits_quote,
            "insurance_deposits_quote": self.insurance_deposits_quote,
            "onchain_liquidations": sorted(self.onchain_liquidations),
            **self._registry_canonical(),
            **self._onchain_withdrawals_canonical(),
            **self._reconciliation_canonical(),
        }

    def snapshot(self) -> bytes:
        """The canonical state as bytes: enough to rebuild an identical clearinghouse."""
        return json.dumps(self.canonical(), separators=(",", ":"), sort_keys=True).encode()

    def state_hash(self) -> str:
        """SHA-256 (hex) of the canonical state."""
        return hashlib.sha256(self.snapshot()).hexdigest()

    @classmethod
    def from_snapshot(
        cls,
        blob: bytes,
        *,
        default_params: PerpMarketParams | None = None,
        params_by_symbol: Mapping[str, PerpMarketParams] | None = None,
        liquidation_max_oracle_age_ns: int = DEFAULT_LIQUIDATION_MAX_ORACLE_AGE_NS,
    ) -> Clearinghouse:
        """Rebuild from :meth:`snapshot`; its ``state_hash`` equals the original's."""
        data = json.loads(blob)
        ch = cls(
            default_params=default_params,
            params_by_symbol=params_by_symbol,
            liquidation_max_oracle_age_ns=liquidation_max_oracle_age_ns,
        )
        ch.core = ExchangeCore.from_snapshot(
            json.dumps(data["core"], separators=(",", ":"), sort_keys=True).encode()
        )
        for account_id, coll, realized, fees, funding, day, day_pnl, positions in data["accounts"]:
            ch.accounts[account_id] = AccountState(
                collateral_quote=coll,
                positions={p[0]: Position(*p[1:]) for p in positions},
                realized_pnl_quote=realized,
                fees_paid_quote=fees,
                funding_paid_quote=funding,
                day=day,
                day_pnl_quote=day_pnl,
            )
        for md in data["perp_markets"]:
            status, reason, killed, last_breach, samples = md["breaker"]
            # snapshots from before a field existed: no valid-reading time, and the
            # liquidation verdict was the trading one
            index, confidence, slot, publish, valid, *later = md["index"]
            updated_ns = later[0] if later else 0
            liquidation_valid = later[1] if len(later) > 1 else valid
            mark, ema, ema_ns, impact_bid, impact_ask = md["mark"]
            cumulative, pool, surplus, premiums, last_sample, last_funding = md["funding"]
            ch.markets[md["market_id"]] = PerpMarket(
                params=PerpMarketParams.from_mapping(md["params"]),
                listed_ns=md["listed_ns"],
                breaker=BreakerState(
                    MarketStatus(status),
                    BreakerReason(reason),
                    killed,
                    last_breach,
                    tuple(tuple(s) for s in samples),
                ),
                index_price=index,
                index_confidence=confidence,
                index_slot=slot,
                index_publish_time_s=publish,
                oracle_valid=valid,
                index_updated_ns=updated_ns,
                oracle_liquidation_valid=liquidation_valid,
                mark_price=mark,
                ema_basis=ema,
                ema_updated_ns=ema_ns,
                impact_bid=impact_bid,
                impact_ask=impact_ask,
                cumulative_funding=cumulative,
                funding_pool_quote=pool,
                funding_surplus_numerator=surplus,
                premium_samples=list(premiums),
                last_sample_ns=last_sample,
                last_funding_ns=last_funding,
            )
        ch.fee_pool_quote = data["fee_pool_quote"]
        ch.insurance_fund_quote = data["insurance_fund_quote"]
        ch.net_deposits_quote = data["net_deposits_quote"]
        ch.insurance_deposits_quote = data["insurance_deposits_quote"]
        ch.onchain_liquidations = set(data.get("onchain_liquidations", ()))  # older snapshots
        ch.onchain_withdrawals = set(data.get("onchain_withdrawals", ()))
        ch.reconciliation_incidents = dict(data.get("reconciliation_incidents", ()))
        for owner_id, sub_account_id, wallet in data.get("registry", ()):
            ch.registry[wallet] = (owner_id, sub_account_id)
            ch.registry_by_account[(owner_id, sub_account_id)] = wallet
        return ch

    def conservation_gap_quote(self) -> int:
        """Zero when every quote unit is accounted for (see the module docstring)."""
        held = (
            sum(a.collateral_quote for a in self.accounts.values())
            + sum(p.entry_quote for a in self.accounts.values() for p in a.positions.values())
            + self.fee_pool_quote
            + self.insurance_fund_quote
            + sum(m.funding_pool_quote for m in self.markets.values())
        )
        return held - self.net_deposits_quote - self.insurance_deposits_quote

    def check_invariants(self) -> None:
        """Fail fast on a broken book, a lost quote unit, or positions that disagree with
        the matching core's fills."""
        self.core.check_invariants()
        gap = self.conservation_gap_quote()
        if gap:
            raise InvariantViolation(f"conservation: expected a gap of 0, got {gap}")
        open_base: dict[int, int] = {}
        ours: dict[tuple[int, int], int] = {}
        for account_id, a in self.accounts.items():
            for market_id, p in a.positions.items():
                open_base[market_id] = open_base.get(market_id, 0) + p.base
                ours[(account_id, market_id)] = p.base
        if any(open_base.values()):
            raise InvariantViolation(f"positions: expected longs == shorts, got {open_base}")
        # Funding is zero-sum: a pool holds exactly the open carries and the unswept surplus,
        # less what the open positions still owe to the index (docs/PROTOCOL.md, Funding).
        for market_id, m in self.markets.items():
            expected = m.funding_surplus_numerator
            for a in self.accounts.values():
                held = a.positions.get(market_id)
                if held is not None:
                    expected += held.funding_carry_numerator
                    expected -= held.base * (m.cumulative_funding - held.funding_snapshot)
            if m.funding_pool_quote * SETTLEMENT_DENOMINATOR != expected:
                raise InvariantViolation(
                    f"funding pool of market {market_id}: expected {expected} / D, got "
                    f"{m.funding_pool_quote}"
                )
        theirs = {
            key: lots * self.core.books[key[1]].spec.lot_size
            for key, lots in self.core.positions.items()
            if lots
        }
        if ours != theirs:
            raise InvariantViolation(
                f"positions: expected the core's fills {theirs}, got the ledger's {ours}"
            )


Clearinghouse._appliers = {
    MarketParamsSet: Clearinghouse._apply_params,
    CollateralDeposited: Clearinghouse._apply_deposited,
    CollateralWithdrawn: Clearinghouse._apply_withdrawn,
    InsuranceFundDeposited: Clearinghouse._apply_insurance_deposit,
    OraclePriceUpdated: Clearinghouse._apply_oracle,
    MarkPriceUpdated: Clearinghouse._apply_mark,
    FillSettled: Clearinghouse._apply_fill,
    FundingSettled: Clearinghouse._apply_funding_settled,
    FundingSampled: Clearinghouse._apply_sampled,
    FundingRateApplied: Clearinghouse._apply_rate,
    MarketStatusChanged: Clearinghouse._apply_status,
    RiskParamsChanged: Clearinghouse._apply_risk_params,
    LiquidationExecuted: Clearinghouse._apply_liquidation,
    OnChainLiquidationBooked: Clearinghouse._apply_onchain_liquidation,
    OnChainWithdrawalBooked: Clearinghouse._apply_onchain_withdrawal,
    AccountRegistered: Clearinghouse._apply_registered,
    ReconciliationMismatchDetected: Clearinghouse._apply_mismatch_detected,
    ReconciliationMismatchResolved: Clearinghouse._apply_mismatch_resolved,
    PositionDeleveraged: Clearinghouse._apply_deleveraged,
    InsuranceFundPaidBadDebt: Clearinghouse._apply_bad_debt,
    AccountLiquidated: Clearinghouse._apply_account_liquidated,
}
