"""Governance read endpoints (issue 8): the risk parameters in force per market, the global
parameters (timelock, leverage cap, escape-hatch slots) and the proposals on the clearing
program.

Where the data comes from (decided here, documented in docs/ARCHITECTURE.md, Governance):

* parameters in force: the engine's own, from the API's read model (the fold of the engine's
  events, so a ``RiskParamsChanged`` shows up in the same batch that applied it);
* proposals: a read model the main job feeds. The governance watcher
  (``settlement/gov_watcher.py``) already reads Governance, every Proposal and the Markets
  after each relevant transaction (and every ``resync_interval_s``); it hands each snapshot
  to ``GovernanceView.update``. No request ever calls the cluster's RPC: a public, rate-limited
  endpoint must not fan out into RPC calls, and every answer says which slot it is as of.
  Without a watcher feeding it, ``available`` is false and the list is empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from exchange.api.errors import MalformedRequest, UnknownMarket
from exchange.api.signed_routes import json_response

PROPOSAL_STATUSES: Final = ("pending", "executed", "cancelled", "all")


class GovernanceView:
    """The latest governance snapshot from the chain, as plain JSON (see module docstring)."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._body: dict[str, Any] | None = None
        self.updated_ns = 0

    def update(self, snapshot: Any) -> None:
        """Take a ``settlement.gov_watcher.GovernanceSnapshot`` (anything with ``to_json``)."""
        body = snapshot.to_json()
        if not isinstance(body, dict) or "proposals" not in body or "slot" not in body:
            raise ValueError(f"governance snapshot: expected slot and proposals, got {body!r}")
        self._body = body
        self.updated_ns = self._clock_ns()

    @property
    def available(self) -> bool:
        return self._body is not None

    def params(self) -> dict[str, Any]:
        """Council, threshold, guardian and the global parameters in force on the chain."""
        if self._body is None:
            return {"available": False, "as_of_slot": None, "updated_ns": 0}
        body = self._body
        return {
            "available": True,
            "as_of_slot": body["slot"],
            "updated_ns": self.updated_ns,
            "council": body["council"],
            "threshold": body["threshold"],
            "guardian": body["guardian"],
            "timelock_seconds": body["timelock_seconds"],
            "max_leverage_cap": body["max_leverage_cap"],
            "escape_hatch_slots": body["escape_hatch_slots"],
            "next_proposal_id": body["next_proposal_id"],
        }

    def proposals(self, status: str) -> dict[str, Any]:
        if self._body is None:
            return {"available": False, "as_of_slot": None, "updated_ns": 0, "proposals": []}
        chosen = [p for p in self._body["proposals"] if status == "all" or p["status"] == status]
        governance = self.params()
        del governance["next_proposal_id"]
        return {**governance, "proposals": chosen}

    def market(self, market_id: int) -> dict[str, Any] | None:
        if self._body is None:
            return None
        found: dict[str, Any] | None = self._body["markets"].get(str(market_id))
        if found is None:
            return None
        return {**found, "as_of_slot": self._body["slot"]}


GOVERNANCE_KEY: Final = web.AppKey("governance_view", GovernanceView)


def install_governance(
    app: web.Application, port: Any, limit: Callable[[web.Request], None]
) -> GovernanceView:
    """Add the governance routes and a ``GovernanceView`` (``app[GOVERNANCE_KEY]``) to ``app``.
    ``limit`` spends the caller's public rate-limit token."""
    view = GovernanceView()
    app[GOVERNANCE_KEY] = view

    async def get_risk_params(request: web.Request) -> web.Response:
        limit(request)
        raw = request.match_info["market_id"]
        if not raw.isdigit() or int(raw) > 65535:
            raise MalformedRequest(f"market_id: expected an integer in 0..65535, got {raw!r}")
        market_id = int(raw)
        core = port.model.core
        markets = getattr(core, "markets", None)
        if markets is None or market_id not in markets:
            known = sorted(markets) if markets is not None else []
            raise UnknownMarket(f"market_id: expected one of {known}, got {market_id}")
        return json_response({
            "market_id": market_id,
            "as_of_seq": port.model.last_seq,
            "params": markets[market_id].params.to_dict(),
            "status": markets[market_id].breaker.status.name,
            "on_chain": view.market(market_id),
        })  # fmt: skip

    async def get_proposals(request: web.Request) -> web.Response:
        limit(request)
        status = request.query.get("status", "pending")
        if status not in PROPOSAL_STATUSES:
            raise MalformedRequest(
                f"status: expected one of {list(PROPOSAL_STATUSES)}, got {status!r}"
            )
        return json_response(view.proposals(status))

    async def get_params(request: web.Request) -> web.Response:
        limit(request)
        return json_response(view.params())

    app.router.add_get("/v1/markets/{market_id}/risk-params", get_risk_params)
    app.router.add_get("/v1/governance/proposals", get_proposals)
    app.router.add_get("/v1/governance/params", get_params)
    return view


def governance_paths() -> dict[str, Any]:
    """The OpenAPI entries of the routes above."""
    error = {"$ref": "#/components/schemas/Error"}

    def errors(*statuses: int) -> dict[str, Any]:
        return {str(s): {"description": "refused", "content": {"application/json": {"schema": error}}}
                for s in statuses}  # fmt: skip

    def ok(properties: dict[str, Any]) -> dict[str, Any]:
        schema = {"type": "object", "properties": properties}
        return {"description": "ok", "content": {"application/json": {"schema": schema}}}

    obj, integer, string = {"type": "object"}, {"type": "integer"}, {"type": "string"}
    nullable_obj = {"type": ["object", "null"]}
    return {
        "/v1/markets/{market_id}/risk-params": {
            "get": {
                "summary": "The risk parameters in force in the engine (perp.params.PerpMarketParams, "
                "units in the names) and the Market account's governed values as of the "
                "governance read model's slot (null without a watcher)",
                "parameters": [{"name": "market_id", "in": "path", "required": True,
                                "schema": {"type": "integer", "minimum": 0, "maximum": 65535}}],
                "responses": {
                    "200": ok({"market_id": integer, "as_of_seq": integer, "params": obj,
                               "status": string, "on_chain": nullable_obj}),
                    **errors(400, 404, 429),
                },
            }
        },
        "/v1/governance/proposals": {
            "get": {
                "summary": "Proposals on the clearing program (status, approvals, earliest "
                "execution time), from the governance watcher's last read of the chain",
                "parameters": [{"name": "status", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": list(PROPOSAL_STATUSES)},
                                "description": "default pending"}],
                "responses": {
                    "200": ok({"available": {"type": "boolean"}, "as_of_slot": {"type": ["integer", "null"]},
                               "updated_ns": integer, "council": {"type": "array", "items": string},
                               "threshold": integer, "guardian": string, "timelock_seconds": integer,
                               "max_leverage_cap": integer, "escape_hatch_slots": integer,
                               "proposals": {"type": "array", "items": obj}}),
                    **errors(400, 429),
                },
            }
        },
        "/v1/governance/params": {
            "get": {
                "summary": "Council, threshold, guardian and the global parameters in force on "
                "the clearing program (timelock_seconds, max_leverage_cap, escape_hatch_slots: "
                "operator-silent slots after which wallets withdraw on-chain), from the "
                "governance watcher's last read of the chain",
                "responses": {
                    "200": ok({"available": {"type": "boolean"}, "as_of_slot": {"type": ["integer", "null"]},
                               "updated_ns": integer, "council": {"type": "array", "items": string},
                               "threshold": integer, "guardian": string, "timelock_seconds": integer,
                               "max_leverage_cap": integer, "escape_hatch_slots": integer,
                               "next_proposal_id": integer}),
                    **errors(429),
                },
            }
        },
    }  # fmt: skip
