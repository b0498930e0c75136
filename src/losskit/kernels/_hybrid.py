"""Kernels for losses dominated by exp and log: Numba for the arithmetic, NumPy
for the transcendental functions.

Numba's exp and log are scalar library calls; NumPy's ufuncs use SIMD
implementations several times faster per element.  So each chunk of rows (small
enough to stay in cache, so main memory is read once) goes through three
stages: a Numba ``prepare`` kernel writes the arguments of the transcendental
functions into scratch buffers, NumPy applies them in place, and a Numba
``combine`` kernel forms the losses (and the gradient).  The Numba stages
release the GIL, so chunks run in parallel on a thread pool.

Each loss restates the reference math of :mod:`losskit.functional` (the
definition), and is property-tested against it.  ``combine`` returns
``sum_i w_i * loss_i`` over the chunk and, if asked, writes
``grad = scale * w_i * d loss_i / d p``.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from losskit.kernels._numba_elementwise import FASTMATH, clamp_below, clip

CHUNK_ELEMENTS = 1 << 15  # 128 KiB per float32 buffer: three of them fit in L2
LOG2 = math.log(2.0)
# GIL released, so chunks run in threads; NumPy error model: x / 0 is inf, not an exception
arithmetic = njit(nogil=True, fastmath=FASTMATH, cache=True, error_model="numpy")


# --- mean squared logarithmic error: a = epsilon --------------------------------


@arithmetic
def _msle_prepare(t, p, a, b, u, v):  # type: ignore[no-untyped-def]
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            u[i, j] = max(p[i, j], a) + 1.0
            v[i, j] = max(t[i, j], a) + 1.0


@arithmetic
def _msle_combine(t, p, a, b, u, v, w, w_step, scale, grad, want_grad):  # type: ignore[no-untyped-def]
    total = 0.0
    features = p.shape[1]
    for i in range(p.shape[0]):
        row = 0.0
        factor = 2.0 * scale * w[i * w_step] / features
        for j in range(features):
            d = u[i, j] - v[i, j]  # log(max(p, eps) + 1) - log(max(t, eps) + 1)
            row += d * d
            if want_grad:
                p_clamped, inside = clamp_below(p[i, j], a)
                grad[i, j] = factor * d / (p_clamped + 1.0) * inside
        total += w[i * w_step] * row / features
    return total


def _log_both(u: np.ndarray, v: np.ndarray) -> None:
    np.log(u, out=u)
    np.log(v, out=v)


# --- Poisson: a = epsilon ---------------------------------------------------------


@arithmetic
def _poisson_prepare(t, p, a, b, u, v):  # type: ignore[no-untyped-def]
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            u[i, j] = p[i, j] + a


@arithmetic
def _poisson_combine(t, p, a, b, u, v, w, w_step, scale, grad, want_grad):  # type: ignore[no-untyped-def]
    total = 0.0
    features = p.shape[1]
    for i in range(p.shape[0]):
        row = 0.0
        factor = scale * w[i * w_step] / features
        for j in range(features):
            row += p[i, j] - t[i, j] * u[i, j]
            if want_grad:
                grad[i, j] = factor * (1.0 - t[i, j] / (p[i, j] + a))
        total += w[i * w_step] * row / features
    return total


def _log_first(u: np.ndarray, v: np.ndarray) -> None:
    np.log(u, out=u)


# --- KL divergence: a = epsilon; summed over a row -------------------------------


@arithmetic
def _kl_prepare(t, p, a, b, u, v):  # type: ignore[no-untyped-def]
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            t_clipped, _ = clip(t[i, j], a, 1.0)
            p_clipped, _ = clip(p[i, j], a, 1.0)
            u[i, j] = t_clipped / p_clipped


@arithmetic
def _kl_combine(t, p, a, b, u, v, w, w_step, scale, grad, want_grad):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in range(p.shape[0]):
        row = 0.0
        factor = scale * w[i * w_step]
        for j in range(p.shape[1]):
            t_clipped, _ = clip(t[i, j], a, 1.0)
            row += t_clipped * u[i, j]
            if want_grad:
                p_clipped, inside = clip(p[i, j], a, 1.0)
                grad[i, j] = -factor * t_clipped / p_clipped * inside
        total += w[i * w_step] * row
    return total


# --- log-cosh ------------------------------------------------------------------------


@arithmetic
def _log_cosh_prepare(t, p, a, b, u, v):  # type: ignore[no-untyped-def]
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            u[i, j] = -2.0 * abs(p[i, j] - t[i, j])


def _exp_then_log1p(u: np.ndarray, v: np.ndarray) -> None:
    np.exp(u, out=v)  # z = exp(-2|e|)
    np.log1p(v, out=u)  # log1p(z)


@arithmetic
def _log_cosh_combine(t, p, a, b, u, v, w, w_step, scale, grad, want_grad):  # type: ignore[no-untyped-def]
    # e + softplus(-2e) - log 2 = |e| + log1p(exp(-2|e|)) - log 2; d/de = tanh(e)
    total = 0.0
    features = p.shape[1]
    for i in range(p.shape[0]):
        row = 0.0
        factor = scale * w[i * w_step] / features
        for j in range(features):
            e = p[i, j] - t[i, j]
            row += abs(e) + u[i, j] - LOG2
            if want_grad:
                z = v[i, j]
                magnitude = (1.0 - z) / (1.0 + z)
                grad[i, j] = factor * (magnitude if e >= 0 else -magnitude)
        total += w[i * w_step] * row / features
    return total


# --- binary crossentropy on probabilities: a = epsilon, b = label smoothing ------


@arithmetic
def _bce_prepare(t, p, a, b, u, v):  # type: ignore[no-untyped-def]
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            p_clipped, _ = clip(p[i, j], a, 1.0 - a)
            u[i, j] = p_clipped
            v[i, j] = 1.0 - p_clipped


@arithmetic
def _bce_combine(t, p, a, b, u, v, w, w_step, scale, grad, want_grad):  # type: ignore[no-untyped-def]
    total = 0.0
    features = p.shape[1]
    for i in range(p.shape[0]):
        row = 0.0
        factor = scale * w[i * w_step] / features
        for j in range(features):
            target = t[i, j] * (1.0 - b) + 0.5 * b
            row -= target * u[i, j] + (1.0 - target) * v[i, j]
            if want_grad:
                p_clipped, inside = clip(p[i, j], a, 1.0 - a)
                derivative = (1.0 - target) / (1.0 - p_clipped) - target / p_clipped
                grad[i, j] = factor * derivative * inside
        total += w[i * w_step] * row / features
    return total


# --- binary crossentropy on logits: b = label smoothing ---------------------------


@arithmetic
def _bce_logits_prepare(t, p, a, b, u, v):  # type: ignore[no-untyped-def]
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            u[i, j] = -abs(p[i, j])


def _exp_then_log1p_keep(u: np.ndarray, v: np.ndarray) -> None:
    np.exp(u, out=v)  # z = exp(-|x|)
    np.log1p(v, out=u)


@arithmetic
def _bce_logits_combine(t, p, a, b, u, v, w, w_step, scale, grad, want_grad):  # type: ignore[no-untyped-def]
    # t softplus(-x) + (1 - t) softplus(x) = softplus(x) - t x; d/dx = sigmoid(x) - t
    total = 0.0
    features = p.shape[1]
    for i in range(p.shape[0]):
        row = 0.0
        factor = scale * w[i * w_step] / features
        for j in range(features):
            x = p[i, j]
            target = t[i, j] * (1.0 - b) + 0.5 * b
            row += max(x, 0.0) + u[i, j] - target * x
            if want_grad:
                z = v[i, j]
                sigmoid = (1.0 if x >= 0 else z) / (1.0 + z)
                grad[i, j] = factor * (sigmoid - target)
        total += w[i * w_step] * row / features
    return total


# --- categorical crossentropy on probabilities: a = epsilon, b = smoothing --------


@arithmetic
def _cce_prepare(t, p, a, b, u, v):  # type: ignore[no-untyped-def]
    for i in range(p.shape[0]):
        norm = 0.0
        for j in range(p.shape[1]):
            norm += p[i, j]
        for j in range(p.shape[1]):
            q, _ = clip(p[i, j] / norm, a, 1.0 - a)
            u[i, j] = q


@arithmetic
def _cce_combine(t, p, a, b, u, v, w, w_step, scale, grad, want_grad):  # type: ignore[no-untyped-def]
    classes = p.shape[1]
    total = 0.0
    for i in range(p.shape[0]):
        row = 0.0
        for j in range(classes):
            row -= (t[i, j] * (1.0 - b) + b / classes) * u[i, j]
        total += w[i * w_step] * row
        if want_grad:
            norm = 0.0
            for j in range(classes):
                norm += p[i, j]
            projection = 0.0
            for j in range(classes):
                q_raw = p[i, j] / norm
                q, inside = clip(q_raw, a, 1.0 - a)
                g = -(t[i, j] * (1.0 - b) + b / classes) / q * inside
                grad[i, j] = g
                projection += g * q_raw
            factor = scale * w[i * w_step] / norm
            for j in range(classes):
                grad[i, j] = factor * (grad[i, j] - projection)
    return total


# --- categorical crossentropy on logits: b = smoothing ----------------------------


@arithmetic
def _shift_by_row_max(t, p, a, b, u, v):  # type: ignore[no-untyped-def]
    for i in range(p.shape[0]):
        largest = -math.inf
        for j in range(p.shape[1]):
            largest = max(largest, p[i, j])
        for j in range(p.shape[1]):
            u[i, j] = p[i, j] - largest


def _exp_into_second(u: np.ndarray, v: np.ndarray) -> None:
    np.exp(u, out=v)


@arithmetic
def _cce_logits_combine(t, p, a, b, u, v, w, w_step, scale, grad, want_grad):  # type: ignore[no-untyped-def]
    classes = p.shape[1]
    total = 0.0
    for i in range(p.shape[0]):
        normalizer = 0.0
        for j in range(classes):
            normalizer += v[i, j]
        log_normalizer = math.log(normalizer)
        row = 0.0
        target_sum = 0.0
        for j in range(classes):
            target = t[i, j] * (1.0 - b) + b / classes
            row -= target * (u[i, j] - log_normalizer)
            target_sum += target
        total += w[i * w_step] * row
        if want_grad:
            factor = scale * w[i * w_step]
            for j in range(classes):
                target = t[i, j] * (1.0 - b) + b / classes
                grad[i, j] = factor * (target_sum * v[i, j] / normalizer - target)
    return total


# --- sparse categorical crossentropy on logits: t holds labels ---------------------


@arithmetic
def _sparse_logits_combine(t, p, a, b, u, v, w, w_step, scale, grad, want_grad):  # type: ignore[no-untyped-def]
    classes = p.shape[1]
    total = 0.0
    for i in range(p.shape[0]):
        label = int(t[i])
        valid = 0 <= label < classes
        normalizer = 0.0
        for j in range(classes):
            normalizer += v[i, j]
        if valid:
            total += w[i * w_step] * (math.log(normalizer) - u[i, label])
        if want_grad:
            factor = scale * w[i * w_step] if valid else 0.0
            for j in range(classes):
                grad[i, j] = factor * v[i, j] / normalizer
            if valid:
                grad[i, label] -= factor
    return total


@dataclass(frozen=True)
class HybridLoss:
    prepare: Callable[..., None]
    transcend: Callable[[np.ndarray, np.ndarray], None]
    combine: Callable[..., float]


HYBRID = {
    "MeanSquaredLogarithmicError": HybridLoss(_msle_prepare, _log_both, _msle_combine),
    "Poisson": HybridLoss(_poisson_prepare, _log_first, _poisson_combine),
    "KLDivergence": HybridLoss(_kl_prepare, _log_first, _kl_combine),
    "LogCosh": HybridLoss(_log_cosh_prepare, _exp_then_log1p, _log_cosh_combine),
    "BinaryCrossentropy": HybridLoss(_bce_prepare, _log_both, _bce_combine),
    "BinaryCrossentropyFromLogits": HybridLoss(
        _bce_logits_prepare, _exp_then_log1p_keep, _bce_logits_combine
    ),
    "CategoricalCrossentropy": HybridLoss(_cce_prepare, _log_first, _cce_combine),
    "CategoricalCrossentropyFromLogits": HybridLoss(
        _shift_by_row_max, _exp_into_second, _cce_logits_combine
    ),
    "SparseCategoricalCrossentropyFromLogits": HybridLoss(
        _shift_by_row_max, _exp_into_second, _sparse_logits_combine
    ),
}


# --- the runner -----------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_scratch = threading.local()


def _workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="losskit")
    return _pool


def _buffers(rows: int, features: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """This thread's two scratch buffers, reused across chunks and calls."""
    key = (rows, features, np.dtype(dtype).str)
    if getattr(_scratch, "key", None) != key:
        _scratch.key = key
        _scratch.buffers = (np.empty((rows, features), dtype), np.empty((rows, features), dtype))
    return _scratch.buffers


def _run_rows(
    loss: HybridLoss,
    t: np.ndarray,
    p: np.ndarray,
    w: np.ndarray,
    w_step: int,
    a: float,
    b: float,
    scale: float,
    grad: np.ndarray | None,
    start: int,
    stop: int,
) -> float:
    features = p.shape[1]
    rows_per_chunk = max(1, CHUNK_ELEMENTS // features)
    u_full, v_full = _buffers(rows_per_chunk, features, p.dtype)
    total = 0.0
    for first in range(start, stop, rows_per_chunk):
        last = min(first + rows_per_chunk, stop)
        u, v = u_full[: last - first], v_full[: last - first]
        t_chunk, p_chunk = t[first:last], p[first:last]
        loss.prepare(t_chunk, p_chunk, a, b, u, v)
        loss.transcend(u, v)
        weights = w[first:last] if w_step else w
        chunk_grad = u if grad is None else grad[first:last]
        total += loss.combine(
            t_chunk, p_chunk, a, b, u, v, weights, w_step, scale, chunk_grad, grad is not None
        )
    return total


def run(
    loss: HybridLoss,
    t: np.ndarray,
    p: np.ndarray,
    w: np.ndarray,
    w_step: int,
    a: float,
    b: float,
    scale: float = 1.0,
    grad: np.ndarray | None = None,
) -> float:
    """``sum_i w_i * loss_i`` over all rows (and ``grad = scale * d/dp`` of it if
    given), with rows split across the thread pool."""
    rows = p.shape[0]
    workers = _workers()
    if workers == 1 or p.size < 4 * CHUNK_ELEMENTS:
        return _run_rows(loss, t, p, w, w_step, a, b, scale, grad, 0, rows)
    bounds = np.linspace(0, rows, workers + 1).astype(int)
    futures = [
        _executor().submit(_run_rows, loss, t, p, w, w_step, a, b, scale, grad, lo, hi)
        for lo, hi in itertools.pairwise(bounds)
        if hi > lo
    ]
    return math.fsum(f.result() for f in futures)
