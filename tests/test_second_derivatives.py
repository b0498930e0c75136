"""Second derivatives on torch equal JAX's (whose ``logaddexp`` and softplus
have stable derivatives), on every path: double backward, ``torch.func``
Hessian-vector products (forward over reverse) and ``torch.compile``.

torch's own ``logaddexp`` has a NaN second derivative once its arguments are
88 (float32) or 709 (float64) apart: every CTC Hessian was NaN, a Circle
batch with a sample without positives was NaN throughout, and the softplus of
large logits made LogCosh's and the binary crossentropies' Hessians NaN on
the reference path (0 on the lowering): see ``losskit._torch_logaddexp``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.func import grad, jvp

import losskit


def jax_hvp(loss: Any, y_true: np.ndarray, y_pred: np.ndarray, v: np.ndarray) -> np.ndarray:
    def scalar(p: Any) -> Any:
        return jnp.sum(loss(jnp.asarray(y_true), p))

    _, tangent = jax.jvp(jax.grad(scalar), (jnp.asarray(y_pred),), (jnp.asarray(v),))
    return np.asarray(tangent)


def torch_hvps(loss: Any, y_true: np.ndarray, y_pred: np.ndarray, v: np.ndarray) -> dict:
    """The Hessian-vector product by double backward and by torch.func."""
    t, direction = torch.as_tensor(y_true), torch.as_tensor(v)

    def scalar(p: Any) -> Any:
        return loss(t, p).sum()

    p = torch.tensor(y_pred, requires_grad=True)
    (first,) = torch.autograd.grad(scalar(p), p, create_graph=True)
    (double_backward,) = torch.autograd.grad((first * direction).sum(), p)
    _, forward_over_reverse = jvp(grad(scalar), (torch.tensor(y_pred),), (direction,))
    return {"double backward": double_backward, "jvp(grad)": forward_over_reverse}


def assert_hvps_match(loss: Any, y_true: np.ndarray, y_pred: np.ndarray) -> None:
    v = np.random.default_rng(1).normal(size=y_pred.shape)
    want = jax_hvp(loss, y_true, y_pred, v)
    assert np.isfinite(want).all()
    for path in ("fast", "reference"):
        with losskit.prefer_backend(path):
            for how, found in torch_hvps(loss, y_true, y_pred, v).items():
                np.testing.assert_allclose(
                    found.numpy(), want, rtol=1e-9, atol=1e-12, err_msg=f"{path}, {how}"
                )


def test_ctc_hessian() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 6, 4))
    labels = np.array([[1, 2, 0], [3, 3, 1], [2, 0, 0]])  # padding, a repeat
    assert_hvps_match(losskit.CTC(dtype="float64"), labels, logits)


@pytest.mark.parametrize("labels", [[0, 0, 1, 1], [0, 0, 1, 2]], ids=["pairs", "a singleton"])
def test_circle_hessian(labels: list[int]) -> None:
    """A class seen once in the batch has no positive: softplus(-inf) there."""
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(4, 3))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    assert_hvps_match(losskit.Circle(gamma=10.0, dtype="float64"), np.array(labels), embeddings)


@pytest.mark.parametrize(
    "loss",
    [
        losskit.LogCosh(dtype="float64"),
        losskit.BinaryCrossentropy(from_logits=True, dtype="float64"),
        losskit.BinaryFocalCrossentropy(from_logits=True, dtype="float64"),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_softplus_hessian_of_saturated_inputs(loss: Any) -> None:
    """Errors and logits far beyond 709 (float64), a tie at 0, and ordinary
    values: the curvature is 0 where saturated and exact at 0."""
    y_pred = np.array([[800.0, -3.0, 0.0], [1.0, -900.0, 0.5]])
    y_true = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.5]])
    assert_hvps_match(loss, y_true, y_pred)


def test_forward_over_forward_hessian() -> None:
    """jacfwd(jacfwd): forward mode alone, where no tensor requires grad, was
    torch.logaddexp's NaN at every entry."""
    from torch.func import jacfwd

    loss = losskit.BinaryCrossentropy(from_logits=True, dtype="float64")
    y_true = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    y_pred = np.array([[800.0, -3.0, 0.0], [1.0, -900.0, 0.5]])
    want = jax.hessian(lambda p: loss(jnp.asarray(y_true), p))(jnp.asarray(y_pred))
    for path in ("fast", "reference"):
        with losskit.prefer_backend(path):
            found = jacfwd(jacfwd(lambda p: loss(torch.tensor(y_true), p)))(torch.tensor(y_pred))
        np.testing.assert_allclose(found.numpy(), np.asarray(want), rtol=1e-9, atol=1e-12)


def test_saturated_hessian_with_a_mask_equals_without() -> None:
    """A mask takes the reference path: its Hessian was NaN, the lowering's 0."""
    loss = losskit.LogCosh()
    y_pred = torch.tensor([[100.0, -3.0], [1.0, -120.0]])
    y_true = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    found = []
    for mask in (None, torch.tensor([True, True])):
        p = y_pred.clone().requires_grad_(True)
        (first,) = torch.autograd.grad(loss(y_true, p, mask=mask), p, create_graph=True)
        found.append(torch.autograd.grad(first.sum(), p)[0])
    torch.testing.assert_close(found[0], found[1])
    assert float(found[1][0, 0]) == 0.0


@pytest.mark.parametrize("rows", [2, 1 << 15])
def test_mse_forward_over_reverse(rows: int) -> None:
    """torch's mse_loss (mean) raised "ZeroTensors are immutable" under
    jvp(grad): its lowering steps aside under transforms."""
    rng = np.random.default_rng(0)
    y_true, y_pred = (
        torch.tensor(rng.normal(size=(rows, 2))),
        torch.tensor(rng.normal(size=(rows, 2))),
    )
    mse = losskit.MeanSquaredError(dtype="float64")
    v = torch.ones_like(y_pred)
    _, found = jvp(grad(lambda p: mse(y_true, p)), (y_pred,), (v,))
    torch.testing.assert_close(found, 2.0 * v / v.numel())


def test_compiled_value_and_gradient_equal_eager() -> None:
    """torch.compile takes the composite form of logaddexp (torch.compile has
    no double backward)."""
    loss = losskit.BinaryFocalCrossentropy(from_logits=True, dtype="float64")
    y_true = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    y_pred = torch.tensor([[800.0, -3.0, 0.0], [1.0, -900.0, 0.5]], dtype=torch.float64)
    found = []
    for call in (loss, torch.compile(loss, fullgraph=False)):
        p = y_pred.clone().requires_grad_(True)
        value = call(y_true, p)
        found.append((value.detach(), torch.autograd.grad(value, p)[0]))
    torch.testing.assert_close(found[0], found[1], rtol=1e-12, atol=1e-15)
