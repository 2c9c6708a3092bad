"""Governance in the main job (``exchange.node.Node`` in-process: embedded cluster, clearing
program, oracle, engine, API, settlement, governance watcher, demo traders): ``perpdex gov
propose`` / ``approve`` / ``execute`` (the real CLI, in child processes, with the council keys
the node wrote to its data directory) against the running node; the executed change reaches
the engine's parameters, seen through the API; a restart resumes without applying it again.
The embedded cluster's clock is warped past the timelock (the program's minimum is 1 hour)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from integration_support import wait_for

from exchange.api.config import ApiConfig
from exchange.engine.config import EngineConfig
from exchange.node import GOV_COUNCIL_SIZE, GOV_THRESHOLD, Node, NodeConfig

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TIMELOCK_S = 3_600
NEW_TAKER_FEE_PPM = 500  # the demo markets list at 450


async def perpdex_gov(*args: str) -> str:
    """``perpdex gov ARGS`` in a child process; its stdout (exit status 0 asserted)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exchange.cli", "gov", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"perpdex gov {args}: {proc.returncode} {err.decode()}"
    return out.decode()


def config(data_dir: Path) -> NodeConfig:
    return NodeConfig(
        engine=EngineConfig(data_dir=data_dir), api=ApiConfig(port=0), rpc_port=0, ws_port=0,
        market_makers=1, takers=1, maker_interval_s=0.5, taker_interval_s=0.5,
        settle_interval_s=0.3, reconcile_interval_s=1.0, gov_timelock_s=TIMELOCK_S,
    )  # fmt: skip


async def get_json(api_url: str, path: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(api_url + path) as resp:
        assert resp.status == 200, (path, resp.status)
        return await resp.json()


async def test_gov_cli_change_reaches_the_engine_and_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    keys = data_dir / "keys"
    async with Node(config(data_dir)) as node:
        assert node.endpoints is not None and node.server is not None
        assert node.gov_watcher is not None
        api, rpc = node.endpoints.api_url, node.endpoints.rpc_url
        common = ("--rpc-url", rpc)
        # Arrange: the node initialized governance with its council (keys in the data dir)
        body = await wait_for(
            lambda: _available(api), 30, "the watcher's first governance snapshot"
        )
        council = [str(k.pubkey()) for k in node.council()]
        assert body["council"] == council and len(council) == GOV_COUNCIL_SIZE
        assert body["threshold"] == GOV_THRESHOLD and body["timelock_seconds"] == TIMELOCK_S
        assert body["guardian"] == str(node.keys.get("guardian").pubkey())
        before = await get_json(api, "/v1/markets/0/risk-params")
        assert before["params"]["taker_fee_ppm"] != NEW_TAKER_FEE_PPM
        # Act: propose (council 1, its approval counts), approve (council 2): 2 of 3; warp past
        # the timelock; execute
        proposed = await perpdex_gov(
            "propose", "--market", "0", "--set", f"taker_fee_ppm={NEW_TAKER_FEE_PPM}",
            "--keypair", str(keys / "council-1.json"), *common,
        )  # fmt: skip
        match = re.search(r"proposed (\d+):", proposed)
        assert match, proposed
        proposal_id = match.group(1)
        await perpdex_gov(
            "approve", proposal_id, "--keypair", str(keys / "council-2.json"), *common
        )
        node.server.cluster.warp(int(TIMELOCK_S / node.server.cluster.slot_seconds) + 2)
        await perpdex_gov("execute", proposal_id, "--keypair", str(keys / "council-3.json"),
                          *common)  # fmt: skip

        # Assert: the engine's parameters in force (the API's read model) carry the change
        async def changed() -> Any:
            got = await get_json(api, "/v1/markets/0/risk-params")
            return got if got["params"]["taker_fee_ppm"] == NEW_TAKER_FEE_PPM else None

        after = await wait_for(changed, 30, "the executed change in the engine")
        assert after["on_chain"]["risk"]["taker_fee_ppm"] == NEW_TAKER_FEE_PPM
        executed = await get_json(api, "/v1/governance/proposals?status=executed")
        assert [p["id"] for p in executed["proposals"]] == [int(proposal_id)]
        assert node.gov_watcher.metrics.params_applied == 1
        assert node.gov_watcher.metrics.refused == 0
        assert node.port is not None
        assert node.core.markets[0].params.taker_fee_ppm == NEW_TAKER_FEE_PPM
    # a restart: the same council, the change still in force, nothing applied twice
    async with Node(config(data_dir)) as again:
        assert again.endpoints is not None and again.gov_watcher is not None
        watcher = again.gov_watcher
        await watcher.wait_synced(lambda: watcher.metrics.syncs >= 1, timeout_s=30)
        assert int(proposal_id) in watcher.applied
        assert watcher.metrics.params_applied == 0 and watcher.metrics.refused == 0
        resumed = await get_json(again.endpoints.api_url, "/v1/markets/0/risk-params")
        assert resumed["params"]["taker_fee_ppm"] == NEW_TAKER_FEE_PPM
        body = await wait_for(
            lambda: _available(again.endpoints.api_url),  # type: ignore[union-attr]
            30,
            "the restarted watcher's snapshot",
        )
        assert body["council"] == council


async def _available(api_url: str) -> dict[str, Any] | None:
    body = await get_json(api_url, "/v1/governance/proposals")
    return body if body["available"] else None
