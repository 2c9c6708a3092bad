"""exchange.api.metrics: event counting, histogram buckets and the text exposition."""

from __future__ import annotations

from exchange.api.metrics import Family, Histogram, Metrics, render
from exchange.core.errors import RejectCode
from exchange.core.events import FundingRateApplied, OrderAccepted, OrderRejected


def _rejected(seq: int, code: int) -> OrderRejected:
    return OrderRejected(seq, 0, 1, 0, 0, 7, 0, code, "no")


def test_events_are_counted_by_market_and_reject_code() -> None:
    # Arrange
    metrics = Metrics(clock_s=lambda: 100.0)
    accepted = OrderAccepted._make([1, 0, 2] + [0] * (len(OrderAccepted._fields) - 3))
    funding = FundingRateApplied(3, 0, 1, 12, 5, -250, 10**6, 42)
    # Act
    metrics.observe_events([accepted, _rejected(2, RejectCode.UNKNOWN_MARKET), funding])
    metrics.observe_events([_rejected(4, RejectCode.UNKNOWN_MARKET), _rejected(5, 9999)])
    # Assert
    assert metrics.orders_accepted == {2: 1}
    assert metrics.rejections == {"UNKNOWN_MARKET": 2, "CODE_9999": 1}
    assert metrics.funding_rate == {1: -250}
    assert (metrics.events_total, metrics.last_event_seq) == (5, 5)
    text = metrics.render()
    assert 'perpdex_rejections_total{code="UNKNOWN_MARKET"} 2\n' in text
    assert 'perpdex_funding_rate{market_id="1"} -250\n' in text


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    # Arrange
    hist = Histogram((0.001, 0.01))
    family = Family("lat_seconds", "histogram", "latency")
    # Act
    for seconds in (0.0005, 0.002, 0.002, 5.0):
        hist.observe(seconds)
    hist.into(family, (("route", "/x"),))
    # Assert
    text = render([family])
    assert 'lat_seconds_bucket{route="/x",le="0.001"} 1\n' in text
    assert 'lat_seconds_bucket{route="/x",le="0.01"} 3\n' in text
    assert 'lat_seconds_bucket{route="/x",le="+Inf"} 4\n' in text
    assert 'lat_seconds_count{route="/x"} 4\n' in text
    assert text.startswith("# HELP lat_seconds latency\n# TYPE lat_seconds histogram\n")


def test_label_values_are_escaped() -> None:
    family = Family("x", "gauge", "h")
    family.add(1, (("name", 'a"b\\c\nd'),))
    assert render([family]).endswith('x{name="a\\"b\\\\c\\nd"} 1\n')
