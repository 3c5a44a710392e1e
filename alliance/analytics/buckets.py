"""Turnaround histograms: the bucket edges, and percentiles from buckets or from exact values.

At scale a percentile comes from per-period histograms. The edges grow geometrically by
`RATIO` from one minute, so a percentile read from them (interpolated linearly inside its
bucket) is off by less than one bucket's width: at most 30 % of the value, usually far
less. On a small selection the API computes percentiles exactly instead (nearest rank over
the operational rows); see docs/analytics.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

RATIO = 1.3
FIRST_EDGE_SECONDS = 60.0
# Bucket 0 is [0, 60 s); bucket k is [EDGES[k-1], EDGES[k]); the last one is open-ended.
EDGES: tuple[float, ...] = tuple(FIRST_EDGE_SECONDS * RATIO**k for k in range(41))
BUCKETS = len(EDGES) + 1
BUCKET_FIELDS: tuple[str, ...] = tuple(f"tat_h{k:02d}" for k in range(BUCKETS))


def bucket_of(seconds: float) -> int:
    """The bucket a turnaround of `seconds` falls into."""
    if seconds < FIRST_EDGE_SECONDS:
        return 0
    k = int(math.log(seconds / FIRST_EDGE_SECONDS, RATIO)) + 1
    # Floating point at an exact edge: settle it against the edges themselves.
    while k < BUCKETS - 1 and seconds >= EDGES[k]:
        k += 1
    while k > 0 and seconds < EDGES[k - 1]:
        k -= 1
    return min(k, BUCKETS - 1)


def percentile_exact(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile by nearest rank (the value at rank ceil(p/100 * n))."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return float(ordered[rank - 1])


def percentile_from_buckets(counts: Sequence[int], p: float) -> float | None:
    """The p-th percentile (nearest rank) placed inside its bucket by linear interpolation."""
    total = sum(counts)
    if total == 0:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for k, count in enumerate(counts):
        if count and seen + count >= rank:
            low = 0.0 if k == 0 else EDGES[k - 1]
            # The open-ended last bucket is given the same width ratio as the others.
            high = EDGES[k] if k < len(EDGES) else EDGES[-1] * RATIO
            return low + (high - low) * (rank - seen) / count
        seen += count
    return None
