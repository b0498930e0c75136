"""Gradients with respect to ``y_pred`` equal Keras's (JAX autodiff), through
torch autograd and ``jax.grad``, and stay finite at the edges where Keras's
do (or where Keras 3.15 has NaNs that upstream fixed)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import losskit
from tests.cases import CASES, Case, case_inputs, keras_class_gradient, per_sample_shape


def losskit_gradient(
    case: Case,
    library: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sample_weight: Any = None,
    reduction: str | None = "sum_over_batch_size",
    **kwargs: Any,
) -> np.ndarray:
    loss = case.losskit_loss(reduction=reduction, dtype="float64", **kwargs)
    if library == "torch":
        pred = torch.tensor(y_pred, dtype=torch.float64, requires_grad=True)
        weight = None if sample_weight is None else torch.as_tensor(sample_weight)
        loss(torch.as_tensor(y_true), pred, weight).sum().backward()
        assert pred.grad is not None
        return pred.grad.numpy()

    def scalar(p: Any) -> Any:
        weight = None if sample_weight is None else jnp.asarray(sample_weight)
        return jnp.sum(loss(jnp.asarray(y_true), p, weight))

    return np.asarray(jax.grad(scalar)(jnp.asarray(y_pred, dtype=jnp.float64)))


@pytest.mark.parametrize("library", ["torch", "jax"])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradient_matches_keras(case: Case, reduction: str, library: str) -> None:
    shape = (5, 4, 3)
    y_true, y_pred = case_inputs(case, shape, seed=11)
    loss_shape = per_sample_shape(case, shape)
    weight = np.random.default_rng(5).uniform(0.1, 2.0, size=loss_shape or (5,))
    expected = keras_class_gradient(case, y_true, y_pred, weight, reduction)
    actual = losskit_gradient(case, library, y_true, y_pred, weight, reduction)
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12)


def _edge_case(loss: str, **kwargs: Any) -> Case:
    return next(c for c in CASES if c.loss == loss and c.kwargs == kwargs)


EDGES = {
    # A zero vector in either argument: Keras 3.15 gives NaN gradients here.
    "cosine_zero_vectors": (
        _edge_case("CosineSimilarity"),
        np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]),
        np.array([[1.0, -1.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
    ),
    "mape_zero_targets": (
        _edge_case("MeanAbsolutePercentageError"),
        np.array([[0.0, 1.0], [0.0, 0.0]]),
        np.array([[0.5, 1.0], [-2.0, 0.0]]),
    ),
    "msle_negatives": (
        _edge_case("MeanSquaredLogarithmicError"),
        np.array([[-1.0, 2.0], [0.0, -3.0]]),
        np.array([[-0.5, -2.0], [-1.0, 0.0]]),
    ),
    "kl_zero_targets_and_predictions": (
        _edge_case("KLDivergence"),
        np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]),
        np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
    ),
    "bce_saturated_probabilities": (
        _edge_case("BinaryCrossentropy"),
        np.array([[0.0, 1.0, 1.0, 0.0]]),
        np.array([[0.0, 1.0, 0.0, 1.0]]),
    ),
    "bce_huge_logits": (
        _edge_case("BinaryCrossentropy", from_logits=True),
        np.array([[0.0, 1.0, 1.0, 0.0]]),
        np.array([[-1e4, 1e4, -1e4, 1e4]]),
    ),
    "cce_zero_probabilities": (
        _edge_case("CategoricalCrossentropy"),
        np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
        np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]),
    ),
    "cce_huge_logits": (
        _edge_case("CategoricalCrossentropy", from_logits=True),
        np.array([[0.0, 1.0, 0.0]]),
        np.array([[1e4, -1e4, 0.0]]),
    ),
    "sparse_zero_probabilities": (
        _edge_case("SparseCategoricalCrossentropy"),
        np.array([1.0, 0.0]),
        np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]),
    ),
    "sparse_ignored_rows_of_zeros": (
        _edge_case("SparseCategoricalCrossentropy", from_logits=True, ignore_class=1),
        np.array([1.0, 0.0]),
        np.array([[0.0, 0.0, 0.0], [2.0, 1.0, 0.0]]),
    ),
    "log_cosh_huge_errors": (
        _edge_case("LogCosh"),
        np.array([[0.0, 0.0]]),
        np.array([[1e4, -1e4]]),
    ),
    "huber_huge_errors": (
        _edge_case("Huber"),
        np.array([[0.0, 0.0]]),
        np.array([[1e300, -1e300]]),
    ),
}


@pytest.mark.parametrize("library", ["torch", "jax"])
@pytest.mark.parametrize("edge", list(EDGES))
def test_gradient_is_finite_at_the_edges(edge: str, library: str) -> None:
    case, y_true, y_pred = EDGES[edge]
    value = case.losskit_loss(dtype="float64")(y_true, y_pred)
    assert np.isfinite(np.asarray(value))
    gradient = losskit_gradient(case, library, y_true, y_pred)
    assert np.all(np.isfinite(gradient)), gradient


def test_cosine_zero_vector_value_and_gradient() -> None:
    y_true = np.array([[0.0, 0.0], [3.0, 4.0]])
    y_pred = np.array([[1.0, 2.0], [0.0, 0.0]])
    np.testing.assert_array_equal(losskit.cosine_similarity(y_true, y_pred), [0.0, 0.0])
    gradient = losskit_gradient(_edge_case("CosineSimilarity"), "jax", y_true, y_pred)
    # d/dp of -<t/|t|, p/max(|p|, eps)> at p = 0 is -t/(|t| eps) / batch_size.
    np.testing.assert_allclose(gradient[0], [0.0, 0.0])
    np.testing.assert_allclose(gradient[1], -np.array([0.6, 0.8]) / 1e-7 / 2, rtol=1e-6)


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_gradient_of_mask_and_ignore_class(library: str) -> None:
    case = _edge_case("SparseCategoricalCrossentropy", from_logits=True, ignore_class=1)
    y_true = np.array([0.0, 1.0, 2.0, 1.0])
    y_pred = np.random.default_rng(0).normal(size=(4, 3))
    gradient = losskit_gradient(case, library, y_true, y_pred)
    np.testing.assert_array_equal(gradient[[1, 3]], 0.0)
    expected = keras_class_gradient(case, y_true, y_pred)
    np.testing.assert_allclose(gradient, expected, rtol=1e-9, atol=1e-12)
