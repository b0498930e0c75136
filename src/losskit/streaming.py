"""Mergeable loss accumulators: a Keras reduction over data seen in batches.

A Keras loss object reduces the per-sample losses of *one* call.  To get the
value it would give on a whole data set that never fits in memory at once,
feed the data set batch by batch to an accumulator and read the result at the
end; accumulators filled on different machines (or threads, or Dask
partitions) merge into one, in any order.

Each accumulator keeps, per loss, the sufficient statistics of Keras's
reductions (see :mod:`losskit.reduction`), as compensated float64 sums:

- ``total``: the sum of the weighted, masked per-sample losses;
- ``count``: the number of per-sample loss elements (the valid ones, with a
  mask), Keras's divisor for ``"sum_over_batch_size"`` and ``"mean"``;
- ``weight``: the sum of the rank-aligned sample weights (times the mask),
  the divisor of ``"mean_with_sample_weight"`` (the element count when there
  are neither weights nor masks).

and ``result()`` is ``total`` for ``"sum"``, ``total / count`` for
``"sum_over_batch_size"`` and ``"mean"``, and ``total / weight`` for
``"mean_with_sample_weight"`` (divide-no-nan: a zero divisor gives 0).  After
updates with batches ``b1, b2, ...`` it equals the loss object called once
on their concatenation along the batch axis (up to float rounding), when
weights and masks have a batch axis, as per-sample ones do.  Batches whose
other axes differ (sequences padded to a different length per batch) have no
concatenation; they are accepted, as Keras's metrics accept them, and the
result is then the reduction of all their per-sample losses together.  The
accumulators do not check that the class or output axis stays the same:
the command line does, for its files.

The per-sample losses come from the loss object itself (its
``call_with_mask``), computed in ``dtype`` (float64 by default, so results
equal Keras's float32 ones up to float32 rounding), in the array library of
``y_pred``; only the per-sample losses are copied to host NumPy.  Without
groups or masks, a built-in loss's weighted sum in float64 is what the loss
object itself returns with ``reduction="sum"``, so losskit's fused kernels
apply where the input allows (in another ``dtype`` the loss object would sum
in that dtype, so the per-sample losses are summed here, in float64, as with
groups); nothing here restates a loss's formula.

Two kinds of built-in losses are not a sum of per-sample terms, and get their
own statistics:

- :class:`~losskit.Hinge` and :class:`~losskit.SquaredHinge` convert 0/1
  labels to -1/1 only if *every* label of ``y_true`` is 0 or 1.  The
  accumulator keeps the total both with and without that conversion and a
  flag "every label so far was 0 or 1", so the data set's decision is the one
  applied.
- :class:`~losskit.Dice` and :class:`~losskit.Tversky` with ``axis=None``
  give one value for the whole array.  They depend on it only through
  ``sum(y_true * y_pred)``, ``sum(y_true)`` and ``sum(y_pred)``, which are
  accumulated; ``result()`` evaluates the loss on a three-element array with
  the same sums.  They take no sample weights or masks here.

A loss whose per-sample losses lose the batch axis (an ``axis`` that includes
axis 0, or 1-D inputs, which Keras's functions reduce to a scalar) is rejected
with a ValueError: give inputs of shape ``(N, k)`` (``(N, 1)`` for one
output, as a Keras model with a ``Dense(1)`` head produces).

Differences from one Keras call: a 0-d (scalar) sample weight counts once per
sample in the ``"mean_with_sample_weight"`` divisor (Keras divides by the
scalar itself, which is not a property of a data set); masks are booleans
(nonzero keeps an entry); with no samples at all ``result()`` is 0.0 where
Keras returns an empty array (Dice and Tversky with ``axis=None``: their
value for sums of zero, 1.0, as Keras gives for empty inputs).

>>> import numpy as np
>>> import losskit
>>> from losskit.streaming import LossAccumulator
>>> y_true = np.array([[0.0], [1.0], [2.0], [4.0]])
>>> y_pred = np.array([[0.5], [1.0], [1.0], [2.0]])
>>> acc = LossAccumulator("mse")
>>> acc.update(y_true[:3], y_pred[:3])
>>> acc.update(y_true[3:], y_pred[3:])
>>> acc.result()
1.3125
>>> float(losskit.MeanSquaredError(dtype="float64")(y_true, y_pred))
1.3125
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import math
import operator
import sys
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import array_api_compat
import numpy as np

from losskit import _array, functional, kernels, losses, registry
from losskit.functional.hinge import hinge_with_fixed_labels
from losskit.functional.segmentation import dice_from_sums, tversky_from_counts
from losskit.reduction import broadcast_shapes, standardize_reduction

__all__ = [
    "GroupedAccumulator",
    "LossAccumulator",
    "MultiLossAccumulator",
    "resolve_loss",
]

STATE_FORMAT = "losskit.streaming/1"

_MEAN = "mean"
_HINGE = "hinge"
_OVERLAP = "overlap"
_FIELDS = {
    _MEAN: ("total", "count", "weight"),
    _HINGE: ("total", "count", "weight", "total_signs", "all_binary"),
    _OVERLAP: ("intersection", "true_sum", "pred_sum"),
}
# Fields merged by minimum (flags) rather than by summation.
_FLAGS = {_MEAN: (), _HINGE: (4,), _OVERLAP: ()}
_SIGN_CONVERTING = (functional.hinge, functional.squared_hinge)
_OVERLAP_FUNCTIONS = (functional.dice, functional.tversky)


def resolve_loss(identifier: Any) -> losses.Loss:
    """A :class:`~losskit.Loss` object for ``identifier``.

    Accepts what :func:`losskit.get` accepts; a built-in function name or
    alias (``"mse"``, ``"huber_loss"``) gives an instance of its class with
    default arguments, so results carry Keras's class name
    (``"mean_squared_error"``).

    >>> resolve_loss("mse")
    MeanSquaredError(name='mean_squared_error', ...)
    """
    loss = registry.get(identifier)
    if loss is None:
        raise ValueError("A loss is required; received None.")
    if isinstance(loss, losses.Loss):
        return loss
    for info in registry.LOSSES:
        if loss is info.function:
            return info.cls()
    raise TypeError(f"Could not interpret loss identifier {identifier!r}.")


def _to_numpy(x: Any, what: str) -> np.ndarray:
    """``x`` as a host NumPy array (device arrays are copied to the host)."""
    if isinstance(x, np.ndarray):
        return x
    detach = getattr(x, "detach", None)
    if callable(detach):  # torch tensors that require grad
        x = detach()
    try:
        return np.asarray(x)
    except Exception:
        pass
    try:
        return np.asarray(array_api_compat.to_device(x, "cpu"))
    except Exception:
        pass
    try:  # a library's own name for its host device (array-api-strict's)
        info = array_api_compat.array_namespace(x).__array_namespace_info__()
        return np.asarray(array_api_compat.to_device(x, info.default_device()))
    except Exception:
        getter = getattr(x, "get", None)  # CuPy
        if callable(getter):
            return np.asarray(getter())
        raise TypeError(
            f"Cannot copy `{what}` ({type(x).__module__}.{type(x).__name__}) to "
            "host memory as a NumPy array."
        ) from None


def _float64(x: Any, what: str) -> np.ndarray:
    array = _to_numpy(x, what)
    if array.dtype == np.float64:
        return array
    if array.dtype.kind == "c":  # astype would drop the imaginary part, with a warning
        raise TypeError(
            f"`{what}` must hold booleans, integers or real floats. "
            f"Received: {_array._describe(array)}."
        )
    try:
        return array.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{what}` must hold numbers. Received an array of dtype {array.dtype}."
        ) from None


def _group_sums(a: np.ndarray, inverse: np.ndarray | None, n_groups: int) -> np.ndarray:
    """Sum of ``a`` (leading axis: samples) per group; one sum without groups."""
    if inverse is None:
        return np.array([np.sum(a)], dtype=np.float64)
    # the row length spelled out: -1 is ambiguous for an empty batch
    rows = a.reshape(a.shape[0], math.prod(a.shape[1:])).sum(axis=1) if a.ndim > 1 else a
    return np.bincount(inverse, weights=rows, minlength=n_groups)


_last_counts: tuple[Any, int, np.ndarray] = (None, 0, np.zeros(0, dtype=np.int64))


def _group_counts(inverse: np.ndarray, n_groups: int) -> np.ndarray:
    """The number of samples per group, computed once per batch: every loss
    and field of a batch asks for it with the same ``inverse``."""
    global _last_counts
    last = _last_counts  # one read: another thread may replace it
    if last[0] is inverse and last[1] == n_groups:
        return last[2]
    counts = np.bincount(inverse, minlength=n_groups)
    _last_counts = (inverse, n_groups, counts)
    return counts


def _leading(a: np.ndarray, n: int, like: tuple[int, ...]) -> np.ndarray:
    """``a`` broadcast so that its leading axis is the batch axis of size n."""
    if a.ndim >= 1 and a.shape[0] == n:
        return a
    return np.broadcast_to(a, np.broadcast_shapes(a.shape, like))


def _weight_name(sample_weight: Any, mask: Any) -> str:
    """What the weights of a batch were given as, for error messages."""
    if mask is None:
        return "sample_weight"
    return "mask" if sample_weight is None else "sample_weight * mask"


# Families whose per-sample loss depends on the other samples of the batch
# (Circle compares every pair of embeddings): a sum over batches is not the
# loss of their concatenation, so they cannot be accumulated batch by batch.
_BATCH_DEPENDENT_FAMILIES = ("metric_learning",)
# Losses summed in one fused pass from this many on (fewer: a pass each).
_ONE_PASS_MIN_LOSSES = 3


def _check_batch_independent(loss: losses.Loss) -> None:
    info = next((i for i in registry.LOSSES if i.cls is type(loss)), None)
    if info is not None and info.family in _BATCH_DEPENDENT_FAMILIES:
        raise ValueError(
            f"{type(loss).__name__} cannot be accumulated batch by batch: each "
            "sample's loss depends on every other sample of its batch (family "
            f"{info.family!r}). Call the loss on the whole batch instead."
        )


class _Kernel:
    """The statistics of one loss: what a batch adds, and the final value."""

    def __init__(self, loss: Any, reduction: str | None, dtype: Any) -> None:
        self.loss = resolve_loss(loss)
        chosen = self.loss.reduction if reduction is None else reduction
        self.reduction = standardize_reduction(chosen)
        if self.reduction in (None, "none"):
            raise ValueError(
                f"Loss {self.loss.name!r} has reduction={self.reduction!r}: an "
                "accumulator reduces, so give 'sum_over_batch_size', 'mean', 'sum' or "
                "'mean_with_sample_weight' (as the loss's or the accumulator's "
                "`reduction`)."
            )
        self.dtype = _array.standardize_float_type(dtype)
        _check_batch_independent(self.loss)
        self.function = getattr(self.loss, "fn", None)
        self.config = self.loss.get_config()
        if self.function in _OVERLAP_FUNCTIONS and self.config.get("axis") is None:
            self.kind = _OVERLAP
        elif self.function in _SIGN_CONVERTING:
            self.kind = _HINGE
        else:
            self.kind = _MEAN
        self.fields = _FIELDS[self.kind]
        self.flags = _FLAGS[self.kind]
        # The weighted sum of a built-in loss is what the loss object computes
        # with reduction="sum" (through losskit's fused kernels where they
        # apply); the per-sample losses are only needed for groups and masks.
        # Only in float64: in another dtype the loss object sums in that
        # dtype, where the accumulator's sums are float64 (as grouped ones are).
        self._summing: losses.Loss | None = None
        builtin = any(info.cls is type(self.loss) for info in registry.LOSSES)
        plain = self.config.get("ignore_class") is None and self.dtype == "float64"
        if self.kind == _MEAN and builtin and plain:
            config = {**self.config, "reduction": "sum", "dtype": self.dtype}
            self._summing = type(self.loss).from_config(config)

    @property
    def name(self) -> str:
        return self.loss.name

    def identity(self) -> tuple[Any, ...]:
        """What must agree for two accumulators to merge."""
        config = {k: v for k, v in self.config.items() if k not in ("name", "reduction")}
        config.pop("dtype", None)
        return (type(self.loss).__name__, repr(config), self.reduction, self.dtype)

    # -- one batch -------------------------------------------------------

    def batch(
        self,
        y_true: Any,
        y_pred: Any,
        sample_weight: Any,
        mask: Any,
        inverse: np.ndarray | None,
        n_groups: int,
        total: Any = None,
    ) -> np.ndarray:
        """The statistics of one batch, one row per group: (n_groups, fields).
        ``total``: the batch's weighted sum (one per group) where the one-pass
        kernel of several losses already computed it (no mask)."""
        xp = _array.namespace_of(y_pred)
        dtype = _array.float_dtype(xp, self.dtype)
        y_pred = _array.as_array(xp, y_pred, "y_pred", dtype=dtype)
        y_true = _array.as_array(xp, y_true, "y_true", dtype=dtype, device=_array.device_of(y_pred))
        if y_pred.ndim == 0:
            raise ValueError(f"{self.name}: `y_pred` needs a batch axis; received a 0-d array.")
        n = int(y_pred.shape[0])
        self._check_batch_axis(y_true, y_pred)
        with np.errstate(all="ignore"):
            summed = self._summing is not None and mask is None and n > 0
            if summed and (inverse is None or total is not None):
                return self._summed(y_true, y_pred, sample_weight, n, total, inverse, n_groups)
            if self.kind == _OVERLAP:
                return self._overlap(y_true, y_pred, sample_weight, mask, inverse, n_groups)
            if self.kind == _HINGE:
                v, signs, all_binary = self._hinge_values(xp, y_true, y_pred, n, inverse, n_groups)
                loss_mask = None
            else:
                values, loss_mask = self.loss.call_with_mask(y_true, y_pred)
                v = self._per_sample(values, n)
            weight, keep = self._weights(sample_weight, mask, loss_mask)
            aligned, aligned_weight = self._align(v, weight, _weight_name(sample_weight, mask))
            columns = [
                self._weighted_total(aligned, aligned_weight, inverse, n_groups),
                self._count(aligned, keep, n, inverse, n_groups),
                self._weight_total(aligned, aligned_weight, n, inverse, n_groups),
            ]
            if self.kind == _HINGE:
                aligned_signs, _ = self._align(signs, weight, "sample_weight")
                columns.append(
                    self._weighted_total(aligned_signs, aligned_weight, inverse, n_groups)
                )
                columns.append(all_binary)
        return np.stack(columns, axis=1)

    def _summed(
        self,
        y_true: Any,
        y_pred: Any,
        sample_weight: Any,
        n: int,
        total: Any,
        inverse: np.ndarray | None,
        n_groups: int,
    ) -> np.ndarray:
        """The statistics of a batch without masks: the total (one per group)
        from the loss object (reduction "sum", no groups) unless given, the
        counts from the shapes."""
        assert self._summing is not None
        if total is None:  # first the whole batch, so that errors name its shapes
            summed = _float64(self._summing(y_true, y_pred, sample_weight=sample_weight), "loss")
        else:
            summed = np.asarray(total, dtype=np.float64)
        probe, _ = self.loss.call_with_mask(y_true[:1, ...], y_pred[:1, ...])
        shape = (n, *self._per_sample(probe, 1).shape[1:])
        weight, _ = self._weights(sample_weight, None, None)
        zeros = np.broadcast_to(np.float64(0.0), shape)
        aligned, aligned_weight = self._align(zeros, weight, "sample_weight")
        count = self._count(aligned, None, n, inverse, n_groups)
        weight_total = self._weight_total(aligned, aligned_weight, n, inverse, n_groups)
        return np.stack([summed.reshape(n_groups), count, weight_total], axis=1)

    def _check_batch_axis(self, y_true: Any, y_pred: Any) -> None:
        if "axis" not in self.config or self.kind == _OVERLAP:
            return
        ndim = max(y_true.ndim, y_pred.ndim)
        axes = _array.normalize_axes(self.config["axis"], ndim)
        if axes is not None and 0 in axes:
            raise ValueError(
                f"{self.name} with axis={self.config['axis']!r} reduces over axis 0, "
                f"the batch axis, of inputs of rank {ndim}: it is not a per-sample "
                "loss, so it cannot be accumulated over batches. Give an axis "
                "that leaves the batch axis alone (e.g. axis=-1)."
            )

    def _per_sample(self, values: Any, n: int) -> np.ndarray:
        v = _float64(values, "per-sample losses")
        if v.ndim == 0 or v.shape[0] != n:
            raise ValueError(
                f"{self.name} returned losses of shape {v.shape} for a batch of {n} "
                "samples: it reduced the batch axis (axis 0), so it cannot be "
                "accumulated over batches. Give y_true and y_pred a batch axis and "
                "an output axis, shape (N, k): (N, 1) for one output, as a Keras "
                "model with a Dense(1) head produces."
            )
        return v

    def _weights(
        self,
        sample_weight: Any,
        mask: Any,
        loss_mask: Any,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Keras's weight (sample weight times 0/1 mask) and the boolean mask."""
        keep = None
        if mask is not None:
            keep = _to_numpy(mask, "mask") != 0
        if loss_mask is not None:
            inner = _to_numpy(loss_mask, "mask") != 0
            keep = inner if keep is None else np.logical_and(keep, inner)
        weight = None if sample_weight is None else _float64(sample_weight, "sample_weight")
        if keep is not None:
            keep01 = keep.astype(np.float64)
            if weight is None:
                weight = keep01
            else:
                keep01, weight = _array.align_ranks(_array.numpy_namespace(), keep01, weight)
                broadcast_shapes(keep01.shape, weight.shape, "mask vs. sample_weight")
                weight = weight * keep01
        return weight, keep

    def _align(
        self, v: np.ndarray, weight: np.ndarray | None, what: str
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``v`` and ``weight`` (given as ``what``) aligned as Keras does."""
        if weight is None:
            return v, None
        if weight.ndim == 0:  # a scalar fits any shape; aligning could squeeze (1,) to ()
            return v, weight
        v, weight = _array.align_ranks(_array.numpy_namespace(), v, weight)
        shape = broadcast_shapes(v.shape, weight.shape, f"{what} vs. losses")
        if shape != v.shape:
            raise ValueError(
                f"`{what}` of shape {weight.shape} would broadcast the losses "
                f"of shape {v.shape} to {shape}. Weights must match the per-sample "
                "losses (or broadcast to them)."
            )
        return v, weight

    @staticmethod
    def _weighted_total(
        v: np.ndarray,
        weight: np.ndarray | None,
        inverse: np.ndarray | None,
        n_groups: int,
    ) -> np.ndarray:
        return _group_sums(v if weight is None else v * weight, inverse, n_groups)

    @staticmethod
    def _count(
        v: np.ndarray,
        keep: np.ndarray | None,
        n: int,
        inverse: np.ndarray | None,
        n_groups: int,
    ) -> np.ndarray:
        if keep is None:
            if inverse is None:
                return np.array([float(v.size)])
            per_row = float(v.size // n) if n else 0.0
            return _group_counts(inverse, n_groups) * per_row
        keep = _leading(keep, n, v.shape)
        # Keras weighs the valid entries by total / valid (see losskit.reduction),
        # so the divisor is size(losses) * valid / size(mask).
        ratio = v.size / keep.size if keep.size else 0.0
        return _group_sums(keep.astype(np.float64), inverse, n_groups) * ratio

    @staticmethod
    def _weight_total(
        v: np.ndarray,
        weight: np.ndarray | None,
        n: int,
        inverse: np.ndarray | None,
        n_groups: int,
    ) -> np.ndarray:
        if weight is None:
            return _Kernel._count(v, None, n, inverse, n_groups)
        if weight.ndim < v.ndim:
            weight = np.broadcast_to(weight, v.shape)
        return _group_sums(_leading(weight, n, v.shape), inverse, n_groups)

    def _hinge_values(
        self,
        xp: Any,
        y_true: Any,
        y_pred: Any,
        n: int,
        inverse: np.ndarray | None,
        n_groups: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-sample losses without the 0/1 -> -1/1 label conversion; with it
        (for the rows of groups whose labels in this batch are all 0 or 1, zero
        elsewhere); and per group whether its labels here are all 0 or 1."""
        y_true, y_pred = _array.align_ranks(xp, y_true, y_pred)  # as the loss's call does
        labels = _float64(y_true, "y_true")
        binary = (labels == 0) | (labels == 1)
        row_binary = binary.all(axis=tuple(range(1, binary.ndim)))  # also for 0 rows
        if inverse is None:
            group_binary = np.array([bool(row_binary.all())])
            selected = np.full(n, bool(group_binary[0]))
        else:
            not_binary = np.bincount(inverse, weights=~row_binary, minlength=n_groups)
            group_binary = not_binary == 0
            selected = group_binary[inverse]
        squared = self.function is functional.squared_hinge
        plain = self._per_sample(
            hinge_with_fixed_labels(y_true, y_pred, squared=squared, convert=False), n
        )
        signs = np.zeros_like(plain)
        if selected.all():
            signs = self._per_sample(
                hinge_with_fixed_labels(y_true, y_pred, squared=squared, convert=True), n
            )
        elif selected.any():
            rows = xp.asarray(selected, device=_array.device_of(y_pred))
            part = hinge_with_fixed_labels(
                y_true[rows, ...], y_pred[rows, ...], squared=squared, convert=True
            )
            signs[selected] = self._per_sample(part, int(selected.sum()))
        return plain, signs, group_binary.astype(np.float64)

    def _overlap(
        self,
        y_true: Any,
        y_pred: Any,
        sample_weight: Any,
        mask: Any,
        inverse: np.ndarray | None,
        n_groups: int,
    ) -> np.ndarray:
        if sample_weight is not None or mask is not None:
            raise ValueError(
                f"{self.name} with axis=None gives one value for the whole array, so "
                "sample weights and masks do not apply per sample; accumulate it "
                "without them, or give a per-sample axis (e.g. axis=-1)."
            )
        _array.check_same_shape(y_true, y_pred, self.name)
        t = _float64(y_true, "y_true")
        p = _float64(y_pred, "y_pred")
        return np.stack(
            [
                _group_sums(t * p, inverse, n_groups),
                _group_sums(t, inverse, n_groups),
                _group_sums(p, inverse, n_groups),
            ],
            axis=1,
        )

    # -- the value --------------------------------------------------------

    def finish(self, totals: np.ndarray) -> float:
        """The reduced loss from the accumulated statistics of one group."""
        if self.kind == _OVERLAP:
            return float(self._overlap_value(*(float(x) for x in totals)))
        total, count, weight = (float(x) for x in totals[:3])
        if self.kind == _HINGE and totals[4] >= 1.0:
            total = float(totals[3])
        if self.reduction == "sum":
            return total
        divisor = weight if self.reduction == "mean_with_sample_weight" else count
        return total / divisor if divisor != 0 else 0.0

    def finish_all(self, totals: np.ndarray) -> np.ndarray:
        """:meth:`finish` for every row of ``totals`` at once (one per group)."""
        if self.kind == _OVERLAP:
            intersection, true_sum, pred_sum = (totals[:, i] for i in range(3))
            with np.errstate(all="ignore"):
                return np.asarray(self._overlap_value(intersection, true_sum, pred_sum), float)
        total = totals[:, 0]
        if self.kind == _HINGE:
            total = np.where(totals[:, 4] >= 1.0, totals[:, 3], total)
        if self.reduction == "sum":
            return np.array(total, dtype=np.float64)
        divisor = totals[:, 2] if self.reduction == "mean_with_sample_weight" else totals[:, 1]
        safe = np.where(divisor != 0, divisor, 1.0)
        with np.errstate(all="ignore"):
            return np.where(divisor != 0, total / safe, 0.0)

    def _overlap_value(self, intersection: Any, true_sum: Any, pred_sum: Any) -> Any:
        if self.function is functional.dice:
            return dice_from_sums(intersection, true_sum, pred_sum)
        false_positive, false_negative = pred_sum - intersection, true_sum - intersection
        alpha, beta = self.config["alpha"], self.config["beta"]
        return tversky_from_counts(intersection, false_positive, false_negative, alpha, beta)


class _Sums:
    """Compensated (Neumaier) float64 sums: one row per group, one column per
    field; flag columns are merged by minimum instead.  Storage grows by
    doubling, so adding groups batch after batch costs linear time."""

    def __init__(self, n_fields: int, flags: tuple[int, ...]) -> None:
        self.flags = flags
        self.rows = 0
        self._value = np.zeros((0, n_fields))
        self._compensation = np.zeros((0, n_fields))

    @property
    def value(self) -> np.ndarray:
        return self._value[: self.rows]

    @property
    def compensation(self) -> np.ndarray:
        return self._compensation[: self.rows]

    def grow(self, n_groups: int) -> None:
        if n_groups <= self.rows:
            return
        if n_groups > self._value.shape[0]:
            capacity = max(n_groups, 2 * self._value.shape[0], 4)
            value = np.zeros((capacity, self._value.shape[1]))
            compensation = np.zeros((capacity, self._value.shape[1]))
            value[: self.rows] = self.value
            compensation[: self.rows] = self.compensation
            self._value, self._compensation = value, compensation
        self._value[self.rows : n_groups, list(self.flags)] = 1.0
        self.rows = n_groups

    def add(self, rows: np.ndarray, values: np.ndarray, compensation: Any = 0.0) -> None:
        """Add ``values`` (plus ``compensation``) to the distinct ``rows``."""
        kernel = _add_kernel_for(rows.size)
        if kernel is not None:
            extra = np.asarray(compensation, dtype=np.float64)
            has_extra = not (extra.ndim == 0 and extra == 0.0)
            extra = np.broadcast_to(extra, values.shape) if has_extra else np.zeros((1, 1))
            flags = np.zeros(values.shape[1], dtype=np.bool_)
            flags[list(self.flags)] = True
            kernel(
                self._value,
                self._compensation,
                rows.astype(np.int64, copy=False),
                np.ascontiguousarray(values, dtype=np.float64),
                np.ascontiguousarray(extra),
                has_extra,
                flags,
            )
            return
        s = np.take(self._value, rows, axis=0)
        total = s + values
        with np.errstate(invalid="ignore", over="ignore"):
            # Knuth's TwoSum: the rounding error of s + values, exactly, without
            # branches (Neumaier's comparison of magnitudes gives the same);
            # in place, since these arrays have a row per group of the batch
            virtual = total - s
            error = total - virtual
            np.subtract(s, error, out=error)
            np.subtract(values, virtual, out=virtual)
            error += virtual
            # a non-finite total (and only that) makes its error NaN
            if not np.isfinite(error.sum()):
                error[~np.isfinite(total)] = 0.0
        error += np.take(self._compensation, rows, axis=0)
        if not (np.isscalar(compensation) and compensation == 0.0):
            error += compensation
        for flag in self.flags:
            total[:, flag] = np.minimum(s[:, flag], values[:, flag])
            error[:, flag] = 0.0
        _put_rows(self._value, rows, total)
        _put_rows(self._compensation, rows, error)

    def totals(self) -> np.ndarray:
        value = self.value
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(value), value + self.compensation, value)

    def collapsed(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row summed into one (flags by minimum): the statistics of all
        groups together, as (value, compensation) rows of one row each."""
        value = np.zeros((1, self._value.shape[1]))
        compensation = np.zeros_like(value)
        if _ADD_KERNEL and _add_kernel_for(self.rows) is not None:
            # Where the compiled loop is loaded already (never loading Numba
            # for this alone), the rows added one after another into one by
            # it (repeated rows are fine there): one pass, where the tree
            # below takes a pass per level.
            into = _Sums(value.shape[1], self.flags)
            into.grow(1)
            into.add(np.zeros(self.rows, dtype=np.int64), self.value, self.compensation)
            return into.value.copy(), into.compensation.copy()
        for field in range(value.shape[1]):
            column = self.value[:, field]
            if field in self.flags:
                value[0, field] = column.min() if self.rows else 1.0
            else:
                value[0, field], compensation[0, field] = _two_sum_tree(
                    column, self.compensation[:, field]
                )
        return value, compensation


def _put_rows(table: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``table[rows] = values`` for a C-ordered float64 table: each row put as
    one opaque item (3x faster than NumPy's fancy assignment of 2-D rows)."""
    row = np.dtype((np.void, table.itemsize * table.shape[1]))
    items = np.ascontiguousarray(values, dtype=np.float64).view(row).reshape(-1)
    np.put(table.view(row).reshape(-1), rows, items)


_ADD_KERNEL: list[Any] = []
_KERNEL_MIN_ROWS = 1024  # groups in one batch from which the Numba loop pays off


def _add_kernel_for(rows: int) -> Any:
    """The compiled loop of :meth:`_Sums.add` for adding ``rows`` rows, or
    None: NumPy for few rows (ungrouped, or few groups), without importing
    Numba, which would add its import to a small file's start-up; and
    where the kernels are declined."""
    if rows < _KERNEL_MIN_ROWS or kernels.declined_here():
        return None
    return _compensated_add_kernel()


def _compensated_add_kernel() -> Any:
    """:meth:`_Sums.add` as one Numba loop over the rows (compiled on first
    use, cached on disk), or None without Numba: the NumPy version gathers
    and scatters every row twice, which dominated grouped evaluation."""
    if not _ADD_KERNEL:
        try:
            import numba
        except ImportError:
            _ADD_KERNEL.append(None)
        else:
            _ADD_KERNEL.append(numba.njit(cache=True, error_model="numpy")(_add_rows))
    return _ADD_KERNEL[0]


def _add_rows(
    value: np.ndarray,
    compensation: np.ndarray,
    rows: np.ndarray,
    values: np.ndarray,
    extra: np.ndarray,
    has_extra: bool,
    flags: np.ndarray,
) -> None:
    """The loop of :meth:`_Sums.add` (distinct ``rows``), the same operations
    in the same order as its NumPy version, so the results are identical."""
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(value.shape[1]):
            s = value[r, j]
            x = values[i, j]
            if flags[j]:
                value[r, j] = s if (s != s or s <= x) and x == x else x
                compensation[r, j] = 0.0
                continue
            total = s + x
            error = 0.0
            if math.isfinite(total):
                virtual = total - s
                error = (s - (total - virtual)) + (x - virtual)
            value[r, j] = total
            c = error + compensation[r, j]
            if has_extra:
                c = c + extra[i, j]
            compensation[r, j] = c


def _two_sum_tree(values: np.ndarray, compensation: np.ndarray) -> tuple[float, float]:
    """The sum of ``values`` by pairwise error-free additions (Knuth's
    TwoSum), returned as (sum, the rounding errors plus ``compensation``'s
    sum): about as accurate as sequential compensated summation, in O(n) vectorised
    work, not one Python call per group."""
    if not np.isfinite(values).all():
        return float(values.sum()), 0.0  # inf or NaN: the plain sum says which
    a = values
    errors = float(compensation.sum())
    while a.shape[0] > 1:
        if a.shape[0] % 2:
            a = np.append(a, 0.0)
        x, y = a[0::2], a[1::2]
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow: the sum is inf
            total = x + y
            virtual = total - x
            errors += float(((x - (total - virtual)) + (y - virtual)).sum())
        a = total
    return (float(a[0]) if a.shape[0] else 0.0), errors


def _as_loss_list(losses_: Any) -> list[Any]:
    if isinstance(losses_, (str, Mapping, losses.Loss)) or not isinstance(losses_, Iterable):
        return [losses_]
    return list(losses_)


def _as_integers(keys: Sequence[Hashable]) -> np.ndarray | None:
    """``keys`` as an int64 array if every one is a Python int that fits
    (no keys: an empty array, so that the integer index stays)."""
    if not keys:
        return np.zeros(0, dtype=np.int64)
    if set(map(type, keys)) != {int}:
        return None
    try:
        return np.array(keys, dtype=np.int64)
    except OverflowError:
        return None


class _IntegerIndex:
    """The rows of integer group keys, found without a Python call per key
    (a dict lookup per key was a fifth of the grouped time): while the keys
    span a range not much wider than their number (ids, codes), a table
    indexed by key minus the smallest key; beyond, binary search in a
    sorted array.

    >>> index = _IntegerIndex()
    >>> index.rows_for(np.array([7, 3]), 0)[0]
    array([0, 1])
    >>> index.rows_for(np.array([3, 9]), 2)[0]
    array([1, 2])
    >>> index.in_key_order()
    (array([3, 7, 9]), array([1, 0, 2]))
    """

    def __init__(self) -> None:
        self.size = 0
        # dense: table[key - low] is the key's row, -1 where no key
        self.low = 0
        self.table: np.ndarray | None = np.zeros(0, dtype=np.int64)
        # sparse (table None): the keys sorted, and their rows
        self.keys = np.zeros(0, dtype=np.int64)
        self.rows = np.zeros(0, dtype=np.int64)

    def rows_for(
        self, keys: np.ndarray, next_row: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The row of each of the distinct int64 ``keys``; new keys get rows
        from ``next_row`` on, in their order.  Returns (rows, new keys, their rows)."""
        if self.table is not None and keys.size and not self._cover(keys):
            self.keys, self.rows = self.in_key_order()
            self.table = None
        rows = self._find(keys)
        new = rows < 0
        new_keys = keys[new]
        new_rows = np.arange(next_row, next_row + new_keys.size, dtype=np.int64)
        rows[new] = new_rows
        if new_keys.size:
            self._insert(new_keys, new_rows)
        self.size += new_keys.size
        return rows, new_keys, new_rows

    def in_key_order(self) -> tuple[np.ndarray, np.ndarray]:
        """Every key, ascending, and its row."""
        if self.table is None:
            return self.keys, self.rows
        present = np.flatnonzero(self.table >= 0)
        return present + self.low, self.table[present]

    def _cover(self, keys: np.ndarray) -> bool:
        """Widen the table to ``keys``' range unless it would grow too sparse
        (more than 4 entries per key, with 1024 to spare); False then."""
        low, high = int(keys.min()), int(keys.max())
        assert self.table is not None
        if self.table.size:
            low, high = min(low, self.low), max(high, self.low + self.table.size - 1)
        span = high - low + 1
        if span > 4 * (self.size + keys.size) + 1024 or not -(2**62) < low <= high < 2**62:
            return False
        if span > self.table.size or low < self.low:
            # doubling, so keys that rise batch by batch cost linear time
            length = min(max(span, 2 * self.table.size), 4 * (self.size + keys.size) + 1024)
            if not self.table.size:
                start = low
            elif low < self.low:  # the room to grow below
                start = high - length + 1
            else:
                start = self.low
            table = np.full(length, -1, dtype=np.int64)
            at = self.low - start
            table[at : at + self.table.size] = self.table
            self.table, self.low = table, start
        return True

    def _find(self, keys: np.ndarray) -> np.ndarray:
        if self.table is not None:
            return self.table[keys - self.low] if keys.size else keys.copy()
        position = np.searchsorted(self.keys, keys)
        found = position < self.keys.size
        found[found] = self.keys[position[found]] == keys[found]
        rows = np.full(keys.size, -1, dtype=np.int64)
        rows[found] = self.rows[position[found]]
        return rows

    def _insert(self, keys: np.ndarray, rows: np.ndarray) -> None:
        if self.table is not None:
            self.table[keys - self.low] = rows
            return
        order = np.argsort(keys, kind="stable")
        at = np.searchsorted(self.keys, keys[order])
        self.keys = np.insert(self.keys, at, keys[order])
        self.rows = np.insert(self.rows, at, rows[order])


@dataclasses.dataclass
class _BatchStatistics:
    """What one batch adds to an accumulator (see _Accumulation._batch_statistics)."""

    keys: list[Hashable] | np.ndarray | None  # the batch's distinct groups; None: ungrouped
    samples: np.ndarray  # per group
    per_loss: list[np.ndarray]  # each loss's (groups, fields) sums


class _Accumulation:
    """Shared machinery: several losses, each with one row of sums per group."""

    _grouped = False

    def __init__(
        self, losses_: Any, *, reduction: str | None = None, dtype: Any = "float64"
    ) -> None:
        self._kernels = [_Kernel(loss, reduction, dtype) for loss in _as_loss_list(losses_)]
        if not self._kernels:
            raise ValueError("Give at least one loss.")
        names = [kernel.name for kernel in self._kernels]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"Losses must have distinct names; {duplicates} repeat. Pass "
                "name=... to the loss constructors to tell them apart."
            )
        self._reduction = reduction
        self._dtype = _array.standardize_float_type(dtype)
        self._keys: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        self._integer_index: _IntegerIndex | None = _IntegerIndex()
        self._sample_store = np.zeros(0, dtype=np.int64)
        self._sums = [_Sums(len(k.fields), k.flags) for k in self._kernels]
        if not self._grouped:
            self._rows_for([None])

    @property
    def _samples(self) -> np.ndarray:
        """Samples seen per group (a view: assigning to its items counts)."""
        return self._sample_store[: len(self._keys)]

    @property
    def names(self) -> list[str]:
        """The losses' names, which key the results."""
        return [kernel.name for kernel in self._kernels]

    @property
    def losses(self) -> list[losses.Loss]:
        """The loss objects."""
        return [kernel.loss for kernel in self._kernels]

    def _rows_for(self, keys: Sequence[Hashable] | np.ndarray) -> np.ndarray:
        """The row of each of ``keys`` (distinct, normalised by
        :func:`_hashable`, or an int64 array), adding rows for new keys.
        Integer keys are looked up without a Python call per key while every
        key so far has been an integer."""
        index = self._integer_index
        integers = keys if isinstance(keys, np.ndarray) else None
        if index is not None and not isinstance(keys, np.ndarray):
            integers = _as_integers(keys)
            if integers is None:  # from now on, the dict (filled only now)
                self._integer_index = index = None
                self._index = {key: row for row, key in enumerate(self._keys)}
        if index is not None and integers is not None:
            rows, new_keys, _ = index.rows_for(integers, len(self._keys))
            self._keys.extend(new_keys.tolist())
        else:
            if isinstance(keys, np.ndarray):
                keys = keys.tolist()
            found = map(self._index.get, keys, itertools.repeat(-1))
            rows = np.fromiter(found, dtype=np.int64, count=len(keys))
            new = np.flatnonzero(rows < 0)
            if new.size:
                added = [keys[i] for i in new.tolist()]
                first = len(self._keys)
                self._index.update(zip(added, range(first, first + len(added)), strict=True))
                self._keys.extend(added)
                rows[new] = np.arange(first, first + len(added))
        n_groups = len(self._keys)
        if self._sample_store.shape[0] < n_groups:
            grown = np.zeros(max(n_groups, 2 * self._sample_store.shape[0]), dtype=np.int64)
            grown[: self._sample_store.shape[0]] = self._sample_store
            self._sample_store = grown
        for sums in self._sums:
            sums.grow(n_groups)
        return rows

    def _update(self, *batch: Any) -> None:
        """Add a batch: the arguments of :meth:`_batch_statistics`."""
        self._add_statistics(self._batch_statistics(*batch))

    def _batch_statistics(
        self,
        y_true: Any,
        y_pred: Any,
        sample_weight: Any,
        mask: Any,
        groups: Any,
        group_keys: Sequence[Any] | None = None,
    ) -> _BatchStatistics:
        """What a batch adds, computed without reading or changing the
        accumulated state: threads may compute batches at once, as long as
        :meth:`_add_statistics` adds them one at a time."""
        y_true, y_pred, sample_weight, mask, groups = (
            _with_known_shape(x) for x in (y_true, y_pred, sample_weight, mask, groups)
        )
        unique_keys: list[Hashable] | np.ndarray | None = None
        if groups is None:
            inverse, n = None, 1
            batch_rows = _batch_size(y_pred)
            counts = np.array([batch_rows])
        else:
            if group_keys is not None:
                groups = _arrow_nulls_as_missing(groups)
            keys = _to_numpy(groups, "groups")
            if keys.ndim != 1:
                raise ValueError(
                    f"`groups` must be 1-D, one key per sample. Received shape {keys.shape}."
                )
            if keys.shape[0] != _batch_size(y_pred):
                raise ValueError(
                    f"`groups` has {keys.shape[0]} keys for {_batch_size(y_pred)} samples."
                )
            if group_keys is None:
                unique_keys, inverse = _factorize(keys)
            else:
                unique_keys, inverse = _decode(keys, group_keys)
            n = len(unique_keys)
            counts = _group_counts(inverse, n)
        totals: list[Any] = [None] * len(self._kernels)
        if mask is None:
            grouping = None if inverse is None else (inverse, n)
            totals = self._one_pass_totals(y_true, y_pred, sample_weight, grouping) or totals
        batches = [
            kernel.batch(y_true, y_pred, sample_weight, mask, inverse, n, total)
            for kernel, total in zip(self._kernels, totals, strict=True)
        ]
        return _BatchStatistics(unique_keys, counts, batches)

    def _add_statistics(self, statistics: _BatchStatistics) -> None:
        """Add a batch's statistics: the state changes only here, once every
        loss has accepted the batch."""
        if statistics.keys is None:
            rows = np.zeros(1, dtype=np.int64)
        else:
            rows = self._rows_for(statistics.keys)
        for sums, batch in zip(self._sums, statistics.per_loss, strict=True):
            sums.add(rows, batch)
        self._samples[rows] += statistics.samples

    def _one_pass_totals(
        self,
        y_true: Any,
        y_pred: Any,
        sample_weight: Any,
        grouping: tuple[np.ndarray, int] | None,
    ) -> list[Any] | None:
        """The weighted sums of the losses that one fused pass over the batch
        computes together (see :func:`losskit.kernels.regression_sums`):
        from three such losses on, one pass beats a pass each."""
        summing = [kernel._summing for kernel in self._kernels]
        if sum(loss is not None for loss in summing) < _ONE_PASS_MIN_LOSSES:
            return None
        return kernels.regression_sums(summing, y_true, y_pred, sample_weight, grouping)

    def _merge(self, other: _Accumulation) -> None:
        if type(other) is not type(self):
            raise TypeError(f"Cannot merge a {type(other).__name__} into a {type(self).__name__}.")
        mine = [k.identity() for k in self._kernels]
        theirs = [k.identity() for k in other._kernels]
        if mine != theirs or self.names != other.names:
            differing = [
                f"{name!r}: {_described(a)} vs. {_described(b)}"
                for name, a, b in zip(self.names, mine, theirs, strict=False)
                if a != b
            ]
            if differing and self.names == other.names:
                raise ValueError(
                    "Cannot merge accumulators whose losses differ in their arguments: "
                    + "; ".join(differing)
                    + "."
                )
            raise ValueError(
                f"Cannot merge accumulators of different losses: {self.names} vs. {other.names}."
            )
        rows = self._rows_for(other._keys)
        for sums, their in zip(self._sums, other._sums, strict=True):
            sums.add(rows, their.value, their.compensation)
        self._samples[rows] += other._samples

    def _results(self, row: int) -> dict[str, float]:
        return {
            kernel.name: kernel.finish(sums.totals()[row])
            for kernel, sums in zip(self._kernels, self._sums, strict=True)
        }

    def _all_results(self) -> list[np.ndarray]:
        """Each loss's value for every group: one array per loss."""
        return [
            kernel.finish_all(sums.totals())
            for kernel, sums in zip(self._kernels, self._sums, strict=True)
        ]

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._keys, self._index = [], {}
        self._integer_index = _IntegerIndex()
        self._sample_store = np.zeros(0, dtype=np.int64)
        self._sums = [_Sums(len(k.fields), k.flags) for k in self._kernels]
        if not self._grouped:
            self._rows_for([None])

    @property
    def state(self) -> dict[str, Any]:
        """The accumulator as JSON-serialisable data (see :meth:`from_state`)."""
        return {
            "format": STATE_FORMAT,
            "type": type(self).__name__,
            "losses": [registry.serialize(kernel.loss) for kernel in self._kernels],
            "reduction": self._reduction,
            "dtype": self._dtype,
            "groups": [_encode_key(k) for k in self._keys] if self._grouped else None,
            "samples": self._samples.tolist(),
            "fields": [list(kernel.fields) for kernel in self._kernels],
            "sums": [sums.value.tolist() for sums in self._sums],
            "compensation": [sums.compensation.tolist() for sums in self._sums],
        }

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], custom_objects: Mapping[str, Any] | None) -> Any:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"Not a losskit accumulator state (format {state.get('format')!r}, "
                f"expected {STATE_FORMAT!r})."
            )
        if "type" not in state:
            raise ValueError("Malformed accumulator state: it has no ['type'].")
        if state.get("type") != cls.__name__:
            raise ValueError(
                f"This state is a {state.get('type')}; use {state.get('type')}.from_state."
            )
        _check_state(state, cls._grouped)
        loss_objects = [registry.deserialize(c, custom_objects) for c in state["losses"]]
        new = cls.__new__(cls)
        _Accumulation.__init__(
            new, loss_objects, reduction=state["reduction"], dtype=state["dtype"]
        )
        keys = [_decode_key(k) for k in state["groups"]] if cls._grouped else [None]
        if len(set(keys)) != len(keys):
            raise ValueError("The state lists a group key more than once.")
        rows = new._rows_for(keys)
        for sums, kernel, value, compensation, fields in zip(
            new._sums,
            new._kernels,
            state["sums"],
            state["compensation"],
            state["fields"],
            strict=True,
        ):
            if list(fields) != list(kernel.fields):
                raise ValueError(f"State fields {fields} do not match {kernel.fields}.")
            shape = (len(keys), len(kernel.fields))
            sums.value[rows] = _state_array(value, shape, "sums")
            sums.compensation[rows] = _state_array(compensation, shape, "compensation")
        new._samples[rows] = _state_array(state["samples"], (len(keys),), "samples", np.int64)
        return new


_STATE_KEYS = (
    "losses",
    "reduction",
    "dtype",
    "groups",
    "samples",
    "fields",
    "sums",
    "compensation",
)


def _described(identity: tuple[Any, ...]) -> str:
    """A loss's :meth:`_Kernel.identity`, as words for an error message."""
    name, config, reduction, dtype = identity
    return f"{name} {config}, reduction {reduction!r}, dtype {dtype}"


def _check_state(state: Mapping[str, Any], grouped: bool) -> None:
    """A ValueError naming what a state lacks (after its format and type)."""
    missing = [key for key in _STATE_KEYS if key not in state]
    if missing:
        raise ValueError(f"Malformed accumulator state: it has no {missing}.")
    lists = ["losses", "samples", "fields", "sums", "compensation"] + (
        ["groups"] if grouped else []
    )
    for key in lists:
        if not isinstance(state[key], list):
            raise ValueError(
                f"Malformed accumulator state: {key!r} must be a list; received "
                f"{type(state[key]).__name__}."
            )
    n_losses = len(state["losses"])
    for key in ("fields", "sums", "compensation"):
        if len(state[key]) != n_losses:
            raise ValueError(
                f"Malformed accumulator state: {key!r} has {len(state[key])} entries "
                f"for {n_losses} losses."
            )


def _state_array(data: Any, shape: tuple[int, ...], key: str, dtype: Any = np.float64) -> Any:
    """A state's numbers as an array of ``shape``, or a ValueError naming ``key``."""
    try:
        array = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        array = None
    if array is not None and array.size == 0 == math.prod(shape):  # no groups: [] in JSON
        array = array.reshape(shape)
    if array is None or array.shape != shape:
        raise ValueError(
            f"Malformed accumulator state: {key!r} must hold numbers of shape {shape}."
        )
    return array


def _pandas_missing(key: Any) -> bool:
    """Whether ``key`` is pandas' ``NA`` or ``NaT`` (without importing pandas:
    where it is not imported, no key can be one)."""
    pandas = sys.modules.get("pandas")
    if pandas is None:
        return False
    return key is getattr(pandas, "NaT", None) or key is getattr(pandas, "NA", None)


def _hashable(key: Any) -> Hashable:
    """A group key as stored: lists and tuples become tuples of stored keys,
    NumPy scalars Python ones, NaN, NaT and pandas' NA the missing key None,
    datetime64 a ``datetime.date`` (day precision or coarser) or
    ``datetime.datetime`` (finer; microseconds)."""
    if type(key) in (str, int):  # the common keys, stored as they are
        return key
    if isinstance(key, np.datetime64):
        if np.isnat(key):
            return None
        unit = np.datetime_data(key.dtype)[0]
        return key.astype(f"datetime64[{'D' if unit in ('Y', 'M', 'W', 'D') else 'us'}]").item()
    if isinstance(key, np.generic):
        key = key.item()
    if isinstance(key, (list, tuple)):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, float) and math.isnan(key):
        return None
    if _pandas_missing(key):
        return None
    return key


def _merge_equal_keys(
    keys: Sequence[Hashable], inverse: np.ndarray
) -> tuple[list[Hashable], np.ndarray]:
    """Make ``keys`` distinct: keys that are one group (NaN and None are both
    the missing key, None) get one index, so no sample's row is lost to a
    repeated index in a fancy assignment."""
    index: dict[Hashable, int] = {}
    remap = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
    if len(index) == len(keys):
        return list(keys), inverse
    return list(index), remap[inverse]


def _dense_factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`numpy.unique` with ``return_inverse`` for integer keys spanning
    a range not much wider than their number, through a table indexed by
    value, in linear time (no sort); None for other keys."""
    if keys.size == 0 or keys.dtype.kind == "b":
        return None
    low, high = int(keys.min()), int(keys.max())
    span = high - low + 1
    if span > 4 * keys.size + 1024 or not -(2**62) < low <= high < 2**62:
        return None
    offsets = keys.astype(np.intp) - low
    present = np.zeros(span, dtype=bool)
    present[offsets] = True
    unique = np.flatnonzero(present)
    table = np.empty(span, dtype=np.int64)
    table[unique] = np.arange(unique.size, dtype=np.int64)
    return unique + low, table[offsets]


def _factorize(keys: np.ndarray) -> tuple[list[Hashable] | np.ndarray, np.ndarray]:
    """Distinct keys (NaN and None are one missing key, None) and each
    sample's index into them; integer keys that fit int64 as an int64 array
    (no Python object per key), other keys as a list."""
    if keys.dtype.kind in "biu":
        dense = _dense_factorize(keys)
        if dense is not None:
            return dense
        unique, inverse = np.unique(keys, return_inverse=True)
        if keys.dtype.kind == "b" or (unique.size and unique[-1] > np.iinfo(np.int64).max):
            return unique.tolist(), inverse.reshape(-1)
        return unique.astype(np.int64), inverse.reshape(-1)
    if keys.dtype.kind == "f":  # np.unique puts every NaN last, as one
        unique, inverse = np.unique(keys, return_inverse=True)
        listed = unique.tolist()
        if listed and math.isnan(listed[-1]):
            listed[-1] = None
        return listed, inverse.reshape(-1)
    if keys.dtype.kind == "M":  # as datetime.date or datetime.datetime (see _hashable)
        unit = np.datetime_data(keys.dtype)[0]
        keys = keys.astype(f"datetime64[{'D' if unit in ('Y', 'M', 'W', 'D') else 'us'}]")
        keys = keys.astype(object)
    try:
        unique, inverse = np.unique(keys, return_inverse=True)
        listed = [_hashable(k) for k in unique]
        return _merge_equal_keys(listed, inverse.reshape(-1))
    except TypeError:  # object arrays mixing types (None and strings)
        index: dict[Hashable, int] = {}
        codes = np.array(
            [index.setdefault(_hashable(k), len(index)) for k in keys.tolist()],
            dtype=np.int64,
        )
        return list(index), codes


MISSING_CODE = -1
"""The code of the missing key in ``group_keys`` encodings (pandas'
``Categorical.codes`` convention; Arrow marks a missing key with a null
index instead, which counts the same): its samples form the group ``None``."""


def _arrow_nulls_as_missing(codes: Any) -> Any:
    """An Arrow array of integer codes with null indices (a dictionary
    array's ``indices``) with :data:`MISSING_CODE` in place of the nulls;
    anything else as it is (pyarrow is imported only for its arrays)."""
    if not type(codes).__module__.startswith("pyarrow") or not getattr(codes, "null_count", 0):
        return codes
    import pyarrow.types

    if not pyarrow.types.is_integer(codes.type):
        return codes
    return codes.cast("int64").fill_null(MISSING_CODE)


def _decode(codes: np.ndarray, group_keys: Sequence[Any]) -> tuple[list[Hashable], np.ndarray]:
    """The keys and each sample's index into them, for integer ``codes`` into
    ``group_keys``; -1 is the missing key (None); keys equal after
    normalisation (repeated keys, NaN and None) are one group."""
    if codes.dtype.kind not in "iu":  # (booleans were taken as the codes 0 and 1)
        raise TypeError(
            f"With `group_keys`, `groups` must hold integer codes; received dtype {codes.dtype}."
        )
    n_keys = len(group_keys)
    if codes.size:
        low, high = int(codes.min()), int(codes.max())
        if low < MISSING_CODE or high >= n_keys:
            bad = low if low < MISSING_CODE else high
            raise ValueError(
                f"`groups` has the code {bad}, outside the {n_keys} `group_keys`: codes "
                f"must be in [0, {n_keys - 1}], or -1 for a missing key."
            )
    codes = codes.astype(np.int64, copy=False)
    used, inverse = _dense_factorize(codes) or np.unique(codes, return_inverse=True)
    listed = [None if i == MISSING_CODE else group_keys[i] for i in used.tolist()]
    inverse = inverse.reshape(-1)
    if set(map(type, listed)) <= {str, type(None)}:  # stored as they are (Arrow's text)
        if len(set(listed)) == len(listed):
            return listed, inverse
        return _merge_equal_keys(listed, inverse)
    return _merge_equal_keys([_hashable(k) for k in listed], inverse)


_KEY_TYPES = {"date": datetime.date, "datetime": datetime.datetime}


def _encode_key(key: Hashable) -> Any:
    """A group key as JSON data: numbers, text, booleans and None as they are;
    tuples as lists; dates and datetimes as ``{"date": ISO}`` and
    ``{"datetime": ISO}``."""
    if key is None or isinstance(key, (str, int, float, bool)):
        return key
    if isinstance(key, tuple):
        return [_encode_key(k) for k in key]
    if isinstance(key, datetime.datetime):
        return {"datetime": key.isoformat()}
    if isinstance(key, datetime.date):
        return {"date": key.isoformat()}
    raise TypeError(
        f"A group key of type {type(key).__name__} ({key!r}) cannot be stored in a "
        "JSON state; use numbers, text, booleans, dates or datetimes as keys."
    )


def _decode_key(data: Any) -> Hashable:
    if isinstance(data, Mapping) and len(data) == 1:
        [(kind, text)] = data.items()
        if kind == "datetime" and text == "NaT":  # pandas' NaT, in states of older versions
            return None
        if kind in _KEY_TYPES and isinstance(text, str):
            try:
                return _KEY_TYPES[kind].fromisoformat(text)
            except ValueError:
                pass
    if isinstance(data, Mapping):
        raise ValueError(f"Not a group key in a state: {data!r}.")
    if isinstance(data, list):
        return tuple(_decode_key(k) for k in data)
    return _hashable(data)


def _picked(items: list[Any], order: np.ndarray) -> list[Any]:
    """``[items[i] for i in order]``, without a Python loop for long lists."""
    if order.size < 2:
        return [items[i] for i in order.tolist()]
    return list(operator.itemgetter(*order.tolist())(items))


def _sorting_order(keys: list[Hashable]) -> np.ndarray:
    """The indices that sort ``keys``: the missing key (None or NaN) last;
    keys of several types (numbers and text, from different files) by type
    name, then value; their order as they are only where keys of one type do
    not compare (tuples mixing types)."""
    if keys and set(map(type, keys)) <= {int, float}:  # NumPy sorts these fast
        numbers = np.array(keys)
        if numbers.dtype.kind in "iuf" and not np.isnan(numbers).any():
            return np.argsort(numbers, kind="stable")
    missing = [i for i, key in enumerate(keys) if key is None or key != key]  # None, NaN
    skipped = set(missing)
    present = [i for i in range(len(keys)) if i not in skipped] if missing else range(len(keys))
    for sort_key in (keys.__getitem__, lambda i: (_type_rank(keys[i]), keys[i])):
        try:
            present = sorted(present, key=sort_key)  # type: ignore[arg-type]
            break
        except TypeError:
            continue
    return np.array([*present, *missing], dtype=np.int64)


def _type_rank(key: Hashable) -> str:
    """Numbers (bool, int, float) compare with each other: one rank."""
    return "" if isinstance(key, (int, float)) else type(key).__name__


def _with_known_shape(x: Any) -> Any:
    """A Dask array whose chunk sizes are unknown (after boolean indexing)
    with them computed: the batch's losses come to host memory anyway, and
    its size must be known to count it; anything else unchanged."""
    shape = getattr(x, "shape", ())
    if any(_array.unknown_dim(dim) for dim in shape) and hasattr(x, "compute_chunk_sizes"):
        return x.compute_chunk_sizes()
    return x


def _batch_size(y_pred: Any) -> int:
    shape = getattr(y_pred, "shape", None)
    if shape is None:
        shape = np.shape(y_pred)
    if len(shape) == 0:
        raise ValueError("`y_pred` needs a batch axis; received a scalar.")
    return int(shape[0])


class LossAccumulator(_Accumulation):
    """The value of one loss over every batch it was updated with.

    Args:
        loss: a loss object, name, alias or config (anything
            :func:`losskit.get` accepts).
        reduction: overrides the loss's own reduction (default: the loss's,
            ``"sum_over_batch_size"`` for the built-ins).
        dtype: the float type the per-sample losses are computed in
            (float64 by default; sums are always float64).

    ``update`` adds a batch, ``merge`` adds another accumulator of the same
    loss, ``result`` gives the reduced value (a Python float).  ``state`` and
    :meth:`from_state` turn it into JSON-serialisable data and back.

    >>> import numpy as np
    >>> import losskit
    >>> y_true = np.array([[0.0], [1.0], [2.0], [4.0]])
    >>> y_pred = np.array([[0.5], [1.0], [1.0], [2.0]])
    >>> weights = np.array([1.0, 2.0, 0.0, 1.0])
    >>> left, right = LossAccumulator(losskit.Huber()), LossAccumulator("huber_loss")
    >>> left.update(y_true[:2], y_pred[:2], sample_weight=weights[:2])
    >>> right.update(y_true[2:], y_pred[2:], sample_weight=weights[2:])
    >>> left.merge(right).result()
    0.40625
    >>> float(losskit.Huber(dtype="float64")(y_true, y_pred, sample_weight=weights))
    0.40625
    >>> LossAccumulator.from_state(left.state).result()
    0.40625
    """

    def __init__(
        self,
        loss: Any = "mean_squared_error",
        *,
        reduction: str | None = None,
        dtype: Any = "float64",
    ) -> None:
        if isinstance(loss, (list, tuple)):
            raise TypeError("LossAccumulator takes one loss; use MultiLossAccumulator for several.")
        super().__init__([loss], reduction=reduction, dtype=dtype)

    @property
    def loss(self) -> losses.Loss:
        """The loss object."""
        return self._kernels[0].loss

    @property
    def name(self) -> str:
        """The loss's name."""
        return self._kernels[0].name

    @property
    def reduction(self) -> str | None:
        """The reduction applied by :meth:`result`."""
        return self._kernels[0].reduction

    @property
    def samples(self) -> int:
        """Number of samples (rows of the batch axis) seen."""
        return int(self._samples[0])

    @property
    def statistics(self) -> dict[str, float]:
        """The accumulated sums, by field (``total``, ``count``, ``weight``, ...)."""
        totals = self._sums[0].totals()[0]
        fields = self._kernels[0].fields
        return {field: float(x) for field, x in zip(fields, totals, strict=True)}

    def update(self, y_true: Any, y_pred: Any, sample_weight: Any = None, mask: Any = None) -> None:
        """Add a batch; arguments as for calling the loss object."""
        self._update(y_true, y_pred, sample_weight, mask, None)

    def merge(self, other: LossAccumulator) -> LossAccumulator:
        """Add ``other``'s batches to this accumulator; returns ``self``."""
        self._merge(other)
        return self

    def result(self) -> float:
        """The loss over every batch seen, reduced as the loss object would."""
        return self._results(0)[self.name]

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None
    ) -> LossAccumulator:
        """Rebuild an accumulator from :attr:`state` (``custom_objects`` as
        for :func:`losskit.deserialize`, for your own losses)."""
        return cls._from_state(state, custom_objects)

    def __repr__(self) -> str:
        return (
            f"LossAccumulator({self.loss!r}, reduction={self.reduction!r}, samples={self.samples})"
        )


class MultiLossAccumulator(_Accumulation):
    """Several losses over the same batches, keyed by the losses' names.

    >>> import numpy as np
    >>> acc = MultiLossAccumulator(["mse", "mae"])
    >>> acc.update(np.array([[0.0], [2.0]]), np.array([[1.0], [2.0]]))
    >>> acc.update(np.array([[1.0]]), np.array([[3.0]]))
    >>> acc.result()
    {'mean_squared_error': 1.666..., 'mean_absolute_error': 1.0}
    >>> acc.samples
    3
    """

    def __init__(
        self, losses: Any, *, reduction: str | None = None, dtype: Any = "float64"
    ) -> None:
        super().__init__(losses, reduction=reduction, dtype=dtype)

    @property
    def samples(self) -> int:
        """Number of samples seen."""
        return int(self._samples[0])

    def update(self, y_true: Any, y_pred: Any, sample_weight: Any = None, mask: Any = None) -> None:
        """Add a batch to every loss (all losses accept it, or none changes)."""
        self._update(y_true, y_pred, sample_weight, mask, None)

    def merge(self, other: MultiLossAccumulator) -> MultiLossAccumulator:
        """Add ``other``'s batches; returns ``self``."""
        self._merge(other)
        return self

    def result(self) -> dict[str, float]:
        """Each loss's value, by name."""
        return self._results(0)

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None
    ) -> MultiLossAccumulator:
        """Rebuild an accumulator from :attr:`state`."""
        return cls._from_state(state, custom_objects)


class GroupedAccumulator(_Accumulation):
    """Several losses per group: the loss object applied to each group's
    samples separately, as with a ``groupby``.

    ``groups`` gives one hashable key per sample (an array of numbers or
    strings).

    >>> import numpy as np
    >>> acc = GroupedAccumulator(["mse"])
    >>> acc.update(np.array([[0.0], [2.0], [1.0]]), np.array([[1.0], [2.0], [4.0]]),
    ...            groups=np.array(["a", "b", "a"]))
    >>> acc.result()
    {'a': {'mean_squared_error': 5.0}, 'b': {'mean_squared_error': 0.0}}
    >>> acc.samples
    {'a': 2, 'b': 1}
    """

    _grouped = True

    def __init__(
        self, losses: Any, *, reduction: str | None = None, dtype: Any = "float64"
    ) -> None:
        super().__init__(losses, reduction=reduction, dtype=dtype)

    @property
    def groups(self) -> list[Hashable]:
        """The group keys seen, in order of first appearance."""
        return list(self._keys)

    @property
    def samples(self) -> dict[Hashable, int]:
        """Number of samples seen per group."""
        return {key: int(n) for key, n in zip(self._keys, self._samples, strict=True)}

    def update(
        self,
        y_true: Any,
        y_pred: Any,
        sample_weight: Any = None,
        mask: Any = None,
        *,
        groups: Any,
        group_keys: Sequence[Any] | None = None,
    ) -> None:
        """Add a batch whose samples belong to the groups named by ``groups``
        (one hashable key per sample), or, with ``group_keys``, by integer codes
        into ``group_keys`` (as from a dictionary encoding)."""
        if groups is None:
            raise ValueError("GroupedAccumulator.update needs `groups`, one key per sample.")
        self._update(y_true, y_pred, sample_weight, mask, groups, group_keys)

    def combined(self) -> MultiLossAccumulator:
        """The accumulator of every group together: the losses over all samples.

        >>> import numpy as np
        >>> acc = GroupedAccumulator(["mae"])
        >>> acc.update(np.array([[0.0], [0.0]]), np.array([[1.0], [3.0]]), groups=[1, 2])
        >>> acc.combined().result()
        {'mean_absolute_error': 2.0}
        """
        total = MultiLossAccumulator(
            [kernel.loss for kernel in self._kernels],
            reduction=self._reduction,
            dtype=self._dtype,
        )
        zero = np.zeros(1, dtype=np.int64)
        for mine, theirs in zip(total._sums, self._sums, strict=True):
            mine.add(zero, *theirs.collapsed())
        total._samples[0] = int(self._samples.sum())
        return total

    def merge(self, other: GroupedAccumulator) -> GroupedAccumulator:
        """Add ``other``'s batches; groups are matched by key."""
        self._merge(other)
        return self

    def result(self) -> dict[Hashable, dict[str, float]]:
        """Each group's losses, by group key (sorted where keys compare)."""
        keys, _, values = self.table()
        names = list(values)
        columns = [values[name].tolist() for name in names]
        return {
            key: dict(zip(names, row, strict=True))
            for key, row in zip(keys, zip(*columns, strict=True), strict=True)
        }

    def table(self) -> tuple[list[Hashable], np.ndarray, dict[str, np.ndarray]]:
        """The results as columns, one entry per group (sorted by key where
        keys compare): the keys, each group's number of samples and each
        loss's values.  Work proportional to the number of groups, without
        a Python object per value.

        >>> import numpy as np
        >>> acc = GroupedAccumulator(["mse"])
        >>> acc.update(np.zeros((3, 1)), np.array([[1.0], [2.0], [3.0]]), groups=[2, 1, 2])
        >>> acc.table()
        ([1, 2], array([1, 2]), {'mean_squared_error': array([4., 5.])})
        """
        found = self._sorted_integer_keys()
        if found is not None:
            integers, order = found
            keys = integers.tolist()
        else:
            order = _sorting_order(self._keys)
            keys = _picked(self._keys, order)
        return keys, self._samples[order], self._values_in(order)

    def integer_table(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]] | None:
        """:meth:`table` with the keys as one int64 array, where every key is
        an integer that fits one (else None): no Python object per group.

        >>> import numpy as np
        >>> acc = GroupedAccumulator(["mse"])
        >>> acc.update(np.zeros((3, 1)), np.array([[1.0], [2.0], [3.0]]), groups=[2, 1, 2])
        >>> acc.integer_table()
        (array([1, 2]), array([1, 2]), {'mean_squared_error': array([4., 5.])})
        """
        found = self._sorted_integer_keys()
        if found is None:
            return None
        integers, order = found
        return integers, self._samples[order], self._values_in(order)

    def _sorted_integer_keys(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The integer keys in order (a copy) and their rows, from the
        integer index (a table or a sorted array), or None where a key is not
        an integer."""
        index = self._integer_index
        if index is None or index.size != len(self._keys):
            return None
        keys, rows = index.in_key_order()
        return keys.copy(), rows

    def _values_in(self, order: np.ndarray) -> dict[str, np.ndarray]:
        return {
            name: column[order]
            for name, column in zip(self.names, self._all_results(), strict=True)
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None
    ) -> GroupedAccumulator:
        """Rebuild an accumulator from :attr:`state`."""
        return cls._from_state(state, custom_objects)
