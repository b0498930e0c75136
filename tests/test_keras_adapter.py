"""losskit inside Keras (``losskit.keras``): compiled models give Keras's own
numbers with sample weights, class weights and masks, for every built-in loss;
a loss object passed to ``compile`` directly warns where Keras would reweight
it; models save and load; the metric equals the loss.

The oracle is the same model compiled with the ``keras.losses`` class of the
same name, on Keras's JAX backend (set in ``conftest.py``); one test runs a
script on the torch backend in a subprocess.
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


def _assert_same_run(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    np.testing.assert_allclose(actual["before"]["loss"], expected["before"]["loss"], rtol=RTOL)
    np.testing.assert_allclose(actual["history"]["loss"], expected["history"]["loss"], rtol=RTOL)
    np.testing.assert_allclose(actual["after"]["loss"], expected["after"]["loss"], rtol=RTOL)
    assert len(actual["weights"]) == len(expected["weights"])
    for a, e in zip(actual["weights"], expected["weights"], strict=True):
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL)
    # The comparison means something only if training moved the loss.
    assert expected["after"]["loss"] != pytest.approx(expected["before"]["loss"], rel=1e-4)


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


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_compiled_adapter_gives_keras_numbers(name: str) -> None:
    case = SCENARIOS[name]()
    expected = _run(case["build"], case["theirs"], case["x"], case["y"], **case["fit"])
    loss = as_keras_loss(case["ours"])
    assert isinstance(loss, keras.losses.Loss)
    assert loss.name == case["theirs"].name
    assert loss.reduction == case["theirs"].reduction
    actual = _run(case["build"], loss, case["x"], case["y"], **case["fit"])
    _assert_same_run(actual, expected)


# --- every built-in loss ------------------------------------------------------------------


def _targets(name: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str | None, int]:
    """Valid targets for each loss, the output activation and the output size."""
    k = 3
    if name in ("MeanAbsolutePercentageError", "MeanSquaredLogarithmicError"):
        return rng.uniform(0.5, 2.0, size=(n, k)), None, k
    if name in ("Dice", "Tversky", "BinaryCrossentropy"):
        return rng.integers(0, 2, size=(n, k)).astype(float), "sigmoid", k
    if name == "Hinge":
        return rng.choice([-1.0, 1.0], size=(n, k)), None, k
    if name == "SquaredHinge":  # 0/1 labels, converted to -1/1 by the loss
        return rng.integers(0, 2, size=(n, k)).astype(float), None, k
    if name in ("CategoricalHinge", "CategoricalCrossentropy"):
        activation = "softmax" if name == "CategoricalCrossentropy" else None
        return np.eye(k)[rng.integers(0, k, size=n)], activation, k
    if name == "KLDivergence":
        logits = rng.normal(size=(n, k))
        return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), "softmax", k
    if name == "Poisson":
        return rng.poisson(1.5, size=(n, k)).astype(float), "softplus", k
    if name == "SparseCategoricalCrossentropy":
        return rng.integers(0, k, size=(n, 1)), "softmax", k
    return rng.normal(size=(n, k)), None, k  # MSE, MAE, cosine, Huber, log-cosh


# Known documented deviations (README "Differences from Keras 3.15") do not show
# with the defaults used here: Tversky's alpha/beta swap needs alpha != beta (the
# default is 0.5/0.5), the cosine clamp changes only gradients at zero vectors,
# and the config fixes do not change values.
@pytest.mark.parametrize("info", LOSSES, ids=lambda info: info.cls.__name__)
def test_every_builtin_loss_trains_like_keras(info: Any) -> None:
    name = info.cls.__name__
    rng = np.random.default_rng(sum(map(ord, name)))
    n = 12
    x = rng.normal(size=(n, 4)).astype("float32")
    y, activation, k = _targets(name, rng, n)
    y = y.astype("int32" if name.startswith("Sparse") else "float32")
    fit = {"sample_weight": rng.uniform(0.5, 2.0, size=n).astype("float32")}

    def build() -> Any:
        return _dense(4, k, activation)

    expected = _run(build, getattr(keras.losses, name)(), x, y, batch_size=5, epochs=2, **fit)
    actual = _run(build, as_keras_loss(info.cls()), x, y, batch_size=5, epochs=2, **fit)
    _assert_same_run(actual, expected)


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


def test_model_saves_and_loads_without_custom_objects(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    x = _tokens(rng, 12)
    y = rng.integers(0, 4, size=(12, STEPS)).astype("int32")
    w = rng.uniform(0.5, 2.0, size=(12, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = _sequence(4, "softmax", recurrent=False)
    model.compile(
        optimizer="sgd",
        loss=as_keras_loss(losskit.SparseCategoricalCrossentropy(ignore_class=3)),
        weighted_metrics=[as_keras_metric("sparse_categorical_crossentropy", name="plain")],
    )
    model.fit(x, y, epochs=1, verbose=0)
    expected = model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    path = tmp_path / "m.keras"
    model.save(path)

    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, KerasLoss)
    assert loaded.loss.loss.get_config() == {
        "name": "sparse_categorical_crossentropy",
        "reduction": "sum_over_batch_size",
        "dtype": "float32",
        "from_logits": False,
        "ignore_class": 3,
        "axis": -1,
    }
    actual = loaded.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    assert actual.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=RTOL)


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


# --- the metric -----------------------------------------------------------------------------


def test_metric_equals_the_loss_in_fit_and_evaluate() -> None:
    # 10 samples in batches of 4: unequal batches, as Keras's loss tracker weights them.
    rng = np.random.default_rng(9)
    x = rng.normal(size=(10, 4)).astype("float32")
    y = rng.normal(size=(10, 3)).astype("float32")
    w = rng.uniform(0.0, 3.0, size=10).astype("float32")
    run = _run(
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
    for logs in (run["before"], run["after"]):
        np.testing.assert_allclose(logs["weighted"], logs["loss"], rtol=RTOL)
    np.testing.assert_allclose(run["history"]["weighted"], run["history"]["loss"], rtol=RTOL)
    # Without weights the unweighted metric is the unweighted loss.
    unweighted = _evaluate_metric_model(x, y, None)
    np.testing.assert_allclose(unweighted["unweighted"], unweighted["loss"], rtol=RTOL)
    # Dice gives one value per batch; the metric counts it per sample, as the
    # loss tracker does: the same number as the Dice loss itself in evaluate.
    for weights in (None, w):
        dice = _evaluate_metric_model(x, y, weights, loss=as_keras_loss(losskit.Dice()))
        np.testing.assert_allclose(dice["dice"], dice["loss"], rtol=RTOL)


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


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
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


TORCH_SCRIPT = """
import json
import numpy as np
import keras
import losskit
from losskit.keras import as_keras_loss, as_keras_metric

rng = np.random.default_rng(0)
results = {}

x = rng.normal(size=(10, 4)).astype("float32")
y = rng.normal(size=(10, 2)).astype("float32")
w = rng.uniform(0.0, 3.0, size=10).astype("float32")
for key, loss in [
    ("keras", keras.losses.MeanSquaredError()),
    ("adapter", as_keras_loss(losskit.MeanSquaredError())),
]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=loss, weighted_metrics=[as_keras_metric("mse", name="m")])
    history = model.fit(x, y, sample_weight=w, batch_size=4, epochs=1, shuffle=False, verbose=0)
    logs = model.evaluate(x, y, sample_weight=w, batch_size=4, verbose=0, return_dict=True)
    results["mse_" + key] = [history.history["loss"][0], logs["loss"], logs["m"]]

tokens = rng.integers(1, 9, size=(8, 5))
tokens[:, 3:] *= rng.integers(0, 2, size=(8, 2))
labels = rng.integers(0, 4, size=(8, 5))
for key, loss in [
    ("keras", keras.losses.SparseCategoricalCrossentropy(ignore_class=2)),
    ("adapter", as_keras_loss(losskit.SparseCategoricalCrossentropy(ignore_class=2))),
]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((5,), dtype="int32"),
        keras.layers.Embedding(9, 3, mask_zero=True),
        keras.layers.Dense(4, activation="softmax"),
    ])
    model.compile(loss=loss)
    results["masked_" + key] = [model.evaluate(tokens, labels, verbose=0)]
print("RESULTS" + json.dumps(results))
"""


def test_torch_backend_gives_keras_numbers() -> None:
    pytest.importorskip("torch")
    result = _python(TORCH_SCRIPT, KERAS_BACKEND="torch")
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(s for s in result.stdout.splitlines() if s.startswith("RESULTS"))
    results = json.loads(line[len("RESULTS") :])
    mse_keras, mse_ours = results["mse_keras"], results["mse_adapter"]
    np.testing.assert_allclose(mse_ours, mse_keras, rtol=RTOL)
    np.testing.assert_allclose(mse_ours[2], mse_ours[1], rtol=RTOL)  # metric == loss
    np.testing.assert_allclose(results["masked_adapter"], results["masked_keras"], rtol=RTOL)
