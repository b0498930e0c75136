"""PyTorch autograd glue: a loss whose forward pass also produced its gradient.

The gradient buffer is handed to autograd without a copy when the upstream
gradient is exactly 1 (``loss.backward()``), and scaled in place otherwise;
either way backward allocates nothing and makes at most one pass.

Gradient buffers are recycled, as PyTorch's CUDA caching allocator recycles
device memory: a buffer that nothing references any more (its tensor, views of
it and NumPy views of it are all gone, as after ``optimizer.zero_grad()``)
is written again by the next call of the same shape and dtype instead of new
memory being faulted in, which costs more than the kernel itself (64 MiB of
fresh pages: about 5 ms, the fused MSE pass: about 4 ms).  At most
``RECYCLED_PER_SHAPE`` buffers are kept for each of the last
``RECYCLED_SHAPES`` shapes; :func:`release_gradient_buffers` drops them.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

RECYCLED_PER_SHAPE = 2
RECYCLED_SHAPES = 4
_recycled: OrderedDict[tuple[Any, ...], list[np.ndarray]] = OrderedDict()
_recycled_lock = threading.Lock()
# References to a pooled array that nothing else holds: the pool's list, the
# loop variable and getrefcount's own argument.
_UNREFERENCED = 3


def release_gradient_buffers() -> None:
    """Forget the recycled gradient buffers (memory returns to the system once
    no tensor uses them)."""
    with _recycled_lock:
        _recycled.clear()


def _new_buffer(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` and ``dtype``: a recycled buffer that
    nothing references any more, or one newly allocated by NumPy (NumPy asks the
    kernel for transparent huge pages on large buffers, which makes the first
    write of a 64 MiB gradient about 4x cheaper than torch's allocator)."""
    numpy_dtype = {torch.float32: np.float32, torch.float64: np.float64}[dtype]
    key = (shape, numpy_dtype)
    with _recycled_lock:
        pool = _recycled.setdefault(key, [])
        _recycled.move_to_end(key)
        for array in pool:
            # torch.from_numpy tensors (and their views, and NumPy views of
            # those) hold a reference to the array while any of them lives.
            if sys.getrefcount(array) <= _UNREFERENCED:
                return torch.from_numpy(array)
        array = np.empty(shape, dtype=numpy_dtype)
        if len(pool) < RECYCLED_PER_SHAPE:
            pool.append(array)
        while len(_recycled) > RECYCLED_SHAPES:
            _recycled.popitem(last=False)
        return torch.from_numpy(array)


class _PrecomputedGradient(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        y_pred: torch.Tensor,
        value: float,
        gradient: torch.Tensor | None,
        deferred: Callable[[np.ndarray], None] | None,
    ) -> torch.Tensor:
        ctx.gradient = gradient
        ctx.deferred = deferred
        ctx.like = (tuple(y_pred.shape), y_pred.dtype)
        return torch.tensor(value, dtype=y_pred.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        gradient = ctx.gradient
        if gradient is None:
            if ctx.deferred is None:
                raise RuntimeError(
                    "losskit's fused loss was differentiated twice; run it under "
                    "losskit.prefer_backend('reference') to keep the graph."
                )
            gradient = _new_buffer(*ctx.like)
            ctx.deferred(gradient.numpy())
        # Drop our reference so autograd may adopt the buffer instead of copying it.
        ctx.gradient = None
        ctx.deferred = None
        if not bool(grad_output == 1):
            gradient.mul_(grad_output)
        return gradient, None, None, None


def fused_value_and_gradient(
    y_pred: torch.Tensor, run: Callable[[np.ndarray], float]
) -> torch.Tensor:
    """``run(grad)`` fills ``grad`` (a NumPy view of a new tensor) with d loss /
    d y_pred and returns the loss; the result backpropagates that gradient."""
    gradient = _new_buffer(tuple(y_pred.shape), y_pred.dtype)
    value = run(gradient.numpy())
    return _PrecomputedGradient.apply(y_pred, value, gradient, None)


def fused_value_and_deferred_gradient(
    y_pred: torch.Tensor, value: float, gradient: Callable[[np.ndarray], None]
) -> torch.Tensor:
    """A loss ``value`` whose gradient ``gradient(grad)`` writes in backward
    (for Dice and Tversky, whose gradient needs the forward pass's sums)."""
    return _PrecomputedGradient.apply(y_pred, value, None, gradient)
