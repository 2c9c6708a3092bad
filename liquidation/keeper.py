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
  to back off after errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
from exchange.core.units import NANOS_PER_SECOND
from liquidation.errors import LiquidationInputError, ScreenRangeError
from liquidation.sweeper import LiquidateIntent, Sweeper, SweeperMarket
from perp.clearinghouse import Clearinghouse
from perp.position import Position


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
    """

    own_owner_id: int | None = None
    max_per_round: int = 8
    retry_ns: int = NANOS_PER_SECOND // 2
    backoff_min_ns: int = NANOS_PER_SECOND // 10
    backoff_max_ns: int = 5 * NANOS_PER_SECOND
    attempted_ns: dict[int, int] = field(default_factory=dict)
    consecutive_errors: int = 0

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

    def choose(
        self, candidates: Iterable[Candidate], ts_ns: int, *, free_collateral_quote: int
    ) -> list[Candidate]:
        """This round's targets (recorded as attempted at ``ts_ns``)."""
        for account_id, sent_ns in list(self.attempted_ns.items()):
            if ts_ns - sent_ns >= self.retry_ns:
                del self.attempted_ns[account_id]
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

    def on_round_ok(self) -> None:
        """A round without transport or API errors."""
        self.consecutive_errors = 0

    def on_error(self) -> int:
        """A failed round: the delay (ns) before the next one."""
        self.consecutive_errors += 1
        delay = self.backoff_min_ns << min(self.consecutive_errors - 1, 32)
        return min(delay, self.backoff_max_ns)
