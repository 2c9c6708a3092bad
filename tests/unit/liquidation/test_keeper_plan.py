"""KeeperPlan: a keeper process's choices (targets per round, retry window, own owner,
backoff)."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.core.units import NANOS_PER_SECOND as S
from liquidation.errors import LiquidationInputError
from liquidation.keeper import Candidate, KeeperPlan


def _candidates() -> list[Candidate]:
    # (owner, sub, equity, maintenance): shortfalls 5, 50, 20, 50
    return [
        Candidate(1, 0, 95, 100),
        Candidate(2, 0, 50, 100),
        Candidate(3, 1, 80, 100),
        Candidate(4, 0, 50, 100),
    ]


def test_largest_shortfall_first_at_most_max_per_round() -> None:
    plan = KeeperPlan(max_per_round=2)

    chosen = plan.choose(_candidates(), 10 * S, free_collateral_quote=1)

    assert [(c.owner_id, c.sub_account_id) for c in chosen] == [(2, 0), (4, 0)]


def test_a_target_is_not_tried_again_within_the_retry_window() -> None:
    plan = KeeperPlan(max_per_round=2, retry_ns=S)
    plan.choose(_candidates(), 10 * S, free_collateral_quote=1)

    inside = plan.choose(_candidates(), 10 * S + S // 2, free_collateral_quote=1)
    after = plan.choose(_candidates(), 12 * S, free_collateral_quote=1)

    assert [c.owner_id for c in inside] == [3, 1]
    assert [c.owner_id for c in after] == [2, 4]


def test_never_its_own_owner_and_nothing_without_free_collateral() -> None:
    plan = KeeperPlan(own_owner_id=2)

    broke = plan.choose(_candidates(), 0, free_collateral_quote=0)
    chosen = plan.choose(_candidates(), 0, free_collateral_quote=1)

    assert broke == []
    assert [c.owner_id for c in chosen] == [4, 3, 1]


def test_backoff_doubles_to_its_cap_and_resets_after_a_clean_round() -> None:
    plan = KeeperPlan(backoff_min_ns=100, backoff_max_ns=500)

    delays = [plan.on_error() for _ in range(5)]
    plan.on_round_ok()

    assert delays == [100, 200, 400, 500, 500]
    assert plan.on_error() == 100


@pytest.mark.parametrize(
    "kwargs", [{"max_per_round": 0}, {"retry_ns": -1}, {"backoff_min_ns": 10, "backoff_max_ns": 5}]
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(LiquidationInputError):
        KeeperPlan(**kwargs)
