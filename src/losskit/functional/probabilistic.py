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
from collections.abc import Sequence
from typing import Any

from losskit import _array, _config
from losskit._array import Array, Namespace
from losskit.functional.regression import softplus

__all__ = [
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "categorical_generalized_cross_entropy",
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
    return poisson_values(xp, y_true, y_pred)


def poisson_values(xp: Namespace, y_true: Array, y_pred: Array) -> Array:
    """:func:`poisson`'s math on checked arrays (same shape and dtype, in
    ``xp``); the fast path for plain NumPy arrays calls it too."""
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
    """``axis`` of a crossentropy must be a single int (Keras rejects bools;
    NumPy integers are taken as ints)."""
    axis = _array.python_int(axis)
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


def _smoothed(y_true: Array, label_smoothing: float, num_classes: int) -> Array:
    """One-hot targets with ``label_smoothing`` spread over the classes (no
    class at all: nothing to spread, where the division raised)."""
    share = label_smoothing / num_classes if num_classes else 0.0
    return y_true * (1.0 - label_smoothing) + share


def log_softmax(xp: Namespace, x: Array, axis: int) -> Array:
    """``x - logsumexp(x, axis)``, shifted by the maximum for stability (a
    constant for autodiff, as in Keras)."""
    if x.shape[axis] == 0:  # no classes: nothing to normalise (the maximum has no identity)
        return x
    shifted = x - _array.no_gradient(xp, _array.amax(xp, x, axis=axis, keepdims=True))
    # the sum and its logarithm in float32 for half precision (a float16 sum
    # of 10^5 classes' exponentials overflows)
    summed = _array.total(xp, xp.exp(shifted), axis=axis, keepdims=True, keep_wide=True)
    return shifted - _array.narrowed(xp, xp.log(summed), shifted.dtype)


def log_probabilities(xp: Namespace, y_pred: Array, from_logits: bool, axis: int) -> Array:
    """Log-probabilities of a categorical prediction along ``axis``.

    Probabilities are renormalised to sum to 1 and clipped to [eps, 1 - eps].
    """
    if from_logits:
        return log_softmax(xp, y_pred, axis)
    eps = _config.epsilon()
    summed = _array.total(xp, y_pred, axis=axis, keepdims=True, keep_wide=True)
    probabilities = _array.narrowed(xp, y_pred / summed, y_pred.dtype)  # clipped in its own dtype
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
        y_true = _smoothed(y_true, label_smoothing, y_pred.shape[class_axis])
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

    Predictions of a float type narrower than float32 (float16, bfloat16)
    give float32 losses, as Keras's do on its JAX backend (the reference):
    it picks the label's log-probability with a float32 one-hot, which
    promotes the product.  The loss classes cast to their ``dtype`` first.

    >>> import losskit
    >>> losskit.sparse_categorical_crossentropy([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    array([0.05129..., 2.30258...], dtype=float32)
    """
    values, _ = sparse_categorical_crossentropy_with_mask(
        y_true, y_pred, from_logits=from_logits, ignore_class=ignore_class, axis=axis
    )
    if _array.dtype_name(values.dtype) in ("float16", "bfloat16"):
        xp = _array.namespace_of(values)
        values = xp.astype(values, _array.float_dtype(xp, "float32"))
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


# --- focal and generalized crossentropies ----------------------------------------


def _real(value: Any, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{argument}` must be a real number. Received: {argument}={value!r} "
            f"of type {type(value).__name__}."
        )
    if not math.isfinite(value):
        raise ValueError(f"`{argument}` must be finite. Received: {argument}={value!r}.")
    return float(value)


def check_focal_gamma(gamma: Any) -> float:
    """Validate a focal ``gamma``: a finite real number >= 0."""
    value = _real(gamma, "gamma")
    if value < 0:
        raise ValueError(f"`gamma` must be >= 0. Received: gamma={gamma!r}.")
    return value


def check_binary_alpha(alpha: Any) -> float:
    """Validate binary focal ``alpha``: one real number (the weight of class 1)."""
    if isinstance(alpha, (list, tuple)) or bool(getattr(alpha, "ndim", 0)):
        raise ValueError(
            "`alpha` of BinaryFocalCrossentropy must be a single number (the weight "
            f"of class 1; class 0 gets 1 - alpha). Received: alpha={alpha!r}."
        )
    return _real(alpha, "alpha")


def check_categorical_alpha(alpha: Any) -> float | tuple[float, ...]:
    """Validate categorical focal ``alpha``: a real number, or a non-empty 1-D
    sequence of real numbers (one weight per class)."""
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        return _real(alpha, "alpha")
    if hasattr(alpha, "tolist") and getattr(alpha, "ndim", None) == 1:
        alpha = alpha.tolist()
    if isinstance(alpha, (list, tuple)) and alpha:
        return tuple(_real(a, "alpha") for a in alpha)
    raise ValueError(
        "`alpha` must be a number or a non-empty 1-D sequence of numbers, one per "
        f"class. Received: alpha={alpha!r} of type {type(alpha).__name__}."
    )


def check_q(q: Any) -> float:
    """Validate generalized crossentropy's ``q``: a real number in (0, 1)."""
    value = _real(q, "q")
    if not 0.0 < value < 1.0:
        raise ValueError(f"`q` must be in the open interval (0, 1). Received: q={q!r}.")
    return value


@_array.returns_array
def binary_focal_crossentropy(
    y_true: Any,
    y_pred: Any,
    apply_class_balancing: bool = False,
    alpha: float = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    """Binary focal crossentropy (Lin et al., 2017), averaged over ``axis``.

    With smoothed labels ``t`` (as in :func:`binary_crossentropy`),
    ``p = sigmoid(y_pred)`` for logits (else ``y_pred``) and ``bce`` the
    elementwise binary crossentropy:

    ``loss = mean(w * (1 - p_t)**gamma * bce, axis)`` with
    ``1 - p_t = t * (1 - p) + (1 - t) * p`` and ``w = t * alpha + (1 - t) *
    (1 - alpha)`` if ``apply_class_balancing``, else 1.  ``gamma = 0`` gives
    the binary crossentropy.  For logits, ``bce`` and ``1 - p_t`` come from
    softplus and log-sigmoid, so large logits keep their value and gradient
    (Keras takes the sigmoid first and clips it, which saturates past |x| ~ 16).

    Args:
        y_true: labels in [0, 1], the shape of ``y_pred``.
        y_pred: probabilities, or logits with ``from_logits=True``.
        apply_class_balancing: weigh class 1 by ``alpha`` and class 0 by ``1 - alpha``.
        alpha: the weight of class 1 (only with ``apply_class_balancing``).
        gamma: focusing parameter, >= 0.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: in [0, 1]; squeezes labels towards 0.5.
        axis: the axis averaged over.

    >>> import losskit
    >>> losskit.binary_focal_crossentropy([[0, 1], [0, 0]], [[-18.6, 0.51], [2.94, -12.8]],
    ...                                   gamma=3, from_logits=True)
    array([0.01242..., 1.28157...], dtype=float32)
    """
    return binary_focal_crossentropy_unchecked(
        y_true,
        y_pred,
        bool(apply_class_balancing),
        check_binary_alpha(alpha),
        check_focal_gamma(gamma),
        bool(from_logits),
        check_label_smoothing(label_smoothing),
        check_class_axis(axis),
    )


@_array.returns_array
def binary_focal_crossentropy_unchecked(
    y_true: Any,
    y_pred: Any,
    apply_class_balancing: bool,
    alpha: float,
    gamma: float,
    from_logits: bool,
    label_smoothing: float,
    axis: int,
) -> Array:
    """:func:`binary_focal_crossentropy` with its arguments already validated."""
    xp, y_true, y_pred = _same_shape_pair(y_true, y_pred, "binary_focal_crossentropy")
    _array.normalize_axis(axis, y_pred.ndim)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        softplus_neg, softplus_pos = softplus(xp, -y_pred), softplus(xp, y_pred)
        bce = y_true * softplus_neg + (1.0 - y_true) * softplus_pos
        # 1 - sigmoid(x) = exp(-softplus(x)), sigmoid(x) = exp(-softplus(-x))
        miss = y_true * xp.exp(-softplus_pos) + (1.0 - y_true) * xp.exp(-softplus_neg)
    else:
        eps = _config.epsilon()
        p = _array.clip(xp, y_pred, eps, 1.0 - eps)
        bce = -(y_true * xp.log(p) + (1.0 - y_true) * xp.log(1.0 - p))
        # 1 - p_t, in Keras's order of operations (the same float32 rounding)
        miss = 1.0 - (y_true * y_pred + (1.0 - y_true) * (1.0 - y_pred))
    focal = miss ** float(gamma) * bce
    if apply_class_balancing:
        focal = (y_true * alpha + (1.0 - y_true) * (1.0 - alpha)) * focal
    return _array.mean(xp, focal, axis=axis)


def _alpha_values(alpha: Any) -> float | tuple[float, ...]:
    """A validated ``alpha`` (a number, a sequence or a 1-D array) as floats."""
    if isinstance(alpha, numbers.Real):
        return float(alpha)
    return tuple(float(a) for a in alpha)


def _class_weights(
    xp: Namespace, alpha: float | tuple[float, ...], y_pred: Array, class_axis: int
) -> float | Array:
    """``alpha`` as a factor of the per-class terms: a number, or an array
    broadcast along ``class_axis``."""
    if not isinstance(alpha, tuple):
        return alpha
    classes = y_pred.shape[class_axis]
    if len(alpha) != classes:
        raise ValueError(
            "`alpha` must have one weight per class: expected "
            f"{classes} (y_pred.shape[axis]), received {len(alpha)}. "
            f"Received: alpha={list(alpha)!r}, y_pred.shape={tuple(y_pred.shape)}, "
            f"axis={class_axis}."
        )
    shape = [1] * y_pred.ndim
    shape[class_axis] = classes
    weights = xp.asarray(alpha, dtype=y_pred.dtype, device=_array.device_of(y_pred))
    return xp.reshape(weights, tuple(shape))


@_array.returns_array
def categorical_focal_crossentropy(
    y_true: Any,
    y_pred: Any,
    alpha: float | Sequence[float] = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Array:
    """Categorical focal crossentropy (Lin et al., 2017), summed over ``axis``.

    With smoothed labels ``t`` (as in :func:`categorical_crossentropy`) and
    ``p`` the renormalised probabilities (softmax for logits) clipped to
    ``[eps, 1 - eps]``:

    ``loss = -sum(alpha * (1 - p)**gamma * t * log(p), axis)``

    ``alpha`` is one number or one weight per class.  For logits, ``log(p)``
    is the unclipped log-softmax, so ``gamma = 0, alpha = 1`` gives exactly
    :func:`categorical_crossentropy`.

    Args:
        y_true: one-hot (or soft) labels, the shape of ``y_pred``.
        y_pred: probabilities, or logits with ``from_logits=True``.
        alpha: a weight for all classes, or a sequence of one per class.
        gamma: focusing parameter, >= 0.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: in [0, 1]; mixes labels with the uniform distribution.
        axis: the class axis.

    >>> import losskit
    >>> losskit.categorical_focal_crossentropy([[0, 1, 0], [0, 0, 1]],
    ...                                        [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    array([3.20583...e-05, 4.66273...e-01], dtype=float32)
    """
    return categorical_focal_crossentropy_unchecked(
        y_true,
        y_pred,
        check_categorical_alpha(alpha),
        check_focal_gamma(gamma),
        bool(from_logits),
        check_label_smoothing(label_smoothing),
        check_class_axis(axis),
    )


@_array.returns_array
def categorical_focal_crossentropy_unchecked(
    y_true: Any,
    y_pred: Any,
    alpha: float | Sequence[float],
    gamma: float,
    from_logits: bool,
    label_smoothing: float,
    axis: int,
) -> Array:
    """:func:`categorical_focal_crossentropy` with its arguments already validated."""
    xp, y_true, y_pred = _same_shape_pair(y_true, y_pred, "categorical_focal_crossentropy")
    class_axis = _array.normalize_axis(axis, y_pred.ndim)
    _warn_single_class("categorical_focal_crossentropy", tuple(y_pred.shape), class_axis)
    weights = _class_weights(xp, _alpha_values(alpha), y_pred, class_axis)
    if label_smoothing:
        y_true = _smoothed(y_true, label_smoothing, y_pred.shape[class_axis])
    eps = _config.epsilon()
    if from_logits:
        log_p = log_softmax(xp, y_pred, class_axis)
        p = _array.clip(xp, xp.exp(log_p), eps, 1.0 - eps)
    else:
        p = y_pred / _array.total(xp, y_pred, axis=class_axis, keepdims=True)
        p = _array.clip(xp, p, eps, 1.0 - eps)
        log_p = xp.log(p)
    focal = weights * (1.0 - p) ** float(gamma) * (y_true * log_p)
    return -_array.total(xp, focal, axis=class_axis)


@_array.returns_array
def categorical_generalized_cross_entropy(y_true: Any, y_pred: Any, q: float = 0.5) -> Array:
    """Generalized crossentropy (Zhang and Sabuncu, 2018) with integer labels.

    ``loss = (1 - p**q) / q`` where ``p = y_pred[..., label]`` is the
    probability of the true class over the last axis (no clipping, as in
    Keras; labels outside ``[0, num_classes)`` give ``p = 0``).  ``q -> 0``
    approaches the crossentropy, ``q = 1`` the mean absolute error; noisy
    labels hurt it less than the crossentropy.  ``y_true`` has the shape of
    ``y_pred`` without its last axis (or with it of size 1).

    Args:
        y_true: integer class labels.
        y_pred: class probabilities, classes on the last axis.
        q: in the open interval (0, 1) (Keras requires it; its class
            defaults to 0.5, as here).

    >>> import losskit
    >>> losskit.categorical_generalized_cross_entropy(
    ...     [1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]], q=0.5
    ... )
    array([0.05064..., 1.36754...], dtype=float32)
    """
    return categorical_generalized_cross_entropy_unchecked(y_true, y_pred, check_q(q))


@_array.returns_array
def categorical_generalized_cross_entropy_unchecked(y_true: Any, y_pred: Any, q: float) -> Array:
    """:func:`categorical_generalized_cross_entropy` with ``q`` already validated."""
    xp, y_pred = _array.prediction_array(y_pred)
    device = _array.device_of(y_pred)
    labels = _array.as_array(xp, y_true, "y_true", device=device)
    _array.check_min_rank(y_pred, 1, "y_pred", "categorical_generalized_cross_entropy")
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = xp.squeeze(labels, axis=-1)
    if not _array.same_shape(tuple(labels.shape), tuple(y_pred.shape[:-1])):
        raise ValueError(
            "categorical_generalized_cross_entropy: `y_true` must hold integer labels "
            f"with the shape of `y_pred` without its last (class) axis "
            f"({tuple(y_pred.shape[:-1])}, or with a last axis of size 1). Received: "
            f"y_true.shape={tuple(labels.shape)}, y_pred.shape={tuple(y_pred.shape)}."
        )
    labels = xp.astype(labels, xp.int32) if labels.dtype != xp.int32 else labels
    classes = xp.arange(y_pred.shape[-1], dtype=xp.int32, device=device)
    one_hot = _array.expand_dims(xp, labels, axis=-1) == classes
    p = _array.total(xp, xp.where(one_hot, y_pred, xp.zeros_like(y_pred)), axis=-1)
    return (1.0 - p ** float(q)) / q
