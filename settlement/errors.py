"""The settlement package's exception tree; every error has a stable ``code``."""

from __future__ import annotations


class SettlementError(Exception):
    """Base of the settlement service's errors."""

    code = "SETTLEMENT"


class SettlementConfigError(SettlementError, ValueError):
    """A settlement or reconciler configuration value is missing, unknown or out of range."""

    code = "SETTLEMENT_CONFIG"


class UnmappedAccount(SettlementError):
    """A journaled fill names an engine account or market with no on-chain counterpart."""

    code = "SETTLEMENT_UNMAPPED"


class ReconciliationRecordRefused(SettlementError):
    """The engine refused a reconciliation record (a mismatch or a clean market)."""

    code = "SETTLEMENT_RECONCILIATION_RECORD_REFUSED"


class FillNotRepresentable(SettlementError):
    """A fill's size or price is not a whole number of the on-chain market's lots / ticks."""

    code = "SETTLEMENT_FILL_NOT_REPRESENTABLE"


class SettlementHalted(SettlementError):
    """The program rejected a batch: settlement stopped and will not skip it."""

    code = "SETTLEMENT_HALTED"

    def __init__(self, message: str, *, error_code: int | None, sequence: int) -> None:
        super().__init__(message)
        self.error_code = error_code  # the program's IDL error code, when it gave one
        self.sequence = sequence


class RetriesExhausted(SettlementError):
    """RPC errors outlasted the configured number of attempts."""

    code = "SETTLEMENT_RETRIES_EXHAUSTED"
