"""Built-in losses on plain NumPy arrays, without the reference's conversions.

A small NumPy call spends most of its time in the reference's Python layers
(namespace, dtype and device look-ups, rank alignment, shape checks, the
weighting step), not in arithmetic: about 8 µs for MSE on (32, 10), where
``np.mean((p - t) ** 2)`` takes 4.  For the inputs that need none of those
layers, this module calls the reference's own math (the ``*_values``
functions of :mod:`losskit.functional`) and its own reduction
(:func:`losskit.reduction.reduce_values`, or with weights
:func:`~losskit.reduction.reduce_weighted_values`, which checks and applies
them), so the result is the reference's, bit for bit, warnings and errors
included.

Eligible: ``y_true`` and ``y_pred`` both exactly ``numpy.ndarray``, of the
same shape, rank >= 2, non-empty, and the loss's dtype (float32 or float64);
any weights, no mask; the backend preference ``"fast"``; a loss class of
the table below (the elementwise regression losses, Poisson and Dice).
Sparse categorical crossentropy (one numeric label per row of a (rows,
classes) ``y_pred``, no ``ignore_class``) picks the log-probability by
indexing where the reference sums a one-hot mask: the same number (see
:func:`_sparse`).  Anything else returns None and the reference runs,
with its checks and messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from losskit import _config
from losskit.reduction import reduce_values, reduce_weighted_values

__all__ = ["fast_call"]

# loss class -> (its values function, the names of its arguments)
_TABLE: dict[type, tuple[Callable[..., Any], tuple[str, ...]]] = {}


def fast_call(loss: Any, y_true: Any, y_pred: Any, sample_weight: Any, mask: Any) -> Any:
    """The loss of an eligible call (see the module docstring), else None."""
    if type(y_pred) is not np.ndarray or type(y_true) is not np.ndarray:
        return None
    if mask is not None:
        return None
    found = (_TABLE or _register()).get(type(loss))
    if found is None:
        return None
    if y_pred.dtype.name != loss._dtype or y_pred.ndim < 2 or y_pred.size == 0:
        return None
    if _config.backend_preference() != "fast":
        return None
    values_of, names = found
    arguments = loss._fn_kwargs
    if values_of is _sparse:
        values = _sparse(y_true, y_pred, **arguments)
        if values is None:
            return None
    elif y_true.dtype != y_pred.dtype or y_true.shape != y_pred.shape:
        return None
    else:
        values = values_of(np, y_true, y_pred, *(arguments[name] for name in names))
    if sample_weight is None:
        return reduce_values(np, values, None, loss.reduction)
    # The reference's weighting step itself: its checks, messages and result.
    return reduce_weighted_values(values, sample_weight, None, loss.reduction, y_pred.dtype)


def _sparse(
    y_true: np.ndarray, y_pred: np.ndarray, from_logits: bool, ignore_class: Any, axis: int
) -> np.ndarray | None:
    """Sparse categorical crossentropy of (rows, classes) predictions and
    one label per row, or None for other calls.

    The reference picks each row's log-probability with a one-hot mask and a
    sum over the classes (Keras's formulation); indexing picks the same
    number (the other terms of that sum are zeros, so it is exact), and
    a label outside ``[0, classes)`` gives -0.0, the negated empty sum.  The
    labels go through the reference's conversions: to the loss's dtype (as
    every ``y_true``), then to int32."""
    if ignore_class is not None or axis not in (-1, 1) or y_pred.ndim != 2:
        return None
    if y_true.dtype.kind not in "iuf" or y_true.shape != y_pred.shape[:1]:
        return None
    from losskit.functional import probabilistic

    labels = y_true.astype(y_pred.dtype).astype(np.int32)
    valid = labels.view(np.uint32) < y_pred.shape[1]  # negative labels wrap to >= 2**31
    log_prob = probabilistic.log_probabilities(np, y_pred, from_logits, 1)
    picked = log_prob[np.arange(labels.shape[0]), np.where(valid, labels, 0)]
    return np.where(valid, -picked, np.array(-0.0, dtype=picked.dtype))  # keeps bfloat16


def _dice(xp: Any, y_true: Any, y_pred: Any, axis: Any) -> Any:
    from losskit import _array
    from losskit.functional import segmentation

    axes = _array.normalize_axes(axis, y_pred.ndim)
    return _array.as_ndarray(segmentation.dice_values(xp, y_true, y_pred, axes))


def _register() -> dict[type, tuple[Callable[..., Any], tuple[str, ...]]]:
    from losskit import losses
    from losskit.functional import probabilistic, regression

    _TABLE.update(
        {
            losses.MeanSquaredError: (regression.squared_error_values, ()),
            losses.MeanAbsoluteError: (regression.absolute_error_values, ()),
            losses.MeanAbsolutePercentageError: (
                regression.absolute_percentage_error_values,
                (),
            ),
            losses.MeanSquaredLogarithmicError: (
                regression.squared_logarithmic_error_values,
                (),
            ),
            losses.Huber: (regression.huber_values, ("delta",)),
            losses.LogCosh: (regression.log_cosh_values, ()),
            losses.Poisson: (probabilistic.poisson_values, ()),
            losses.Dice: (_dice, ("axis",)),
            losses.SparseCategoricalCrossentropy: (_sparse, ()),
        }
    )
    return _TABLE
