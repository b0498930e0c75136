"""A mergeable histogram of residuals over fixed, symmetric logarithmic bins.

Streaming data has no known range, so bins are fixed in advance: 50 per
decade for magnitudes from 1e-12 to 1e12, on each side of zero, plus a bin for
smaller magnitudes and one on each side for larger ones (2403 counts).  Counts
merge by addition, in any order; the relative width of a bin is 4.7%, so
:meth:`ResidualHistogram.linear` can re-bin them to a readable linear
histogram between quantiles (spreading each bin's count evenly over its
width).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

PER_DECADE = 50
LOW, HIGH = -12, 12
SIDE = (HIGH - LOW) * PER_DECADE  # bins on each side of zero
ZERO = SIDE + 1  # index of the bin of magnitudes below 10**LOW
SIZE = 2 * SIDE + 3


def bin_index(residuals: np.ndarray) -> np.ndarray:
    """The bin of each residual."""
    magnitude = np.abs(residuals)
    with np.errstate(divide="ignore", invalid="ignore"):
        position = np.floor((np.log10(magnitude) - LOW) * PER_DECADE)
    position = np.where(magnitude < 10.0**LOW, -1, np.clip(position, 0, SIDE))
    position = position.astype(np.int64)
    # position: -1 (tiny), 0 .. SIDE - 1 (decade bins), SIDE (overflow).
    return np.where(
        position < 0, ZERO, np.where(residuals > 0, ZERO + 1 + position, ZERO - 1 - position)
    )


def bin_edges() -> np.ndarray:
    """The edges of the bins in order (``SIZE + 1`` of them): bin ``i`` spans
    ``edges[i]`` to ``edges[i + 1]``; the overflow bins are the points
    ``-10**HIGH`` and ``10**HIGH``, the tiny-magnitude bin spans
    ``-10**LOW`` to ``10**LOW``."""
    positive = 10.0 ** (LOW + np.arange(SIDE + 1) / PER_DECADE)
    return np.concatenate([[-positive[-1]], -positive[::-1], positive, [positive[-1]]])


def bin_centres() -> np.ndarray:
    """A representative value of each bin (the overflow bins get their edge)."""
    k = np.arange(SIDE + 1)
    centres = 10.0 ** (LOW + (k + 0.5) / PER_DECADE)
    centres[-1] = 10.0**HIGH
    return np.concatenate([-centres[::-1], [0.0], centres])


# Groups whose own histogram is kept (2403 counts each): the plot draws a few
# of them, and a histogram per group of 10^6 groups would take 19 GB (more
# groups than this: the histogram of all rows alone).
HISTOGRAM_GROUPS = 64


class ResidualHistogram:
    """Counts of ``y_pred - y_true`` (every output element): of all rows, and
    per group while there are at most :data:`HISTOGRAM_GROUPS` groups
    (``counts``; ``per_group`` is False once there were more)."""

    def __init__(self) -> None:
        self.all_rows = np.zeros(SIZE, dtype=np.int64)
        self.counts: dict[Hashable, np.ndarray] = {}
        self.per_group = True

    def update(
        self,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        groups: np.ndarray | None = None,
        group_keys: list[Any] | None = None,
    ) -> None:
        residuals = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
        index = bin_index(residuals.reshape(residuals.shape[0], -1))
        self.all_rows += np.bincount(index.reshape(-1), minlength=SIZE)
        if groups is None or not self.per_group:
            return
        if group_keys is None:
            keys, inverse = np.unique(np.asarray(groups), return_inverse=True)
            key_list = keys.tolist()
        else:
            used, inverse = np.unique(np.asarray(groups, dtype=np.int64), return_inverse=True)
            key_list = [group_keys[i] for i in used.tolist()]
        key_list = [_stored(key) for key in key_list]
        if not self._room_for(key_list):
            return
        inverse = inverse.reshape(-1)
        width = index.shape[1]
        flat = np.repeat(inverse, width) * SIZE + index.reshape(-1)
        table = np.bincount(flat, minlength=len(key_list) * SIZE).reshape(len(key_list), SIZE)
        for key, row in zip(key_list, table, strict=True):
            self._add(key, row)

    def _room_for(self, keys: list[Hashable]) -> bool:
        """Whether the groups ``keys`` keep their histograms; if not, no group
        does any more."""
        if (
            len(keys) <= HISTOGRAM_GROUPS
            and len(self.counts.keys() | set(keys)) <= HISTOGRAM_GROUPS
        ):
            return True
        self.counts, self.per_group = {}, False
        return False

    def _add(self, key: Hashable, counts: np.ndarray) -> None:
        if key in self.counts:
            self.counts[key] = self.counts[key] + counts
        else:
            self.counts[key] = counts.astype(np.int64)

    def merge(self, other: ResidualHistogram) -> ResidualHistogram:
        self.all_rows += other.all_rows
        if not other.per_group:
            self.counts, self.per_group = {}, False
        if self.per_group and self._room_for(list(other.counts)):
            for key, counts in other.counts.items():
                self._add(key, counts)
        return self

    def total(self) -> np.ndarray:
        """The counts of all rows."""
        return self.all_rows.copy()

    @staticmethod
    def linear(
        counts: np.ndarray, bins: int = 60, limits: tuple[float, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Counts re-binned to ``bins`` linear bins between the 0.5% and 99.5%
        quantiles (or ``limits``): (edges, counts, below, above).  Each
        logarithmic bin's count is spread evenly over its width (the
        cumulative count, interpolated between the bins' edges, at the linear
        edges), so counts are fractional; ``below`` and ``above`` are rounded.
        Putting each bin's count at its centre left linear bins narrower than
        the logarithmic ones empty: gaps and spikes in a smooth distribution."""
        if limits is None:
            limits = quantile_limits(counts)
        lo, hi = limits
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        # The overflow bins (beyond 10**HIGH on either side) hold residuals of
        # unknown place: counted below and above, never drawn (the positive
        # one was drawn as a bar at 10**HIGH, the negative one counted below).
        inner = counts[1:-1]
        cumulative = np.concatenate([[0.0], np.cumsum(inner, dtype=np.float64)])
        at_edges = np.interp(edges, bin_edges()[1:-1], cumulative)
        below = round(float(counts[0] + at_edges[0]))
        above = round(float(counts[-1] + cumulative[-1] - at_edges[-1]))
        return edges, np.diff(at_edges), below, above


def _stored(key: Hashable) -> Hashable:
    """A group key as the histogram keeps it: NaN is the missing key None."""
    return None if isinstance(key, float) and key != key else key


def quantile_limits(counts: np.ndarray, tail: float = 0.005) -> tuple[float, float]:
    centres = bin_centres()
    total = counts.sum()
    if total == 0:
        return -1.0, 1.0
    cumulative = np.cumsum(counts) / total
    lo = centres[int(np.searchsorted(cumulative, tail))]
    hi = centres[int(np.searchsorted(cumulative, 1.0 - tail))]
    return float(lo), float(hi)
