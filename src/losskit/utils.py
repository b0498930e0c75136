"""Label utilities."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from losskit import _array, _config
from losskit._array import Array


def to_categorical(labels: Any, num_classes: int | None = None) -> Array:
    """One-hot encode integer class labels.

    A trailing dimension of 1 is dropped first, so labels of shape ``(n,)`` or
    ``(n, 1)`` both give ``(n, num_classes)``.  ``num_classes`` defaults to
    ``max(labels) + 1``.  NumPy arrays, lists and scalars give a float64 NumPy
    array (as Keras); arrays of another library give an array of that library
    in ``floatx()``.

    >>> import losskit
    >>> losskit.to_categorical([0, 2, 1], num_classes=3)
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]])
    """
    native = array_api_compat.is_array_api_obj(labels) and not array_api_compat.is_numpy_array(
        labels
    )
    xp = _array.namespace_of(labels) if native else _array.numpy_namespace()
    device = _array.device_of(labels) if native else None
    values = _array.as_array(xp, labels, "labels", device=device)
    if _array.is_floating(xp, values.dtype) and not native:
        as_int = np.asarray(values).astype("int64")
        if np.any(as_int != np.asarray(values)):
            raise ValueError("to_categorical: `labels` must be whole numbers.")
    values = xp.astype(values, xp.int64)
    if values.ndim > 1 and values.shape[-1] == 1:
        values = xp.squeeze(values, axis=-1)
    if num_classes is None:
        if _array.size(values.shape) == 0:
            raise ValueError("to_categorical: give `num_classes` for empty `labels`.")
        num_classes = int(xp.max(values)) + 1
    num_classes = _array.python_int(num_classes)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}."
        )
    if (
        not native
        and _array.size(values.shape)
        and (int(xp.min(values)) < 0 or int(xp.max(values)) >= num_classes)
    ):
        raise ValueError(
            f"to_categorical: labels must lie in [0, {num_classes}). Received labels "
            f"from {int(xp.min(values))} to {int(xp.max(values))}."
        )
    dtype = _array.float_dtype(xp, "float64" if not native else _config.floatx())
    classes = xp.arange(num_classes, dtype=xp.int64, device=device)
    return xp.astype(xp.expand_dims(values, axis=-1) == classes, dtype)
