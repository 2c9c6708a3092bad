"""Order entry shared by REST and WebSocket: checks against the read model, then the engine.

Checks made here (unknown market, unknown order, oversized batch) refuse a request before it
reaches the engine, so a refused request changes nothing, not even the event sequence. What
only the engine can decide (price on tick, post-only crossing, margin...) comes back as an
``OrderRejected`` event with its ``RejectCode``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from exchange.api import codec
from exchange.api.engine_port import EnginePort
from exchange.api.errors import UnknownMarket, UnknownOrder
from exchange.api.read_model import event_json, fills_of
from exchange.api.signed_routes import check_sub_account
from exchange.core.commands import CancelAll, Command
from exchange.core.errors import RejectCode
from exchange.core.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
    TradeExecuted,
)
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER

#: A checked request: its commands, and the answer built from their events.
Request = tuple[list[Command], Callable[[list[list[Event]]], Any]]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who signed a request: the key, its owner, and the one sub-account it is limited to
    (``None``: every sub-account of the owner)."""

    pubkey: str
    owner_id: int
    sub_account_id: int | None = None

    def allows(self, sub_account_id: int) -> bool:
        return self.sub_account_id is None or self.sub_account_id == sub_account_id


def scoped_json(principal: Principal, pairs: Iterable[tuple[int, Event]]) -> list[dict[str, Any]]:
    """``(sub_account_id, event)`` pairs of the principal's owner as the principal may see
    them: a key limited to one sub-account sees that sub-account's side only."""
    out: list[dict[str, Any]] = []
    for sub, event in pairs:
        if not principal.allows(sub):
            continue
        for item in private_json(principal.owner_id, event):
            if principal.allows(item.get("sub_account_id", sub)):
                out.append(item)
    return out


def private_json(owner_id: int, event: Event) -> list[dict[str, Any]]:
    """An event as its owner sees it: no counterparty. Trades become the owner's fills;
    other two-sided events (``maker_*`` / ``taker_*`` fields, e.g. a fill's settlement) keep
    the owner's side with the prefix dropped and a ``liquidity`` field."""
    if type(event) is TradeExecuted:
        return [{"type": "Fill", **f} for f in fills_of(event) if f["owner_id"] == owner_id]
    if "maker_owner_id" not in type(event)._fields:
        return [event_json(event)]
    fields = event._asdict()
    out = []
    for side in ("maker", "taker"):
        if fields[f"{side}_owner_id"] != owner_id:
            continue
        mine: dict[str, Any] = {"type": type(event).__name__, "liquidity": side.upper()}
        for name, value in fields.items():
            if name.startswith(f"{side}_"):
                mine[name[len(side) + 1 :]] = value
            elif not name.startswith(("maker_", "taker_")) or name == "taker_side":
                mine[name] = value
        out.append(mine)
    return out


def public_trade_json(t: TradeExecuted) -> dict[str, Any]:
    """A trade for the public feed: no owners, no order ids."""
    return {
        "seq": t.seq,
        "ts_ns": t.ts_ns,
        "market_id": t.market_id,
        "price_ticks": t.price_ticks,
        "num_base_lots": t.num_base_lots,
        "taker_side": "BID" if t.taker_side == 0 else "ASK",
    }


def command_result(
    owner_id: int, events: list[Event], first_kinds: tuple[type, ...]
) -> dict[str, Any]:
    """The acknowledgement of one command: its outcome and its own events.

    Events before the command's first own event (orders of others that expired first) are
    left out.
    """
    start = 0
    for e in events:
        kind = type(e)
        if kind in first_kinds or kind is OrderRejected:
            break
        start += 1
    own = events[start:] if start else events
    result: dict[str, Any] = {"status": "ACCEPTED", "order_id": 0}
    if own:
        head = own[0]
        if type(head) is OrderRejected:
            result["status"] = "REJECTED"
            result["reject_code"] = head.code
            result["reject_code_name"] = RejectCode(head.code).name
            result["message"] = head.message
        result["order_id"] = getattr(head, "order_id", 0)
        if type(head) is OrderAccepted:
            result["client_order_id"] = head.client_order_id
    out: list[dict[str, Any]] = []
    for e in own:
        # most events are one-sided: the owner sees them whole (no per-event list)
        one_sided = _ONE_SIDED.get(type(e))
        if one_sided is None:
            one_sided = _one_sided(type(e))
        if one_sided:
            out.append(event_json(e))
        else:
            out.extend(private_json(owner_id, e))
    result["events"] = out
    return result


_ONE_SIDED: dict[type, bool] = {}  # event kind -> private_json(e) == [event_json(e)]


def _one_sided(kind: type) -> bool:
    one = kind is not TradeExecuted and "maker_owner_id" not in kind._fields  # type: ignore[attr-defined]
    _ONE_SIDED[kind] = one
    return one


_PLACE_HEADS = (OrderAccepted,)


def _first_result(
    owner_id: int, heads: tuple[type, ...], results: list[list[Event]]
) -> dict[str, Any]:
    return command_result(owner_id, results[0], heads)


def _all_results(
    owner_id: int, heads: tuple[type, ...], results: list[list[Event]]
) -> list[dict[str, Any]]:
    return [command_result(owner_id, events, heads) for events in results]


def _canceled_ids(results: list[list[Event]]) -> dict[str, Any]:
    canceled = [e.order_id for events in results for e in events if type(e) is OrderCanceled]
    return {"canceled_order_ids": sorted(canceled)}


_CANCEL_HEADS = (OrderCanceled,)
_AMEND_HEADS = (OrderAmended,)


def _with_default_sub(principal: Principal, obj: Any) -> Any:
    # a key limited to one sub-account acts on it when the request names none
    if principal.sub_account_id is not None and type(obj) is dict and "sub_account_id" not in obj:
        return {**obj, "sub_account_id": principal.sub_account_id}
    return obj


class OrderService:
    """Place, cancel, amend, batch and cancel-all for one authenticated principal at a time."""

    def __init__(self, port: EnginePort, *, max_batch_orders: int) -> None:
        self.port = port
        self.max_batch_orders = max_batch_orders

    def _market(self, market_id: int) -> None:
        if not self.port.has_market(market_id):
            raise UnknownMarket(
                f"market_id: expected one of {[m['market_id'] for m in self.port.markets()]}, "
                f"got {market_id}"
            )

    def _place_cmd(self, principal: Principal, obj: Any, what: str) -> Command:
        cmd = codec.place_command(_with_default_sub(principal, obj), principal.owner_id, what)
        check_sub_account(principal, cmd.sub_account_id, what)
        self._market(cmd.market_id)
        return cmd

    def _live_order(self, principal: Principal, market_id: int, order_id: int, what: str) -> Any:
        order = self.port.model.find_order(principal.owner_id, market_id, order_id)
        if order is None or not principal.allows(order.sub_account_id):
            raise UnknownOrder(
                f"{what}.order_id: expected a live order of yours in market {market_id}, "
                f"got {order_id}"
            )
        return order

    def _cancel_cmd(self, principal: Principal, obj: Any, what: str) -> Command:
        cmd = codec.cancel_command(_with_default_sub(principal, obj), principal.owner_id, what)
        self._market(cmd.market_id)
        if cmd.order_id:
            order = self._live_order(principal, cmd.market_id, cmd.order_id, what)
            # the live order names its sub-account: the client need not repeat it
            return cmd._replace(sub_account_id=order.sub_account_id)
        check_sub_account(principal, cmd.sub_account_id, what)
        book = self.port.model.core.books[cmd.market_id]
        account = principal.owner_id * SUB_ACCOUNTS_PER_OWNER + cmd.sub_account_id
        if (account, cmd.client_order_id) not in book.client_ids:
            raise UnknownOrder(
                f"{what}.client_order_id: expected a live order of sub-account "
                f"{cmd.sub_account_id} in market {cmd.market_id}, got {cmd.client_order_id}"
            )
        return cmd

    # Each request is checked and turned into commands synchronously (``*_request``: the
    # commands and a function building the answer from their events), so a caller can queue
    # requests in arrival order and answer them when the engine is done.
    def place_request(self, principal: Principal, obj: Any) -> Request:
        cmd = self._place_cmd(principal, obj, "order")
        return [cmd], partial(_first_result, principal.owner_id, _PLACE_HEADS)

    def place_batch_request(self, principal: Principal, obj: Any) -> Request:
        """All orders are checked first: one bad item refuses the whole batch."""
        items = codec.batch_items(obj, "orders", self.max_batch_orders)
        cmds = [self._place_cmd(principal, item, f"orders[{i}]") for i, item in enumerate(items)]
        return cmds, partial(_all_results, principal.owner_id, _PLACE_HEADS)

    def cancel_request(self, principal: Principal, obj: Any) -> Request:
        cmd = self._cancel_cmd(principal, obj, "cancel")
        return [cmd], partial(_first_result, principal.owner_id, _CANCEL_HEADS)

    def cancel_batch_request(self, principal: Principal, obj: Any) -> Request:
        items = codec.batch_items(obj, "cancels", self.max_batch_orders)
        cmds = [self._cancel_cmd(principal, item, f"cancels[{i}]") for i, item in enumerate(items)]
        return cmds, partial(_all_results, principal.owner_id, _CANCEL_HEADS)

    def amend_request(self, principal: Principal, obj: Any) -> Request:
        cmd = codec.amend_command(obj, principal.owner_id, 0)
        self._market(cmd.market_id)
        order = self._live_order(principal, cmd.market_id, cmd.order_id, "amend")
        cmd = cmd._replace(sub_account_id=order.sub_account_id)
        return [cmd], partial(_first_result, principal.owner_id, _AMEND_HEADS)

    def cancel_all_request(
        self, principal: Principal, market_id: int | None, sub_account_id: int | None
    ) -> Request:
        """Cancel every live order in scope; ``None`` scopes mean all (of this key's)."""
        if market_id is not None:
            self._market(market_id)
        if sub_account_id is not None:
            check_sub_account(principal, sub_account_id, "cancel_all")
        else:
            sub_account_id = principal.sub_account_id
        owner_id = principal.owner_id
        scopes = sorted(
            {
                (o["market_id"], o["sub_account_id"])
                for o in self.port.model.open_orders(owner_id, market_id, sub_account_id)
            }
        )
        return [CancelAll(m, owner_id, s) for m, s in scopes], _canceled_ids

    async def _run(self, request: Request) -> Any:
        cmds, build = request
        return build(await self.port.submit_many(cmds) if cmds else [])

    async def place(self, principal: Principal, obj: Any) -> dict[str, Any]:
        return await self._run(self.place_request(principal, obj))  # type: ignore[no-any-return]

    async def place_batch(self, principal: Principal, obj: Any) -> list[dict[str, Any]]:
        """All orders are checked first: one bad item refuses the whole batch."""
        return await self._run(self.place_batch_request(principal, obj))  # type: ignore[no-any-return]

    async def cancel(self, principal: Principal, obj: Any) -> dict[str, Any]:
        return await self._run(self.cancel_request(principal, obj))  # type: ignore[no-any-return]

    async def cancel_batch(self, principal: Principal, obj: Any) -> list[dict[str, Any]]:
        return await self._run(self.cancel_batch_request(principal, obj))  # type: ignore[no-any-return]

    async def amend(self, principal: Principal, obj: Any) -> dict[str, Any]:
        return await self._run(self.amend_request(principal, obj))  # type: ignore[no-any-return]

    async def cancel_all(
        self, principal: Principal, market_id: int | None, sub_account_id: int | None
    ) -> dict[str, Any]:
        """Cancel every live order in scope; ``None`` scopes mean all (of this key's)."""
        request = self.cancel_all_request(principal, market_id, sub_account_id)
        return await self._run(request)  # type: ignore[no-any-return]
