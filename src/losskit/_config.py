"""Global settings shared by every loss: the default float type, epsilon, and
whether fused kernels may be used.

They mirror ``keras.config.floatx()`` and ``keras.config.epsilon()``.  The
float type is read when a loss object is constructed (as Keras does); epsilon
is read every time a loss is computed.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

FLOAT_TYPES = ("bfloat16", "float16", "float32", "float64")

_floatx = "float32"
_epsilon = 1e-7


def floatx() -> str:
    """Return the default float type used by loss classes, as a string.

    >>> import losskit
    >>> losskit.floatx()
    'float32'
    """
    return _floatx


def set_floatx(value: str) -> None:
    """Set the default float type: ``"bfloat16"``, ``"float16"``, ``"float32"``
    or ``"float64"``.

    >>> import losskit
    >>> losskit.set_floatx("float64")
    >>> losskit.floatx()
    'float64'
    >>> losskit.set_floatx("float32")
    """
    global _floatx
    if not isinstance(value, str) or value not in FLOAT_TYPES:
        raise ValueError(
            f"Invalid value for argument `value` of set_floatx: {value!r}. "
            f"Expected one of {FLOAT_TYPES}."
        )
    _floatx = value


def epsilon() -> float:
    """Return the fuzz factor used to keep divisions and logarithms finite.

    >>> import losskit
    >>> losskit.epsilon()
    1e-07
    """
    return _epsilon


def set_epsilon(value: float) -> None:
    """Set the fuzz factor (Keras's default is ``1e-7``).

    >>> import losskit
    >>> losskit.set_epsilon(1e-5)
    >>> losskit.epsilon()
    1e-05
    >>> losskit.set_epsilon(1e-7)
    """
    global _epsilon
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            "Argument `value` of set_epsilon must be a Python float. "
            f"Received: {value!r} of type {type(value).__name__}."
        )
    if not (math.isfinite(value) and 0 < value < 0.5):
        raise ValueError(
            "Argument `value` of set_epsilon must be a finite number in "
            f"(0, 0.5). Received: {value!r}."
        )
    _epsilon = float(value)


BACKEND_PREFERENCES = ("fast", "reference")
_backend_preference = "reference" if os.environ.get("LOSSKIT_BACKEND") == "reference" else "fast"


def backend_preference() -> str:
    """``"fast"`` (default: fused kernels where the input allows) or
    ``"reference"`` (always the array-API reference implementation).

    The environment variable ``LOSSKIT_BACKEND=reference`` sets it at import.

    >>> import losskit
    >>> losskit.backend_preference() in ("fast", "reference")
    True
    """
    return _backend_preference


def set_backend_preference(value: str) -> None:
    """Choose ``"fast"`` or ``"reference"``; see :func:`backend_preference`.

    >>> import losskit
    >>> previous = losskit.backend_preference()
    >>> losskit.set_backend_preference("reference")
    >>> losskit.backend_preference()
    'reference'
    >>> losskit.set_backend_preference(previous)
    """
    global _backend_preference
    if value not in BACKEND_PREFERENCES:
        raise ValueError(
            f"Invalid backend preference {value!r}. Expected one of {BACKEND_PREFERENCES}."
        )
    _backend_preference = value


@contextlib.contextmanager
def prefer_backend(value: str) -> Iterator[None]:
    """Context manager form of :func:`set_backend_preference`.

    >>> import losskit
    >>> with losskit.prefer_backend("reference"):
    ...     losskit.backend_preference()
    'reference'
    """
    previous = _backend_preference
    set_backend_preference(value)
    try:
        yield
    finally:
        set_backend_preference(previous)
