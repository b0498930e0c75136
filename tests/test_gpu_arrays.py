"""Every loss on GPU arrays: CuPy, torch CUDA tensors and JAX arrays on a GPU.

The values must be Keras's (the oracle, float64), the result must stay in the
input's library and on its device, and torch's gradients on the GPU must be
Keras's.  Each library is skipped where it or a GPU is missing (so everywhere
in CI); the device session runs this file on a real GPU.  Torch CUDA float32
goes through the Triton kernels where they cover the loss and Triton is
installed; tests/test_triton.py checks those kernels in depth.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.cases import (
    CASES,
    STRUCTURED_CASES,
    Case,
    case_inputs,
    keras_class_gradient,
    keras_class_value,
)


@dataclass(frozen=True)
class GPULibrary:
    name: str
    available: bool
    make: Callable[[np.ndarray], Any]
    read: Callable[[Any], np.ndarray]
    on_gpu: Callable[[Any], bool]


def _cupy_available() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    import cupy

    try:
        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:  # no driver or no device: CuPy raises its own runtime errors
        return False


def _jax_gpu() -> Any:
    try:
        return jax.devices("gpu")[0]
    except RuntimeError:  # no GPU backend in this JAX
        return None


def _cupy_make(a: np.ndarray) -> Any:
    import cupy

    return cupy.asarray(a)


def _cupy_is(x: Any) -> bool:
    import cupy

    return isinstance(x, cupy.ndarray)


JAX_GPU = _jax_gpu()
LIBRARIES = [
    GPULibrary("cupy", _cupy_available(), _cupy_make, lambda x: x.get(), _cupy_is),
    GPULibrary(
        "torch-cuda",
        torch.cuda.is_available(),
        lambda a: torch.asarray(a, device="cuda"),
        lambda x: x.detach().cpu().numpy(),
        lambda x: isinstance(x, torch.Tensor) and x.is_cuda,
    ),
    GPULibrary(
        "jax-gpu",
        JAX_GPU is not None,
        lambda a: jax.device_put(jnp.asarray(a), JAX_GPU),
        np.asarray,
        lambda x: isinstance(x, jax.Array) and x.devices() == {JAX_GPU},
    ),
]
library_params = [
    pytest.param(lib, id=lib.name, marks=pytest.mark.skipif(not lib.available, reason="no GPU"))
    for lib in LIBRARIES
]
WEIGHTS = np.linspace(0.5, 1.5, 5)


@pytest.mark.parametrize("library", library_params)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", None])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_values_on_the_gpu_are_keras(case: Case, reduction: str | None, library: Any) -> None:
    y_true, y_pred = case_inputs(case, (5, 4), seed=11)
    loss = case.losskit_loss(reduction=reduction, dtype="float64")
    weights = library.make(WEIGHTS)
    result = loss(library.make(y_true), library.make(y_pred), sample_weight=weights)
    assert library.on_gpu(result), type(result)
    expected = keras_class_value(case, y_true, y_pred, WEIGHTS, reduction=reduction)
    np.testing.assert_allclose(library.read(result), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("library", library_params)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float32_on_the_gpu_is_numpy_s(case: Case, library: Any) -> None:
    y_true, y_pred = case_inputs(case, (64, 7), seed=12)
    loss = case.losskit_loss()
    t32 = y_true if y_true.dtype.kind in "iu" else y_true.astype("float32")
    result = loss(library.make(t32), library.make(y_pred.astype("float32")))
    assert library.on_gpu(result)
    value = library.read(result)
    assert value.dtype == np.float32
    on_cpu = loss(t32, y_pred.astype("float32"))
    np.testing.assert_allclose(value, on_cpu, rtol=2e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_torch_cuda_gradients_are_keras(case: Case) -> None:
    y_true, y_pred = case_inputs(case, (5, 4), seed=13)
    loss = case.losskit_loss(dtype="float64")
    p = torch.tensor(y_pred, device="cuda", requires_grad=True)
    weights = torch.asarray(WEIGHTS, device="cuda")
    loss(torch.asarray(y_true, device="cuda"), p, sample_weight=weights).backward()
    assert p.grad is not None
    assert p.grad.is_cuda
    expected = keras_class_gradient(case, y_true, y_pred, WEIGHTS)
    np.testing.assert_allclose(p.grad.cpu().numpy(), expected, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("library", library_params)
@pytest.mark.parametrize("case", STRUCTURED_CASES, ids=lambda c: c.id)
def test_structured_losses_on_the_gpu(case: Case, library: Any) -> None:
    assert case.shape is not None
    y_true, y_pred = case_inputs(case, case.shape, seed=14)
    loss = case.losskit_loss(dtype="float64")
    result = loss(library.make(y_true), library.make(y_pred))
    assert library.on_gpu(result)
    np.testing.assert_allclose(library.read(result), loss(y_true, y_pred), rtol=1e-9)


@pytest.mark.skipif(JAX_GPU is None, reason="no JAX GPU")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_jax_jit_on_the_gpu(case: Case) -> None:
    y_true, y_pred = case_inputs(case, (5, 4), seed=15)
    loss = case.losskit_loss(dtype="float64")
    t = jax.device_put(jnp.asarray(y_true), JAX_GPU)
    p = jax.device_put(jnp.asarray(y_pred), JAX_GPU)
    value, grad = jax.jit(jax.value_and_grad(lambda b: loss(t, b)))(p)
    assert grad.devices() == {JAX_GPU}
    np.testing.assert_allclose(value, keras_class_value(case, y_true, y_pred), rtol=1e-9)
    expected = keras_class_gradient(case, y_true, y_pred)
    np.testing.assert_allclose(grad, expected, rtol=1e-8, atol=1e-12)
