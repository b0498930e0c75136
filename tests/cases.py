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
from losskit import spec as spec_module

Inputs = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Case:
    """One loss class with fixed constructor arguments; its inputs are drawn
    from its spec's domain (``losskit.spec.DOMAINS``) unless ``domain`` says
    otherwise."""

    loss: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    keras_kwargs: dict[str, Any] | None = None  # where Keras needs others
    keras_function_matches: bool = True  # Keras 3.15's function gives the fixed value
    domain: str | None = None
    shape: tuple[int, ...] | None = None  # input shape where (rows, columns) does not fit

    @property
    def spec(self) -> spec_module.LossSpec:
        found = next((s for s in spec_module.SPECS if s.cls.__name__ == self.loss), None)
        assert found is not None, f"no spec for {self.loss}"
        return found

    def inputs(self, rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
        domain = self.domain or self.spec.input_domain(self.kwargs)
        return spec_module.DOMAINS[domain](rng, shape)

    @property
    def id(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.loss}({args})"

    @property
    def function(self) -> Callable[..., Any]:
        return self.spec.function

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
    Case("MeanSquaredError"),
    Case("MeanAbsoluteError"),
    Case("MeanAbsolutePercentageError"),
    Case("MeanSquaredLogarithmicError"),
    Case("CosineSimilarity"),
    Case("Huber"),
    Case("Huber", {"delta": 0.5}),
    Case("LogCosh"),
    Case("Hinge"),
    Case("Hinge", domain="binary_scores"),
    Case("SquaredHinge"),
    Case("SquaredHinge", domain="binary_scores"),
    Case("CategoricalHinge"),
    Case("KLDivergence"),
    Case("Poisson"),
    Case("BinaryCrossentropy"),
    Case("BinaryCrossentropy", {"from_logits": True}),
    Case("BinaryCrossentropy", {"label_smoothing": 0.2}),
    Case("CategoricalCrossentropy"),
    Case("CategoricalCrossentropy", {"from_logits": True}),
    Case("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.1}),
    Case("SparseCategoricalCrossentropy"),
    Case("SparseCategoricalCrossentropy", {"from_logits": True}),
    Case("SparseCategoricalCrossentropy", {"from_logits": True, "ignore_class": 1}),
    Case("Dice"),
    Case("Tversky"),
    # Keras 3.15 swaps alpha and beta: its Tversky(alpha=b, beta=a) is the fixed
    # Tversky(alpha=a, beta=b).
    Case("Tversky", {"alpha": 0.7, "beta": 0.2}, keras_kwargs={"alpha": 0.2, "beta": 0.7}),
    Case("BinaryFocalCrossentropy"),
    Case("BinaryFocalCrossentropy", {"from_logits": True, "gamma": 3.0}),
    Case(
        "BinaryFocalCrossentropy",
        {"apply_class_balancing": True, "alpha": 0.4, "gamma": 1.5, "label_smoothing": 0.1},
    ),
    Case(
        "BinaryFocalCrossentropy",
        {"apply_class_balancing": True, "from_logits": True, "label_smoothing": 0.2},
    ),
    Case("CategoricalFocalCrossentropy"),
    Case("CategoricalFocalCrossentropy", {"from_logits": True, "gamma": 1.0}),
    Case("CategoricalFocalCrossentropy", {"alpha": 0.6, "gamma": 0.5, "label_smoothing": 0.1}),
    Case("CategoricalGeneralizedCrossEntropy", {"q": 0.5}),
    Case("CategoricalGeneralizedCrossEntropy", {"q": 0.8}),
)

REGRESSION_LIKE = {c.loss for c in CASES[:8]}

# Losses whose inputs are not a same-shape (y_true, y_pred) pair with
# independent rows: CTC (labels (batch, max_label_length), logits (batch, time,
# classes)) and Circle (each row's loss depends on the whole batch).  The
# generic same-shape, per-row and streaming tests cannot apply to them;
# tests/test_sequence_losses.py runs the Keras oracle, gradient, reduction,
# dtype, backend, jit and serialisation checks on these cases instead.
STRUCTURED_CASES: tuple[Case, ...] = (
    Case("CTC", shape=(4, 8, 5)),
    Case("Circle", shape=(12, 6)),
    Case("Circle", {"gamma": 256.0, "margin": 0.25}, shape=(12, 6)),
    Case("Circle", {"gamma": 30.0, "remove_diagonal": False}, shape=(12, 6)),
)


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
