"""Withdrawal requests and the deposit / withdrawal listings (issue 7).

``POST /v1/withdrawals`` (signed): ``{"sub_account_id": 0, "amount_quote": N}`` becomes the
engine's ``Withdraw``; the engine is the authority: only free collateral may leave (else a 200
``REJECTED`` with ``WITHDRAWAL_ABOVE_FREE_COLLATERAL``, nothing changes). An accepted request is
a journaled ``CollateralWithdrawn`` (``status: REQUESTED`` and its ``sequence``); the main job's
withdrawal executor (``settlement/withdrawals.py``) then moves the tokens on-chain, exactly once,
to the owner wallet's associated token account of the collateral mint.

``GET /v1/withdrawals``: the owner's withdrawals, newest first: ``requested``, ``rejected`` (the
engine's code), ``executed`` (the on-chain signature) or ``failed`` (the program refused it: a
reconciliation incident). ``GET /v1/deposits``: credited on-chain deposits with their signature.

Where the rows come from: this module keeps what the engine published since the API started
(``CollateralWithdrawn`` / ``CollateralDeposited`` and the rejections of its own requests, bounded
per owner); the main job attaches the executor and the deposit bridge (``FundsView.attach``),
whose persisted records cover earlier history and the on-chain outcome. No request calls the
cluster's RPC.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Final, Protocol

from aiohttp import web

from exchange.api import codec
from exchange.api.errors import WrongSubAccount
from exchange.api.signed_routes import (
    SIGNED,
    SUB_ACCOUNT_SCHEMA,
    Authenticate,
    check_sub_account,
    error_responses,
    json_content,
    json_response,
    request_object,
)
from exchange.core.commands import Withdraw
from exchange.core.errors import RejectCode
from exchange.core.events import CollateralDeposited, CollateralWithdrawn, Event, OrderRejected
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER
from exchange.core.units import I64_MAX

REQUESTED: Final = "requested"
REJECTED: Final = "rejected"
_WITHDRAW_FIELDS: Final = frozenset({"sub_account_id", "amount_quote"})


class WithdrawalSource(Protocol):
    def withdrawals(self, owner_id: int) -> list[dict[str, Any]]: ...


class DepositSource(Protocol):
    def deposits(self, owner_id: int) -> list[dict[str, Any]]: ...


class FundsView:
    """The API's withdrawals and deposits per owner (see the module docstring)."""

    def __init__(self, kept_per_owner: int = 1_000) -> None:
        self.kept_per_owner = kept_per_owner
        self.withdrawal_source: WithdrawalSource | None = None
        self.deposit_source: DepositSource | None = None
        self._withdrawals: dict[int, deque[dict[str, Any]]] = {}
        self._deposits: dict[int, deque[dict[str, Any]]] = {}

    def attach(
        self,
        *,
        withdrawals: WithdrawalSource | None = None,
        deposits: DepositSource | None = None,
    ) -> None:
        """The main job's withdrawal executor and deposit bridge (persisted, on-chain view)."""
        self.withdrawal_source = withdrawals
        self.deposit_source = deposits

    def _keep(
        self, rows: dict[int, deque[dict[str, Any]]], owner_id: int, row: dict[str, Any]
    ) -> None:
        rows.setdefault(owner_id, deque(maxlen=self.kept_per_owner)).append(row)

    def on_events(self, events: list[Event], _update: Any = None) -> None:
        """An engine batch (an ``EnginePort`` listener)."""
        for e in events:
            if type(e) is CollateralWithdrawn:
                self._keep(self._withdrawals, e.owner_id, {
                    "sequence": e.seq, "ts_ns": e.ts_ns, "sub_account_id": e.sub_account_id,
                    "amount_quote": e.amount_quote, "status": REQUESTED, "signature": None,
                })  # fmt: skip
            elif type(e) is CollateralDeposited:
                self._keep(self._deposits, e.owner_id, {
                    "sequence": e.seq, "ts_ns": e.ts_ns, "sub_account_id": e.sub_account_id,
                    "amount_quote": e.amount_quote, "status": "credited", "signature": None,
                })  # fmt: skip

    def rejected(
        self, owner_id: int, sub_account_id: int, amount_quote: int, e: OrderRejected
    ) -> dict[str, Any]:
        row = {
            "sequence": e.seq, "ts_ns": e.ts_ns, "sub_account_id": sub_account_id,
            "amount_quote": amount_quote, "status": REJECTED, "signature": None,
            "reject_code": e.code, "reject_code_name": RejectCode(e.code).name,
            "message": e.message,
        }  # fmt: skip
        self._keep(self._withdrawals, owner_id, row)
        return row

    @staticmethod
    def _merge(
        local: list[dict[str, Any]], persisted: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        # the persisted (on-chain aware) row wins for the same engine sequence
        by_seq = {r["sequence"]: r for r in local}
        by_seq.update({r["sequence"]: r for r in persisted})
        return [by_seq[s] for s in sorted(by_seq, reverse=True)]

    def withdrawals(self, owner_id: int) -> list[dict[str, Any]]:
        source = self.withdrawal_source
        persisted = source.withdrawals(owner_id) if source is not None else []
        return self._merge(list(self._withdrawals.get(owner_id, ())), persisted)

    def deposits(self, owner_id: int) -> list[dict[str, Any]]:
        source = self.deposit_source
        persisted = source.deposits(owner_id) if source is not None else []
        return self._merge(list(self._deposits.get(owner_id, ())), persisted)


FUNDS_KEY: Final = web.AppKey("funds_view", FundsView)


def withdraw_command(obj: Any, owner_id: int, default_sub: int | None) -> Withdraw:
    """``{"sub_account_id", "amount_quote"}`` -> ``Withdraw``, or ``MalformedRequest``."""
    obj = request_object(obj, "withdrawal", _WITHDRAW_FIELDS, ("amount_quote",))
    amount = codec.int_field("withdrawal.amount_quote", obj["amount_quote"], 1, I64_MAX)
    sub = obj.get("sub_account_id", default_sub if default_sub is not None else 0)
    sub = codec.int_field("withdrawal.sub_account_id", sub, 0, SUB_ACCOUNTS_PER_OWNER - 1)
    return Withdraw(owner_id, sub, amount)


def install_withdrawals(
    app: web.Application, port: Any, authenticate: Authenticate, *, kept_per_owner: int = 1_000
) -> FundsView:
    """Add the withdrawal and deposit routes and a ``FundsView`` (``app[FUNDS_KEY]``) fed by
    ``port``'s engine batches. ``authenticate`` checks the signature and spends a token."""
    view = FundsView(kept_per_owner)
    app[FUNDS_KEY] = view

    async def listen(app: web.Application) -> AsyncIterator[None]:
        remove = port.listen(view.on_events)  # after the engine port started (ctx order)
        yield
        remove()

    app.cleanup_ctx.append(listen)

    def mine(
        principal: Any, rows: list[dict[str, Any]], request: web.Request
    ) -> list[dict[str, Any]]:
        sub = principal.sub_account_id
        if "sub_account_id" in request.query:
            asked = codec.int_query(
                request.query, "sub_account_id", 0, 0, SUB_ACCOUNTS_PER_OWNER - 1
            )
            if sub is not None and asked != sub:
                raise WrongSubAccount(f"sub_account_id: expected {sub} (this key's), got {asked}")
            sub = asked
        limit = codec.int_query(request.query, "limit", 100, 1, kept_per_owner)
        return [r for r in rows if sub is None or r["sub_account_id"] == sub][:limit]

    async def post_withdrawal(request: web.Request) -> web.Response:
        principal, body = await authenticate(request)
        cmd = withdraw_command(codec.parse_json(body), principal.owner_id, principal.sub_account_id)
        check_sub_account(principal, cmd.sub_account_id, "withdrawal")
        events = await port.submit(cmd)
        for e in events:
            if type(e) is CollateralWithdrawn:
                return json_response({
                    "status": "REQUESTED", "sequence": e.seq, "sub_account_id": e.sub_account_id,
                    "amount_quote": e.amount_quote, "collateral_quote": e.collateral_quote,
                })  # fmt: skip
            if type(e) is OrderRejected:
                row = view.rejected(principal.owner_id, cmd.sub_account_id, cmd.amount_quote, e)
                return json_response({
                    "status": "REJECTED", "sequence": e.seq, "sub_account_id": cmd.sub_account_id,
                    "amount_quote": cmd.amount_quote, "reject_code": e.code,
                    "reject_code_name": row["reject_code_name"], "message": e.message,
                })  # fmt: skip
        raise RuntimeError(
            f"withdrawal: expected CollateralWithdrawn or OrderRejected, got {events!r}"
        )

    async def get_withdrawals(request: web.Request) -> web.Response:
        principal, _ = await authenticate(request)
        rows = mine(principal, view.withdrawals(principal.owner_id), request)
        return json_response({"on_chain": view.withdrawal_source is not None, "withdrawals": rows})

    async def get_deposits(request: web.Request) -> web.Response:
        principal, _ = await authenticate(request)
        rows = mine(principal, view.deposits(principal.owner_id), request)
        return json_response({"on_chain": view.deposit_source is not None, "deposits": rows})

    app.router.add_post("/v1/withdrawals", post_withdrawal)
    app.router.add_get("/v1/withdrawals", get_withdrawals)
    app.router.add_get("/v1/deposits", get_deposits)
    return view


def withdrawal_paths() -> dict[str, Any]:
    """The OpenAPI entries of the routes above."""
    errors = error_responses(400, 401, 403, 429)
    integer, nullable_str = {"type": "integer"}, {"type": ["string", "null"]}
    sub = SUB_ACCOUNT_SCHEMA
    row = {"type": "object", "properties": {
        "sequence": integer, "ts_ns": integer, "sub_account_id": integer, "amount_quote": integer,
        "status": {"type": "string"}, "signature": nullable_str}}  # fmt: skip
    listing_params = [
        {"name": "sub_account_id", "in": "query", "required": False, "schema": sub},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1}, "description": "default 100"},
    ]  # fmt: skip

    def listing(key: str, summary: str) -> dict[str, Any]:
        schema = {"type": "object", "properties": {
            "on_chain": {"type": "boolean"}, key: {"type": "array", "items": row}}}  # fmt: skip
        return {"get": {"summary": summary, "security": SIGNED, "parameters": listing_params,
                        "responses": {"200": json_content(schema, "ok"), **errors}}}  # fmt: skip

    body = {"type": "object", "additionalProperties": False, "required": ["amount_quote"],
            "properties": {"sub_account_id": sub,
                           "amount_quote": {"type": "integer", "minimum": 1, "maximum": I64_MAX,
                                            "description": "QUOTE_PRECISION (1e6)"}}}  # fmt: skip
    result = {"type": "object", "properties": {
        "status": {"type": "string", "enum": ["REQUESTED", "REJECTED"]}, "sequence": integer,
        "sub_account_id": integer, "amount_quote": integer, "collateral_quote": integer,
        "reject_code": integer, "reject_code_name": {"type": "string"},
        "message": {"type": "string"}}}  # fmt: skip
    return {
        "/v1/withdrawals": {
            "post": {
                "summary": "Request a withdrawal of free collateral (QUOTE_PRECISION) to the "
                "owner wallet's associated token account; REJECTED with "
                "WITHDRAWAL_ABOVE_FREE_COLLATERAL when more than the free collateral",
                "security": SIGNED,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": {"200": json_content(result, "processed by the engine"), **errors},
            },
            **listing(
                "withdrawals",
                "The owner's withdrawals, newest first: requested, "
                "rejected (engine code), executed (on-chain signature), failed (the "
                "program refused it: an incident)",
            ),
        },
        "/v1/deposits": listing(
            "deposits", "The owner's credited on-chain deposits, newest first (signature)"
        ),
    }
