"""losskit losses inside Keras 3: as Keras losses, as Keras metrics, and saved with models.

Keras treats a ``loss=`` that is not a ``keras.losses.Loss`` as a *per-sample*
function: it wraps it in its own ``LossFunctionWrapper`` and applies
``sample_weight``, ``class_weight``, masks (``_keras_mask``, from
``Embedding(mask_zero=True)`` or ``Masking``) and the reduction to what the
function returns.  A losskit loss *object* returns an already reduced value, so
Keras would weight and mask that one number, not the per-sample losses.
:func:`as_keras_loss` turns any losskit loss into a real ``keras.losses.Loss``
whose ``call`` returns losskit's per-sample losses, so Keras's own reduction,
weights and masks apply exactly as for Keras's built-in class:

>>> import numpy as np
>>> import keras
>>> import losskit
>>> from losskit.keras import as_keras_loss
>>> loss = as_keras_loss(losskit.Huber(delta=0.5))
>>> isinstance(loss, keras.losses.Loss), loss.name, loss.reduction
(True, 'huber_loss', 'sum_over_batch_size')
>>> y_true, y_pred = np.array([[0.0], [2.0]]), np.array([[1.0], [2.0]])
>>> float(loss(y_true, y_pred, sample_weight=np.array([2.0, 1.0])))
0.375
>>> float(keras.losses.Huber(delta=0.5)(y_true, y_pred, sample_weight=np.array([2.0, 1.0])))
0.375

It accepts a losskit loss object, a per-sample function (losskit's or your
own) or anything :func:`losskit.get` resolves (a name such as ``"mse"`` or
``"Huber"``, a config dict), and keeps the loss's ``name``, ``reduction`` and
``dtype`` (a loss built without a dtype computes in ``keras.config.floatx()``,
as Keras's own do, and with ``keras.config.epsilon()``).  ``ignore_class`` of
:class:`losskit.SparseCategoricalCrossentropy` becomes a Keras mask on the
per-sample losses, as Keras's own function sets one.  Inside Keras, Keras's
reduction rules apply (it may broadcast weights that enlarge the losses, and
sums float16 in float16; see the README's "Differences from Keras 3.15").

:func:`as_keras_metric` gives the same loss as a stateful ``keras.metrics.Metric``
(:class:`KerasMetric`), and both classes are registered with
``keras.saving.register_keras_serializable(package="losskit")``, so a model
saved with them loads with ``keras.models.load_model`` without
``custom_objects`` (import ``losskit.keras`` first, as for any Keras extension).

Passing a losskit loss *object* directly to ``compile`` keeps working where
the numbers agree (no weights, no masks), and warns with
:class:`ReweightedLossWarning` where Keras would reweight its reduced value: see
the README's "Use in Keras" for why this warns rather than fixing the number.

Supported Keras backends: JAX, PyTorch and NumPy (losskit computes on their
arrays through the array API; TensorFlow tensors are not array-API arrays).
"""

from __future__ import annotations

import copy
import inspect
import math
import sys
import warnings
from collections.abc import Mapping
from types import FrameType
from typing import Any

try:
    import keras
except ImportError as _error:  # pragma: no cover - depends on the environment
    if _error.name == "keras":
        raise ImportError(
            "losskit.keras needs Keras 3, which is an optional dependency of losskit: "
            "pip install keras (or pip install 'losskit[keras]')."
        ) from _error
    raise ImportError(
        f"losskit.keras could not import Keras: {_error}. Keras 3 loads the backend "
        "named by the KERAS_BACKEND environment variable (or ~/.keras/keras.json); set "
        "it to an installed one, e.g. KERAS_BACKEND=jax or KERAS_BACKEND=torch."
    ) from _error

if int(str(keras.__version__).split(".")[0]) < 3:  # pragma: no cover - Keras 2 installed
    raise ImportError(
        f"losskit.keras needs Keras 3; Keras {keras.__version__} is installed: "
        "pip install 'keras>=3.15'."
    )

from losskit import _config, registry
from losskit.losses import Loss

__all__ = [
    "KerasLoss",
    "KerasMetric",
    "ReweightedLossWarning",
    "as_keras_loss",
    "as_keras_metric",
]


class ReweightedLossWarning(UserWarning):
    """A losskit loss object was given to Keras as a function, and Keras is
    about to weight, mask or average its already reduced value."""


# --- resolving and serialising the wrapped loss ------------------------------------


def _resolve(loss: Any, argument: str = "loss") -> Loss:
    """The losskit loss object behind any identifier :func:`losskit.get` accepts."""
    if isinstance(loss, (KerasLoss, KerasMetric)):
        return loss.loss
    keras_types = (keras.losses.Loss, keras.metrics.Metric)
    if isinstance(loss, keras_types) or (inspect.isclass(loss) and issubclass(loss, keras_types)):
        raise TypeError(
            f"`{argument}` is already a Keras loss or metric; pass it to "
            "compile() as it is. losskit.keras adapts losskit losses and per-sample "
            f"functions. Received: {argument}={loss!r}."
        )
    if loss is None or not (isinstance(loss, (str, Mapping)) or callable(loss)):
        raise TypeError(
            f"`{argument}` must be a losskit loss object, a per-sample loss function, a "
            f"loss name or a loss config dict. Received: {argument}={loss!r} of type "
            f"{type(loss).__name__}."
        )
    try:
        resolved = registry.get(loss)
    except ValueError as error:
        raise ValueError(f"Invalid `{argument}`: {error}") from None
    if not isinstance(resolved, Loss):
        # A function name ("mse") resolves to the function: wrap it as `get` wraps
        # any callable, so it gets the default reduction and its Keras name.
        resolved = registry.get(resolved)
    if not isinstance(resolved, Loss):  # pragma: no cover - registry.get guarantees it
        raise TypeError(f"`{argument}` did not resolve to a loss: {resolved!r}.")
    return _in_keras_floatx(resolved)


def _dtype_given(loss: Loss) -> bool:
    return bool(getattr(loss, "_dtype_given", True))


def _in_keras_floatx(loss: Loss) -> Loss:
    """``loss``, or a copy of it in ``keras.config.floatx()`` where it was
    built without a dtype: a Keras loss built without one computes in Keras's
    floatx, which ``keras.config.set_floatx`` sets apart from losskit's."""
    floatx = keras.config.floatx()
    if _dtype_given(loss) or loss.dtype == floatx:
        return loss
    in_floatx = copy.copy(loss)
    in_floatx._dtype = floatx
    return in_floatx


def _serialized(loss: Loss) -> dict[str, Any]:
    """``losskit.serialize(loss)``, leaving out a dtype that was not given:
    as for Keras's own losses, it is the floatx of the session that loads it."""
    config = registry.serialize(loss)
    inner = config.get("config")
    if not _dtype_given(loss) and isinstance(inner, Mapping):
        config["config"] = {key: value for key, value in inner.items() if key != "dtype"}
    return config


def _config_names(config: Any) -> set[str]:
    """The class and function names a losskit config refers to."""
    names: set[str] = set()
    if isinstance(config, str):
        names.add(config)
    elif isinstance(config, Mapping):
        for key in ("class_name", "registered_name"):
            if isinstance(config.get(key), str):
                names.add(config[key])
        inner = config.get("config")
        if isinstance(inner, str):
            names.add(inner)
        elif isinstance(inner, Mapping) and "fn" in inner:
            names |= _config_names(inner["fn"])
    return names


def _deserialize(config: Any) -> Loss:
    """``losskit.deserialize``, seeing the objects registered with Keras or passed
    as ``custom_objects`` to ``keras.models.load_model`` (for your own losskit
    loss classes and functions)."""
    custom = {}
    for name in _config_names(config):
        found = _registered_with_keras(name)
        if found is not None:
            custom[name] = found
    return _resolve(registry.deserialize(config, custom_objects=custom))


def _registered_with_keras(name: str) -> Any:
    """What Keras knows as ``name``: passed as ``custom_objects`` (or in a
    ``custom_object_scope``), or registered with
    ``keras.saving.register_keras_serializable``, which keys an object as
    ``package>name`` where losskit's config holds the bare name: found there
    when one package registered it (a losskit built-in name is never looked
    up so, so no registration can replace it).  None where Keras has none."""
    found = keras.saving.get_registered_object(name)
    builtin = name in registry.CLASSES or name in registry.FUNCTIONS
    if found is not None or builtin or name == "function":  # (Keras's tag for functions)
        return found
    matches = {
        key: value
        for key, value in keras.saving.get_custom_objects().items()
        if key.rpartition(">")[2] == name and key != name
    }
    if len(matches) > 1:
        raise ValueError(
            f"{name!r} is registered with Keras by several packages ({sorted(matches)}): "
            f"pass the one meant as custom_objects={{{name!r}: ...}} to "
            "keras.models.load_model."
        )
    return next(iter(matches.values()), None)


def _register_builtin_classes() -> None:
    """Register losskit's loss classes with Keras (as ``losskit>Huber``, ...),
    so that a model compiled with a losskit loss object itself (not through
    :func:`as_keras_loss`) loads with ``keras.models.load_model`` once
    ``losskit.keras`` is imported: Keras saved it under its module and class
    name and could not find it again."""
    for cls in {info.cls for info in registry.LOSSES}:
        # not where a name is already set (by an earlier import, or a user
        # who registered the class under a package of their own)
        if keras.saving.get_registered_name(cls) == cls.__name__:
            keras.saving.register_keras_serializable(package="losskit")(cls)


_register_builtin_classes()


# --- Keras masks ---------------------------------------------------------------------


def _get_keras_mask(x: Any) -> Any:
    # Keras 3.15 keeps masks of JAX arrays outside the array; its accessors are
    # not part of the public API.
    from keras.src.backend import get_keras_mask

    return get_keras_mask(x)


def _set_keras_mask(x: Any, mask: Any) -> None:
    from keras.src.backend import set_keras_mask

    set_keras_mask(x, mask)


# --- the loss --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="losskit")
class KerasLoss(keras.losses.Loss):
    """A losskit loss as a ``keras.losses.Loss``: use :func:`as_keras_loss`.

    ``call(y_true, y_pred)`` returns the wrapped loss's per-sample losses
    (its ``call_with_mask``), and Keras's ``Loss.__call__`` casts the inputs to
    the loss's ``dtype``, then applies ``sample_weight``, masks and the
    loss's ``reduction``.  Its config is the wrapped loss's
    (:func:`losskit.serialize`).

    Args:
        loss: a losskit loss object, a per-sample function, or a name or config
            that :func:`losskit.get` resolves.

    >>> import numpy as np
    >>> import losskit
    >>> loss = KerasLoss(losskit.SparseCategoricalCrossentropy(ignore_class=0))
    >>> y_pred = np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])
    >>> round(float(loss(np.array([1, 0]), y_pred)), 5)   # the ignored row is left out
    0.05129
    >>> KerasLoss.from_config(loss.get_config()).loss
    SparseCategoricalCrossentropy(name='sparse_categorical_crossentropy',
        reduction='sum_over_batch_size', dtype='float32', from_logits=False,
        ignore_class=0, axis=-1)
    """

    def __init__(self, loss: Any) -> None:
        resolved = _resolve(loss)
        super().__init__(name=resolved.name, reduction=resolved.reduction, dtype=resolved.dtype)
        self._losskit_loss = resolved

    @property
    def loss(self) -> Loss:
        """The wrapped losskit loss."""
        return self._losskit_loss

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Keras's ``Loss.__call__`` on a copy of a torch ``sample_weight``:
        Keras 3.15 scales the weights by a mask in place on torch (its cast to
        the same dtype returns the same tensor), and then gives the batch's
        scaled weights to the metrics, so a weighted metric with a mask
        (``ignore_class``, ``mask_zero``) counted the mask twice."""
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(sample_weight, torch.Tensor):
            sample_weight = sample_weight.clone()
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Per-sample losses; a mask from the loss (``ignore_class``) is set on
        them as a Keras mask, which Keras combines with ``y_pred``'s."""
        with _config.epsilon_within(keras.config.epsilon()):
            values, valid = self._losskit_loss.call_with_mask(y_true, y_pred)
        if valid is not None:
            _set_keras_mask(values, valid)
        return values

    def get_config(self) -> dict[str, Any]:
        """``{"loss": losskit.serialize(loss)}`` (without a dtype not given)."""
        return {"loss": _serialized(self._losskit_loss)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KerasLoss:
        """Rebuild from :meth:`get_config`'s output."""
        if not isinstance(config, Mapping) or "loss" not in config:
            raise ValueError(f"A KerasLoss config needs a 'loss' key. Received: {config!r}.")
        return cls(_deserialize(config["loss"]))

    def __repr__(self) -> str:
        return f"KerasLoss({self._losskit_loss!r})"


def as_keras_loss(loss: Any) -> KerasLoss:
    """A ``keras.losses.Loss`` computing ``loss`` with Keras's weights and masks.

    Args:
        loss: a losskit loss object (``losskit.Huber(delta=2.0)``), a per-sample
            function (``losskit.log_cosh``, or your own ``fn(y_true, y_pred)``
            returning per-sample losses), or a name or config dict that
            :func:`losskit.get` resolves (``"mse"``, ``"Huber"``).  A
            :class:`KerasLoss` is returned unchanged.

    Returns:
        A :class:`KerasLoss` with the loss's ``name``, ``reduction`` and ``dtype``
        (``keras.config.floatx()`` where the loss was built without one).

    Raises:
        TypeError: ``loss`` is not a loss (or is already a Keras loss or metric).
        ValueError: ``loss`` is an unknown name or an invalid config.

    >>> as_keras_loss("mse")
    KerasLoss(LossFunctionWrapper(name='mean_squared_error', reduction='sum_over_batch_size',
        dtype='float32', fn={...}))
    >>> as_keras_loss("mean_sqared_error")
    Traceback (most recent call last):
        ...
    ValueError: Invalid `loss`: Unknown loss 'mean_sqared_error'. Did you mean ...
    """
    if isinstance(loss, KerasLoss):
        return loss
    return KerasLoss(loss)


# --- the metric ------------------------------------------------------------------------


def _align_ranks(a: Any, b: Any) -> tuple[Any, Any]:
    """Keras's rank rule: when ranks differ by one and the longer ends in 1, a
    rank-1 partner gains a trailing axis, otherwise the longer loses its own."""
    ops = keras.ops
    rank_a, rank_b = len(a.shape), len(b.shape)
    if rank_a == rank_b + 1 and a.shape[-1] == 1:
        return (a, ops.expand_dims(b, -1)) if rank_b == 1 else (ops.squeeze(a, -1), b)
    if rank_b == rank_a + 1 and b.shape[-1] == 1:
        return (ops.expand_dims(a, -1), b) if rank_a == 1 else (a, ops.squeeze(b, -1))
    return a, b


def _batch_sums(
    values: Any, sample_weight: Any, mask: Any, reduction: str, dtype: str
) -> tuple[Any, Any]:
    """The numerator and divisor of the loss's reduction on one batch.

    ``total`` is the sum of the weighted, masked per-sample losses; ``count`` is
    what the reduction divides it by: the number of (valid) loss elements for
    ``"sum_over_batch_size"``/``"mean"`` (and ``"sum"``, which ignores it), the
    sum of the weights for ``"mean_with_sample_weight"``.  Summed over batches,
    ``total / count`` is the reduction over the whole data set.
    """
    ops = keras.ops
    values = ops.cast(values, dtype)
    weight = None
    if sample_weight is not None:
        weight = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
    if mask is not None:
        mask = ops.cast(mask, dtype)
        if weight is None:
            weight = mask
        else:
            aligned_mask, weight = _align_ranks(mask, weight)
            weight = weight * aligned_mask
    if weight is not None:
        values, weight = _align_ranks(values, weight)
        values = values * weight
    total = ops.sum(values)
    size = math.prod(values.shape)
    if reduction == "mean_with_sample_weight" and weight is not None:
        count = ops.sum(weight)
    elif mask is not None:
        # Keras gives valid entries the weight size(mask) / valid, then divides
        # by the number of loss elements: the mean over the valid ones.
        count = ops.sum(mask) * (size / max(math.prod(mask.shape), 1))
    else:
        count = ops.cast(size, dtype)
    return total, ops.cast(count, dtype)


@keras.saving.register_keras_serializable(package="losskit")
class KerasMetric(keras.metrics.Metric):
    """A losskit loss as a stateful Keras metric: use :func:`as_keras_metric`.

    It keeps two variables, ``total`` (the sum of the weighted, masked
    per-sample losses) and ``count`` (the divisor of the loss's reduction: the
    number of valid loss elements, or the sum of the weights for
    ``"mean_with_sample_weight"``), so ``result()`` is the loss over every batch
    seen since ``reset_state()``, as if computed on all of them at once
    (``total`` itself for ``"sum"``).  Masks (``y_pred``'s Keras mask and the
    loss's own, from ``ignore_class``) and ``sample_weight`` count as in the
    loss.

    Keras logs a loss as the mean of its batch values weighted by batch size;
    for ``"sum_over_batch_size"`` and ``"mean"`` without masks that is this
    metric's value exactly (with masks, when each batch has the same share of
    valid entries).  A loss that gives one value per batch (Dice or Tversky
    with ``axis=None``) counts it once per sample, as Keras's loss tracker does.

    Note the difference from Keras's own metrics (``MeanMetricWrapper``): with
    sample weights, those divide by the sum of the weights, which is this metric
    for a loss with ``reduction="mean_with_sample_weight"``.

    Args:
        loss: as for :func:`as_keras_loss`; its reduction must not be None/"none".
        name: the metric's name; the loss's name by default.
        dtype: dtype of the state and result; ``keras.config.floatx()`` by default.

    >>> import numpy as np
    >>> import losskit
    >>> metric = KerasMetric(losskit.MeanSquaredError())
    >>> metric.update_state(np.array([[0.0], [1.0], [2.0]]), np.array([[0.5], [1.0], [1.0]]))
    >>> metric.update_state(np.array([[4.0]]), np.array([[2.0]]))
    >>> float(metric.result())   # the loss on all four samples
    1.3125
    >>> metric.reset_state()
    >>> float(metric.result())
    0.0
    """

    def __init__(self, loss: Any, name: str | None = None, dtype: Any = None) -> None:
        resolved = _resolve(loss)
        if resolved.reduction in (None, "none"):
            raise ValueError(
                "`loss` must reduce to be a metric: give it a reduction such as "
                f"'sum_over_batch_size'. Received: {resolved!r}."
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a string. Received: name={name!r}.")
        super().__init__(name=name or resolved.name, dtype=dtype)
        self._losskit_loss = resolved
        self._direction = "down"  # lower is better: Keras's callbacks read this in mode "auto"
        self.total = self.add_variable(
            shape=(), initializer=keras.initializers.Zeros(), dtype=self.dtype, name="total"
        )
        self.count = self.add_variable(
            shape=(), initializer=keras.initializers.Zeros(), dtype=self.dtype, name="count"
        )

    @property
    def loss(self) -> Loss:
        """The wrapped losskit loss."""
        return self._losskit_loss

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add one batch: its per-sample losses, weighted and masked."""
        ops = keras.ops
        in_mask = _get_keras_mask(y_pred)
        dtype = self._losskit_loss.dtype
        y_true = ops.convert_to_tensor(y_true, dtype=dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=dtype)
        with _config.epsilon_within(keras.config.epsilon()):
            values, valid = self._losskit_loss.call_with_mask(y_true, y_pred)
        if len(values.shape) == 0 and len(y_pred.shape) > 0:
            # One value per batch: count it once per sample (Keras's loss tracker).
            values = ops.broadcast_to(values, (y_pred.shape[0],))
        mask = in_mask
        if valid is not None:
            mask = valid if mask is None else ops.logical_and(ops.cast(mask, "bool"), valid)
        total, count = _batch_sums(
            values, sample_weight, mask, str(self._losskit_loss.reduction), self.dtype
        )
        self.total.assign_add(total)
        self.count.assign_add(count)

    def result(self) -> Any:
        """The loss over every batch since the last reset (0 before any)."""
        if self._losskit_loss.reduction == "sum":
            return keras.ops.cast(self.total, self.dtype)
        return keras.ops.divide_no_nan(self.total, self.count)

    def reset_state(self) -> None:
        """Forget every batch."""
        self.total.assign(0.0)
        self.count.assign(0.0)

    def merge_state(self, metrics: Any) -> None:
        """Add the state of other metrics of the same loss (from other workers or
        data shards): the result is then the loss over all their batches too."""
        for other in metrics:
            if not (isinstance(other, KerasMetric) and _same_loss(other.loss, self._losskit_loss)):
                raise ValueError(
                    f"merge_state expects KerasMetric objects of the same loss as "
                    f"{self.name!r}. Received: {other!r}."
                )
            self.total.assign_add(keras.ops.cast(other.total, self.dtype))
            self.count.assign_add(keras.ops.cast(other.count, self.dtype))

    def get_config(self) -> dict[str, Any]:
        """``name``, ``dtype`` and ``{"loss": losskit.serialize(loss)}``."""
        return {**super().get_config(), "loss": _serialized(self._losskit_loss)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KerasMetric:
        """Rebuild from :meth:`get_config`'s output."""
        if not isinstance(config, Mapping) or "loss" not in config:
            raise ValueError(f"A KerasMetric config needs a 'loss' key. Received: {config!r}.")
        arguments = dict(config)
        return cls(_deserialize(arguments.pop("loss")), **arguments)

    def __repr__(self) -> str:
        return f"KerasMetric({self._losskit_loss!r}, name={self.name!r})"


def _same_loss(a: Loss, b: Loss) -> bool:
    """The same loss up to its name (names of your own classes are numbered)."""
    config_a, config_b = dict(a.get_config()), dict(b.get_config())
    config_a.pop("name", None)
    config_b.pop("name", None)
    return type(a) is type(b) and config_a == config_b


def as_keras_metric(loss: Any, name: str | None = None, dtype: Any = None) -> KerasMetric:
    """A stateful ``keras.metrics.Metric`` giving the value of ``loss`` over all
    batches seen; see :class:`KerasMetric`.

    Args:
        loss: as for :func:`as_keras_loss` (with a reducing reduction).
        name: the metric's name (the key in ``fit``/``evaluate`` logs); the
            loss's name by default.
        dtype: dtype of the state; ``keras.config.floatx()`` by default.

    >>> as_keras_metric("mae").name
    'mean_absolute_error'
    """
    return KerasMetric(loss, name=name, dtype=dtype)


# --- a losskit loss object passed to Keras directly -----------------------------------------

_NOT_FOUND = object()


def _warn_if_reweighted(loss: Loss, caller: FrameType) -> None:
    """Called by ``losskit.Loss.__call__`` when its caller is a Keras module:
    warn if that caller is Keras's wrapper of a plain function around ``loss``
    and is about to weight, mask or batch-average its reduced value."""
    if loss.reduction in (None, "none"):
        return  # per-sample values: exactly what Keras's wrappers expect
    wrapper = caller.f_locals.get("self")
    kind = type(loss).__name__
    if isinstance(wrapper, keras.losses.Loss) and getattr(wrapper, "fn", None) is loss:
        # Keras's `Loss.__call__(y_true, y_pred, sample_weight)` is the frame above
        # `LossFunctionWrapper.call`: without weights or a mask the reduced value
        # passes through unchanged.  If its locals are not found, warn anyway.
        outer = caller.f_back
        scope = outer.f_locals if outer is not None else {}
        if scope.get("sample_weight", _NOT_FOUND) is None and (
            scope.get("in_mask", _NOT_FOUND) is None
        ):
            return
        warnings.warn(
            f"losskit.{kind} (name={loss.name!r}) was given to Keras as a loss function, "
            "and Keras is applying sample_weight, class_weight or a mask to what it "
            f"returns: the already reduced ({loss.reduction!r}) loss, not the per-sample "
            f"losses. The value differs from keras.losses.{kind}'s. Use "
            f"losskit.keras.as_keras_loss(loss) (or the per-sample function) in compile().",
            ReweightedLossWarning,
            stacklevel=3,
        )
    elif isinstance(wrapper, keras.metrics.Metric) and getattr(wrapper, "_fn", None) is loss:
        warnings.warn(
            f"losskit.{kind} (name={loss.name!r}) was given to Keras as a metric function: "
            "Keras averages what it returns, one reduced value per batch, so batches of "
            "different sizes, sample weights and masks count differently than in the loss "
            f"and in keras.metrics. Use losskit.keras.as_keras_metric(loss) in compile().",
            ReweightedLossWarning,
            stacklevel=3,
        )
