"""Keras's reduction rules, checked against Keras's own reduction routine:
rank alignment, masks, empty batches and unreduced 0-d losses."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import losskit
from losskit.reduction import reduce_weighted_values
from tests.backends import Backend
from tests.cases import CASES, keras_class_value, keras_reduce

REDUCTIONS = [
    "sum_over_batch_size",
    "sum",
    "mean",
    "mean_with_sample_weight",
    "none",
    None,
]


def _maybe(backend: Backend, x: Any) -> Any:
    return x if x is None or np.isscalar(x) else backend.asarray(x)


@st.composite
def weighted_problem(draw: st.DrawFn) -> tuple[np.ndarray, Any, Any, str | None]:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    values = draw(hnp.arrays(np.float64, shape, elements=st.floats(0.0, 10.0)))
    weight_shape = draw(
        st.sampled_from([None, (), shape, shape[:1] + (1,) * (len(shape) - 1), (*shape, 1)])
    )
    weight = None
    if weight_shape is not None:
        weight = draw(hnp.arrays(np.float64, weight_shape, elements=st.floats(0.0, 3.0)))
    mask = draw(st.one_of(st.none(), hnp.arrays(np.bool_, shape)))
    reduction = draw(st.sampled_from(REDUCTIONS))
    return values, weight, mask, reduction


@given(weighted_problem())
def test_reduction_matches_keras(
    problem: tuple[np.ndarray, Any, Any, str | None],
) -> None:
    values, weight, mask, reduction = problem
    expected = keras_reduce(values, weight, mask, reduction)
    result = reduce_weighted_values(values, sample_weight=weight, mask=mask, reduction=reduction)
    assert np.shape(result) == np.shape(expected)
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_masks_on_every_backend(reduction: str | None, backend: Backend) -> None:
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.normal(size=(6, 4, 3)), rng.normal(size=(6, 4, 3))
    mask = rng.random((6, 4)) > 0.4
    weight = rng.uniform(0.5, 2.0, size=(6, 1))
    loss = losskit.MeanSquaredError(reduction=reduction, dtype="float64")
    values = np.mean((y_true - y_pred) ** 2, axis=-1)
    for w in (None, weight):
        expected = keras_reduce(values, w, mask, reduction)
        result = loss(
            backend.asarray(y_true),
            backend.asarray(y_pred),
            _maybe(backend, w),
            backend.asarray(mask),
        )
        np.testing.assert_allclose(backend.to_numpy(result), expected, rtol=1e-12)


def test_mask_gives_the_mean_over_valid_entries() -> None:
    values = np.array([[1.0, 2.0], [3.0, 100.0]])
    mask = np.array([[True, True], [True, False]])
    assert float(reduce_weighted_values(values, mask=mask)) == pytest.approx(2.0)
    assert float(reduce_weighted_values(values, mask=mask, reduction="sum")) == 6.0
    assert float(reduce_weighted_values(values, mask=np.zeros((2, 2), bool))) == 0.0


def test_ignore_class_and_mask_combine() -> None:
    case = next(c for c in CASES if c.kwargs.get("ignore_class") == 1)
    y_true = np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 0.0]])
    y_pred = np.random.default_rng(1).normal(size=(2, 3, 4))
    user_mask = np.array([[True, True, False], [True, True, True]])
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1, dtype="float64")
    per_sample = losskit.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    valid = (y_true != 1) & user_mask
    expected = keras_reduce(per_sample, None, valid)
    np.testing.assert_allclose(loss(y_true, y_pred, mask=user_mask), expected, rtol=1e-12)
    np.testing.assert_allclose(
        loss(y_true, y_pred), keras_class_value(case, y_true, y_pred), rtol=1e-12
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_batches(reduction: str | None, backend: Backend) -> None:
    for shape in ((0, 3), (0, 2, 3)):
        y = np.zeros(shape)
        expected = keras_class_value(next(iter(CASES)), y, y, reduction=reduction)
        result = losskit.MeanSquaredError(reduction=reduction, dtype="float64")(
            backend.asarray(y), backend.asarray(y)
        )
        assert tuple(result.shape) == expected.shape
        np.testing.assert_array_equal(backend.to_numpy(result), expected)


def test_zero_weights_divide_no_nan() -> None:
    y_true, y_pred = np.ones((3, 2)), np.zeros((3, 2))
    loss = losskit.MeanSquaredError(reduction="mean_with_sample_weight")
    assert float(loss(y_true, y_pred, sample_weight=np.zeros(3))) == 0.0


def test_zero_d_losses_are_returned_unreduced_unless_weighted() -> None:
    y_true, y_pred = np.ones((4, 3)), np.full((4, 3), 0.5)
    dice = losskit.Dice(reduction="sum")
    assert dice(y_true, y_pred).shape == ()
    weighted = dice(y_true, y_pred, sample_weight=np.arange(4.0))
    per_sample = losskit.Dice(reduction=None)(y_true, y_pred, sample_weight=np.arange(4.0))
    assert per_sample.shape == (4,)
    np.testing.assert_allclose(weighted, np.sum(per_sample), rtol=1e-6)


def test_per_timestep_and_per_sample_weights() -> None:
    rng = np.random.default_rng(2)
    y_true, y_pred = rng.normal(size=(3, 5, 2)), rng.normal(size=(3, 5, 2))
    values = np.mean((y_true - y_pred) ** 2, axis=-1)
    loss = losskit.MeanSquaredError(reduction="sum", dtype="float64")
    timestep = rng.random((3, 5))
    np.testing.assert_allclose(loss(y_true, y_pred, timestep), np.sum(values * timestep))
    per_sample = rng.random((3, 1))
    np.testing.assert_allclose(loss(y_true, y_pred, per_sample), np.sum(values * per_sample))
