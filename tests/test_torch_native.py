"""Differential tests: each torch lowering (:mod:`losskit._torch_native`) is
the reference's function, on random data and on edge values.

A deterministic sweep over every lowered case, float32 and float64, every
reduction and kind of weight, and each class of edge values scattered into
the inputs (zeros, denormals, values at eps and 1 - eps, huge values, inf,
NaN): the lowering and the reference (``prefer_backend("reference")``) must
give the same value and gradients to float rounding, with exactly the same
NaN pattern and the same infinities, and the lowering must really have run.

One allowance: at the overflow boundary, the order of operations decides
whether an intermediate overflows (the reference's gradient of MSE is
``2 (p - t) / n``, torch's ``(2 / n) (p - t)``), so an infinity on one side
may face a finite value within a factor :data:`OVERFLOW_MARGIN` of the
largest float on the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import losskit
from losskit import _torch_native
from tests.cases import CASES, Case, case_inputs
from tests.spies import record_calls
from tests.test_fast_path_fuzz import EDGE_CLASSES, TOLERANCE

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)
WEIGHT_KINDS = ("none", "per_sample", "column", "all_zero", "zero_d", "python_scalar")
SHAPE = (7, 5)
LABEL_EDGES = (-1, 5, 6, -(2**31), 2**31 - 1, 4.5, -0.5)  # 4.5, -0.5: truncated


OVERFLOW_MARGIN = 64.0


def assert_same_function(ours: Any, reference: Any, dtype: str, what: str) -> None:
    """Same shape, NaN pattern and infinities (but at the overflow boundary);
    finite entries equal to rounding relative to the largest finite magnitude."""
    ours, reference = np.asarray(ours, dtype="float64"), np.asarray(reference, dtype="float64")
    assert ours.shape == reference.shape, what
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference), err_msg=f"NaN in {what}")
    boundary = np.finfo(dtype).max / OVERFLOW_MARGIN
    for x, y in ((ours, reference), (reference, ours)):
        infinite = np.isinf(x)
        overflowed = infinite & np.isfinite(y)
        assert np.all(np.abs(y[overflowed]) >= boundary), f"inf in {what}: {x} vs {y}"
        same_sign = np.sign(x[overflowed]) == np.sign(y[overflowed])
        assert np.all(same_sign), f"sign of inf in {what}"
        both = infinite & np.isinf(y)
        np.testing.assert_array_equal(x[both], y[both], err_msg=f"inf in {what}")
    finite = np.isfinite(ours) & np.isfinite(reference)
    scale = float(np.abs(reference[finite]).max(initial=0.0)) or 1.0
    tolerance = TOLERANCE[dtype]
    np.testing.assert_allclose(
        ours[finite], reference[finite], rtol=tolerance, atol=tolerance * scale, err_msg=what
    )


def lowered(case: Case) -> bool:
    """Whether the class call of ``case`` on float tensors takes a lowering."""
    y_true, y_pred = case_inputs(case, SHAPE, 0)
    t, p = _tensors(case, y_true, y_pred, "float32")
    return _torch_native.native_call(case.losskit_loss(), t, p, None, None) is not None


def _tensors(case: Case, y_true: np.ndarray, y_pred: np.ndarray, dtype: str) -> tuple[Any, Any]:
    sparse = case.loss == "SparseCategoricalCrossentropy"
    t = torch.as_tensor(y_true if sparse else y_true.astype(dtype))
    return t, torch.as_tensor(y_pred.astype(dtype))


LOWERED = [c for c in CASES if lowered(c)]


def test_the_expected_cases_are_lowered() -> None:
    not_lowered = {c.id for c in CASES if not lowered(c)}
    assert {
        "Dice()",
        "Tversky()",
        "SparseCategoricalCrossentropy(from_logits=True,ignore_class=1)",
    } <= not_lowered
    assert {c.loss for c in LOWERED} >= {
        "MeanSquaredError",
        "MeanAbsoluteError",
        "MeanAbsolutePercentageError",
        "MeanSquaredLogarithmicError",
        "CosineSimilarity",
        "Huber",
        "LogCosh",
        "Hinge",
        "SquaredHinge",
        "CategoricalHinge",
        "KLDivergence",
        "Poisson",
        "BinaryCrossentropy",
        "CategoricalCrossentropy",
        "SparseCategoricalCrossentropy",
    }


def _weight(kind: str, rng: np.random.Generator, rows: int) -> Any:
    if kind == "none":
        return None
    if kind == "python_scalar":
        return 0.75  # not lowered: the reference runs (checked below)
    if kind == "zero_d":
        return torch.tensor(0.75)
    if kind == "all_zero":
        return torch.zeros(rows)
    weights = rng.uniform(0.0, 3.0, size=rows)
    weights[rng.random(rows) < 0.3] = 0.0
    if kind == "column":
        return torch.as_tensor(weights[:, None].astype("float32"))
    return torch.as_tensor(weights)


def _inputs(case: Case, edge: str, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true, y_pred = case_inputs(case, SHAPE, seed)
    y_true, y_pred = y_true.copy(), y_pred.astype("float64")
    pool = np.array(EDGE_CLASSES[edge])
    sparse = case.loss == "SparseCategoricalCrossentropy"
    where = rng.random(y_pred.shape) < 0.25
    y_pred[where] = rng.choice(pool, size=int(where.sum()))
    if sparse:
        where = rng.random(y_true.shape) < 0.3
        y_true[where] = rng.choice(LABEL_EDGES, size=int(where.sum()))
    else:
        y_true = y_true.astype("float64")
        where = rng.random(y_true.shape) < 0.25
        y_true[where] = rng.choice(pool, size=int(where.sum()))
    with np.errstate(over="ignore"):
        return (y_true if sparse else y_true.astype(dtype)), y_pred.astype(dtype)


def _run(
    loss: losskit.Loss, y_true: np.ndarray, y_pred: np.ndarray, weight: Any, preference: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Value, gradient in y_pred and (float targets) gradient in y_true."""
    p = torch.tensor(y_pred, requires_grad=True)
    t = torch.tensor(y_true, requires_grad=y_true.dtype.kind == "f")
    with losskit.prefer_backend(preference):
        value = loss(t, p, weight)
    (2.5 * value.sum()).backward()  # an upstream gradient other than 1
    assert p.grad is not None
    return value.detach().numpy(), p.grad.numpy(), None if t.grad is None else t.grad.numpy()


@pytest.mark.parametrize("case", LOWERED, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lowering_is_the_reference_on_edge_values(case: Case, dtype: str) -> None:
    rng = np.random.default_rng(0)
    # every (reduction, weight kind) pair, and every reduction with every edge class
    combinations = [
        (edge, reduction, WEIGHT_KINDS[(e + r) % len(WEIGHT_KINDS)])
        for e, edge in enumerate(sorted(EDGE_CLASSES))
        for r, reduction in enumerate(REDUCTIONS)
    ]
    for number, (edge, reduction, kind) in enumerate(combinations):
        y_true, y_pred = _inputs(case, edge, dtype, seed=number)
        weight = _weight(kind, rng, SHAPE[0])
        loss = case.losskit_loss(reduction=reduction, dtype=dtype)
        what = f"{case.id} {dtype} edge={edge} reduction={reduction} weight={kind}"
        t, p = torch.as_tensor(y_true), torch.as_tensor(y_pred)
        taken = _torch_native.native_call(loss, t, p, weight, None) is not None
        assert taken == (kind != "python_scalar"), what
        with np.errstate(all="ignore"):
            native = _run(loss, y_true, y_pred, weight, "fast")
            reference = _run(loss, y_true, y_pred, weight, "reference")
        assert native[0].dtype == reference[0].dtype == np.dtype(dtype), what
        for name, ours, theirs in zip(
            ("value", "gradient", "target gradient"), native, reference, strict=True
        ):
            assert (ours is None) == (theirs is None), what
            if ours is not None:
                assert_same_function(ours, theirs, dtype, f"{name} of {what}")


@pytest.mark.parametrize("case", LOWERED, ids=lambda c: c.id)
def test_second_derivatives_are_the_references(case: Case) -> None:
    y_true, y_pred = case_inputs(case, SHAPE, 1)
    t, p = _tensors(case, y_true, y_pred, "float64")
    loss = case.losskit_loss(dtype="float64")
    results = []
    for preference in ("fast", "reference"):
        prediction = p.clone().requires_grad_()
        with losskit.prefer_backend(preference):
            (gradient,) = torch.autograd.grad(loss(t, prediction), prediction, create_graph=True)
        if not gradient.requires_grad:  # piecewise linear: no second derivative
            results.append(torch.zeros_like(prediction))
            continue
        (second,) = torch.autograd.grad((gradient * gradient).sum(), prediction)
        results.append(second)
    torch.testing.assert_close(results[0], results[1], rtol=1e-10, atol=1e-12)


def test_out_of_range_labels_have_a_loss_of_zero() -> None:
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    logits = torch.tensor([[1.0, 2.0, 3.0]] * 4)
    labels = torch.tensor([-1, 3, 2, 10**12])
    assert _torch_native.native_call(loss, labels, logits, None, None) is not None
    values = loss(labels, logits)
    expected = -torch.log_softmax(logits[2], dim=0)[2]
    torch.testing.assert_close(
        values, torch.stack([expected * 0, expected * 0, expected, expected * 0])
    )
    mean = losskit.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    torch.testing.assert_close(mean, expected / 4)  # divided by every entry


@pytest.mark.parametrize(
    ("make", "t", "p"),
    [
        # not lowered: the reference's checks and messages apply
        (losskit.MeanSquaredError, torch.zeros(4, 3), torch.zeros(4, 2)),  # shapes differ
        (losskit.MeanSquaredError, torch.zeros(4, 1), torch.zeros(4)),  # rank alignment
        (losskit.MeanSquaredError, torch.zeros(4, 3, dtype=torch.float64), torch.zeros(4, 3)),
        (losskit.MeanSquaredError, torch.zeros(0, 3), torch.zeros(0, 3)),  # empty
        (losskit.MeanSquaredError, np.zeros((4, 3), "float32"), torch.zeros(4, 3)),
        (
            lambda: losskit.CategoricalCrossentropy(from_logits=True),
            torch.ones(4, 1),
            torch.ones(4, 1),
        ),
        (
            lambda: losskit.BinaryCrossentropy(from_logits=True, axis=0),
            torch.ones(4, 3),
            torch.ones(4, 3),
        ),
        (lambda: losskit.MeanSquaredError(dtype="float64"), torch.zeros(4, 3), torch.zeros(4, 3)),
        (
            lambda: losskit.SparseCategoricalCrossentropy(from_logits=True),
            torch.zeros(4, dtype=torch.bool),  # boolean labels
            torch.zeros(4, 3),
        ),
        (
            lambda: losskit.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
            torch.zeros(4, dtype=torch.int64),
            torch.zeros(4, 3),
        ),
    ],
)
def test_calls_that_are_not_lowered(make: Any, t: Any, p: Any) -> None:
    assert _torch_native.native_call(make(), t, p, None, None) is None


def test_mask_and_foreign_weights_are_not_lowered() -> None:
    loss, t, p = losskit.MeanSquaredError(), torch.zeros(4, 3), torch.ones(4, 3)
    assert _torch_native.native_call(loss, t, p, None, torch.ones(4, dtype=torch.bool)) is None
    assert _torch_native.native_call(loss, t, p, np.ones(4), None) is None
    assert _torch_native.native_call(loss, t, p, torch.ones(3), None) is None


def test_subclasses_are_not_lowered() -> None:
    class Doubled(losskit.MeanSquaredError):
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return 2.0 * super().call(y_true, y_pred)

    assert (
        _torch_native.native_call(Doubled(), torch.zeros(4, 3), torch.ones(4, 3), None, None)
        is None
    )
    torch.testing.assert_close(Doubled()(torch.zeros(4, 3), torch.ones(4, 3)), torch.tensor(2.0))


def test_shape_errors_are_the_references() -> None:
    with pytest.raises(ValueError, match="must have the same shape"):
        losskit.MeanSquaredError()(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="would broadcast the losses"):
        losskit.MeanSquaredError()(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(2, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("case", LOWERED, ids=lambda c: c.id)
def test_cuda_tensors_are_lowered_on_their_device(case: Case) -> None:
    y_true, y_pred = case_inputs(case, SHAPE, 2)
    t, p = _tensors(case, y_true, y_pred, "float32")
    loss = case.losskit_loss()
    assert _torch_native.native_call(loss, t.cuda(), p.cuda(), None, None) is not None
    on_device = loss(t.cuda(), p.cuda(), torch.ones(SHAPE[0], device="cuda"))
    assert on_device.device.type == "cuda"
    with losskit.prefer_backend("reference"):
        torch.testing.assert_close(on_device.cpu(), loss(t, p, torch.ones(SHAPE[0])))


@pytest.mark.parametrize("numpy_targets", [False, True])
def test_torch_loss_before_the_kernels_below_the_crossover(
    numpy_targets: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MSE on CPU tensors below the crossover goes to torch's own loss first;
    a call torch's loss does not take (NumPy targets) still gets the kernels."""
    from losskit import kernels

    calls = record_calls(monkeypatch, kernels, "fused_call")
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(512, 64)).astype("float32")
    y_pred = torch.tensor(rng.normal(size=(512, 64)).astype("float32"), requires_grad=True)
    loss = losskit.MeanSquaredError()
    assert _torch_native.takes_first(loss, y_pred)
    value = loss(y_true if numpy_targets else torch.as_tensor(y_true), y_pred)
    value.backward()
    if numpy_targets and kernels.available():
        assert calls == [True]
    else:
        assert not any(calls)
    expected = torch.mean((y_pred.detach() - torch.as_tensor(y_true)) ** 2)
    torch.testing.assert_close(value.detach(), expected)
    big = torch.zeros((1 << 18) // 64, 64)
    assert not _torch_native.takes_first(loss, big)
