"""The API's exception tree: every refusal of a request has a stable code and an HTTP status.

These are request errors (bad input, bad auth, too fast). Business rejections by the engine
are not exceptions: they come back as ``OrderRejected`` events with their ``RejectCode``.
"""

from __future__ import annotations

from exchange.core.errors import ExchangeError


class ApiError(ExchangeError):
    """A request was refused before it reached the engine; nothing changed."""

    code = "API_ERROR"
    status = 400

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_seconds = retry_after_seconds

    def to_json(self) -> dict[str, str]:
        """The response body: ``{"code": ..., "message": ...}``."""
        return {"code": self.code, "message": self.message}


class MalformedRequest(ApiError):
    """Body is not JSON, or a field is missing, unknown or of the wrong type or range."""

    code = "MALFORMED_REQUEST"


class BatchTooLarge(ApiError):
    code = "BATCH_TOO_LARGE"


class UnknownMarket(ApiError):
    code = "UNKNOWN_MARKET"
    status = 404


class UnknownOrder(ApiError):
    code = "UNKNOWN_ORDER"
    status = 404


class NotFound(ApiError):
    code = "NOT_FOUND"
    status = 404


class AuthError(ApiError):
    """Root of authentication refusals (401)."""

    code = "AUTH_FAILED"
    status = 401


class MissingAuth(AuthError):
    code = "AUTH_MISSING"


class BadSignature(AuthError):
    code = "AUTH_BAD_SIGNATURE"


class StaleTimestamp(AuthError):
    code = "AUTH_STALE_TIMESTAMP"


class ReplayedNonce(AuthError):
    code = "AUTH_REPLAYED_NONCE"


class UnknownKey(AuthError):
    """The public key is well formed but bound to no account."""

    code = "AUTH_UNKNOWN_KEY"
    status = 403


class WrongSubAccount(AuthError):
    """The key is limited to one sub-account and the request names another."""

    code = "AUTH_WRONG_SUB_ACCOUNT"
    status = 403


class RateLimited(ApiError):
    code = "RATE_LIMITED"
    status = 429


class EngineUnavailable(ApiError):
    code = "ENGINE_UNAVAILABLE"
    status = 503


#: Every code the API can answer with, for the OpenAPI document and the docs.
API_ERROR_CODES: tuple[str, ...] = tuple(
    cls.code
    for cls in (
        MalformedRequest,
        BatchTooLarge,
        UnknownMarket,
        UnknownOrder,
        NotFound,
        AuthError,
        MissingAuth,
        BadSignature,
        StaleTimestamp,
        ReplayedNonce,
        UnknownKey,
        WrongSubAccount,
        RateLimited,
        EngineUnavailable,
    )
)
