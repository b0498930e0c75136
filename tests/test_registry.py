"""Names, aliases, configs and (de)serialisation, compatible with Keras."""

from __future__ import annotations

import json
import sys
from typing import Any

import keras
import numpy as np
import pytest

import losskit
from losskit.registry import LOSSES

ALIASES = {
    "mse": "mean_squared_error",
    "MSE": "mean_squared_error",
    "mae": "mean_absolute_error",
    "MAE": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "MAPE": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "MSLE": "mean_squared_logarithmic_error",
    "cosine_proximity": "cosine_similarity",
    "logcosh": "log_cosh",
    "kld": "kl_divergence",
    "KLD": "kl_divergence",
    "kullback_leibler_divergence": "kl_divergence",
    "huber_loss": "huber",
    "bce": "binary_crossentropy",
    "BCE": "binary_crossentropy",
}

# Constructor arguments that Keras 3.15 drops from its config (fixed upstream).
KERAS_DROPS = {
    "Huber": {"delta"},
    "CosineSimilarity": {"axis"},
    "SparseCategoricalCrossentropy": {"axis"},
}
NON_DEFAULT_ARGUMENTS: dict[str, dict[str, Any]] = {
    "Huber": {"delta": 2.5},
    "CosineSimilarity": {"axis": 1},
    "Dice": {"axis": (1, 2)},
    "Tversky": {"alpha": 0.3, "beta": 0.9, "axis": [1]},
    "BinaryCrossentropy": {"from_logits": True, "label_smoothing": 0.1, "axis": 0},
    "CategoricalCrossentropy": {"from_logits": True, "label_smoothing": 0.2, "axis": 1},
    "SparseCategoricalCrossentropy": {
        "from_logits": True,
        "ignore_class": 3,
        "axis": 0,
    },
}


@pytest.mark.parametrize(("alias", "name"), ALIASES.items())
def test_aliases_resolve_to_functions(alias: str, name: str) -> None:
    assert losskit.get(alias) is getattr(losskit, name)
    assert losskit.get(name) is getattr(losskit, name)


def test_module_level_aliases() -> None:
    for alias, name in ALIASES.items():
        if hasattr(keras.losses, alias) or alias in ("cosine_proximity", "logcosh"):
            assert getattr(losskit, alias, None) in (getattr(losskit, name), None)
    assert losskit.mse is losskit.MSE is losskit.mean_squared_error
    assert losskit.kullback_leibler_divergence is losskit.kl_divergence


@pytest.mark.parametrize("info", LOSSES, ids=lambda i: i.cls.__name__)
def test_every_loss_by_every_name(info: Any) -> None:
    instance = losskit.get(info.cls.__name__)
    assert type(instance) is info.cls
    assert instance.name == info.name
    for name in info.function_names:
        assert losskit.get(name) is info.function
    assert getattr(losskit, info.cls.__name__) is info.cls
    assert getattr(losskit, info.function.__name__) is info.function


@pytest.mark.parametrize("info", LOSSES, ids=lambda i: i.cls.__name__)
def test_names_and_config_keys_match_keras(info: Any) -> None:
    name = info.cls.__name__
    arguments = NON_DEFAULT_ARGUMENTS.get(name, {})
    ours = info.cls(**arguments, reduction="sum", name="custom").get_config()
    theirs = getattr(keras.losses, name)(**arguments, reduction="sum", name="custom").get_config()
    assert info.cls().name == getattr(keras.losses, name)().name
    for key, value in theirs.items():
        assert ours[key] == value, key
    extra = set(ours) - set(theirs)
    assert extra == {"dtype"} | KERAS_DROPS.get(name, set())
    for key in KERAS_DROPS.get(name, set()):
        assert ours[key] == arguments[key]


@pytest.mark.parametrize("info", LOSSES, ids=lambda i: i.cls.__name__)
def test_from_config_of_get_config_is_lossless(info: Any) -> None:
    loss = info.cls(
        **NON_DEFAULT_ARGUMENTS.get(info.cls.__name__, {}),
        reduction=None,
        dtype="float64",
    )
    config = loss.get_config()
    rebuilt = info.cls.from_config(json.loads(json.dumps(config)))
    restored = rebuilt.get_config()
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()} == restored
    again = losskit.deserialize(json.loads(json.dumps(losskit.serialize(loss))))
    assert type(again) is info.cls
    assert again.get_config() == restored


@pytest.mark.parametrize("info", LOSSES, ids=lambda i: i.cls.__name__)
def test_keras_serialized_configs_deserialize(info: Any) -> None:
    name = info.cls.__name__
    keras_loss = getattr(keras.losses, name)(**NON_DEFAULT_ARGUMENTS.get(name, {}))
    config = json.loads(json.dumps(keras.losses.serialize(keras_loss)))
    ours = losskit.deserialize(config)
    assert type(ours) is info.cls
    for key, value in keras_loss.get_config().items():
        expected = list(value) if isinstance(value, tuple) else value
        assert ours.get_config()[key] == expected
    function_config = keras.losses.serialize(getattr(keras.losses, info.function.__name__))
    assert losskit.deserialize(function_config) is info.function
    assert losskit.get(function_config) is info.function


@pytest.mark.parametrize("info", LOSSES, ids=lambda i: i.cls.__name__)
def test_our_configs_deserialize_in_keras(info: Any) -> None:
    name = info.cls.__name__
    arguments = NON_DEFAULT_ARGUMENTS.get(name, {})
    config = losskit.serialize(info.cls(**arguments))
    # Keras 3.15.1's keras.losses.deserialize does not list
    # CategoricalGeneralizedCrossEntropy (it returns the bare name, even for
    # Keras's own config); Keras's generic deserializer resolves it.
    deserialize = (
        keras.saving.deserialize_keras_object
        if name == "CategoricalGeneralizedCrossEntropy"
        else keras.losses.deserialize
    )
    keras_loss = deserialize(config)
    assert type(keras_loss).__name__ == name
    assert deserialize(losskit.serialize(info.function)) is getattr(
        keras.losses, info.function.__name__
    )


def test_deserialize_never_imports_what_a_config_names() -> None:
    assert "antigravity" not in sys.modules
    with pytest.raises(ValueError, match="Unknown loss class"):
        losskit.deserialize({"module": "antigravity", "class_name": "Fly", "config": {}})
    with pytest.raises(ValueError, match="Unknown loss function"):
        losskit.deserialize(
            {
                "module": "os",
                "class_name": "function",
                "config": "system",
                "registered_name": "function",
            }
        )
    assert "antigravity" not in sys.modules


def test_invalid_config_keys() -> None:
    with pytest.raises(ValueError, match=r"Invalid config for Huber.*delt"):
        losskit.deserialize({"class_name": "Huber", "config": {"delt": 1.0}})


def test_get_wraps_plain_callables_with_reductions() -> None:
    def mean_cubed_error(y_true: Any, y_pred: Any) -> Any:
        return np.mean((y_pred - y_true) ** 3, axis=-1)

    loss = losskit.get(mean_cubed_error)
    assert isinstance(loss, losskit.LossFunctionWrapper)
    assert loss.name == "mean_cubed_error"
    y_true, y_pred = np.zeros((3, 2)), np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    assert float(loss(y_true, y_pred)) == pytest.approx(5.0 / 3.0)
    assert float(loss(y_true, y_pred, sample_weight=[1.0, 0.0, 0.0])) == pytest.approx(1.0 / 3.0)
    config = losskit.serialize(loss)
    with pytest.raises(ValueError, match="Unknown loss function 'mean_cubed_error'"):
        losskit.deserialize(config)
    rebuilt = losskit.deserialize(config, custom_objects={"mean_cubed_error": mean_cubed_error})
    assert float(rebuilt(y_true, y_pred)) == pytest.approx(5.0 / 3.0)


def test_get_passes_losses_through_and_instantiates_classes() -> None:
    loss = losskit.Huber(delta=3.0)
    assert losskit.get(loss) is loss
    assert isinstance(losskit.get(losskit.Poisson), losskit.Poisson)
    assert losskit.get(None) is None


def test_wrapper_of_builtin_function_round_trips() -> None:
    loss = losskit.LossFunctionWrapper(losskit.huber, delta=0.25, name="tight_huber")
    config = loss.get_config()
    assert config["fn"]["config"] == "huber"
    assert config["delta"] == 0.25
    rebuilt = losskit.LossFunctionWrapper.from_config(config)
    y_true, y_pred = np.zeros((2, 2)), np.ones((2, 2))
    assert float(rebuilt(y_true, y_pred)) == float(loss(y_true, y_pred))


def test_custom_loss_subclass_round_trips() -> None:
    class Scaled(losskit.Loss):
        def __init__(self, scale: float = 1.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.scale = scale

        def call(self, y_true: Any, y_pred: Any) -> Any:
            return self.scale * np.sum(np.abs(y_true - y_pred), axis=-1)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "scale": self.scale}

    config = losskit.serialize(Scaled(scale=2.0, name="scaled"))
    assert config["class_name"] == "Scaled"
    assert config["config"]["scale"] == 2.0
    rebuilt = losskit.deserialize(config, custom_objects={"Scaled": Scaled})
    assert isinstance(rebuilt, Scaled)
    assert rebuilt.scale == 2.0
    assert rebuilt.name == "scaled"


def test_automatic_names_are_unique_snake_case() -> None:
    class MyFancyLoss(losskit.Loss):
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return y_pred

    first, second = MyFancyLoss(), MyFancyLoss()
    assert first.name == "my_fancy_loss"
    assert second.name == "my_fancy_loss_1"


def test_to_categorical_matches_keras() -> None:
    labels = np.array([[1], [0], [3], [2]])
    np.testing.assert_array_equal(
        losskit.to_categorical(labels), keras.utils.to_categorical(labels)
    )
    np.testing.assert_array_equal(
        losskit.to_categorical([2, 0], num_classes=4),
        keras.utils.to_categorical([2, 0], 4),
    )
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        losskit.to_categorical([0, 3], num_classes=3)
    with pytest.raises(ValueError, match="whole numbers"):
        losskit.to_categorical([0.5, 1.0])


def test_to_categorical_keeps_the_library() -> None:
    import torch

    result = losskit.to_categorical(torch.tensor([0, 2, 1]), num_classes=3)
    assert isinstance(result, torch.Tensor)
    assert result.dtype == torch.float32
    np.testing.assert_array_equal(result.numpy(), np.eye(3)[[0, 2, 1]])


def _nested(depth: int) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for _ in range(depth):
        config = {"a": config}
    return config


@pytest.mark.parametrize("class_name", [["Huber"], {"a": 1}, 3, None])
def test_non_string_class_name_is_a_type_error(class_name: Any) -> None:
    with pytest.raises(TypeError, match="'class_name' of a loss config must be a string"):
        losskit.deserialize({"class_name": class_name, "config": {}})


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "Huber", "config": {"delta": _nested(10_000)}},
        {"class_name": "function", "config": _nested(10_000)},
        {"class_name": "Huber", "config": {"delta": [list(range(10))] * 20_000}},
    ],
    ids=["deep_value", "deep_function", "huge"],
)
def test_deep_or_huge_configs_are_refused_with_a_short_message(config: Any) -> None:
    with pytest.raises(ValueError, match="Refusing a loss config") as error:
        losskit.deserialize(config)
    assert len(str(error.value)) < 300


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "Huber", "config": {"delta": "x" * 10**6}},
        {"class_name": "Huber", "config": {"dlta": 1.0, "padding": list(range(50_000))}},
        {"class_name": "NoSuchLoss" * 10**5, "config": {}},
        {"class_name": "function", "config": {"config": ["x" * 10**6]}},
    ],
    ids=["long_value", "unknown_key", "long_name", "bad_function"],
)
def test_errors_about_large_configs_stay_short(config: Any) -> None:
    with pytest.raises(ValueError, match=r"Invalid|Unknown") as error:
        losskit.deserialize(config)
    assert len(str(error.value)) < 1500
