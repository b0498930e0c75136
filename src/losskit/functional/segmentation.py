"""Overlap losses for segmentation: Dice and Tversky.

Both reduce over ``axis`` (all axes by default, giving one scalar for the
whole batch; pass e.g. ``axis=(1, 2, 3)`` for one loss per image).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from losskit import _array, _config
from losskit._array import Array, Namespace

__all__ = ["dice", "dice_from_sums", "tversky", "tversky_from_counts"]

Axis = int | Sequence[int] | None


def _overlap_pair(
    y_true: Any, y_pred: Any, axis: Axis, loss: str
) -> tuple[Namespace, Array, Array, tuple[int, ...] | None]:
    xp, y_true, y_pred = _array.prepare_pair(y_true, y_pred)
    _array.check_same_shape(y_true, y_pred, loss)
    return xp, y_true, y_pred, _array.normalize_axes(axis, y_pred.ndim)


@_array.returns_array
def dice(y_true: Any, y_pred: Any, axis: Axis = None) -> Array:
    """Dice loss over ``axis``.

    ``loss = 1 - 2 * sum(y_true * y_pred) / (sum(y_true) + sum(y_pred) + eps)``

    >>> import losskit
    >>> y_true = [[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]]
    >>> y_pred = [[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]]
    >>> losskit.dice(y_true, y_pred, axis=(1, 2, 3))
    array([0.5       , 0.75757575], dtype=float32)
    >>> losskit.dice(y_true, y_pred)
    array(0.6164384, dtype=float32)
    """
    xp, y_true, y_pred, axes = _overlap_pair(y_true, y_pred, axis, "dice")
    return dice_values(xp, y_true, y_pred, axes)


def dice_values(xp: Namespace, y_true: Array, y_pred: Array, axes: tuple[int, ...] | None) -> Array:
    """:func:`dice`'s math on checked arrays (same shape and dtype, in
    ``xp``) over normalised ``axes``; the fast path for plain NumPy arrays
    calls it too."""
    # sums and the division in float32 for float16/bfloat16: sums past 65504
    # (a 512 x 512 mask) were inf, and JAX's derivative of the division squares
    # the denominator (float16 gradients were 0 past a sum of 256)
    dice = dice_from_sums(
        _array.total(xp, y_true * y_pred, axis=axes, keep_wide=True),
        _array.total(xp, y_true, axis=axes, keep_wide=True),
        _array.total(xp, y_pred, axis=axes, keep_wide=True),
    )
    return _array.narrowed(xp, dice, y_pred.dtype)


def dice_from_sums(intersection: Any, true_sum: Any, pred_sum: Any) -> Any:
    """The Dice loss from its three sums (arrays or Python floats): what
    :func:`dice` computes, and what streaming and the fused kernels finish with.

    >>> dice_from_sums(1.0, 2.0, 2.0)
    0.50000...
    """
    return 1.0 - 2.0 * intersection / (true_sum + pred_sum + _config.epsilon())


def check_coefficient(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a real number. Received: {name}={value!r} of type "
            f"{type(value).__name__}."
        )
    if not (math.isfinite(value) and float(value) >= 0):
        raise ValueError(f"`{name}` must be a finite number >= 0. Received: {name}={value!r}.")
    return float(value)


@_array.returns_array
def tversky(
    y_true: Any, y_pred: Any, alpha: float = 0.5, beta: float = 0.5, axis: Axis = None
) -> Array:
    """Tversky loss over ``axis``.

    With ``tp = sum(y_true * y_pred)``, ``fp = sum((1 - y_true) * y_pred)`` and
    ``fn = sum(y_true * (1 - y_pred))``::

        loss = 1 - tp / (tp + alpha * fp + beta * fn + eps)

    ``alpha`` weighs false positives and ``beta`` false negatives, as in
    Salehi et al. (2017) and upstream Keras; Keras 3.15 swaps them.  With
    ``alpha = beta = 0.5`` it equals the Dice loss.

    >>> import losskit
    >>> y_true, y_pred = [[1.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]]  # tp=1, fp=2, fn=0
    >>> losskit.tversky(y_true, y_pred, alpha=0.9, beta=0.1)
    array(0.64285713, dtype=float32)
    """
    alpha = check_coefficient(alpha, "alpha")
    return tversky_unchecked(y_true, y_pred, alpha, check_coefficient(beta, "beta"), axis)


@_array.returns_array
def tversky_unchecked(y_true: Any, y_pred: Any, alpha: float, beta: float, axis: Axis) -> Array:
    """:func:`tversky` with ``alpha`` and ``beta`` already validated."""
    alpha, beta = float(alpha), float(beta)
    xp, y_true, y_pred, axes = _overlap_pair(y_true, y_pred, axis, "tversky")
    tversky = tversky_from_counts(  # in float32 for half precision, as dice_values
        _array.total(xp, y_true * y_pred, axis=axes, keep_wide=True),
        _array.total(xp, (1.0 - y_true) * y_pred, axis=axes, keep_wide=True),
        _array.total(xp, y_true * (1.0 - y_pred), axis=axes, keep_wide=True),
        alpha,
        beta,
    )
    return _array.narrowed(xp, tversky, y_pred.dtype)


def tversky_from_counts(
    true_positive: Any, false_positive: Any, false_negative: Any, alpha: float, beta: float
) -> Any:
    """The Tversky loss from its soft counts (arrays or Python floats); from
    the three sums of :func:`dice_from_sums`, ``false_positive = pred_sum -
    intersection`` and ``false_negative = true_sum - intersection``.

    >>> tversky_from_counts(1.0, 2.0, 0.0, alpha=0.9, beta=0.1)
    0.64285...
    """
    denominator = true_positive + alpha * false_positive + beta * false_negative + _config.epsilon()
    return 1.0 - true_positive / denominator
