"""Every loss, with arguments worth testing and valid inputs for it, and the
Keras 3 oracle that computes what each should return.

One table (``CASES``) drives the parity, gradient, dtype and backend tests:
adding a loss adds lines here, not test files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np
from keras.src.losses import loss as keras_loss_module

import losskit

Inputs = tuple[np.ndarray, np.ndarray]


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _one_hot(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    return np.eye(shape[-1])[labels]


def real_pair(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return rng.normal(size=shape) * 2.0, rng.normal(size=shape) * 2.0


def percentage_pair(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    y_true = rng.uniform(0.5, 3.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return y_true, rng.normal(size=shape) * 2.0


def log_pair(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return rng.uniform(-0.5, 4.0, size=shape), rng.uniform(-0.5, 4.0, size=shape)


def sign_pair(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return rng.choice([-1.0, 1.0], size=shape), rng.normal(size=shape)


def binary_score_pair(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return rng.integers(0, 2, size=shape).astype(float), rng.normal(size=shape)


def one_hot_scores(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return _one_hot(rng, shape), rng.normal(size=shape)


def distribution_pair(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return _softmax(rng.normal(size=shape)), _softmax(rng.normal(size=shape))


def count_pair(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return rng.poisson(2.0, size=shape).astype(float), rng.uniform(0.1, 4.0, size=shape)


def binary_probabilities(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return rng.integers(0, 2, size=shape).astype(float), rng.uniform(0.02, 0.98, size=shape)


def binary_logits(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return rng.uniform(0.0, 1.0, size=shape), rng.normal(size=shape) * 3.0


def categorical_probabilities(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return _one_hot(rng, shape), rng.uniform(0.05, 1.0, size=shape)


def categorical_logits(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return _one_hot(rng, shape), rng.normal(size=shape) * 3.0


def sparse_probabilities(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    labels = rng.integers(0, shape[-1], size=shape[:-1]).astype(float)
    return labels, rng.uniform(0.05, 1.0, size=shape)


def sparse_logits(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    labels = rng.integers(0, shape[-1], size=shape[:-1]).astype(float)
    return labels, rng.normal(size=shape) * 3.0


def mask_pair(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
    return rng.integers(0, 2, size=shape).astype(float), rng.uniform(0.0, 1.0, size=shape)


@dataclass(frozen=True)
class Case:
    """One loss class with fixed constructor arguments and an input maker."""

    loss: str
    inputs: Callable[[np.random.Generator, tuple[int, ...]], Inputs]
    kwargs: dict[str, Any] = field(default_factory=dict)
    keras_kwargs: dict[str, Any] | None = None  # where Keras needs others
    keras_function_matches: bool = True  # Keras 3.15's function gives the fixed value

    @property
    def id(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.loss}({args})"

    @property
    def function(self) -> Callable[..., Any]:
        info = next(i for i in losskit.LOSSES if i.cls.__name__ == self.loss)
        return info.function

    def losskit_loss(self, **extra: Any) -> losskit.Loss:
        return getattr(losskit, self.loss)(**self.kwargs, **extra)

    def keras_loss(self, **extra: Any) -> Any:
        kwargs = self.kwargs if self.keras_kwargs is None else self.keras_kwargs
        return getattr(keras.losses, self.loss)(**kwargs, **extra)

    def keras_function(self, y_true: Any, y_pred: Any) -> Any:
        kwargs = self.kwargs if self.keras_kwargs is None else self.keras_kwargs
        name = self.function.__name__
        return getattr(keras.losses, name)(y_true, y_pred, **kwargs)


CASES: tuple[Case, ...] = (
    Case("MeanSquaredError", real_pair),
    Case("MeanAbsoluteError", real_pair),
    Case("MeanAbsolutePercentageError", percentage_pair),
    Case("MeanSquaredLogarithmicError", log_pair),
    Case("CosineSimilarity", real_pair),
    Case("Huber", real_pair),
    Case("Huber", real_pair, {"delta": 0.5}),
    Case("LogCosh", real_pair),
    Case("Hinge", sign_pair),
    Case("Hinge", binary_score_pair),
    Case("SquaredHinge", sign_pair),
    Case("SquaredHinge", binary_score_pair),
    Case("CategoricalHinge", one_hot_scores),
    Case("KLDivergence", distribution_pair),
    Case("Poisson", count_pair),
    Case("BinaryCrossentropy", binary_probabilities),
    Case("BinaryCrossentropy", binary_logits, {"from_logits": True}),
    Case("BinaryCrossentropy", binary_probabilities, {"label_smoothing": 0.2}),
    Case("CategoricalCrossentropy", categorical_probabilities),
    Case("CategoricalCrossentropy", categorical_logits, {"from_logits": True}),
    Case(
        "CategoricalCrossentropy",
        categorical_logits,
        {"from_logits": True, "label_smoothing": 0.1},
    ),
    Case("SparseCategoricalCrossentropy", sparse_probabilities),
    Case("SparseCategoricalCrossentropy", sparse_logits, {"from_logits": True}),
    Case(
        "SparseCategoricalCrossentropy",
        sparse_logits,
        {"from_logits": True, "ignore_class": 1},
    ),
    Case("Dice", mask_pair),
    Case("Tversky", mask_pair),
    # Keras 3.15 swaps alpha and beta: its Tversky(alpha=b, beta=a) is the fixed
    # Tversky(alpha=a, beta=b).
    Case(
        "Tversky",
        mask_pair,
        {"alpha": 0.7, "beta": 0.2},
        keras_kwargs={"alpha": 0.2, "beta": 0.7},
    ),
)

REGRESSION_LIKE = {c.loss for c in CASES[:8]}


def sample_shape(case: Case, rank: int = 2) -> tuple[int, ...]:
    """A small input shape of the given rank (classes last)."""
    return (5, 4, 3)[:rank] if rank <= 3 else (3, 2, 2, 3)


def case_inputs(case: Case, shape: tuple[int, ...], seed: int) -> Inputs:
    rng = np.random.default_rng(seed)
    y_true, y_pred = case.inputs(rng, shape)
    if case.loss == "SparseCategoricalCrossentropy" and "ignore_class" in case.kwargs:
        y_true = np.where(rng.random(y_true.shape) < 0.3, case.kwargs["ignore_class"], y_true)
    return y_true, y_pred


def per_sample_shape(case: Case, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the per-sample losses the class computes."""
    if case.loss in ("Dice", "Tversky") and case.kwargs.get("axis") is None:
        return ()
    return shape[:-1]


# --- the oracle -------------------------------------------------------------


def keras_class_value(
    case: Case,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sample_weight: np.ndarray | float | None = None,
    reduction: str | None = "sum_over_batch_size",
    dtype: str = "float64",
) -> np.ndarray:
    loss = case.keras_loss(reduction=reduction, dtype=dtype)
    value = loss(jnp.asarray(y_true), jnp.asarray(y_pred), sample_weight=_jax(sample_weight))
    return np.asarray(value)


def keras_class_gradient(
    case: Case,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sample_weight: np.ndarray | float | None = None,
    reduction: str | None = "sum_over_batch_size",
) -> np.ndarray:
    loss = case.keras_loss(reduction=reduction, dtype="float64")

    def scalar(p: Any) -> Any:
        return jnp.sum(loss(jnp.asarray(y_true), p, sample_weight=_jax(sample_weight)))

    return np.asarray(jax.grad(scalar)(jnp.asarray(y_pred, dtype=jnp.float64)))


def keras_reduce(
    values: np.ndarray,
    sample_weight: Any = None,
    mask: Any = None,
    reduction: str | None = "sum_over_batch_size",
) -> np.ndarray:
    """Keras's own reduction routine, the oracle for masks."""
    result = keras_loss_module.reduce_weighted_values(
        jnp.asarray(values),
        sample_weight=_jax(sample_weight),
        mask=_jax(mask),
        reduction=reduction,
        dtype="float64",
    )
    return np.asarray(result)


def _jax(x: Any) -> Any:
    return None if x is None else jnp.asarray(x)
