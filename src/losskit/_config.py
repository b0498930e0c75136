"""Global settings shared by every loss: the default float type and epsilon.

They mirror ``keras.config.floatx()`` and ``keras.config.epsilon()``.  The
float type is read when a loss object is constructed (as Keras does); epsilon
is read every time a loss is computed.
"""

from __future__ import annotations

import math

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
