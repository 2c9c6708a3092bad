"""``perpdex gov`` against the embedded cluster over RPC (issue 8): keys from solana CLI keypair
files, every refusal printed with the program's IDL error name and code (exit status 2),
``list`` / ``show`` with status, approvals and the earliest execution time, the timelock with
a warped clock, double execution, cancel rights, guardian powers, hard bounds and rate limits.

The commands run in a worker thread (``cmd_gov`` runs its own event loop) while the test's
loop serves the cluster; one test runs the installed ``perpdex`` entry point as a process.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from solders.keypair import Keypair

from exchange.cli import build_parser
from exchange.core.units import PRICE_PRECISION, U64_MAX
from perp.params import PerpMarketParams
from settlement.gov_cli import GovClient, write_keypair
from settlement.governance import initialize_governance_ix
from settlement.onchain import DEFAULT_ESCAPE_HATCH_SLOTS
from settlement.spec import ERRORS
from settlement.stack import LAMPORTS_PER_SOL, SettlementStack, StackMarket, seeded_keypair

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TIMELOCK_S = 3_600
CODES = {e.name: e.code for e in ERRORS}
MARKET = StackMarket(0, "BTC-PERP", PRICE_PRECISION // 100, 10**7, 100 * PRICE_PRECISION)
PARAMS = PerpMarketParams(margin_tiers=((U64_MAX, 100_000, 50_000),))
KEYS = {
    "council0": seeded_keypair("cli council 0"),
    "council1": seeded_keypair("cli council 1"),
    "council2": seeded_keypair("cli council 2"),
    "guardian": seeded_keypair("cli guardian"),
    "stranger": seeded_keypair("cli stranger"),
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Cli:
    def __init__(self, stack: SettlementStack, key_dir: Path) -> None:
        self.stack = stack
        self.key_dir = key_dir

    async def __call__(self, *argv: str, key: str | None = None) -> tuple[int, str, str]:
        """``perpdex gov ARGV`` (with ``--keypair`` of ``key``): exit status, stdout, stderr."""
        full = ["gov", *argv, "--rpc-url", self.stack.server.rpc_url]
        if key is not None:
            full += ["--keypair", str(self.key_dir / f"{key}.json")]
        args = build_parser().parse_args(full)
        out, err = io.StringIO(), io.StringIO()
        code = await asyncio.to_thread(args.func, args, out, err)
        return code, out.getvalue(), err.getvalue()

    def warp_seconds(self, seconds: int) -> None:
        self.stack.server.cluster.warp(int(seconds / 0.4) + 1)


@pytest.fixture
async def cli(tmp_path: Path) -> AsyncIterator[Cli]:
    async with SettlementStack(tmp_path / "engine", [MARKET], [], params=PARAMS) as stack:
        for name, k in KEYS.items():
            stack.server.cluster.airdrop(k.pubkey(), 10 * LAMPORTS_PER_SOL)
            write_keypair(tmp_path / f"{name}.json", k)
        admin = GovClient(stack.client(), stack.authority, stack.program_id)
        council = [KEYS[f"council{i}"].pubkey() for i in range(3)]
        await admin.send([initialize_governance_ix(
            admin.program, exchange=stack.accounts.addresses.exchange()[0],
            authority=stack.authority.pubkey(), council=council, threshold=2,
            guardian=KEYS["guardian"].pubkey(), timelock_seconds=TIMELOCK_S,
            max_leverage_cap=20)])  # fmt: skip
        yield Cli(stack, tmp_path)


def refused(result: tuple[int, str, str], name: str) -> bool:
    code, _, err = result
    return code == 2 and f"{name} ({CODES[name]})" in err


async def test_propose_approve_execute_with_the_timelock_and_idl_errors(cli: Cli) -> None:
    # Arrange / Act: a council member proposes 4x (25 % initial); a stranger cannot approve
    tiers = '[["max", 250000, 125000]]'
    proposed = await cli("propose", "--market", "0", "--set", "max_leverage=4",
                         "--margin-tiers", tiers, key="council0")  # fmt: skip
    stranger = await cli("approve", "0", key="stranger")
    approved = await cli("approve", "0", key="council1")
    early = await cli("execute", "0", key="stranger")
    listed = await cli("list")
    shown = await cli("show", "0")
    cli.warp_seconds(TIMELOCK_S)
    executed = await cli("execute", "0", key="stranger")
    twice = await cli("execute", "0", key="council2")
    after = await cli("list", "--json", "--market", "0")
    # Assert
    assert proposed[0] == 0 and proposed[1].startswith("proposed 0: earliest execution")
    assert refused(stranger, "NotCouncilMember"), stranger
    assert approved[0] == 0 and approved[1].startswith("approved 0: ")
    assert refused(early, "TimelockNotElapsed"), early
    assert listed[0] == 0
    row = listed[1].splitlines()[2].split()
    assert row[:5] == ["0", "market", "0", "pending", "2/2"]
    assert "threshold 2" in listed[1] and "timelock 3600 s" in listed[1]
    assert "approvals: 2 of threshold 2" in shown[1]
    assert "max_leverage: 4   (now 10)" in shown[1]
    assert f"margin_tiers: [[{U64_MAX}, 250000, 125000]]" in shown[1]
    assert executed[0] == 0, executed
    assert refused(twice, "ProposalNotPending"), twice
    body = json.loads(after[1])
    assert body["proposals"][0]["status"] == "executed"
    assert body["proposals"][0]["approvals"] == 2
    assert body["markets"]["0"]["risk"]["max_leverage"] == 4


async def test_bounds_rate_limits_cancel_and_the_guardian_through_the_cli(cli: Cli) -> None:
    # hard bound at proposal: above the global leverage cap (20)
    above_cap = await cli("propose", "--market", "0", "--set", "max_leverage=21", key="council0")
    # rate limit at execution: initial margin falls by more than 20 % at once
    fast = await cli("propose", "--market", "0", "--margin-tiers", '[["max", 79999, 40000]]',
                     key="council0")  # fmt: skip
    await cli("approve", "0", key="council1")
    cli.warp_seconds(TIMELOCK_S)
    too_fast = await cli("execute", "0", key="stranger")
    # cancel: not by a stranger; by the proposer; then nothing more
    await cli("propose", "--market", "0", "--set", "taker_fee_ppm=500", key="council0")
    cancel_stranger = await cli("cancel", "1", key="stranger")
    cancelled = await cli("cancel", "1", key="council0")
    approve_cancelled = await cli("approve", "1", key="council1")
    only_cancelled = await cli("list", "--status", "cancelled")
    # the guardian: at once, stricter only; nobody else
    guardian_stranger = await cli("guardian-status", "0", "HALTED", key="stranger")
    halted = await cli("guardian-status", "0", "HALTED", key="guardian")
    looser = await cli("guardian-status", "0", "REDUCE_ONLY", key="guardian")
    # Assert
    assert refused(above_cap, "InvalidMaxLeverage"), above_cap
    assert fast[0] == 0 and refused(too_fast, "MarginFallsTooFast"), too_fast
    assert refused(cancel_stranger, "CancelNotAllowed"), cancel_stranger
    assert cancelled[0] == 0 and cancelled[1].startswith("cancelled 1: ")
    assert refused(approve_cancelled, "ProposalNotPending"), approve_cancelled
    rows = only_cancelled[1].splitlines()[2:]
    assert [r.split()[:4] for r in rows] == [["1", "market", "0", "cancelled"]]
    assert refused(guardian_stranger, "GuardianMismatch"), guardian_stranger
    assert halted[0] == 0
    assert refused(looser, "GuardianStatusNotSafer"), looser


async def test_bad_input_is_a_clear_error_before_any_transaction(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("[1, 2, 3]")
    broken = await cli("approve", "0", key="broken")
    unknown_field = await cli("propose", "--market", "0", "--set", "leverage=3", key="council0")
    tier_count = await cli("propose", "--market", "0", "--margin-tiers", "[]", key="council0")
    no_such = await cli("show", "5")
    assert broken[0] == 1 and "expected a JSON array of 64 bytes" in broken[2]
    assert unknown_field[0] == 1 and "--set: expected NAME=VALUE" in unknown_field[2]
    assert tier_count[0] == 1 and "expected 1 tiers (the count stays), got 0" in tier_count[2]
    assert no_such[0] == 1 and "expected an existing id (none proposed yet), got 5" in no_such[2]
    assert "pending" not in (await cli("list"))[1]  # nothing was proposed


async def test_a_global_proposal_moves_the_escape_hatch_on_the_exchange(cli: Cli) -> None:
    # Arrange: the hatch in force is the stack's Exchange value
    hatch = DEFAULT_ESCAPE_HATCH_SLOTS
    before = json.loads((await cli("list", "--json"))[1])
    # Act: propose doubling it (and one step beyond the pace limit), approve, wait, execute
    proposed = await cli("propose", "--global", "--escape-hatch-slots", str(2 * hatch),
                         key="council0")  # fmt: skip
    too_far = await cli("propose", "--global", "--escape-hatch-slots", str(2 * hatch + 1),
                        key="council0")  # fmt: skip
    out_of_bounds = await cli("propose", "--global", "--escape-hatch-slots", "149", key="council0")
    for proposal_id in ("0", "1"):
        await cli("approve", proposal_id, key="council1")
    shown = await cli("show", "0")
    cli.warp_seconds(TIMELOCK_S)
    refused_pace = await cli("execute", "1", key="stranger")  # from the hatch in force
    executed = await cli("execute", "0", key="stranger")
    listed = await cli("list")
    after = json.loads((await cli("list", "--json"))[1])
    # Assert
    assert before["escape_hatch_slots"] == hatch
    assert proposed[0] == 0 and too_far[0] == 0, (proposed, too_far)
    assert refused(out_of_bounds, "InvalidEscapeHatch"), out_of_bounds
    assert f"escape_hatch_slots: {2 * hatch}" in shown[1]
    assert "timelock_seconds: 3600" in shown[1]  # the other values stay as in force
    assert executed[0] == 0, executed
    assert refused(refused_pace, "EscapeHatchChangeTooFast"), refused_pace
    assert f"escape hatch {2 * hatch} slots" in listed[1]
    assert after["escape_hatch_slots"] == 2 * hatch
    assert (after["timelock_seconds"], after["max_leverage_cap"]) == (TIMELOCK_S, 20)
    assert after["proposals"][0]["global_params"]["escape_hatch_slots"] == 2 * hatch
    exchange = await cli.stack.client().get_account_info(cli.stack.accounts.addresses.exchange()[0])
    assert exchange.value is not None
    decoded = GovClient(cli.stack.client(), KEYS["stranger"], cli.stack.program_id)
    assert decoded.program.coder.accounts.decode(bytes(exchange.value.data)).escape_hatch_slots == (
        2 * hatch
    )


async def test_global_options_are_checked_before_any_transaction(cli: Cli) -> None:
    nothing = await cli("propose", "--global", key="council0")
    negative = await cli("propose", "--global", "--escape-hatch-slots", "-1", key="council0")
    too_big = await cli("propose", "--global", "--timelock-seconds", str(2**64), key="council0")
    without_global = await cli("propose", "--market", "0", "--escape-hatch-slots", "300",
                               key="council0")  # fmt: skip
    bad_share = await cli("propose", "--market", "0", "--set", "liquidator_share_ppm=-1",
                          key="council0")  # fmt: skip
    assert nothing[0] == 1 and "expected at least one of --timelock-seconds" in nothing[2]
    expected = f"--escape-hatch-slots: expected escape_hatch_slots in 0..{U64_MAX}, got -1"
    assert negative[0] == 1 and expected in negative[2]
    assert too_big[0] == 1 and "expected timelock_seconds in 0.." in too_big[2]
    assert without_global[0] == 1 and "--escape-hatch-slots needs --global" in without_global[2]
    assert bad_share[0] == 1 and "expected liquidator_share_ppm in 0..4294967295" in bad_share[2]
    assert "pending" not in (await cli("list"))[1]  # nothing was proposed


async def test_the_liquidation_split_is_proposed_through_set(cli: Cli) -> None:
    proposed = await cli("propose", "--market", "0", "--set", "liquidator_share_ppm=600000",
                         "--set", "liquidation_buffer_ppm=20000", key="council0")  # fmt: skip
    shown = await cli("show", "0")
    assert proposed[0] == 0, proposed
    assert "liquidator_share_ppm: 600000" in shown[1]
    assert "liquidation_buffer_ppm: 20000" in shown[1]


async def test_the_installed_entry_point_lists_proposals(cli: Cli) -> None:
    await cli("propose", "--market", "0", "--set", "taker_fee_ppm=500", key="council0")
    perpdex = Path(sys.executable).with_name("perpdex")
    proc = await asyncio.create_subprocess_exec(
        str(perpdex), "gov", "list", "--rpc-url", cli.stack.server.rpc_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines()[2].split()[:5] == ["0", "market", "0", "pending", "1/2"]


def test_keypair_files_round_trip(tmp_path: Path) -> None:
    from settlement.gov_cli import load_keypair

    key = Keypair()
    write_keypair(tmp_path / "k.json", key)
    assert load_keypair(tmp_path / "k.json") == key
