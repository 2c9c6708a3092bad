"""Client side of the clearing program's governance (issue 8; docs/PROTOCOL.md, Governance).

Addresses of the Governance and Proposal PDAs, the instructions built through anchorpy's
``Program.instruction`` from the generated IDL, and the current ``RiskParams`` of a decoded
Market (the starting point of a proposal: copy, change a field, propose). The program checks
everything; these helpers only spell the accounts in the IDL's order.
"""

from __future__ import annotations

from typing import Any, Final

from anchorpy import Context, Program
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from settlement.onchain import DEFAULT_ESCAPE_HATCH_SLOTS, ClearingAddresses
from settlement.spec import MAX_COUNCIL, MAX_MARGIN_TIERS

GOVERNANCE_SEED: Final = b"governance"
PROPOSAL_SEED: Final = b"proposal"
GLOBAL_TARGET: Final = 0xFFFF
SYSTEM_PROGRAM_ID: Final = Pubkey.from_string("11111111111111111111111111111111")
PROPOSAL_STATUS: Final = {0: "pending", 1: "executed", 2: "cancelled"}

_RISK_FIELDS: Final = (
    "funding_cap_rate", "oracle_max_age_slots", "oracle_max_age_seconds", "max_position_base",
    "max_open_interest_base", "maker_fee_ppm", "taker_fee_ppm", "insurance_share_ppm",
    "oracle_max_confidence_ppm", "liquidation_fee_ppm", "max_leverage", "num_margin_tiers",
    "liquidator_share_ppm", "liquidation_buffer_ppm",
)  # fmt: skip


def governance_pda(program_id: Pubkey) -> tuple[Pubkey, int]:
    """The Governance PDA ``["governance"]`` and its bump."""
    return Pubkey.find_program_address([GOVERNANCE_SEED], program_id)


def proposal_pda(program_id: Pubkey, proposal_id: int) -> tuple[Pubkey, int]:
    """The Proposal PDA ``["proposal", id as u64 LE]`` and its bump."""
    return Pubkey.find_program_address(
        [PROPOSAL_SEED, proposal_id.to_bytes(8, "little")], program_id
    )


def zero_risk_params() -> dict[str, Any]:
    """All-zero ``RiskParams`` (the unused side of a global proposal)."""
    tier = {"up_to_notional_quote": 0, "initial_ppm": 0, "maintenance_ppm": 0}
    return {
        **dict.fromkeys(_RISK_FIELDS, 0),
        "padding": [0] * 7,
        "margin_tiers": [dict(tier) for _ in range(MAX_MARGIN_TIERS)],
    }


def zero_global_params() -> dict[str, Any]:
    """All-zero ``GlobalParams`` (the unused side of a market proposal)."""
    return {"timelock_seconds": 0, "max_leverage_cap": 0, "padding": [0] * 4,
            "escape_hatch_slots": 0}  # fmt: skip


def risk_params_of(market: Any) -> dict[str, Any]:
    """The ``RiskParams`` in force in a decoded Market account, as anchorpy takes them."""
    params: dict[str, Any] = {name: getattr(market, name) for name in _RISK_FIELDS}
    params["padding"] = [0] * 7
    params["margin_tiers"] = [
        {
            "up_to_notional_quote": t.up_to_notional_quote,
            "initial_ppm": t.initial_ppm,
            "maintenance_ppm": t.maintenance_ppm,
        }
        for t in market.margin_tiers
    ]
    return params


def global_params_of(governance: Any) -> dict[str, Any]:
    """The ``GlobalParams`` in force in a decoded Governance account."""
    p = governance.params
    return {"timelock_seconds": p.timelock_seconds, "max_leverage_cap": p.max_leverage_cap,
            "padding": [0] * 4, "escape_hatch_slots": p.escape_hatch_slots}  # fmt: skip


def initialize_governance_ix(
    program: Program,
    *,
    exchange: Pubkey,
    authority: Pubkey,
    council: list[Pubkey],
    threshold: int,
    guardian: Pubkey,
    timelock_seconds: int,
    max_leverage_cap: int,
    escape_hatch_slots: int = DEFAULT_ESCAPE_HATCH_SLOTS,
) -> Instruction:
    """``initialize_governance``: council keys (padded with zero keys), threshold, guardian;
    ``escape_hatch_slots`` must be the Exchange's (the program checks it)."""
    if not 1 <= len(council) <= MAX_COUNCIL:
        raise ValueError(f"council: expected 1..{MAX_COUNCIL} keys, got {len(council)}")
    padded = list(council) + [Pubkey.default()] * (MAX_COUNCIL - len(council))
    governance, bump = governance_pda(program.program_id)
    params = {"timelock_seconds": timelock_seconds, "max_leverage_cap": max_leverage_cap,
              "padding": [0] * 4, "escape_hatch_slots": escape_hatch_slots}  # fmt: skip
    return program.instruction["initialize_governance"](
        padded, len(council), threshold, guardian, params, bump,
        ctx=Context(accounts={"exchange": exchange, "governance": governance,
                              "authority": authority, "system_program": SYSTEM_PROGRAM_ID}),
    )  # fmt: skip


def propose_ix(
    program: Program,
    *,
    proposal_id: int,
    proposer: Pubkey,
    market_index: int = GLOBAL_TARGET,
    risk: dict[str, Any] | None = None,
    global_params: dict[str, Any] | None = None,
) -> Instruction:
    """``propose_param_change`` for one market's RiskParams or (GLOBAL_TARGET) GlobalParams."""
    proposal, bump = proposal_pda(program.program_id, proposal_id)
    return program.instruction["propose_param_change"](
        proposal_id, market_index, risk or zero_risk_params(),
        global_params or zero_global_params(), bump,
        ctx=Context(accounts={"governance": governance_pda(program.program_id)[0],
                              "proposal": proposal, "proposer": proposer,
                              "system_program": SYSTEM_PROGRAM_ID}),
    )  # fmt: skip


def approve_ix(program: Program, *, proposal_id: int, member: Pubkey) -> Instruction:
    """``approve`` by one council member."""
    return program.instruction["approve"](
        ctx=Context(accounts={"governance": governance_pda(program.program_id)[0],
                              "proposal": proposal_pda(program.program_id, proposal_id)[0],
                              "member": member}),
    )  # fmt: skip


def execute_ix(
    program: Program, *, proposal_id: int, market: Pubkey | None = None, exchange: bool = False
) -> Instruction:
    """``execute``; a market proposal takes its Market (writable) after the named accounts, a
    global one (``exchange``) the Exchange PDA (writable: its escape_hatch_slots)."""
    if exchange:
        market = ClearingAddresses(program.program_id).exchange()[0]
    remaining = [AccountMeta(market, False, True)] if market is not None else []
    return program.instruction["execute"](
        ctx=Context(accounts={"governance": governance_pda(program.program_id)[0],
                              "proposal": proposal_pda(program.program_id, proposal_id)[0]},
                    remaining_accounts=remaining),
    )  # fmt: skip


def cancel_ix(program: Program, *, proposal_id: int, signer: Pubkey) -> Instruction:
    """``cancel`` by the proposer or a council member."""
    return program.instruction["cancel"](
        ctx=Context(accounts={"governance": governance_pda(program.program_id)[0],
                              "proposal": proposal_pda(program.program_id, proposal_id)[0],
                              "signer": signer}),
    )  # fmt: skip


def guardian_set_status_ix(
    program: Program, *, market: Pubkey, guardian: Pubkey, status: int
) -> Instruction:
    """``guardian_set_status``: REDUCE_ONLY (2), CANCEL_ONLY (3) or HALTED (4), stricter only."""
    return program.instruction["guardian_set_status"](
        status,
        ctx=Context(accounts={"governance": governance_pda(program.program_id)[0],
                              "market": market, "guardian": guardian}),
    )  # fmt: skip
