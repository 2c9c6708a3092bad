"""The exchange package's exception tree and its stable rejection codes.

Business rejections (bad price, unknown order, ...) are not exceptions: they become
``OrderRejected`` events carrying a :class:`RejectCode`. Exceptions are for broken
invariants and misuse of the API, and they fail fast.
"""

from __future__ import annotations

from enum import IntEnum


class RejectCode(IntEnum):
    """Why a command was refused. The numeric values are stable: never renumber."""

    MALFORMED_COMMAND = 1
    UNKNOWN_MARKET = 2
    NON_POSITIVE_PRICE = 3
    OFF_TICK_PRICE = 4
    PRICE_OUT_OF_RANGE = 5
    NON_POSITIVE_SIZE = 6
    OFF_LOT_SIZE = 7
    SIZE_BELOW_MINIMUM = 8
    SIZE_ABOVE_MAXIMUM = 9
    UNKNOWN_ORDER = 10
    DUPLICATE_CLIENT_ORDER_ID = 11
    TOO_MANY_OPEN_ORDERS = 12
    POST_ONLY_WOULD_CROSS = 13
    FOK_NOT_FILLABLE = 14
    REDUCE_ONLY_WOULD_INCREASE = 15
    EXPIRED_ON_ARRIVAL = 16
    INVALID_ORDER_TYPE = 17
    INVALID_TRIGGER_PRICE = 18
    AMEND_NOT_ALLOWED = 19
    MARKET_ALREADY_EXISTS = 20
    INVALID_MARKET_SPEC = 21
    # Pre-trade risk gate (perp.risk_gate), in the order the gate checks them.
    MARKET_NOT_ACCEPTING = 22  # market status (post-only, cancel-only, reduce-only, halted)
    RATE_LIMITED_PER_SECOND = 23
    RATE_LIMITED_PER_MINUTE = 24
    ORDER_SIZE_ABOVE_LIMIT = 25
    PRICE_OUTSIDE_BAND = 26
    NOTIONAL_ABOVE_LIMIT = 27
    POSITION_ABOVE_LIMIT = 28
    DAILY_LOSS_LIMIT = 29
    INSUFFICIENT_MARGIN = 30
    # Accounts and market control (perp.clearinghouse).
    NON_POSITIVE_AMOUNT = 31  # a deposit / withdrawal of 0, or one past the i64 range
    WITHDRAWAL_ABOVE_FREE_COLLATERAL = 32  # only equity above initial margin may leave
    STATUS_CHANGE_REFUSED = 33  # a kill switch holds the market
    # Liquidation (perp.clearinghouse, Liquidate).
    LIQUIDATION_NOT_ELIGIBLE = 34  # the target is at or above maintenance (or already done)
    LIQUIDATION_ORACLE_INVALID = 35  # a held market's oracle is invalid or stale
    LIQUIDATION_SELF = 36  # liquidator and target belong to one owner
    LIQUIDATOR_INSUFFICIENT_MARGIN = 37  # the takeover would leave the liquidator short
    # Governance (perp.clearinghouse, SetRiskParams; perp.params.check_params_change).
    RISK_PARAMS_OUT_OF_BOUNDS = 38  # malformed, or outside a hard bound
    RISK_PARAMS_CHANGE_TOO_LARGE = 39  # beyond the per-change limit against the values in force
    # On-chain liquidations booked as facts (perp.clearinghouse, BookOnChainLiquidation).
    ONCHAIN_LIQUIDATION_DUPLICATE = 40  # this (transaction, slice) is already booked
    ONCHAIN_LIQUIDATION_INCONSISTENT = 41  # the engine's state cannot take the slice as given
    # Account registry (perp.clearinghouse, RegisterAccount).
    ACCOUNT_ALREADY_REGISTERED = 42  # the wallet has its engine account already
    # Escape-hatch withdrawals (perp.clearinghouse, BookOnChainWithdrawal).
    ONCHAIN_WITHDRAWAL_DUPLICATE = 43  # this (transaction, withdrawal) is already booked


class ExchangeError(Exception):
    """Root of every exception raised by the ``exchange`` package."""

    code = "EXCHANGE_ERROR"


class InvariantViolation(ExchangeError):
    """State that must be impossible was reached: a bug. Stop instead of continuing."""

    code = "INVARIANT_VIOLATION"


class IllegalTransition(InvariantViolation):
    """An order was asked to move between two states the transition table forbids."""

    code = "ILLEGAL_TRANSITION"


class ConfigError(ExchangeError):
    """Configuration was malformed, out of range or carried unknown keys."""

    code = "CONFIG_ERROR"


class JournalError(ExchangeError):
    """The event journal is unreadable, inconsistent or could not be written."""

    code = "JOURNAL_ERROR"


class ReplayMismatch(JournalError):
    """Replaying the journal did not reproduce a recorded state hash."""

    code = "REPLAY_MISMATCH"


#: Codes the pre-trade risk gate (``perp.risk_gate``) emits; the matching core never does.
RISK_GATE_CODES = frozenset(
    {
        RejectCode.MARKET_NOT_ACCEPTING,
        RejectCode.RATE_LIMITED_PER_SECOND,
        RejectCode.RATE_LIMITED_PER_MINUTE,
        RejectCode.ORDER_SIZE_ABOVE_LIMIT,
        RejectCode.PRICE_OUTSIDE_BAND,
        RejectCode.NOTIONAL_ABOVE_LIMIT,
        RejectCode.POSITION_ABOVE_LIMIT,
        RejectCode.DAILY_LOSS_LIMIT,
        RejectCode.INSUFFICIENT_MARGIN,
    }
)

#: Codes the clearinghouse (``perp.clearinghouse``) emits for account and market-control
#: commands; neither the matching core nor the risk gate does.
CLEARINGHOUSE_CODES = frozenset(
    {
        RejectCode.NON_POSITIVE_AMOUNT,
        RejectCode.WITHDRAWAL_ABOVE_FREE_COLLATERAL,
        RejectCode.STATUS_CHANGE_REFUSED,
        RejectCode.ACCOUNT_ALREADY_REGISTERED,
        RejectCode.ONCHAIN_WITHDRAWAL_DUPLICATE,
    }
)

#: Codes the clearinghouse emits for a refused ``Liquidate`` (the rejection is addressed to
#: the liquidator, who sent the command).
LIQUIDATION_CODES = frozenset(
    {
        RejectCode.LIQUIDATION_NOT_ELIGIBLE,
        RejectCode.LIQUIDATION_ORACLE_INVALID,
        RejectCode.LIQUIDATION_SELF,
        RejectCode.LIQUIDATOR_INSUFFICIENT_MARGIN,
        RejectCode.ONCHAIN_LIQUIDATION_DUPLICATE,
        RejectCode.ONCHAIN_LIQUIDATION_INCONSISTENT,
    }
)


#: Codes the clearinghouse emits for a refused ``SetRiskParams`` (market parameter change).
GOVERNANCE_CODES = frozenset(
    {RejectCode.RISK_PARAMS_OUT_OF_BOUNDS, RejectCode.RISK_PARAMS_CHANGE_TOO_LARGE}
)
