"""One pass for several regression losses: the weighted sums of MSE, MAE,
MAPE, MSLE, Huber, log-cosh and cosine similarity over the same batch.

``losskit evaluate`` scores a file with the whole regression set by default;
the single-loss kernels read every batch once per loss, this one reads it
once.  The terms are the single-loss kernels' own (imported from
:mod:`losskit.kernels._numba_elementwise` and the cosine rows of
:mod:`losskit.kernels._numba_rowwise`), so each sum is the one those kernels
give, up to the order of the additions.

Every term is computed whichever losses were asked for (variants without
the transcendental ones would multiply Numba's compile time); the caller
uses this pass for three losses or more.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from losskit.kernels._numba_elementwise import (
    absolute_error,
    absolute_percentage_error,
    entry_point,
    finite_guard,
    huber,
    inlined,
    log_cosh,
    squared_error,
    squared_logarithmic_error,
)
from losskit.kernels._vmath import cast_as

# The order of the sums in the result (see losskit.kernels.regression_sums).
TERMS = (
    "squared_error",
    "absolute_error",
    "absolute_percentage_error",
    "squared_logarithmic_error",
    "huber",
    "log_cosh",
    "cosine_similarity",
)


@inlined
def _cosine_value(dot, true_norm2, pred_norm2, like, a):  # type: ignore[no-untyped-def]
    """A row's cosine similarity loss from its sums (as the rows kernel)."""
    floor = a * a
    inv_true = 1.0 / math.sqrt(max(true_norm2, floor))
    inv_pred = 1.0 / math.sqrt(max(pred_norm2, floor))
    guard = finite_guard(cast_as(dot + true_norm2 + pred_norm2, like))
    return -(dot + guard) * inv_true * inv_pred


@inlined
def _terms(x, y, eps, delta):  # type: ignore[no-untyped-def]
    """The six elementwise terms of one element, each with its finite guard."""
    guard = finite_guard(x * y)
    return (
        squared_error(x, y, eps, delta)[0] + guard,
        absolute_error(x, y, eps, delta)[0] + guard,
        absolute_percentage_error(x, y, eps, delta)[0] + guard,
        squared_logarithmic_error(x, y, eps, delta)[0] + guard,
        huber(x, y, delta, delta)[0] + guard,
        log_cosh(x, y, eps, delta)[0] + guard,
    )


@inlined
def _unweighted(w, i, j):  # type: ignore[no-untyped-def]
    return 1.0


@inlined
def _weighted(w, i, j):  # type: ignore[no-untyped-def]
    return w[i, j]


@inlined
def _blocked(t, p, w, eps, delta, weight_of):  # type: ignore[no-untyped-def]
    se = ae = ape = sle = hub = lc = cos = 0.0
    for i in prange(p.shape[0]):
        r_se = r_ae = r_ape = r_sle = r_hub = r_lc = r_cos = 0.0
        for j in range(p.shape[1]):
            x, y = t[i, j], p[i, j]
            weight = weight_of(w, i, j)
            a, b, c, d, e, f = _terms(x, y, eps, delta)
            r_se += weight * a
            r_ae += weight * b
            r_ape += weight * c
            r_sle += weight * d
            r_hub += weight * e
            r_lc += weight * f
            r_cos += weight * _cosine_value(x * y, x * x, y * y, y, eps)
        se += r_se
        ae += r_ae
        ape += r_ape
        sle += r_sle
        hub += r_hub
        lc += r_lc
        cos += r_cos
    return se, ae, ape, sle, hub, lc, cos


@entry_point
def blocked_sums(t, p, eps, delta):  # type: ignore[no-untyped-def]
    """Over the elements of ``t`` and ``p`` cut into long rows (blocks, so the
    inner loop vectorises whatever the number of features): the sum of each
    of the seven :data:`TERMS` over all elements.  The cosine term treats
    each element as a row: only right for rows of one feature."""
    return _blocked(t, p, p, eps, delta, _unweighted)


@entry_point
def blocked_weighted_sums(t, p, w, eps, delta):  # type: ignore[no-untyped-def]
    """:func:`blocked_sums` of ``w * term``, ``w`` the elements' weights (an
    array like ``p``: rows of one feature, one weight each)."""
    return _blocked(t, p, w, eps, delta, _weighted)


@inlined
def _row(t, p, i, eps, delta):  # type: ignore[no-untyped-def]
    """Row ``i``'s loss under each of the seven :data:`TERMS` (the six
    elementwise terms averaged over its features, then cosine similarity)."""
    features = p.shape[1]
    r_se = r_ae = r_ape = r_sle = r_hub = r_lc = 0.0
    dot = true_norm2 = pred_norm2 = 0.0
    for j in range(features):
        x, y = t[i, j], p[i, j]
        a, b, c, d, e, f = _terms(x, y, eps, delta)
        r_se += a
        r_ae += b
        r_ape += c
        r_sle += d
        r_hub += e
        r_lc += f
        dot += x * y
        true_norm2 += x * x
        pred_norm2 += y * y
    return (
        r_se / features,
        r_ae / features,
        r_ape / features,
        r_sle / features,
        r_hub / features,
        r_lc / features,
        _cosine_value(dot, true_norm2, pred_norm2, p[i, 0], eps),
    )


@entry_point
def row_sums(t, p, w, eps, delta):  # type: ignore[no-untyped-def]
    """``sum_i w_i loss_i`` of each of the seven :data:`TERMS` over rows of
    any number of features, ``w``: one weight per row."""
    se = ae = ape = sle = hub = lc = cos = 0.0
    for i in prange(p.shape[0]):
        a, b, c, d, e, f, g = _row(t, p, i, eps, delta)
        weight = w[i]
        se += weight * a
        ae += weight * b
        ape += weight * c
        sle += weight * d
        hub += weight * e
        lc += weight * f
        cos += weight * g
    return se, ae, ape, sle, hub, lc, cos


@entry_point
def row_losses(t, p, eps, delta):  # type: ignore[no-untyped-def]
    """Each row's loss under each of the seven :data:`TERMS`: ``out[k, i]``
    (rows of any number of features; the per-group sums are NumPy's
    ``bincount`` of these, which adds in row order as the reference's do)."""
    out = np.empty((7, p.shape[0]))
    if p.shape[1] == 1:  # no inner loop: the loop over rows vectorises
        for i in prange(p.shape[0]):
            x, y = t[i, 0], p[i, 0]
            a, b, c, d, e, f = _terms(x, y, eps, delta)
            out[0, i] = a
            out[1, i] = b
            out[2, i] = c
            out[3, i] = d
            out[4, i] = e
            out[5, i] = f
            out[6, i] = _cosine_value(x * y, x * x, y * y, y, eps)
        return out
    for i in prange(p.shape[0]):
        a, b, c, d, e, f, g = _row(t, p, i, eps, delta)
        out[0, i] = a
        out[1, i] = b
        out[2, i] = c
        out[3, i] = d
        out[4, i] = e
        out[5, i] = f
        out[6, i] = g
    return out
