"""The fused fast paths equal the reference implementation (values and
gradients, every reduction and kind of weight), are taken when the input
allows, and fall back otherwise."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losskit
from losskit import kernels
from tests.cases import CASES, Case, case_inputs

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")

REDUCING = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight"]
TOLERANCE = {"float32": 3e-5, "float64": 1e-11}


@pytest.fixture(autouse=True)
def _small_inputs_use_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "MIN_ELEMENTS", 0)


def _fast_cases() -> list[Case]:
    return [
        c
        for c in CASES
        if not (c.loss == "SparseCategoricalCrossentropy" and "ignore_class" in c.kwargs)
    ]


def _labels(case: Case) -> bool:
    """Whether the case's targets are integer labels (no class axis)."""
    return case.spec.input_domain(case.kwargs).startswith("sparse")


@st.composite
def problems(draw: st.DrawFn) -> tuple[Case, np.ndarray, np.ndarray, Any, str, str]:
    case = draw(st.sampled_from(_fast_cases()))
    rank = draw(st.integers(2, 3))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank)))
    if "Categorical" in case.loss or case.loss in ("CosineSimilarity", "KLDivergence"):
        shape = (*shape[:-1], max(shape[-1], 2))
    y_true, y_pred = case_inputs(case, shape, draw(st.integers(0, 2**16)))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    if not _labels(case):
        y_true = y_true.astype(dtype)
    loss_shape = shape[:-1]
    weight: Any = None
    if case.loss not in ("Dice", "Tversky"):
        kind = draw(st.sampled_from(["none", "scalar", "per_sample", "column"]))
        if kind == "scalar":
            weight = draw(st.floats(0.0, 3.0))
        elif kind == "per_sample":
            weight = draw(hnp.arrays(np.float64, loss_shape, elements=st.floats(0.0, 3.0)))
        elif kind == "column":
            weight = draw(hnp.arrays(np.float32, (*loss_shape, 1), elements=st.floats(0.0, 3.0)))
    return case, y_true, y_pred.astype(dtype), weight, dtype, draw(st.sampled_from(REDUCING))


def _reference(loss: losskit.Loss, *args: Any) -> Any:
    with losskit.prefer_backend("reference"):
        return loss(*args)


@given(problems())
def test_numpy_fast_path_equals_reference(problem: tuple[Any, ...]) -> None:
    case, y_true, y_pred, weight, dtype, reduction = problem
    loss = case.losskit_loss(reduction=reduction, dtype=dtype)
    assert kernels.fused_call(loss, y_true, y_pred, weight, None) is not None
    fast = loss(y_true, y_pred, weight)
    reference = _reference(loss, y_true, y_pred, weight)
    assert fast.dtype == reference.dtype
    assert fast.shape == reference.shape
    np.testing.assert_allclose(fast, reference, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


@given(problems())
def test_torch_fast_path_value_and_gradient_equal_reference(problem: tuple[Any, ...]) -> None:
    case, y_true, y_pred, weight, dtype, reduction = problem
    loss = case.losskit_loss(reduction=reduction, dtype=dtype)
    torch_weight = weight if weight is None or np.isscalar(weight) else torch.as_tensor(weight)
    results = []
    for preference in ("fast", "reference"):
        prediction = torch.tensor(y_pred, requires_grad=True)
        with losskit.prefer_backend(preference):
            value = loss(torch.as_tensor(y_true), prediction, torch_weight)
        (3.0 * value).backward()  # an upstream gradient other than 1
        assert prediction.grad is not None
        results.append((value.detach(), prediction.grad))
    (fast, fast_grad), (reference, reference_grad) = results
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(fast, reference, rtol=tolerance, atol=tolerance)
    scale = float(reference_grad.abs().max()) or 1.0
    torch.testing.assert_close(fast_grad, reference_grad, rtol=tolerance, atol=tolerance * scale)


def test_backward_adopts_the_gradient_without_a_copy() -> None:
    prediction = torch.randn(64, 8, requires_grad=True)
    value = losskit.MeanSquaredError()(torch.randn(64, 8), prediction)
    value.backward()
    assert prediction.grad is not None
    assert prediction.grad.is_contiguous()


# MAE below: MSE and Huber on torch CPU tensors this small go to torch's own
# fused loss first (_torch_native.takes_first), not to the kernels.


def test_second_backward_through_a_fused_loss_is_a_clear_error() -> None:
    prediction = torch.randn(64, 8, requires_grad=True)
    value = losskit.MeanAbsoluteError()(torch.randn(64, 8), prediction)
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="differentiated twice"):
        value.backward()


@pytest.mark.parametrize("where", ["first", "after_the_prefix"])
def test_hinge_with_non_binary_labels_takes_the_second_pass(where: str) -> None:
    # A non-binary label among the first 4096 is seen before the gradient
    # pass; a later one only by the converting pass, which then reruns.
    rows = 4 if where == "first" else 2048
    y_true = np.tile(np.array([1.0, 0.0, 0.0, 1.0], dtype="float32"), (rows, 1))
    y_true[0 if where == "first" else -1, 0] = -1.0
    y_pred = np.linspace(-2, 2, 4 * rows, dtype="float32").reshape(rows, 4)
    loss = losskit.Hinge()
    prediction = torch.tensor(y_pred, requires_grad=True)
    loss(torch.as_tensor(y_true), prediction).backward()
    expected = torch.tensor(y_pred, requires_grad=True)
    with losskit.prefer_backend("reference"):
        loss(torch.as_tensor(y_true), expected).backward()
    torch.testing.assert_close(prediction.grad, expected.grad)
    np.testing.assert_allclose(loss(y_true, y_pred), _reference(loss, y_true, y_pred), rtol=1e-6)


FALLBACKS = {
    "mask": lambda t, p: (losskit.MeanSquaredError(), t, p, None, np.ones(t.shape[:-1], bool)),
    "reduction_none": lambda t, p: (losskit.MeanSquaredError(reduction=None), t, p, None, None),
    "ignore_class": lambda t, p: (
        losskit.SparseCategoricalCrossentropy(ignore_class=0),
        np.zeros(t.shape[:-1]),
        p,
        None,
        None,
    ),
    "dtype_mismatch": lambda t, p: (losskit.MeanSquaredError(dtype="float64"), t, p, None, None),
    "non_contiguous": lambda t, p: (losskit.MeanSquaredError(), t.T, p.T, None, None),
    "broadcast_weights": lambda t, p: (
        losskit.MeanSquaredError(),
        t[:, None],
        p[:, None],
        np.ones((1, 1)),
        None,
    ),
    "dice_axis": lambda t, p: (losskit.Dice(axis=(1,)), t, p, None, None),
    "dice_weights": lambda t, p: (losskit.Dice(), t, p, np.ones(t.shape[0]), None),
    "cce_axis": lambda t, p: (losskit.CategoricalCrossentropy(axis=0), t, p, None, None),
    "rank_one": lambda t, p: (losskit.MeanSquaredError(), t[0], p[0], None, None),
    "jax": lambda t, p: (
        losskit.MeanSquaredError(),
        t,
        __import__("jax.numpy").numpy.asarray(p),
        None,
        None,
    ),
}


@pytest.mark.parametrize("name", list(FALLBACKS))
def test_fallbacks_give_the_reference_result(name: str) -> None:
    rng = np.random.default_rng(0)
    t, p = rng.random((8, 4), dtype="float32"), rng.random((8, 4), dtype="float32")
    loss, y_true, y_pred, weight, mask = FALLBACKS[name](t, p)
    assert kernels.fused_call(loss, y_true, y_pred, weight, mask) is None
    np.testing.assert_allclose(
        np.asarray(loss(y_true, y_pred, weight, mask)),
        np.asarray(_reference(loss, y_true, y_pred, weight, mask)),
        rtol=1e-6,
    )


def test_preference_turns_the_fast_path_off() -> None:
    t, p = np.zeros((8, 4), "float32"), np.ones((8, 4), "float32")
    loss = losskit.MeanSquaredError()
    assert kernels.fused_call(loss, t, p, None, None) is not None
    with losskit.prefer_backend("reference"):
        assert kernels.fused_call(loss, t, p, None, None) is None


def test_small_inputs_use_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "MIN_ELEMENTS", 1 << 15)
    t, p = np.zeros((8, 4), "float32"), np.ones((8, 4), "float32")
    assert kernels.fused_call(losskit.MeanSquaredError(), t, p, None, None) is None


def test_float32_sums_are_at_least_as_accurate_as_the_reference() -> None:
    rng = np.random.default_rng(1)
    y_true = rng.normal(size=(1 << 16, 64)).astype("float32")
    y_pred = (y_true + rng.normal(size=y_true.shape).astype("float32") * 1e-3).astype("float32")
    exact = np.mean((y_true.astype(np.float64) - y_pred.astype(np.float64)) ** 2)
    loss = losskit.MeanSquaredError(reduction="sum")
    fast = float(loss(y_true, y_pred))
    reference = float(_reference(loss, y_true, y_pred))
    assert abs(fast - exact * y_true.size) <= abs(reference - exact * y_true.size)


def test_calls_from_several_threads_are_safe() -> None:
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    t, p = rng.random((256, 64), dtype="float32"), rng.random((256, 64), dtype="float32")
    loss = losskit.MeanSquaredError()
    expected = float(loss(t, p))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: float(loss(t, p)), range(16)))
    assert results == [expected] * 16


@pytest.mark.parametrize("case", _fast_cases(), ids=lambda c: c.id)
@pytest.mark.parametrize("features", [1, 3])
def test_long_inputs_cut_into_blocks_equal_reference(case: Case, features: int) -> None:
    # More elements than one kernel block, and not a multiple of it.
    # One-feature distributions are exactly 1, a tie of KL's clip (whose
    # gradient the libraries split differently); classes need two features.
    needs_two = ("Categorical", "Cosine", "KLDivergence")
    features = max(features, 2) if any(n in case.loss for n in needs_two) else features
    y_true, y_pred = case_inputs(case, (3001, features), seed=9)
    for weight in (None, 0.5):
        loss = case.losskit_loss(reduction="sum", dtype="float64")
        prediction = torch.tensor(y_pred, requires_grad=True)
        fast = loss(torch.as_tensor(y_true), prediction, weight)
        fast.backward()
        expected = torch.tensor(y_pred, requires_grad=True)
        reference = _reference(loss, torch.as_tensor(y_true), expected, weight)
        reference.backward()
        torch.testing.assert_close(fast.detach(), reference.detach(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(prediction.grad, expected.grad, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(loss(y_true, y_pred, weight), reference.detach(), rtol=1e-10)


@pytest.mark.parametrize("case", _fast_cases(), ids=lambda c: c.id)
@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_degenerate_predictions_equal_reference(case: Case, fill: float) -> None:
    # Zero rows divide by zero in cosine, MAPE and crossentropy normalisation:
    # the kernels follow NumPy's error model (inf or NaN), never raise, and a
    # result that is not finite is handed to the reference.
    y_true, y_pred = case_inputs(case, (64, 4), seed=5)
    y_pred = np.full_like(y_pred, fill, dtype="float64")
    loss = case.losskit_loss(reduction="sum", dtype="float64")
    with np.errstate(all="ignore"):
        taken = kernels.fused_call(loss, y_true, y_pred, None, None) is not None
        assert taken == bool(np.isfinite(_reference(loss, y_true, y_pred)))
    results = []
    for preference in ("fast", "reference"):
        prediction = torch.tensor(y_pred, requires_grad=True)
        with losskit.prefer_backend(preference), np.errstate(all="ignore"):
            value = loss(torch.as_tensor(y_true), prediction)
        value.backward()
        assert prediction.grad is not None
        results.append((value.detach(), prediction.grad))
    (fast, fast_grad), (reference, reference_grad) = results
    torch.testing.assert_close(fast, reference, rtol=1e-12, atol=1e-12, equal_nan=True)
    torch.testing.assert_close(fast_grad, reference_grad, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_feature_cosine_equals_reference(dtype: str) -> None:
    # (N, 1) columns take a kernel without an inner loop over features.
    rng = np.random.default_rng(4)
    y_true = rng.normal(size=(5000, 1)).astype(dtype)
    y_pred = rng.normal(size=(5000, 1)).astype(dtype)
    y_pred[:10] = 0.0  # a zero vector: the clamped norm
    weight = rng.random(5000)
    loss = losskit.CosineSimilarity(reduction="sum", dtype=dtype)
    assert kernels.fused_call(loss, y_true, y_pred, weight, None) is not None
    results = []
    for preference in ("fast", "reference"):
        prediction = torch.tensor(y_pred, requires_grad=True)
        with losskit.prefer_backend(preference):
            value = loss(torch.as_tensor(y_true), prediction, torch.as_tensor(weight))
        value.backward()
        assert prediction.grad is not None
        results.append((value.detach(), prediction.grad))
    (fast, fast_grad), (reference, reference_grad) = results
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(fast, reference, rtol=tolerance, atol=tolerance)
    # The exact gradient is 0 (the cosine of two scalars is +-1); both paths
    # leave rounding residue of order eps(dtype) / |y_pred|.
    residue = float(np.finfo(dtype).eps / np.abs(y_pred[10:]).min())
    torch.testing.assert_close(fast_grad, reference_grad, rtol=tolerance, atol=4 * residue)
    np.testing.assert_allclose(loss(y_true, y_pred, weight), reference, rtol=tolerance)


def test_gradient_buffers_are_recycled_only_once_unreferenced() -> None:
    kernels.release_gradient_buffers()
    rng = np.random.default_rng(6)
    y_true = torch.from_numpy(rng.random((512, 64), dtype="float32"))
    y_pred = torch.from_numpy(rng.random((512, 64), dtype="float32")).requires_grad_()
    loss = losskit.MeanAbsoluteError()

    def gradient() -> torch.Tensor:
        y_pred.grad = None
        loss(y_true, y_pred).backward()
        assert y_pred.grad is not None
        return y_pred.grad

    first = gradient()
    address, expected = first.data_ptr(), first.clone()
    view, numpy_view = first[:3], first.numpy()
    del first
    # A view of the buffer keeps it from being reused, and so does a NumPy view.
    second = gradient()
    assert second.data_ptr() != address
    assert torch.equal(view, expected[:3])
    del view
    third = gradient()
    assert third.data_ptr() != address
    np.testing.assert_array_equal(numpy_view, expected.numpy())
    del numpy_view, second, third
    # Once nothing refers to it, the next gradient of that shape reuses it.
    fourth = gradient()
    assert fourth.data_ptr() == address
    torch.testing.assert_close(fourth, expected)


def test_prefer_backend_is_local_to_each_thread() -> None:
    import threading

    inside, release = threading.Barrier(2), threading.Event()
    seen: dict[str, str] = {}

    def use(preference: str) -> None:
        with losskit.prefer_backend(preference):
            inside.wait()  # both blocks are open at once
            seen[preference] = losskit.backend_preference()
            release.wait(5)

    threads = [threading.Thread(target=use, args=(p,)) for p in ("reference", "fast")]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join()
    assert seen == {"reference": "reference", "fast": "fast"}
    assert losskit.backend_preference() == "fast"


@pytest.mark.parametrize("value", ["Reference", "slow", "fast "])
def test_invalid_losskit_backend_variable_is_an_error(value: str) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import losskit"],
        env={**__import__("os").environ, "LOSSKIT_BACKEND": value},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "LOSSKIT_BACKEND" in result.stderr
    assert "('fast', 'reference')" in result.stderr
