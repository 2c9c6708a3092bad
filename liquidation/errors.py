"""The liquidation package's exception tree, each class with a stable ``code``.

Business outcomes (an account is healthy, an oracle is invalid) are plain results, not
exceptions. Exceptions mean misuse or a broken invariant and fail fast.
"""

from __future__ import annotations


class LiquidationError(ValueError):
    """Root of every exception raised by the ``liquidation`` package."""

    code = "LIQUIDATION"


class LiquidationConfigError(LiquidationError):
    """A liquidation parameter is out of its bounds or inconsistent with a margin schedule."""

    code = "LIQUIDATION_CONFIG"


class LiquidationInputError(LiquidationError):
    """An account, oracle or ADL candidate given to the rules is malformed."""

    code = "LIQUIDATION_INPUT"


class PlanMismatch(LiquidationError):
    """A plan no longer matches the ledger it is applied to (nothing was applied)."""

    code = "LIQUIDATION_PLAN_MISMATCH"


class ScreenRangeError(LiquidationError):
    """A value does not fit the sweeper's bounded int64 screen (declared market bounds)."""

    code = "LIQUIDATION_SCREEN_RANGE"
