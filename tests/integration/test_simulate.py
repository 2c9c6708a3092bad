"""Stress scenarios (``liquidation.simulate``) against the real clearinghouse, scaled down:
every scenario conserves value to the unit, keeps the insurance fund >= 0 and never
liquidates at a stale price; each also shows its own expected behaviour. The CLI runs them
full size (``perpdex simulate``)."""

from __future__ import annotations

import pytest

from exchange.cli import main
from liquidation.simulate import SCENARIOS, simulate

SMALL = {"fall40": 60, "gap25": 60, "outage5m": 40, "cascade10k": 150, "insurance-drain": 30}


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_keeps_the_invariants(name: str) -> None:
    report = simulate(name, seed=3, accounts=SMALL[name])
    assert report.max_conservation_gap_quote == 0
    assert report.insurance_fund_min_quote >= 0
    assert report.stale_liquidations == 0
    assert report.invariant_checks == report.steps + 1 + (name == "insurance-drain") * 2
    assert report.liquidations > 0


def test_the_same_seed_gives_the_same_run_and_another_seed_another() -> None:
    a = simulate("gap25", seed=5, accounts=30)
    b = simulate("gap25", seed=5, accounts=30)
    c = simulate("gap25", seed=6, accounts=30)
    assert a.state_hash == b.state_hash and a.to_json() == b.to_json()
    assert c.state_hash != a.state_hash


def test_fall40_liquidates_partially_and_keepers_race() -> None:
    report = simulate("fall40", seed=3, accounts=SMALL["fall40"])
    assert report.slices > 0 and report.liquidator_fees_quote > 0
    assert sum(report.keeper_wins.values()) + report.backstop_liquidations == report.liquidations
    # The losing keeper of each race is refused, never applied twice.
    assert report.refusals.get("LIQUIDATION_NOT_ELIGIBLE", 0) > 0


def test_gap25_bankrupts_and_uses_the_fund_then_adl() -> None:
    report = simulate("gap25", seed=3, accounts=SMALL["gap25"])
    assert report.bankruptcies > 0 and report.bad_debt_quote > 0
    assert report.insurance_paid_quote > 0
    assert report.adl_events > 0  # the fund (20,000) cannot cover a 25 % gap at 19x
    assert report.uncovered_quote == 0


def test_outage5m_refuses_every_liquidation_on_a_stale_or_invalid_oracle() -> None:
    report = simulate("outage5m", seed=3, accounts=SMALL["outage5m"])
    assert report.stale_attempts_refused > 0
    assert report.refusals["LIQUIDATION_ORACLE_INVALID"] == report.stale_attempts_refused
    assert report.liquidations > 0  # once the oracle is back


def test_insurance_drain_self_trading_is_blocked_and_the_fund_stays_positive() -> None:
    report = simulate("insurance-drain", seed=3, accounts=SMALL["insurance-drain"])
    assert report.self_trades_prevented == 1
    assert report.refusals["LIQUIDATION_SELF"] == 1
    # Across two owners the pair is not detectable: the fund pays the bankrupt leg's deficit,
    # no more, and the attacker's gain is bounded by it.
    assert report.insurance_paid_quote <= report.insurance_fund_start_quote
    assert report.attacker_net_quote <= report.insurance_paid_quote
    assert report.insurance_fund_end_quote >= 0


def test_cli_simulate_prints_the_report_as_its_last_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["simulate", "gap25", "--accounts", "20", "--seed", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    import json

    last = json.loads(out[-1])
    assert last["scenario"] == "gap25" and last["accounts"] == 20
    assert last["stale_liquidations"] == 0 and last["max_conservation_gap_quote"] == 0
    assert last["seconds"] > 0
