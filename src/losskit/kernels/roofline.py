"""The memory roofline of a loss: one fused pass that reads two arrays (the
forward bound), and one that also writes an array of their size (the
forward+backward bound).  A loss cannot do less memory traffic than these.

>>> import numpy as np
>>> from losskit.kernels.roofline import read_pass, read_write_pass
>>> a, b = np.ones((4, 8), np.float32), np.full((4, 8), 2.0, np.float32)
>>> read_pass(a, b)
96.0
>>> out = np.empty_like(a)
>>> read_write_pass(a, b, out)
96.0
>>> float(out[0, 0])
3.0
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from losskit.kernels._numba_elementwise import FASTMATH


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _read(a, b):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in prange(a.shape[0]):
        row = 0.0
        for j in range(a.shape[1]):
            row += a[i, j] + b[i, j]
        total += row
    return total


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _read_write(a, b, out):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in prange(a.shape[0]):
        row = 0.0
        for j in range(a.shape[1]):
            s = a[i, j] + b[i, j]
            out[i, j] = s
            row += s
        total += row
    return total


def _as_2d(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x


def read_pass(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of ``a + b`` in one parallel pass (reads both arrays once)."""
    return float(_read(_as_2d(a), _as_2d(b)))


def read_write_pass(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> float:
    """Write ``out = a + b`` and return its sum, in one parallel pass."""
    return float(_read_write(_as_2d(a), _as_2d(b), _as_2d(out)))
