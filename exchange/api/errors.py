"""The API's exception tree: every refusal of a request has a stable code and an HTTP status.

These are request errors (bad input, bad auth, too fast). Business rejections by the engine
are not exceptions: they come back as ``OrderRejected`` events with their ``RejectCode``.
"""

from __future__ import annotations

from exchange.core.errors import ExchangeError


class ApiError(ExchangeError):
    """A request was refused before it reached the engine; nothing changed.

    Subclasses name their code and HTTP status as class keywords
    (``class X(ApiError, code="X", status=404)``); each one is listed in ``API_ERROR_CODES``.
    """

    code = "API_ERROR"
    status = 400

    def __init_subclass__(cls, *, code: str | None = None, status: int | None = None) -> None:
        super().__init_subclass__()
        if code is not None:
            cls.code = code
        if status is not None:
            cls.status = status
        _API_ERRORS.append(cls)

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_seconds = retry_after_seconds

    def to_json(self) -> dict[str, str]:
        """The response body: ``{"code": ..., "message": ...}``."""
        return {"code": self.code, "message": self.message}


_API_ERRORS: list[type[ApiError]] = []


class MalformedRequest(ApiError, code="MALFORMED_REQUEST"):
    """Body is not JSON, or a field is missing, unknown or of the wrong type or range."""


class BatchTooLarge(ApiError, code="BATCH_TOO_LARGE"):
    """A batch holds more items than the configured maximum."""


class UnknownMarket(ApiError, code="UNKNOWN_MARKET", status=404):
    """The request names a market that is not listed."""


class UnknownOrder(ApiError, code="UNKNOWN_ORDER", status=404):
    """No live order of the caller's has this order id or client order id."""


class NotFound(ApiError, code="NOT_FOUND", status=404):
    """Nothing to serve here (e.g. a perp-only route on an engine without the clearinghouse)."""


class AuthError(ApiError, code="AUTH_FAILED", status=401):
    """Root of authentication refusals (401)."""


class MissingAuth(AuthError, code="AUTH_MISSING"):
    """Authentication is missing or malformed, or a login must come first."""


class BadSignature(AuthError, code="AUTH_BAD_SIGNATURE"):
    """The signature does not verify against the key and the signed request."""


class StaleTimestamp(AuthError, code="AUTH_STALE_TIMESTAMP"):
    """The signed timestamp is too far from the server's clock."""


class ReplayedNonce(AuthError, code="AUTH_REPLAYED_NONCE"):
    """The key has already used this nonce."""


class UnknownKey(AuthError, code="AUTH_UNKNOWN_KEY", status=403):
    """The public key is well formed but bound to no account."""


class WrongSubAccount(AuthError, code="AUTH_WRONG_SUB_ACCOUNT", status=403):
    """The key is limited to one sub-account and the request names another."""


class RateLimited(ApiError, code="RATE_LIMITED", status=429):
    """The caller's rate limit is spent; ``retry_after_seconds`` says when to retry."""


class EngineUnavailable(ApiError, code="ENGINE_UNAVAILABLE", status=503):
    """The engine did not accept the work."""


#: Every code this module's errors answer with, for the OpenAPI document and the docs.
API_ERROR_CODES: tuple[str, ...] = tuple(cls.code for cls in _API_ERRORS)
