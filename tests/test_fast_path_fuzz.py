"""Differential fuzzer: the fused fast path is the same function as the
reference, on edge data too.

Hypothesis draws a loss case, a dtype, a reduction, a kind of weight and a
set of edge-value classes; the inputs (above the fast-path threshold, so the
real dispatch runs) are valid data for the loss with edge values scattered
through them.  The fast path and the reference must give the same value and
gradient to float rounding on finite results and exactly the same inf/NaN
pattern; where Keras's result is finite, the fast path must match Keras too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hypothesis
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losskit
from losskit import kernels
from tests.cases import CASES, Case, case_inputs, keras_class_value

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")

REDUCING = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight")
WEIGHT_KINDS = ("none", "scalar", "zero_scalar", "per_sample", "all_zero", "column")
TOLERANCE = {"float32": 2e-5, "float64": 1e-10}

# The pool of edge values, by class.  Values that round to 0 or 1 in float32
# are exact in float64: they tell the precision a clip is applied in.
EDGE_CLASSES: dict[str, tuple[float, ...]] = {
    "zero": (0.0, -0.0),
    "denormal": (1e-40, -1e-40, 5e-324),
    "epsilon": (1e-7, 1.0 - 1e-7, 1e-8, 0.99999999),
    "rounds_to_0_or_1": (2.0**-150, 1.0 - 2.0**-25, 1.0 + 2.0**-25),
    "one": (1.0, -1.0),
    "huge": (1e30, -1e30, 3e38, 1e300, -1e300),
    "inf": (np.inf, -np.inf),
    "nan": (np.nan,),
}

FUZZ_SETTINGS = hypothesis.settings(max_examples=120, deadline=None, derandomize=True)


def fast_cases() -> list[Case]:
    """The cases whose class call takes a fused kernel."""
    return [c for c in CASES if "ignore_class" not in c.kwargs]


@dataclass(frozen=True)
class Problem:
    case: Case
    y_true: np.ndarray
    y_pred: np.ndarray
    weight: Any
    dtype: str
    reduction: str
    edges: tuple[str, ...]

    def loss(self) -> losskit.Loss:
        return self.case.losskit_loss(reduction=self.reduction, dtype=self.dtype)

    def __repr__(self) -> str:
        shape, weight = self.y_pred.shape, getattr(self.weight, "shape", self.weight)
        return (
            f"Problem({self.case.id}, shape={shape}, dtype={self.dtype}, "
            f"reduction={self.reduction}, weight={weight}, edges={self.edges})"
        )


def _scatter(rng: np.random.Generator, x: np.ndarray, pool: np.ndarray, rate: float) -> None:
    where = rng.random(x.shape) < rate
    x[where] = rng.choice(pool, size=int(where.sum()))


def _weight(kind: str, rng: np.random.Generator, loss_shape: tuple[int, ...]) -> Any:
    if kind == "none":
        return None
    if kind == "scalar":
        return 0.75
    if kind == "zero_scalar":
        return 0.0
    if kind == "all_zero":
        return np.zeros(loss_shape)
    weights = rng.uniform(0.0, 3.0, size=loss_shape)
    weights[rng.random(loss_shape) < 0.2] = 0.0
    return weights if kind == "per_sample" else weights[..., None].astype("float32")


@st.composite
def problems(draw: st.DrawFn, cases: list[Case] | None = None) -> Problem:
    case = draw(st.sampled_from(cases or fast_cases()))
    features = draw(st.sampled_from([1, 2, 7, 64]))
    if "Categorical" in case.loss or case.loss in ("CosineSimilarity", "KLDivergence"):
        features = max(features, 2)
    rows = -(-kernels.MIN_ELEMENTS // features) + draw(st.integers(0, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    y_true, y_pred = case_inputs(case, (rows, features), seed)
    dtype = draw(st.sampled_from(["float32", "float64"]))
    edges = tuple(draw(st.sets(st.sampled_from(sorted(EDGE_CLASSES)), min_size=1, max_size=3)))
    pool = np.array([v for name in edges for v in EDGE_CLASSES[name]])
    rate = draw(st.sampled_from([1e-4, 0.01, 0.2]))
    target = draw(st.sampled_from(["y_pred", "y_true", "both"]))
    y_true, y_pred = y_true.astype("float64"), y_pred.astype("float64")
    sparse = case.spec.input_domain(case.kwargs).startswith("sparse")  # labels
    if target != "y_pred" and not sparse:
        _scatter(rng, y_true, pool, rate)
    if target != "y_true" or sparse:
        _scatter(rng, y_pred, pool, rate)
    with np.errstate(over="ignore"):
        y_pred = y_pred.astype(dtype)
        y_true = y_true if sparse else y_true.astype(dtype)
    weight = _weight(draw(st.sampled_from(WEIGHT_KINDS)), rng, (rows,))
    reduction = draw(st.sampled_from(REDUCING))
    if case.loss in ("Dice", "Tversky"):
        weight = None  # one global loss: no per-sample weights
    return Problem(case, y_true, y_pred, weight, dtype, reduction, edges)


def assert_same_function(fast: np.ndarray, reference: np.ndarray, dtype: str, what: str) -> None:
    """Same NaN and signed-inf pattern; finite entries equal to rounding
    (relative to the largest finite magnitude, as sums accumulate)."""
    fast, reference = np.asarray(fast, dtype="float64"), np.asarray(reference, dtype="float64")
    assert fast.shape == reference.shape, what
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(reference), err_msg=f"NaN in {what}")
    for sign in (1, -1):
        np.testing.assert_array_equal(
            fast == sign * np.inf, reference == sign * np.inf, err_msg=f"{sign:+}inf in {what}"
        )
    finite = np.isfinite(reference)
    scale = float(np.abs(reference[finite]).max(initial=0.0)) or 1.0
    tolerance = TOLERANCE[dtype]
    np.testing.assert_allclose(
        fast[finite], reference[finite], rtol=tolerance, atol=tolerance * scale, err_msg=what
    )


def _reference(loss: losskit.Loss, *args: Any) -> Any:
    with losskit.prefer_backend("reference"):
        return loss(*args)


def _torch(x: Any) -> Any:
    return x if x is None or np.isscalar(x) else torch.as_tensor(x)


@FUZZ_SETTINGS
@given(problems())
def test_numpy_fast_path_is_the_reference_on_edge_data(problem: Problem) -> None:
    loss = problem.loss()
    args = (problem.y_true, problem.y_pred, problem.weight)
    with np.errstate(all="ignore"):
        taken = kernels.fused_call(loss, *args, None) is not None
        fast, reference = loss(*args), _reference(loss, *args)
    assert fast.dtype == reference.dtype
    assert_same_function(fast, reference, problem.dtype, f"value of {problem}")
    # The kernel steps aside only where inf or NaN shows up (then the reference
    # defines the pattern): on finite inputs with finite per-sample losses it
    # runs.  (A NaN loss, such as 0/0 in a row of zero probabilities, can hide
    # behind a zero weight and a divide-no-nan reduction: the kernel sees it.)
    finite = [np.isfinite(problem.y_true).all(), np.isfinite(problem.y_pred).all()]
    if all(finite) and np.isfinite(reference) and "huge" not in problem.edges:
        unreduced = problem.case.losskit_loss(reduction=None, dtype=problem.dtype)
        with np.errstate(all="ignore"):
            per_sample = _reference(unreduced, problem.y_true, problem.y_pred)
        if np.isfinite(per_sample).all():
            assert taken, problem


def _value_and_gradient(problem: Problem, preference: str) -> tuple[np.ndarray, np.ndarray]:
    prediction = torch.tensor(problem.y_pred, requires_grad=True)
    with losskit.prefer_backend(preference), np.errstate(all="ignore"):
        value = problem.loss()(torch.as_tensor(problem.y_true), prediction, _torch(problem.weight))
        (2.5 * value).backward()  # an upstream gradient other than 1
    assert prediction.grad is not None
    return value.detach().numpy(), prediction.grad.numpy()


@FUZZ_SETTINGS
@given(problems())
def test_torch_fast_gradient_is_the_reference_on_edge_data(problem: Problem) -> None:
    fast_value, fast_grad = _value_and_gradient(problem, "fast")
    reference_value, reference_grad = _value_and_gradient(problem, "reference")
    assert_same_function(fast_value, reference_value, problem.dtype, f"value of {problem}")
    assert_same_function(fast_grad, reference_grad, problem.dtype, f"gradient of {problem}")


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True)
@given(problems())
def test_fast_path_matches_keras_where_keras_is_finite(problem: Problem) -> None:
    loss = problem.loss()
    with np.errstate(all="ignore"):
        fast = np.asarray(loss(problem.y_true, problem.y_pred, problem.weight))
    expected = keras_class_value(
        problem.case,
        problem.y_true,
        problem.y_pred,
        problem.weight,
        reduction=problem.reduction,
        dtype=problem.dtype,
    )
    hypothesis.assume(bool(np.isfinite(expected)))
    assert_same_function(fast, expected, problem.dtype, f"Keras value of {problem}")


@pytest.mark.parametrize("edge", sorted(EDGE_CLASSES))
@pytest.mark.parametrize("case", fast_cases(), ids=lambda c: c.id)
def test_every_fast_loss_meets_every_edge_class(case: Case, edge: str) -> None:
    # A deterministic sweep beside the random search: each loss x edge class,
    # in float32 with zero and non-zero per-sample weights, edge values in both
    # inputs (labels stay labels), value and gradient against the reference.
    features = 7 if "Categorical" in case.loss or case.loss in ("KLDivergence",) else 3
    rows = -(-kernels.MIN_ELEMENTS // features)
    rng = np.random.default_rng(sorted(EDGE_CLASSES).index(edge))
    y_true, y_pred = case_inputs(case, (rows, features), seed=21)
    pool = np.array(EDGE_CLASSES[edge])
    sparse = case.spec.input_domain(case.kwargs).startswith("sparse")  # labels
    if not sparse:
        _scatter(rng, y_true, pool, 0.003)
    _scatter(rng, y_pred, pool, 0.003)
    with np.errstate(over="ignore"):
        y_true = y_true if sparse else y_true.astype("float32")
        y_pred = y_pred.astype("float32")
    weight = None if case.loss in ("Dice", "Tversky") else _weight("per_sample", rng, (rows,))
    problem = Problem(case, y_true, y_pred, weight, "float32", "mean_with_sample_weight", (edge,))
    fast_value, fast_grad = _value_and_gradient(problem, "fast")
    reference_value, reference_grad = _value_and_gradient(problem, "reference")
    assert_same_function(fast_value, reference_value, "float32", f"value of {problem}")
    assert_same_function(fast_grad, reference_grad, "float32", f"gradient of {problem}")
