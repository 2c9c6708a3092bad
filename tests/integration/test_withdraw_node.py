"""Withdrawals end to end in the main job (``exchange.node.Node`` in-process: embedded cluster,
clearing program, oracle, engine, API, settlement, reconciler, demo traders): the taker, funded
by a real on-chain deposit, trades, then withdraws through the SDK; the tokens reach its
associated token account once, the engine and the on-chain User agree (reconciler), and a
request beyond free collateral is refused with nothing moved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from integration_support import wait_for
from spl.token.instructions import get_associated_token_address

from exchange.api.config import ApiConfig
from exchange.client import ApiRequestError, PerpdexRest
from exchange.core.errors import RejectCode
from exchange.engine.config import EngineConfig
from exchange.node import Node, NodeConfig

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USD = 1_000_000


async def test_deposit_trade_withdraw_through_the_api_lands_once_and_reconciles(
    tmp_path: Path,
) -> None:
    config = NodeConfig(
        engine=EngineConfig(data_dir=tmp_path / "data"), api=ApiConfig(port=0),
        rpc_port=0, ws_port=0, maker_interval_s=0.3, taker_interval_s=0.15,
        settle_interval_s=0.2, reconcile_interval_s=0.5,
    )  # fmt: skip
    async with Node(config) as node:
        assert node.endpoints is not None and node.withdrawals is not None
        wallet = node.keys.get("taker-1")
        ata = get_associated_token_address(wallet.pubkey(), node.setup.mint)
        client = node.client()
        async with PerpdexRest(node.endpoints.api_url, wallet) as taker:
            # Arrange: the taker's deposit was credited on-chain -> engine, and it has traded
            deposits = await wait_for(taker.deposits, 30, "the taker's credited deposit")
            assert deposits[0].status == "credited" and deposits[0].signature
            await wait_for(lambda: taker.fills(limit=1), 40, "a fill of the taker")
            before = {b.sub_account_id: b.collateral_quote for b in await taker.balances()}
            # Act: one withdrawal within free collateral, one far beyond it
            accepted = await taker.withdraw(1_234 * USD)
            refused = await taker.withdraw(10**9 * USD)

            async def executed() -> Any:
                rows = [w for w in await taker.withdrawals() if w.sequence == accepted.sequence]
                return rows if rows and rows[0].status == "executed" else None

            [row] = await wait_for(executed, 30, "the withdrawal executed on-chain")
            runs = node.status.reconcile_runs

            async def reconciled_after() -> bool:
                report = node.status.last_reconcile
                return node.status.reconcile_runs > runs + 1 and report is not None

            await wait_for(reconciled_after, 30, "a reconciliation after the withdrawal")
            # bad input: a 4xx with its code, nothing changes
            bad_bodies: list[Any] = [{"amount_quote": 0}, {"amount_quote": -5},
                                     {"amount_quote": "1"}, {"amount_quote": True}, {},
                                     {"amount_quote": 1, "to": "elsewhere"}, [1],
                                     {"amount_quote": 1, "sub_account_id": 70_000}]  # fmt: skip
            refusals = []
            for body in bad_bodies:
                with pytest.raises(ApiRequestError) as caught:
                    await taker._request("POST", "/v1/withdrawals", body, private=True)
                refusals.append((caught.value.status, caught.value.code))
            async with PerpdexRest(node.endpoints.api_url) as anonymous:
                with pytest.raises(ApiRequestError) as unsigned:
                    await anonymous._request("POST", "/v1/withdrawals", {"amount_quote": 1})
            balance = int((await client.get_token_account_balance(ata)).value.amount)
            listed = await taker.withdrawals()
        # Assert
        assert accepted.accepted and accepted.collateral_quote < before[0]
        assert not refused.accepted and refused.amount_quote == 10**9 * USD
        assert refused.reject_code == RejectCode.WITHDRAWAL_ABOVE_FREE_COLLATERAL
        assert row.signature and row.destination == str(ata)
        assert balance == 1_234 * USD  # exactly once, to the owner's token account
        assert [w.status for w in listed] == ["rejected", "executed"]
        assert refusals == [(400, "MALFORMED_REQUEST")] * len(bad_bodies)
        assert unsigned.value.status == 401
        report = node.status.last_reconcile
        assert report is not None and report.ok, report
        assert node.withdrawals.halt is None and node.withdrawals.metrics.executed == 1
