"""Acknowledgements: ``command_result`` against its definition over a seeded stream."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from test_api_read_model import clearinghouse_stream

from exchange.api.service import command_result, private_json
from exchange.core.errors import RejectCode
from exchange.core.events import Event, OrderAccepted, OrderAmended, OrderCanceled, OrderRejected


def reference_result(
    owner_id: int, events: list[Event], first_kinds: tuple[type, ...]
) -> dict[str, Any]:
    """The acknowledgement as the API defines it, written plainly."""
    own = events[
        next(
            (i for i, e in enumerate(events) if type(e) in (*first_kinds, OrderRejected)),
            len(events),
        ) :
    ]
    result: dict[str, Any] = {"status": "ACCEPTED", "order_id": 0}
    if own:
        head = own[0]
        if type(head) is OrderRejected:
            result.update(
                status="REJECTED",
                reject_code=head.code,
                reject_code_name=RejectCode(head.code).name,
                message=head.message,
            )
        result["order_id"] = getattr(head, "order_id", 0)
        if type(head) is OrderAccepted:
            result["client_order_id"] = head.client_order_id
    result["events"] = [j for e in own for j in private_json(owner_id, e)]
    return result


@pytest.mark.parametrize("heads", [(OrderAccepted,), (OrderCanceled,), (OrderAmended,)])
def test_command_result_equals_the_reference_byte_for_byte(heads: tuple[type, ...]) -> None:
    # Arrange: every command's events of a stream with fills (two-sided events), rests,
    # IOC remainders, refusals; seen by the taker's and by another owner
    batches = [b for b in clearinghouse_stream(7, 800) if b]
    kinds = {type(e).__name__ for b in batches for e in b}
    assert {"TradeExecuted", "FillSettled", "OrderRejected", "OrderRested"} <= kinds

    # Act / Assert
    for events in batches:
        for owner_id in (1, 2):
            got = orjson.dumps(command_result(owner_id, events, heads))
            assert got == orjson.dumps(reference_result(owner_id, events, heads))
