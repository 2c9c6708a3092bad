"""Governance of the clearing program (issue 8) on a real SVM with a warped Clock.

The same LiteSVM set-up as test_clearing_program.py (the committed .so, anchorpy instructions
from the generated IDL): a council of three keys with threshold two, a guardian, a one-hour
timelock. Every rejection must carry its own IDL error and leave every account (Exchange,
Market, Governance, the proposal) byte-identical.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from solders.account import Account
from solders.clock import Clock
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

# pytest puts this directory on sys.path (rootdir-relative, no packages)
from test_clearing_program import (
    CODES,
    ESCAPE_HATCH_SLOTS,
    NOW_S,
    NOW_SLOT,
    SOL,
    Chain,
    custom_error,
    key,
    make_chain,
    with_meta,
)

from settlement.governance import (
    GLOBAL_TARGET,
    approve_ix,
    cancel_ix,
    execute_ix,
    global_params_of,
    governance_pda,
    guardian_set_status_ix,
    initialize_governance_ix,
    proposal_pda,
    propose_ix,
    risk_params_of,
)

pytestmark = pytest.mark.integration

TIMELOCK_S = 3_600
COUNCIL = [key(60), key(61), key(62)]
GUARDIAN = key(63)
STRANGER = key(64)


class Gov:
    """The chain plus its governance keys and helpers."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.program = chain.program
        self.governance = governance_pda(chain.program_id)[0]
        self.market = chain.market_pda(0)[0]
        self.now_s = NOW_S
        self.next_id = 0

    def warp(self, seconds: int) -> None:
        self.now_s += seconds
        self.chain.svm.set_clock(Clock(NOW_SLOT + self.now_s - NOW_S, NOW_S, 0, 0, self.now_s))

    def risk(self, **changes: Any) -> dict[str, Any]:
        params = copy.deepcopy(risk_params_of(self.chain.decode(self.market)))
        for name, value in changes.items():
            if name == "tiers":
                for tier, (initial, maintenance) in zip(params["margin_tiers"], value):
                    tier["initial_ppm"], tier["maintenance_ppm"] = initial, maintenance
            elif name == "bounds":
                for tier, bound in zip(params["margin_tiers"], value):
                    tier["up_to_notional_quote"] = bound
            else:
                params[name] = value
        return params

    def propose(self, *, by: Keypair = COUNCIL[0], **kwargs: Any) -> Instruction:
        return propose_ix(self.program, proposal_id=self.next_id, proposer=by.pubkey(), **kwargs)

    def proposed(self, **kwargs: Any) -> int:
        """Propose (council[0]) and approve (council[1]); returns the id."""
        proposal_id = self.next_id
        self.chain.ok([self.propose(**kwargs)], [COUNCIL[0]])
        self.next_id += 1
        self.chain.ok([approve_ix(self.program, proposal_id=proposal_id,
                                  member=COUNCIL[1].pubkey())], [COUNCIL[1]])  # fmt: skip
        return proposal_id

    def execute(
        self, proposal_id: int, *, market: Pubkey | None = None, exchange: bool = False
    ) -> Instruction:
        return execute_ix(self.program, proposal_id=proposal_id, market=market, exchange=exchange)

    def watched(self) -> list[Pubkey]:
        proposals = [proposal_pda(self.chain.program_id, i)[0] for i in range(self.next_id + 1)]
        return [self.chain.exchange, self.market, self.governance, *proposals]

    def rejected(self, ixs: list[Instruction], signers: list[Keypair], error: str) -> None:
        before = self.chain.snapshot(self.watched())
        result = self.chain.send(ixs, signers)
        assert custom_error(result) == CODES[error], list(result.meta().logs())
        assert self.chain.snapshot(self.watched()) == before, "a rejection changed an account"


@pytest.fixture
def chain() -> Chain:
    return make_chain()


@pytest.fixture
def gov(chain: Chain) -> Gov:
    for k in [*COUNCIL, GUARDIAN, STRANGER]:
        chain.svm.airdrop(k.pubkey(), 10 * SOL)
    chain.ok([initialize_governance_ix(
        chain.program, exchange=chain.exchange, authority=chain.authority.pubkey(),
        council=[k.pubkey() for k in COUNCIL], threshold=2, guardian=GUARDIAN.pubkey(),
        timelock_seconds=TIMELOCK_S, max_leverage_cap=20,
        escape_hatch_slots=ESCAPE_HATCH_SLOTS)], [chain.authority])  # fmt: skip
    return Gov(chain)


# ------------------------------------------------------------------ the happy path


def test_a_change_needs_the_threshold_and_the_timelock_and_applies_exactly_once(gov: Gov) -> None:
    # Arrange: initial margins 10 % lower (within the 20 % limit), leverage unchanged
    market_before = gov.chain.decode(gov.market)
    new = gov.risk(tiers=[(90_000, 45_000), (180_000, 90_000)], max_position_base=10**12,
                   max_open_interest_base=10**13, liquidation_fee_ppm=20_000)  # fmt: skip
    gov.chain.ok([gov.propose(market_index=0, risk=new)], [COUNCIL[0]])
    gov.next_id = 1
    proposal = gov.chain.decode(proposal_pda(gov.chain.program_id, 0)[0])
    # Act / Assert: one approval is not enough; two are, but only after the timelock
    gov.rejected([gov.execute(0, market=gov.market)], [STRANGER], "NotEnoughApprovals")
    gov.chain.ok([approve_ix(gov.program, proposal_id=0, member=COUNCIL[2].pubkey())],
                 [COUNCIL[2]])  # fmt: skip
    gov.rejected([gov.execute(0, market=gov.market)], [STRANGER], "TimelockNotElapsed")
    gov.warp(TIMELOCK_S - 1)
    gov.rejected([gov.execute(0, market=gov.market)], [STRANGER], "TimelockNotElapsed")
    gov.warp(1)
    result = gov.chain.ok([gov.execute(0, market=gov.market)], [STRANGER])  # anyone executes
    gov.rejected([gov.execute(0, market=gov.market)], [STRANGER], "ProposalNotPending")
    market = gov.chain.decode(gov.market)
    assert proposal.earliest_execution_unix_s == NOW_S + TIMELOCK_S
    assert proposal.approvals_mask == 0b001
    assert gov.chain.decode(proposal_pda(gov.chain.program_id, 0)[0]).status == 1
    assert [(t.initial_ppm, t.maintenance_ppm) for t in market.margin_tiers[:2]] == [
        (90_000, 45_000), (180_000, 90_000)]  # fmt: skip
    assert (market.max_position_base, market.max_open_interest_base,
            market.liquidation_fee_ppm) == (10**12, 10**13, 20_000)  # fmt: skip
    # untouched: everything settlement owns
    assert (market.last_settled_sequence, market.cumulative_funding, market.tick_size) == (
        market_before.last_settled_sequence, market_before.cumulative_funding,
        market_before.tick_size)  # fmt: skip
    assert any("Program data:" in line for line in result.logs())  # RiskParamsChanged


def test_a_global_change_moves_the_timelock_within_its_limits(gov: Gov) -> None:
    longer = {"timelock_seconds": TIMELOCK_S * 3, "max_leverage_cap": 25, "padding": [0] * 4,
              "escape_hatch_slots": ESCAPE_HATCH_SLOTS}  # fmt: skip
    first = gov.proposed(global_params=longer)
    gov.warp(TIMELOCK_S)
    gov.chain.ok([gov.execute(first, exchange=True)], [STRANGER])
    # the new timelock governs later proposals; more than halving it at once is refused
    too_fast = {**longer, "timelock_seconds": TIMELOCK_S}
    second = gov.proposed(global_params=too_fast)
    gov.warp(TIMELOCK_S * 3 - 1)
    gov.rejected([gov.execute(second, exchange=True)], [STRANGER], "TimelockNotElapsed")
    gov.warp(1)
    gov.rejected([gov.execute(second, exchange=True)], [STRANGER], "TimelockFallsTooFast")
    governance = gov.chain.decode(gov.governance)
    assert global_params_of(governance)["timelock_seconds"] == TIMELOCK_S * 3
    assert governance.params.max_leverage_cap == 25 and governance.next_proposal_id == 2


# ------------------------------------------------------------------ who may do what


def test_only_the_council_proposes_and_approves_once_each(gov: Gov) -> None:
    new = gov.risk(liquidation_fee_ppm=10_000)
    gov.rejected([gov.propose(by=STRANGER, market_index=0, risk=new)], [STRANGER],
                 "NotCouncilMember")  # fmt: skip
    unsigned = with_meta(gov.propose(market_index=0, risk=new), 2, signer=False)
    gov.rejected([unsigned], [STRANGER], "CouncilNotSigner")
    gov.chain.ok([gov.propose(market_index=0, risk=new)], [COUNCIL[0]])
    gov.next_id = 1
    gov.rejected([approve_ix(gov.program, proposal_id=0, member=STRANGER.pubkey())], [STRANGER],
                 "NotCouncilMember")  # fmt: skip
    # the proposer approved by proposing
    gov.rejected([approve_ix(gov.program, proposal_id=0, member=COUNCIL[0].pubkey())],
                 [COUNCIL[0]], "AlreadyApproved")  # fmt: skip
    gov.chain.ok([approve_ix(gov.program, proposal_id=0, member=COUNCIL[1].pubkey())],
                 [COUNCIL[1]])  # fmt: skip
    gov.rejected([approve_ix(gov.program, proposal_id=0, member=COUNCIL[1].pubkey())],
                 [COUNCIL[1]], "AlreadyApproved")  # fmt: skip
    reused = gov.propose(market_index=0, risk=new)  # id 1 is next: id 0 again is refused
    stale = propose_ix(gov.program, proposal_id=0, proposer=COUNCIL[0].pubkey(), market_index=0,
                       risk=new)  # fmt: skip
    gov.rejected([stale], [COUNCIL[0]], "ProposalIdMismatch")
    gov.chain.ok([reused], [COUNCIL[0]])


def test_cancel_by_the_proposer_or_council_and_nothing_after_it(gov: Gov) -> None:
    proposal_id = gov.proposed(market_index=0, risk=gov.risk(liquidation_fee_ppm=10_000))
    gov.rejected([cancel_ix(gov.program, proposal_id=proposal_id, signer=STRANGER.pubkey())],
                 [STRANGER], "CancelNotAllowed")  # fmt: skip
    gov.chain.ok([cancel_ix(gov.program, proposal_id=proposal_id, signer=COUNCIL[2].pubkey())],
                 [COUNCIL[2]])  # fmt: skip
    gov.warp(TIMELOCK_S)
    gov.rejected([gov.execute(proposal_id, market=gov.market)], [STRANGER], "ProposalNotPending")
    gov.rejected([approve_ix(gov.program, proposal_id=proposal_id, member=COUNCIL[2].pubkey())],
                 [COUNCIL[2]], "ProposalNotPending")  # fmt: skip
    gov.rejected([cancel_ix(gov.program, proposal_id=proposal_id, signer=COUNCIL[0].pubkey())],
                 [COUNCIL[0]], "ProposalNotPending")  # fmt: skip
    assert gov.chain.decode(proposal_pda(gov.chain.program_id, proposal_id)[0]).status == 2


def test_the_guardian_only_makes_a_market_stricter(gov: Gov) -> None:
    def status(s: int, by: Keypair = GUARDIAN) -> Instruction:
        return guardian_set_status_ix(gov.program, market=gov.market, guardian=by.pubkey(),
                                      status=s)  # fmt: skip

    gov.rejected([status(4, STRANGER)], [STRANGER], "GuardianMismatch")
    gov.rejected([with_meta(status(4), 2, signer=False)], [STRANGER], "GuardianNotSigner")
    gov.rejected([status(1)], [GUARDIAN], "GuardianStatusNotSafer")  # post-only: not its power
    gov.rejected([status(5)], [GUARDIAN], "GuardianStatusNotSafer")
    gov.chain.ok([status(2)], [GUARDIAN])  # reduce-only, at once: no timelock
    gov.rejected([status(2)], [GUARDIAN], "GuardianStatusNotSafer")
    gov.rejected([status(0)], [GUARDIAN], "GuardianStatusNotSafer")  # never looser
    gov.chain.ok([status(4)], [GUARDIAN])
    gov.rejected([status(3)], [GUARDIAN], "GuardianStatusNotSafer")
    assert gov.chain.decode(gov.market).status == 4


# ------------------------------------------------------------------ hard bounds (at proposal)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"tiers": [(100_000, 100_000), (200_000, 100_000)]}, "InvalidMarginTiers"),
        ({"max_leverage": 0}, "InvalidMaxLeverage"),
        ({"max_leverage": 21}, "InvalidMaxLeverage"),  # above the global cap (20)
        ({"tiers": [(90_000, 45_000), (180_000, 90_000)], "max_leverage": 12},
         "LeverageAboveMargin"),
        ({"liquidation_fee_ppm": 50_000}, "InvalidLiquidationFee"),  # == first maintenance
        ({"oracle_max_age_slots": 0}, "InvalidOracleAge"),
        ({"oracle_max_age_seconds": 3_601}, "InvalidOracleAge"),
        ({"max_position_base": 0}, "InvalidPositionCaps"),
        ({"max_position_base": 10, "max_open_interest_base": 9}, "InvalidPositionCaps"),
        ({"taker_fee_ppm": 10_001}, "InvalidFeeSchedule"),
        ({"funding_cap_rate": 10**9 + 1}, "InvalidFundingCap"),
        ({"oracle_max_confidence_ppm": 10**6 + 1}, "InvalidGuardLimits"),
    ],
)  # fmt: skip
def test_a_proposal_outside_the_hard_bounds_is_refused(
    gov: Gov, changes: dict[str, Any], error: str
) -> None:
    gov.rejected([gov.propose(market_index=0, risk=gov.risk(**changes))], [COUNCIL[0]], error)


@pytest.mark.parametrize(
    ("global_params", "error"),
    [
        ({"timelock_seconds": 3_599, "max_leverage_cap": 20}, "InvalidTimelock"),
        ({"timelock_seconds": 31 * 86_400, "max_leverage_cap": 20}, "InvalidTimelock"),
        ({"timelock_seconds": 3_600, "max_leverage_cap": 0}, "InvalidMaxLeverageCap"),
        ({"timelock_seconds": 3_600, "max_leverage_cap": 101}, "InvalidMaxLeverageCap"),
        (
            {"timelock_seconds": 3_600, "max_leverage_cap": 20, "escape_hatch_slots": 149},
            "InvalidEscapeHatch",
        ),
        (
            {"timelock_seconds": 3_600, "max_leverage_cap": 20, "escape_hatch_slots": 1_512_001},
            "InvalidEscapeHatch",
        ),
    ],
)
def test_a_global_proposal_outside_the_hard_bounds_is_refused(
    gov: Gov, global_params: dict[str, int], error: str
) -> None:
    params = {"escape_hatch_slots": ESCAPE_HATCH_SLOTS, **global_params, "padding": [0] * 4}
    gov.rejected([gov.propose(global_params=params)], [COUNCIL[0]], error)


def test_a_proposal_carries_values_for_its_target_only(gov: Gov) -> None:
    both = gov.propose(market_index=0, risk=gov.risk(),
                       global_params={"timelock_seconds": 3_600, "max_leverage_cap": 20,
                                      "padding": [0] * 4,
                                      "escape_hatch_slots": ESCAPE_HATCH_SLOTS})  # fmt: skip
    gov.rejected([both], [COUNCIL[0]], "ProposalTargetMismatch")
    gov.rejected([gov.propose(market_index=GLOBAL_TARGET, risk=gov.risk())], [COUNCIL[0]],
                 "ProposalTargetMismatch")  # fmt: skip


# ------------------------------------------------------------------ rate limits (at execution)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"tiers": [(79_999, 40_000), (200_000, 100_000)]}, "MarginFallsTooFast"),
        ({"tiers": [(100_000, 39_999), (200_000, 100_000)]}, "MarginFallsTooFast"),
        ({"bounds": [200_000 * 10**6 + 1]}, "TierBoundRisesTooFast"),
        ({"oracle_max_age_slots": 101}, "OracleLimitsLoosenTooFast"),  # 50 -> more than 100
        ({"oracle_max_confidence_ppm": 40_001}, "OracleLimitsLoosenTooFast"),
        ({"funding_cap_rate": 2_000_001}, "CapsRiseTooFast"),
    ],
)
def test_a_change_beyond_the_rate_limits_is_refused_at_execution(
    gov: Gov, changes: dict[str, Any], error: str
) -> None:
    proposal_id = gov.proposed(market_index=0, risk=gov.risk(**changes))
    gov.warp(TIMELOCK_S)
    gov.rejected([gov.execute(proposal_id, market=gov.market)], [STRANGER], error)


def test_leverage_and_caps_move_stepwise_and_the_tier_count_stays(gov: Gov) -> None:
    # the fixture market: initial 10 % -> max_leverage 10 at creation, caps unlimited;
    # lowering leverage and caps is safer: any amount at once
    assert gov.chain.decode(gov.market).max_leverage == 10
    lowered = gov.proposed(market_index=0, risk=gov.risk(
        max_position_base=1_000, max_open_interest_base=5_000, max_leverage=4))  # fmt: skip
    gov.warp(TIMELOCK_S)
    gov.chain.ok([gov.execute(lowered, market=gov.market)], [STRANGER])
    cases = [
        (gov.risk(max_position_base=2_001), "CapsRiseTooFast"),
        (gov.risk(max_open_interest_base=10_001), "CapsRiseTooFast"),
        (gov.risk(max_leverage=6), "LeverageRisesTooFast"),  # 4 -> at most 5
    ]
    one_tier = gov.risk(num_margin_tiers=1)
    one_tier["margin_tiers"][0]["up_to_notional_quote"] = 2**64 - 1
    one_tier["margin_tiers"][1] = {"up_to_notional_quote": 0, "initial_ppm": 0,
                                   "maintenance_ppm": 0}  # fmt: skip
    cases.append((one_tier, "MarginTierCountChanged"))
    for risk, error in cases:
        proposal_id = gov.proposed(market_index=0, risk=risk)
        gov.warp(TIMELOCK_S)
        gov.rejected([gov.execute(proposal_id, market=gov.market)], [STRANGER], error)
    allowed = gov.proposed(market_index=0, risk=gov.risk(
        max_position_base=2_000, max_open_interest_base=10_000, max_leverage=5))  # fmt: skip
    gov.warp(TIMELOCK_S)
    gov.chain.ok([gov.execute(allowed, market=gov.market)], [STRANGER])
    market = gov.chain.decode(gov.market)
    assert (market.max_leverage, market.max_position_base, market.max_open_interest_base) == (
        5, 2_000, 10_000)  # fmt: skip


# ------------------------------------------------------------------ accounts


def test_execute_needs_the_proposals_own_market_and_real_accounts(gov: Gov) -> None:
    gov.chain.ok([gov.chain.create_market_ix(1)], [gov.chain.authority])
    proposal_id = gov.proposed(market_index=0, risk=gov.risk(liquidation_fee_ppm=10_000))
    gov.warp(TIMELOCK_S)
    gov.rejected([gov.execute(proposal_id)], [STRANGER], "ProposalMarketMissing")
    other = gov.chain.market_pda(1)[0]
    gov.rejected([gov.execute(proposal_id, market=other)], [STRANGER], "ProposalMarketMismatch")
    # a byte copy of the proposal (or of Governance) at another address is not the PDA
    ix = gov.execute(proposal_id, market=gov.market)
    for index, source, error in [(1, proposal_pda(gov.chain.program_id, proposal_id)[0],
                                  "ProposalWrongPda"),
                                 (0, gov.governance, "GovernanceWrongPda")]:  # fmt: skip
        account = gov.chain.svm.get_account(source)
        assert account is not None
        forged = Keypair().pubkey()
        gov.chain.svm.set_account(forged, Account(account.lamports, bytes(account.data),
                                                  gov.chain.program_id, False, 0))  # fmt: skip
        gov.rejected([with_meta(ix, index, pubkey=forged)], [STRANGER], error)
    readonly = list(ix.accounts)
    readonly[2] = AccountMeta(gov.market, False, False)
    gov.rejected([Instruction(ix.program_id, ix.data, readonly)], [STRANGER],
                 "AccountNotWritable")  # fmt: skip


def test_governance_is_created_once_by_the_exchange_authority_with_a_sound_council(
    chain: Chain,
) -> None:
    def init(*, by: Keypair | None = None, council: list[Keypair] = COUNCIL, threshold: int = 2,
             guardian: Pubkey | None = None) -> Instruction:  # fmt: skip
        signer = by or chain.authority
        return initialize_governance_ix(
            chain.program, exchange=chain.exchange, authority=signer.pubkey(),
            council=[k.pubkey() for k in council], threshold=threshold,
            guardian=guardian or GUARDIAN.pubkey(), timelock_seconds=TIMELOCK_S,
            max_leverage_cap=20, escape_hatch_slots=ESCAPE_HATCH_SLOTS)  # fmt: skip

    chain.svm.airdrop(STRANGER.pubkey(), 10 * SOL)
    gov = Gov(chain)
    gov.rejected([init(by=STRANGER)], [STRANGER], "AuthorityMismatch")
    gov.rejected([init(council=[COUNCIL[0], COUNCIL[0]])], [chain.authority], "InvalidCouncil")
    gov.rejected([init(threshold=0)], [chain.authority], "InvalidThreshold")
    gov.rejected([init(threshold=4)], [chain.authority], "InvalidThreshold")
    gov.rejected([init(guardian=Pubkey.default())], [chain.authority], "InvalidGuardian")
    chain.ok([init()], [chain.authority])
    gov.rejected([init()], [chain.authority], "GovernanceAlreadyInitialized")
    governance = chain.decode(gov.governance)
    assert (governance.num_council, governance.threshold, governance.next_proposal_id) == (3, 2, 0)
    assert list(governance.council[:3]) == [k.pubkey() for k in COUNCIL]


# ------------------------------------------------------------------ liquidation split, escape hatch


def test_the_liquidators_share_and_the_buffer_are_governed_within_their_bounds(gov: Gov) -> None:
    # Arrange: the fixture market was created with the engine's defaults
    market = gov.chain.decode(gov.market)
    assert (market.liquidator_share_ppm, market.liquidation_buffer_ppm) == (500_000, 10_000)
    for changes in ({"liquidator_share_ppm": 10**6 + 1}, {"liquidation_buffer_ppm": 100_001}):
        gov.rejected([gov.propose(market_index=0, risk=gov.risk(**changes))], [COUNCIL[0]],
                     "InvalidLiquidationSplit")  # fmt: skip
    # Act: no pace limit (the share moves a fee between liquidator and fund, the buffer sizes
    # liquidations of accounts already below maintenance): the bounds in one step
    proposal_id = gov.proposed(market_index=0, risk=gov.risk(
        liquidator_share_ppm=10**6, liquidation_buffer_ppm=100_000))  # fmt: skip
    gov.warp(TIMELOCK_S)
    gov.chain.ok([gov.execute(proposal_id, market=gov.market)], [STRANGER])
    # Assert: the Market holds them (liquidate and the gov watcher read them there)
    market = gov.chain.decode(gov.market)
    assert (market.liquidator_share_ppm, market.liquidation_buffer_ppm) == (10**6, 100_000)
    assert risk_params_of(market)["liquidator_share_ppm"] == 10**6


def test_escape_hatch_slots_are_governed_on_the_exchange_at_most_doubling_or_halving(
    gov: Gov,
) -> None:
    # Arrange: the global values in force
    now = global_params_of(gov.chain.decode(gov.governance))
    assert now["escape_hatch_slots"] == ESCAPE_HATCH_SLOTS

    def hatch(slots: int) -> int:
        return gov.proposed(global_params={**now, "escape_hatch_slots": slots})

    too_far, doubled = hatch(2 * ESCAPE_HATCH_SLOTS + 1), hatch(2 * ESCAPE_HATCH_SLOTS)
    gov.warp(TIMELOCK_S)
    # Act / Assert: more than double is refused; the Exchange must come along, writable
    gov.rejected([gov.execute(too_far, exchange=True)], [STRANGER], "EscapeHatchChangeTooFast")
    gov.rejected([gov.execute(doubled)], [STRANGER], "ExecuteExchangeMissing")
    ix = gov.execute(doubled, exchange=True)
    readonly = [*ix.accounts[:2], AccountMeta(gov.chain.exchange, False, False)]
    gov.rejected([Instruction(ix.program_id, ix.data, readonly)], [STRANGER],
                 "AccountNotWritable")  # fmt: skip
    gov.chain.ok([ix], [STRANGER])
    # Assert: the value in force is the Exchange's (withdraw reads it), Governance mirrors it
    assert gov.chain.decode(gov.chain.exchange).escape_hatch_slots == 2 * ESCAPE_HATCH_SLOTS
    now = global_params_of(gov.chain.decode(gov.governance))
    assert now["escape_hatch_slots"] == 2 * ESCAPE_HATCH_SLOTS
    # below the hard bound already at proposal; from 600, less than half (299) at execution
    gov.rejected([gov.propose(global_params={**now, "escape_hatch_slots": 149})], [COUNCIL[0]],
                 "InvalidEscapeHatch")  # fmt: skip
    up = hatch(4 * ESCAPE_HATCH_SLOTS)
    gov.warp(TIMELOCK_S)
    gov.chain.ok([gov.execute(up, exchange=True)], [STRANGER])
    now = global_params_of(gov.chain.decode(gov.governance))
    halved_too_far = hatch(2 * ESCAPE_HATCH_SLOTS - 1)
    gov.warp(TIMELOCK_S)
    gov.rejected([gov.execute(halved_too_far, exchange=True)], [STRANGER],
                 "EscapeHatchChangeTooFast")  # fmt: skip
    assert gov.chain.decode(gov.chain.exchange).escape_hatch_slots == 4 * ESCAPE_HATCH_SLOTS


def test_governance_starts_from_the_exchanges_escape_hatch(chain: Chain) -> None:
    gov = Gov(chain)
    ix = initialize_governance_ix(
        chain.program, exchange=chain.exchange, authority=chain.authority.pubkey(),
        council=[k.pubkey() for k in COUNCIL], threshold=2, guardian=GUARDIAN.pubkey(),
        timelock_seconds=TIMELOCK_S, max_leverage_cap=20,
        escape_hatch_slots=ESCAPE_HATCH_SLOTS + 1)  # fmt: skip
    gov.rejected([ix], [chain.authority], "EscapeHatchMismatch")
