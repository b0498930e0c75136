"""Chunked NumPy kernels for losses dominated by exp and log.

Numba's exp and log are scalar library calls; NumPy's ufuncs use SIMD
implementations (several times faster per element).  So losses whose cost is
transcendental functions are evaluated here: rows are cut into chunks that
stay in cache (so main memory is still read once), each chunk is computed
with whole-array ufuncs, and chunks run on a thread pool (ufuncs release the
GIL).

Each row function ``fn(t, p, a, b, grad)`` returns the per-row losses of a
chunk as float64 and, when ``grad`` is given, writes d(row loss)/d p into it.
The math restates :mod:`losskit.functional` (the definition), and is
property-tested against it.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

LOG2 = math.log(2.0)
CHUNK_ELEMENTS = 1 << 14  # 64 KiB of float32 per temporary: cache-resident

_pool: ThreadPoolExecutor | None = None


def _workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="losskit")
    return _pool


# --- row functions ------------------------------------------------------------


def _row_mean(values: np.ndarray) -> np.ndarray:
    # NumPy sums each short row pairwise in its own dtype; rows are then
    # combined in float64 by the runner.
    return values.sum(axis=1).astype(np.float64) / values.shape[1]


def log_cosh(t: np.ndarray, p: np.ndarray, a: float, b: float, grad: Any) -> np.ndarray:
    error = p - t
    magnitude = np.abs(error)
    decay = np.exp(-2.0 * magnitude)  # e + softplus(-2e) = |e| + log1p(exp(-2|e|))
    if grad is not None:
        np.tanh(error, out=grad)
        grad /= p.shape[1]
    return _row_mean(magnitude + np.log1p(decay) - LOG2)


def squared_logarithmic_error(
    t: np.ndarray, p: np.ndarray, a: float, b: float, grad: Any
) -> np.ndarray:
    shifted_pred = np.maximum(p, p.dtype.type(a)) + 1.0
    difference = np.log(shifted_pred) - np.log(np.maximum(t, t.dtype.type(a)) + 1.0)
    if grad is not None:
        np.divide(difference, shifted_pred, out=grad)
        grad *= np.where(p > a, 2.0 / p.shape[1], 0.0).astype(p.dtype)
    return _row_mean(difference * difference)


def poisson(t: np.ndarray, p: np.ndarray, a: float, b: float, grad: Any) -> np.ndarray:
    shifted = p + p.dtype.type(a)
    if grad is not None:
        np.divide(t, shifted, out=grad)
        np.subtract(1.0, grad, out=grad)
        grad /= p.shape[1]
    return _row_mean(p - t * np.log(shifted))


def _clip(x: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Keras's clip, and where its derivative is 1."""
    low_, high_ = x.dtype.type(low), x.dtype.type(high)
    return np.minimum(np.maximum(x, low_), high_), (x > low_) & (x < high_)


def kl_divergence(t: np.ndarray, p: np.ndarray, a: float, b: float, grad: Any) -> np.ndarray:
    t_clipped, _ = _clip(t, a, 1.0)
    p_clipped, inside = _clip(p, a, 1.0)
    ratio = t_clipped / p_clipped
    if grad is not None:
        np.negative(ratio, out=grad)
        grad *= inside
    return (t_clipped * np.log(ratio)).sum(axis=1, dtype=np.float64)


def _smoothed(t: np.ndarray, smoothing: float, classes: float) -> np.ndarray:
    if not smoothing:
        return t
    return t * t.dtype.type(1.0 - smoothing) + t.dtype.type(smoothing / classes)


def binary_crossentropy(t: np.ndarray, p: np.ndarray, a: float, b: float, grad: Any) -> np.ndarray:
    t = _smoothed(t, b, 2.0)
    p_clipped, inside = _clip(p, a, 1.0 - a)
    positive = t == 1
    if np.all(positive | (t == 0)):
        # Hard labels: one logarithm per element, the same values (0 * log q = 0).
        chosen = np.where(positive, p_clipped, 1.0 - p_clipped)
        if grad is not None:
            np.divide(np.where(positive, -1.0, 1.0).astype(p.dtype), chosen, out=grad)
            grad *= inside
            grad /= p.shape[1]
        return -_row_mean(np.log(chosen))
    complement = 1.0 - p_clipped
    if grad is not None:
        np.divide(1.0 - t, complement, out=grad)
        grad -= t / p_clipped
        grad *= inside
        grad /= p.shape[1]
    return -_row_mean(t * np.log(p_clipped) + (1.0 - t) * np.log(complement))


def binary_crossentropy_from_logits(
    t: np.ndarray, p: np.ndarray, a: float, b: float, grad: Any
) -> np.ndarray:
    t = _smoothed(t, b, 2.0)
    decay = np.exp(-np.abs(p))
    # t softplus(-x) + (1 - t) softplus(x) = softplus(x) - t x
    softplus = np.maximum(p, 0.0) + np.log1p(decay)
    if grad is not None:
        np.divide(np.where(p >= 0, 1.0, decay), 1.0 + decay, out=grad)  # sigmoid
        grad -= t
        grad /= p.shape[1]
    return _row_mean(softplus - t * p)


def categorical_crossentropy(
    t: np.ndarray, p: np.ndarray, a: float, b: float, grad: Any
) -> np.ndarray:
    t = _smoothed(t, b, p.shape[1])
    norm = p.sum(axis=1, keepdims=True)
    q = p / norm
    q_clipped, inside = _clip(q, a, 1.0 - a)
    if grad is not None:
        g = -t / q_clipped * inside  # d loss / d q
        g -= (g * q).sum(axis=1, keepdims=True)
        np.divide(g, norm, out=grad)
    return -(t * np.log(q_clipped)).sum(axis=1, dtype=np.float64)


def _log_softmax_parts(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shifted = p - p.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    total = exponentials.sum(axis=1, keepdims=True)
    return shifted, exponentials, total


def categorical_crossentropy_from_logits(
    t: np.ndarray, p: np.ndarray, a: float, b: float, grad: Any
) -> np.ndarray:
    t = _smoothed(t, b, p.shape[1])
    shifted, exponentials, total = _log_softmax_parts(p)
    log_total = np.log(total)
    target_sum = t.sum(axis=1, keepdims=True)
    if grad is not None:
        np.divide(exponentials, total, out=grad)
        grad *= target_sum
        grad -= t
    return -(t * (shifted - log_total)).sum(axis=1, dtype=np.float64)


def sparse_categorical_crossentropy_from_logits(
    t: np.ndarray, p: np.ndarray, a: float, b: float, grad: Any
) -> np.ndarray:
    labels = t.astype(np.int64)
    valid = (labels >= 0) & (labels < p.shape[1])
    rows = np.arange(p.shape[0])
    picked = np.where(valid, labels, 0)
    shifted, exponentials, total = _log_softmax_parts(p)
    losses = np.log(total[:, 0]) - shifted[rows, picked]
    if grad is not None:
        np.divide(exponentials, total, out=grad)
        grad[rows, picked] -= 1.0
        grad *= valid[:, None]
    return np.where(valid, losses, 0.0).astype(np.float64)


ROW_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "LogCosh": log_cosh,
    "MeanSquaredLogarithmicError": squared_logarithmic_error,
    "Poisson": poisson,
    "KLDivergence": kl_divergence,
    "BinaryCrossentropy": binary_crossentropy,
    "BinaryCrossentropyFromLogits": binary_crossentropy_from_logits,
    "CategoricalCrossentropy": categorical_crossentropy,
    "CategoricalCrossentropyFromLogits": categorical_crossentropy_from_logits,
    "SparseCategoricalCrossentropyFromLogits": sparse_categorical_crossentropy_from_logits,
}


# --- the runner -------------------------------------------------------------------


def _run_rows(
    fn: Callable[..., np.ndarray],
    t: np.ndarray,
    p: np.ndarray,
    w: np.ndarray,
    w_step: int,
    a: float,
    b: float,
    start: int,
    stop: int,
    scale: float,
    grad: np.ndarray | None,
) -> float:
    rows_per_chunk = max(1, CHUNK_ELEMENTS // p.shape[1])
    total = 0.0
    for first in range(start, stop, rows_per_chunk):
        last = min(first + rows_per_chunk, stop)
        chunk_grad = None if grad is None else grad[first:last]
        losses = fn(t[first:last], p[first:last], a, b, chunk_grad)
        if w_step:
            weights = w[first:last]
            total += float(np.dot(losses, weights))
            if chunk_grad is not None:
                chunk_grad *= (scale * weights)[:, None].astype(chunk_grad.dtype)
        else:
            total += float(losses.sum()) * float(w[0])
            if chunk_grad is not None:
                chunk_grad *= chunk_grad.dtype.type(scale * float(w[0]))
    return total


def run(
    fn: Callable[..., np.ndarray],
    t: np.ndarray,
    p: np.ndarray,
    w: np.ndarray,
    w_step: int,
    a: float,
    b: float,
    scale: float = 1.0,
    grad: np.ndarray | None = None,
) -> float:
    """``sum_i w_i * loss_i`` over all rows, writing ``grad = scale * d/dp`` of it
    if given; rows are split across the thread pool."""
    rows = p.shape[0]
    workers = _workers()
    if workers == 1 or rows * p.shape[1] < 4 * CHUNK_ELEMENTS:
        return _run_rows(fn, t, p, w, w_step, a, b, 0, rows, scale, grad)
    bounds = np.linspace(0, rows, workers * 4 + 1).astype(int)
    futures = [
        _executor().submit(_run_rows, fn, t, p, w, w_step, a, b, lo, hi, scale, grad)
        for lo, hi in itertools.pairwise(bounds)
        if hi > lo
    ]
    return math.fsum(f.result() for f in futures)
