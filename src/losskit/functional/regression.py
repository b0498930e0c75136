"""Regression losses: per-sample functions.

Each function takes ``y_true`` and ``y_pred`` of the same shape (a trailing
dimension of 1 on one side is aligned away, as Keras does) and returns the
loss averaged over the last axis, so the result has shape ``y_pred.shape[:-1]``
and ``y_pred``'s dtype.  ``y_true`` may come from any array library; it is
converted to the library, device and dtype of ``y_pred``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from losskit import _array, _config
from losskit._array import Array, Namespace

__all__ = [
    "cosine_similarity",
    "huber",
    "log_cosh",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_error",
    "mean_squared_logarithmic_error",
]


def aligned_pair(y_true: Any, y_pred: Any, loss: str) -> tuple[Namespace, Array, Array]:
    """Convert, align a trailing dimension of 1, and require equal shapes."""
    xp, y_true, y_pred = _array.prepare_pair(y_true, y_pred)
    y_true, y_pred = _array.align_ranks(xp, y_true, y_pred)
    _array.check_same_shape(y_true, y_pred, loss)
    _array.check_min_rank(y_pred, 1, "y_pred", loss)
    return xp, y_true, y_pred


@_array.returns_array
def mean_squared_error(y_true: Any, y_pred: Any) -> Array:
    """Mean squared error over the last axis.

    ``loss = mean(square(y_true - y_pred), axis=-1)``

    >>> import losskit
    >>> losskit.mean_squared_error([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]])
    array([0.5, 0.5], dtype=float32)
    """
    xp, y_true, y_pred = aligned_pair(y_true, y_pred, "mean_squared_error")
    return squared_error_values(xp, y_true, y_pred)


def squared_error_values(xp: Namespace, y_true: Array, y_pred: Array) -> Array:
    """:func:`mean_squared_error`'s math on checked arrays (same shape and
    dtype, in ``xp``); the fast path for plain NumPy arrays calls it too."""
    return _array.mean(xp, xp.square(y_true - y_pred))


@_array.returns_array
def mean_absolute_error(y_true: Any, y_pred: Any) -> Array:
    """Mean absolute error over the last axis.

    ``loss = mean(abs(y_true - y_pred), axis=-1)``

    >>> import losskit
    >>> losskit.mean_absolute_error([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]])
    array([0.5, 0.5], dtype=float32)
    """
    xp, y_true, y_pred = aligned_pair(y_true, y_pred, "mean_absolute_error")
    return absolute_error_values(xp, y_true, y_pred)


def absolute_error_values(xp: Namespace, y_true: Array, y_pred: Array) -> Array:
    """:func:`mean_absolute_error`'s math on checked arrays."""
    return _array.mean(xp, xp.abs(y_true - y_pred))


@_array.returns_array
def mean_absolute_percentage_error(y_true: Any, y_pred: Any) -> Array:
    """Mean absolute percentage error over the last axis.

    ``loss = 100 * mean(abs((y_true - y_pred) / maximum(abs(y_true), eps)), axis=-1)``
    with ``eps = losskit.epsilon()``, so ``y_true = 0`` gives a large but finite
    loss and gradient.

    >>> import losskit
    >>> losskit.mean_absolute_percentage_error([[2.0, 4.0]], [[1.0, 5.0]])
    array([37.5], dtype=float32)
    """
    xp, y_true, y_pred = aligned_pair(y_true, y_pred, "mean_absolute_percentage_error")
    return absolute_percentage_error_values(xp, y_true, y_pred)


def absolute_percentage_error_values(xp: Namespace, y_true: Array, y_pred: Array) -> Array:
    """:func:`mean_absolute_percentage_error`'s math on checked arrays."""
    scale = _array.maximum(xp, xp.abs(y_true), _config.epsilon())
    return 100.0 * _array.mean(xp, xp.abs((y_true - y_pred) / scale))


@_array.returns_array
def mean_squared_logarithmic_error(y_true: Any, y_pred: Any) -> Array:
    """Mean squared logarithmic error over the last axis.

    ``loss = mean(square(log(maximum(y_pred, eps) + 1) - log(maximum(y_true, eps) + 1)),
    axis=-1)``: values at or below zero are replaced by ``eps``.

    >>> import losskit
    >>> losskit.mean_squared_logarithmic_error([[0.0, 1.0]], [[1.0, 1.0]])
    array([0.24022...], dtype=float32)
    """
    xp, y_true, y_pred = aligned_pair(y_true, y_pred, "mean_squared_logarithmic_error")
    return squared_logarithmic_error_values(xp, y_true, y_pred)


def squared_logarithmic_error_values(xp: Namespace, y_true: Array, y_pred: Array) -> Array:
    """:func:`mean_squared_logarithmic_error`'s math on checked arrays."""
    eps = _config.epsilon()
    log_pred = xp.log(_array.maximum(xp, y_pred, eps) + 1.0)
    log_true = xp.log(_array.maximum(xp, y_true, eps) + 1.0)
    return _array.mean(xp, xp.square(log_pred - log_true))


def l2_normalize(xp: Namespace, x: Array, axis: tuple[int, ...]) -> Array:
    """``x / max(norm(x), eps)`` along ``axis``.

    The squared norm is clamped before the reciprocal square root, so a zero
    vector gives a zero result with a finite gradient (Keras 3.15's clamp after
    ``rsqrt`` gives NaN gradients there).
    """
    eps = _config.epsilon()
    # in float32 for half precision: eps * eps is 0 in float16, and 1 / eps
    # beyond its range (a zero vector was NaN)
    wide = _array.widened(xp, x)
    square_sum = _array.total(xp, xp.square(wide), axis=axis, keepdims=True)
    return _array.narrowed(xp, wide / xp.sqrt(_array.maximum(xp, square_sum, eps * eps)), x.dtype)


@_array.returns_array
def cosine_similarity(y_true: Any, y_pred: Any, axis: int | Sequence[int] = -1) -> Array:
    """Negative cosine similarity along ``axis``.

    ``loss = -sum(l2_normalize(y_true) * l2_normalize(y_pred), axis=axis)``

    The result lies in [-1, 1]; -1 means the vectors point the same way.  If
    either vector is zero the loss is 0.

    >>> import losskit
    >>> y_true = [[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    >>> y_pred = [[1.0, 0.0], [1.0, 1.0], [-1.0, -1.0]]
    >>> losskit.cosine_similarity(y_true, y_pred, axis=-1)
    array([-0.        , -0.99999994,  0.99999994], dtype=float32)
    """
    xp, y_true, y_pred = aligned_pair(y_true, y_pred, "cosine_similarity")
    axes = _array.normalize_axes(axis, y_pred.ndim)
    assert axes is not None
    if not axes:
        raise ValueError("cosine_similarity: `axis` must name at least one axis.")
    products = l2_normalize(xp, y_true, axes) * l2_normalize(xp, y_pred, axes)
    return -_array.total(xp, products, axis=axes)


def check_delta(delta: Any) -> float:
    """Validate Huber's ``delta``: a finite real number > 0."""
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
        raise TypeError(
            f"`delta` must be a real number. Received: delta={delta!r} of type "
            f"{type(delta).__name__}."
        )
    if not (math.isfinite(delta) and float(delta) > 0):
        raise ValueError(f"`delta` must be a finite number > 0. Received: delta={delta!r}.")
    return float(delta)


@_array.returns_array
def huber(y_true: Any, y_pred: Any, delta: float = 1.0) -> Array:
    """Huber loss averaged over the last axis.

    With ``e = y_pred - y_true``::

        loss = mean(where(abs(e) <= delta, 0.5 * e**2, delta * abs(e) - 0.5 * delta**2),
                    axis=-1)

    computed as ``0.5 * q**2 + delta * maximum(abs(e) - delta, 0)`` with ``q =
    minimum(abs(e), delta)``: the same values (to rounding) with no branch, so
    huge errors neither overflow ``e**2`` nor poison the gradient, and each
    part passes the gradient on its own side of ``delta`` only (written as
    ``delta * (abs(e) - q)``, the two paths cancelled: float32 gradients of a
    ``delta`` of 10^8 came out 0).  A ``delta`` beyond the dtype's range is
    taken as its largest value (Keras's branch then is always quadratic; inf
    made the formula NaN).  ``delta`` must be > 0
    (Keras 3.15 accepts any value; upstream Keras now rejects non-positive ones).

    >>> import losskit
    >>> losskit.huber([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
    array([0.18      , 0.13000001], dtype=float32)
    """
    return huber_unchecked(y_true, y_pred, check_delta(delta))


@_array.returns_array
def huber_unchecked(y_true: Any, y_pred: Any, delta: float) -> Array:
    """:func:`huber` with ``delta`` already validated (the class checks it once)."""
    xp, y_true, y_pred = aligned_pair(y_true, y_pred, "huber")
    return huber_values(xp, y_true, y_pred, float(delta))


def delta_within(delta: float, xp: Any, dtype: Any) -> float:
    """Huber's ``delta`` as ``dtype`` (of the array library ``xp``) holds it:
    at most its largest finite value.  A larger ``delta`` becomes inf in that
    dtype, and the branch-free formula's linear part then ``inf * 0 = NaN``
    (Keras's branch takes the quadratic side); the largest value instead
    changes no value, since every finite error is within it."""
    return min(float(delta), _array.largest_finite(xp, dtype))


def huber_values(xp: Namespace, y_true: Array, y_pred: Array, delta: float) -> Array:
    """:func:`huber`'s math on checked arrays (``delta``: checked)."""
    abs_error = xp.abs(y_pred - y_true)
    delta = delta_within(delta, xp, abs_error.dtype)
    quadratic_part = _array.minimum(xp, abs_error, delta)
    linear_part = _array.maximum(xp, abs_error - delta, 0.0)
    return _array.mean(xp, 0.5 * xp.square(quadratic_part) + delta * linear_part)


@_array.returns_array
def log_cosh(y_true: Any, y_pred: Any) -> Array:
    """Logarithm of the hyperbolic cosine of the error, averaged over the last axis.

    ``loss = mean(log(cosh(e)), axis=-1)`` with ``e = y_pred - y_true``, computed
    as ``e + softplus(-2 e) - log(2)`` so it never overflows.  It is about
    ``e**2 / 2`` for small errors and ``abs(e) - log(2)`` for large ones.

    >>> import losskit
    >>> losskit.log_cosh([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]])
    array([0.2168904, 0.       ], dtype=float32)
    """
    xp, y_true, y_pred = aligned_pair(y_true, y_pred, "log_cosh")
    return log_cosh_values(xp, y_true, y_pred)


def log_cosh_values(xp: Namespace, y_true: Array, y_pred: Array) -> Array:
    """:func:`log_cosh`'s math on checked arrays."""
    error = y_pred - y_true
    return _array.mean(xp, error + softplus(xp, -2.0 * error) - math.log(2.0))


def softplus(xp: Namespace, x: Array) -> Array:
    """``log(1 + exp(x))`` without overflow (derivatives of every order finite)."""
    return _array.logaddexp(xp, x, xp.zeros_like(x))
