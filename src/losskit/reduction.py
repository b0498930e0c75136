"""Keras's reduction rules: sample weights, masks and reductions.

Every loss class reduces its per-sample losses with
:func:`reduce_weighted_values`, which follows Keras 3 exactly:

1. A mask (given as ``mask=``, or produced by ``ignore_class``) becomes a
   weight.  For ``"sum_over_batch_size"`` and ``"mean"`` the valid entries get
   weight ``total / valid`` (so the result is the mean over valid entries);
   for ``"sum"`` and ``"mean_with_sample_weight"`` it is a 0/1 weight.  It is
   multiplied into ``sample_weight`` after rank alignment.
2. Rank alignment: when the ranks of the losses and the weights differ by
   exactly one and the longer one ends in a dimension of 1, a rank-1 partner is
   expanded, otherwise the longer one is squeezed.  Then the weights broadcast
   against the losses.
3. Reduction of the weighted losses:

   - ``"sum"``: their sum;
   - ``"sum_over_batch_size"`` (default) and ``"mean"``: the sum divided by the
     number of loss elements;
   - ``"mean_with_sample_weight"``: the sum divided by the sum of the aligned
     (not broadcast) weights, or by the number of elements without weights;
   - ``"none"`` or ``None``: no reduction.

   Divisions are divide-no-nan (a zero divisor gives 0).  A loss array that
   is 0-d, or of shape ``(0,)``, is returned unreduced.

Unlike Keras, weights may not enlarge a loss array of rank >= 1 by
broadcasting (a ValueError names the shapes), and float16/bfloat16 sums are
accumulated in float32.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as _np

from losskit import _array
from losskit._array import Array, Namespace

REDUCTIONS: tuple[str | None, ...] = (
    "sum_over_batch_size",
    "sum",
    "mean",
    "mean_with_sample_weight",
    "none",
    None,
)
_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


def standardize_reduction(reduction: Any) -> str | None:
    """Validate ``reduction`` and return it unchanged.

    >>> standardize_reduction("sum")
    'sum'
    >>> standardize_reduction("avg")
    Traceback (most recent call last):
        ...
    ValueError: Invalid value for argument `reduction`: 'avg'. Expected one of ...
    """
    if reduction in REDUCTIONS and (reduction is None or isinstance(reduction, str)):
        return reduction
    names = [r for r in REDUCTIONS if r is not None]
    close = difflib.get_close_matches(str(reduction), names, n=2, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Invalid value for argument `reduction`: {reduction!r}. Expected one "
        f"of {REDUCTIONS}.{hint}"
    )


def broadcast_shapes(
    shape1: tuple[int, ...], shape2: tuple[int, ...], what: str
) -> tuple[int, ...]:
    """NumPy broadcasting of two static shapes, with an error naming ``what``."""
    rank = max(len(shape1), len(shape2))
    padded1 = (1,) * (rank - len(shape1)) + tuple(shape1)
    padded2 = (1,) * (rank - len(shape2)) + tuple(shape2)
    result = []
    for d1, d2 in zip(padded1, padded2, strict=False):
        if _array.unknown_dim(d1) or _array.unknown_dim(d2):
            result.append(d1 if _array.unknown_dim(d2) else d2)
        elif d1 == d2 or d2 == 1:
            result.append(d1)
        elif d1 == 1:
            result.append(d2)
        else:
            raise ValueError(
                f"{what}: shapes {tuple(shape1)} and {tuple(shape2)} cannot be "
                "broadcast together (after Keras's rank alignment). Give weights "
                "of the loss's shape, or one that broadcasts to it, e.g. "
                f"{tuple(shape1[:1]) + (1,) * max(len(shape1) - 1, 0)} for "
                "per-sample weights."
            )
    return tuple(result)


def reduce_weighted_values(
    values: Array,
    sample_weight: Any = None,
    mask: Any = None,
    reduction: str | None = "sum_over_batch_size",
    dtype: Any = None,
) -> Array:
    """Weight, mask and reduce per-sample ``values`` as a Keras loss does.

    Args:
        values: the per-sample losses (an array; it sets the namespace).
        sample_weight: None, a scalar or an array that aligns with ``values``.
        mask: None or a boolean (or 0/1) array; False entries are left out.
        reduction: one of :data:`REDUCTIONS`.
        dtype: optional dtype to cast ``values`` to first.

    >>> import numpy as np
    >>> values = np.array([1.0, 2.0, 3.0, 6.0], dtype="float32")
    >>> float(reduce_weighted_values(values, sample_weight=np.array([1, 1, 0, 0])))
    0.75
    >>> float(reduce_weighted_values(values, sample_weight=np.array([1, 1, 0, 0]),
    ...                              reduction="mean_with_sample_weight"))
    1.5
    >>> float(reduce_weighted_values(values, mask=np.array([True, True, True, False])))
    2.0
    """
    reduction = standardize_reduction(reduction)
    xp = _array.namespace_of(values)
    values = _array.as_array(xp, values, "values")
    if dtype is not None and values.dtype != dtype:
        values = xp.astype(values, dtype)
    device = _array.device_of(values)
    weight = None
    if sample_weight is not None:
        weight = _array.as_array(
            xp, sample_weight, "sample_weight", dtype=values.dtype, device=device
        )
    if mask is not None:
        mask = _array.as_array(xp, mask, "mask", dtype=values.dtype, device=device)
        weight = _merge_mask(xp, weight, mask, reduction)
    if weight is not None:
        values, weight = _array.align_ranks(xp, values, weight)
        shape = broadcast_shapes(
            tuple(values.shape), tuple(weight.shape), "sample_weight vs. losses"
        )
        if values.ndim > 0 and not _array.same_shape(shape, tuple(values.shape)):
            raise ValueError(
                f"`sample_weight` of shape {tuple(weight.shape)} would broadcast the "
                f"losses of shape {tuple(values.shape)} to {shape}. Weights must "
                "match the per-sample losses (or broadcast to them)."
            )
        values = values * weight
    return reduce_values(xp, values, weight, reduction)


def _merge_mask(xp: Namespace, weight: Array | None, mask: Array, reduction: str | None) -> Array:
    """Fold a mask into the sample weights, Keras's way."""
    if reduction in ("mean", "sum_over_batch_size"):
        wide = _array.accumulation_dtype(xp, mask.dtype)
        valid = xp.sum(xp.astype(mask != 0, wide))
        zero = _array.scalar(xp, 0.0, valid)
        safe_valid = xp.where(valid == 0, _array.scalar(xp, 1.0, valid), valid)
        scale = xp.where(valid == 0, zero, _array.element_count(xp, mask, wide) / safe_valid)
        float_mask = xp.where(mask != 0, xp.astype(scale, mask.dtype), xp.zeros_like(mask))
    else:
        float_mask = mask
    if weight is None:
        return float_mask
    float_mask, weight = _array.align_ranks(xp, float_mask, weight)
    broadcast_shapes(tuple(float_mask.shape), tuple(weight.shape), "mask vs. sample_weight")
    return weight * float_mask


def reduce_values(
    xp: Namespace,
    values: Array,
    sample_weight: Array | None = None,
    reduction: str | None = "sum_over_batch_size",
) -> Array:
    """Reduce already weighted ``values``; see the module docstring."""
    if reduction is None or reduction == "none" or tuple(values.shape) in ((), (0,)):
        return values
    wide = _array.accumulation_dtype(xp, values.dtype)
    wide_values = xp.astype(values, wide) if wide != values.dtype else values
    # (NumPy: its sum without the wrappers' Python layers, the same reduction)
    loss = (
        _np.add.reduce(wide_values, axis=None)
        if type(values) is _np.ndarray
        else xp.sum(wide_values)
    )
    if reduction in _MEAN_REDUCTIONS:
        if reduction == "mean_with_sample_weight" and sample_weight is not None:
            divisor = xp.sum(xp.astype(sample_weight, wide))
            safe = xp.where(divisor == 0, _array.scalar(xp, 1.0, divisor), divisor)
            loss = xp.where(divisor == 0, _array.scalar(xp, 0.0, loss), loss / safe)
        else:
            count = _array.element_count(xp, values, wide)
            if isinstance(count, int):
                loss = loss / count if count else loss * 0
            else:  # unknown until computed: divide-no-nan, lazily
                safe = xp.where(count == 0, _array.scalar(xp, 1.0, count), count)
                loss = xp.where(count == 0, _array.scalar(xp, 0.0, loss), loss / safe)
    return _array.as_ndarray(loss if loss.dtype == values.dtype else xp.astype(loss, values.dtype))
