"""Open sign-up end to end in the main job (``exchange.node.Node`` in-process: embedded
cluster, clearing program, oracle, engine, API, settlement, reconciler, a demo market maker):
a brand-new keypair deposits on-chain (``perpdex deposit``, a child process, the node's local
faucet) -> the bridge registers it (``AccountRegistered`` before the credit) -> it signs
orders through the SDK -> trades -> the fill settles on-chain to its own User account and the
reconciler agrees; an unknown key is refused; a restart keeps the registry (same owner, same
hash) and a fold of the whole journal gives the same hash; a keeper process runs with the new
key (``perpdex keeper liquidator``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from integration_support import wait_for
from solders.keypair import Keypair

from exchange.api.config import ApiConfig
from exchange.client import ApiRequestError, PerpdexRest
from exchange.core.commands import FIRST_REGISTERED_OWNER_ID
from exchange.core.events import AccountRegistered, CollateralDeposited
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.process import EngineProcess
from exchange.node import Node, NodeConfig
from perp.clearinghouse import Clearinghouse

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USD = 1_000_000
BTC = 0


def write_key(path: Path, key: Keypair) -> Path:
    path.write_text(json.dumps(list(bytes(key))))
    return path


async def cli(*args: str, timeout_s: float = 90) -> list[dict[str, Any]]:
    """``perpdex ARGS`` in a child process; its JSON lines."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exchange.cli", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode == 0, err.decode()[-3000:]
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


def node_config(data: Path) -> NodeConfig:
    return NodeConfig(
        engine=EngineConfig(data_dir=data), api=ApiConfig(port=0), rpc_port=0, ws_port=0,
        market_makers=1, takers=0, maker_interval_s=0.3, settle_interval_s=0.2,
        reconcile_interval_s=0.5,
    )  # fmt: skip


async def test_a_new_wallet_deposits_registers_trades_settles_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    newcomer = Keypair.from_seed(bytes([42]) * 32)
    key_file = write_key(tmp_path / "newcomer.json", newcomer)
    stranger = Keypair.from_seed(bytes([43]) * 32)
    async with Node(node_config(data)) as node:
        assert node.endpoints is not None and node.port is not None
        assert isinstance(node.runner, EngineProcess)  # the default: the engine's own process
        api_url = node.endpoints.api_url
        # Arrange: the node's own wallets signed up the same way (owners from the registry)
        own_owners = sorted(owner for _, owner in node.wallet_names())
        # Act 1: the newcomer deposits on-chain with the CLI (faucet: the local mint authority)
        lines = await cli("deposit", "--key", str(key_file), "--amount", "25000.5",
                          "--data-dir", str(data))  # fmt: skip
        async with PerpdexRest(api_url, newcomer) as api, PerpdexRest(api_url, stranger) as other:
            me = await api.account()
            with pytest.raises(ApiRequestError) as refused:
                await other.account()
            with pytest.raises(ApiRequestError) as refused_order:
                await other.place(market_id=BTC, side="BID", price=USD, size_base=10**9)
            # Act 2: it crosses the maker's ask through the SDK
            public = PerpdexRest(api_url)
            book = await wait_for(lambda: public.book(BTC, depth=1), 30, "a maker ask")
            while not book.asks:
                book = await wait_for(lambda: public.book(BTC, depth=1), 30, "a maker ask")
            spec = node.core.books[BTC].spec
            tick, lot = spec.tick_size, spec.lot_size
            ask_ticks = min(book.asks)
            placed = await api.place(
                market_id=BTC, side="BID", price=(ask_ticks + 50) * tick, size_base=lot,
                time_in_force="IOC",
            )  # fmt: skip
            fills = await wait_for(lambda: api.fills(limit=5), 20, "the newcomer's fill")
            await public.close()
            settled_at = node.engine_last_seq()

            async def reconciled_after() -> bool:
                report = node.status.last_reconcile
                return (
                    node.service is not None and node.service.cursor >= settled_at
                    and report is not None and node.status.reconcile_runs > 1
                )  # fmt: skip

            await wait_for(reconciled_after, 40, "settlement and a reconciliation after the fill")
            report = node.status.last_reconcile
            user = (
                await node.program(node.operator)
                .account["User"]
                .fetch(node.accounts.user(me.owner_id, 0))
            )
        registry = dict(node.core.registry)
    final_hash, final_seq = node.final_hash, node.final_seq
    journal = Journal.for_data_dir(data)
    events = list(journal.read(after_seq=0))
    journal.close()
    # Restart: the registry (and the key's access) survives
    async with Node(node_config(data)) as again:
        assert again.endpoints is not None and again.port is not None
        recovered = (again.recovered_hash, again.recovered_seq)
        async with PerpdexRest(again.endpoints.api_url, newcomer) as api:
            me_again = await api.account()
        registry_again = dict(again.core.registry)
        # a keeper process with the newcomer's key runs against the restarted node
        keeper = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exchange.cli", "keeper", "liquidator",
            "--api", again.endpoints.api_url, "--key", str(key_file), "--interval-ms", "100",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
        )  # fmt: skip
        assert keeper.stdout is not None
        started = json.loads(await asyncio.wait_for(keeper.stdout.readline(), 60))
        keeper.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(keeper.communicate(), 30)
    # Assert: registration, then the credit; consecutive owners from the registry's first id
    wallet_hex = bytes(newcomer.pubkey()).hex()
    assert lines[0]["event"] == "deposited" and lines[0]["amount_quote"] == 25_000_500_000
    assert lines[1]["event"] == "registered" and lines[1]["owner_id"] == me.owner_id
    assert lines[1]["collateral_quote"] == 25_000_500_000
    assert own_owners == [FIRST_REGISTERED_OWNER_ID + i for i in range(len(own_owners))]
    assert me.owner_id == FIRST_REGISTERED_OWNER_ID + len(own_owners)
    assert (me.sub_account_id, me.source) == (0, "registry")
    assert registry[wallet_hex] == (me.owner_id, 0)
    [registered_at] = [e.seq for e in events if type(e) is AccountRegistered
                       and e.wallet_pubkey_hex == wallet_hex]  # fmt: skip
    [credited_at] = [e.seq for e in events if type(e) is CollateralDeposited
                     and e.owner_id == me.owner_id]  # fmt: skip
    assert registered_at < credited_at
    assert (refused.value.status, refused.value.code) == (403, "AUTH_UNKNOWN_KEY")
    assert "deposit collateral on-chain" in refused.value.message
    assert (refused_order.value.status, refused_order.value.code) == (403, "AUTH_UNKNOWN_KEY")
    assert placed.accepted, placed
    assert fills[0]["owner_id"] == me.owner_id and fills[0]["liquidity"] == "TAKER"
    assert report is not None and report.ok, report
    assert any(p.in_use and p.market_index == BTC and p.base == lot for p in user.positions)
    assert recovered == (final_hash, final_seq)
    assert (me_again.owner_id, me_again.sub_account_id) == (me.owner_id, 0)
    assert registry_again == registry
    folded = Clearinghouse()
    for e in events:
        folded.apply(e)
    assert folded.state_hash() == final_hash
    assert started["event"] == "started" and started.get("sub_account_id") == 0
    summary = json.loads(rest.decode().splitlines()[-1])
    assert summary["event"] == "stopped" and summary["collateral_before_quote"] > 0
