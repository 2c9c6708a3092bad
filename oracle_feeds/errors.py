"""The oracle_feeds exception tree and its stable codes.

Every refusal to read an oracle account is an :class:`OracleError` subclass carrying a
stable string ``code`` (never rename one: logs, metrics and alerts key on it) and a message
of the form "<what>: expected X, got Y". Layout problems (owner, size, discriminator,
version, enum tag) are :class:`OracleLayoutError`; values that decode but cannot be used as a
price (non-positive, out of range, no result yet) are :class:`OracleValueError`.
"""

from __future__ import annotations


class OracleError(Exception):
    """Root of every exception raised by the ``oracle_feeds`` package."""

    code = "ORACLE_ERROR"


# ---------------------------------------------------------------- layout: the bytes are not the account we want


class OracleLayoutError(OracleError):
    """The account is not a well-formed account of the expected oracle format."""

    code = "ORACLE_LAYOUT"


class WrongOwnerError(OracleLayoutError):
    """The account is not owned by the oracle program that writes this format."""

    code = "ORACLE_WRONG_OWNER"


class WrongSizeError(OracleLayoutError):
    """The account data length is not the format's exact (or minimum) size."""

    code = "ORACLE_WRONG_SIZE"


class BadDiscriminatorError(OracleLayoutError):
    """The Anchor 8-byte account discriminator does not name the expected account type."""

    code = "ORACLE_BAD_DISCRIMINATOR"


class BadMagicError(BadDiscriminatorError):
    """The Pyth legacy header magic is not 0xa1b2c3d4."""

    code = "ORACLE_BAD_MAGIC"


class UnsupportedVersionError(OracleLayoutError):
    """The header names a layout version this parser does not read."""

    code = "ORACLE_UNSUPPORTED_VERSION"


class WrongAccountTypeError(OracleLayoutError):
    """A Pyth legacy account of another type (mapping, product) or price type."""

    code = "ORACLE_WRONG_ACCOUNT_TYPE"


class BadEnumTagError(OracleLayoutError):
    """An enum tag (Pyth pull verification level, Pyth push status) is out of range."""

    code = "ORACLE_BAD_TAG"


class MalformedAccountError(OracleLayoutError):
    """The third-party decoder failed (or failed silently) on the account data."""

    code = "ORACLE_MALFORMED"


class AccountDumpError(OracleLayoutError):
    """A ``solana account --output json`` dump file is unreadable or not that shape."""

    code = "ORACLE_BAD_ACCOUNT_DUMP"


# ---------------------------------------------------------------- values: decoded, but not a usable price


class OracleValueError(OracleError):
    """A decoded value cannot be used as a price."""

    code = "ORACLE_INVALID_VALUE"


class NonPositivePriceError(OracleValueError):
    """The oracle price is zero or negative."""

    code = "ORACLE_NON_POSITIVE_PRICE"


class ValueOutOfRangeError(OracleValueError):
    """A value, exponent or scale does not fit its field (i64, u64) or our precision."""

    code = "ORACLE_VALUE_OUT_OF_RANGE"


class NoResultError(OracleValueError):
    """The feed holds no result yet (Switchboard result.slot == 0, round never opened)."""

    code = "ORACLE_NO_RESULT"


class FeedIdMismatchError(OracleValueError):
    """A Pyth pull update for another feed than the one the market is configured with."""

    code = "ORACLE_FEED_MISMATCH"


ALL_ERRORS: tuple[type[OracleError], ...] = (
    OracleError,
    OracleLayoutError,
    WrongOwnerError,
    WrongSizeError,
    BadDiscriminatorError,
    BadMagicError,
    UnsupportedVersionError,
    WrongAccountTypeError,
    BadEnumTagError,
    MalformedAccountError,
    AccountDumpError,
    OracleValueError,
    NonPositivePriceError,
    ValueOutOfRangeError,
    NoResultError,
    FeedIdMismatchError,
)
