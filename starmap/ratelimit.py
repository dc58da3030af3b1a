"""GCRA (the generic cell rate algorithm): an exact "N per period" limit with one number per client.

Each client has a theoretical arrival time (TAT). A request at ``now`` is allowed
when ``max(tat, now) + interval - now <= period``; then ``tat`` moves on by one
``interval = period / limit``. A full quota regenerates smoothly, one request per
interval, and a client needs no state once ``tat <= now``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .frozen import new_tuple

__all__ = ("Verdict", "gcra")


class Verdict(NamedTuple):  # a tuple: made on every like, at half an attrs class's cost
    allowed: bool
    tat: float  # the client's new TAT (unchanged when refused)
    remaining: int
    reset: float  # seconds until the whole quota is back
    retry_after: float  # seconds until one more request is allowed (0 when allowed)


def gcra(tat: float, now: float, *, limit: int, period: float) -> Verdict:
    interval = period / limit
    base = tat if tat > now else now  # max() parses its arguments as a tuple
    new_tat = base + interval
    if new_tat - now > period + 1e-9:
        retry = new_tat - period - now
        return Verdict(False, tat, 0, base - now, retry)
    remaining = math.floor((period - (new_tat - now)) / interval + 1e-9)
    # Made as its tuple at once, not through the NamedTuple's Python __new__: every like decides.
    return new_tuple(Verdict, (True, new_tat, remaining, new_tat - now, 0.0))
