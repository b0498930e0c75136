"""PyTorch autograd glue: a loss whose forward pass also produced its gradient.

The gradient buffer is handed to autograd without a copy when the upstream
gradient is exactly 1 (``loss.backward()``), and scaled in place otherwise;
either way backward allocates nothing and makes at most one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


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
        ctx.shape_like = y_pred
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
            gradient = torch.empty_like(ctx.shape_like, memory_format=torch.contiguous_format)
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
    gradient = torch.empty_like(y_pred, memory_format=torch.contiguous_format)
    value = run(gradient.detach().numpy())
    return _PrecomputedGradient.apply(y_pred, value, gradient, None)


def fused_value_and_deferred_gradient(
    y_pred: torch.Tensor, value: float, gradient: Callable[[np.ndarray], None]
) -> torch.Tensor:
    """A loss ``value`` whose gradient ``gradient(grad)`` writes in backward
    (for Dice and Tversky, whose gradient needs the forward pass's sums)."""
    return _PrecomputedGradient.apply(y_pred, value, None, gradient)
