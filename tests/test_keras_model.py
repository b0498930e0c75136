"""A Keras model compiled with a losskit loss trains to the same weights as
with Keras's own loss (Keras on its JAX backend, so losskit runs on traced JAX
arrays inside ``jax.jit``)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

import losskit


def _train(
    loss: Any, x: np.ndarray, y: np.ndarray, sample_weight: Any, outputs: int
) -> list[np.ndarray]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(outputs),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss=loss)
    model.fit(
        x,
        y,
        sample_weight=sample_weight,
        batch_size=16,
        epochs=3,
        shuffle=False,
        verbose=0,
    )
    return [np.asarray(w) for w in model.get_weights()]


PAIRS = [
    (
        "mse_class",
        lambda: losskit.MeanSquaredError(),
        lambda: keras.losses.MeanSquaredError(),
        "regression",
        False,
    ),
    (
        "huber_class",
        lambda: losskit.Huber(delta=0.5),
        lambda: keras.losses.Huber(delta=0.5),
        "regression",
        False,
    ),
    (
        "log_cosh_function_weighted",
        lambda: losskit.log_cosh,
        lambda: keras.losses.log_cosh,
        "regression",
        True,
    ),
    (
        "mape_function_weighted",
        lambda: losskit.mean_absolute_percentage_error,
        lambda: keras.losses.mean_absolute_percentage_error,
        "regression",
        True,
    ),
    (
        "cce_logits_class",
        lambda: losskit.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        lambda: keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        "classification",
        False,
    ),
    (
        "sparse_function_weighted",
        lambda: losskit.sparse_categorical_crossentropy,
        lambda: keras.losses.sparse_categorical_crossentropy,
        "sparse",
        True,
    ),
]


@pytest.mark.parametrize(
    ("name", "ours", "theirs", "task", "weighted"), PAIRS, ids=[p[0] for p in PAIRS]
)
def test_model_trains_to_the_same_weights(
    name: str, ours: Any, theirs: Any, task: str, weighted: bool
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    if task == "regression":
        y = (x @ rng.normal(size=(5, 2)) + 0.1 * rng.normal(size=(64, 2))).astype("float32")
        outputs = 2
    elif task == "classification":
        y = np.eye(3, dtype="float32")[rng.integers(0, 3, size=64)]
        outputs = 3
    else:
        y = rng.integers(0, 3, size=(64, 1)).astype("float32")
        outputs = 3
    sample_weight = rng.uniform(0.2, 2.0, size=64).astype("float32") if weighted else None
    expected = _train(theirs(), x, y, sample_weight, outputs)
    actual = _train(ours(), x, y, sample_weight, outputs)
    for a, e in zip(actual, expected, strict=False):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected[0], _initial_kernel(x.shape[1])), "the model did not train"


def _initial_kernel(inputs: int) -> np.ndarray:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(8, activation="tanh")])
    return np.asarray(model.get_weights()[0])
