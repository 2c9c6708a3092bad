"""``GET /v1/account``: who the signing key is, and the account registry behind API auth.

Open sign-up (docs/PROTOCOL.md, Account registry): a wallet's first on-chain deposit makes the
engine register it (``AccountRegistered``: owner ``FIRST_REGISTERED_OWNER_ID + n``,
sub-account 0) before the deposit is credited. The API's ``OwnerRegistry`` resolves a key it
has no static binding for (``[api.owners]``) through that registry as the read model holds it
(the engine port's mirror of the clearinghouse), so a wallet can sign requests as soon as its
deposit was registered, with no configuration and across restarts (the registry is state).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from exchange.api.auth import OwnerRegistry
from exchange.api.engine_port import EnginePort
from exchange.api.service import Principal
from exchange.api.signed_routes import json_response
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER

Authenticate = Callable[[web.Request], Awaitable[tuple[Principal, bytes]]]


def registry_lookup(port: EnginePort) -> Callable[[str], tuple[int, int] | None]:
    """``wallet hex -> (owner_id, sub_account_id)`` from the read model's clearinghouse
    (``None`` for an unregistered wallet, or an engine without a registry)."""

    def lookup(wallet_pubkey_hex: str) -> tuple[int, int] | None:
        registered = getattr(port.model.core, "registered_account", None)
        return None if registered is None else registered(wallet_pubkey_hex)

    return lookup


def install_account(
    app: web.Application, port: EnginePort, authenticate: Authenticate, registry: OwnerRegistry
) -> None:
    """Resolve keys through the engine's registry too, and add ``GET /v1/account``."""
    registry.attach_registry(registry_lookup(port))

    async def get_account(request: web.Request) -> web.Response:
        principal, _ = await authenticate(request)
        owner_id, sub_account_id = principal.owner_id, principal.sub_account_id
        if sub_account_id is not None:
            subs = [sub_account_id]
        else:  # an all-sub-accounts key ([api.owners]): the ones holding state
            held = getattr(port.model.core, "accounts", {})
            subs = sorted(
                a % SUB_ACCOUNTS_PER_OWNER for a in held if a // SUB_ACCOUNTS_PER_OWNER == owner_id
            )
        body = {
            "pubkey": principal.pubkey,
            "owner_id": owner_id,
            "sub_account_id": sub_account_id,
            "sub_account_ids": subs,
            "source": registry.source_of(principal.pubkey),
        }
        return json_response(body)

    app.router.add_get("/v1/account", get_account)


def account_paths() -> dict[str, Any]:
    """The OpenAPI entry of ``GET /v1/account``."""
    error = {"$ref": "#/components/schemas/Error"}
    errors = {
        str(s): {"description": "refused; nothing changed",
                 "content": {"application/json": {"schema": error}}}
        for s in (400, 401, 403, 429)
    }  # fmt: skip
    nullable_sub = {"type": ["integer", "null"], "description": "null: every sub-account"}
    schema = {
        "type": "object",
        "properties": {
            "pubkey": {"type": "string"},
            "owner_id": {"type": "integer"},
            "sub_account_id": nullable_sub,
            "sub_account_ids": {"type": "array", "items": {"type": "integer"}},
            "source": {"type": "string", "enum": ["registry", "config"]},
        },
    }
    return {
        "/v1/account": {
            "get": {
                "summary": "who the signing key is: its owner and sub-account (a key of an "
                "unregistered wallet is 403 AUTH_UNKNOWN_KEY: deposit on-chain first)",
                "security": [{"pubkey": [], "timestamp": [], "nonce": [], "signature": []}],
                "parameters": [],
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {"application/json": {"schema": schema}},
                    },
                    **errors,
                },
            }
        }
    }
