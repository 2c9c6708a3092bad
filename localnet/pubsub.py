"""Solana PubSub (websocket JSON-RPC) for an `EmbeddedCluster` (aiohttp).

Supported: accountSubscribe, programSubscribe, signatureSubscribe, slotSubscribe, logsSubscribe,
rootSubscribe, slotsUpdatesSubscribe and their *Unsubscribe counterparts. blockSubscribe and
voteSubscribe answer "Method not found", as on a validator started without
--rpc-pubsub-enable-block-subscription / --rpc-pubsub-enable-vote-subscription (and one node
does not vote). Notifications are sent at "processed" time (the embedded
cluster reports everything as finalized at once). Commitment parameters are accepted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from solders.pubkey import Pubkey
from solders.signature import Signature

from localnet.cluster import (
    ClusterEvent,
    EmbeddedCluster,
    SignatureRecord,
    SlotEvent,
    TransactionEvent,
)
from localnet.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    AccountFilter,
    RpcError,
    account_encoding,
    config,
    deleted_account,
    dumps,
    encode_account,
    error_response,
    invalid_params,
    matches,
    param,
    parse_filters,
    pubkey_param,
    result_response,
    signature_param,
    validate_request,
)

log = logging.getLogger(__name__)

MAX_QUEUED_MESSAGES = 10_000


@dataclass
class _Connection:
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED_MESSAGES))
    subscriptions: set[int] = field(default_factory=set)

    def send(self, message: dict[str, Any] | list[Any]) -> None:
        try:
            self.queue.put_nowait(dumps(message))
        except asyncio.QueueFull:
            log.warning("pubsub client too slow: dropping a message")


@dataclass
class _Subscription:
    sub_id: int
    kind: str  # one of _KINDS
    conn: _Connection
    pubkey: Pubkey | None = None
    signature: Signature | None = None
    encoding: str = "base64"
    filters: list[AccountFilter] = field(default_factory=list)
    mentions: Pubkey | None = None


def _notification(method: str, sub_id: int, result: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": method,
        "params": {"result": result, "subscription": sub_id},
    }


class PubSubHub:
    """Tracks subscriptions and turns cluster events into notifications."""

    def __init__(self, cluster: EmbeddedCluster) -> None:
        self.cluster = cluster
        self._subs: dict[int, _Subscription] = {}
        self._next_id = 0
        self._unsubscribe_cluster: Callable[[], None] | None = None

    def start(self) -> None:
        if self._unsubscribe_cluster is None:
            self._unsubscribe_cluster = self.cluster.subscribe(self.on_event)

    def stop(self) -> None:
        if self._unsubscribe_cluster is not None:
            self._unsubscribe_cluster()
            self._unsubscribe_cluster = None

    @property
    def subscription_count(self) -> int:
        return len(self._subs)

    # ------------------------------------------------------------ subscribing
    def _add(self, sub: _Subscription) -> int:
        self._subs[sub.sub_id] = sub
        sub.conn.subscriptions.add(sub.sub_id)
        return sub.sub_id

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def handle(self, conn: _Connection, req: Any) -> None:
        """Answer one request; notifications it triggers are queued after the answer."""
        req_id = req.get("id") if isinstance(req, dict) else None
        try:
            req_id, name, params = validate_request(req)
            self.cluster.tick()
            followup = self._dispatch(conn, name, params, req_id)
        except RpcError as err:
            conn.send(error_response(req_id, err))
        except Exception as exc:
            log.exception("pubsub internal error for %r", req)
            conn.send(error_response(req_id, RpcError(INTERNAL_ERROR, f"Internal error: {exc}")))
        else:
            if followup is not None:
                followup()

    def _dispatch(
        self, conn: _Connection, name: str, params: list[Any], req_id: Any
    ) -> Callable[[], None] | None:
        if name.endswith("Unsubscribe") and name[: -len("Unsubscribe")] in _KINDS:
            sub_id = param(params, 0, "subscription id")
            sub = self._subs.get(sub_id) if isinstance(sub_id, int) else None
            if sub is None or sub.conn is not conn or sub.kind != name[: -len("Unsubscribe")]:
                raise invalid_params("Invalid subscription id.")
            self._remove(sub_id)
            conn.send(result_response(req_id, True))
            return None
        if not name.endswith("Subscribe") or name[: -len("Subscribe")] not in _KINDS:
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        kind = name[: -len("Subscribe")]
        sub = _Subscription(sub_id=0, kind=kind, conn=conn)
        if kind in ("account", "program"):
            sub.pubkey = pubkey_param(param(params, 0, "pubkey"))
            cfg = config(params, 1)
            sub.encoding = account_encoding(cfg, "base64")
            if kind == "program":
                sub.filters = parse_filters(cfg.get("filters"))
        elif kind == "signature":
            sub.signature = signature_param(param(params, 0, "signature"))
            config(params, 1)
        elif kind == "logs":
            sub.mentions = _logs_filter(param(params, 0, "filter"))
            config(params, 1)
        sub.sub_id = self._new_id()
        self._add(sub)
        conn.send(result_response(req_id, sub.sub_id))
        if kind == "signature" and sub.signature is not None:
            record = self.cluster.signature_record(sub.signature)
            if record is not None:
                return lambda: self._notify_signature(sub, record)
        return None

    def _remove(self, sub_id: int) -> None:
        sub = self._subs.pop(sub_id, None)
        if sub is not None:
            sub.conn.subscriptions.discard(sub_id)

    def drop_connection(self, conn: _Connection) -> None:
        for sub_id in list(conn.subscriptions):
            self._remove(sub_id)

    # ---------------------------------------------------------- notifications
    def on_event(self, event: ClusterEvent) -> None:
        if isinstance(event, SlotEvent):
            for sub in self._by_kind("slot"):
                result = {"parent": event.parent, "root": event.slot, "slot": event.slot}
                sub.conn.send(_notification("slotNotification", sub.sub_id, result))
            self._on_slot_done(event)
            return
        self._on_transaction(event)

    def _on_slot_done(self, event: SlotEvent) -> None:
        """A new bank for ``event.slot``; its parent's block is complete: frozen and rooted
        (one node finalizes at once)."""
        roots, updates = self._by_kind("root"), self._by_kind("slotsUpdates")
        if not roots and not updates:
            return
        done = event.parent
        if updates:
            now_ms = self.cluster.unix_timestamp * 1000
            records = self.cluster.block_records(done)
            failed = sum(1 for r in records if r.err is not None)
            stats = {
                "numTransactionEntries": len(records),
                "numSuccessfulTransactions": len(records) - failed,
                "numFailedTransactions": failed,
                "maxTransactionsPerEntry": 1 if records else 0,
            }
            messages = [
                {"type": "createdBank", "slot": event.slot, "parent": done, "timestamp": now_ms},
                {"type": "frozen", "slot": done, "timestamp": now_ms, "stats": stats},
                {"type": "root", "slot": done, "timestamp": now_ms},
            ]
            for sub in updates:
                for result in messages:
                    sub.conn.send(_notification("slotsUpdatesNotification", sub.sub_id, result))
        for sub in roots:
            sub.conn.send(_notification("rootNotification", sub.sub_id, done))

    def _by_kind(self, kind: str) -> list[_Subscription]:
        return [s for s in self._subs.values() if s.kind == kind]

    def _context(self, slot: int) -> dict[str, Any]:
        return {"slot": slot}

    def _on_transaction(self, event: TransactionEvent) -> None:
        record = event.record
        ctx = self._context(record.slot)
        for pubkey, maybe_acct in event.changed:
            acct = maybe_acct if maybe_acct is not None else deleted_account()
            for sub in self._by_kind("account"):
                if sub.pubkey == pubkey:
                    value = encode_account(acct, sub.encoding, None, self.cluster.get_account)
                    result = {"context": ctx, "value": value}
                    sub.conn.send(_notification("accountNotification", sub.sub_id, result))
            for sub in self._by_kind("program"):
                if (
                    maybe_acct is not None
                    and sub.pubkey == acct.owner
                    and matches(acct, sub.filters)
                ):
                    value = {
                        "pubkey": str(pubkey),
                        "account": encode_account(
                            acct, sub.encoding, None, self.cluster.get_account
                        ),
                    }
                    result = {"context": ctx, "value": value}
                    sub.conn.send(_notification("programNotification", sub.sub_id, result))
        if record.signature == Signature.default():
            return  # an account set outside any transaction
        for sub in self._by_kind("signature"):
            if sub.signature == record.signature:
                self._notify_signature(sub, record)
        for sub in self._by_kind("logs"):
            if sub.mentions is None or sub.mentions in record.account_keys:
                value = {
                    "signature": str(record.signature),
                    "err": record.err_json,
                    "logs": record.logs,
                }
                result = {"context": ctx, "value": value}
                sub.conn.send(_notification("logsNotification", sub.sub_id, result))

    def _notify_signature(self, sub: _Subscription, record: SignatureRecord) -> None:
        if sub.sub_id not in self._subs:
            return
        result = {"context": self._context(record.slot), "value": {"err": record.err_json}}
        sub.conn.send(_notification("signatureNotification", sub.sub_id, result))
        self._remove(sub.sub_id)  # signature subscriptions end after one notification


_KINDS = ("account", "program", "signature", "slot", "logs", "root", "slotsUpdates")


def _logs_filter(raw: Any) -> Pubkey | None:
    if raw in ("all", "allWithVotes"):
        return None
    if isinstance(raw, dict) and isinstance(raw.get("mentions"), list):
        mentions = raw["mentions"]
        if len(mentions) != 1:
            raise invalid_params("Invalid Request: Only 1 address supported")
        return pubkey_param(mentions[0], "mentions")
    raise invalid_params('Invalid params: logs filter must be "all", "allWithVotes" or {mentions}')


HUB_KEY = web.AppKey("localnet_pubsub_hub", PubSubHub)


async def _handle_ws(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    conn = _Connection()

    async def sender() -> None:
        while True:
            message = await conn.queue.get()
            await ws.send_str(message)

    send_task = asyncio.create_task(sender())
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    conn.send(
                        error_response(None, RpcError(PARSE_ERROR, "Parse error: binary frame"))
                    )
                continue
            try:
                body = json.loads(msg.data)
            except ValueError as exc:
                conn.send(error_response(None, RpcError(PARSE_ERROR, f"Parse error: {exc}")))
                continue
            if isinstance(body, list):
                if not body:
                    conn.send(
                        error_response(
                            None, RpcError(INVALID_REQUEST, "Invalid request: empty batch")
                        )
                    )
                for item in body:
                    hub.handle(conn, item)
            else:
                hub.handle(conn, body)
    finally:
        hub.drop_connection(conn)
        # flush what is queued, then stop the sender
        with contextlib.suppress(Exception):
            while not conn.queue.empty() and not ws.closed:
                await ws.send_str(conn.queue.get_nowait())
        send_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await send_task
    return ws


def create_pubsub_app(cluster: EmbeddedCluster) -> web.Application:
    """The websocket application (JSON-RPC PubSub on `/`)."""
    app = web.Application()
    hub = PubSubHub(cluster)
    app[HUB_KEY] = hub

    async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
        hub.start()
        yield
        hub.stop()

    app.cleanup_ctx.append(hub_ctx)
    app.router.add_get("/", _handle_ws)
    return app
