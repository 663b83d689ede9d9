"""Task start times as ISO 8601 text, cheaply.

Every finished task reports its start time as text; ``datetime`` builds and formats a
whole date for each of thousands of tasks per second although only the fraction of a
second usually changes. The date and time up to the second are formatted once per second.
"""
import datetime
import math

_UTC = datetime.timezone.utc
_cached_second = None
_cached_prefix = ""


def utc_isoformat(timestamp):
    """``datetime.fromtimestamp(timestamp, timezone.utc).isoformat()``, same text."""
    global _cached_second, _cached_prefix
    fraction, whole = math.modf(timestamp)
    micros = round(fraction * 1e6)
    if micros >= 1000000:
        whole += 1
        micros -= 1000000
    elif micros < 0:
        whole -= 1
        micros += 1000000
    second = int(whole)
    if second != _cached_second:
        _cached_prefix = datetime.datetime.fromtimestamp(second, _UTC).isoformat()[:19]
        _cached_second = second
    if micros:
        return f"{_cached_prefix}.{micros:06d}+00:00"
    return f"{_cached_prefix}+00:00"
