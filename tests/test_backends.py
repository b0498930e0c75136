"""Any array library: results stay in the library and on the device of
``y_pred``; JAX transformations, ``torch.compile`` and Dask laziness work;
dtypes follow Keras."""

from __future__ import annotations

import importlib
import importlib.util

import array_api_strict
import dask
import dask.array as da
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import losskit
from tests.backends import BACKENDS, Backend
from tests.cases import CASES, Case, case_inputs, keras_class_value

LOW_PRECISION_TOLERANCE = {"float16": 2e-2, "bfloat16": 1e-1}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_jax_jit_vmap_and_grad(case: Case) -> None:
    y_true, y_pred = case_inputs(case, (5, 4), seed=1)
    loss = case.losskit_loss(dtype="float64")
    t, p = jnp.asarray(y_true), jnp.asarray(y_pred)
    eager = loss(t, p)
    jitted = jax.jit(lambda a, b: loss(a, b))(t, p)
    np.testing.assert_allclose(jitted, eager, rtol=1e-12)
    grad = jax.jit(jax.grad(lambda b: loss(t, b)))(p)
    assert grad.shape == p.shape
    assert bool(jnp.all(jnp.isfinite(grad)))
    # vmap over a leading axis: one loss per group of samples.
    batched = jax.vmap(lambda a, b: loss(a, b))(t[None].repeat(3, 0), p[None].repeat(3, 0))
    np.testing.assert_allclose(batched, np.full(3, eager), rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_torch_compile_has_no_graph_breaks(case: Case) -> None:
    if importlib.util.find_spec("triton") is not None:
        # its test hook, which the dispatch consults once the module is loaded
        importlib.import_module("losskit.kernels.triton")
    torch._dynamo.reset()
    y_true, y_pred = case_inputs(case, (5, 4), seed=2)
    loss = case.losskit_loss(dtype="float64")
    t = torch.as_tensor(y_true)
    p = torch.tensor(y_pred, requires_grad=True)
    compiled = torch.compile(lambda a, b: loss(a, b), fullgraph=True, backend="eager")
    value = compiled(t, p)
    value.backward()
    eager_p = torch.tensor(y_pred, requires_grad=True)
    eager = loss(t, eager_p)
    eager.backward()
    torch.testing.assert_close(value, eager)
    assert p.grad is not None
    assert eager_p.grad is not None
    torch.testing.assert_close(p.grad, eager_p.grad)


def test_torch_compile_inductor_mse() -> None:
    torch._dynamo.reset()
    loss = losskit.MeanSquaredError()
    compiled = torch.compile(loss, fullgraph=True)
    t, p = torch.randn(8, 3), torch.randn(8, 3)
    torch.testing.assert_close(compiled(t, p), loss(t, p))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_dask_stays_lazy(case: Case) -> None:
    y_true, y_pred = case_inputs(case, (6, 4), seed=3)
    t = da.from_array(y_true, chunks=(3, 4) if y_true.ndim == 2 else 3)
    p = da.from_array(y_pred, chunks=(3, 4))
    weight = da.from_array(np.linspace(0.5, 1.5, 6), chunks=3)
    with dask.config.set(scheduler=_refuse_to_compute):
        result = case.losskit_loss(dtype="float64")(t, p, sample_weight=weight)
        per_sample = case.function(t, p, **case.kwargs)
    assert isinstance(result, da.Array)
    assert isinstance(per_sample, da.Array)
    expected = keras_class_value(case, y_true, y_pred, np.linspace(0.5, 1.5, 6))
    np.testing.assert_allclose(result.compute(), expected, rtol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "mean_with_sample_weight", None])
def test_dask_with_unknown_and_empty_chunks_stays_lazy(case: Case, reduction: str | None) -> None:
    # Boolean indexing leaves chunk sizes unknown (shape (nan, 4)); a chunk of
    # zero rows once broke Dask's own max (categorical hinge, softmax).
    y_true, y_pred = case_inputs(case, (9, 4), seed=4)
    keep = np.array([1, 1, 0, 1, 0, 0, 1, 1, 1], dtype=bool)
    weight = np.linspace(0.5, 1.5, 9)
    row_chunks = (3, 0, 6)
    t = da.from_array(y_true, chunks=(row_chunks, 4) if y_true.ndim == 2 else (row_chunks,))
    p = da.from_array(y_pred, chunks=(row_chunks, 4))
    selected = da.from_array(keep, chunks=(row_chunks,))
    w = da.from_array(weight, chunks=(row_chunks,))
    loss = case.losskit_loss(dtype="float64", reduction=reduction)
    with dask.config.set(scheduler=_refuse_to_compute):
        result = loss(t[selected], p[selected], sample_weight=w[selected])
    assert isinstance(result, da.Array)
    expected = loss(y_true[keep], y_pred[keep], sample_weight=weight[keep])
    np.testing.assert_allclose(result.compute(), expected, rtol=1e-12)


def _refuse_to_compute(*args: object, **kwargs: object) -> None:
    raise AssertionError("losskit computed a Dask graph eagerly")


def test_mixed_libraries_follow_y_pred(backend: Backend) -> None:
    y_true = np.array([[0.0, 1.0], [1.0, 1.0]])
    y_pred = backend.asarray(np.array([[0.5, 0.5], [1.0, 0.0]]))
    weight = [1.0, 3.0]
    result = losskit.MeanSquaredError()(y_true, y_pred, sample_weight=weight)
    assert type(result) is type(y_pred) or backend.name == "numpy"
    np.testing.assert_allclose(backend.to_numpy(result), (0.25 + 1.5) / 2)


def test_torch_labels_with_numpy_predictions() -> None:
    result = losskit.mean_absolute_error(torch.tensor([[1.0, 2.0]]), np.array([[0.0, 0.0]]))
    assert isinstance(result, np.ndarray)
    np.testing.assert_allclose(result, [1.5])


def test_results_stay_on_the_device_of_y_pred() -> None:
    device = array_api_strict.Device("device1")
    y_true = array_api_strict.asarray([[0.0, 1.0]], device=device)
    y_pred = array_api_strict.asarray([[1.0, 1.0]], device=device)
    for case in CASES:
        inputs = case_inputs(case, (3, 4), seed=0)
        t, p = (array_api_strict.asarray(a, device=device) for a in inputs)
        assert case.losskit_loss()(t, p, sample_weight=2.0).device == device
    assert losskit.huber(y_true, y_pred).device == device


def test_arrays_on_different_devices_are_rejected() -> None:
    y_true = array_api_strict.asarray([[0.0, 1.0]])
    y_pred = array_api_strict.asarray([[1.0, 1.0]], device=array_api_strict.Device("device1"))
    with pytest.raises(ValueError, match=r"`y_true` is on device .*CPU_DEVICE.* but `y_pred`"):
        losskit.mean_squared_error(y_true, y_pred)
    with pytest.raises(ValueError, match="`sample_weight` is on device"):
        losskit.MeanSquaredError()(
            array_api_strict.asarray([[0.0, 1.0]], device=y_pred.device),
            y_pred,
            sample_weight=y_true[0, ...],
        )


def test_torch_tensor_requiring_grad_cannot_become_numpy_labels() -> None:
    with pytest.raises(ValueError, match="Cannot convert `y_true`"):
        losskit.mean_squared_error(torch.ones(2, 2, requires_grad=True), np.ones((2, 2)))


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_function_keeps_y_pred_dtype(case: Case, backend: Backend) -> None:
    """Every function keeps ``y_pred``'s dtype, but the sparse crossentropy's
    of float16 and bfloat16, which is float32 as Keras's (a float32 one-hot)."""
    y_true, y_pred = case_inputs(case, (4, 3), seed=4)
    sparse = case.function is losskit.sparse_categorical_crossentropy
    for dtype in backend.dtypes:
        result = case.function(y_true, backend.asarray(y_pred, dtype), **case.kwargs)
        expected = "float32" if sparse and dtype in ("float16", "bfloat16") else dtype
        assert str(result.dtype).endswith(expected), (dtype, result.dtype)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_class_dtype_casts_inputs_and_matches_keras(case: Case, dtype: str) -> None:
    y_true, y_pred = case_inputs(case, (6, 5), seed=5)
    expected = keras_class_value(case, y_true, y_pred, dtype=dtype).astype("float64")
    reference = keras_class_value(case, y_true, y_pred, dtype="float64")
    if not np.isfinite(expected):
        # Keras's focal losses from logits take the sigmoid first: in bfloat16
        # it rounds to 1 past |x| ~ 5.5 and log(1 - 1) overflows.  losskit
        # (log-sigmoid) stays finite; it must then match the float64 oracle.
        expected = reference
    for library in (torch, jnp):
        result = case.losskit_loss(dtype=dtype)(library.asarray(y_true), library.asarray(y_pred))
        assert str(result.dtype).endswith(dtype)
        value = np.asarray(result.double() if library is torch else result.astype("float64"))
        tolerance = LOW_PRECISION_TOLERANCE.get(dtype, 1e-5 if dtype == "float32" else 1e-10)
        np.testing.assert_allclose(value, expected, rtol=tolerance, atol=tolerance)
        # losskit accumulates low precision in float32, so it is never less
        # accurate than Keras.
        assert abs(value - reference) <= abs(expected - reference) + 2 * tolerance * abs(reference)


def test_floatx_sets_the_default_class_dtype() -> None:
    losskit.set_floatx("float64")
    loss = losskit.MeanAbsoluteError()
    losskit.set_floatx("float32")
    assert loss.dtype == "float64"
    assert losskit.MeanAbsoluteError().dtype == "float32"
    result = loss(np.ones((2, 2), dtype="float32"), np.zeros((2, 2), dtype="float32"))
    assert result.dtype == np.float64


def test_class_casts_float64_inputs_to_float32_by_default() -> None:
    result = losskit.Huber()(np.ones((3, 2)), np.zeros((3, 2)))
    assert result.dtype == np.float32


def test_integer_and_list_predictions_become_floatx() -> None:
    assert losskit.mean_squared_error([[1, 2]], [[0, 1]]).dtype == np.float32
    assert losskit.mean_squared_error(np.array([[1, 2]]), np.array([[0, 1]])).dtype == np.float32
    losskit.set_floatx("float64")
    assert losskit.mean_squared_error([[1, 2]], [[0, 1]]).dtype == np.float64


def test_low_precision_sums_do_not_overflow() -> None:
    # 10^5 float16 losses of 1.0 sum to 10^5 > 65504 (float16's maximum).
    y_pred = np.ones((100_000, 1), dtype="float16")
    result = losskit.MeanAbsoluteError(dtype="float16", reduction="sum_over_batch_size")(
        np.zeros_like(y_pred), y_pred
    )
    assert result.dtype == np.float16
    assert float(result) == 1.0


def test_epsilon_is_read_at_call_time() -> None:
    y_true, y_pred = np.array([[0.0]]), np.array([[1.0]])
    losskit.set_epsilon(1e-3)
    np.testing.assert_allclose(losskit.mean_absolute_percentage_error(y_true, y_pred), [1e5])


def test_mixed_libraries_keep_the_shape() -> None:
    # torch.asarray flattens a JAX array; the conversion goes through DLPack.
    rng = np.random.default_rng(2)
    y_true, y_pred = rng.random((4, 3)), rng.random((4, 3))
    expected = np.mean((y_true - y_pred) ** 2)
    value = losskit.MeanSquaredError(dtype="float64")(jnp.asarray(y_true), torch.asarray(y_pred))
    assert isinstance(value, torch.Tensor)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match=r"y_true.shape=\(4, 3\), y_pred.shape=\(12,\)"):
        losskit.MeanSquaredError()(jnp.asarray(y_true), torch.asarray(y_pred.reshape(-1)))
    bfloat16 = losskit.MeanSquaredError()(jnp.asarray(y_true, dtype=jnp.bfloat16), torch.ones(4, 3))
    assert bfloat16.shape == ()


def test_eager_jax_calls_run_one_compiled_function_per_loss() -> None:
    # A built-in loss called eagerly on JAX arrays runs as one cached
    # jax.jit function (retraced per shape); the numbers are the eager ones.
    from losskit import losses as losses_module

    rng = np.random.default_rng(6)
    y_true, y_pred = rng.random((8, 3)), rng.random((8, 3))
    weight, mask = rng.random(8), rng.random(8) > 0.3
    loss = losskit.MeanAbsolutePercentageError(dtype="float64")
    value = loss(jnp.asarray(y_true), jnp.asarray(y_pred), jnp.asarray(weight))
    assert loss in losses_module._JAX_COMPILED
    expected = loss(y_true, y_pred, weight)  # NumPy: the eager reference
    np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-12)
    # a mask runs eagerly (XLA would compile the masked product as a select)
    masked = loss(jnp.asarray(y_true), jnp.asarray(y_pred), jnp.asarray(weight), mask)
    np.testing.assert_allclose(np.asarray(masked), loss(y_true, y_pred, weight, mask), rtol=1e-12)
    assert len(losses_module._JAX_COMPILED[loss]) == 1
    # epsilon is read at call time, also through the cache
    losskit.set_epsilon(10.0**-2)
    changed = loss(jnp.asarray(y_true * 0.0), jnp.asarray(y_pred))
    np.testing.assert_allclose(np.asarray(changed), loss(y_true * 0.0, y_pred), rtol=1e-12)
    # inside a user's jit the loss is traced as it is, not compiled again
    traced = jax.jit(lambda t, p: loss(t, p))(jnp.asarray(y_true), jnp.asarray(y_pred))
    np.testing.assert_allclose(np.asarray(traced), loss(y_true, y_pred), rtol=1e-12)


def test_custom_losses_are_not_compiled_behind_the_users_back() -> None:
    from losskit import losses as losses_module

    calls = []

    class Counting(losskit.Loss):
        def call(self, y_true: object, y_pred: object) -> object:
            calls.append(1)  # a Python side effect jit would run only once
            return losskit.mean_squared_error(y_true, y_pred)

    loss = Counting()
    for _ in range(3):
        loss(jnp.ones((2, 2)), jnp.zeros((2, 2)))
    assert len(calls) == 3
    assert loss not in losses_module._JAX_COMPILED


def test_array_api_compat_numpy_is_imported_on_first_use() -> None:
    """Importing array-api-compat's NumPy namespace takes about 75 ms (it
    touches NumPy's lazily imported submodules): ``import losskit`` leaves it
    to the first call that needs it, and that call gets it."""
    import subprocess
    import sys

    code = (
        "import sys, losskit\n"
        "print('compat.numpy' in ' '.join(sys.modules))\n"
        "print(losskit.mean_squared_error([[0.0, 1.0]], [[1.0, 1.0]]))\n"
        "print('array_api_compat.numpy' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split("\n")
    assert out[:3] == ["False", "[0.5]", "True"]
