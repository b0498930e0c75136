"""Focal and generalized crossentropies: what the generic oracle tests
(``tests/cases.py``) do not cover: per-class ``alpha``, the reductions to
plain crossentropy, argument checks, and where losskit differs from Keras 3.15.1."""

from __future__ import annotations

import jax.numpy as jnp
import keras
import numpy as np
import pytest
import torch

import losskit
from losskit import kernels

RNG = np.random.default_rng(7)
ONE_HOT = np.eye(4)[RNG.integers(0, 4, size=6)]
PROBABILITIES = RNG.uniform(0.05, 1.0, size=(6, 4))
LOGITS = RNG.normal(size=(6, 4)) * 3.0
BINARY = RNG.integers(0, 2, size=(6, 4)).astype(float)


@pytest.mark.parametrize("from_logits", [False, True])
def test_focal_with_gamma_zero_is_the_crossentropy(from_logits: bool) -> None:
    y_pred = LOGITS if from_logits else PROBABILITIES / PROBABILITIES.sum(-1, keepdims=True)
    binary = losskit.binary_focal_crossentropy(
        BINARY, y_pred, gamma=0.0, from_logits=from_logits, label_smoothing=0.1
    )
    expected = losskit.binary_crossentropy(
        BINARY, y_pred, from_logits=from_logits, label_smoothing=0.1
    )
    np.testing.assert_allclose(binary, expected, rtol=1e-12)
    categorical = losskit.categorical_focal_crossentropy(
        ONE_HOT, y_pred, alpha=1.0, gamma=0.0, from_logits=from_logits, label_smoothing=0.1
    )
    expected = losskit.categorical_crossentropy(
        ONE_HOT, y_pred, from_logits=from_logits, label_smoothing=0.1
    )
    np.testing.assert_allclose(categorical, expected, rtol=1e-12)


@pytest.mark.parametrize("from_logits", [False, True])
def test_per_class_alpha_matches_keras(from_logits: bool) -> None:
    y_pred = LOGITS if from_logits else PROBABILITIES
    alpha = [0.1, 0.2, 0.3, 0.4]
    loss = losskit.CategoricalFocalCrossentropy(
        alpha=alpha, gamma=1.5, from_logits=from_logits, dtype="float64", reduction=None
    )
    theirs = keras.losses.CategoricalFocalCrossentropy(
        alpha=alpha, gamma=1.5, from_logits=from_logits, dtype="float64", reduction=None
    )
    expected = np.asarray(theirs(jnp.asarray(ONE_HOT), jnp.asarray(y_pred)))
    np.testing.assert_allclose(loss(ONE_HOT, y_pred), expected, rtol=1e-10)
    assert loss.get_config()["alpha"] == alpha


def test_per_class_alpha_follows_the_class_axis() -> None:
    # Classes on axis 0: each class's weight applies to its row.
    alpha = (0.1, 0.2, 0.3, 0.4)
    along_rows = losskit.categorical_focal_crossentropy(ONE_HOT.T, PROBABILITIES.T, alpha, axis=0)
    along_columns = losskit.categorical_focal_crossentropy(ONE_HOT, PROBABILITIES, alpha)
    np.testing.assert_allclose(along_rows, along_columns, rtol=1e-6)


def test_per_class_alpha_takes_the_reference_path_and_agrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kernels, "MIN_ELEMENTS", 0)
    one = losskit.CategoricalFocalCrossentropy(alpha=0.5, dtype="float64")
    if kernels.available():
        assert kernels.fused_call(one, ONE_HOT, PROBABILITIES, None, None) is not None
    for alpha in ([0.5] * 4, np.full(4, 0.5)):
        per_class = losskit.CategoricalFocalCrossentropy(alpha=alpha, dtype="float64")
        assert kernels.fused_call(per_class, ONE_HOT, PROBABILITIES, None, None) is None
        np.testing.assert_allclose(
            per_class(ONE_HOT, PROBABILITIES), one(ONE_HOT, PROBABILITIES), rtol=1e-12
        )


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: losskit.BinaryFocalCrossentropy(gamma=-1.0), ValueError, "`gamma` must be >= 0"),
        (lambda: losskit.CategoricalFocalCrossentropy(gamma=-0.5), ValueError, "gamma=-0.5"),
        (lambda: losskit.BinaryFocalCrossentropy(gamma="2"), TypeError, "`gamma` must be a real"),
        (lambda: losskit.BinaryFocalCrossentropy(alpha=[0.2, 0.8]), ValueError, "single number"),
        (lambda: losskit.BinaryFocalCrossentropy(alpha=True), TypeError, "`alpha` must be a real"),
        (lambda: losskit.CategoricalFocalCrossentropy(alpha=[]), ValueError, "non-empty 1-D"),
        (lambda: losskit.CategoricalFocalCrossentropy(alpha=[[0.5]]), TypeError, "alpha="),
        (lambda: losskit.CategoricalFocalCrossentropy(alpha="a"), ValueError, "alpha='a'"),
        (lambda: losskit.CategoricalGeneralizedCrossEntropy(q=0.0), ValueError, r"\(0, 1\)"),
        (lambda: losskit.CategoricalGeneralizedCrossEntropy(q=1.0), ValueError, "q=1.0"),
        (lambda: losskit.CategoricalGeneralizedCrossEntropy(q=-0.2), ValueError, "q=-0.2"),
        (lambda: losskit.CategoricalGeneralizedCrossEntropy(q=None), TypeError, "`q` must be"),
        (lambda: losskit.binary_focal_crossentropy([1.0], [0.5], gamma=-2), ValueError, "gamma"),
        (
            lambda: losskit.categorical_generalized_cross_entropy([1], [[0.5, 0.5]], q=2),
            ValueError,
            "open interval",
        ),
    ],
)
def test_invalid_arguments_are_clear_errors(make: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make()  # type: ignore[operator]


def test_alpha_of_the_wrong_length_names_the_shapes() -> None:
    loss = losskit.CategoricalFocalCrossentropy(alpha=[0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match=r"expected 4 .*received 3.*y_pred.shape=\(6, 4\)"):
        loss(ONE_HOT, PROBABILITIES)


def test_generalized_crossentropy_labels_may_carry_a_class_axis_of_one() -> None:
    labels = RNG.integers(0, 4, size=6)
    loss = losskit.CategoricalGeneralizedCrossEntropy(reduction=None, dtype="float64")
    flat = loss(labels, PROBABILITIES)
    assert flat.shape == (6,)
    np.testing.assert_allclose(loss(labels[:, None], PROBABILITIES), flat)
    np.testing.assert_allclose(flat, (1 - PROBABILITIES[np.arange(6), labels] ** 0.5) / 0.5)


def test_generalized_crossentropy_labels_out_of_range_give_one_over_q() -> None:
    values = losskit.categorical_generalized_cross_entropy([-1, 4], PROBABILITIES[:2], q=0.25)
    np.testing.assert_allclose(values, [4.0, 4.0])


def test_binary_focal_from_logits_keeps_large_logits() -> None:
    # Keras takes the sigmoid, then clips it to [eps, 1 - eps]: past |x| ~ 16
    # its loss saturates at -log(eps) and the gradient vanishes.  losskit
    # works from log-sigmoid: the loss keeps growing and the gradient is -1.
    prediction = torch.tensor([[-40.0]], dtype=torch.float64, requires_grad=True)
    loss = losskit.BinaryFocalCrossentropy(from_logits=True, gamma=2.0, dtype="float64")
    value = loss(torch.tensor([[1.0]], dtype=torch.float64), prediction)
    value.backward()
    assert float(value.detach()) == pytest.approx(40.0, rel=1e-12)
    assert prediction.grad is not None
    assert float(prediction.grad) == pytest.approx(-1.0, rel=1e-12)
