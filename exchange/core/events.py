"""Events: immutable, past-tense facts. They are the exchange's source of truth.

Every event is a ``NamedTuple`` (immutable, cheap to build) whose first three fields are
``seq`` (global sequence number, gap-free from 1), ``ts_ns`` (integer nanoseconds since the
epoch, taken from the command that caused it) and ``market_id``. Each type has a stable
numeric kind (``EVENT_KINDS``); the journal stores ``[KIND, *fields]`` so the encoding is plain JSON,
portable across Python versions and databases.
"""

from __future__ import annotations

import gc
from typing import Any, NamedTuple, get_type_hints

import orjson


class MarketCreated(NamedTuple):
    seq: int
    ts_ns: int
    market_id: int
    symbol: str
    tick_size: int  # quote per base unit at PRICE_PRECISION
    lot_size: int  # base units at BASE_PRECISION
    min_size_lots: int
    max_size_lots: int
    max_price_ticks: int
    max_open_orders_per_account: int


class OrderAccepted(NamedTuple):
    """An order passed validation. Trigger orders go to the trigger book; others match."""

    seq: int
    ts_ns: int
    market_id: int
    order_id: int
    client_order_id: int
    owner_id: int
    sub_account_id: int
    side: int
    order_type: int
    time_in_force: int
    price_ticks: int  # limit price, or protection (worst) price for market-like orders
    num_base_lots: int
    trigger_price_ticks: int  # 0 unless a stop / take-profit
    reduce_only: bool
    stp_mode: int
    expire_at_ns: int  # 0 = good till cancelled


class OrderRejected(NamedTuple):
    """A command was refused; nothing else changed."""

    seq: int
    ts_ns: int
    market_id: int
    order_id: int  # the targeted order for cancel/amend, 0 for a new order
    client_order_id: int
    owner_id: int
    sub_account_id: int
    code: int  # RejectCode
    message: str


class OrderRested(NamedTuple):
    """The unfilled rest of an order now rests on the book at ``price_ticks``."""

    seq: int
    ts_ns: int
    market_id: int
    order_id: int
    price_ticks: int  # may differ from the accepted price after a post-only slide
    num_base_lots: int


class TradeExecuted(NamedTuple):
    """A taker matched a resting maker at the maker's price."""

    seq: int
    ts_ns: int
    market_id: int
    maker_order_id: int
    taker_order_id: int
    maker_owner_id: int
    maker_sub_account_id: int
    taker_owner_id: int
    taker_sub_account_id: int
    taker_side: int
    price_ticks: int
    num_base_lots: int
    maker_remaining_lots: int
    taker_remaining_lots: int


class OrderCanceled(NamedTuple):
    seq: int
    ts_ns: int
    market_id: int
    order_id: int
    owner_id: int
    sub_account_id: int
    canceled_lots: int
    reason: int  # CancelReason


class OrderExpired(NamedTuple):
    seq: int
    ts_ns: int
    market_id: int
    order_id: int
    owner_id: int
    sub_account_id: int
    expired_lots: int


class OrderAmended(NamedTuple):
    """Size down at the same price keeps priority; anything else re-queues (and may match)."""

    seq: int
    ts_ns: int
    market_id: int
    order_id: int
    price_ticks: int
    num_base_lots: int  # new remaining size
    priority_kept: bool


class OrderTriggered(NamedTuple):
    seq: int
    ts_ns: int
    market_id: int
    order_id: int
    fired_at_price: int  # PRICE_PRECISION: the supplied price that fired it


class SelfTradeDecremented(NamedTuple):
    """Decrement-both STP removed lots from a taker and a maker of one owner, no trade."""

    seq: int
    ts_ns: int
    market_id: int
    maker_order_id: int
    taker_order_id: int
    num_base_lots: int


# ---------------------------------------------------------------- clearinghouse events
# Kinds 1-20 belong to the matching core, 21 and up to the clearinghouse (perp.clearinghouse).
# Events about an account rather than a market carry ``market_id = NO_MARKET_ID``.

NO_MARKET_ID = 0xFFFF


class MarketParamsSet(NamedTuple):
    """A market's perpetual parameters (fees, margin tiers, limits, breaker, funding, mark),
    as canonical JSON of ``perp.params.PerpMarketParams``: the fold needs no config file."""

    seq: int
    ts_ns: int
    market_id: int
    params_json: str


class CollateralDeposited(NamedTuple):
    seq: int
    ts_ns: int
    market_id: int  # NO_MARKET_ID
    owner_id: int
    sub_account_id: int
    amount_quote: int  # QUOTE_PRECISION, > 0
    collateral_quote: int  # the sub-account's collateral after the deposit


class CollateralWithdrawn(NamedTuple):
    seq: int
    ts_ns: int
    market_id: int  # NO_MARKET_ID
    owner_id: int
    sub_account_id: int
    amount_quote: int  # QUOTE_PRECISION, > 0
    collateral_quote: int  # after the withdrawal


class OraclePriceUpdated(NamedTuple):
    """An oracle reading became the market's index price (or, invalid, fed the breaker).
    ``liquidation_valid``: it also passed the liquidation guard (never without ``valid``)."""

    seq: int
    ts_ns: int
    market_id: int
    price: int  # PRICE_PRECISION
    confidence: int  # PRICE_PRECISION
    slot: int
    publish_time_s: int
    valid: bool
    liquidation_valid: bool


class MarkPriceUpdated(NamedTuple):
    seq: int
    ts_ns: int
    market_id: int
    mark_price: int  # PRICE_PRECISION
    ema_basis: int  # PRICE_PRECISION, signed
    impact_bid: int  # PRICE_PRECISION, 0 = side too thin
    impact_ask: int  # PRICE_PRECISION, 0 = side too thin


class FillSettled(NamedTuple):
    """The money side of one ``TradeExecuted``: funding settled for both accounts first,
    then both positions, realised PnL, fees and the insurance fund's share."""

    seq: int
    ts_ns: int
    market_id: int
    trade_seq: int  # the TradeExecuted it settles
    maker_owner_id: int
    maker_sub_account_id: int
    taker_owner_id: int
    taker_sub_account_id: int
    taker_side: int
    base: int  # BASE_PRECISION, > 0
    notional_quote: int  # QUOTE_PRECISION, exact
    maker_fee_quote: int  # < 0: a rebate
    taker_fee_quote: int
    insurance_quote: int  # share of the fees to the insurance fund
    maker_realized_quote: int
    taker_realized_quote: int
    maker_funding_quote: int  # funding settled before the fill; > 0 paid, < 0 received
    taker_funding_quote: int
    funding_swept_quote: int  # funding rounding surplus swept to the insurance fund


class FundingSettled(NamedTuple):
    """An account's funding in one market was settled up to the market's index."""

    seq: int
    ts_ns: int
    market_id: int
    owner_id: int
    sub_account_id: int
    payment_quote: int  # > 0 paid, < 0 received
    swept_quote: int  # rounding surplus swept to the insurance fund


class FundingSampled(NamedTuple):
    seq: int
    ts_ns: int
    market_id: int
    index_price: int  # PRICE_PRECISION
    impact_bid: int
    impact_ask: int
    premium_rate: int  # FUNDING_RATE_PRECISION


class FundingRateApplied(NamedTuple):
    """A funding interval closed: its rate moved the market's cumulative funding index."""

    seq: int
    ts_ns: int
    market_id: int
    num_samples: int
    average_premium_rate: int  # FUNDING_RATE_PRECISION
    funding_rate: int  # FUNDING_RATE_PRECISION, > 0: longs pay shorts
    index_price: int  # PRICE_PRECISION
    cumulative_funding: int  # the index after this interval


class MarketStatusChanged(NamedTuple):
    seq: int
    ts_ns: int
    market_id: int
    old_status: int  # perp.risk_gate.MarketStatus
    new_status: int
    reason: int  # perp.circuit_breaker.BreakerReason


class InsuranceFundDeposited(NamedTuple):
    seq: int
    ts_ns: int
    market_id: int  # NO_MARKET_ID
    amount_quote: int
    balance_quote: int  # the fund after the deposit


class LiquidationExecuted(NamedTuple):
    """A slice of a liquidated account's position moved to the liquidator at the oracle
    price (funding of both already settled), with the liquidation fee and its split."""

    seq: int
    ts_ns: int
    market_id: int
    liquidator_owner_id: int
    liquidator_sub_account_id: int
    owner_id: int  # the liquidated account
    sub_account_id: int
    base_delta: int  # BASE_PRECISION: the liquidated account's change (liquidator: -base_delta)
    quote_delta: int  # QUOTE_PRECISION: quote to the liquidated account (liquidator: -quote)
    price: int  # PRICE_PRECISION, the oracle price
    fee_quote: int  # paid by the liquidated account
    liquidator_fee_quote: int  # its share paid to the liquidator
    insurance_fee_quote: int  # the rest, to the insurance fund
    realized_quote: int  # the liquidated account's realised PnL on the slice
    liquidator_realized_quote: int


class PositionDeleveraged(NamedTuple):
    """Auto-deleveraging: a bankrupt account's position slice closed against a ranked
    opposite position at the bankruptcy price (funding of both already settled)."""

    seq: int
    ts_ns: int
    market_id: int
    owner_id: int  # the bankrupt account
    sub_account_id: int
    counterparty_owner_id: int
    counterparty_sub_account_id: int
    base_delta: int  # BASE_PRECISION: the bankrupt account's change (counterparty: -base_delta)
    quote_delta: int  # QUOTE_PRECISION: quote to the bankrupt account
    bankruptcy_price: int  # PRICE_PRECISION
    realized_quote: int
    counterparty_realized_quote: int


class InsuranceFundPaidBadDebt(NamedTuple):
    """The insurance fund paid (part of) a bankrupt account's deficit into its collateral."""

    seq: int
    ts_ns: int
    market_id: int  # NO_MARKET_ID
    owner_id: int
    sub_account_id: int
    amount_quote: int  # QUOTE_PRECISION, paid by the fund, >= 0
    bad_debt_quote: int  # the deficit at the oracle
    uncovered_quote: int  # left neither the fund nor ADL could cover (stays on the account)
    balance_quote: int  # the fund after the payment, >= 0


class AccountLiquidated(NamedTuple):
    """A liquidation finished (the record of the slices, ADL fills and payment before it)."""

    seq: int
    ts_ns: int
    market_id: int  # NO_MARKET_ID, or the one market the command asked for
    liquidator_owner_id: int
    liquidator_sub_account_id: int
    owner_id: int
    sub_account_id: int
    equity_before_quote: int  # at the oracles
    maintenance_before_quote: int
    equity_after_quote: int  # at the oracles, after
    maintenance_after_quote: int
    num_transfers: int
    num_deleveraged: int
    bad_debt_quote: int


class RiskParamsChanged(NamedTuple):
    """A listed market's parameters changed (an executed governance proposal, issue 8): from
    this event on, orders, margin checks, fees, funding and the breaker use the new values.
    ``params_json`` is the whole new ``perp.params.PerpMarketParams`` as canonical JSON."""

    seq: int
    ts_ns: int
    market_id: int
    proposal_id: int  # the clearing program's Proposal.id executed (0: none, operator)
    params_json: str


class OnChainLiquidationBooked(NamedTuple):
    """An on-chain liquidation slice accepted as a fact (``BookOnChainLiquidation``), just
    before its ``LiquidationExecuted``: both accounts' funding in the market settled to the
    index the program used, and the ``(tx_signature, slice_index)`` marked as booked."""

    seq: int
    ts_ns: int
    market_id: int
    owner_id: int  # the liquidated account
    sub_account_id: int
    liquidator_owner_id: int
    liquidator_sub_account_id: int
    cumulative_funding: int  # the on-chain index both positions were settled to
    tx_signature: str
    slice_index: int
    funding_quote: int  # the liquidated account's funding payment (> 0 paid)
    liquidator_funding_quote: int


class AccountRegistered(NamedTuple):
    """A wallet got its engine account (``RegisterAccount``; open sign-up). The registry is
    append-only and one-to-one: one wallet, one ``(owner_id, sub_account_id)``."""

    seq: int
    ts_ns: int
    market_id: int  # NO_MARKET_ID
    owner_id: int
    sub_account_id: int
    wallet_pubkey_hex: str  # the wallet's ed25519 public key: 32 bytes, 64 lower-case hex digits


class OnChainWithdrawalBooked(NamedTuple):
    """A wallet's own on-chain ``withdraw`` (the escape hatch) booked as a fact
    (``BookOnChainWithdrawal``): the account's collateral and the net deposits fell by the
    amount, and ``(tx_signature, withdrawal_index)`` is marked as booked."""

    seq: int
    ts_ns: int
    market_id: int  # NO_MARKET_ID
    owner_id: int
    sub_account_id: int
    amount_quote: int  # QUOTE_PRECISION, > 0
    collateral_quote: int  # the account's collateral after (may be < 0: the chain decided)
    tx_signature: str
    withdrawal_index: int


class ReconciliationMismatchDetected(NamedTuple):
    """The reconciler found a value on which the clearing program's accounts and the engine
    (as of ``settled_through_seq``) disagree (``RecordReconciliationMismatch``): the market's
    reconciliation incident opens, or counts one more mismatch if open already."""

    seq: int
    ts_ns: int
    market_id: int  # NO_MARKET_ID: a collateral or exchange-wide value
    account_owner_id: int  # -1 (and account_sub_account_id -1): a market or exchange value
    account_sub_account_id: int
    field: str
    engine_value: int  # in the field's own unit
    onchain_value: int
    settled_through_seq: int
    chain_slot: int
    open_mismatches: int  # mismatches recorded in the market's open incident, this one included


class ReconciliationMismatchResolved(NamedTuple):
    """A reconciliation found no difference for a market with an open incident
    (``RecordReconciliationClean``): the incident closes."""

    seq: int
    ts_ns: int
    market_id: int  # NO_MARKET_ID: the collateral / exchange-wide incident
    mismatches: int  # mismatches the closed incident recorded (>= 1)
    settled_through_seq: int
    chain_slot: int


Event = (
    MarketCreated
    | OrderAccepted
    | OrderRejected
    | OrderRested
    | TradeExecuted
    | OrderCanceled
    | OrderExpired
    | OrderAmended
    | OrderTriggered
    | SelfTradeDecremented
    | MarketParamsSet
    | CollateralDeposited
    | CollateralWithdrawn
    | OraclePriceUpdated
    | MarkPriceUpdated
    | FillSettled
    | FundingSettled
    | FundingSampled
    | FundingRateApplied
    | MarketStatusChanged
    | InsuranceFundDeposited
    | LiquidationExecuted
    | PositionDeleveraged
    | InsuranceFundPaidBadDebt
    | AccountLiquidated
    | RiskParamsChanged
    | OnChainLiquidationBooked
    | AccountRegistered
    | OnChainWithdrawalBooked
    | ReconciliationMismatchDetected
    | ReconciliationMismatchResolved
)

#: Stable numeric kind of each event type: never renumber, only append.
EVENT_KINDS: dict[type, int] = {
    MarketCreated: 1,
    OrderAccepted: 2,
    OrderRejected: 3,
    OrderRested: 4,
    TradeExecuted: 5,
    OrderCanceled: 6,
    OrderExpired: 7,
    OrderAmended: 8,
    OrderTriggered: 9,
    SelfTradeDecremented: 10,
    MarketParamsSet: 21,
    CollateralDeposited: 22,
    CollateralWithdrawn: 23,
    OraclePriceUpdated: 24,
    MarkPriceUpdated: 25,
    FillSettled: 26,
    FundingSettled: 27,
    FundingSampled: 28,
    FundingRateApplied: 29,
    MarketStatusChanged: 30,
    InsuranceFundDeposited: 31,
    LiquidationExecuted: 32,
    PositionDeleveraged: 33,
    InsuranceFundPaidBadDebt: 34,
    AccountLiquidated: 35,
    RiskParamsChanged: 36,
    OnChainLiquidationBooked: 37,
    AccountRegistered: 38,
    OnChainWithdrawalBooked: 39,
    ReconciliationMismatchDetected: 40,
    ReconciliationMismatchResolved: 41,
}
EVENT_TYPES: dict[int, Any] = {kind: cls for cls, kind in EVENT_KINDS.items()}
assert len(EVENT_TYPES) == len(EVENT_KINDS), "duplicate event kind"
for _cls, _kind in EVENT_KINDS.items():
    _cls.KIND = _kind  # type: ignore[attr-defined]  # convenience: event.KIND

_BOOL_FIELDS = {
    kind: tuple(i for i, name in enumerate(cls._fields) if get_type_hints(cls)[name] is bool)
    for kind, cls in EVENT_TYPES.items()
}


# kind -> (class, number of fields, indexes of bool fields), for the decoder's inner loop.
_DECODE_TABLE: dict[int, tuple[Any, int, tuple[int, ...]]] = {
    kind: (cls, len(cls._fields), _BOOL_FIELDS[kind]) for kind, cls in EVENT_TYPES.items()
}


def event_to_row(event: Event) -> list[Any]:
    """``[KIND, *fields]``: the canonical, JSON-ready form of an event."""
    return [EVENT_KINDS[type(event)], *event]


def event_from_row(row: list[Any]) -> Event:
    """Inverse of :func:`event_to_row`; raises ``ValueError`` on an unknown kind or arity."""
    try:
        cls = EVENT_TYPES[row[0]]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"event row: expected a known KIND first, got {row[:1]!r}") from None
    fields = row[1:]
    if len(fields) != len(cls._fields):
        raise ValueError(f"{cls.__name__}: expected {len(cls._fields)} fields, got {len(fields)}")
    for i in _BOOL_FIELDS[row[0]]:
        fields[i] = bool(fields[i])
    return cls._make(fields)  # type: ignore[no-any-return]


def encode_events(events: list[Event]) -> bytes:
    """Serialise events into one compact UTF-8 JSON array of ``[KIND, *fields]`` rows.

    orjson asks ``default`` for each event (a namedtuple is not one of its native types),
    so every row is a short-lived tuple: no list of rows stays alive while the batch is
    encoded, which would make the cyclic GC walk them (the GC cost several times the
    encoding itself on the engine's batches). An item that is not an event (a plain tuple
    or list, which orjson would write as it is) is refused.
    """
    kinds = EVENT_KINDS
    rows = 0

    def row(event: Any) -> tuple[Any, ...]:
        nonlocal rows
        rows += 1
        return (kinds[type(event)], *event)

    blob = orjson.dumps(events, default=row)
    if rows != len(events):
        raise TypeError(f"expected {len(events)} events, got {rows} (a non-event item)")
    return blob


def decode_events(blob: bytes) -> list[Event]:
    """Inverse of :func:`encode_events`; raises ``ValueError`` on malformed input.

    The per-row work of :func:`event_from_row` is inlined here because replay speed is
    bounded by this loop.
    """
    table = _DECODE_TABLE
    new = tuple.__new__
    gc_was_enabled = gc.isenabled()
    # Rows are acyclic temporaries freed by reference counting: cyclic GC passes triggered
    # by their allocation are pure overhead (about a third of replay time).
    gc.disable()
    try:
        rows = orjson.loads(blob)
        if type(rows) is not list:
            raise ValueError(f"expected a JSON array, got {type(rows).__name__}")
        out: list[Event] = []
        append = out.append
        for row in rows:
            cls, arity, bools = table[row[0]]
            if len(row) != arity + 1:
                return [event_from_row(r) for r in rows]  # for the precise error message
            for i in bools:
                if type(row[i + 1]) is not bool:
                    row[i + 1] = bool(row[i + 1])
            append(new(cls, row[1:]))
        return out
    except (KeyError, IndexError, TypeError):
        raise ValueError("expected rows [kind, *fields] with a known kind") from None
    finally:
        if gc_was_enabled:
            gc.enable()
