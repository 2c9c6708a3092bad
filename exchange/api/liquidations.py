"""Liquidation endpoints for keepers (issue 6).

``POST /v1/liquidations`` (signed): ``{"target_owner_id", "target_sub_account_id",
"market_id"?, "sub_account_id"?}`` becomes the engine's ``Liquidate`` with the key's account
(``sub_account_id``, default the key's own or 0) as the liquidator. The engine decides: the
answer is ``LIQUIDATED`` with the liquidation's events (``LiquidationExecuted`` per slice,
``PositionDeleveraged``, ``InsuranceFundPaidBadDebt``, ``AccountLiquidated``) and the
liquidator's fee share, or ``REJECTED`` with the engine's code: ``LIQUIDATION_NOT_ELIGIBLE``
(no longer below maintenance: another keeper was first), ``LIQUIDATION_ORACLE_INVALID``
(stale or invalid oracle), ``LIQUIDATION_SELF`` (same owner), ``LIQUIDATOR_INSUFFICIENT_MARGIN``
or ``UNKNOWN_MARKET``. Either way the engine's sequence is the one order of all keepers:
the first valid ``Liquidate`` wins, nothing is applied twice.

``GET /v1/liquidations/candidates`` (public): the accounts the sweeper finds below
maintenance at fresh, valid oracles now, exactly re-checked, largest shortfall first. The
sweeper (``liquidation.keeper.LiquidationWatch``) runs over the API's read model (the fold of
the engine's events, so the answer is as of ``as_of_seq``), synced after every engine batch;
a screen runs at most once per batch and ``_SCREEN_EVERY_NS`` (oracle freshness depends on
time). The mirror uses the engine's own oracle age limit.

``GET /v1/accounts/{owner_id}/{sub_account_id}/adl-rank`` (signed, the owner's key): every
open position's current ADL rank within its side (1 = deleveraged first), with the side's
size, by the published score (``docs/PROTOCOL.md``, Liquidation).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from aiohttp import web

from exchange.api import codec
from exchange.api.errors import (
    AuthError,
    MalformedRequest,
    NotFound,
    UnknownMarket,
    WrongSubAccount,
)
from exchange.api.read_model import event_json
from exchange.api.signed_routes import (
    SIGNED,
    SUB_ACCOUNT_SCHEMA,
    Authenticate,
    check_sub_account,
    error_responses,
    json_response,
    ok_object,
    request_object,
)
from exchange.core.commands import Liquidate
from exchange.core.errors import RejectCode
from exchange.core.events import (
    NO_MARKET_ID,
    AccountLiquidated,
    Event,
    InsuranceFundPaidBadDebt,
    LiquidationExecuted,
    OrderRejected,
    PositionDeleveraged,
)
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER
from exchange.core.units import U32_MAX
from liquidation.keeper import Candidate, LiquidationWatch

_SCREEN_EVERY_NS: Final = 100_000_000  # a cached screen is reused within 100 ms and one batch
_LIQUIDATE_FIELDS: Final = frozenset(
    {"target_owner_id", "target_sub_account_id", "market_id", "sub_account_id"}
)
_LIQUIDATION_EVENTS: Final = (
    LiquidationExecuted,
    PositionDeleveraged,
    InsuranceFundPaidBadDebt,
    AccountLiquidated,
)


class WrongOwner(AuthError):
    """The key acts for another owner than the one the path names."""

    code = "AUTH_WRONG_OWNER"
    status = 403


class LiquidationView:
    """A sweeper over the API's read model and a cached screen of it."""

    def __init__(self, port: Any, engine_core: Any, clock_ns: Callable[[], int]) -> None:
        self.port = port
        self.engine_core = engine_core
        self.clock_ns = clock_ns
        self.watch: LiquidationWatch | None = None
        self._cached: tuple[int, int, list[Candidate]] | None = None  # (seq, ts, candidates)

    def start(self) -> None:
        """Build the sweeper over the read model (after the engine port started)."""
        mirror = self.port.model.core
        if not hasattr(mirror, "accounts") or not hasattr(mirror, "_liquidation_oracles"):
            return  # a bare matching core: nothing to liquidate
        # The mirror is rebuilt from a snapshot with default settings: use the engine's
        # oracle age limit, as a Liquidate would (a frozen setting, safe to read).
        mirror.liquidation_max_oracle_age_ns = self.engine_core.liquidation_max_oracle_age_ns
        self.watch = LiquidationWatch(mirror)

    def on_events(self, events: list[Event], _update: Any = None) -> None:
        """An engine batch (an ``EnginePort`` listener): re-read the accounts it touched."""
        if self.watch is not None:
            self.watch.sync(events)
            self._cached = None

    def candidates(self) -> tuple[int, int, list[Candidate]]:
        """(as of seq, at ts_ns, candidates largest shortfall first)."""
        watch = self.watch
        if watch is None:
            raise NotFound("candidates: expected an engine running the perp clearinghouse")
        now_ns = self.clock_ns()
        seq = self.port.model.last_seq
        cached = self._cached
        if cached is not None and cached[0] == seq and now_ns - cached[1] < _SCREEN_EVERY_NS:
            return cached
        found = sorted(watch.candidates(now_ns), key=lambda c: (-c.shortfall_quote, c.account_id))
        self._cached = (seq, now_ns, found)
        return self._cached


LIQUIDATION_VIEW_KEY: Final = web.AppKey("liquidation_view", LiquidationView)


def candidate_json(c: Candidate) -> dict[str, Any]:
    return {
        "owner_id": c.owner_id,
        "sub_account_id": c.sub_account_id,
        "equity_quote": c.equity_quote,
        "maintenance_margin_quote": c.maintenance_quote,
        "shortfall_quote": c.shortfall_quote,
        "health": "LIQUIDATABLE",
    }


def liquidate_command(obj: Any, owner_id: int, default_sub: int | None) -> Liquidate:
    """The request body -> ``Liquidate`` with ``owner_id`` as the liquidator."""
    obj = request_object(obj, "liquidation", _LIQUIDATE_FIELDS, ("target_owner_id",))
    last_sub = SUB_ACCOUNTS_PER_OWNER - 1
    target = codec.int_field("liquidation.target_owner_id", obj["target_owner_id"], 0, U32_MAX)
    target_sub = codec.int_field(
        "liquidation.target_sub_account_id", obj.get("target_sub_account_id", 0), 0, last_sub
    )
    market_id = codec.int_field(
        "liquidation.market_id", obj.get("market_id", NO_MARKET_ID), 0, NO_MARKET_ID
    )
    sub = obj.get("sub_account_id", default_sub if default_sub is not None else 0)
    sub = codec.int_field("liquidation.sub_account_id", sub, 0, last_sub)
    return Liquidate(owner_id, sub, target, target_sub, market_id)


def liquidation_result(cmd: Liquidate, events: list[Event]) -> dict[str, Any]:
    """The answer to one ``Liquidate``: its outcome, the liquidation's events, the fee share."""
    head = {
        "liquidator_owner_id": cmd.owner_id,
        "liquidator_sub_account_id": cmd.sub_account_id,
        "target_owner_id": cmd.target_owner_id,
        "target_sub_account_id": cmd.target_sub_account_id,
        "market_id": cmd.market_id,
    }
    for e in events:
        if type(e) is OrderRejected:
            return {
                "status": "REJECTED", **head, "sequence": e.seq, "reject_code": e.code,
                "reject_code_name": RejectCode(e.code).name, "message": e.message,
            }  # fmt: skip
    own = [e for e in events if type(e) in _LIQUIDATION_EVENTS]
    done = [e for e in own if type(e) is AccountLiquidated]
    if not done:
        raise RuntimeError(
            f"liquidation: expected AccountLiquidated or OrderRejected, got {events!r}"
        )
    slices = [e for e in own if type(e) is LiquidationExecuted]
    return {
        "status": "LIQUIDATED", **head, "sequence": done[0].seq,
        "liquidator_fee_quote": sum(e.liquidator_fee_quote for e in slices),
        "base_taken": {str(e.market_id): -e.base_delta for e in slices},
        "events": [event_json(e) for e in own],
    }  # fmt: skip


def _path_int(request: web.Request, name: str, hi: int) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or int(raw) > hi:
        raise MalformedRequest(f"{name}: expected an integer in 0..{hi}, got {raw!r}")
    return int(raw)


def install_liquidations(
    app: web.Application,
    port: Any,
    authenticate: Authenticate,
    public_limit: Callable[[web.Request], None],
    *,
    engine_core: Any,
    clock_ns: Callable[[], int],
) -> LiquidationView:
    """Add the liquidation routes and a ``LiquidationView`` (``app[LIQUIDATION_VIEW_KEY]``)
    fed by ``port``'s engine batches; ``engine_core`` is read once for its oracle age limit."""
    view = LiquidationView(port, engine_core, clock_ns)
    app[LIQUIDATION_VIEW_KEY] = view

    async def listen(app: web.Application) -> AsyncIterator[None]:
        view.start()  # after the engine port started (ctx order)
        remove = port.listen(view.on_events)
        yield
        remove()

    app.cleanup_ctx.append(listen)

    async def post_liquidation(request: web.Request) -> web.Response:
        principal, body = await authenticate(request)
        cmd = liquidate_command(
            codec.parse_json(body), principal.owner_id, principal.sub_account_id
        )
        check_sub_account(principal, cmd.sub_account_id, "liquidation")
        if cmd.market_id != NO_MARKET_ID and not port.has_market(cmd.market_id):
            known = [m["market_id"] for m in port.markets()]
            raise UnknownMarket(
                f"liquidation.market_id: expected one of {known} or {NO_MARKET_ID} (all), "
                f"got {cmd.market_id}"
            )
        return json_response(liquidation_result(cmd, await port.submit(cmd)))

    async def get_candidates(request: web.Request) -> web.Response:
        public_limit(request)
        limit = codec.int_query(request.query, "limit", 100, 1, 10_000)
        seq, ts_ns, found = view.candidates()
        return json_response({
            "as_of_seq": seq, "ts_ns": ts_ns, "count": len(found),
            "candidates": [candidate_json(c) for c in found[:limit]],
        })  # fmt: skip

    async def get_adl_rank(request: web.Request) -> web.Response:
        principal, _ = await authenticate(request)
        owner_id = _path_int(request, "owner_id", U32_MAX)
        sub = _path_int(request, "sub_account_id", SUB_ACCOUNTS_PER_OWNER - 1)
        if owner_id != principal.owner_id:
            raise WrongOwner(
                f"owner_id: expected {principal.owner_id} (this key's), got {owner_id}"
            )
        if not principal.allows(sub):
            raise WrongSubAccount(
                f"sub_account_id: expected {principal.sub_account_id} (this key's), got {sub}"
            )
        ch = port.model.core
        if not hasattr(ch, "adl_ranks"):
            raise NotFound("adl-rank: expected an engine running the perp clearinghouse")
        account_id = owner_id * SUB_ACCOUNTS_PER_OWNER + sub
        acct = ch.accounts.get(account_id)
        rows = []
        for market_id, position in sorted(acct.positions.items() if acct is not None else ()):
            ranks = ch.adl_ranks(market_id)
            long = position.base > 0
            side_size = sum(
                1 for a in ranks if (ch.accounts[a].positions[market_id].base > 0) == long
            )
            rows.append({
                "market_id": market_id, "base": position.base,
                "side": "LONG" if long else "SHORT", "adl_rank": ranks.get(account_id),
                "side_positions": side_size,
            })  # fmt: skip
        return json_response({
            "owner_id": owner_id, "sub_account_id": sub, "as_of_seq": port.model.last_seq,
            "positions": rows,
        })  # fmt: skip

    app.router.add_post("/v1/liquidations", post_liquidation)
    app.router.add_get("/v1/liquidations/candidates", get_candidates)
    app.router.add_get("/v1/accounts/{owner_id}/{sub_account_id}/adl-rank", get_adl_rank)
    return view


def liquidation_paths() -> dict[str, Any]:
    """The OpenAPI entries of the routes above."""
    security, errors, ok = SIGNED, error_responses, ok_object
    integer, string = {"type": "integer"}, {"type": "string"}
    sub = SUB_ACCOUNT_SCHEMA
    body = {"type": "object", "additionalProperties": False, "required": ["target_owner_id"],
            "properties": {
                "target_owner_id": {"type": "integer", "minimum": 0, "maximum": U32_MAX},
                "target_sub_account_id": {**sub, "description": "default 0"},
                "market_id": {"type": "integer", "minimum": 0, "maximum": NO_MARKET_ID,
                              "description": f"only this market's slices; default {NO_MARKET_ID} = all"},
                "sub_account_id": {**sub, "description": "the liquidator's; default the key's or 0"},
            }}  # fmt: skip
    candidate = {"type": "object", "properties": {
        "owner_id": integer, "sub_account_id": integer, "equity_quote": integer,
        "maintenance_margin_quote": integer, "shortfall_quote": integer, "health": string}}  # fmt: skip
    rank = {"type": "object", "properties": {
        "market_id": integer, "base": integer, "side": {"type": "string", "enum": ["LONG", "SHORT"]},
        "adl_rank": {"type": ["integer", "null"]}, "side_positions": integer}}  # fmt: skip
    return {
        "/v1/liquidations": {
            "post": {
                "summary": "Liquidate a target account into the key's sub-account (the engine's "
                "Liquidate): LIQUIDATED with the events and the liquidator's fee share, or "
                "REJECTED with the engine's code (LIQUIDATION_NOT_ELIGIBLE: not below "
                "maintenance any more, e.g. another keeper was first; LIQUIDATION_ORACLE_INVALID; "
                "LIQUIDATION_SELF; LIQUIDATOR_INSUFFICIENT_MARGIN; UNKNOWN_MARKET)",
                "security": security,
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": body}}},
                "responses": {
                    "200": ok({"status": {"type": "string", "enum": ["LIQUIDATED", "REJECTED"]},
                               "sequence": integer, "liquidator_owner_id": integer,
                               "liquidator_sub_account_id": integer, "target_owner_id": integer,
                               "target_sub_account_id": integer, "market_id": integer,
                               "liquidator_fee_quote": integer, "base_taken": {"type": "object"},
                               "events": {"type": "array", "items": {"type": "object"}},
                               "reject_code": integer, "reject_code_name": string,
                               "message": string}),
                    **errors(400, 401, 403, 404, 429, 503),
                },
            }
        },
        "/v1/liquidations/candidates": {
            "get": {
                "summary": "Accounts below maintenance at fresh, valid oracles now (the sweeper's "
                "screen, exactly re-checked), largest shortfall first (QUOTE_PRECISION)",
                "parameters": [{"name": "limit", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1, "maximum": 10_000},
                                "description": "default 100"}],
                "responses": {
                    "200": ok({"as_of_seq": integer, "ts_ns": integer, "count": integer,
                               "candidates": {"type": "array", "items": candidate}}),
                    **errors(400, 404, 429),
                },
            }
        },
        "/v1/accounts/{owner_id}/{sub_account_id}/adl-rank": {
            "get": {
                "summary": "The sub-account's positions with their current ADL rank within their "
                "side (1 = deleveraged first), for the owner's key",
                "security": security,
                "parameters": [
                    {"name": "owner_id", "in": "path", "required": True, "schema": integer},
                    {"name": "sub_account_id", "in": "path", "required": True, "schema": sub},
                ],
                "responses": {
                    "200": ok({"owner_id": integer, "sub_account_id": integer,
                               "as_of_seq": integer,
                               "positions": {"type": "array", "items": rank}}),
                    **errors(400, 401, 403, 404, 429),
                },
            }
        },
    }  # fmt: skip
