"""How many ATen operations one forward+backward dispatches, per loss, on a
training-sized torch batch (32 x 10, float32, default reduction): on a GPU
each is a kernel launch, on a CPU each costs dispatch time.

The budgets are today's counts, so any change that adds operations fails
here; lower them when an improvement lands.  The native torch.nn.functional
count is given beside each for comparison.  Issue 10's bound, at most twice
the native count or at most the count of the formula written by hand in
torch, is asserted by ``test_at_most_twice_native_or_the_handwritten_formula``
against expressions counted live.  Counts are taken after one warm-up call
(the torch lowering caches its constants), so they are a training step's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional
from torch.utils._python_dispatch import TorchDispatchMode

import losskit
from losskit import kernels
from losskit.spec import DOMAINS, SPECS, LossSpec

# loss (Keras name): (losskit's budget, the torch.nn.functional count or None)
BUDGETS: dict[str, tuple[int, int | None]] = {
    "mean_squared_error": (4, 4),
    "mean_absolute_error": (9, 9),
    "mean_absolute_percentage_error": (16, None),
    "mean_squared_logarithmic_error": (22, None),
    "cosine_similarity": (42, 34),
    "huber_loss": (4, 4),
    "log_cosh": (13, None),
    "dice": (22, None),
    "tversky": (35, None),
    "hinge": (22, None),
    "squared_hinge": (26, None),
    "categorical_hinge": (32, None),
    "kl_divergence": (29, 13),
    "poisson": (13, 13),
    "binary_crossentropy": (32, 4),
    "categorical_crossentropy": (36, 16),
    "sparse_categorical_crossentropy": (33, 10),
    "binary_focal_crossentropy": (58, None),
    "categorical_focal_crossentropy": (51, None),
    "categorical_generalized_cross_entropy": (26, None),
    "ctc": (413, 18),  # at (4, 6, 5); torch's count is its fused CPU kernel's
    "circle": (168, None),
}


# Losses whose inputs are not (32, 10): CTC's logits are (batch, time, classes)
# and its count grows with time (one recursion step per time step).
SHAPES: dict[str, tuple[int, ...]] = {"ctc": (4, 6, 5)}


class _CountOperations(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.operations: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.operations.append(str(func))
        return func(*args, **(kwargs or {}))


def _operations(spec: LossSpec) -> list[str]:
    shape = SHAPES.get(spec.keras_name, (32, 10))
    y_true, y_pred = DOMAINS[spec.input_domain({})](np.random.default_rng(0), shape)
    labels = spec.input_domain({}).startswith("sparse")
    t = torch.from_numpy(y_true if labels else y_true.astype("float32"))
    p = torch.from_numpy(y_pred.astype("float32")).requires_grad_()
    return _count(spec.cls(), t, p)


def _count(loss: Any, t: Any, p: Any) -> list[str]:
    """The ATen operations of ``loss(t, p).backward()`` in a steady state:
    after one call, which may build and cache constants."""
    loss(t, p).backward()
    p.grad = None
    with _CountOperations() as counter:
        loss(t, p).backward()
    return counter.operations


def test_every_loss_has_a_budget() -> None:
    assert set(BUDGETS) == {spec.keras_name for spec in SPECS}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.keras_name)
def test_forward_backward_stays_within_its_operation_budget(spec: LossSpec) -> None:
    operations = _operations(spec)
    budget, native = BUDGETS[spec.keras_name]
    assert len(operations) <= budget, (
        f"{spec.keras_name}: {len(operations)} ATen operations (budget {budget}, "
        f"torch.nn.functional: {native}): {operations}"
    )
    assert len(operations) == len(_operations(spec))  # deterministic


def test_small_batches_take_no_fused_cpu_kernel() -> None:
    # the counts above are the torch lowering's (or the reference's), not a
    # Numba kernel's, which would dispatch almost nothing on the CPU
    t, p = torch.zeros(32, 10), torch.ones(32, 10, requires_grad=True)
    assert kernels.fused_call(losskit.MeanSquaredError(), t, p, None, None) is None


# Issue 10's bound: at most twice the count of the torch.nn.functional
# equivalent, or at most the count of the loss's formula written by hand in
# torch with the same operations as the reference (maximum/minimum for
# Keras's clips, whose gradient at a bound is 1/2; logaddexp for softplus).
EPS = 1e-7


def _clip(x: Any, low: float, high: float) -> Any:
    return torch.minimum(torch.maximum(x, torch.tensor(low)), torch.tensor(high))


def _normalized(x: Any) -> Any:
    square_sum = (x * x).sum(-1, keepdim=True)
    return x / torch.sqrt(torch.maximum(square_sum, torch.tensor(EPS * EPS)))


def _hinge_margin(t: Any, p: Any) -> Any:
    signs = torch.where(((t == 0) | (t == 1)).all(), 2 * t - 1, t)
    return torch.maximum(1 - signs * p, torch.tensor(0.0))


def _log_probabilities(p: Any) -> Any:
    return torch.log(_clip(p / p.sum(-1, keepdim=True), EPS, 1 - EPS))


NATIVE: dict[str, Callable[[Any, Any], Any]] = {
    "mean_squared_error": lambda t, p: functional.mse_loss(p, t),
    "mean_absolute_error": lambda t, p: functional.l1_loss(p, t),
    "huber_loss": lambda t, p: functional.huber_loss(p, t),
    "cosine_similarity": lambda t, p: -functional.cosine_similarity(p, t, dim=-1).mean(),
    "kl_divergence": lambda t, p: functional.kl_div(torch.log(p), t, reduction="batchmean"),
    "poisson": lambda t, p: functional.poisson_nll_loss(p, t, log_input=False, eps=EPS),
    "binary_crossentropy": lambda t, p: functional.binary_cross_entropy(p, t),
    "categorical_crossentropy": lambda t, p: functional.cross_entropy(torch.log(p), t),
    "sparse_categorical_crossentropy": lambda t, p: functional.cross_entropy(
        torch.log(p), t.long()
    ),
}
HANDWRITTEN: dict[str, Callable[[Any, Any], Any]] = {
    "mean_absolute_percentage_error": lambda t, p: (
        100 * ((t - p) / torch.maximum(t.abs(), torch.tensor(EPS))).abs().mean()
    ),
    "mean_squared_logarithmic_error": lambda t, p: (
        (
            torch.log(torch.maximum(p, torch.tensor(EPS)) + 1)
            - torch.log(torch.maximum(t, torch.tensor(EPS)) + 1)
        )
        .square()
        .mean()
    ),
    "cosine_similarity": lambda t, p: -(_normalized(t) * _normalized(p)).sum(-1).mean(),
    "log_cosh": lambda t, p: (
        (p - t) + torch.logaddexp(-2 * (p - t), torch.zeros_like(p)) - math.log(2)
    ).mean(),
    "hinge": lambda t, p: _hinge_margin(t, p).mean(),
    "squared_hinge": lambda t, p: _hinge_margin(t, p).square().mean(),
    "categorical_hinge": lambda t, p: torch.maximum(
        ((1 - t) * p).amax(-1) - (t * p).sum(-1) + 1, torch.tensor(0.0)
    ).mean(),
    "dice": lambda t, p: 1 - 2 * (t * p).sum() / (t.sum() + p.sum() + EPS),
    "tversky": lambda t, p: (
        1
        - (t * p).sum()
        / ((t * p).sum() + 0.5 * ((1 - t) * p).sum() + 0.5 * (t * (1 - p)).sum() + EPS)
    ),
    "kl_divergence": lambda t, p: (
        (_clip(t, EPS, 1) * torch.log(_clip(t, EPS, 1) / _clip(p, EPS, 1))).sum(-1).mean()
    ),
    "binary_crossentropy": lambda t, p: (
        -(
            t * torch.log(_clip(p, EPS, 1 - EPS)) + (1 - t) * torch.log(1 - _clip(p, EPS, 1 - EPS))
        ).mean()
    ),
    "categorical_crossentropy": lambda t, p: -(t * _log_probabilities(p)).sum(-1).mean(),
    "sparse_categorical_crossentropy": lambda t, p: (
        -_log_probabilities(p).gather(-1, t.long()[:, None]).mean()
    ),
}


@pytest.mark.parametrize(
    "spec",
    [s for s in SPECS if s.keras_name in NATIVE.keys() | HANDWRITTEN.keys()],
    ids=lambda s: s.keras_name,
)
def test_at_most_twice_native_or_the_handwritten_formula(spec: LossSpec) -> None:
    name = spec.keras_name
    y_true, y_pred = DOMAINS[spec.input_domain({})](np.random.default_rng(0), (32, 10))
    labels = spec.input_domain({}).startswith("sparse")
    t = torch.from_numpy(y_true if labels else y_true.astype("float32"))
    p = torch.from_numpy(y_pred.astype("float32")).requires_grad_()
    ours = len(_count(spec.cls(), t, p))
    bounds = []
    if name in NATIVE:
        bounds.append(2 * len(_count(NATIVE[name], t, p)))
    if name in HANDWRITTEN:
        bounds.append(len(_count(HANDWRITTEN[name], t, p)))
    assert ours <= max(bounds), f"{name}: {ours} ATen operations, bounds {bounds}"
