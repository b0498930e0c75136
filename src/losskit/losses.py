"""Loss classes: ``Loss``, ``LossFunctionWrapper`` and one class per loss.

A loss object is called as ``loss(y_true, y_pred, sample_weight=None,
mask=None)``.  It casts both inputs to its ``dtype`` (``floatx()`` by
default), computes the per-sample losses, and weights, masks and reduces them
with Keras's rules (see :mod:`losskit.reduction`).
"""

from __future__ import annotations

import collections
import re
import sys
import threading
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as _np

from losskit import _array, _config, _numpy_fast, _torch_native, functional, kernels
from losskit._array import Array
from losskit.functional import probabilistic, regression, segmentation
from losskit.functional.metric_learning import check_gamma, check_margin, circle_unchecked
from losskit.functional.probabilistic import (
    check_binary_alpha,
    check_categorical_alpha,
    check_class_axis,
    check_focal_gamma,
    check_ignore_class,
    check_label_smoothing,
    check_q,
)
from losskit.functional.regression import check_delta
from losskit.functional.segmentation import check_coefficient
from losskit.reduction import reduce_weighted_values, standardize_reduction

__all__ = [
    "CTC",
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "CategoricalGeneralizedCrossEntropy",
    "CategoricalHinge",
    "Circle",
    "CosineSimilarity",
    "Dice",
    "Hinge",
    "Huber",
    "KLDivergence",
    "LogCosh",
    "Loss",
    "LossFunctionWrapper",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredError",
    "MeanSquaredLogarithmicError",
    "Poisson",
    "SparseCategoricalCrossentropy",
    "SquaredHinge",
    "Tversky",
]

_name_counts: collections.Counter[str] = collections.Counter()
_name_lock = threading.Lock()


def to_snake_case(name: str) -> str:
    """``"MyLoss"`` -> ``"my_loss"``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(prefix: str) -> str:
    """``prefix``, then ``prefix_1``, ``prefix_2``, ... (as Keras names objects)."""
    with _name_lock:
        count = _name_counts[prefix]
        _name_counts[prefix] += 1
    return prefix if count == 0 else f"{prefix}_{count}"


class Loss:
    """Base class of all losses.

    Subclass it and implement ``call(y_true, y_pred)``, returning per-sample
    losses as an array of the library of ``y_pred`` (get its namespace with
    ``array_api_compat.array_namespace(y_pred)``).  Calling the object casts
    the inputs to ``dtype`` and applies ``sample_weight``, ``mask`` and the
    reduction.

    Args:
        name: name of the loss; defaults to the class name in snake case.
        reduction: ``"sum_over_batch_size"`` (default), ``"sum"``, ``"mean"``,
            ``"mean_with_sample_weight"``, ``"none"`` or ``None``; see
            :mod:`losskit.reduction`.
        dtype: dtype of the computation: ``"float16"``, ``"bfloat16"``,
            ``"float32"`` or ``"float64"`` (or a dtype object); ``None`` means
            ``losskit.floatx()`` at construction.

    >>> import numpy as np
    >>> import array_api_compat
    >>> class MeanFourthPower(Loss):
    ...     def call(self, y_true, y_pred):
    ...         xp = array_api_compat.array_namespace(y_pred)
    ...         return xp.mean((y_true - y_pred) ** 4, axis=-1)
    >>> loss = MeanFourthPower()
    >>> loss.name
    'mean_fourth_power'
    >>> float(loss(np.zeros((2, 2)), np.ones((2, 2))))
    1.0
    """

    def __init__(
        self,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype: Any = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a string. Received: name={name!r}.")
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self.reduction = standardize_reduction(reduction)
        self._dtype = _array.standardize_float_type(dtype)
        # losskit.keras gives a loss built without a dtype Keras's floatx().
        self._dtype_given = dtype is not None

    @property
    def dtype(self) -> str:
        """The dtype the inputs are cast to, as a string."""
        return self._dtype

    def __call__(
        self,
        y_true: Any,
        y_pred: Any,
        sample_weight: Any = None,
        mask: Any = None,
    ) -> Array:
        """Compute the reduced loss.

        Args:
            y_true: targets (any array library, list or scalar).
            y_pred: predictions; their library and device are the result's.
            sample_weight: None, a scalar, or weights aligned with the
                per-sample losses (see :mod:`losskit.reduction`).
            mask: None or a boolean array over the per-sample losses; False
                entries are left out (Keras takes masks from tensors).
        """
        if "keras" in sys.modules:
            _check_keras_caller(self)
        if isinstance(self, _BuiltinLoss):
            fast = self._fast_call(y_true, y_pred, sample_weight, mask)
            if fast is not None:
                return fast
        return self._reference_call(y_true, y_pred, sample_weight, mask)

    def _fast_call(self, y_true: Any, y_pred: Any, sample_weight: Any, mask: Any) -> Any:
        """The loss from the first fast path that takes the call, or None:
        a small NumPy call straight to the reference's math; an eager JAX
        call as one cached jit; on torch CPU, torch's own fused loss first
        where it wins (see :func:`losskit._torch_native.takes_first`); the
        fused kernels; then the NumPy fast path or the torch lowering."""
        if type(y_pred) is _np.ndarray and y_pred.size < kernels.MIN_ELEMENTS:
            return _numpy_fast.fast_call(self, y_true, y_pred, sample_weight, mask)
        if _eager_jax_call(y_true, y_pred, sample_weight, mask) and self._dtype in _JIT_DTYPES:
            return _compiled_for_jax(self)(y_true, y_pred, sample_weight, mask)
        native_first = _torch_native.takes_first(self, y_pred)
        if native_first:
            native = _torch_native.native_call(self, y_true, y_pred, sample_weight, mask)
            if native is not None:
                return native
        fused = kernels.fused_call(self, y_true, y_pred, sample_weight, mask)
        if fused is not None:
            return fused
        if type(y_pred) is _np.ndarray:
            return _numpy_fast.fast_call(self, y_true, y_pred, sample_weight, mask)
        if native_first:
            return None
        return _torch_native.native_call(self, y_true, y_pred, sample_weight, mask)

    def _reference_call(self, y_true: Any, y_pred: Any, sample_weight: Any, mask: Any) -> Array:
        """:meth:`__call__` through the array-API reference implementation."""
        xp = _array.namespace_of(y_pred)
        dtype = _array.float_dtype(xp, self._dtype)
        y_pred = _array.as_array(xp, y_pred, "y_pred", dtype=dtype)
        y_true = _array.as_array(xp, y_true, "y_true", dtype=dtype, device=_array.device_of(y_pred))
        values, loss_mask = self.call_with_mask(y_true, y_pred)
        if loss_mask is not None:
            if mask is None:
                mask = loss_mask
            else:
                user_mask = _array.as_array(xp, mask, "mask", device=_array.device_of(y_pred))
                if user_mask.dtype != xp.bool:  # (the standard has no bool != int)
                    user_mask = user_mask != 0
                mask = xp.logical_and(user_mask, loss_mask)
        return reduce_weighted_values(
            values,
            sample_weight=sample_weight,
            mask=mask,
            reduction=self.reduction,
            dtype=dtype,
        )

    def call(self, y_true: Array, y_pred: Array) -> Array:
        """Per-sample losses; implemented by subclasses."""
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred).")

    def call_with_mask(self, y_true: Array, y_pred: Array) -> tuple[Array, Array | None]:
        """Per-sample losses and a mask of the entries that count (or None).

        Override it instead of :meth:`call` for losses that exclude entries,
        like ``ignore_class`` in sparse categorical crossentropy.
        """
        return self.call(y_true, y_pred), None

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, as a JSON-serialisable dict."""
        return {"name": self.name, "reduction": self.reduction, "dtype": self._dtype}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        """Rebuild a loss from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


# Eager JAX calls of built-in losses run as one jax.jit-compiled function,
# cached per loss object, epsilon (read at call time) and the object's
# attributes (a user may set ``loss.reduction`` between calls: the function
# compiled for the old one kept computing it), and retraced by JAX per shape
# and dtype: one dispatch instead of one per array operation.
_JAX_COMPILED: weakref.WeakKeyDictionary[Loss, dict[Any, Callable[..., Any]]] = (
    weakref.WeakKeyDictionary()
)


# XLA compiles some operations on CPU otherwise than they run one by one: in
# bfloat16 a clip of a NaN ratio gave the clip's bound (a finite loss from a NaN
# prediction), and ``values * mask`` becomes a select, so a masked-out inf is 0
# where the reference gives inf * 0 = NaN.  The cached jit is the reference's
# function only without a mask and in float32/float64.
_JIT_DTYPES = ("float32", "float64")


def _eager_jax_call(y_true: Any, y_pred: Any, sample_weight: Any, mask: Any) -> bool:
    """Whether ``y_pred`` is a concrete JAX array (not a tracer: inside a
    user's ``jit`` the loss is traced as it is), ``y_true`` and the weights
    are arrays of numbers or None, which ``jax.jit`` takes as arguments,
    there is no mask, and fast paths are preferred."""
    jax = sys.modules.get("jax")
    if jax is None or not isinstance(y_pred, jax.Array) or isinstance(y_pred, jax.core.Tracer):
        return False
    if mask is not None or y_true is None or _config.backend_preference() != "fast":
        return False
    return _jit_argument(y_true) and _jit_argument(sample_weight)


def _jit_argument(x: Any) -> bool:
    if x is None:
        return True
    jax = sys.modules["jax"]
    if isinstance(x, jax.Array):
        return not isinstance(x, jax.core.Tracer)
    return type(x) is _np.ndarray and x.dtype.kind in "biuf"


_JAX_STATES = 8
"""Compiled functions kept per loss object.  A loss whose arguments change
call after call (a ``delta`` schedule) would compile anew each time (30 ms
or more) and keep every function: past this many, a new state runs eagerly."""


def _compiled_for_jax(loss: Loss) -> Callable[..., Any]:
    jax = sys.modules["jax"]
    by_state = _JAX_COMPILED.setdefault(loss, {})
    key = (_config.epsilon(), _state_key({k: v for k, v in vars(loss).items() if k != "name"}))
    compiled = by_state.get(key)
    if compiled is None:
        if len(by_state) >= _JAX_STATES:
            return loss._reference_call
        owner = weakref.ref(loss)  # the cache must not keep the loss alive

        def pure(y_true: Any, y_pred: Any, sample_weight: Any, mask: Any) -> Any:
            target = owner()
            assert target is not None
            return target._reference_call(y_true, y_pred, sample_weight, mask)

        compiled = by_state[key] = jax.jit(pure)
    return compiled


def _state_key(value: Any) -> Any:
    """A hashable key of a loss's attributes that changes with any of them:
    arrays by their bytes (their ``repr`` elides the middle of long ones, so
    an ``alpha`` of 2000 classes changed in place kept the old function)."""
    if isinstance(value, Mapping):
        return tuple((key, _state_key(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, *map(_state_key, value))
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        try:
            array = _np.asarray(value)
        except (TypeError, RuntimeError, ValueError):  # (a GPU tensor, say)
            return repr(value)
        return (type(value).__name__, array.dtype.str, array.shape, array.tobytes())
    return repr(value)


def _check_keras_caller(loss: Loss) -> None:
    """Keras calls a loss object it was given in ``compile`` as a per-sample
    function, and weights what it returns: warn where that reweights this
    reduced value (see :mod:`losskit.keras`)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.compiler.is_compiling():
        return  # torch.compile cannot trace frame inspection
    caller = sys._getframe(2)
    if caller.f_globals.get("__name__", "").startswith("keras."):
        from losskit.keras import _warn_if_reweighted

        _warn_if_reweighted(loss, caller)


class LossFunctionWrapper(Loss):
    """Turn a per-sample function ``fn(y_true, y_pred, **kwargs)`` into a loss.

    Before calling ``fn``, a trailing dimension of 1 on ``y_true`` or ``y_pred``
    is aligned away (Keras's rank alignment).

    >>> import numpy as np
    >>> import losskit
    >>> loss = LossFunctionWrapper(losskit.huber, delta=0.5, reduction="sum")
    >>> float(loss(np.array([[0.0], [2.0]]), np.array([[1.0], [2.0]])))
    0.375
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"`fn` must be callable. Received: fn={fn!r}.")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    @property
    def arguments(self) -> Mapping[str, Any]:
        """The keyword arguments passed to ``fn`` (read-only)."""
        return types.MappingProxyType(self._fn_kwargs)

    def call(self, y_true: Array, y_pred: Array) -> Array:
        xp = _array.namespace_of(y_pred)
        y_true, y_pred = _array.align_ranks(xp, y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["fn"] = serialize_function(self.fn)
        config.update(self._fn_kwargs)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        """Rebuild from :meth:`get_config`: ``fn`` is a function or the config
        of one of losskit's functions (``losskit.deserialize`` also resolves
        aliases and ``custom_objects`` before calling this)."""
        config = dict(config)
        if "fn" in config and not callable(config["fn"]):
            config["fn"] = _builtin_function(config["fn"])
        return cls(**config)


def serialize_function(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keras's config of a plain function: it is referred to by name."""
    return {
        "module": "builtins",
        "class_name": "function",
        "config": getattr(fn, "__name__", repr(fn)),
        "registered_name": "function",
    }


def _builtin_function(config: Any) -> Callable[..., Any]:
    """The losskit function a function config names (by its ``__name__``)."""
    name = config.get("config") if isinstance(config, Mapping) else config
    if isinstance(name, str) and name in functional.__all__:
        return getattr(functional, name)
    shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
    raise ValueError(
        f"Unknown loss function {shown} in a LossFunctionWrapper config. Functions of "
        "your own resolve through losskit.deserialize(config, custom_objects={...})."
    )


class _BuiltinLoss(LossFunctionWrapper):
    """A wrapper around one of losskit's functions, whose config is its
    constructor arguments (no ``fn`` key, as in Keras)."""

    function: ClassVar[Callable[..., Any]]
    # The function's body without its argument checks, which the class ran once
    # in __init__ (None: the function has no arguments to check).
    compute: ClassVar[Callable[..., Any] | None] = None

    def __init__(
        self,
        reduction: str | None,
        name: str | None,
        dtype: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(type(self).function, reduction=reduction, name=name, dtype=dtype, **kwargs)

    def call(self, y_true: Array, y_pred: Array) -> Array:
        compute = type(self).compute or type(self).function
        xp = _array.namespace_of(y_pred)
        y_true, y_pred = _array.align_ranks(xp, y_true, y_pred)
        return compute(y_true, y_pred, **self._fn_kwargs)

    def get_config(self) -> dict[str, Any]:
        config = Loss.get_config(self)
        config.update(self._fn_kwargs)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        return cls(**config)


class MeanSquaredError(_BuiltinLoss):
    """Mean of squares of errors; see :func:`losskit.mean_squared_error`.

    >>> import losskit
    >>> float(losskit.MeanSquaredError()([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]))
    0.5
    """

    function = staticmethod(functional.mean_squared_error)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mean_squared_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype)


class MeanAbsoluteError(_BuiltinLoss):
    """Mean of absolute errors; see :func:`losskit.mean_absolute_error`.

    >>> import losskit
    >>> float(losskit.MeanAbsoluteError()([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]))
    0.5
    """

    function = staticmethod(functional.mean_absolute_error)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mean_absolute_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype)


class MeanAbsolutePercentageError(_BuiltinLoss):
    """Mean absolute percentage error; see
    :func:`losskit.mean_absolute_percentage_error`.

    >>> import losskit
    >>> float(losskit.MeanAbsolutePercentageError()([[2.0, 4.0]], [[1.0, 5.0]]))
    37.5
    """

    function = staticmethod(functional.mean_absolute_percentage_error)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mean_absolute_percentage_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype)


class MeanSquaredLogarithmicError(_BuiltinLoss):
    """Mean squared logarithmic error; see
    :func:`losskit.mean_squared_logarithmic_error`.

    >>> import losskit
    >>> round(float(losskit.MeanSquaredLogarithmicError()([[0.0, 1.0]], [[1.0, 1.0]])), 5)
    0.24023
    """

    function = staticmethod(functional.mean_squared_logarithmic_error)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mean_squared_logarithmic_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype)


class CosineSimilarity(_BuiltinLoss):
    """Negative cosine similarity along ``axis``; see
    :func:`losskit.cosine_similarity`.

    Its config keeps ``axis`` (Keras 3.15 drops it; fixed upstream).

    >>> import losskit
    >>> loss = losskit.CosineSimilarity(axis=-1)
    >>> round(float(loss([[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]])), 5)
    -0.5
    """

    function = staticmethod(functional.cosine_similarity)

    def __init__(
        self,
        axis: int | Sequence[int] = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "cosine_similarity",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype, axis=_config_axis(axis))


class Huber(_BuiltinLoss):
    """Huber loss; see :func:`losskit.huber`.

    ``delta`` must be > 0, and the config keeps it (Keras 3.15 accepts any
    ``delta`` and drops it from the config; both fixed upstream).

    >>> import losskit
    >>> round(float(losskit.Huber()([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])), 5)
    0.155
    """

    function = staticmethod(functional.huber)
    compute = staticmethod(regression.huber_unchecked)

    def __init__(
        self,
        delta: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "huber_loss",
        dtype: Any = None,
    ) -> None:
        check_delta(delta)
        super().__init__(reduction, name, dtype, delta=delta)


class LogCosh(_BuiltinLoss):
    """Logarithm of the hyperbolic cosine of the error; see
    :func:`losskit.log_cosh`.

    >>> import losskit
    >>> round(float(losskit.LogCosh()([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]])), 3)
    0.108
    """

    function = staticmethod(functional.log_cosh)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "log_cosh",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype)


class Hinge(_BuiltinLoss):
    """Hinge loss; see :func:`losskit.hinge`.

    >>> import losskit
    >>> round(float(losskit.Hinge()([[0.0, 1.0], [0.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]])), 5)
    1.3
    """

    function = staticmethod(functional.hinge)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "hinge",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype)


class SquaredHinge(_BuiltinLoss):
    """Squared hinge loss; see :func:`losskit.squared_hinge`.

    >>> import losskit
    >>> round(float(losskit.SquaredHinge()([[0.0, 1.0], [0.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]])), 5)
    1.86
    """

    function = staticmethod(functional.squared_hinge)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "squared_hinge",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype)


class CategoricalHinge(_BuiltinLoss):
    """Categorical hinge loss; see :func:`losskit.categorical_hinge`.

    >>> import losskit
    >>> loss = losskit.CategoricalHinge()
    >>> round(float(loss([[0.0, 1.0], [1.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]])), 5)
    1.2
    """

    function = staticmethod(functional.categorical_hinge)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_hinge",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype)


class KLDivergence(_BuiltinLoss):
    """Kullback-Leibler divergence; see :func:`losskit.kl_divergence`.

    >>> import losskit
    >>> round(float(losskit.KLDivergence()([[0.5, 0.5]], [[0.25, 0.75]])), 5)
    0.14384
    """

    function = staticmethod(functional.kl_divergence)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "kl_divergence",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype)


class Poisson(_BuiltinLoss):
    """Poisson loss; see :func:`losskit.poisson`.

    >>> import losskit
    >>> round(float(losskit.Poisson()([[1.0, 0.0]], [[1.0, 2.0]])), 5)
    1.5
    """

    function = staticmethod(functional.poisson)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "poisson",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype)


class BinaryCrossentropy(_BuiltinLoss):
    """Binary crossentropy; see :func:`losskit.binary_crossentropy`.

    >>> import losskit
    >>> loss = losskit.BinaryCrossentropy(from_logits=True)
    >>> round(float(loss([[0.0, 1.0, 0.0, 0.0]], [[-18.6, 0.51, 2.94, -12.8]])), 5)
    0.86546
    """

    function = staticmethod(functional.binary_crossentropy)
    compute = staticmethod(probabilistic.binary_crossentropy_unchecked)

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_label_smoothing(label_smoothing)
        axis = check_class_axis(axis)
        super().__init__(
            reduction,
            name,
            dtype,
            from_logits=bool(from_logits),
            label_smoothing=label_smoothing,
            axis=axis,
        )


class CategoricalCrossentropy(_BuiltinLoss):
    """Categorical crossentropy; see :func:`losskit.categorical_crossentropy`.

    >>> import losskit
    >>> loss = losskit.CategoricalCrossentropy()
    >>> round(float(loss([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])), 5)
    1.17694
    """

    function = staticmethod(functional.categorical_crossentropy)
    compute = staticmethod(probabilistic.categorical_crossentropy_unchecked)

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_label_smoothing(label_smoothing)
        axis = check_class_axis(axis)
        super().__init__(
            reduction,
            name,
            dtype,
            from_logits=bool(from_logits),
            label_smoothing=label_smoothing,
            axis=axis,
        )


class SparseCategoricalCrossentropy(_BuiltinLoss):
    """Categorical crossentropy with integer labels; see
    :func:`losskit.sparse_categorical_crossentropy`.

    With ``ignore_class``, entries with that label are left out of the
    reduction (the mean is over the other entries).  The config keeps
    ``axis`` (Keras 3.15 drops it; fixed upstream).

    >>> import losskit
    >>> loss = losskit.SparseCategoricalCrossentropy(ignore_class=0)
    >>> round(float(loss([1, 0], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])), 5)
    0.05129
    """

    function = staticmethod(functional.sparse_categorical_crossentropy)

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        axis: int = -1,
        name: str = "sparse_categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        ignore_class = check_ignore_class(ignore_class)
        axis = check_class_axis(axis)
        super().__init__(
            reduction,
            name,
            dtype,
            from_logits=bool(from_logits),
            ignore_class=ignore_class,
            axis=axis,
        )

    def call_with_mask(self, y_true: Array, y_pred: Array) -> tuple[Array, Array | None]:
        xp = _array.namespace_of(y_pred)
        y_true, y_pred = _array.align_ranks(xp, y_true, y_pred)
        return probabilistic.sparse_categorical_crossentropy_with_mask_unchecked(
            y_true, y_pred, **self._fn_kwargs
        )


class Dice(_BuiltinLoss):
    """Dice loss; see :func:`losskit.dice`.

    >>> import losskit
    >>> y_true = [[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]]
    >>> y_pred = [[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]]
    >>> losskit.Dice(axis=(1, 2, 3), reduction=None)(y_true, y_pred)
    array([0.5       , 0.75757575], dtype=float32)
    """

    function = staticmethod(functional.dice)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "dice",
        axis: int | Sequence[int] | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype, axis=_config_axis(axis))


class Tversky(_BuiltinLoss):
    """Tversky loss; see :func:`losskit.tversky`.

    ``alpha`` weighs false positives and ``beta`` false negatives (Keras 3.15
    swaps them; fixed upstream).

    >>> import losskit
    >>> loss = losskit.Tversky(alpha=0.9, beta=0.1)
    >>> round(float(loss([[1.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]])), 5)
    0.64286
    """

    function = staticmethod(functional.tversky)
    compute = staticmethod(segmentation.tversky_unchecked)

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        reduction: str | None = "sum_over_batch_size",
        name: str = "tversky",
        axis: int | Sequence[int] | None = None,
        dtype: Any = None,
    ) -> None:
        check_coefficient(alpha, "alpha")
        check_coefficient(beta, "beta")
        super().__init__(reduction, name, dtype, alpha=alpha, beta=beta, axis=_config_axis(axis))


class BinaryFocalCrossentropy(_BuiltinLoss):
    """Binary focal crossentropy; see :func:`losskit.binary_focal_crossentropy`.

    >>> import losskit
    >>> loss = losskit.BinaryFocalCrossentropy(gamma=2, from_logits=True)
    >>> round(float(loss([[0.0, 1.0, 0.0, 0.0]], [[-18.6, 0.51, 2.94, -12.8]])), 5)
    0.69121
    """

    function = staticmethod(functional.binary_focal_crossentropy)
    compute = staticmethod(probabilistic.binary_focal_crossentropy_unchecked)

    def __init__(
        self,
        apply_class_balancing: bool = False,
        alpha: float = 0.25,
        gamma: float = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_binary_alpha(alpha)
        check_focal_gamma(gamma)
        check_label_smoothing(label_smoothing)
        axis = check_class_axis(axis)
        super().__init__(
            reduction,
            name,
            dtype,
            apply_class_balancing=bool(apply_class_balancing),
            alpha=alpha,
            gamma=gamma,
            from_logits=bool(from_logits),
            label_smoothing=label_smoothing,
            axis=axis,
        )


class CategoricalFocalCrossentropy(_BuiltinLoss):
    """Categorical focal crossentropy; see
    :func:`losskit.categorical_focal_crossentropy`.

    ``alpha`` is one number or one weight per class (checked against the
    number of classes at call time).

    >>> import losskit
    >>> loss = losskit.CategoricalFocalCrossentropy()
    >>> round(float(loss([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])), 5)
    0.23315
    """

    function = staticmethod(functional.categorical_focal_crossentropy)
    compute = staticmethod(probabilistic.categorical_focal_crossentropy_unchecked)

    def __init__(
        self,
        alpha: float | Sequence[float] = 0.25,
        gamma: float = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        check_categorical_alpha(alpha)
        check_focal_gamma(gamma)
        check_label_smoothing(label_smoothing)
        axis = check_class_axis(axis)
        super().__init__(
            reduction,
            name,
            dtype,
            alpha=alpha,
            gamma=gamma,
            from_logits=bool(from_logits),
            label_smoothing=label_smoothing,
            axis=axis,
        )


class CategoricalGeneralizedCrossEntropy(_BuiltinLoss):
    """Generalized crossentropy with integer labels; see
    :func:`losskit.categorical_generalized_cross_entropy`.

    >>> import losskit
    >>> loss = losskit.CategoricalGeneralizedCrossEntropy(q=0.5)
    >>> round(float(loss([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])), 5)
    0.70909
    """

    function = staticmethod(functional.categorical_generalized_cross_entropy)
    compute = staticmethod(probabilistic.categorical_generalized_cross_entropy_unchecked)

    def __init__(
        self,
        q: float = 0.5,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_generalized_cross_entropy",
        dtype: Any = None,
    ) -> None:
        check_q(q)
        super().__init__(reduction, name, dtype, q=q)

    def call(self, y_true: Array, y_pred: Array) -> Array:
        # Labels have no class axis: no rank alignment (the function squeezes
        # a trailing axis of size 1 itself).
        return probabilistic.categorical_generalized_cross_entropy_unchecked(
            y_true, y_pred, **self._fn_kwargs
        )


class CTC(_BuiltinLoss):
    """Connectionist Temporal Classification loss; see :func:`losskit.ctc`.

    ``y_true`` is ``(batch, max_label_length)`` integer labels padded with 0
    (also the blank), ``y_pred`` is ``(batch, time, classes)`` logits.

    >>> import numpy as np
    >>> import losskit
    >>> logits = (np.arange(24.0).reshape((2, 4, 3)) - 12) / 100
    >>> round(float(losskit.CTC()([[1, 2, 1, 0], [1, 2, 0, 2]], logits)), 5)
    2.44865
    """

    function = staticmethod(functional.ctc)

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "ctc",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype)


class Circle(_BuiltinLoss):
    """Circle loss between integer labels and L2-normalised embeddings; see
    :func:`losskit.circle`.

    As in Keras, samples whose loss is 0 (no positive or no negative in the
    batch) are left out of the ``"sum_over_batch_size"``/``"mean"`` average
    and weigh 0 in ``"mean_with_sample_weight"``. ``gamma`` must be a finite
    number >= 0 and ``margin`` a finite number (Keras accepts any).

    >>> import numpy as np
    >>> import losskit
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> round(float(losskit.Circle(gamma=10.0)([1, 1, 2, 2], embeddings)), 4)
    0.7494
    """

    function = staticmethod(functional.circle)
    compute = staticmethod(circle_unchecked)

    def __init__(
        self,
        gamma: float = 80.0,
        margin: float = 0.4,
        remove_diagonal: bool = True,
        reduction: str | None = "sum_over_batch_size",
        name: str = "circle",
        dtype: Any = None,
    ) -> None:
        check_gamma(gamma)
        check_margin(margin)
        super().__init__(
            reduction,
            name,
            dtype,
            gamma=gamma,
            margin=margin,
            remove_diagonal=bool(remove_diagonal),
        )

    def call_with_mask(self, y_true: Array, y_pred: Array) -> tuple[Array, Array | None]:
        values = self.call(y_true, y_pred)
        return values, values > 0


def _config_axis(axis: Any) -> Any:
    """Validate an axis argument (None, an int or a sequence of ints) and
    return it unchanged, so the config holds what the caller gave."""
    axis = _array.python_int(axis)
    if axis is None or (isinstance(axis, int) and not isinstance(axis, bool)):
        return axis
    if isinstance(axis, (list, tuple)):
        axis = type(axis)(_array.python_int(a) for a in axis)
    if isinstance(axis, Sequence) and all(
        isinstance(a, int) and not isinstance(a, bool) for a in axis
    ):
        return axis
    raise TypeError(f"`axis` must be None, an int or a sequence of ints. Received: axis={axis!r}.")
