"""Every example value printed in the specification (../shared/seeds/) holds."""

from __future__ import annotations

import numpy as np
import pytest

import losskit

DICE_TRUE = [[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]]
DICE_PRED = [[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]]


def test_cosine_similarity_example() -> None:
    y_true = [[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    y_pred = [[1.0, 0.0], [1.0, 1.0], [-1.0, -1.0]]
    loss = losskit.cosine_similarity(y_true, y_pred, axis=-1)
    np.testing.assert_array_equal(loss, np.array([-0.0, -0.99999994, 0.99999994], "float32"))


def test_huber_example() -> None:
    y_true = [[0, 1], [0, 0]]
    y_pred = [[0.6, 0.4], [0.4, 0.6]]
    assert float(np.mean(losskit.huber(y_true, y_pred))) == pytest.approx(0.155, abs=5e-7)
    assert float(losskit.Huber()(y_true, y_pred)) == pytest.approx(0.155, abs=5e-7)


def test_log_cosh_example() -> None:
    y_true = [[0.0, 1.0], [0.0, 0.0]]
    y_pred = [[1.0, 1.0], [0.0, 0.0]]
    assert round(float(np.mean(losskit.log_cosh(y_true, y_pred))), 3) == 0.108
    assert round(float(losskit.LogCosh()(y_true, y_pred)), 3) == 0.108


def test_dice_examples() -> None:
    loss = losskit.dice(DICE_TRUE, DICE_PRED, axis=(1, 2, 3))
    assert loss.shape == (2,)
    np.testing.assert_allclose(loss, [0.5, 0.75757575], rtol=1e-7)
    loss = losskit.dice(DICE_TRUE, DICE_PRED)
    assert loss.shape == ()
    np.testing.assert_allclose(loss, 0.6164384, rtol=1e-7)
    loss = losskit.Dice(axis=(1, 2, 3), reduction=None)(np.array(DICE_TRUE), np.array(DICE_PRED))
    assert loss.shape == (2,)
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss, [0.5, 0.75757575], rtol=1e-7)


@pytest.mark.parametrize(
    "function",
    [
        losskit.mean_squared_error,
        losskit.mean_absolute_error,
        losskit.mean_squared_logarithmic_error,
    ],
)
def test_random_integer_label_examples_have_documented_shape(function: object) -> None:
    y_true = np.random.randint(0, 2, size=(2, 3))
    y_pred = np.random.random(size=(2, 3))
    loss = function(y_true, y_pred)  # type: ignore[operator]
    assert loss.shape == (2,)


def test_mape_example_shape() -> None:
    y_true = np.random.random(size=(2, 3))
    y_pred = np.random.random(size=(2, 3))
    assert losskit.mean_absolute_percentage_error(y_true, y_pred).shape == (2,)


def test_tversky_with_half_weights_is_dice() -> None:
    # Equal up to epsilon: Dice adds eps to 2 * (tp + (fp + fn) / 2), Tversky to half of it.
    y_true, y_pred = np.array(DICE_TRUE), np.array(DICE_PRED)
    np.testing.assert_allclose(
        losskit.tversky(y_true, y_pred, axis=(1, 2, 3)),
        losskit.dice(y_true, y_pred, axis=(1, 2, 3)),
        rtol=1e-7,
    )


def test_r_interface_names_resolve() -> None:
    # The R interface's loss_* functions by their snake-case names.
    for name in [
        "mean_squared_error",
        "mean_absolute_error",
        "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error",
        "squared_hinge",
        "hinge",
        "categorical_hinge",
        "logcosh",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "kullback_leibler_divergence",
        "poisson",
        "cosine_proximity",
        "cosine_similarity",
        "binary_crossentropy",
    ]:
        assert callable(losskit.get(name))


def test_to_categorical_from_the_r_interface() -> None:
    np.testing.assert_array_equal(
        losskit.to_categorical([0, 2], num_classes=None), [[1, 0, 0], [0, 0, 1]]
    )
