"""Liquidation rules: eligibility, partial liquidation sizing, fee split, bankruptcy and ADL.

Pure functions over plain data. Units: base at ``BASE_PRECISION`` (signed, long > 0), prices
at ``PRICE_PRECISION``, money at ``QUOTE_PRECISION``, ratios in ppm (``RATIO_PRECISION``).
Positions must be settled to the market's current funding index before they are passed in
(the engine settles on every account touch). See ``docs/PROTOCOL.md`` section "Liquidation".

The outcome is a :class:`LiquidationPlan`: which markets' orders to cancel, which position
slices move to the liquidator at the oracle price and what fee each pays, what the insurance
fund pays, and which auto-deleveraging (ADL) fills close a bankrupt account's positions
against ranked opposite positions. :func:`apply_plan` books a plan on a :class:`Ledger`
(all checks first, then the changes: nothing half-applied).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from fractions import Fraction
from typing import NamedTuple

from exchange.core.units import BASE_PRECISION, RATIO_PRECISION
from liquidation.errors import LiquidationConfigError, LiquidationInputError, PlanMismatch
from perp.ledger import Ledger
from perp.math.fees import fee_quote
from perp.math.margin import (
    MarginKind,
    MarginSchedule,
    notional_quote,
    requirement_quote,
    unrealized_pnl_quote,
)
from perp.position import Position, apply_fill

# ------------------------------------------------------------------ inputs


class OracleReading(NamedTuple):
    """An oracle price and whether it passed the liquidation guards (the strictest action)."""

    price: int  # PRICE_PRECISION, > 0
    valid_for_liquidation: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LiquidationConfig:
    """One market's liquidation parameters (``perp.params.PerpMarketParams`` carries them;
    a single config may also stand for every market).

    ``liquidation_fee_ppm`` of the closed notional is charged to the liquidated account;
    ``liquidator_share_ppm`` of that fee goes to the liquidator, the rest to the insurance fund.
    ``buffer_ppm`` of the market's notional is added to maintenance as the sizing target.
    """

    liquidation_fee_ppm: int
    liquidator_share_ppm: int
    buffer_ppm: int

    def __post_init__(self) -> None:
        for name, lo, hi in (
            ("liquidation_fee_ppm", 0, RATIO_PRECISION // 10),
            ("liquidator_share_ppm", 0, RATIO_PRECISION),
            ("buffer_ppm", 0, RATIO_PRECISION // 10),
        ):
            value = getattr(self, name)
            if type(value) is not int or not lo <= value <= hi:
                raise LiquidationConfigError(
                    f"{name}: expected an int in {lo}..{hi}, got {value!r}"
                )

    def check_schedule(self, market_id: int, schedule: MarginSchedule) -> None:
        """Closing must help: the first tier's maintenance ratio plus the buffer must exceed
        the fee, or a liquidation could leave an account further from its target."""
        mr = schedule.tiers[0].maintenance_ppm
        if mr + self.buffer_ppm <= self.liquidation_fee_ppm:
            raise LiquidationConfigError(
                f"market {market_id}: expected maintenance_ppm + buffer_ppm > liquidation_fee_ppm, "
                f"got {mr} + {self.buffer_ppm} <= {self.liquidation_fee_ppm}"
            )


#: One config for every market, or each market's own.
LiquidationConfigs = LiquidationConfig | Mapping[int, LiquidationConfig]


def market_configs(
    config: LiquidationConfigs, market_ids: Iterable[int]
) -> dict[int, LiquidationConfig]:
    """Each of ``market_ids``' config: ``config`` itself when it is one for all markets."""
    ids = list(market_ids)
    if isinstance(config, LiquidationConfig):
        return dict.fromkeys(ids, config)
    missing = [m for m in ids if not isinstance(config.get(m), LiquidationConfig)]
    if missing:
        raise LiquidationInputError(
            f"liquidation config: expected a LiquidationConfig for markets {missing}, got none"
        )
    return {m: config[m] for m in ids}


class AdlCandidate(NamedTuple):
    """An opposite position that auto-deleveraging may close (settled to the funding index)."""

    account_id: int
    base: int  # BASE_PRECISION, signed
    entry_quote: int  # QUOTE_PRECISION, signed cost basis
    account_equity_quote: int  # the owner's whole-account equity at the oracle


# ------------------------------------------------------------------ results


class Health(IntEnum):
    HEALTHY = 0  # equity >= maintenance
    LIQUIDATABLE = 1  # equity < maintenance at valid oracles
    ORACLE_INVALID = 2  # a held market has no oracle valid for liquidation: do nothing


class Eligibility(NamedTuple):
    health: Health
    equity_quote: int  # at the oracles (0 when ORACLE_INVALID)
    maintenance_quote: int
    invalid_markets: tuple[int, ...]  # held markets whose oracle is not valid


class PositionTransfer(NamedTuple):
    """A slice of the liquidated account's position taken over by the liquidator at the oracle."""

    market_id: int
    base_delta: int  # change of the liquidated account's base (the liquidator gets -base_delta)
    quote_delta: int  # quote flow to the liquidated account (the liquidator gets -quote_delta)
    price: int  # the oracle price, PRICE_PRECISION
    fee_quote: int  # liquidation fee paid by the liquidated account
    liquidator_fee_quote: int  # its share paid to the liquidator (rounded down)
    insurance_fee_quote: int  # the rest, to the insurance fund


class AdlFill(NamedTuple):
    """A bankrupt position slice closed against an opposite position at the bankruptcy price."""

    market_id: int
    counterparty_account_id: int
    base_delta: int  # change of the bankrupt account's base (the counterparty gets -base_delta)
    quote_delta: int  # quote flow to the bankrupt account (the counterparty gets -quote_delta)
    bankruptcy_price: int  # PRICE_PRECISION


class LiquidationPlan(NamedTuple):
    account_id: int
    cancel_orders_in_markets: tuple[int, ...]  # cancel the account's resting orders here first
    transfers: tuple[PositionTransfer, ...]
    adl_fills: tuple[AdlFill, ...]
    insurance_payment_quote: int  # insurance fund -> account, covering a bankrupt balance
    bad_debt_quote: int  # deficit at the oracle when bankrupt (0 otherwise)
    uncovered_quote: int  # bad debt neither the fund nor ADL could cover (see PROTOCOL)
    equity_before_quote: int
    maintenance_before_quote: int
    collateral_after_quote: int
    equity_after_quote: int
    target_after_quote: int  # maintenance + buffer after the plan

    @property
    def bankrupt(self) -> bool:
        return self.bad_debt_quote > 0


# ------------------------------------------------------------------ margin helpers


_NO_BUFFER: Mapping[int, int] = {}


def _account_margin(
    collateral_quote: int,
    positions: Mapping[int, Position],
    prices: Mapping[int, int],
    schedules: Mapping[int, MarginSchedule],
    buffer_ppm: Mapping[int, int] | int,
) -> tuple[int, int, int]:
    """(equity, maintenance, maintenance + buffer) at ``prices``; the buffer is
    ``ceil(sum(notional_m x buffer_m) / 10^6)`` with ``buffer_m = buffer_ppm[m]`` (markets
    absent: 0), or ``buffer_ppm`` itself for every market when it is an int."""
    if isinstance(buffer_ppm, int):
        buffer_ppm = dict.fromkeys(positions, buffer_ppm)
    equity = collateral_quote
    maintenance = 0
    buffer_numerator = 0  # quote x ppm
    for market_id, position in positions.items():
        if not position.base:
            continue
        price = prices[market_id]
        equity += unrealized_pnl_quote(position.base, position.entry_quote, price)
        notional = notional_quote(position.base, price)
        buffer_numerator += notional * buffer_ppm.get(market_id, 0)
        maintenance += requirement_quote(notional, schedules[market_id], MarginKind.MAINTENANCE)
    buffer = -(-buffer_numerator // RATIO_PRECISION)
    return equity, maintenance, maintenance + buffer


def check_eligibility(
    collateral_quote: int,
    positions: Mapping[int, Position],
    oracles: Mapping[int, OracleReading],
    schedules: Mapping[int, MarginSchedule],
) -> Eligibility:
    """Is the account liquidatable now? Never at an invalid oracle: if any market it holds
    lacks a valid oracle the answer is ``ORACLE_INVALID`` and nothing may be done."""
    held = sorted(m for m, p in positions.items() if p.base)
    invalid = tuple(m for m in held if m not in oracles or not oracles[m].valid_for_liquidation)
    if invalid:
        return Eligibility(Health.ORACLE_INVALID, 0, 0, invalid)
    prices = {m: _oracle_price(oracles, m) for m in held}
    equity, maintenance, _ = _account_margin(
        collateral_quote, positions, prices, schedules, _NO_BUFFER
    )
    health = Health.LIQUIDATABLE if equity < maintenance else Health.HEALTHY
    return Eligibility(health, equity, maintenance, ())


def _oracle_price(oracles: Mapping[int, OracleReading], market_id: int) -> int:
    price = oracles[market_id].price
    if type(price) is not int or price <= 0:
        raise LiquidationInputError(f"oracle {market_id}: expected a price > 0, got {price!r}")
    return price


# ------------------------------------------------------------------ sizing


def drift_style_close_base(
    shortfall_quote: int, price: int, maintenance_ppm: int, buffer_ppm: int, fee_ppm: int
) -> int:
    """Base to close so a shortfall disappears (Drift's sizing), rounded up:

    ``base = ceil(shortfall x 10^6 x BASE_PRECISION / (price x (maintenance + buffer - fee)))``

    Closing ``b`` base at the oracle lowers the target by ``b x price x (mr + buffer)`` and
    equity by the fee ``b x price x fee``; the gap closes at the difference. Exact for a
    one-tier schedule up to rounding; with higher tiers the requirement falls faster, so it
    over-estimates (the plan then searches down to the smallest sufficient lot count).
    """
    rate = maintenance_ppm + buffer_ppm - fee_ppm
    if shortfall_quote <= 0:
        return 0
    if rate <= 0 or price <= 0:
        raise LiquidationConfigError(
            f"sizing: expected a positive rate and price, got {rate}, {price}"
        )
    return -(-shortfall_quote * RATIO_PRECISION * BASE_PRECISION // (price * rate))


def _close_quote(base_delta: int, price: int) -> int:
    """Quote flow to the account closing ``base_delta`` at ``price``, rounded against it:
    a sale (base_delta < 0) receives the floor, a purchase pays the ceiling."""
    return (-base_delta * price) // BASE_PRECISION


def _with_fill(
    collateral: int, positions: dict[int, Position], market_id: int, base_delta: int, quote: int
) -> int:
    result = apply_fill(positions[market_id], base_delta, quote)
    positions[market_id] = result.position
    return collateral + result.realized_quote


def _transfer(
    collateral: int,
    positions: dict[int, Position],
    market_id: int,
    close_base: int,
    price: int,
    prices: Mapping[int, int],
    schedules: Mapping[int, MarginSchedule],
    config: LiquidationConfig,
    charge_fee: bool,
) -> tuple[int, PositionTransfer]:
    """Move ``close_base`` (> 0, <= |position|) of ``market_id`` to the liquidator at
    ``market_id``'s ``config``; mutates ``positions`` and returns the new collateral and the
    transfer."""
    base = positions[market_id].base
    base_delta = -close_base if base > 0 else close_base
    quote = _close_quote(base_delta, price)
    collateral = _with_fill(collateral, positions, market_id, base_delta, quote)
    fee = 0
    if charge_fee:
        fee_full = fee_quote(notional_quote(close_base, price), config.liquidation_fee_ppm)
        equity, _, _ = _account_margin(collateral, positions, prices, schedules, _NO_BUFFER)
        fee = min(fee_full, max(0, equity))  # never charged beyond the equity left
    liquidator_fee = fee * config.liquidator_share_ppm // RATIO_PRECISION
    transfer = PositionTransfer(
        market_id, base_delta, quote, price, fee, liquidator_fee, fee - liquidator_fee
    )
    return collateral - fee, transfer


# ------------------------------------------------------------------ ADL


def adl_score(
    base: int, entry_quote: int, oracle_price: int, account_equity_quote: int
) -> Fraction:
    """Auto-deleveraging score of a position: profit ratio x leverage, exact.

    ``score = (pnl / |entry_quote|) x (notional / equity)`` with ``pnl`` and ``notional`` at
    the oracle; ``|entry_quote|`` and ``equity`` are floored at 1 so the score is always
    defined (an account with equity <= 0 counts as maximally leveraged). Higher goes first.
    """
    if not base:
        return Fraction(0)
    pnl = unrealized_pnl_quote(base, entry_quote, oracle_price)
    notional = notional_quote(base, oracle_price)
    return Fraction(pnl * notional, max(1, abs(entry_quote)) * max(1, account_equity_quote))


def adl_queue(
    candidates: Iterable[AdlCandidate], *, opposite_of_base: int, oracle_price: int
) -> list[AdlCandidate]:
    """The published ADL order for closing a position of sign ``opposite_of_base``: the
    opposite positions, highest :func:`adl_score` first, ties by lower account id (a total,
    deterministic order)."""
    side = [c for c in candidates if c.base and (c.base > 0) != (opposite_of_base > 0)]
    ids = [c.account_id for c in side]
    if len(set(ids)) != len(ids):
        raise LiquidationInputError(
            f"ADL candidates: expected unique account ids, got {sorted(ids)}"
        )
    return sorted(
        side,
        key=lambda c: (
            -adl_score(c.base, c.entry_quote, oracle_price, c.account_equity_quote),
            c.account_id,
        ),
    )


def adl_ranks(candidates: Iterable[AdlCandidate], *, oracle_price: int) -> dict[int, int]:
    """Each position's current ADL rank within its side (1 = closed first), for its owner."""
    pool = list(candidates)
    ranks: dict[int, int] = {}
    for sign in (1, -1):
        queue = adl_queue(pool, opposite_of_base=-sign, oracle_price=oracle_price)
        ranks.update({c.account_id: i + 1 for i, c in enumerate(queue)})
    return ranks


def _bankruptcy_price(base: int, price: int, deficit_quote: int) -> int:
    """Price at which closing ``base`` covers ``deficit_quote`` beyond the oracle value,
    rounded toward the bankrupt account (a long sells higher, a short buys lower); a short's
    price stops at 0."""
    shift = -(-deficit_quote * BASE_PRECISION // abs(base))
    return price + shift if base > 0 else max(0, price - shift)


# ------------------------------------------------------------------ the plan


def plan_liquidation(
    *,
    account_id: int,
    collateral_quote: int,
    positions: Mapping[int, Position],
    open_order_markets: Iterable[int],
    oracles: Mapping[int, OracleReading],
    schedules: Mapping[int, MarginSchedule],
    lot_sizes: Mapping[int, int],
    config: LiquidationConfigs,
    insurance_fund_quote: int,
    adl_candidates: Mapping[int, Sequence[AdlCandidate]],
) -> LiquidationPlan | Eligibility:
    """The liquidation of one account, or its :class:`Eligibility` if it is not liquidatable.

    ``config`` is one :class:`LiquidationConfig` for every market or a mapping market ->
    config (each market's fee, share and buffer; the target's buffer is summed per market).

    1. Cancel its resting orders in every market (``cancel_orders_in_markets``).
    2. Not bankrupt (equity at the oracle >= 0): markets by maintenance requirement, largest
       first (ties: lower id); in each, close the smallest number of lots that brings equity to
       ``maintenance + buffer`` (starting from :func:`drift_style_close_base`), or all of it
       and go on. Each slice goes to the liquidator at the oracle price and pays the fee, capped
       at the equity it leaves.
    3. Bankrupt (equity < 0): every position is closed and nobody is paid a fee. If the
       insurance fund holds the deficit, the liquidator takes the positions at the oracle and
       the fund pays the deficit. Otherwise the part beyond the fund is spread over the
       positions by notional, each is closed at its bankruptcy price against the ADL queue,
       and the fund pays what is left (never more than it holds).
    """
    if insurance_fund_quote < 0:
        raise LiquidationInputError(f"insurance fund: expected >= 0, got {insurance_fund_quote}")
    eligibility = check_eligibility(collateral_quote, positions, oracles, schedules)
    if eligibility.health != Health.LIQUIDATABLE:
        return eligibility
    held = [m for m, p in positions.items() if p.base]
    configs = market_configs(config, held)
    buffers = {m: c.buffer_ppm for m, c in configs.items()}
    for market_id in held:
        configs[market_id].check_schedule(market_id, schedules[market_id])
        if lot_sizes.get(market_id, 0) <= 0:
            raise LiquidationInputError(f"lot size of market {market_id}: expected > 0, got none")
    prices = {m: oracles[m].price for m in held}
    work = {m: positions[m] for m in held}
    cancel = tuple(sorted(set(open_order_markets)))
    order = sorted(
        held,
        key=lambda m: (
            -requirement_quote(
                notional_quote(work[m].base, prices[m]), schedules[m], MarginKind.MAINTENANCE
            ),
            m,
        ),
    )
    equity_before = eligibility.equity_quote
    collateral = collateral_quote
    transfers: list[PositionTransfer] = []
    adl: list[AdlFill] = []
    insurance_payment = bad_debt = uncovered = 0

    if equity_before >= 0:
        for market_id in order:
            equity, _, target = _account_margin(collateral, work, prices, schedules, buffers)
            if equity >= target:
                break
            close = _smallest_close(
                collateral, work, market_id, equity, target, prices, schedules, lot_sizes, configs
            )
            collateral, transfer = _transfer(
                collateral,
                work,
                market_id,
                close,
                prices[market_id],
                prices,
                schedules,
                configs[market_id],
                True,
            )
            transfers.append(transfer)
        if not any(p.base for p in work.values()) and collateral < 0:
            # Rounding of partial slices can leave a unit or two short: the fund covers it.
            insurance_payment = min(-collateral, insurance_fund_quote)
            uncovered = -collateral - insurance_payment
            bad_debt = -collateral
            collateral += insurance_payment
    else:
        bad_debt = -equity_before
        beyond_fund = bad_debt - insurance_fund_quote
        if beyond_fund <= 0:
            for market_id in order:
                collateral, transfer = _transfer(
                    collateral, work, market_id, abs(work[market_id].base),
                    prices[market_id], prices, schedules, configs[market_id], False,
                )  # fmt: skip
                transfers.append(transfer)
        elif order:  # (no positions: nothing to deleverage, the rest stays uncovered)
            collateral, fills = _deleverage(
                account_id, collateral, work, order, prices, beyond_fund, adl_candidates
            )
            adl.extend(fills)
        insurance_payment = min(max(0, -collateral), insurance_fund_quote)
        collateral += insurance_payment
        uncovered = max(0, -collateral)

    equity_after, _, target_after = _account_margin(collateral, work, prices, schedules, buffers)
    return LiquidationPlan(
        account_id=account_id,
        cancel_orders_in_markets=cancel,
        transfers=tuple(transfers),
        adl_fills=tuple(adl),
        insurance_payment_quote=insurance_payment,
        bad_debt_quote=bad_debt,
        uncovered_quote=uncovered,
        equity_before_quote=equity_before,
        maintenance_before_quote=eligibility.maintenance_quote,
        collateral_after_quote=collateral,
        equity_after_quote=equity_after,
        target_after_quote=target_after,
    )


def _smallest_close(
    collateral: int,
    work: Mapping[int, Position],
    market_id: int,
    equity: int,
    target: int,
    prices: Mapping[int, int],
    schedules: Mapping[int, MarginSchedule],
    lot_sizes: Mapping[int, int],
    config: LiquidationConfigs,
) -> int:
    """Smallest base (whole lots, or the whole position) of ``market_id`` whose transfer
    brings the account to its target, as the guided bisection over lots of
    ``docs/PROTOCOL.md`` ("Liquidation", sizing) finds it; the whole position if none does.

    The account after a transfer of ``c`` base has a closed form (:class:`_CloseSizing`),
    so no trial transfer is booked. When one more lot provably always helps (the check in
    :meth:`_CloseSizing.monotone`), the answer is the first lot count at or above the
    tier-by-tier solution of the continuous inequality, found with one or two exact checks;
    otherwise the bisection runs on the exact closed form. Both give what bisecting with
    trial transfers gives (``tests/property/test_liquidation_rules_properties.py``).
    """
    sizing = _CloseSizing(work, market_id, equity, prices, schedules, config)
    size = sizing.size
    lot = lot_sizes[market_id]
    max_lots = -(-size // lot)
    estimate = drift_style_close_base(
        target - equity,
        sizing.price,
        sizing.schedule.tiers[0].maintenance_ppm,
        sizing.buffer_ppm,
        sizing.fee_ppm,
    )
    guess = min(max(1, -(-estimate // lot)), max_lots)
    if not sizing.monotone(lot):
        return sizing.bisect(guess, lot, max_lots)
    # Partial closes (1 .. max_lots - 1 lots) meet the target from k_star lots on. The
    # bisection reaches k_star when the guess already meets the target, or when the whole
    # position does; otherwise it closes the whole position.
    k_star = sizing.first_meeting_lots(target - equity, lot, max_lots)
    if k_star is not None and guess < max_lots and k_star <= guess:
        return k_star * lot
    if sizing.meets(size):
        return size if k_star is None else k_star * lot
    return size


class _CloseSizing:
    """The account after moving ``c`` base of one market to the liquidator, in closed form.

    Closing at the oracle releases the basis share and realises it, so collateral plus the
    position's unrealised PnL changes only by flooring: ``equity(c) = equity + d(c)`` with
    ``d(c) = floor(-delta x P / S) + floor((base + delta) x P / S) - floor(base x P / S)``
    (``delta`` the signed change, ``S = BASE_PRECISION``), exactly what ``_transfer`` and
    ``_account_margin`` compute on copies. The fee is ``ceil(ceil(c x P / S) x fee / 10^6)``
    capped at ``max(0, equity(c))``; the target is the other markets' maintenance plus this
    market's at the notional left, plus the buffer of every market's notional left at its
    own buffer ratio (one ceiling over the sum).
    """

    __slots__ = (
        "base",
        "buffer_other_numerator",
        "buffer_ppm",
        "equity",
        "fee_ppm",
        "floor_value",
        "maintenance_other",
        "notional_now",
        "price",
        "schedule",
        "size",
    )

    def __init__(
        self,
        work: Mapping[int, Position],
        market_id: int,
        equity: int,
        prices: Mapping[int, int],
        schedules: Mapping[int, MarginSchedule],
        config: LiquidationConfigs,
    ) -> None:
        held = [m for m, p in work.items() if p.base]
        configs = market_configs(config, held)
        self.base = base = work[market_id].base
        self.price = price = prices[market_id]
        self.schedule = schedules[market_id]
        self.size = abs(base)
        self.equity = equity
        self.floor_value = (base * price) // BASE_PRECISION
        self.fee_ppm = configs[market_id].liquidation_fee_ppm
        self.buffer_ppm = configs[market_id].buffer_ppm
        self.notional_now = notional_quote(base, price)
        maintenance_other = buffer_other_numerator = 0  # quote, quote x ppm
        for other_id in held:
            if other_id == market_id:
                continue
            notional = notional_quote(work[other_id].base, prices[other_id])
            buffer_other_numerator += notional * configs[other_id].buffer_ppm
            maintenance_other += requirement_quote(
                notional, schedules[other_id], MarginKind.MAINTENANCE
            )
        self.maintenance_other = maintenance_other
        self.buffer_other_numerator = buffer_other_numerator

    def meets(self, close_base: int) -> bool:
        """Does moving ``close_base`` (> 0, <= size) bring equity to the target?"""
        price = self.price
        base_delta = -close_base if self.base > 0 else close_base
        remaining = self.base + base_delta
        equity = (
            self.equity
            + (-base_delta * price) // BASE_PRECISION
            + (remaining * price) // BASE_PRECISION
            - self.floor_value
        )
        closed_notional = -(-close_base * price // BASE_PRECISION)
        fee_full = -(-closed_notional * self.fee_ppm // RATIO_PRECISION)
        equity -= min(fee_full, max(0, equity))
        notional_left = -(-abs(remaining) * price // BASE_PRECISION)
        target = self.maintenance_other + -(
            -(self.buffer_other_numerator + notional_left * self.buffer_ppm) // RATIO_PRECISION
        )
        if notional_left:
            target += requirement_quote(notional_left, self.schedule, MarginKind.MAINTENANCE)
        return equity >= target

    def monotone(self, lot: int) -> bool:
        """Does one more lot always move a partial close closer to its target?

        From ``k`` to ``k + 1`` lots the target falls by more than
        ``(mr_0 + buffer) x floor(lot x P / S) / 10^6 - 2`` (maintenance rates only rise
        with notional; two ceilings), the fee rises by less than
        ``fee x ceil(lot x P / S) / 10^6 + 1`` and ``d`` by at least ``-1``: so equity minus
        target strictly rises when ``(mr_0 + buffer) x floor - fee x ceil >= 4 x 10^6``. (A
        fee capped at the equity leaves equity <= 0 < target: such a close never meets.)"""
        lot_value = lot * self.price
        floor_notional = lot_value // BASE_PRECISION
        ceil_notional = -(-lot_value // BASE_PRECISION)
        rate = self.schedule.tiers[0].maintenance_ppm + self.buffer_ppm
        return rate * floor_notional - self.fee_ppm * ceil_notional >= 4 * RATIO_PRECISION

    def continuous_close_base(self, gap_quote: int) -> int:
        """The base whose close closes ``gap_quote`` (target minus equity) without rounding:
        tier by tier down from the notional now, each unit of notional closed lowers the
        target by its tier's maintenance ratio plus the buffer and costs the fee."""
        need = gap_quote * RATIO_PRECISION  # quote x ppm
        tiers = self.schedule.tiers
        upper = self.notional_now
        closed = 0  # notional, quote
        index = 0
        while tiers[index].up_to_notional_quote < upper:
            index += 1
        while True:
            lower = tiers[index - 1].up_to_notional_quote if index else 0
            rate = tiers[index].maintenance_ppm + self.buffer_ppm - self.fee_ppm
            segment = upper - lower
            if segment * rate >= need:
                closed += -(-need // rate)
                break
            need -= segment * rate
            closed += segment
            if not index:
                return self.size
            index -= 1
            upper = lower
        return -(-closed * BASE_PRECISION // self.price)

    def first_meeting_lots(self, gap_quote: int, lot: int, max_lots: int) -> int | None:
        """The smallest partial close (lots in 1 .. max_lots - 1) that meets the target, or
        None; only for :meth:`monotone` sizes. Starts at the continuous solution (off by a
        lot at most, from rounding), checks exactly, and walks or bisects the rest."""
        last = max_lots - 1
        if last < 1:
            return None
        k = min(max(1, -(-self.continuous_close_base(gap_quote) // lot)), last)
        if self.meets(k * lot):
            if k == 1 or not self.meets((k - 1) * lot):
                return k
            lo, hi = 1, k - 1  # the answer is in [lo, hi]
        else:
            if k == last:
                return None
            if self.meets((k + 1) * lot):
                return k + 1
            if k + 1 == last or not self.meets(last * lot):
                return None
            lo, hi = k + 2, last
        while lo < hi:
            mid = (lo + hi) // 2
            if self.meets(mid * lot):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def bisect(self, guess: int, lot: int, max_lots: int) -> int:
        """The guided bisection over lots, on the exact closed form (any size)."""
        size = self.size
        if self.meets(min(guess * lot, size)):
            lo, hi = 1, guess  # the answer is in [lo, hi]
        elif guess < max_lots and self.meets(size):
            lo, hi = guess + 1, max_lots
        else:
            return size
        while lo < hi:
            mid = (lo + hi) // 2
            if self.meets(min(mid * lot, size)):
                hi = mid
            else:
                lo = mid + 1
        return min(lo * lot, size)


def _deleverage(
    account_id: int,
    collateral: int,
    work: dict[int, Position],
    order: Sequence[int],
    prices: Mapping[int, int],
    beyond_fund_quote: int,
    adl_candidates: Mapping[int, Sequence[AdlCandidate]],
) -> tuple[int, list[AdlFill]]:
    """Close every position against the ADL queue at bankruptcy prices that spread
    ``beyond_fund_quote`` over the positions by notional (remainder to the first)."""
    notionals = {m: notional_quote(work[m].base, prices[m]) for m in order}
    total = sum(notionals.values())
    shares = {m: beyond_fund_quote * notionals[m] // total for m in order}
    shares[order[0]] += beyond_fund_quote - sum(shares.values())
    fills: list[AdlFill] = []
    for market_id in order:
        base = work[market_id].base
        bankruptcy_price = _bankruptcy_price(base, prices[market_id], shares[market_id])
        pool = [c for c in adl_candidates.get(market_id, ()) if c.account_id != account_id]
        queue = adl_queue(pool, opposite_of_base=base, oracle_price=prices[market_id])
        remaining = abs(base)
        for candidate in queue:
            if not remaining:
                break
            take = min(remaining, abs(candidate.base))
            base_delta = -take if base > 0 else take
            quote = _adl_quote(base_delta, bankruptcy_price)
            collateral = _with_fill(collateral, work, market_id, base_delta, quote)
            fills.append(
                AdlFill(market_id, candidate.account_id, base_delta, quote, bankruptcy_price)
            )
            remaining -= take
        if remaining:
            raise LiquidationInputError(
                f"ADL in market {market_id}: expected opposite positions covering {abs(base)}, "
                f"short by {remaining}"
            )
    return collateral, fills


def _adl_quote(base_delta: int, bankruptcy_price: int) -> int:
    """Quote flow to the bankrupt account, rounded against the ADL counterparty: when the
    bankrupt sells, the counterparty pays the ceiling; when it buys, it receives the floor."""
    product = -base_delta * bankruptcy_price
    return -(-product // BASE_PRECISION) if base_delta < 0 else product // BASE_PRECISION


# ------------------------------------------------------------------ booking


def apply_plan(ledger: Ledger, plan: LiquidationPlan, *, liquidator_account_id: int) -> None:
    """Book ``plan`` on ``ledger``: position slices to the liquidator, fees, ADL fills, the
    insurance fund's payment. Funding is settled for every touched position first (a no-op
    when the plan was made from settled positions). Everything is checked before anything
    changes; a plan that no longer fits raises :class:`PlanMismatch`."""
    if liquidator_account_id == plan.account_id:
        raise PlanMismatch(f"liquidator: expected another account than {plan.account_id}")
    fund_available = ledger.insurance_fund_quote + sum(
        t.insurance_fee_quote for t in plan.transfers
    )
    if plan.insurance_payment_quote > fund_available:
        raise PlanMismatch(
            f"insurance fund: expected >= {plan.insurance_payment_quote}, got {fund_available}"
        )
    # Every slice must fit the positions it closes, walking the plan on copies.
    expected: dict[tuple[int, int], int] = {}
    for account, market_id, base_delta in (
        [(plan.account_id, t.market_id, t.base_delta) for t in plan.transfers]
        + [(plan.account_id, f.market_id, f.base_delta) for f in plan.adl_fills]
        + [(f.counterparty_account_id, f.market_id, -f.base_delta) for f in plan.adl_fills]
    ):
        key = (account, market_id)
        held = expected.get(key, ledger.position(account, market_id).base)
        if not held or (held > 0) == (base_delta > 0) or abs(base_delta) > abs(held):
            raise PlanMismatch(
                f"account {account} market {market_id}: expected a position to reduce by "
                f"{abs(base_delta)}, got base {held}"
            )
        expected[key] = held + base_delta

    def fill(account: int, market_id: int, base_delta: int, quote: int) -> None:
        ledger.settle(account, market_id)
        key = (account, market_id)
        result = apply_fill(ledger.positions[key], base_delta, quote)
        ledger.positions[key] = result.position
        ledger.collateral[account] = ledger.collateral.get(account, 0) + result.realized_quote

    for t in plan.transfers:
        fill(plan.account_id, t.market_id, t.base_delta, t.quote_delta)
        fill(liquidator_account_id, t.market_id, -t.base_delta, -t.quote_delta)
        ledger.collateral[plan.account_id] -= t.fee_quote
        ledger.collateral[liquidator_account_id] += t.liquidator_fee_quote
        ledger.insurance_fund_quote += t.insurance_fee_quote
    for f in plan.adl_fills:
        fill(plan.account_id, f.market_id, f.base_delta, f.quote_delta)
        fill(f.counterparty_account_id, f.market_id, -f.base_delta, -f.quote_delta)
    ledger.insurance_fund_quote -= plan.insurance_payment_quote
    ledger.collateral[plan.account_id] = (
        ledger.collateral.get(plan.account_id, 0) + plan.insurance_payment_quote
    )
