"""Metric-learning losses: Circle loss (Sun et al., 2020).

The loss of one sample depends on the whole batch: each embedding is
compared with every reference embedding (the batch itself by default), so the
cost is O(batch * references * dim). Embeddings are expected L2-normalised
(end the model with a unit-normalisation layer); labels are integer classes.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from losskit import _array
from losskit._array import Array, Namespace
from losskit.functional.regression import softplus

__all__ = ["check_gamma", "check_margin", "circle", "circle_unchecked"]


def check_gamma(gamma: Any) -> float:
    """``gamma`` must be a finite real >= 0: a negative scale turns the loss
    into one that pulls negatives closer and pushes positives apart, and an
    infinite one gives NaN (``inf * 0`` for pairs at the optimum)."""
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise TypeError(
            f"`gamma` must be a real number. Received: gamma={gamma!r} of type "
            f"{type(gamma).__name__}."
        )
    if not (math.isfinite(gamma) and float(gamma) >= 0.0):
        raise ValueError(f"`gamma` must be a finite number >= 0. Received: gamma={gamma!r}.")
    return float(gamma)


def check_margin(margin: Any) -> float:
    """``margin`` must be a finite real (it shifts the similarity optima)."""
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real):
        raise TypeError(
            f"`margin` must be a real number. Received: margin={margin!r} of type "
            f"{type(margin).__name__}."
        )
    if not math.isfinite(margin):
        raise ValueError(f"`margin` must be a finite number. Received: margin={margin!r}.")
    return float(margin)


@_array.returns_array
def circle(
    y_true: Any,
    y_pred: Any,
    ref_labels: Any = None,
    ref_embeddings: Any = None,
    remove_diagonal: bool = True,
    gamma: float = 80.0,
    margin: float = 0.4,
) -> Array:
    """Circle loss of each embedding against the reference embeddings.

    With cosine distances ``d[i, j] = max(1 - y_pred[i] . ref[j], 0)``, pairs
    of equal labels positive (``P_i``; without ``j == i`` if
    ``remove_diagonal``) and of different labels negative (``N_i``), and ``m
    = margin``::

        s_p = -gamma * max(m + d, 0) * (m - d)          for j in P_i
        s_n =  gamma * max(1 + m - d, 0) * (1 - m - d)  for j in N_i
        loss_i = softplus(logsumexp(s_p) + logsumexp(s_n))

    A sample without positives (or without negatives) has ``logsumexp = -inf``
    and a loss of 0; the loss classes leave samples whose loss is 0 out of
    ``"sum_over_batch_size"`` and ``"mean"`` averages, as Keras does.

    Args:
        y_true: integer labels, shape ``(batch,)`` or ``(batch, 1)``.
        y_pred: L2-normalised embeddings, shape ``(batch, dim)``.
        ref_labels: labels of the reference embeddings; ``y_true`` if None.
        ref_embeddings: reference embeddings ``(refs, dim)``; ``y_pred`` if None.
        remove_diagonal: leave pair ``(i, i)`` out of the positives.
        gamma: scale of the similarities, a finite number >= 0.
        margin: relaxation margin ``m``, a finite number.

    Returns:
        The loss per embedding, shape ``(batch,)``.

    >>> import numpy as np
    >>> import losskit
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> losskit.circle([1, 1, 2, 2], embeddings, gamma=10.0)
    array([0.3089..., 1.1897..., 1.1897..., 0.3089...])
    """
    gamma, margin = check_gamma(gamma), check_margin(margin)
    return circle_unchecked(
        y_true, y_pred, ref_labels, ref_embeddings, remove_diagonal, gamma, margin
    )


@_array.returns_array
def circle_unchecked(
    y_true: Any,
    y_pred: Any,
    ref_labels: Any = None,
    ref_embeddings: Any = None,
    remove_diagonal: bool = True,
    gamma: float = 80.0,
    margin: float = 0.4,
) -> Array:
    """:func:`circle` with ``gamma`` and ``margin`` already validated."""
    xp, embeddings = _array.prediction_array(y_pred)
    device = _array.device_of(embeddings)
    labels = _labels(xp, y_true, "y_true", device)
    if ref_embeddings is None:
        references = embeddings
    else:
        references = _array.as_array(
            xp, ref_embeddings, "ref_embeddings", dtype=embeddings.dtype, device=device
        )
    reference_labels = (
        labels if ref_labels is None else _labels(xp, ref_labels, "ref_labels", device)
    )
    _check_shapes(embeddings, labels, references, reference_labels)

    dtype = embeddings.dtype
    wide = _array.accumulation_dtype(xp, dtype)  # float32 for float16/bfloat16
    embeddings, references = xp.astype(embeddings, wide), xp.astype(references, wide)
    distances = _array.maximum(
        xp, 1.0 - xp.matmul(embeddings, xp.permute_dims(references, (1, 0))), 0.0
    )
    positive = labels[:, None] == reference_labels[None, :]
    negative = xp.logical_not(positive)
    if remove_diagonal:
        rows, columns = distances.shape
        positive = xp.logical_and(
            positive, xp.logical_not(xp.eye(rows, columns, dtype=xp.bool, device=device))
        )

    positive_weights = _array.maximum(xp, (margin + distances) * xp.astype(positive, wide), 0.0)
    negative_weights = _array.maximum(
        xp, (1.0 + margin - distances) * xp.astype(negative, wide), 0.0
    )
    positive_logits = -gamma * positive_weights * (margin - distances)
    negative_logits = gamma * negative_weights * (1.0 - margin - distances)
    total = _masked_logsumexp(xp, positive_logits, positive) + _masked_logsumexp(
        xp, negative_logits, negative
    )
    loss = softplus(xp, total)
    return loss if loss.dtype == dtype else xp.astype(loss, dtype)


def _labels(xp: Namespace, labels: Any, argument: str, device: Any) -> Array:
    array = _array.as_array(xp, labels, argument, device=device)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"circle: `{argument}` must be integer labels of shape (batch,) or (batch, 1). "
            f"Received: {argument}.shape={tuple(array.shape)}."
        )
    return xp.astype(array, xp.int32)


def _check_shapes(
    embeddings: Array, labels: Array, references: Array, reference_labels: Array
) -> None:
    for array, argument in (
        (embeddings, "y_pred"),
        (labels, "y_true"),
        (references, "ref_embeddings"),
        (reference_labels, "ref_labels"),
    ):
        _array.check_known_shape(array, argument, "circle")
    if (
        embeddings.ndim != 2
        or references.ndim != 2
        or not _array.same_shape(embeddings.shape[1:], references.shape[1:])
    ):
        raise ValueError(
            "circle: `y_pred` and `ref_embeddings` must be embeddings of shape (batch, dim) "
            f"with the same dim. Received: y_pred.shape={tuple(embeddings.shape)}, "
            f"ref_embeddings.shape={tuple(references.shape)}."
        )
    for label_array, embedding_array, names in (
        (labels, embeddings, ("y_true", "y_pred")),
        (reference_labels, references, ("ref_labels", "ref_embeddings")),
    ):
        if not _array.same_shape(label_array.shape[:1], embedding_array.shape[:1]):
            raise ValueError(
                f"circle: `{names[0]}` must hold one label per row of `{names[1]}`. "
                f"Received: {names[0]}.shape={tuple(label_array.shape)}, "
                f"{names[1]}.shape={tuple(embedding_array.shape)}."
            )


def _masked_logsumexp(xp: Namespace, x: Array, mask: Array) -> Array:
    """``log(sum(exp(x[i, j]) for j where mask[i, j]))`` over the last axis,
    ``-inf`` for rows with no entries, and a gradient of exactly 0 for the
    entries left out (so their values, however large, never make it NaN)."""
    minus_inf = _array.scalar(xp, -math.inf, x)
    if x.shape[-1] == 0:  # no reference at all (an empty batch): max() has no identity
        return xp.sum(x, axis=-1) + minus_inf  # (a sum, so autograd's graph holds)
    kept = xp.where(mask, x, minus_inf)
    peak = _array.no_gradient(xp, xp.max(kept, axis=-1, keepdims=True))
    peak = xp.where(xp.isfinite(peak), peak, xp.zeros_like(peak))
    total = xp.sum(xp.exp(kept - peak), axis=-1)
    empty = total == 0.0
    safe = xp.where(empty, xp.ones_like(total), total)
    return xp.where(empty, minus_inf, xp.log(safe) + peak[:, 0])
