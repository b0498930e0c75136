"""Probabilistic losses: crossentropies, Kullback-Leibler divergence, Poisson.

Probabilities are clipped to ``[eps, 1 - eps]`` (``eps = losskit.epsilon()``)
before their logarithm, so predictions of exactly 0 or 1 give finite losses
and gradients; the ``from_logits=True`` paths use log-sigmoid and
log-softmax, which are exact and stable for any logits.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

from losskit import _array, _config
from losskit._array import Array, Namespace
from losskit.functional.regression import softplus

__all__ = [
    "binary_crossentropy",
    "categorical_crossentropy",
    "kl_divergence",
    "poisson",
    "sparse_categorical_crossentropy",
]


def _same_shape_pair(y_true: Any, y_pred: Any, loss: str) -> tuple[Namespace, Array, Array]:
    xp, y_true, y_pred = _array.prepare_pair(y_true, y_pred)
    _array.check_same_shape(y_true, y_pred, loss)
    _array.check_min_rank(y_pred, 1, "y_pred", loss)
    return xp, y_true, y_pred


@_array.returns_array
def kl_divergence(y_true: Any, y_pred: Any) -> Array:
    """Kullback-Leibler divergence over the last axis.

    ``loss = sum(t * log(t / p), axis=-1)`` with ``t = clip(y_true, eps, 1)`` and
    ``p = clip(y_pred, eps, 1)``, computed as ``t * (log(t) - log(p))``: the
    same values to rounding as Keras's ``t * log(t / p)``, but its gradient
    ``-t / p`` has no ``t / p**2`` intermediate, which overflows float16 for
    ``p`` near 0.001.

    >>> import losskit
    >>> losskit.kl_divergence([[0.5, 0.5]], [[0.25, 0.75]])
    array([0.14384...], dtype=float32)
    """
    xp, y_true, y_pred = _same_shape_pair(y_true, y_pred, "kl_divergence")
    eps = _config.epsilon()
    y_true = _array.clip(xp, y_true, eps, 1.0)
    y_pred = _array.clip(xp, y_pred, eps, 1.0)
    return _array.total(xp, y_true * (xp.log(y_true) - xp.log(y_pred)), axis=-1)


@_array.returns_array
def poisson(y_true: Any, y_pred: Any) -> Array:
    """Poisson negative log-likelihood (without the constant), over the last axis.

    ``loss = mean(y_pred - y_true * log(y_pred + eps), axis=-1)``

    >>> import losskit
    >>> losskit.poisson([[1.0, 0.0]], [[1.0, 2.0]])
    array([1.5], dtype=float32)
    """
    xp, y_true, y_pred = _same_shape_pair(y_true, y_pred, "poisson")
    return _array.mean(xp, y_pred - y_true * xp.log(y_pred + _config.epsilon()))


def check_label_smoothing(label_smoothing: Any) -> float:
    """Validate ``label_smoothing``: a real number in [0, 1]."""
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(
            "`label_smoothing` must be a real number. Received: "
            f"label_smoothing={label_smoothing!r} of type "
            f"{type(label_smoothing).__name__}."
        )
    if not (math.isfinite(label_smoothing) and 0.0 <= float(label_smoothing) <= 1.0):
        raise ValueError(
            f"`label_smoothing` must be in [0, 1]. Received: label_smoothing={label_smoothing!r}."
        )
    return float(label_smoothing)


def check_class_axis(axis: Any) -> int:
    """``axis`` of a crossentropy must be a single int (Keras rejects bools)."""
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(
            f"`axis` must be of type int. Received: axis={axis!r} of type {type(axis).__name__}."
        )
    return axis


@_array.returns_array
def binary_crossentropy(
    y_true: Any,
    y_pred: Any,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    """Binary crossentropy, averaged over ``axis``.

    With smoothed labels ``t = y_true * (1 - label_smoothing) + 0.5 * label_smoothing``:

    - probabilities: ``p = clip(y_pred, eps, 1 - eps)``,
      ``loss = -mean(t * log(p) + (1 - t) * log(1 - p), axis)``;
    - logits ``x``: ``loss = mean(t * softplus(-x) + (1 - t) * softplus(x), axis)``.

    >>> import losskit
    >>> losskit.binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
    array([0.91629..., 0.71355...], dtype=float32)
    """
    label_smoothing = check_label_smoothing(label_smoothing)
    return binary_crossentropy_unchecked(
        y_true, y_pred, from_logits, label_smoothing, check_class_axis(axis)
    )


@_array.returns_array
def binary_crossentropy_unchecked(
    y_true: Any, y_pred: Any, from_logits: bool, label_smoothing: float, axis: int
) -> Array:
    """:func:`binary_crossentropy` with its arguments already validated."""
    label_smoothing = float(label_smoothing)
    xp, y_true, y_pred = _same_shape_pair(y_true, y_pred, "binary_crossentropy")
    _array.normalize_axis(axis, y_pred.ndim)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        elementwise = y_true * softplus(xp, -y_pred) + (1.0 - y_true) * softplus(xp, y_pred)
    else:
        eps = _config.epsilon()
        p = _array.clip(xp, y_pred, eps, 1.0 - eps)
        elementwise = -(y_true * xp.log(p) + (1.0 - y_true) * xp.log(1.0 - p))
    return _array.mean(xp, elementwise, axis=axis)


def log_softmax(xp: Namespace, x: Array, axis: int) -> Array:
    """``x - logsumexp(x, axis)``, shifted by the maximum for stability."""
    shifted = x - _array.amax(xp, x, axis=axis, keepdims=True)
    return shifted - xp.log(_array.total(xp, xp.exp(shifted), axis=axis, keepdims=True))


def log_probabilities(xp: Namespace, y_pred: Array, from_logits: bool, axis: int) -> Array:
    """Log-probabilities of a categorical prediction along ``axis``.

    Probabilities are renormalised to sum to 1 and clipped to [eps, 1 - eps].
    """
    if from_logits:
        return log_softmax(xp, y_pred, axis)
    eps = _config.epsilon()
    probabilities = y_pred / _array.total(xp, y_pred, axis=axis, keepdims=True)
    return xp.log(_array.clip(xp, probabilities, eps, 1.0 - eps))


def _warn_single_class(loss: str, shape: tuple[int, ...], axis: int) -> None:
    if shape[axis] == 1:
        warnings.warn(
            f"In loss {loss}, expected y_pred.shape[axis] (the number of classes) "
            f"to be > 1. Received: y_pred.shape={shape}, axis={axis}. Consider "
            "binary_crossentropy for two classes.",
            UserWarning,
            stacklevel=3,
        )


@_array.returns_array
def categorical_crossentropy(
    y_true: Any,
    y_pred: Any,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    """Categorical crossentropy between one-hot (or soft) labels and predictions.

    ``loss = -sum(t * log_probabilities(y_pred), axis)`` with smoothed labels
    ``t = y_true * (1 - label_smoothing) + label_smoothing / num_classes``, where
    ``num_classes = y_pred.shape[axis]`` (Keras 3.15 uses the last axis; the
    upstream fix, followed here, uses ``axis``).

    >>> import losskit
    >>> losskit.categorical_crossentropy([[0, 1, 0], [0, 0, 1]],
    ...                                  [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    array([0.05129..., 2.30258...], dtype=float32)
    """
    label_smoothing = check_label_smoothing(label_smoothing)
    return categorical_crossentropy_unchecked(
        y_true, y_pred, from_logits, label_smoothing, check_class_axis(axis)
    )


@_array.returns_array
def categorical_crossentropy_unchecked(
    y_true: Any, y_pred: Any, from_logits: bool, label_smoothing: float, axis: int
) -> Array:
    """:func:`categorical_crossentropy` with its arguments already validated."""
    label_smoothing = float(label_smoothing)
    xp, y_true, y_pred = _same_shape_pair(y_true, y_pred, "categorical_crossentropy")
    class_axis = _array.normalize_axis(axis, y_pred.ndim)
    _warn_single_class("categorical_crossentropy", tuple(y_pred.shape), class_axis)
    if label_smoothing:
        num_classes = y_pred.shape[class_axis]
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / num_classes
    log_prob = log_probabilities(xp, y_pred, from_logits, class_axis)
    return -_array.total(xp, y_true * log_prob, axis=class_axis)


@_array.returns_array
def sparse_categorical_crossentropy(
    y_true: Any,
    y_pred: Any,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
) -> Array:
    """Categorical crossentropy with integer labels.

    ``loss = -log_probabilities(y_pred)[label]`` along ``axis``.  ``y_true`` has
    the shape of ``y_pred`` without the class axis (or with it of size 1).
    Labels outside ``[0, num_classes)`` give a loss of 0, as in Keras on JAX.
    Entries whose label equals ``ignore_class`` get a loss of 0; the loss
    classes also leave them out of the mean.

    >>> import losskit
    >>> losskit.sparse_categorical_crossentropy([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    array([0.05129..., 2.30258...], dtype=float32)
    """
    values, _ = sparse_categorical_crossentropy_with_mask(
        y_true, y_pred, from_logits=from_logits, ignore_class=ignore_class, axis=axis
    )
    return values


def check_ignore_class(ignore_class: Any) -> int | None:
    if ignore_class is None:
        return None
    if isinstance(ignore_class, bool) or not isinstance(ignore_class, numbers.Integral):
        raise TypeError(
            "`ignore_class` must be None or an int. Received: "
            f"ignore_class={ignore_class!r} of type {type(ignore_class).__name__}."
        )
    return int(ignore_class)


def sparse_categorical_crossentropy_with_mask(
    y_true: Any,
    y_pred: Any,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
) -> tuple[Array, Array | None]:
    """:func:`sparse_categorical_crossentropy` and its validity mask (None
    without ``ignore_class``), for the loss class's reduction."""
    return sparse_categorical_crossentropy_with_mask_unchecked(
        y_true, y_pred, from_logits, check_ignore_class(ignore_class), check_class_axis(axis)
    )


def sparse_categorical_crossentropy_with_mask_unchecked(
    y_true: Any, y_pred: Any, from_logits: bool, ignore_class: int | None, axis: int
) -> tuple[Array, Array | None]:
    """:func:`sparse_categorical_crossentropy_with_mask` with its arguments
    already validated."""
    ignore_class = None if ignore_class is None else int(ignore_class)
    xp, y_pred = _array.prediction_array(y_pred)
    device = _array.device_of(y_pred)
    labels = _array.as_array(xp, y_true, "y_true", device=device)
    _array.check_min_rank(y_pred, 1, "y_pred", "sparse_categorical_crossentropy")
    class_axis = _array.normalize_axis(axis, y_pred.ndim)
    if labels.ndim == y_pred.ndim and labels.shape[class_axis] == 1:
        labels = xp.squeeze(labels, axis=class_axis)
    expected = tuple(d for i, d in enumerate(y_pred.shape) if i != class_axis)
    if not _array.same_shape(tuple(labels.shape), expected):
        raise ValueError(
            "sparse_categorical_crossentropy: `y_true` must have the shape of "
            f"`y_pred` without its class axis ({expected}, or with a class axis "
            f"of size 1). Received: y_true.shape={tuple(labels.shape)}, "
            f"y_pred.shape={tuple(y_pred.shape)}, axis={axis}."
        )
    labels = xp.astype(labels, xp.int32) if labels.dtype != xp.int32 else labels
    valid = None
    if ignore_class is not None:
        valid = labels != ignore_class
        labels = xp.where(valid, labels, xp.zeros_like(labels))
        # Ignored rows are replaced by ones, a safe input for both paths: their
        # loss is zeroed below, and no NaN reaches the gradient.
        valid_rows = _array.expand_dims(xp, valid, axis=class_axis)
        y_pred = xp.where(valid_rows, y_pred, xp.ones_like(y_pred))
    log_prob = log_probabilities(xp, y_pred, from_logits, class_axis)
    class_shape = [1] * y_pred.ndim
    class_shape[class_axis] = y_pred.shape[class_axis]
    class_ids = xp.reshape(
        xp.arange(y_pred.shape[class_axis], dtype=xp.int32, device=device),
        tuple(class_shape),
    )
    one_hot = _array.expand_dims(xp, labels, axis=class_axis) == class_ids
    values = -_array.total(
        xp, xp.where(one_hot, log_prob, xp.zeros_like(log_prob)), axis=class_axis
    )
    if valid is not None:
        values = xp.where(valid, values, xp.zeros_like(values))
    return values, valid
