"""Array-library plumbing: namespaces, devices, dtypes, conversion and shapes.

Every loss resolves the array namespace ``xp`` once, from ``y_pred``, and
threads it through.  Nothing here looks at array *values*, only at shapes and
dtypes, so the same code runs eagerly, under ``jax.jit`` and under
``torch.compile``, and stays lazy on Dask.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

import array_api_compat
import numpy as _np

from losskit import _config

Array = Any
Namespace = ModuleType
_F = TypeVar("_F", bound=Callable[..., Any])

_LOW_PRECISION = ("float16", "bfloat16")


# Per-type facts, looked up once per type instead of on every call (a loss
# call on a small batch otherwise spends most of its time re-deriving them).
_NAMESPACES: dict[type, Namespace | None] = {}  # None: not an array-API array
_DTYPE_NAMES: dict[tuple[type, Any], str] = {}


_NUMPY_NAMESPACE: list[Namespace] = []


def numpy_namespace() -> Namespace:
    """array-api-compat's NumPy namespace, imported on first use: importing
    it takes about 75 ms (it touches every lazily imported NumPy submodule),
    most of ``import losskit``, and torch and JAX users never need it."""
    if not _NUMPY_NAMESPACE:
        import array_api_compat.numpy

        _NUMPY_NAMESPACE.append(array_api_compat.numpy)
    return _NUMPY_NAMESPACE[0]


def namespace_of(x: Any) -> Namespace:
    """The array-API namespace of ``x``; NumPy's for lists and scalars."""
    kind = type(x)
    namespace = _NAMESPACES[kind] if kind in _NAMESPACES else _namespace_of_type(x)
    return numpy_namespace() if namespace is None else namespace


def _namespace_of_type(x: Any) -> Namespace | None:
    if not array_api_compat.is_array_api_obj(x):
        namespace = None
    else:
        namespace = array_api_compat.array_namespace(x)
    if namespace is None or not array_api_compat.is_array_api_strict_namespace(namespace):
        # array-api-strict's namespace follows a settable API version: not cached
        _NAMESPACES[type(x)] = namespace
    return namespace


def is_array(x: Any) -> bool:
    """Whether ``x`` is an array-API array (cached per type)."""
    kind = type(x)
    if kind in _NAMESPACES:
        return _NAMESPACES[kind] is not None
    return array_api_compat.is_array_api_obj(x)


def device_of(x: Array) -> Any:
    """The device of ``x``, or None where it cannot be known (jit tracers)."""
    if type(x) is _np.ndarray:
        return "cpu"  # array-api-compat's answer, without its type checks
    if _is_torch_tensor(x):
        return x.device
    try:
        return array_api_compat.device(x)
    except Exception:  # pragma: no cover - libraries without device info
        return None


def _is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def dtype_name(dtype: Any) -> str:
    """A dtype's canonical name ("float32", "int64", "bfloat16", ...)."""
    if isinstance(dtype, str):
        return dtype
    # Keyed with the type first: equal hashes across libraries must not make
    # an array-api-strict dtype compare itself with NumPy's (it warns).
    key = (type(dtype), dtype)
    try:
        return _DTYPE_NAMES[key]
    except (KeyError, TypeError):  # TypeError: an unhashable dtype object
        pass
    name = getattr(dtype, "name", None)
    if not isinstance(name, str):
        text = str(dtype)
        for prefix in ("torch.", "array_api_strict.", "dtype(", "<class 'numpy."):
            if text.startswith(prefix):
                text = text[len(prefix) :]
        name = text.strip("')>")
    with contextlib.suppress(TypeError):
        _DTYPE_NAMES[key] = name
    return name


def largest_finite(xp: Namespace, dtype: Any) -> float:
    """The largest finite value of a floating ``dtype`` (ml_dtypes' bfloat16
    in NumPy, which ``numpy.finfo`` does not know, included)."""
    try:
        return float(xp.finfo(dtype).max)
    except (TypeError, ValueError, AttributeError):
        import ml_dtypes

        return float(ml_dtypes.finfo(dtype).max)


def standardize_float_type(dtype: Any, argument: str = "dtype") -> str:
    """Validate a float type given as a string or a library dtype object.

    Accepts Keras's mixed-precision policy names, whose compute dtype is the
    low-precision type ("mixed_float16" -> "float16").
    """
    if dtype is None:
        return _config.floatx()
    name = dtype_name(dtype)
    compute = getattr(dtype, "compute_dtype", None)  # a keras.DTypePolicy
    if isinstance(compute, str):
        name = compute
    name = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}.get(name, name)
    if name not in _config.FLOAT_TYPES:
        raise ValueError(
            f"Invalid value for argument `{argument}`: {dtype!r}. Expected one "
            f"of {_config.FLOAT_TYPES} (or a dtype object of those types)."
        )
    return name


_FLOAT_DTYPES: dict[tuple[str, str], Any] = {}


def float_dtype(xp: Namespace, name: str) -> Any:
    """The dtype object named ``name`` in namespace ``xp``.

    NumPy-backed namespaces (NumPy, Dask) that do not export a float type by
    name (float16 on Dask, bfloat16 everywhere) fall back to NumPy's dtype, or
    to ``ml_dtypes.bfloat16`` where ml_dtypes is installed.
    """
    key = (xp.__name__, name)  # (torch.compile cannot hash a module)
    if key in _FLOAT_DTYPES:
        return _FLOAT_DTYPES[key]
    dtype = _float_dtype(xp, name)
    if not array_api_compat.is_array_api_strict_namespace(xp):  # its API version can change
        _FLOAT_DTYPES[key] = dtype
    return dtype


def _float_dtype(xp: Namespace, name: str) -> Any:
    dtype = getattr(xp, name, None)
    numpy_backed = array_api_compat.is_numpy_namespace(xp) or array_api_compat.is_dask_namespace(xp)
    if dtype is None and numpy_backed:
        dtype = _numpy_float_dtype(name)
    if dtype is None:
        raise TypeError(
            f"The array library {xp.__name__} has no {name} dtype; "
            "choose another `dtype` or array library."
        )
    return dtype


def _numpy_float_dtype(name: str) -> Any:
    if name != "bfloat16":
        return _np.dtype(name)
    try:
        import ml_dtypes
    except ImportError:
        return None
    return ml_dtypes.bfloat16


_FLOAT_NAMES = frozenset(("float16", "bfloat16", "float32", "float64"))
_NUMERIC_NAMES = _FLOAT_NAMES | frozenset(
    ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
)


def is_floating(xp: Namespace, dtype: Any) -> bool:
    if dtype_name(dtype) in _FLOAT_NAMES:
        return True
    return bool(xp.isdtype(dtype, "real floating"))


def _is_numeric(xp: Namespace, dtype: Any) -> bool:
    if dtype_name(dtype) in _NUMERIC_NAMES:
        return True
    try:
        return bool(xp.isdtype(dtype, ("bool", "integral", "real floating")))
    except (TypeError, ValueError):
        return False


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        kind = f"{type(x).__module__}.{type(x).__name__}"
        return f"{kind} of shape {tuple(shape)} and dtype {dtype_name(dtype)}"
    return f"{type(x).__name__} {x!r:.80}"


def as_array(
    xp: Namespace,
    x: Any,
    argument: str,
    *,
    dtype: Any = None,
    device: Any = None,
) -> Array:
    """Convert ``x`` to an array of namespace ``xp`` on ``device``.

    ``x`` may be an array of another library (NumPy labels for torch
    predictions), a list or a scalar.  Raises TypeError for non-numeric input
    and ValueError for an array on another device of the same library.
    """
    if _as_it_is(xp, x, dtype, device):
        return x
    if is_array(x):
        source = namespace_of(x)
        if source is xp:
            source_device = device_of(x)
            if device is not None and source_device is not None and source_device != device:
                raise ValueError(
                    f"`{argument}` is on device {source_device!r} but `y_pred` is "
                    f"on device {device!r}. Move them to the same device first."
                )
        else:
            x = _convert_foreign(xp, x, argument, device)
    else:
        try:
            # Python floats go straight to `dtype`: torch would round them to float32 first.
            x = xp.asarray(x, device=device) if dtype is None else _asarray(xp, x, dtype, device)
        except Exception as error:
            raise TypeError(
                f"`{argument}` must be an array or a nested sequence of numbers. "
                f"Received: {_describe(x)} ({error})."
            ) from None
    if not _is_numeric(xp, x.dtype):
        raise TypeError(
            f"`{argument}` must hold booleans, integers or real floats. Received: {_describe(x)}."
        )
    if dtype is not None and x.dtype != dtype:
        x = xp.astype(x, dtype)
    return x


def _as_it_is(xp: Namespace, x: Any, dtype: Any, device: Any) -> bool:
    """The common case, checked cheaply: ``x`` is already an array of ``xp``
    (and of ``dtype``, or a float array where no dtype is asked for) on
    ``device``, so :func:`as_array` has nothing to do."""
    kind = type(x)
    if kind not in _NAMESPACES or _NAMESPACES[kind] is not xp:
        return False
    if dtype is None:
        if dtype_name(x.dtype) not in _FLOAT_NAMES:
            return False
    elif x.dtype != dtype:
        return False
    return device is None or kind is _np.ndarray or device_of(x) == device


def _asarray(xp: Namespace, x: Any, dtype: Any, device: Any) -> Array:
    """``x`` (a list or scalar) as an array of ``dtype``, refusing strings and
    other non-numbers the way the dtype check after it would."""
    probe = _np.asarray(x)
    if probe.dtype.kind not in "biuf":
        raise TypeError(f"not numeric (NumPy reads it as {probe.dtype})")
    return xp.asarray(x, dtype=dtype, device=device)


def _convert_foreign(xp: Namespace, x: Array, argument: str, device: Any) -> Array:
    """``x`` (an array of another library) as an array of ``xp`` on ``device``.

    DLPack first, which shares memory and keeps the shape (``torch.asarray``
    flattens a JAX array); the target's ``asarray`` where DLPack cannot carry
    the array (NumPy's read-only arrays, Dask); last, through NumPy (Dask for
    torch).  The shape is checked after
    either, so a conversion never reshapes silently.
    """
    shape = tuple(x.shape)
    attempts = (
        (_via_asarray, _via_dlpack)
        if isinstance(x, _np.ndarray)
        else (_via_dlpack, _via_asarray, _via_numpy)
    )
    errors = []
    for convert in attempts:
        try:
            converted = convert(xp, x, device)
            break
        except Exception as error:
            errors.append(error)
    else:
        raise ValueError(
            f"Cannot convert `{argument}` ({_describe(x)}, on device "
            f"{device_of(x)!r}) to the array library of `y_pred` "
            f"({xp.__name__}, device {device!r}): {errors[0]}. Convert it "
            "yourself, on the device of `y_pred`."
        ) from None
    if not same_shape(tuple(converted.shape), shape):
        raise ValueError(
            f"Converting `{argument}` to {xp.__name__} changed its shape from {shape} to "
            f"{tuple(converted.shape)}. Convert it yourself before calling the loss."
        )
    return converted


def _via_dlpack(xp: Namespace, x: Array, device: Any) -> Array:
    converted = xp.from_dlpack(x)
    return converted if device is None else xp.asarray(converted, device=device)


def _via_asarray(xp: Namespace, x: Array, device: Any) -> Array:
    return xp.asarray(x, device=device)


def _via_numpy(xp: Namespace, x: Array, device: Any) -> Array:
    """Through NumPy: a Dask array (computed, as ``asarray`` computes it for
    NumPy, JAX and array-api-strict) for torch, which reads neither its
    DLPack nor its ``__array__``."""
    return xp.asarray(_np.asarray(x), device=device)


def prediction_array(y_pred: Any) -> tuple[Namespace, Array]:
    """Resolve the namespace from ``y_pred`` and make it a float array.

    Floating arrays keep their dtype; integers, booleans, lists and scalars
    become ``floatx()``.
    """
    xp = namespace_of(y_pred)
    was_array = is_array(y_pred)
    y_pred = as_array(xp, y_pred, "y_pred")
    if not (was_array and is_floating(xp, y_pred.dtype)):
        y_pred = xp.astype(y_pred, float_dtype(xp, _config.floatx()))
    return xp, y_pred


def prepare_pair(y_true: Any, y_pred: Any) -> tuple[Namespace, Array, Array]:
    """Namespace from ``y_pred``; ``y_true`` converted to its library, device
    and dtype, as Keras's function forms do."""
    xp, y_pred = prediction_array(y_pred)
    y_true = as_array(xp, y_true, "y_true", dtype=y_pred.dtype, device=device_of(y_pred))
    return xp, y_true, y_pred


def align_ranks(
    xp: Namespace, x1: Array, x2: Array, expand_rank_1: bool = True
) -> tuple[Array, Array]:
    """Keras's rank alignment: when ranks differ by exactly one and the longer
    array ends in a dimension of 1, expand a rank-1 partner (if allowed),
    otherwise squeeze the longer one."""
    rank1, rank2 = x1.ndim, x2.ndim
    if rank1 == rank2 + 1 and x1.shape[-1] == 1:
        if rank2 == 1 and expand_rank_1:
            x2 = expand_dims(xp, x2, axis=-1)
        else:
            x1 = xp.squeeze(x1, axis=-1)
    elif rank2 == rank1 + 1 and x2.shape[-1] == 1:
        if rank1 == 1 and expand_rank_1:
            x1 = expand_dims(xp, x1, axis=-1)
        else:
            x2 = xp.squeeze(x2, axis=-1)
    return x1, x2


def expand_dims(xp: Namespace, x: Array, axis: int) -> Array:
    """``xp.expand_dims``; on Dask by indexing with None, which (unlike Dask's
    ``expand_dims``, a reshape) works on chunks of unknown size."""
    if not array_api_compat.is_dask_namespace(xp):
        return xp.expand_dims(x, axis=axis)
    axis %= x.ndim + 1
    return x[(slice(None),) * axis + (None,)]


def unknown_dim(dim: Any) -> bool:
    """Whether a dimension is unknown: None (jit tracing, array-API) or NaN
    (Dask after boolean indexing)."""
    return dim is None or (isinstance(dim, float) and math.isnan(dim))


def check_known_shape(x: Array, argument: str, loss: str) -> None:
    """Fail clearly on dimensions of unknown size (a Dask array after boolean
    indexing) where a loss needs their sizes (Circle's pairs, CTC's steps):
    Dask's own error came from inside the graph building."""
    if any(unknown_dim(dim) for dim in x.shape):
        raise ValueError(
            f"{loss}: `{argument}` has dimensions of unknown size {tuple(x.shape)} (a Dask "
            f"array after boolean indexing?); {loss} needs their sizes: call "
            "`.compute_chunk_sizes()` on it first."
        )


def same_shape(shape1: Sequence[Any], shape2: Sequence[Any]) -> bool:
    """Equal shapes, where an unknown dimension matches any other: the check
    is left to the computation (Dask raises on mismatched chunks)."""
    if shape1 == shape2:
        return True
    if len(shape1) != len(shape2):
        return False
    return all(
        d1 == d2 or unknown_dim(d1) or unknown_dim(d2)
        for d1, d2 in zip(shape1, shape2, strict=True)
    )


def check_same_shape(y_true: Array, y_pred: Array, loss: str) -> None:
    """Raise ValueError unless ``y_true`` and ``y_pred`` have the same shape."""
    if not same_shape(tuple(y_true.shape), tuple(y_pred.shape)):
        raise ValueError(
            f"{loss}: `y_true` and `y_pred` must have the same shape (after "
            "aligning a trailing dimension of 1). Received: y_true.shape="
            f"{tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}. "
            "losskit never broadcasts one against the other."
        )


def check_min_rank(x: Array, rank: int, argument: str, loss: str) -> None:
    if x.ndim < rank:
        raise ValueError(
            f"{loss}: `{argument}` must have rank >= {rank} (the last axis is "
            f"reduced). Received: {argument}.shape={tuple(x.shape)}."
        )


def python_int(value: Any) -> Any:
    """A NumPy (or other ``numbers.Integral``) integer as a Python int, as
    Keras takes them (``num_classes=labels.max() + 1``, an ``axis`` computed
    with NumPy); anything else unchanged, for the caller's check."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def normalize_axis(axis: int, ndim: int, argument: str = "axis") -> int:
    """``axis`` as a non-negative index into ``ndim`` dimensions."""
    axis = python_int(axis)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(
            f"`{argument}` must be an int. Received: {argument}={axis!r} of "
            f"type {type(axis).__name__}."
        )
    if not -ndim <= axis < ndim:
        raise ValueError(f"`{argument}`={axis} is out of range for an array of rank {ndim}.")
    return axis % ndim


def normalize_axes(axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...] | None:
    """``axis`` (None, an int or a sequence of ints) as sorted non-negative ints."""
    if axis is None:
        return None
    axis = python_int(axis)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    normalized = tuple(normalize_axis(a, ndim) for a in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"`axis` has repeated entries: {axis!r}.")
    return tuple(sorted(normalized))


def accumulation_dtype(xp: Namespace, dtype: Any) -> Any:
    """float32 for float16/bfloat16 (their sums overflow), else ``dtype``."""
    return xp.float32 if dtype_name(dtype) in _LOW_PRECISION else dtype


def _upcast(xp: Namespace, x: Array) -> tuple[Array, Any]:
    target = accumulation_dtype(xp, x.dtype)
    return (x if target == x.dtype else xp.astype(x, target)), x.dtype


def mean(xp: Namespace, x: Array, axis: int | tuple[int, ...] | None = -1) -> Array:
    """Mean over ``axis``, accumulated in float32 for low-precision input."""
    if type(x) is _np.ndarray and x.dtype in _NUMPY_WIDE_FLOATS and isinstance(axis, int):
        count = x.shape[axis] if x.ndim else 0
        if count == 1 and axis in (-1, x.ndim - 1):
            # each row's one value is its mean; adding 0.0 copies it and turns
            # -0.0 into 0.0 as the sum does (a thirteenth of the sum's time)
            return as_ndarray(_np.add(x[..., 0], 0.0))
        if count:  # NumPy's own mean (the same sum and division) costs more in Python
            return as_ndarray(_numpy_sum(x, axis, count) / count)
    wide, dtype = _upcast(xp, x)
    return _restore(xp, xp.mean(wide, axis=axis), dtype)


_NUMPY_WIDE_FLOATS = (_np.dtype("float32"), _np.dtype("float64"))


def _numpy_sum(x: Any, axis: int, count: int) -> Any:
    """Sums over ``axis``; short last-axis rows as a product with ones (BLAS),
    which costs a quarter of NumPy's reduction over many short rows."""
    if count <= 4096 and axis in (-1, x.ndim - 1):
        return x @ _ones(count, x.dtype)
    return _np.add.reduce(x, axis=axis)


_ONES: dict[tuple[int, Any], Any] = {}


def _ones(count: int, dtype: Any) -> Any:
    """A read-only vector of ``count`` ones, kept per length and dtype (a new
    one per call cost a tenth of a small loss call)."""
    key = (count, dtype)
    ones = _ONES.get(key)
    if ones is None:
        ones = _np.ones(count, dtype=dtype)
        ones.flags.writeable = False
        _ONES[key] = ones
    return ones


def total(
    xp: Namespace,
    x: Array,
    axis: int | tuple[int, ...] | None = None,
    keepdims: bool = False,
    keep_wide: bool = False,
) -> Array:
    """Sum over ``axis``, accumulated in float32 for low-precision input, and
    cast back to its dtype unless ``keep_wide`` (for a division or logarithm
    of the sum that should not see float16 overflow past 65504: cast its
    result back with :func:`narrowed`)."""
    if type(x) is _np.ndarray and x.dtype in _NUMPY_WIDE_FLOATS:
        # the sum the namespace's wrapper ends in, without its Python layers
        return as_ndarray(_np.add.reduce(x, axis=axis, keepdims=keepdims))  # type: ignore[call-overload]
    wide, dtype = _upcast(xp, x)
    summed = xp.sum(wide, axis=axis, keepdims=keepdims)
    return summed if keep_wide else _restore(xp, summed, dtype)


def widened(xp: Namespace, x: Array) -> Array:
    """``x`` in its accumulation dtype (float32 for float16/bfloat16)."""
    return _upcast(xp, x)[0]


def narrowed(xp: Namespace, x: Array, dtype: Any) -> Array:
    """``x`` (computed from sums kept wide) cast back to ``dtype``."""
    return _restore(xp, x, dtype)


def amax(xp: Namespace, x: Array, axis: int, keepdims: bool = False) -> Array:
    """The maximum over one ``axis``.  On Dask it is taken block by block
    with that axis in one chunk: Dask's own ``max`` fails on a zero-size
    chunk (``zero-size array to reduction operation maximum``)."""
    if not array_api_compat.is_dask_namespace(xp):
        return xp.max(x, axis=axis, keepdims=keepdims)
    axis %= x.ndim
    whole = x.rechunk({axis: -1})
    if not keepdims:
        return whole.map_blocks(_np.max, axis=axis, drop_axis=axis, dtype=x.dtype)
    chunks = tuple((1,) if i == axis else c for i, c in enumerate(whole.chunks))
    return whole.map_blocks(_np.max, axis=axis, keepdims=True, chunks=chunks, dtype=x.dtype)


def no_gradient(xp: Namespace, x: Array) -> Array:
    """``x`` as a constant for autodiff (JAX's ``stop_gradient``, torch's
    ``detach``; NumPy, Dask and array-api-strict have no autodiff).  For the
    shift of a logsumexp: it cancels out mathematically, but differentiated it
    adds ``(1 - sum(softmax)) * d(max)``, rounding noise, or NaN across the
    whole row where an infinite target meets it, which Keras
    (``jax.nn.log_softmax``, ``logsumexp``) does not have."""
    if array_api_compat.is_jax_namespace(xp):
        return sys.modules["jax"].lax.stop_gradient(x)
    if array_api_compat.is_torch_namespace(xp):
        return x.detach()
    return x


def logaddexp(xp: Namespace, a: Array, b: Array) -> Array:
    """``log(exp(a) + exp(b))``, with derivatives of every order finite: on
    torch through :mod:`losskit._torch_logaddexp` (torch's own second
    derivative is NaN once the arguments are 88 apart in float32); other
    libraries use their own (JAX's derivative is stable).

    >>> import numpy as np
    >>> float(logaddexp(np, np.float64(0.0), np.float64(0.0)))  # log 2
    0.6931471805599453
    """
    if array_api_compat.is_torch_namespace(xp):
        from losskit._torch_logaddexp import logaddexp as torch_logaddexp

        return torch_logaddexp(a, b)
    return xp.logaddexp(a, b)


def _restore(xp: Namespace, x: Array, dtype: Any) -> Array:
    return as_ndarray(x if x.dtype == dtype else xp.astype(x, dtype))


def returns_array(fn: _F) -> _F:
    """Decorate a loss function so a NumPy scalar result (NumPy turns 0-d
    arithmetic into scalars) comes back as a 0-d array."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return as_ndarray(fn(*args, **kwargs))

    return wrapper  # type: ignore[return-value]


def as_ndarray(x: Array) -> Array:
    """NumPy reductions over all axes return scalars; make them 0-d arrays
    like every other library's (and Keras's) results."""
    if isinstance(x, _np.generic):
        return _np.asarray(x)
    return x


def element_count(xp: Namespace, x: Array, dtype: Any) -> int | Array:
    """The number of elements of ``x``: an int where the shape is known, else
    (Dask after boolean indexing) a lazy 0-d array of ``dtype``."""
    if type(x) is _np.ndarray:
        return x.size
    if not any(unknown_dim(d) for d in x.shape):
        return size(x.shape)
    return xp.sum(xp.ones_like(x, dtype=dtype))


def size(shape: Sequence[int | None]) -> int:
    """Number of elements of a (static) shape."""
    count = 1
    for dim in shape:
        count *= int(dim)  # type: ignore[arg-type]
    return count


def maximum(xp: Namespace, x: Array, value: float) -> Array:
    """Elementwise ``max(x, value)`` for a Python number ``value``.

    Python scalars are turned into 0-d arrays first: array-api-compat's torch
    wrappers promote scalars through ``torch.result_type``, which
    ``torch.compile`` cannot trace.
    """
    return xp.maximum(x, scalar(xp, value, x))


def minimum(xp: Namespace, x: Array, value: float) -> Array:
    """Elementwise ``min(x, value)`` for a Python number ``value``."""
    return xp.minimum(x, scalar(xp, value, x))


def clip(xp: Namespace, x: Array, low: float, high: float) -> Array:
    """``minimum(maximum(x, low), high)``: the clip of Keras on JAX, whose
    gradient is 1 inside the interval and 0 outside it."""
    return minimum(xp, maximum(xp, x, low), high)


def scalar(xp: Namespace, value: float, like: Array) -> Array:
    """A 0-d array holding ``value`` with the dtype and device of ``like``."""
    return xp.asarray(value, dtype=like.dtype, device=device_of(like))
