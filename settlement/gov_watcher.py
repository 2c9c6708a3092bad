"""The governance watcher: executed on-chain parameter changes reach the engine (issue 8).

Data flow (docs/ARCHITECTURE.md, Governance): the clearing program's ``execute`` writes a
proposal's ``RiskParams`` into the Market account and logs ``RiskParamsChanged``; the watcher
sees the transaction (PubSub ``logsSubscribe`` mentioning the program), reads the chain
(Governance, Proposals, Markets over JSON-RPC ``getMultipleAccounts``) and submits
``SetRiskParams(market_id, params_json, proposal_id)`` into the engine, which checks it again
and journals ``RiskParamsChanged``. A stricter on-chain market status (the guardian's halt,
reduce-only, cancel-only) becomes ``SetMarketStatus`` in the engine; a looser one never does.

Mapping (``engine_values``, same units on both sides, nothing rescaled): the program's
``maker_fee_ppm``, ``taker_fee_ppm``, ``insurance_share_ppm``, ``funding_cap_rate``
(``FUNDING_RATE_PRECISION``), the first ``num_margin_tiers`` margin tiers (quote bound, ppm,
ppm), ``max_position_base`` (``BASE_PRECISION``), ``liquidation_fee_ppm``,
``liquidator_share_ppm`` and ``liquidation_buffer_ppm`` (ppm) are the engine's fields of the same names (one set of liquidation parameters per market
on both sides); ``max_position_base == u64 max`` is the program's "no cap" and leaves the
engine's own cap. ``max_leverage``, ``max_open_interest_base`` and the oracle limits are not
engine market parameters (the engine's leverage bound is its first initial ratio).

Proposal ids: the engine's ``SetRiskParams.proposal_id`` is ``Proposal.id + 1``
(``engine_proposal_id``), because the program numbers proposals from 0 and the engine keeps 0
for a change by the operator, not by governance.

Exactly once: each sync is a reconciliation, not a replay of notifications. For every market
it takes the executed proposals not yet applied (the engine's journaled
``RiskParamsChanged.proposal_id``s, read once at start, plus what this process applied), and
submits only the keys whose values differ from the engine's in force: in proposal-id order each
proposal's own values, the last one as the Market account holds them now. A restart, a
reconnect or a duplicate notification therefore finds nothing to do. After every (re)connect
the watcher re-reads the chain (catch-up), so a change executed while it was down or
disconnected is applied at the next connect. An engine refusal (the engine's own bounds, e.g.
a change larger than its per-change limits) is logged and counted, not retried in this
process (a restart retries it once, journaling another refusal).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import aiohttp
from anchorpy import EventParser, Program
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey

from exchange.core.commands import SetMarketStatus, SetRiskParams
from exchange.core.events import Event, MarketStatusChanged, OrderRejected, RiskParamsChanged
from exchange.core.units import U64_MAX
from perp.params import PerpMarketParams
from settlement.errors import SettlementError
from settlement.governance import (
    GLOBAL_TARGET,
    PROPOSAL_STATUS,
    governance_pda,
    proposal_pda,
)
from settlement.onchain import ClearingAddresses

log = logging.getLogger(__name__)

PROPOSAL_PENDING: Final = 0
PROPOSAL_EXECUTED: Final = 1
#: Program events after which the watcher re-reads the chain (the proposal events only
#: refresh the snapshot it hands to ``on_snapshot``, e.g. the API's pending list).
GOVERNANCE_EVENTS: Final = frozenset(
    {
        "RiskParamsChanged",
        "MarketStatusChanged",
        "ParamChangeProposed",
        "ProposalApproved",
        "ProposalCancelled",
    }
)
#: Accounts per ``getMultipleAccounts`` call (the RPC's limit).
RPC_BATCH: Final = 100
MARKET_STATUS_NAMES: Final = ("ACTIVE", "POST_ONLY", "REDUCE_ONLY", "CANCEL_ONLY", "HALTED")


class GovWatcherError(SettlementError):
    """The chain's governance accounts could not be read as expected."""

    code = "GOV_WATCHER"


# ---------------------------------------------------------------- pure: chain values


@dataclass(frozen=True, slots=True)
class ChainRiskParams:
    """A ``RiskParams`` as the program holds it (a Market's values or a Proposal's)."""

    funding_cap_rate: int  # FUNDING_RATE_PRECISION
    oracle_max_age_slots: int
    oracle_max_age_seconds: int
    max_position_base: int  # BASE_PRECISION; U64_MAX: no cap
    max_open_interest_base: int  # BASE_PRECISION
    maker_fee_ppm: int
    taker_fee_ppm: int
    insurance_share_ppm: int
    oracle_max_confidence_ppm: int
    liquidation_fee_ppm: int
    max_leverage: int
    margin_tiers: tuple[tuple[int, int, int], ...]  # in use only: (quote bound, ppm, ppm)
    liquidator_share_ppm: int
    liquidation_buffer_ppm: int

    @classmethod
    def from_decoded(cls, risk: Any) -> ChainRiskParams:
        """From an anchorpy-decoded Market account or ``Proposal.risk``."""
        tiers = tuple(
            (int(t.up_to_notional_quote), int(t.initial_ppm), int(t.maintenance_ppm))
            for t in list(risk.margin_tiers)[: int(risk.num_margin_tiers)]
        )
        return cls(
            funding_cap_rate=int(risk.funding_cap_rate),
            oracle_max_age_slots=int(risk.oracle_max_age_slots),
            oracle_max_age_seconds=int(risk.oracle_max_age_seconds),
            max_position_base=int(risk.max_position_base),
            max_open_interest_base=int(risk.max_open_interest_base),
            maker_fee_ppm=int(risk.maker_fee_ppm),
            taker_fee_ppm=int(risk.taker_fee_ppm),
            insurance_share_ppm=int(risk.insurance_share_ppm),
            oracle_max_confidence_ppm=int(risk.oracle_max_confidence_ppm),
            liquidation_fee_ppm=int(risk.liquidation_fee_ppm),
            max_leverage=int(risk.max_leverage),
            margin_tiers=tiers,
            liquidator_share_ppm=int(risk.liquidator_share_ppm),
            liquidation_buffer_ppm=int(risk.liquidation_buffer_ppm),
        )

    def to_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["margin_tiers"] = [list(t) for t in self.margin_tiers]
        return out


def engine_values(chain: ChainRiskParams) -> dict[str, Any]:
    """The engine's ``PerpMarketParams`` keys the chain governs, in the engine's units (the
    same units: no conversion but the "no cap" sentinel, see the module docstring)."""
    values: dict[str, Any] = {
        "maker_fee_ppm": chain.maker_fee_ppm,
        "taker_fee_ppm": chain.taker_fee_ppm,
        "insurance_share_ppm": chain.insurance_share_ppm,
        "funding_cap_rate": chain.funding_cap_rate,
        "margin_tiers": [list(t) for t in chain.margin_tiers],
        "liquidation_fee_ppm": chain.liquidation_fee_ppm,
        "liquidator_share_ppm": chain.liquidator_share_ppm,
        "liquidation_buffer_ppm": chain.liquidation_buffer_ppm,
    }
    if chain.max_position_base != U64_MAX:
        values["max_position_base"] = chain.max_position_base
    return values


def params_change(chain: ChainRiskParams, current: PerpMarketParams) -> dict[str, Any]:
    """The governed keys whose chain value differs from the engine's in force (empty: the
    engine already runs the chain's values)."""
    now = current.to_dict()
    return {k: v for k, v in engine_values(chain).items() if now[k] != v}


# ---------------------------------------------------------------- pure: governance snapshot


@dataclass(frozen=True, slots=True)
class ProposalView:
    """One Proposal account, decoded."""

    id: int
    proposer: str
    market_index: int  # GLOBAL_TARGET: a global change
    status: int  # PROPOSAL_STATUS
    approvals_mask: int
    created_unix_s: int
    earliest_execution_unix_s: int
    risk: ChainRiskParams | None  # market proposals
    global_params: dict[str, int] | None  # global proposals

    @classmethod
    def from_decoded(cls, p: Any) -> ProposalView:
        is_global = int(p.market_index) == GLOBAL_TARGET
        gp = p.global_params
        return cls(
            id=int(p.id),
            proposer=str(p.proposer),
            market_index=int(p.market_index),
            status=int(p.status),
            approvals_mask=int(p.approvals_mask),
            created_unix_s=int(p.created_unix_s),
            earliest_execution_unix_s=int(p.earliest_execution_unix_s),
            risk=None if is_global else ChainRiskParams.from_decoded(p.risk),
            global_params=(
                {"timelock_seconds": int(gp.timelock_seconds),
                 "max_leverage_cap": int(gp.max_leverage_cap),
                 "escape_hatch_slots": int(gp.escape_hatch_slots)} if is_global else None
            ),
        )  # fmt: skip

    @property
    def status_name(self) -> str:
        return PROPOSAL_STATUS.get(self.status, f"unknown({self.status})")

    def approvers(self, council: Sequence[str]) -> list[str]:
        return [k for i, k in enumerate(council) if (self.approvals_mask >> i) & 1]

    def to_json(self, council: Sequence[str]) -> dict[str, Any]:
        approvers = self.approvers(council)
        return {
            "id": self.id,
            "proposer": self.proposer,
            "target": "global" if self.market_index == GLOBAL_TARGET else "market",
            "market_id": None if self.market_index == GLOBAL_TARGET else self.market_index,
            "status": self.status_name,
            "approvals": len(approvers),
            "approvers": approvers,
            "created_unix_s": self.created_unix_s,
            "earliest_execution_unix_s": self.earliest_execution_unix_s,
            "risk": self.risk.to_json() if self.risk is not None else None,
            "global_params": self.global_params,
        }


@dataclass(frozen=True, slots=True)
class MarketView:
    index: int
    status: int  # the program's MARKET_STATUS_* (same numbers as perp.risk_gate.MarketStatus)
    risk: ChainRiskParams


@dataclass(frozen=True, slots=True)
class GovernanceSnapshot:
    """What the chain says about governance at ``slot`` (confirmed)."""

    slot: int
    council: tuple[str, ...]
    threshold: int
    guardian: str
    timelock_seconds: int
    max_leverage_cap: int
    escape_hatch_slots: int  # the Exchange's, mirrored in Governance.params
    next_proposal_id: int
    proposals: tuple[ProposalView, ...]  # id order
    markets: Mapping[int, MarketView]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (what ``perpdex gov list --json`` and the API show)."""
        return {
            "slot": self.slot,
            "council": list(self.council),
            "threshold": self.threshold,
            "guardian": self.guardian,
            "timelock_seconds": self.timelock_seconds,
            "max_leverage_cap": self.max_leverage_cap,
            "escape_hatch_slots": self.escape_hatch_slots,
            "next_proposal_id": self.next_proposal_id,
            "proposals": [p.to_json(self.council) for p in self.proposals],
            "markets": {
                str(i): {
                    "status": MARKET_STATUS_NAMES[m.status] if m.status < 5 else m.status,
                    "risk": m.risk.to_json(),
                }
                for i, m in sorted(self.markets.items())
            },
        }


# ---------------------------------------------------------------- pure: the plan


@dataclass(frozen=True, slots=True)
class EngineMarket:
    """What the watcher needs of an engine market: the parameters and status in force."""

    params: PerpMarketParams
    status: int  # perp.risk_gate.MarketStatus


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One executed proposal to bring into the engine: the chain values it ends with."""

    market_id: int
    proposal_id: int
    source: ChainRiskParams  # the proposal's values, or the Market's for a market's last one


def plan_sync(
    snapshot: GovernanceSnapshot,
    engine: Mapping[int, EngineMarket],
    applied: set[int],
) -> tuple[list[PlannedChange], list[SetMarketStatus], list[int]]:
    """What the engine lacks: parameter changes, stricter statuses, and the executed proposals
    that need nothing (a global change, or a market the engine does not list).
    ``applied``: proposal ids the engine already journaled.

    Per market, the executed proposals not in ``applied`` go in id order, each with its own
    values; the last one with the Market account's values (what the chain ended with,
    whatever the execution order was). The caller submits only the keys that differ from
    the engine's values at that moment (``params_change``)."""
    changes: list[PlannedChange] = []
    settled: list[int] = []
    by_market: dict[int, list[ProposalView]] = {}
    for p in snapshot.proposals:
        if p.status != PROPOSAL_EXECUTED or p.id in applied:
            continue
        if p.market_index == GLOBAL_TARGET or p.market_index not in engine:
            settled.append(p.id)  # nothing in the engine follows it
            continue
        by_market.setdefault(p.market_index, []).append(p)
    for market_id, proposals in sorted(by_market.items()):
        market = snapshot.markets.get(market_id)
        if market is None:
            raise GovWatcherError(
                f"market {market_id}: expected its Market account for executed proposal "
                f"{proposals[-1].id}, got none"
            )
        for i, p in enumerate(proposals):
            source = market.risk if i == len(proposals) - 1 else p.risk
            assert source is not None  # a market proposal carries RiskParams
            changes.append(PlannedChange(market_id, p.id, source))
    statuses = [
        SetMarketStatus(market_id, market.status)
        for market_id, market in sorted(snapshot.markets.items())
        if market_id in engine and engine[market_id].status < market.status <= 4
    ]
    return changes, statuses, settled


def engine_proposal_id(chain_proposal_id: int) -> int:
    """The engine's ``proposal_id`` for an on-chain ``Proposal.id`` (0 is the operator's)."""
    return chain_proposal_id + 1


def applied_proposal_ids(events: Iterable[Event]) -> set[int]:
    """On-chain proposal ids the engine journaled a ``RiskParamsChanged`` for."""
    return {e.proposal_id - 1 for e in events if type(e) is RiskParamsChanged and e.proposal_id > 0}


# ---------------------------------------------------------------- chain reads


async def read_snapshot(
    program: Program,
    market_ids: Sequence[int],
    *,
    known_final: dict[int, ProposalView] | None = None,
) -> GovernanceSnapshot:
    """Governance, every Proposal and the given Markets at ``confirmed``. Proposals in
    ``known_final`` (executed or cancelled: they never change again) are not re-read; newly
    final ones are added to it."""
    client = program.provider.connection
    program_id = program.program_id
    addresses = ClearingAddresses(program_id)
    governance_key = governance_pda(program_id)[0]
    market_keys = [addresses.market(i)[0] for i in market_ids]
    slot, accounts = await _get_many(client, [governance_key, *market_keys])
    if accounts[0] is None:
        raise GovWatcherError(
            f"governance {governance_key}: expected the Governance account, got none "
            f"(initialize_governance not run?)"
        )
    gov = program.coder.accounts.decode(accounts[0])
    markets: dict[int, MarketView] = {}
    for index, data in zip(market_ids, accounts[1:], strict=True):
        if data is None:
            continue
        m = program.coder.accounts.decode(data)
        markets[index] = MarketView(index, int(m.status), ChainRiskParams.from_decoded(m))
    cache = known_final if known_final is not None else {}
    next_id = int(gov.next_proposal_id)
    wanted = [i for i in range(next_id) if i not in cache]
    fresh: dict[int, ProposalView] = {}
    for start in range(0, len(wanted), RPC_BATCH):
        ids = wanted[start : start + RPC_BATCH]
        _, datas = await _get_many(client, [proposal_pda(program_id, i)[0] for i in ids])
        for proposal_id, data in zip(ids, datas, strict=True):
            if data is None:
                raise GovWatcherError(
                    f"proposal {proposal_id}: expected its account (< next_proposal_id "
                    f"{next_id}), got none"
                )
            view = ProposalView.from_decoded(program.coder.accounts.decode(data))
            fresh[proposal_id] = view
            if view.status != PROPOSAL_PENDING:
                cache[proposal_id] = view
    council = tuple(str(k) for k in list(gov.council)[: int(gov.num_council)])
    proposals = tuple(cache.get(i) or fresh[i] for i in range(next_id))
    return GovernanceSnapshot(
        slot=slot,
        council=council,
        threshold=int(gov.threshold),
        guardian=str(gov.guardian),
        timelock_seconds=int(gov.params.timelock_seconds),
        max_leverage_cap=int(gov.params.max_leverage_cap),
        escape_hatch_slots=int(gov.params.escape_hatch_slots),
        next_proposal_id=next_id,
        proposals=proposals,
        markets=markets,
    )


async def _get_many(client: Any, keys: list[Pubkey]) -> tuple[int, list[bytes | None]]:
    resp = await client.get_multiple_accounts(keys, commitment=Confirmed)
    return int(resp.context.slot), [
        None if a is None else bytes(a.data) for a in resp.value
    ]  # fmt: skip


# ---------------------------------------------------------------- the engine side


class EngineGovPort(Protocol):
    """How the watcher reads and drives the engine."""

    def market(self, market_id: int) -> EngineMarket | None: ...

    async def submit(self, command: SetRiskParams | SetMarketStatus) -> Sequence[Event]: ...


class EngineDirect:
    """``EngineGovPort`` over anything with the engine's state as ``.core``: an ``Engine``
    (``engine.process``) or, with ``submit``, a mirror of it such as the API's read model
    (``EnginePort.model``, folded on the event loop; ``submit=port.submit``), as ``perpdex
    run`` uses it. Reading a market's params and status from another thread than the one
    folding is safe too: both are single attribute reads of immutable values the fold
    replaces, never mutates."""

    def __init__(
        self,
        engine: Any,
        submit: Callable[[Any], Awaitable[Sequence[Event]]] | None = None,
    ) -> None:
        self.engine = engine
        self._submit = submit

    def market(self, market_id: int) -> EngineMarket | None:
        m = self.engine.core.markets.get(market_id)
        if m is None:
            return None
        return EngineMarket(m.params, int(m.breaker.status))

    async def submit(self, command: SetRiskParams | SetMarketStatus) -> Sequence[Event]:
        if self._submit is not None:
            return await self._submit(command)
        result: list[Event] = self.engine.process([command])[0]
        return result


# ---------------------------------------------------------------- the watcher


@dataclass(slots=True)
class WatcherMetrics:
    syncs: int = 0
    connects: int = 0
    failures: int = 0
    notifications: int = 0
    params_applied: int = 0  # RiskParamsChanged the engine journaled for this watcher
    statuses_applied: int = 0
    refused: int = 0  # commands the engine refused (logged at ERROR)
    last_slot: int = 0
    refusals: list[str] = field(default_factory=list)  # newest last, bounded


SnapshotListener = Callable[[GovernanceSnapshot], None]


class GovWatcher:
    """Follows the program's logs; ``await sync()`` once by hand or ``start()`` the loop."""

    def __init__(
        self,
        *,
        program: Program,
        ws_url: str,
        market_ids: Sequence[int],
        engine: EngineGovPort,
        applied: Iterable[int] = (),
        on_snapshot: SnapshotListener | None = None,
        resync_interval_s: float = 30.0,
        initial_backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
    ) -> None:
        if not 0 < initial_backoff_s <= max_backoff_s:
            raise ValueError(
                f"backoff: expected 0 < initial <= max, got {initial_backoff_s}, {max_backoff_s}"
            )
        if resync_interval_s <= 0:
            raise ValueError(f"resync_interval_s: expected > 0, got {resync_interval_s}")
        self.program = program
        self.ws_url = ws_url
        self.market_ids = tuple(market_ids)
        self.engine = engine
        self.applied: set[int] = set(applied)
        self.on_snapshot = on_snapshot
        self.resync_interval_s = resync_interval_s
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.metrics = WatcherMetrics()
        self.snapshot: GovernanceSnapshot | None = None
        self.subscribed = asyncio.Event()
        self._known_final: dict[int, ProposalView] = {}
        self._parser = EventParser(program.program_id, program.coder)
        self._dirty = asyncio.Event()
        self._synced = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._next_id = 0

    # ------------------------------------------------------------------ one reconciliation
    async def sync(self) -> list[Sequence[Event]]:
        """Read the chain, submit what the engine lacks; the engine's answers in order."""
        snapshot = await read_snapshot(self.program, self.market_ids, known_final=self._known_final)
        engine = {i: m for i in self.market_ids if (m := self.engine.market(i)) is not None}
        changes, statuses, settled = plan_sync(snapshot, engine, self.applied)
        self.applied.update(settled)
        answers: list[Sequence[Event]] = []
        for change in changes:
            current = self.engine.market(change.market_id)
            assert current is not None  # planned for listed markets only
            delta = params_change(change.source, current.params)
            if delta:  # else the engine already runs these values
                command = SetRiskParams(
                    change.market_id,
                    json.dumps(delta, sort_keys=True),
                    engine_proposal_id(change.proposal_id),
                )
                events = await self.engine.submit(command)
                answers.append(events)
                self._account(command, events)
            self.applied.add(change.proposal_id)
        for status in statuses:
            events = await self.engine.submit(status)
            answers.append(events)
            self._account(status, events)
        self.snapshot = snapshot
        self.metrics.syncs += 1
        self.metrics.last_slot = snapshot.slot
        if self.on_snapshot is not None:
            self.on_snapshot(snapshot)
        async with self._synced:
            self._synced.notify_all()
        return answers

    def _account(self, command: SetRiskParams | SetMarketStatus, events: Sequence[Event]) -> None:
        refused = [e for e in events if type(e) is OrderRejected]
        if refused:
            self.metrics.refused += 1
            text = f"{command!r} refused: code {int(refused[0].code)} {refused[0].message}"
            self.metrics.refusals = [*self.metrics.refusals[-49:], text]
            log.error("governance: the engine refused an executed change: %s", text)
        elif any(type(e) is RiskParamsChanged for e in events):
            self.metrics.params_applied += 1
            log.info("governance: applied %r", command)
        elif any(type(e) is MarketStatusChanged for e in events):
            self.metrics.statuses_applied += 1
            log.info("governance: applied on-chain status %r", command)

    async def wait_synced(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until ``predicate()`` holds after some sync (tests, start-up)."""
        async with asyncio.timeout(timeout_s):
            async with self._synced:
                await self._synced.wait_for(predicate)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("governance watcher already started")
        self._tasks = [
            asyncio.create_task(self._subscribe_loop(), name="gov-watcher-logs"),
            asyncio.create_task(self._sync_loop(), name="gov-watcher-sync"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.subscribed.clear()

    async def __aenter__(self) -> GovWatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _sync_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.resync_interval_s):
                    await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:  # the chain or the engine failed: try again at the next trigger
                self.metrics.failures += 1
                log.exception("governance: sync failed; retrying at the next notification")

    async def _subscribe_loop(self) -> None:
        backoff = self.initial_backoff_s
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    await self._connect_once(session)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.info("governance: logs subscription lost (%r); retry in %.2fs",
                             exc, backoff)  # fmt: skip
                self.subscribed.clear()
                self.metrics.failures += 1
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)

    async def _connect_once(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(self.ws_url, heartbeat=10.0) as ws:
            self._next_id += 1
            await ws.send_str(json.dumps({
                "jsonrpc": "2.0", "id": self._next_id, "method": "logsSubscribe",
                "params": [{"mentions": [str(self.program.program_id)]},
                           {"commitment": "confirmed"}],
            }))  # fmt: skip
            async with asyncio.timeout(5.0):
                while True:
                    msg = await ws.receive()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        raise ConnectionError(f"websocket closed while subscribing: {msg.type!r}")
                    body = json.loads(msg.data)
                    if isinstance(body, dict) and body.get("id") == self._next_id:
                        if "error" in body:
                            raise ConnectionError(f"logsSubscribe refused: {body['error']}")
                        break
            self.metrics.connects += 1
            self.subscribed.set()
            self._dirty.set()  # catch-up: whatever executed while we were not subscribed
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_message(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise ConnectionError(f"websocket error: {ws.exception()!r}")
            raise ConnectionError("websocket closed")

    def _on_message(self, raw: str) -> None:
        try:
            body = json.loads(raw)
            if body.get("method") != "logsNotification":
                return
            value = body["params"]["result"]["value"]
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("governance: undecodable PubSub message %r", raw[:200])
            return
        if value.get("err") is not None:
            return
        names: list[str] = []
        try:
            self._parser.parse_logs(list(value.get("logs") or []), lambda e: names.append(e.name))
        except Exception:  # a log line anchorpy cannot decode: re-read the chain to be safe
            names.append("RiskParamsChanged")
        if GOVERNANCE_EVENTS.intersection(names):
            self.metrics.notifications += 1
            self._dirty.set()
