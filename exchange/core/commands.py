"""Commands: requests to change the exchange. Plain immutable data, validated on arrival.

Prices arrive in ``PRICE_PRECISION`` quote units per base unit and sizes in
``BASE_PRECISION`` base units, exactly as a client sends them; the core checks them against
the market's tick and lot and turns them into ``*_ticks`` / ``*_lots``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple, get_type_hints

from exchange.core.market import DEFAULT_MAX_PRICE_TICKS
from exchange.core.orders import OrderType, SelfTradePrevention, Side, TimeInForce
from exchange.core.units import I64_MAX, I64_MIN, U64_MAX


class CreateMarket(NamedTuple):
    market_id: int
    symbol: str
    tick_size: int
    lot_size: int
    min_size_lots: int = 1
    max_size_lots: int = 0  # 0: the largest that keeps a fill's notional within u64
    max_price_ticks: int = DEFAULT_MAX_PRICE_TICKS
    max_open_orders_per_account: int = 256


class PlaceOrder(NamedTuple):
    market_id: int
    owner_id: int
    sub_account_id: int
    side: int  # Side
    price: int  # PRICE_PRECISION; limit price, or protection price for market-like orders
    size: int  # BASE_PRECISION
    order_type: int = int(OrderType.LIMIT)
    time_in_force: int = int(TimeInForce.GTC)
    client_order_id: int = 0  # 0 = none; else unique among the account's live orders
    trigger_price: int = 0  # PRICE_PRECISION; stop / take-profit only
    reduce_only: bool = False
    stp_mode: int = int(SelfTradePrevention.CANCEL_TAKING)
    expire_at_ns: int = 0  # 0 = good till cancelled


class CancelOrder(NamedTuple):
    market_id: int
    owner_id: int
    sub_account_id: int
    order_id: int = 0  # either order_id or client_order_id
    client_order_id: int = 0


class CancelAll(NamedTuple):
    market_id: int
    owner_id: int
    sub_account_id: int


class AmendOrder(NamedTuple):
    market_id: int
    owner_id: int
    sub_account_id: int
    order_id: int
    new_price: int  # PRICE_PRECISION
    new_size: int  # BASE_PRECISION, the new remaining (open) size


class UpdateTriggerPrice(NamedTuple):
    """The price (mark, later) that arms stop / take-profit orders: supplied by the caller."""

    market_id: int
    price: int  # PRICE_PRECISION


class ExpireOrders(NamedTuple):
    """Expire everything whose good-till time has passed (time is the command's ``ts_ns``)."""


# ---------------------------------------------------------------- clearinghouse commands
class Deposit(NamedTuple):
    """Credit collateral (QUOTE_PRECISION) to a sub-account."""

    owner_id: int
    sub_account_id: int
    amount_quote: int


class Withdraw(NamedTuple):
    """Take collateral out; only free collateral (equity above initial margin) may leave."""

    owner_id: int
    sub_account_id: int
    amount_quote: int


class UpdateOraclePrice(NamedTuple):
    """One oracle reading for a market's index price, as plain integers (the adapter turns an
    ``oracle_feeds.price.OraclePrice`` and its guard verdict into this command)."""

    market_id: int
    price: int  # PRICE_PRECISION
    confidence: int  # PRICE_PRECISION
    slot: int
    publish_time_s: int
    valid: bool  # the trading guard's verdict; an invalid reading halts the market
    # The liquidation guard's verdict (the strictest: confidence, TWAP deviation, age): a
    # reading may be traded on but not liquidated at. Counts only with ``valid``; True (the
    # default) is "no stricter verdict than trading's".
    liquidation_valid: bool = True


class Tick(NamedTuple):
    """Time passes (the command's ``ts_ns``): expiry, funding samples, funding intervals.
    The engine issues it from its clock; the pure core never reads one."""


class SetMarketStatus(NamedTuple):
    """Operator status change (``perp.risk_gate.MarketStatus``); refused under a kill switch."""

    market_id: int
    status: int


class SetKillSwitch(NamedTuple):
    """Engage (halt and cancel every resting order) or release a market's kill switch, or
    every market's when ``all_markets`` (``market_id`` is then ignored)."""

    market_id: int
    engaged: bool
    all_markets: bool = False


class DepositInsurance(NamedTuple):
    """Top up the insurance fund (QUOTE_PRECISION)."""

    amount_quote: int


class Liquidate(NamedTuple):
    """Liquidate the target sub-account into the submitter's (the liquidator's): all the
    target's markets, or only the slices of ``market_id`` (``NO_MARKET_ID`` = all; a bankrupt
    account is always liquidated whole). Refused unless the target is below maintenance at
    fresh, valid oracles in every market it holds."""

    owner_id: int  # the liquidator
    sub_account_id: int
    target_owner_id: int
    target_sub_account_id: int
    market_id: int = 0xFFFF  # exchange.core.events.NO_MARKET_ID: every market


class BookOnChainLiquidation(NamedTuple):
    """Book one slice of an on-chain ``liquidate`` (a keeper acted on the clearing program,
    e.g. while the engine was down) as a fact: no eligibility check (the program decided).
    The target's orders in the market are cancelled, both accounts' funding in the market is
    settled to the index the program used, and the slice is booked as ``LiquidationExecuted``;
    exactly once per ``(tx_signature, slice_index)``. ``insurance_payment_quote``: the fund's
    payment of the program's ``AccountLiquidated`` (rounding dust of a fully closed account),
    carried by the transaction's last slice."""

    market_id: int
    owner_id: int  # the liquidated account
    sub_account_id: int
    liquidator_owner_id: int
    liquidator_sub_account_id: int
    base_delta: int  # BASE_PRECISION: the liquidated account's change (liquidator: -base_delta)
    quote_delta: int  # QUOTE_PRECISION: quote to the liquidated account
    price: int  # PRICE_PRECISION, the on-chain oracle price
    fee_quote: int
    liquidator_fee_quote: int
    insurance_fee_quote: int
    cumulative_funding: int  # the market's on-chain funding index at the slice
    tx_signature: str  # base58 transaction signature
    slice_index: int  # the slice's position among the transaction's PositionLiquidated events
    insurance_payment_quote: int = 0


class SetRiskParams(NamedTuple):
    """Change a listed market's parameters (an executed governance proposal, issue 8).
    ``params_json`` is a JSON object of the ``perp.params.PerpMarketParams`` keys that change
    (the others keep their values); the clearinghouse checks hard bounds and per-change
    limits (``perp.params.check_params_change``) and records ``RiskParamsChanged``."""

    market_id: int
    params_json: str
    proposal_id: int = 0  # the clearing program's Proposal.id (0: none, operator)


class RegisterAccount(NamedTuple):
    """Open sign-up: give a wallet its engine account (the deposit bridge sends it for the
    first on-chain deposit of a wallet it does not know, before crediting that deposit). The
    clearinghouse assigns owner ``FIRST_REGISTERED_OWNER_ID + accounts registered so far``,
    sub-account 0: one owner per wallet (docs/PROTOCOL.md, Account registry). A wallet
    registered already is refused (``ACCOUNT_ALREADY_REGISTERED``)."""

    wallet_pubkey_hex: str  # the wallet's ed25519 public key: 32 bytes, 64 lower-case hex digits


class BookOnChainWithdrawal(NamedTuple):
    """Book a wallet's own on-chain ``withdraw`` (the escape hatch, open only after the operator
    was inactive for ``Exchange.escape_hatch_slots``) as a fact: the tokens have left the
    vault, so there is no free-collateral check (the program decided); the account's
    collateral and the net deposits fall by the amount (docs/PROTOCOL.md, Withdrawals).
    Exactly once per ``(tx_signature, withdrawal_index)``; the deposit bridge sends it."""

    owner_id: int
    sub_account_id: int
    amount_quote: int  # QUOTE_PRECISION, the program's Withdrawn.amount_quote
    tx_signature: str  # base58 transaction signature
    withdrawal_index: int = 0  # position among the transaction's Withdrawn events


class RecordReconciliationMismatch(NamedTuple):
    """The reconciler's fact: at ``chain_slot`` (the cluster's confirmed slot when the
    comparison began) one value of the clearing program's accounts differed from the engine's
    state as of journal sequence ``settled_through_seq``. Journaled as
    ``ReconciliationMismatchDetected``, which opens the market's reconciliation incident (or
    adds to the open one); ``market_id`` is ``NO_MARKET_ID`` for collateral and exchange-wide
    values. Values beyond the journal's 64-bit range arrive saturated at its bounds."""

    market_id: int
    account_owner_id: int  # -1 (with account_sub_account_id -1): a market or exchange value
    account_sub_account_id: int
    field: str  # the value compared, e.g. "base", "settled_collateral_quote": [a-z_]{1,64}
    engine_value: int  # in the field's own unit (BASE_PRECISION, QUOTE_PRECISION, ...)
    onchain_value: int
    settled_through_seq: int  # the journal sequence the engine state compared was at
    chain_slot: int


class RecordReconciliationClean(NamedTuple):
    """The reconciler's fact: a reconciliation at ``chain_slot`` against the engine as of
    ``settled_through_seq`` found no difference for ``market_id`` (``NO_MARKET_ID``: no
    collateral or exchange-wide difference). Closes the market's open incident with
    ``ReconciliationMismatchResolved``; with none open it changes nothing (no event)."""

    market_id: int
    settled_through_seq: int
    chain_slot: int


#: Owner ids from here up are the account registry's (``RegisterAccount``); owners bound
#: statically (``[api.owners]``, tests, simulations) stay below it.
FIRST_REGISTERED_OWNER_ID: Final = 1_000_000


Command = (
    CreateMarket
    | PlaceOrder
    | CancelOrder
    | CancelAll
    | AmendOrder
    | UpdateTriggerPrice
    | ExpireOrders
    | Deposit
    | Withdraw
    | UpdateOraclePrice
    | Tick
    | SetMarketStatus
    | SetKillSwitch
    | DepositInsurance
    | Liquidate
    | SetRiskParams
    | BookOnChainLiquidation
    | RegisterAccount
    | BookOnChainWithdrawal
    | RecordReconciliationMismatch
    | RecordReconciliationClean
)

COMMAND_TYPES: dict[str, Any] = {
    "create_market": CreateMarket,
    "place": PlaceOrder,
    "cancel": CancelOrder,
    "cancel_all": CancelAll,
    "amend": AmendOrder,
    "trigger_price": UpdateTriggerPrice,
    "expire": ExpireOrders,
    "deposit": Deposit,
    "withdraw": Withdraw,
    "oracle_price": UpdateOraclePrice,
    "tick": Tick,
    "market_status": SetMarketStatus,
    "kill_switch": SetKillSwitch,
    "insurance_deposit": DepositInsurance,
    "liquidate": Liquidate,
    "risk_params": SetRiskParams,
    "onchain_liquidation": BookOnChainLiquidation,
    "register_account": RegisterAccount,
    "onchain_withdrawal": BookOnChainWithdrawal,
    "reconciliation_mismatch": RecordReconciliationMismatch,
    "reconciliation_clean": RecordReconciliationClean,
}

_INT_RANGES: dict[str, tuple[int, int]] = {
    "market_id": (0, 65535),
    "owner_id": (0, 2**47 - 1),
    "sub_account_id": (0, 65535),
    "target_owner_id": (0, 2**47 - 1),
    "target_sub_account_id": (0, 65535),
    "side": (0, len(Side) - 1),
    "order_type": (0, len(OrderType) - 1),
    "time_in_force": (0, len(TimeInForce) - 1),
    "stp_mode": (0, len(SelfTradePrevention) - 1),
    "status": (0, 4),  # perp.risk_gate.MarketStatus
    "publish_time_s": (0, I64_MAX),
    "amount_quote": (0, I64_MAX),
    "liquidator_owner_id": (0, 2**47 - 1),
    "liquidator_sub_account_id": (0, 65535),
    "base_delta": (I64_MIN, I64_MAX),
    "quote_delta": (I64_MIN, I64_MAX),
    "cumulative_funding": (-(2**127), 2**127 - 1),
    "slice_index": (0, 255),
    "fee_quote": (0, I64_MAX),
    "liquidator_fee_quote": (0, I64_MAX),
    "insurance_fee_quote": (0, I64_MAX),
    "insurance_payment_quote": (0, I64_MAX),
    "withdrawal_index": (0, 255),
    "account_owner_id": (-1, 2**47 - 1),
    "account_sub_account_id": (-1, 65535),
    "engine_value": (I64_MIN, U64_MAX),  # what the journal's JSON integers hold
    "onchain_value": (I64_MIN, U64_MAX),
    "settled_through_seq": (0, I64_MAX),
}


# Declared type of every field, resolved once (NamedTuple keeps them as forward references).
_FIELD_TYPES: dict[type, tuple[tuple[str, Any], ...]] = {
    cls: tuple((name, get_type_hints(cls)[name]) for name in cls._fields)
    for cls in COMMAND_TYPES.values()
}


class MalformedCommand(ValueError):
    """A command could not be built: wrong name, missing or unknown field, wrong type."""

    code = "MALFORMED_COMMAND"


# Per command type, each field's exact type (str, bool) or its int range: the fast check of
# a well-formed command (every command the engine runs passes through check_command).
_FIELD_SHAPES: dict[type, tuple[Any, ...]] = {
    cls: tuple(
        want if want is str or want is bool else _INT_RANGES.get(name, (0, U64_MAX))
        for name, want in kinds
    )
    for cls, kinds in _FIELD_TYPES.items()
}


def _fast_check(shapes: tuple[Any, ...]) -> Callable[[Any], bool]:
    """One command type's fast check, built once as a single boolean expression over the
    unpacked fields: ``True`` iff every field is exactly its declared type (``type(v) is
    int``: no bools, no IntEnum members) and in range. It does what a loop over
    ``shapes`` would, without the loop's per-field work (~0.6 us for a ``PlaceOrder``
    against ~1.5 us). A tuple of the wrong length raises ``ValueError``, as the strict zip did."""
    names = [f"f{i}" for i in range(len(shapes))]
    terms = []
    for name, shape in zip(names, shapes, strict=True):
        if shape is str or shape is bool:
            terms.append(f"type({name}) is {shape.__name__}")
        else:
            lo, hi = (int(bound) for bound in shape)  # plain ints: their repr is exact
            terms.append(f"type({name}) is int and {lo} <= {name} <= {hi}")
    if not names:  # a longer tuple: the full check's strict zip raises
        source = "def check(cmd):\n    return len(cmd) == 0\n"
    else:
        source = (
            f"def check(cmd):\n    {', '.join(names)}, = cmd\n    return {' and '.join(terms)}\n"
        )
    namespace: dict[str, Any] = {"int": int, "str": str, "bool": bool}
    exec(source, namespace)  # the source is built above from ints and field positions
    check: Callable[[Any], bool] = namespace["check"]
    return check


_FAST_CHECKS: dict[type, Callable[[Any], bool]] = {
    cls: _fast_check(shapes) for cls, shapes in _FIELD_SHAPES.items()
}


def check_command(cmd: Any) -> None:
    """Raise ``MalformedCommand`` unless every field of ``cmd`` has its declared shape."""
    fast = _FAST_CHECKS.get(type(cmd))
    # Anything the fast check refuses takes the full check below, which accepts IntEnum
    # members and says what is wrong.
    if fast is not None and fast(cmd):
        return
    kinds = _FIELD_TYPES.get(type(cmd))
    if kinds is None:
        raise MalformedCommand(f"expected a command, got {type(cmd).__name__}")
    for (name, want), value in zip(kinds, cmd, strict=True):
        if want is str:
            if not isinstance(value, str):
                raise MalformedCommand(f"{name}: expected a string, got {value!r}")
            continue
        if want is bool:
            if not isinstance(value, bool):
                raise MalformedCommand(f"{name}: expected true or false, got {value!r}")
            continue
        if not isinstance(value, int) or isinstance(value, bool):  # IntEnum members are fine
            raise MalformedCommand(f"{name}: expected an integer, got {value!r}")
        lo, hi = _INT_RANGES.get(name, (0, U64_MAX))
        if not lo <= value <= hi:
            raise MalformedCommand(f"{name}: expected {lo}..{hi}, got {value}")


def parse_command(message: Any) -> Command:
    """Build a command from ``{"type": name, **fields}`` (as decoded from JSON).

    Unknown types, unknown or missing fields and mistyped values raise ``MalformedCommand``
    with a message saying what was expected.
    """
    if not isinstance(message, dict):
        raise MalformedCommand(f"expected a JSON object, got {type(message).__name__}")
    kind = message.get("type")
    cls = COMMAND_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MalformedCommand(f"type: expected one of {sorted(COMMAND_TYPES)}, got {kind!r}")
    fields = {k: v for k, v in message.items() if k != "type"}
    unknown = sorted(set(fields) - set(cls._fields))
    if unknown:
        raise MalformedCommand(f"{kind}: unknown fields {unknown}, expected {list(cls._fields)}")
    missing = [f for f in cls._fields if f not in fields and f not in cls._field_defaults]
    if missing:
        raise MalformedCommand(f"{kind}: missing fields {missing}")
    cmd = cls(**fields)
    check_command(cmd)
    return cmd  # type: ignore[no-any-return]
