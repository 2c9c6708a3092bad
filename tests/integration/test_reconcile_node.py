"""Reconciliation incidents in the main job (``exchange.node.Node`` in-process, no traders):
one quote unit injected into the liquidator wallet's on-chain collateral is journaled by the
node's reconciler (``ReconciliationMismatchDetected``, through the engine runner) before the
node halts the markets; once the chain agrees again a later run journals
``ReconciliationMismatchResolved``, and /metrics counts both."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from integration_support import wait_for
from solders.account import Account

from exchange.api.config import ApiConfig
from exchange.core.events import (
    NO_MARKET_ID,
    MarketStatusChanged,
    ReconciliationMismatchDetected,
    ReconciliationMismatchResolved,
)
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.runners import EngineThread, InlineRunner
from exchange.node import Node, NodeConfig
from perp.clearinghouse import Clearinghouse
from perp.risk_gate import MarketStatus
from settlement.spec import ACCOUNTS, SPEC, offsets

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def collateral_offset() -> int:
    user = next(a for a in ACCOUNTS if a.name == "User")
    return dict((f.name, off) for f, off in offsets(SPEC, user.fields, 8))["collateral_quote"]


@pytest.mark.parametrize(
    ("runner", "runner_type"), [("thread", EngineThread), ("inline", InlineRunner)]
)
async def test_a_node_journals_a_mismatch_before_halting_and_resolves_it(
    tmp_path: Path, runner: str, runner_type: type
) -> None:
    # the engine in this process, on a thread (``[engine] runner = "thread"``) or executing on
    # the node's loop (``"inline"``): the node drives it through the same port and mirror as
    # the default engine process
    config = NodeConfig(
        engine=EngineConfig(data_dir=tmp_path / "data", runner=runner), api=ApiConfig(port=0),
        rpc_port=0, ws_port=0, market_makers=0, takers=0,
        settle_interval_s=0.1, reconcile_interval_s=0.2,
    )  # fmt: skip
    async with Node(config) as node:
        assert node.server is not None and node.endpoints is not None
        assert type(node.runner) is runner_type
        journal = node.read_journal()

        def events(kind: type) -> list[Any]:
            return [e for e in journal.read() if type(e) is kind]

        async def clean_run() -> bool:
            report = node.status.last_reconcile
            return report is not None and report.ok

        await wait_for(clean_run, 30, "a clean reconciliation")
        # Arrange: one quote unit more collateral on-chain for the liquidator wallet
        account = node.accounts.account_of_wallet(node.keys.get("liquidator").pubkey())
        assert account is not None
        user = node.accounts.user(*account)
        original = node.server.cluster.get_account(user)
        assert original is not None
        data = bytearray(original.data)
        (collateral,) = struct.unpack_from("<q", data, collateral_offset())
        struct.pack_into("<q", data, collateral_offset(), collateral + 1)
        # Act: the chain differs, then agrees again
        node.server.cluster.set_account(
            user, Account(original.lamports, bytes(data), original.owner, False, 0)
        )

        async def halted() -> bool:
            return bool(node.status.halted_markets)

        async def resolutions() -> list[Any]:
            return events(ReconciliationMismatchResolved)

        await wait_for(halted, 30, "the markets halted")
        detected = events(ReconciliationMismatchDetected)
        node.server.cluster.set_account(user, original)
        resolved = await wait_for(resolutions, 30, "the incident resolved")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{node.endpoints.api_url}/metrics") as response:
                metrics = await response.text()
        halts = [e for e in events(MarketStatusChanged) if e.new_status == MarketStatus.HALTED]
    # Assert: journaled once (the difference did not change), before the halts
    [mismatch] = detected
    assert (mismatch.market_id, (mismatch.account_owner_id, mismatch.account_sub_account_id),
            mismatch.field) == (NO_MARKET_ID, account, "settled_collateral_quote")  # fmt: skip
    assert mismatch.onchain_value - mismatch.engine_value == 1 and mismatch.open_mismatches == 1
    assert halts and mismatch.seq < min(e.seq for e in halts)
    assert [(e.market_id, e.mismatches) for e in resolved] == [(NO_MARKET_ID, 1)]
    assert 'perpdex_reconciliation_journaled_total{event="mismatch_detected"} 1' in metrics
    assert 'perpdex_reconciliation_journaled_total{event="mismatch_resolved"} 1' in metrics
    # the stop's final state (the engine's own snapshot + the journal after it) is the
    # journal's: a fold of all of it, and the snapshot the node saved at that seq
    with Journal.for_data_dir(tmp_path / "data", read_only=True) as journal:
        folded = Clearinghouse()
        for e in journal.read():
            folded.apply(e)
        saved = journal.latest_snapshot()
    assert (folded.state_hash(), folded.next_seq - 1) == (node.final_hash, node.final_seq)
    assert saved is not None and (saved.state_hash, saved.seq) == (node.final_hash, node.final_seq)
