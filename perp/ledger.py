"""The ledger: every account's collateral and positions, the fee pool, the insurance fund,
and each market's funding index, as plain data changed by exact integer operations.

Money at ``QUOTE_PRECISION``, base at ``BASE_PRECISION``, prices at ``PRICE_PRECISION``.

Conservation, exact at every step (property-tested):
``sum(collateral) + sum(entry_quote) + fee_pool + insurance_fund + sum(funding_pool)
== net_deposits``. Fills only move quote between two accounts; fees move from accounts to
the fee pool and the insurance fund; funding moves between accounts through the market's
funding pool, whose exact rounding surplus is swept to the insurance fund in whole units.
Margin checks and the events that record each change arrive with the risk engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from perp.math.fees import FeeSchedule, fill_fees
from perp.math.funding import index_delta, sweep_surplus
from perp.math.margin import unrealized_pnl_quote
from perp.position import Position, apply_fill, settle_funding


class LedgerError(ValueError):
    code = "LEDGER"


@dataclass(slots=True)
class MarketFunding:
    cumulative_funding: int = 0  # quote x FUNDING_RATE_PRECISION per base unit
    pool_quote: int = 0  # paid in minus paid out minus swept (may be < 0 between settlements)
    surplus_numerator: int = 0  # exact rounding surplus not yet swept


@dataclass(slots=True)
class Ledger:
    collateral: dict[int, int] = field(default_factory=dict)  # account -> quote
    positions: dict[tuple[int, int], Position] = field(default_factory=dict)
    funding: dict[int, MarketFunding] = field(default_factory=dict)
    fee_pool_quote: int = 0
    insurance_fund_quote: int = 0
    net_deposits_quote: int = 0

    # ------------------------------------------------------------ cash
    def deposit(self, account: int, amount: int) -> None:
        if amount <= 0:
            raise LedgerError(f"deposit: expected amount > 0, got {amount}")
        self.collateral[account] = self.collateral.get(account, 0) + amount
        self.net_deposits_quote += amount

    def withdraw(self, account: int, amount: int) -> None:
        """Take ``amount`` out. Only the cash check lives here; margin (free collateral)
        is the risk engine's decision, made before calling this."""
        held = self.collateral.get(account, 0)
        if not 0 < amount <= held:
            raise LedgerError(f"withdraw: expected 0 < amount <= {held}, got {amount}")
        self.collateral[account] = held - amount
        self.net_deposits_quote -= amount

    # ------------------------------------------------------------ trading
    def position(self, account: int, market_id: int) -> Position:
        return self.positions.get((account, market_id), Position())

    def settle(self, account: int, market_id: int) -> int:
        """Settle the account's funding in ``market_id``; returns what it paid (< 0: got)."""
        market = self.funding.setdefault(market_id, MarketFunding())
        key = (account, market_id)
        result = settle_funding(self.positions.get(key, Position()), market.cumulative_funding)
        self.positions[key] = result.position
        self.collateral[account] = self.collateral.get(account, 0) - result.payment_quote
        market.pool_quote += result.payment_quote
        return result.payment_quote

    def _closed(self, market_id: int, position: Position) -> Position:
        """A position the fill left flat: its funding carry joins the market's surplus, whole
        units of which go to the insurance fund."""
        market = self.funding.setdefault(market_id, MarketFunding())
        swept, market.surplus_numerator = sweep_surplus(
            market.surplus_numerator + position.funding_carry_numerator
        )
        market.pool_quote -= swept
        self.insurance_fund_quote += swept
        return position._replace(funding_carry_numerator=0)

    def trade(
        self,
        market_id: int,
        maker: int,
        taker: int,
        taker_buys: bool,
        base: int,
        notional: int,
        fees: FeeSchedule,
    ) -> None:
        """Book one fill of ``base`` for ``notional`` quote between maker and taker."""
        if base <= 0 or notional < 0:
            raise LedgerError(f"trade: expected base > 0 and notional >= 0, got {base}, {notional}")
        self.settle(maker, market_id)
        self.settle(taker, market_id)
        sign = 1 if taker_buys else -1
        for account, base_delta, quote_delta in (
            (taker, sign * base, -sign * notional),
            (maker, -sign * base, sign * notional),
        ):
            key = (account, market_id)
            result = apply_fill(self.positions[key], base_delta, quote_delta)
            position = result.position
            self.positions[key] = (
                self._closed(market_id, position) if not position.base else position
            )
            self.collateral[account] = self.collateral.get(account, 0) + result.realized_quote
        split = fill_fees(notional, fees)
        self.collateral[maker] -= split.maker_fee_quote
        self.collateral[taker] -= split.taker_fee_quote
        self.fee_pool_quote += split.venue_quote
        self.insurance_fund_quote += split.insurance_quote

    def accrue_funding(self, market_id: int, rate: int, index_price: int) -> None:
        """Advance the market's funding index by one interval at ``rate`` (1e9 == 100 %)."""
        market = self.funding.setdefault(market_id, MarketFunding())
        market.cumulative_funding += index_delta(rate, index_price)

    # ------------------------------------------------------------ views
    def equity(self, account: int, marks: dict[int, int]) -> int:
        """Collateral plus unrealised PnL at ``marks`` (settle funding first for accuracy)."""
        total = self.collateral.get(account, 0)
        for (acct, market_id), pos in self.positions.items():
            if acct == account and pos.base:
                total += unrealized_pnl_quote(pos.base, pos.entry_quote, marks[market_id])
        return total

    def conservation_gap(self) -> int:
        """Zero when every unit is accounted for (the ledger's invariant)."""
        held = (
            sum(self.collateral.values())
            + sum(p.entry_quote for p in self.positions.values())
            + self.fee_pool_quote
            + self.insurance_fund_quote
            + sum(m.pool_quote for m in self.funding.values())
        )
        return held - self.net_deposits_quote
