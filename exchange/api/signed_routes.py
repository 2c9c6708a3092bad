"""What the API's route modules share: the JSON response and the sub-account check; for the
signed add-on routes (liquidations, withdrawals) also the authenticator's type, the
request-body check and their OpenAPI pieces."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any, Final

import orjson
from aiohttp import web

from exchange.api.errors import MalformedRequest, WrongSubAccount
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER

#: Checks a request's signature and spends a token: ``(principal, body)``.
Authenticate = Callable[[web.Request], Awaitable[tuple[Any, bytes]]]


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``data`` as JSON (a 200 unless ``status`` says otherwise)."""
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def request_object(
    obj: Any, what: str, allowed: Collection[str], required: Collection[str]
) -> dict[str, Any]:
    """``obj`` if it is a JSON object with only ``allowed`` and every ``required`` field, else
    ``MalformedRequest``."""
    if not isinstance(obj, dict):
        raise MalformedRequest(f"{what}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise MalformedRequest(f"{what}: unknown fields {unknown}, expected {sorted(allowed)}")
    missing = sorted(k for k in required if k not in obj)
    if missing:
        raise MalformedRequest(f"{what}: missing fields {missing}")
    return obj


def check_sub_account(principal: Any, sub_account_id: int, what: str) -> None:
    """``WrongSubAccount`` unless the key may act for ``sub_account_id``."""
    if not principal.allows(sub_account_id):
        raise WrongSubAccount(
            f"{what}.sub_account_id: expected {principal.sub_account_id} (this key's), "
            f"got {sub_account_id}"
        )


# ---------------------------------------------------------------- OpenAPI pieces

SIGNED: Final[list[dict[str, list[str]]]] = [
    {"pubkey": [], "timestamp": [], "nonce": [], "signature": []}
]
SUB_ACCOUNT_SCHEMA: Final = {"type": "integer", "minimum": 0, "maximum": SUB_ACCOUNTS_PER_OWNER - 1}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response (or request body) of ``schema`` as JSON."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_responses(*statuses: int) -> dict[str, Any]:
    """The ``Error`` response for each HTTP status."""
    error = {"$ref": "#/components/schemas/Error"}
    return {str(s): json_content(error, "refused; nothing changed") for s in statuses}


def ok_object(properties: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    """A 200 response: a JSON object with ``properties``."""
    return json_content({"type": "object", "properties": properties}, description)
