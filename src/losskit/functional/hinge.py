"""Hinge losses for classifiers that output scores.

Labels for :func:`hinge` and :func:`squared_hinge` are -1 or 1; labels given
as 0/1 are converted with ``2 * y - 1``, but only when *every* label of the
array is 0 or 1 (decided with ``where``, so it also works under ``jax.jit``).
"""

from __future__ import annotations

from typing import Any

from losskit import _array
from losskit._array import Array, Namespace

__all__ = ["categorical_hinge", "hinge", "hinge_with_fixed_labels", "squared_hinge"]


def _hinge_pair(y_true: Any, y_pred: Any, loss: str) -> tuple[Namespace, Array, Array]:
    xp, y_true, y_pred = _array.prepare_pair(y_true, y_pred)
    _array.check_same_shape(y_true, y_pred, loss)
    _array.check_min_rank(y_pred, 1, "y_pred", loss)
    return xp, y_true, y_pred


def binary_labels_to_signs(xp: Namespace, y_true: Array) -> Array:
    """``2 * y_true - 1`` if every label is 0 or 1, else ``y_true`` unchanged."""
    is_binary = xp.all((y_true == 0) | (y_true == 1))
    return xp.where(is_binary, 2.0 * y_true - 1.0, y_true)


def margins(
    y_true: Any, y_pred: Any, loss: str, convert: bool | None = None
) -> tuple[Namespace, Array]:
    """``maximum(1 - y_true * y_pred, 0)``, with 0/1 labels converted to signs
    by Keras's rule (``convert=None``), always (True) or never (False)."""
    xp, y_true, y_pred = _hinge_pair(y_true, y_pred, loss)
    if convert is None:
        signs = binary_labels_to_signs(xp, y_true)
    else:
        signs = 2.0 * y_true - 1.0 if convert else y_true
    return xp, _array.maximum(xp, 1.0 - signs * y_pred, 0.0)


@_array.returns_array
def hinge_with_fixed_labels(y_true: Any, y_pred: Any, *, squared: bool, convert: bool) -> Array:
    """:func:`hinge` (or :func:`squared_hinge`) with the label conversion
    decided by the caller instead of by the labels themselves: the streaming
    accumulators, which see a batch at a time, need both versions.

    >>> hinge_with_fixed_labels([[0.0, 1.0]], [[0.6, 0.4]], squared=False, convert=False)
    array([0.8], dtype=float32)
    >>> hinge_with_fixed_labels([[0.0, 1.0]], [[0.6, 0.4]], squared=False, convert=True)
    array([1.1], dtype=float32)
    """
    name = "squared_hinge" if squared else "hinge"
    xp, margin = margins(y_true, y_pred, name, convert=convert)
    return _array.mean(xp, xp.square(margin) if squared else margin)


@_array.returns_array
def hinge(y_true: Any, y_pred: Any) -> Array:
    """Hinge loss averaged over the last axis.

    ``loss = mean(maximum(1 - y_true * y_pred, 0), axis=-1)``

    >>> import losskit
    >>> losskit.hinge([[0.0, 1.0], [0.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]])
    array([1.1, 1.5], dtype=float32)
    """
    xp, margin = margins(y_true, y_pred, "hinge")
    return _array.mean(xp, margin)


@_array.returns_array
def squared_hinge(y_true: Any, y_pred: Any) -> Array:
    """Squared hinge loss averaged over the last axis.

    ``loss = mean(square(maximum(1 - y_true * y_pred, 0)), axis=-1)``

    >>> import losskit
    >>> losskit.squared_hinge([[0.0, 1.0], [0.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]])
    array([1.46, 2.26], dtype=float32)
    """
    xp, margin = margins(y_true, y_pred, "squared_hinge")
    return _array.mean(xp, xp.square(margin))


@_array.returns_array
def categorical_hinge(y_true: Any, y_pred: Any) -> Array:
    """Categorical hinge loss over the last axis (one-hot labels, no conversion).

    ``loss = maximum(max((1 - y_true) * y_pred, axis=-1) - sum(y_true * y_pred, axis=-1) + 1, 0)``

    >>> import losskit
    >>> losskit.categorical_hinge([[0.0, 1.0], [1.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]])
    array([1.2, 1.2], dtype=float32)
    """
    xp, y_true, y_pred = _hinge_pair(y_true, y_pred, "categorical_hinge")
    positive = _array.total(xp, y_true * y_pred, axis=-1)
    negative = _array.amax(xp, (1.0 - y_true) * y_pred, axis=-1)
    return _array.maximum(xp, negative - positive + 1.0, 0.0)
