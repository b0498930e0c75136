"""The fast path steps aside for every dtype, layout and transform it does not
support: the call gives the reference's answer (never a crash, never another
number).  Inputs are above the fast-path threshold so the real dispatch runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import losskit
from losskit import kernels

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")

ROWS, FEATURES = 4096, 9  # above kernels.MIN_ELEMENTS


def _pair(dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return (
        rng.uniform(0.05, 0.95, (ROWS, FEATURES)).astype(dtype),
        rng.uniform(0.05, 0.95, (ROWS, FEATURES)).astype(dtype),
    )


def _reference(loss: losskit.Loss, *args: Any) -> Any:
    with losskit.prefer_backend("reference"):
        return loss(*args)


LOSSES = [losskit.MeanSquaredError, losskit.BinaryCrossentropy, losskit.CategoricalCrossentropy]


@pytest.mark.parametrize("make", LOSSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_tensors_take_the_reference(make: Any, dtype: torch.dtype) -> None:
    t, p = _pair()
    y_true, y_pred = torch.from_numpy(t).to(dtype), torch.from_numpy(p).to(dtype)
    loss = make(dtype=str(dtype)[6:])
    assert kernels.fused_call(loss, y_true, y_pred, None, None) is None
    torch.testing.assert_close(loss(y_true, y_pred), _reference(loss, y_true, y_pred))
    # a float32 class with a bfloat16 y_true: cast, never a NumPy conversion error
    float_loss = make()
    value = float_loss(y_true, torch.from_numpy(p))
    expected = _reference(float_loss, y_true.float(), torch.from_numpy(p))
    torch.testing.assert_close(value, expected)


LAYOUTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "neg_bit": lambda x: torch.complex(x, torch.zeros_like(x)).conj().imag,
    "conj_bit": lambda x: torch.complex(x, torch.zeros_like(x)).conj().real,
    "transposed": lambda x: x.t().contiguous().t(),
    "parameter": lambda x: torch.nn.Parameter(x),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_unusual_tensors_give_the_reference_result(layout: str) -> None:
    t, p = _pair()
    y_pred = LAYOUTS[layout](torch.from_numpy(p))
    y_true = LAYOUTS[layout](torch.from_numpy(t)).detach()
    loss = losskit.MeanSquaredError()
    value = loss(y_true, y_pred)
    expected = _reference(loss, y_true.detach().clone(), y_pred.detach().clone())
    torch.testing.assert_close(value.detach(), expected)


def test_neg_bit_tensor_is_not_viewed_by_numpy() -> None:
    t, p = _pair()
    y_pred = torch.complex(torch.from_numpy(p), torch.zeros(ROWS, FEATURES)).conj().imag
    assert y_pred.is_neg()
    assert kernels.fused_call(losskit.MeanSquaredError(), t, y_pred, None, None) is None


def test_meta_tensors_take_the_reference() -> None:
    y_true = torch.empty(ROWS, FEATURES, device="meta")
    y_pred = torch.empty(ROWS, FEATURES, device="meta")
    value = losskit.MeanSquaredError()(y_true, y_pred)
    assert value.device.type == "meta"
    assert value.shape == ()


@pytest.mark.parametrize("make", LOSSES, ids=lambda c: c.__name__)
def test_torch_func_grad_vmap_and_jvp(make: Any) -> None:
    t, p = _pair("float64")
    y_true, y_pred = torch.from_numpy(t), torch.from_numpy(p)
    loss = make(dtype="float64")

    def value(x: torch.Tensor) -> torch.Tensor:
        return loss(y_true, x)

    expected = y_pred.clone().requires_grad_()
    _reference(loss, y_true, expected).backward()
    assert expected.grad is not None
    torch.testing.assert_close(torch.func.grad(value)(y_pred), expected.grad)
    batched = torch.vmap(value)(torch.stack([y_pred, y_pred]))
    torch.testing.assert_close(batched, torch.stack([value(y_pred)] * 2))
    tangent = torch.ones_like(y_pred)
    _, derivative = torch.func.jvp(value, (y_pred,), (tangent,))
    torch.testing.assert_close(derivative, (expected.grad * tangent).sum())


@pytest.mark.parametrize("make", [*LOSSES, losskit.Dice], ids=lambda c: c.__name__)
def test_double_backward_recomputes_through_the_reference(make: Any) -> None:
    t, p = _pair("float64")
    loss = make(dtype="float64")
    results = []
    for preference in ("fast", "reference"):
        y_pred = torch.from_numpy(p.copy()).requires_grad_()
        with losskit.prefer_backend(preference):
            value = loss(torch.from_numpy(t), y_pred)
        (gradient,) = torch.autograd.grad(value, y_pred, create_graph=True)
        (curvature,) = torch.autograd.grad((gradient**2).sum(), y_pred)
        results.append((gradient.detach(), curvature))
    (fast_gradient, fast_curvature), (gradient, curvature) = results
    torch.testing.assert_close(fast_gradient, gradient)
    torch.testing.assert_close(fast_curvature, curvature)


def test_big_endian_arrays_give_the_reference_result() -> None:
    t, p = _pair()
    y_true, y_pred = t.astype(">f4"), p.astype(">f4")
    loss = losskit.MeanSquaredError()
    np.testing.assert_allclose(loss(y_true, y_pred), _reference(loss, t, p), rtol=1e-6)


def test_memmap_inputs_take_the_fast_path(tmp_path: Any) -> None:
    t, p = _pair()
    arrays = []
    for name, values in (("t", t), ("p", p)):
        mapped = np.memmap(tmp_path / name, dtype="float32", mode="w+", shape=values.shape)
        mapped[:] = values
        arrays.append(mapped)
    loss = losskit.MeanSquaredError()
    assert kernels.fused_call(loss, *arrays, None, None) is not None
    value = loss(*arrays)
    assert type(value) is np.ndarray
    np.testing.assert_allclose(value, _reference(loss, t, p), rtol=1e-6)


def test_masked_arrays_are_not_read_by_the_kernel() -> None:
    t, p = _pair()
    masked = np.ma.masked_array(p, mask=np.zeros_like(p, dtype=bool))
    assert kernels.fused_call(losskit.MeanSquaredError(), t, masked, None, None) is None
