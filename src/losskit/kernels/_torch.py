"""PyTorch autograd glue: a loss whose forward pass also produced its gradient.

The gradient buffer is handed to autograd without a copy when the upstream
gradient is exactly 1 (``loss.backward()``), and scaled in place otherwise;
either way backward allocates nothing and makes at most one pass.  Under
``create_graph=True`` (double backward) the precomputed gradient is not
differentiable, so backward recomputes it through the reference
implementation under autograd instead.

Gradient buffers are recycled, as PyTorch's CUDA caching allocator recycles
device memory: a buffer that nothing uses any more (its tensor, views of it
and NumPy views of it are all gone, as after ``optimizer.zero_grad()``) is
written again by the next call of the same shape and dtype instead of new
memory being faulted in, which costs more than the kernel itself (64 MiB of
fresh pages: about 5 ms, the fused MSE pass: about 4 ms).  Each hand-out is a
fresh NumPy view of the pooled buffer; the tensor made from it (and every view
or NumPy view of that tensor, through its storage) keeps the view alive, so
the buffer is free exactly when a weak reference to the view is dead.  That is
documented weak-reference semantics, not a reference count.  At most
``RECYCLED_PER_SHAPE`` buffers are kept for each of the last
``RECYCLED_SHAPES`` shapes; :func:`release_gradient_buffers` drops them.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

RECYCLED_PER_SHAPE = 2
RECYCLED_SHAPES = 4


@dataclass
class _Slot:
    """A pooled buffer and a weak reference to the view last handed out."""

    buffer: np.ndarray
    lease: weakref.ref[np.ndarray] | None = None

    def free(self) -> bool:
        return self.lease is None or self.lease() is None


_recycled: OrderedDict[tuple[Any, ...], list[_Slot]] = OrderedDict()
_recycled_lock = threading.Lock()
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def release_gradient_buffers() -> None:
    """Forget the recycled gradient buffers (memory returns to the system once
    no tensor uses them)."""
    with _recycled_lock:
        _recycled.clear()


def _lend(slot: _Slot) -> torch.Tensor:
    view = slot.buffer.view()
    slot.lease = weakref.ref(view)
    return torch.from_numpy(view)


def new_gradient_buffer(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` and ``dtype``: a recycled buffer that
    nothing uses any more, or one newly allocated by NumPy (NumPy asks the
    kernel for transparent huge pages on large buffers, which makes the first
    write of a 64 MiB gradient about 4x cheaper than torch's allocator)."""
    key = (shape, dtype)
    with _recycled_lock:
        pool = _recycled.setdefault(key, [])
        _recycled.move_to_end(key)
        for slot in pool:
            if slot.free():
                return _lend(slot)
        slot = _Slot(np.empty(shape, dtype=_NUMPY_DTYPES[dtype]))
        if len(pool) < RECYCLED_PER_SHAPE:
            pool.append(slot)
        while len(_recycled) > RECYCLED_SHAPES:
            _recycled.popitem(last=False)
        return _lend(slot)


class _PrecomputedGradient(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        y_pred: torch.Tensor,
        value: float,
        gradient: torch.Tensor | None,
        deferred: Callable[[np.ndarray], None] | None,
        reference: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        ctx.save_for_backward(y_pred)
        ctx.gradient = gradient
        ctx.deferred = deferred
        ctx.reference = reference
        return torch.tensor(value, dtype=y_pred.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        if torch.is_grad_enabled():  # create_graph=True: a differentiable gradient
            (y_pred,) = ctx.saved_tensors
            value = ctx.reference(y_pred)
            (gradient,) = torch.autograd.grad(value, y_pred, grad_output, create_graph=True)
            return gradient, None, None, None, None
        gradient = ctx.gradient
        if gradient is None:
            if ctx.deferred is None:
                raise RuntimeError(
                    "losskit's fused loss was differentiated twice; run it under "
                    "losskit.prefer_backend('reference') to keep the graph."
                )
            (y_pred,) = ctx.saved_tensors
            gradient = new_gradient_buffer(tuple(y_pred.shape), y_pred.dtype)
            ctx.deferred(gradient.numpy())
        # Drop our reference so autograd may adopt the buffer instead of copying it.
        ctx.gradient = None
        ctx.deferred = None
        if not bool(grad_output == 1):
            gradient.mul_(grad_output)
        return gradient, None, None, None, None


def with_gradient(
    y_pred: torch.Tensor,
    value: float,
    gradient: torch.Tensor,
    reference: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The loss ``value`` whose gradient with respect to ``y_pred`` is the
    precomputed ``gradient``; ``reference(y_pred)`` recomputes the loss
    differentiably for double backward."""
    return _PrecomputedGradient.apply(y_pred, value, gradient, None, reference)


def with_deferred_gradient(
    y_pred: torch.Tensor,
    value: float,
    gradient: Callable[[np.ndarray], None],
    reference: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """A loss ``value`` whose gradient ``gradient(grad)`` writes in backward
    (for Dice and Tversky, whose gradient needs the forward pass's sums)."""
    return _PrecomputedGradient.apply(y_pred, value, None, gradient, reference)
