"""Names of the built-in losses: ``get``, ``serialize`` and ``deserialize``.

Deserialisation only ever looks names up in this registry (or in the
``custom_objects`` mapping the caller passes): it never imports a module or
evaluates anything named in a config.
"""

from __future__ import annotations

import difflib
import inspect
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

from losskit.losses import Loss, LossFunctionWrapper, serialize_function, to_snake_case
from losskit.spec import SPECS, LossSpec

__all__ = [
    "LOSSES",
    "LossInfo",
    "deserialize",
    "get",
    "serialize",
]


LossInfo = LossSpec
"""The registry's name for a :class:`losskit.spec.LossSpec` (one built-in loss)."""

LOSSES: tuple[LossSpec, ...] = SPECS
"""Every built-in loss, in the order of :data:`losskit.spec.SPECS`."""

CLASSES: dict[str, type[Loss]] = {info.cls.__name__: info.cls for info in LOSSES}
CLASSES.update({"Loss": Loss, "LossFunctionWrapper": LossFunctionWrapper})
FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: info.function for info in LOSSES for name in info.function_names
}


MAX_CONFIG_DEPTH = 32
"""Deeper configs are refused (Keras's own are at most 4 levels deep)."""
MAX_CONFIG_ITEMS = 100_000
"""Configs with more values in all are refused."""

_short = reprlib.Repr()
_short.maxlevel, _short.maxdict, _short.maxlist, _short.maxtuple = 3, 6, 6, 6
_short.maxstring, _short.maxother, _short.maxlong = 60, 60, 40


def describe(value: Any) -> str:
    """A repr of ``value`` short enough for an error message, whatever its
    size or depth (never a RecursionError)."""
    return _short.repr(value)


def check_config_size(config: Any) -> None:
    """Refuse configs nested deeper than :data:`MAX_CONFIG_DEPTH` or holding
    more than :data:`MAX_CONFIG_ITEMS` values, before anything reads them
    recursively; the walk itself is iterative."""
    pending: list[tuple[Any, int]] = [(config, 1)]
    seen = 0
    while pending:
        value, depth = pending.pop()
        seen += 1
        if depth > MAX_CONFIG_DEPTH or seen > MAX_CONFIG_ITEMS:
            limit = (
                f"nested more than {MAX_CONFIG_DEPTH} levels deep"
                if depth > MAX_CONFIG_DEPTH
                else f"holding more than {MAX_CONFIG_ITEMS} values"
            )
            raise ValueError(f"Refusing a loss config {limit}: {describe(config)}.")
        if isinstance(value, Mapping):
            pending.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, (list, tuple)):
            pending.extend((item, depth + 1) for item in value)


def _fold(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _unknown_name(identifier: str, kind: str = "loss") -> ValueError:
    candidates = sorted(set(CLASSES) | set(FUNCTIONS))
    close = difflib.get_close_matches(identifier, candidates, n=3, cutoff=0.6)
    same_letters = [c for c in candidates if _fold(c) == _fold(identifier)]
    close = same_letters + [c for c in close if c not in same_letters]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"Unknown {kind} {describe(identifier)}.{hint} Known names: {', '.join(candidates)}."
    )


def get(identifier: Any) -> Any:
    """Resolve a loss identifier.

    - a function name or alias (``"mse"``, ``"huber_loss"``) gives the
      per-sample function; a class name (``"MeanSquaredError"``) gives an
      instance with default arguments, as in Keras;
    - a config dict (from :func:`serialize` or ``keras.losses.serialize``)
      gives the deserialised object;
    - a :class:`Loss` instance is returned as is; a ``Loss`` subclass is
      instantiated;
    - any other callable ``fn(y_true, y_pred)`` returning per-sample losses is
      wrapped in a :class:`LossFunctionWrapper`, so it gets reductions, sample
      weights and masks like a built-in (Keras returns it unwrapped);
    - ``None`` gives ``None``.

    >>> import losskit
    >>> losskit.get("mse").__name__
    'mean_squared_error'
    >>> losskit.get("Huber")
    Huber(name='huber_loss', reduction='sum_over_batch_size', dtype='float32', delta=1.0)
    >>> losskit.get({"class_name": "Huber", "config": {"delta": 2.0}}).get_config()["delta"]
    2.0
    """
    if identifier is None:
        return None
    if isinstance(identifier, str):
        if identifier in CLASSES:
            return CLASSES[identifier]()
        if identifier in FUNCTIONS:
            return FUNCTIONS[identifier]
        raise _unknown_name(identifier)
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if isinstance(identifier, Loss):
        return identifier
    if inspect.isclass(identifier) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        name = to_snake_case(getattr(identifier, "__name__", type(identifier).__name__))
        return LossFunctionWrapper(identifier, name=name or None)
    raise TypeError(
        "Could not interpret loss identifier: expected a name, a config dict, a "
        f"Loss or a callable. Received: {identifier!r} of type {type(identifier).__name__}."
    )


def serialize(loss: Any) -> dict[str, Any]:
    """A JSON-serialisable config of a loss object or function, in Keras's format.

    >>> import losskit
    >>> losskit.serialize(losskit.Huber(delta=2.0))["config"]["delta"]
    2.0
    >>> losskit.serialize(losskit.mean_squared_error)["config"]
    'mean_squared_error'
    """
    if isinstance(loss, Loss):
        cls = type(loss)
        builtin = CLASSES.get(cls.__name__) is cls
        return {
            "module": "keras.losses" if builtin else cls.__module__,
            "class_name": cls.__name__,
            "config": loss.get_config(),
            "registered_name": None if builtin else cls.__name__,
        }
    if callable(loss):
        return serialize_function(loss)
    raise TypeError(
        f"serialize expects a Loss or a function. Received: {loss!r} of type {type(loss).__name__}."
    )


def deserialize_function(
    config: Any, custom_objects: Mapping[str, Any] | None = None
) -> Callable[..., Any]:
    """Resolve a function config (a name, or Keras's ``class_name: "function"``
    dict) to a registered function or one of ``custom_objects``."""
    if callable(config):
        return config
    name = config.get("config") if isinstance(config, Mapping) else config
    if not isinstance(name, str):
        raise ValueError(
            f"Invalid function config: {describe(config)}. Expected a function name "
            "or a dict whose 'config' is one."
        )
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    if name in FUNCTIONS:
        return FUNCTIONS[name]
    raise _unknown_name(name, kind="loss function")


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Rebuild a loss from :func:`serialize`'s (or Keras's) output.

    Args:
        config: a name, or a dict with ``class_name`` and ``config``.
        custom_objects: optional mapping of names to your own loss classes or
            functions, consulted before the built-ins.

    >>> import losskit
    >>> losskit.deserialize(losskit.serialize(losskit.Tversky(alpha=0.7)))
    Tversky(name='tversky', reduction='sum_over_batch_size', dtype='float32', alpha=0.7,
            beta=0.5, axis=None)
    """
    custom = dict(custom_objects or {})
    check_config_size(config)
    if isinstance(config, str):
        if config in custom:
            found = custom[config]
            return found() if inspect.isclass(found) else found
        return get(config)
    if not isinstance(config, Mapping) or "class_name" not in config:
        raise ValueError(
            "A loss config must be a name or a dict with 'class_name' and "
            f"'config' keys. Received: {describe(config)}."
        )
    class_name = config["class_name"]
    if not isinstance(class_name, str):
        raise TypeError(
            "The 'class_name' of a loss config must be a string. Received: "
            f"{describe(class_name)} of type {type(class_name).__name__}."
        )
    if class_name == "function":
        return deserialize_function(config, custom)
    registered = config.get("registered_name")
    if registered is not None and not isinstance(registered, str):
        raise TypeError(
            "The 'registered_name' of a loss config must be a string or None. "
            f"Received: {describe(registered)} of type {type(registered).__name__}."
        )
    cls = custom.get(registered) if registered else None
    cls = cls or custom.get(class_name) or CLASSES.get(class_name)
    if cls is None:
        raise _unknown_name(class_name, kind="loss class")
    arguments = config.get("config") or {}
    if not isinstance(arguments, Mapping):
        raise ValueError(
            f"The 'config' of a {class_name} must be a dict. Received: {describe(arguments)}."
        )
    if "fn" in arguments:
        arguments = {**arguments, "fn": deserialize_function(arguments["fn"], custom)}
    try:
        return cls.from_config(dict(arguments))
    except TypeError as error:
        raise ValueError(
            f"Invalid config for {class_name}: {describe(dict(arguments))} "
            f"({describe(str(error))})."
        ) from None
