"""``logaddexp`` for torch with derivatives of every order finite.

``torch.logaddexp``'s second derivative is ``exp(d) / (1 + exp(d))**2``, with
``d`` the gap between the arguments: inf / inf = NaN once they are 88
(float32) or 709 (float64) apart, as CTC's recursion (its stand-in for
log 0 is -1e5) and the softplus of a large argument always are.  Both forms
here have derivative ``sigmoid(a - b)`` for ``a`` (``sigmoid(b - a)`` for
``b``), whose own derivative stays finite:

- in eager autograd, :class:`_LogAddExp`: torch's own forward (one
  operation) and a backward of differentiable operations, so double backward
  (``create_graph=True``) differentiates it again;
- under ``torch.compile`` (which fuses the operations anyway), ``torch.func``
  transforms and forward-mode dual levels (a custom ``autograd.Function``
  would need a forward-mode rule there, which Dynamo cannot trace),
  :func:`_composite`: the larger argument plus the softplus of the
  non-positive gap, as ``torch.logaddexp`` computes its value.

The value of equal infinities is that infinity, as torch's.  Their
derivative is NaN in eager autograd, as torch's own and JAX's (for -inf);
the composite form takes their gap as 0 and gives 1 for ``a``, 0 for ``b``.
"""

from __future__ import annotations

from typing import Any

import torch


def logaddexp(a: Any, b: Any) -> Any:
    """``log(exp(a) + exp(b))`` of torch tensors (see the module docstring).

    >>> import torch
    >>> a = torch.tensor([0.0, 100.0], dtype=torch.float64, requires_grad=True)
    >>> (grad,) = torch.autograd.grad(logaddexp(a, -a).sum(), a, create_graph=True)
    >>> torch.autograd.grad(grad.sum(), a)[0].tolist()   # torch.logaddexp's: [1.0, nan]
    [1.0, 0.0]
    """
    if _traced_or_transformed():  # (forward mode asks no requires_grad: checked first)
        return _composite(a, b)
    if not (a.requires_grad or b.requires_grad) or not torch.is_grad_enabled():
        return torch.logaddexp(a, b)
    return _LogAddExp.apply(a, b)


def _traced_or_transformed() -> bool:
    return (
        torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()
        or int(torch.autograd.forward_ad._current_level) >= 0
    )


def _composite(a: Any, b: Any) -> Any:
    softplus = torch.nn.functional.softplus
    difference = a - b
    same_infinity = (a == b) & torch.isinf(a)  # their gap is 0, not NaN
    gap = torch.where(same_infinity, torch.zeros_like(difference), difference)
    # each side of the where is the whole smooth function: derivatives at ties are right
    return torch.where(gap >= 0, a + softplus(-gap), b + softplus(gap))


class _LogAddExp(torch.autograd.Function):
    """torch's forward; a backward of differentiable operations.  (The
    ``ctx`` form: ``setup_context`` with a vmap rule costs 45 us a call, this
    12 us; transforms take :func:`_composite` anyway.)"""

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        ctx.save_for_backward(a, b)
        return torch.logaddexp(a, b)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        grad_a = grad * torch.sigmoid(a - b)
        return _summed_to(grad_a, a), _summed_to(grad - grad_a, b)


def _summed_to(grad: Any, like: Any) -> Any:
    """``grad`` summed over the axes along which ``like`` was broadcast."""
    return grad if grad.shape == like.shape else grad.sum_to_size(like.shape)
