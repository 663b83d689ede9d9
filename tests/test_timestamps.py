"""Start times formatted by the governor read exactly as ``datetime`` would write them."""
import datetime
import random

import pytest

from rain.common.timestamps import utc_isoformat


def _reference(timestamp):
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


@pytest.mark.parametrize("timestamp", [
    0.0, 1.0, 1763802000.0, 1763802000.5, 1763802000.000001, 1763802000.9999996,
    1763802000.9999994, 1763802001.0000004, 59.9999999, 86399.9999996, 1e9 + 0.25,
])
def test_same_text_as_datetime(timestamp):
    assert utc_isoformat(timestamp) == _reference(timestamp)


def test_same_text_as_datetime_for_many_times():
    rng = random.Random(7)
    base = 1763802000.0
    for _ in range(20000):
        timestamp = base + rng.uniform(0, 100)
        assert utc_isoformat(timestamp) == _reference(timestamp)
