"""Values of every loss class and function equal Keras 3's, on every backend,
for every reduction and kind of sample weight."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import losskit
from tests.backends import Backend
from tests.cases import (
    CASES,
    Case,
    case_inputs,
    keras_class_value,
    per_sample_shape,
)

REDUCTIONS = [
    "sum_over_batch_size",
    "sum",
    "mean",
    "mean_with_sample_weight",
    "none",
    None,
]
TOLERANCE = {"float64": (1e-10, 1e-12), "float32": (2e-5, 1e-5)}


def weight_variants(loss_shape: tuple[int, ...], seed: int) -> dict[str, Any]:
    """Kinds of sample weight for per-sample losses of ``loss_shape``."""
    rng = np.random.default_rng(seed + 1000)
    variants: dict[str, Any] = {"none": None, "scalar": 2.5}
    if loss_shape:
        batch = loss_shape[0]
        column = (batch,) + (1,) * (len(loss_shape) - 1)
        variants["per_sample_column"] = rng.uniform(0.0, 2.0, size=column)
        variants["zeros"] = np.zeros(column)
        if len(loss_shape) == 1:
            variants["per_sample"] = rng.uniform(0.0, 2.0, size=(batch,))
            variants["per_sample_trailing_1"] = rng.uniform(0.0, 2.0, size=(batch, 1))
        else:
            # (N,) against (N, T) losses is rejected by Keras too.
            variants["per_timestep"] = rng.uniform(0.0, 2.0, size=loss_shape)
            variants["broadcast_rows"] = rng.uniform(0.0, 2.0, size=(1, *loss_shape[1:]))
    else:
        variants["per_sample"] = rng.uniform(0.0, 2.0, size=(5,))
    return variants


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: str) -> None:
    rtol, atol = TOLERANCE[dtype]
    assert np.shape(actual) == np.shape(expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_class_matches_keras_for_every_weight(
    case: Case, rank: int, reduction: str | None, backend: Backend
) -> None:
    shape = (5, 4, 3)[:rank]
    y_true, y_pred = case_inputs(case, shape, seed=rank)
    loss = case.losskit_loss(reduction=reduction, dtype="float64")
    for kind, weight in weight_variants(per_sample_shape(case, shape), seed=rank).items():
        expected = keras_class_value(case, y_true, y_pred, weight, reduction)
        sample_weight = (
            None if weight is None else (weight if np.isscalar(weight) else backend.asarray(weight))
        )
        result = loss(backend.asarray(y_true), backend.asarray(y_pred), sample_weight)
        assert result.dtype == backend.asarray(np.zeros(1, "float64")).dtype, kind
        try:
            assert_close(backend.to_numpy(result), expected, "float64")
        except AssertionError as error:
            raise AssertionError(f"sample weight {kind}: {error}") from None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_function_matches_keras(case: Case, backend: Backend) -> None:
    y_true, y_pred = case_inputs(case, (6, 5), seed=7)
    for dtype in ("float32", "float64"):
        expected = np.asarray(case.keras_function(y_true.astype(dtype), y_pred.astype(dtype)))
        result = case.function(
            backend.asarray(y_true, dtype),
            backend.asarray(y_pred, dtype),
            **case.kwargs,
        )
        assert str(result.dtype).endswith(dtype)
        assert_close(backend.to_numpy(result), expected, dtype)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_default_float32_class_matches_keras(case: Case, backend: Backend) -> None:
    y_true, y_pred = case_inputs(case, (6, 5), seed=3)
    expected = keras_class_value(case, y_true, y_pred, dtype="float32")
    result = case.losskit_loss()(backend.asarray(y_true), backend.asarray(y_pred))
    assert str(result.dtype).endswith("float32")
    assert_close(backend.to_numpy(result), expected, "float32")


@st.composite
def random_problem(
    draw: st.DrawFn,
) -> tuple[Case, np.ndarray, np.ndarray, Any, str | None]:
    case = draw(st.sampled_from(CASES))
    rank = draw(st.integers(1 if case.loss in ("Dice", "Tversky") else 2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    if "Categorical" in case.loss or case.loss in ("CosineSimilarity", "KLDivergence"):
        shape = (*shape[:-1], max(shape[-1], 2))
    seed = draw(st.integers(0, 2**16))
    y_true, y_pred = case_inputs(case, shape, seed)
    loss_shape = per_sample_shape(case, shape)
    weight = draw(
        st.one_of(
            st.none(),
            st.floats(0.0, 3.0),
            hnp.arrays(np.float64, loss_shape, elements=st.floats(0.0, 3.0)),
        )
    )
    reduction = draw(st.sampled_from(REDUCTIONS))
    return case, y_true, y_pred, weight, reduction


@given(random_problem())
def test_random_shapes_and_weights_match_keras(
    problem: tuple[Case, np.ndarray, np.ndarray, Any, str | None],
) -> None:
    case, y_true, y_pred, weight, reduction = problem
    expected = keras_class_value(case, y_true, y_pred, weight, reduction)
    result = case.losskit_loss(reduction=reduction, dtype="float64")(y_true, y_pred, weight)
    assert_close(np.asarray(result), expected, "float64")


def test_tversky_weighs_false_positives_by_alpha() -> None:
    y_true = np.array([[1.0, 0.0, 0.0, 0.0]])
    y_pred = np.array([[1.0, 1.0, 1.0, 0.0]])  # tp = 1, fp = 2, fn = 0
    loss = losskit.tversky(y_true, y_pred, alpha=1.0, beta=0.0)
    np.testing.assert_allclose(loss, 1.0 - 1.0 / (1.0 + 2.0 + 1e-7))
    loss = losskit.tversky(y_true, y_pred, alpha=0.0, beta=1.0)
    np.testing.assert_allclose(loss, 1.0 - 1.0 / (1.0 + 1e-7), atol=1e-12)
