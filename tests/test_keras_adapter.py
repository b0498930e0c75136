"""losskit inside Keras (``losskit.keras``): compiled models give Keras's own
numbers with sample weights, class weights and masks, for every built-in loss;
a loss object passed to ``compile`` directly warns where Keras would reweight
it; models save and load; the metric equals the loss.

The oracle is the same model compiled with the ``keras.losses`` class of the
same name, on Keras's JAX backend (set in ``conftest.py``); one test runs the
same scenarios, built-in losses, metric and saved model on Keras's torch
backend, in one subprocess (``_torch_backend_results``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import losskit  # noqa: E402
from losskit.keras import (  # noqa: E402
    KerasLoss,
    KerasMetric,
    ReweightedLossWarning,
    as_keras_loss,
    as_keras_metric,
)
from losskit.registry import LOSSES  # noqa: E402

RTOL = 1e-6  # float32, same operations in the same order up to the per-sample formula
ATOL = 1e-7

# --- models and data -------------------------------------------------------------------


def _dense(inputs: int, outputs: int, activation: str | None = None) -> Any:
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(6, activation="tanh"),
            keras.layers.Dense(outputs, activation=activation),
        ]
    )


VOCAB, STEPS = 9, 5


def _sequence(outputs: int, activation: str | None, recurrent: bool) -> Any:
    """Tokens with 0 as padding -> Embedding(mask_zero) -> per-timestep outputs;
    the mask reaches the loss as y_pred's Keras mask."""
    hidden = (
        keras.layers.LSTM(4, return_sequences=True)
        if recurrent
        else keras.layers.TimeDistributed(keras.layers.Dense(4, activation="tanh"))
    )
    return keras.Sequential(
        [
            keras.Input((STEPS,), dtype="int32"),
            keras.layers.Embedding(VOCAB, 3, mask_zero=True),
            hidden,
            keras.layers.Dense(outputs, activation=activation),
        ]
    )


def _tokens(rng: np.random.Generator, n: int) -> np.ndarray:
    tokens = rng.integers(1, VOCAB, size=(n, STEPS))
    lengths = rng.integers(2, STEPS + 1, size=n)
    tokens[np.arange(STEPS)[None, :] >= lengths[:, None]] = 0  # right padding
    return tokens.astype("int32")


def _run(
    build: Callable[[], Any],
    loss: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    metrics: Any = None,
    weighted_metrics: Any = None,
    epochs: int = 1,
    batch_size: int = 8,
    **fit_kwargs: Any,
) -> dict[str, Any]:
    """Evaluate, train (SGD, no shuffling) and evaluate again from a fixed seed."""
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.1),
        loss=loss,
        metrics=metrics,
        weighted_metrics=weighted_metrics,
    )
    evaluate_kwargs = {k: v for k, v in fit_kwargs.items() if k == "sample_weight"}
    before = model.evaluate(
        x, y, batch_size=batch_size, verbose=0, return_dict=True, **evaluate_kwargs
    )
    history = model.fit(
        x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0, **fit_kwargs
    ).history
    after = model.evaluate(
        x, y, batch_size=batch_size, verbose=0, return_dict=True, **evaluate_kwargs
    )
    return {
        "before": before,
        "history": history,
        "after": after,
        "weights": [np.asarray(w) for w in model.get_weights()],
    }


def _assert_same_run(actual: dict[str, Any], expected: dict[str, Any], what: str = "") -> None:
    """``actual`` (the adapter) trained as ``expected`` (the Keras class); ``what``
    names the case in the failure message."""
    for stage in ("before", "after"):
        np.testing.assert_allclose(
            actual[stage]["loss"],
            expected[stage]["loss"],
            rtol=RTOL,
            err_msg=f"{what}: evaluate() {stage} fit",
        )
    np.testing.assert_allclose(
        actual["history"]["loss"],
        expected["history"]["loss"],
        rtol=RTOL,
        err_msg=f"{what}: fit() history",
    )
    assert len(actual["weights"]) == len(expected["weights"]), f"{what}: number of weights"
    for i, (a, e) in enumerate(zip(actual["weights"], expected["weights"], strict=True)):
        np.testing.assert_allclose(
            a, e, rtol=RTOL, atol=ATOL, err_msg=f"{what}: trained weights[{i}]"
        )
    # The comparison means something only if training moved the loss.
    assert expected["after"]["loss"] != pytest.approx(expected["before"]["loss"], rel=1e-4), (
        f"{what}: training did not change the loss"
    )


def _jsonable(run: dict[str, Any]) -> dict[str, Any]:
    """A :func:`_run` result as JSON (float32 values survive exactly)."""
    return {
        "before": {k: float(v) for k, v in run["before"].items()},
        "history": {k: [float(v) for v in vs] for k, vs in run["history"].items()},
        "after": {k: float(v) for k, v in run["after"].items()},
        "weights": [np.asarray(w).tolist() for w in run["weights"]],
    }


# --- weights, class weights and masks in compile / fit / evaluate --------------------------


SCENARIOS: dict[str, Callable[[], dict[str, Any]]] = {}


def _scenario(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    SCENARIOS[fn.__name__] = fn
    return fn


@_scenario
def mse_sample_weight() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 4)).astype("float32")
    return {
        "build": lambda: _dense(4, 3),
        "x": x,
        "y": rng.normal(size=(20, 3)).astype("float32"),
        "ours": losskit.MeanSquaredError(),
        "theirs": keras.losses.MeanSquaredError(),
        "fit": {"sample_weight": rng.uniform(0.0, 3.0, size=20).astype("float32")},
    }


@_scenario
def mae_mean_with_sample_weight() -> dict[str, Any]:
    # The losskit loss's reduction is the one Keras applies.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 4)).astype("float32")
    return {
        "build": lambda: _dense(4, 3),
        "x": x,
        "y": rng.normal(size=(20, 3)).astype("float32"),
        "ours": losskit.MeanAbsoluteError(reduction="mean_with_sample_weight"),
        "theirs": keras.losses.MeanAbsoluteError(reduction="mean_with_sample_weight"),
        "fit": {"sample_weight": rng.uniform(0.0, 3.0, size=20).astype("float32")},
    }


@_scenario
def huber_sum_sample_weight() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 4)).astype("float32")
    return {
        "build": lambda: _dense(4, 2),
        "x": x,
        "y": (2.0 * rng.normal(size=(20, 2))).astype("float32"),
        "ours": losskit.Huber(delta=0.5, reduction="sum"),
        "theirs": keras.losses.Huber(delta=0.5, reduction="sum"),
        "fit": {"sample_weight": rng.uniform(0.0, 3.0, size=20).astype("float32")},
    }


@_scenario
def sparse_class_weight() -> dict[str, Any]:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 4)).astype("float32")
    return {
        "build": lambda: _dense(4, 3, "softmax"),
        "x": x,
        "y": rng.integers(0, 3, size=(20, 1)).astype("int32"),
        "ours": "SparseCategoricalCrossentropy",  # a registry name
        "theirs": keras.losses.SparseCategoricalCrossentropy(),
        "fit": {"class_weight": {0: 1.0, 1: 3.0, 2: 0.25}},
    }


@_scenario
def sparse_sample_weight() -> dict[str, Any]:
    rng = np.random.default_rng(12)
    x = rng.normal(size=(20, 4)).astype("float32")
    return {
        "build": lambda: _dense(4, 3, "softmax"),
        "x": x,
        "y": rng.integers(0, 3, size=(20,)).astype("int32"),
        "ours": losskit.SparseCategoricalCrossentropy(),
        "theirs": keras.losses.SparseCategoricalCrossentropy(),
        "fit": {"sample_weight": rng.uniform(0.0, 3.0, size=20).astype("float32")},
    }


@_scenario
def masked_lstm_mse() -> dict[str, Any]:
    rng = np.random.default_rng(5)
    x = _tokens(rng, 16)
    return {
        "build": lambda: _sequence(2, None, recurrent=True),
        "x": x,
        "y": rng.normal(size=(16, STEPS, 2)).astype("float32"),
        "ours": losskit.mean_squared_error,  # a per-sample function
        "theirs": keras.losses.MeanSquaredError(),
        "fit": {"sample_weight": rng.uniform(0.5, 2.0, size=(16, STEPS)).astype("float32")},
    }


@_scenario
def masked_sparse_ignore_class() -> dict[str, Any]:
    # Keras's mask (padding) and the loss's own (ignore_class) combine.
    rng = np.random.default_rng(6)
    x = _tokens(rng, 16)
    return {
        "build": lambda: _sequence(4, "softmax", recurrent=False),
        "x": x,
        "y": rng.integers(0, 4, size=(16, STEPS)).astype("int32"),
        "ours": losskit.SparseCategoricalCrossentropy(ignore_class=3),
        "theirs": keras.losses.SparseCategoricalCrossentropy(ignore_class=3),
        "fit": {"sample_weight": rng.uniform(0.5, 2.0, size=(16, 1)).astype("float32")},
    }


def _per_timestep(weights: np.ndarray) -> np.ndarray:
    """``(N, 1)`` sequence weights as the same weights of shape ``(N, STEPS)``.

    Keras 3.15.1's torch backend cannot combine narrower weights with a mask:
    ``apply_mask`` multiplies in place (``sample_weight *= float_mask``), and torch
    refuses to broadcast ``(N, 1)`` up to the mask's ``(N, STEPS)`` in place
    ("output with shape [N, 1] doesn't match the broadcast shape"), with
    ``keras.losses`` classes as with the adapter.  On JAX the weights broadcast.
    """
    if weights.ndim == 2 and weights.shape[1] == 1:
        return np.ascontiguousarray(np.broadcast_to(weights, (len(weights), STEPS)))
    return weights


def _scenario_runs(
    name: str, per_timestep_weights: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scenario trained with the adapter and with the Keras class (with
    ``per_timestep_weights``, sequence weights widened by :func:`_per_timestep`)."""
    case = SCENARIOS[name]()
    fit = dict(case["fit"])
    if per_timestep_weights and "sample_weight" in fit:
        fit["sample_weight"] = _per_timestep(fit["sample_weight"])
    expected = _run(case["build"], case["theirs"], case["x"], case["y"], **fit)
    loss = as_keras_loss(case["ours"])
    assert isinstance(loss, keras.losses.Loss)
    assert loss.name == case["theirs"].name
    assert loss.reduction == case["theirs"].reduction
    actual = _run(case["build"], loss, case["x"], case["y"], **fit)
    return actual, expected


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_compiled_adapter_gives_keras_numbers(name: str) -> None:
    _assert_same_run(*_scenario_runs(name), what=name)


# --- every built-in loss ------------------------------------------------------------------


def _targets(name: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str | None, int]:
    """Valid targets for each loss, the output activation and the output size."""
    k = 3
    if name in ("MeanAbsolutePercentageError", "MeanSquaredLogarithmicError"):
        return rng.uniform(0.5, 2.0, size=(n, k)), None, k
    if name in ("Dice", "Tversky", "BinaryCrossentropy", "BinaryFocalCrossentropy"):
        return rng.integers(0, 2, size=(n, k)).astype(float), "sigmoid", k
    if name == "Hinge":
        return rng.choice([-1.0, 1.0], size=(n, k)), None, k
    if name == "SquaredHinge":  # 0/1 labels, converted to -1/1 by the loss
        return rng.integers(0, 2, size=(n, k)).astype(float), None, k
    if name in ("CategoricalHinge", "CategoricalCrossentropy", "CategoricalFocalCrossentropy"):
        activation = None if name == "CategoricalHinge" else "softmax"
        return np.eye(k)[rng.integers(0, k, size=n)], activation, k
    if name == "KLDivergence":
        logits = rng.normal(size=(n, k))
        return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), "softmax", k
    if name == "Poisson":
        return rng.poisson(1.5, size=(n, k)).astype(float), "softplus", k
    if name == "SparseCategoricalCrossentropy":
        return rng.integers(0, k, size=(n, 1)), "softmax", k
    if name == "CategoricalGeneralizedCrossEntropy":  # (n,): Keras 3.15 mis-broadcasts (n, 1)
        return rng.integers(0, k, size=n).astype(float), "softmax", k
    return rng.normal(size=(n, k)), None, k  # MSE, MAE, cosine, Huber, log-cosh


Structured = tuple[np.ndarray, Callable[[], Any]]


def _ctc_targets(rng: np.random.Generator, n: int) -> Structured:
    """Labels (n, 3) in [1, 3) padded with 0; logits (n, 4 steps, 3 classes)."""
    labels = rng.integers(1, 3, size=(n, 3))
    y = np.where(np.arange(3) < rng.integers(1, 3, size=(n, 1)), labels, 0).astype("float32")

    def build() -> Any:
        dense = _dense(4, 12)
        return keras.Sequential([dense, keras.layers.Reshape((4, 3))])

    return y, build


def _circle_targets(rng: np.random.Generator, n: int) -> Structured:
    """Labels (n,) of 3 classes; unit-normalised embeddings (n, 3)."""

    def build() -> Any:
        return keras.Sequential([_dense(4, 3), keras.layers.UnitNormalization()])

    return rng.integers(0, 3, size=n).astype("float32"), build


# Losses whose targets and outputs are not (n, k) pairs.
STRUCTURED_TARGETS = {"CTC": _ctc_targets, "Circle": _circle_targets}


# Known documented deviations (README "Differences from Keras 3.15") do not show
# with the defaults used here: Tversky's alpha/beta swap needs alpha != beta (the
# default is 0.5/0.5), the cosine clamp changes only gradients at zero vectors,
# and the config fixes do not change values.
def _builtin_runs(info: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two epochs of 12 samples in batches of 5, 5 and 2, with sample weights, with
    the adapter around the losskit class and with the Keras class of its name."""
    name = info.cls.__name__
    rng = np.random.default_rng(sum(map(ord, name)))
    n = 12
    x = rng.normal(size=(n, 4)).astype("float32")
    if name in STRUCTURED_TARGETS:
        y, build = STRUCTURED_TARGETS[name](rng, n)
    else:
        y, activation, k = _targets(name, rng, n)
        y = y.astype("int32" if name.startswith("Sparse") else "float32")

        def build() -> Any:
            return _dense(4, k, activation)

    fit = {"sample_weight": rng.uniform(0.5, 2.0, size=n).astype("float32")}

    expected = _run(build, getattr(keras.losses, name)(), x, y, batch_size=5, epochs=2, **fit)
    actual = _run(build, as_keras_loss(info.cls()), x, y, batch_size=5, epochs=2, **fit)
    return actual, expected


@pytest.mark.parametrize("info", LOSSES, ids=lambda info: info.cls.__name__)
def test_every_builtin_loss_trains_like_keras(info: Any) -> None:
    _assert_same_run(*_builtin_runs(info), what=info.cls.__name__)


# --- a loss object passed to compile directly ---------------------------------------------


def _evaluate(loss: Any, sample_weight: Any = None, metrics: Any = None) -> dict[str, float]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(10, 4)).astype("float32")
    y = rng.normal(size=(10, 2)).astype("float32")
    keras.utils.set_random_seed(0)
    model = _dense(4, 2)
    model.compile(loss=loss, metrics=metrics)
    result: dict[str, float] = model.evaluate(
        x, y, sample_weight=sample_weight, batch_size=10, verbose=0, return_dict=True
    )
    return result


WEIGHTS = np.linspace(0.0, 2.0, 10).astype("float32") ** 2


def test_direct_class_with_weights_warns_and_shows_the_reweighted_value() -> None:
    with pytest.warns(ReweightedLossWarning, match=r"as_keras_loss\(loss\)"):
        direct = _evaluate(losskit.MeanSquaredError(), WEIGHTS)["loss"]
    keras_value = _evaluate(keras.losses.MeanSquaredError(), WEIGHTS)["loss"]
    unweighted = _evaluate(keras.losses.MeanSquaredError())["loss"]
    # Keras multiplied the already reduced loss by the weights and averaged:
    # mean(w) * loss, which is what the warning is about.
    np.testing.assert_allclose(direct, unweighted * WEIGHTS.mean(), rtol=RTOL)
    assert abs(direct - keras_value) > 1e-3 * keras_value
    np.testing.assert_allclose(
        _evaluate(as_keras_loss(losskit.MeanSquaredError()), WEIGHTS)["loss"],
        keras_value,
        rtol=RTOL,
    )


def test_direct_class_without_weights_is_silent_and_exact() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReweightedLossWarning)
        direct = _evaluate(losskit.MeanSquaredError())["loss"]
        # reduction="none" returns per-sample values: Keras weights those right.
        unreduced = _evaluate(losskit.MeanSquaredError(reduction="none"), WEIGHTS)["loss"]
    np.testing.assert_allclose(
        direct, _evaluate(keras.losses.MeanSquaredError())["loss"], rtol=RTOL
    )
    np.testing.assert_allclose(
        unreduced, _evaluate(keras.losses.MeanSquaredError(), WEIGHTS)["loss"], rtol=RTOL
    )


def test_direct_class_as_metric_warns() -> None:
    with pytest.warns(ReweightedLossWarning, match=r"as_keras_metric\(loss\)"):
        _evaluate("mse", metrics=[losskit.MeanAbsoluteError()])


def test_losskit_outside_keras_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReweightedLossWarning)
        value = losskit.MeanSquaredError()(np.zeros((2, 2)), np.ones((2, 2)), sample_weight=[1, 0])
    assert float(value) == 0.5


# --- saving -------------------------------------------------------------------------------


def _saved_model_round_trip(path: Path, per_timestep_weights: bool = False) -> dict[str, Any]:
    """Train a masked model with the adapter (loss and metric), save it to ``path``
    and load it back without ``custom_objects``: both evaluations, and what the
    loaded model's loss is (``per_timestep_weights``: see :func:`_per_timestep`)."""
    rng = np.random.default_rng(8)
    x = _tokens(rng, 12)
    y = rng.integers(0, 4, size=(12, STEPS)).astype("int32")
    w = rng.uniform(0.5, 2.0, size=(12, 1)).astype("float32")
    if per_timestep_weights:
        w = _per_timestep(w)
    keras.utils.set_random_seed(0)
    model = _sequence(4, "softmax", recurrent=False)
    model.compile(
        optimizer="sgd",
        loss=as_keras_loss(losskit.SparseCategoricalCrossentropy(ignore_class=3)),
        weighted_metrics=[as_keras_metric("sparse_categorical_crossentropy", name="plain")],
    )
    model.fit(x, y, epochs=1, verbose=0)
    expected = model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    model.save(path)

    loaded = keras.models.load_model(path)
    actual = loaded.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    return {
        "expected": {k: float(v) for k, v in expected.items()},
        "actual": {k: float(v) for k, v in actual.items()},
        "loss_class": type(loaded.loss).__name__,
        "config": loaded.loss.loss.get_config() if isinstance(loaded.loss, KerasLoss) else None,
    }


def _assert_saved_round_trip(result: dict[str, Any], what: str = "saved model") -> None:
    assert result["loss_class"] == "KerasLoss", f"{what}: the loaded loss"
    assert result["config"] == {
        "name": "sparse_categorical_crossentropy",
        "reduction": "sum_over_batch_size",
        "dtype": "float32",
        "from_logits": False,
        "ignore_class": 3,
        "axis": -1,
    }, f"{what}: the loaded loss's config"
    expected, actual = result["expected"], result["actual"]
    assert actual.keys() == expected.keys(), f"{what}: evaluate() keys"
    for key in expected:
        np.testing.assert_allclose(
            actual[key], expected[key], rtol=RTOL, err_msg=f"{what}: evaluate() {key!r}"
        )


def test_model_saves_and_loads_without_custom_objects(tmp_path: Path) -> None:
    _assert_saved_round_trip(_saved_model_round_trip(tmp_path / "m.keras"))


def test_configs_round_trip_with_custom_objects() -> None:
    class MeanFourthPower(losskit.Loss):
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return ((y_true - y_pred) ** 4).mean(axis=-1)

    loss = as_keras_loss(MeanFourthPower(reduction="sum", name="fourth"))
    metric = as_keras_metric(losskit.Tversky(alpha=0.7, beta=0.3), name="tv", dtype="float64")
    with keras.saving.custom_object_scope({"MeanFourthPower": MeanFourthPower}):
        loss_copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    metric_copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(loss_copy.loss) is MeanFourthPower
    assert (loss_copy.name, loss_copy.reduction) == ("fourth", "sum")
    assert isinstance(metric_copy, KerasMetric)
    assert (metric_copy.name, metric_copy.dtype) == ("tv", "float64")
    assert metric_copy.loss.get_config() == losskit.Tversky(alpha=0.7, beta=0.3).get_config()


def _dense_model_saved(path: Path, loss: Any) -> Any:
    """A one-layer model compiled with ``loss``, saved to ``path`` and loaded
    back without ``custom_objects``: the loaded model's loss."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=loss)
    model.save(path)
    return keras.models.load_model(path).loss


def test_objects_registered_with_keras_load_through_the_adapters(tmp_path: Path) -> None:
    """Keras keys a registered object as ``package>name``; the adapters'
    configs name it bare.  A registered function and a registered losskit
    class wrapped by ``as_keras_loss`` (or ``as_keras_metric``) load without
    ``custom_objects`` (they failed: "Unknown loss function 'lk_abs_error'")."""

    @keras.saving.register_keras_serializable(package="losskit_tests_fn")
    def lk_abs_error(y_true: Any, y_pred: Any) -> Any:
        return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)

    @keras.saving.register_keras_serializable(package="losskit_tests_cls")
    class LkDoubledError(losskit.Loss):
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return 2.0 * losskit.mean_squared_error(y_true, y_pred)

    loaded = _dense_model_saved(tmp_path / "fn.keras", as_keras_loss(lk_abs_error))
    assert loaded.loss.fn is lk_abs_error
    loaded = _dense_model_saved(tmp_path / "cls.keras", as_keras_loss(LkDoubledError()))
    assert type(loaded.loss) is LkDoubledError
    metric = as_keras_metric(LkDoubledError())
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(copy.loss) is LkDoubledError


def test_a_name_registered_by_two_packages_asks_for_custom_objects() -> None:
    for package in ("losskit_tests_a", "losskit_tests_b"):

        @keras.saving.register_keras_serializable(package=package, name="LkTwice")
        class LkTwice(losskit.Loss):
            def call(self, y_true: Any, y_pred: Any) -> Any:
                return losskit.mean_squared_error(y_true, y_pred)

    config = keras.saving.serialize_keras_object(as_keras_loss(LkTwice()))
    with pytest.raises(ValueError, match=r"'LkTwice' is registered with Keras by several"):
        keras.saving.deserialize_keras_object(config)


def test_a_loss_object_given_to_compile_loads(tmp_path: Path) -> None:
    """losskit's classes are registered with Keras, so a model compiled with
    the object itself loads again ("Could not locate class 'Huber'"), its
    arguments kept."""
    loaded = _dense_model_saved(tmp_path / "m.keras", losskit.Huber(delta=0.3))
    assert type(loaded) is losskit.Huber
    assert loaded.get_config() == losskit.Huber(delta=0.3).get_config()


# --- the metric -----------------------------------------------------------------------------


def _metric_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(9)
    x = rng.normal(size=(10, 4)).astype("float32")
    y = rng.normal(size=(10, 3)).astype("float32")
    w = rng.uniform(0.0, 3.0, size=10).astype("float32")
    return x, y, w


def _metric_run() -> dict[str, Any]:
    """MSE with sample weights, and the metrics of it and of Dice, over 10 samples
    in batches of 4: unequal batches, as Keras's loss tracker weights them."""
    x, y, w = _metric_data()
    return _run(
        lambda: _dense(4, 3),
        as_keras_loss("mse"),
        x,
        y,
        batch_size=4,
        metrics=[as_keras_metric("mse", name="unweighted")],
        weighted_metrics=[
            as_keras_metric(losskit.MeanSquaredError(), name="weighted"),
            as_keras_metric(losskit.Dice(), name="dice"),
        ],
        sample_weight=w,
    )


def _assert_metric_equals_loss(run: dict[str, Any]) -> None:
    for stage in ("before", "after"):
        np.testing.assert_allclose(
            run[stage]["weighted"],
            run[stage]["loss"],
            rtol=RTOL,
            err_msg=f"weighted MSE metric: evaluate() {stage} fit",
        )
    np.testing.assert_allclose(
        run["history"]["weighted"],
        run["history"]["loss"],
        rtol=RTOL,
        err_msg="weighted MSE metric: fit() history",
    )


def test_metric_equals_the_loss_in_fit_and_evaluate() -> None:
    _assert_metric_equals_loss(_metric_run())
    x, y, w = _metric_data()
    # Without weights the unweighted metric is the unweighted loss.
    unweighted = _evaluate_metric_model(x, y, None)
    np.testing.assert_allclose(unweighted["unweighted"], unweighted["loss"], rtol=RTOL)
    # Dice gives one value per batch; the metric counts it per sample, as the
    # loss tracker does: the same number as the Dice loss itself in evaluate.
    for weights in (None, w):
        dice = _evaluate_metric_model(x, y, weights, loss=as_keras_loss(losskit.Dice()))
        np.testing.assert_allclose(dice["dice"], dice["loss"], rtol=RTOL)


def _masked_metric_run() -> dict[str, float]:
    """Weights and a mask from ``ignore_class``: on torch, Keras 3.15 scaled
    the batch's weights in place while computing the loss, and the metric got
    them scaled (4.5 against the loss's 3.0)."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2], "int32")
    w = np.array([1.0, 2.0, 1.0, 1.0, 0.5, 1.0], "float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    loss = losskit.SparseCategoricalCrossentropy(ignore_class=0)
    model.compile(loss=as_keras_loss(loss), weighted_metrics=[as_keras_metric(loss, name="m")])
    result: dict[str, float] = model.evaluate(
        x, labels, sample_weight=w, batch_size=6, verbose=0, return_dict=True
    )
    return result


def _assert_masked_metric_equals_loss(run: dict[str, float]) -> None:
    np.testing.assert_allclose(run["m"], run["loss"], rtol=RTOL)


def test_weighted_metric_with_a_mask_equals_the_loss() -> None:
    _assert_masked_metric_equals_loss(_masked_metric_run())


def _evaluate_metric_model(
    x: np.ndarray, y: np.ndarray, w: np.ndarray | None, loss: Any = "mse"
) -> dict[str, float]:
    keras.utils.set_random_seed(0)
    model = _dense(4, 3)
    model.compile(
        loss=loss,
        metrics=[as_keras_metric("mse", name="unweighted")],
        weighted_metrics=[as_keras_metric("dice")],
    )
    result: dict[str, float] = model.evaluate(
        x, y, sample_weight=w, batch_size=4, verbose=0, return_dict=True
    )
    return result


def test_metric_masked_sequence_equals_the_loss() -> None:
    rng = np.random.default_rng(10)
    x = _tokens(rng, 12)
    y = rng.integers(0, 4, size=(12, STEPS)).astype("int32")
    keras.utils.set_random_seed(0)
    model = _sequence(4, "softmax", recurrent=False)
    scce = losskit.SparseCategoricalCrossentropy(ignore_class=1)
    model.compile(loss=as_keras_loss(scce), metrics=[as_keras_metric(scce, name="metric")])
    # One batch: Keras normalises masked losses per batch.
    logs = model.evaluate(x, y, batch_size=12, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["metric"], logs["loss"], rtol=RTOL)
    expected = keras.losses.SparseCategoricalCrossentropy(ignore_class=1)
    keras.utils.set_random_seed(0)
    oracle = _sequence(4, "softmax", recurrent=False)
    oracle.compile(loss=expected)
    np.testing.assert_allclose(
        oracle.evaluate(x, y, batch_size=12, verbose=0), logs["loss"], rtol=RTOL
    )


def test_metric_state_accumulates_merges_and_resets() -> None:
    rng = np.random.default_rng(11)
    y_true = rng.normal(size=(9, 2)).astype("float32")
    y_pred = rng.normal(size=(9, 2)).astype("float32")
    w = rng.uniform(0.0, 2.0, size=9).astype("float32")
    for reduction in ("sum_over_batch_size", "mean_with_sample_weight", "sum"):
        loss = losskit.LogCosh(reduction=reduction)
        whole = float(loss(y_true, y_pred, sample_weight=w))
        first, second = as_keras_metric(loss), as_keras_metric(loss)
        first.update_state(y_true[:4], y_pred[:4], sample_weight=w[:4])
        second.update_state(y_true[4:], y_pred[4:], sample_weight=w[4:])
        first.merge_state([second])
        np.testing.assert_allclose(float(first.result()), whole, rtol=RTOL)
        first.reset_state()
        assert float(first.result()) == 0.0
    # Auto-numbered names (loss_function_wrapper_1, _2) do not prevent merging.
    huber = [as_keras_metric(losskit.LossFunctionWrapper(losskit.huber)) for _ in range(2)]
    huber[0].update_state(y_true[:4], y_pred[:4])
    huber[1].update_state(y_true[4:], y_pred[4:])
    huber[0].merge_state(huber[1:])
    whole = float(losskit.Huber()(y_true, y_pred))
    np.testing.assert_allclose(float(huber[0].result()), whole, rtol=RTOL)
    with pytest.raises(ValueError, match="same loss"):
        as_keras_metric("mse").merge_state([as_keras_metric("mae")])


# --- arguments ---------------------------------------------------------------------------------


def test_resolves_every_kind_of_identifier() -> None:
    assert as_keras_loss("mse").loss.name == "mean_squared_error"
    assert as_keras_loss("Huber").loss.get_config()["delta"] == 1.0
    assert (
        as_keras_loss({"class_name": "Huber", "config": {"delta": 2.0}}).loss.get_config()["delta"]
        == 2.0
    )
    loss = as_keras_loss(losskit.Poisson(dtype="float64", name="p"))
    assert (loss.name, loss.dtype) == ("p", "float64")
    assert as_keras_loss(loss) is loss
    assert as_keras_metric(loss).loss is loss.loss


@pytest.fixture
def keras_float64_and_epsilon() -> Any:
    """Keras's floatx float64 and epsilon 1e-3 for one test (losskit's own
    settings stay float32 and 1e-7)."""
    floatx, epsilon = keras.config.floatx(), keras.config.epsilon()
    keras.config.set_floatx("float64")
    keras.config.set_epsilon(1e-3)
    yield
    keras.config.set_floatx(floatx)
    keras.config.set_epsilon(epsilon)


def test_losses_without_a_dtype_compute_in_keras_floatx(keras_float64_and_epsilon: Any) -> None:
    y_true, y_pred = np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([[0.1, 0.25], [0.3, 0.4 + 1e-9]])
    exact = np.mean((y_true - y_pred) ** 2)
    for identifier in ("mse", "MeanSquaredError", losskit.MeanSquaredError()):
        loss = as_keras_loss(identifier)
        assert (loss.dtype, loss.loss.dtype) == ("float64", "float64")
        value = loss(y_true, y_pred)
        assert value.dtype == "float64"
        # (Keras's own class gives float64 too, but sums in float32: README)
        assert float(value) == pytest.approx(exact, rel=1e-15)
        metric = as_keras_metric(identifier)
        metric.update_state(y_true, y_pred)
        assert float(metric.result()) == pytest.approx(exact, rel=1e-15)
    given = losskit.MeanSquaredError(dtype="float32")
    assert as_keras_loss(given).loss is given
    assert as_keras_loss(given).dtype == "float32"
    assert losskit.MeanSquaredError().dtype == "float32"  # losskit's own floatx is apart


def test_a_default_dtype_is_left_out_of_the_config(keras_float64_and_epsilon: Any) -> None:
    default, given = as_keras_loss("huber"), as_keras_loss(losskit.Huber(dtype="float16"))
    assert "dtype" not in default.get_config()["loss"]["config"]
    assert given.get_config()["loss"]["config"]["dtype"] == "float16"
    assert "dtype" not in as_keras_metric("huber").get_config()["loss"]["config"]
    keras.config.set_floatx("float32")  # the loading session's floatx applies
    assert KerasLoss.from_config(default.get_config()).dtype == "float32"
    assert KerasLoss.from_config(given.get_config()).dtype == "float16"


def test_keras_epsilon_applies_inside_keras(keras_float64_and_epsilon: Any) -> None:
    y_true, y_pred = np.array([[0.0, 1.0]]), np.array([[0.5, 1.0]])
    keras_value = float(keras.losses.MeanAbsolutePercentageError()(y_true, y_pred))
    assert keras_value == pytest.approx(100 * 0.5 / 1e-3 / 2)
    assert float(as_keras_loss("mape")(y_true, y_pred)) == pytest.approx(keras_value, rel=1e-12)
    metric = as_keras_metric("mape")
    metric.update_state(y_true, y_pred)
    assert float(metric.result()) == pytest.approx(keras_value, rel=1e-12)
    assert losskit.epsilon() == 1e-7  # outside Keras, losskit's own
    assert float(losskit.MeanAbsolutePercentageError()(y_true, y_pred)) == pytest.approx(
        100 * 0.5 / 1e-7 / 2, rel=1e-6
    )


@pytest.mark.parametrize(
    ("argument", "error", "match"),
    [
        (3, TypeError, r"`loss` must be a losskit loss.*Received: loss=3 of type int"),
        (None, TypeError, r"`loss` must be"),
        ("msee", ValueError, r"Invalid `loss`: Unknown loss 'msee'.*'mse'"),
        ({"class_name": "Nope"}, ValueError, r"Invalid `loss`: Unknown loss class 'Nope'"),
    ],
)
def test_bad_loss_arguments(argument: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        as_keras_loss(argument)
    with pytest.raises(error, match=match):
        as_keras_metric(argument)


def test_keras_objects_and_unreduced_metrics_are_rejected() -> None:
    with pytest.raises(TypeError, match="`loss` is already a Keras loss or metric"):
        as_keras_loss(keras.losses.MeanSquaredError())
    with pytest.raises(TypeError, match="`loss` is already a Keras loss or metric"):
        as_keras_loss(keras.losses.MeanSquaredError)
    with pytest.raises(TypeError, match="`loss` is already a Keras loss or metric"):
        as_keras_metric(keras.metrics.MeanSquaredError())
    with pytest.raises(ValueError, match="must reduce to be a metric"):
        as_keras_metric(losskit.MeanSquaredError(reduction=None))
    with pytest.raises(ValueError, match="needs a 'loss' key"):
        KerasLoss.from_config({"name": "x"})


# --- without Keras, and on the torch backend -------------------------------------------------


def _python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


def test_import_guard() -> None:
    result = _python(
        """
        import sys
        import losskit
        assert "keras" not in sys.modules, "import losskit imported keras"
        sys.modules["keras"] = None  # as if Keras were not installed
        try:
            import losskit.keras
        except ImportError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "pip install keras" in result.stdout


def _torch_backend_results(directory: str) -> dict[str, Any]:
    """Run in the subprocess of :func:`test_torch_backend_gives_keras_numbers`
    (Keras on torch): every scenario, every built-in loss, the metric and the
    saved model of the tests above, as JSON; an exception is recorded as the
    case's ``"error"``, so one failing case does not hide the others.  Sequence
    weights are given per timestep (:func:`_per_timestep`)."""
    import traceback

    def attempt(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            return {"error": traceback.format_exc()}

    def pair(runs: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        return {"adapter": _jsonable(runs[0]), "keras": _jsonable(runs[1])}

    def scenario(name: str) -> dict[str, Any]:
        return pair(_scenario_runs(name, per_timestep_weights=True))

    def builtin(info: Any) -> dict[str, Any]:
        return pair(_builtin_runs(info))

    def saved() -> dict[str, Any]:
        return _saved_model_round_trip(Path(directory) / "m.keras", per_timestep_weights=True)

    return {
        "backend": keras.backend.backend(),
        "scenarios": {name: attempt(scenario, name) for name in SCENARIOS},
        "builtin": {info.cls.__name__: attempt(builtin, info) for info in LOSSES},
        "metric": attempt(lambda: _jsonable(_metric_run())),
        "masked metric": attempt(lambda: {k: float(v) for k, v in _masked_metric_run().items()}),
        "saved": attempt(saved),
    }


TORCH_SCRIPT = """
import json
import sys
import warnings

# As pyproject.toml's filterwarnings: every warning is an error, except Keras's own.
warnings.simplefilter("error")
warnings.filterwarnings(
    "ignore", "__array__ implementation doesn't accept a copy keyword", DeprecationWarning
)
sys.path.insert(0, sys.argv[1])
from tests.test_keras_adapter import _torch_backend_results

print("RESULTS" + json.dumps(_torch_backend_results(sys.argv[2])))
"""


def test_torch_backend_gives_keras_numbers(tmp_path: Path) -> None:
    """The in-process tests above, on Keras's torch backend: weighted and
    class-weighted fit/evaluate, masked sequence models (Dense and LSTM), every
    built-in loss, the metric, and a saved model loaded without custom_objects."""
    pytest.importorskip("torch")
    root = Path(__file__).resolve().parents[1]
    result = _python(TORCH_SCRIPT, str(root), str(tmp_path), KERAS_BACKEND="torch")
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(s for s in result.stdout.splitlines() if s.startswith("RESULTS"))
    results = json.loads(line[len("RESULTS") :])
    assert results["backend"] == "torch"
    assert results["scenarios"].keys() == SCENARIOS.keys()
    assert results["builtin"].keys() == {info.cls.__name__ for info in LOSSES}

    failures: list[str] = []

    def check(what: str, outcome: Any, assertion: Callable[[Any], None]) -> None:
        if "error" in outcome:
            failures.append(f"[{what}] raised on torch:\n{outcome['error']}")
            return
        try:
            assertion(outcome)
        except AssertionError as error:
            failures.append(f"[{what}] {str(error).strip()}")

    def same_run(what: str) -> Callable[[Any], None]:
        return lambda runs: _assert_same_run(runs["adapter"], runs["keras"], what=what)

    for name, runs in results["scenarios"].items():
        check(f"scenario {name}", runs, same_run(f"scenario {name} (torch)"))
    for name, runs in results["builtin"].items():
        check(f"loss {name}", runs, same_run(f"loss {name} (torch)"))
    check("metric", results["metric"], _assert_metric_equals_loss)
    check("masked metric", results["masked metric"], _assert_masked_metric_equals_loss)
    check("saved model", results["saved"], _assert_saved_round_trip)
    if failures:
        pytest.fail(
            f"{len(failures)} case(s) differ from Keras on its torch backend:\n\n"
            + "\n\n".join(failures),
            pytrace=False,
        )


def test_a_class_the_user_registered_first_keeps_its_name() -> None:
    """Importing losskit.keras after registering a losskit class under your
    own package leaves that registration (Keras refuses a second one: the
    import raised)."""
    code = textwrap.dedent(
        """
        import keras, losskit
        keras.saving.register_keras_serializable(package="mine")(losskit.Huber)
        import losskit.keras
        print(keras.saving.get_registered_name(losskit.Huber))
        print(keras.saving.get_registered_name(losskit.MeanSquaredError))
        """
    )
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["mine>Huber", "losskit>MeanSquaredError"]
