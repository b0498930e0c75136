"""Global settings shared by every loss: the default float type, epsilon, and
whether fused kernels may be used.

They mirror ``keras.config.floatx()`` and ``keras.config.epsilon()``.  The
float type is read when a loss object is constructed (as Keras does); epsilon
is read every time a loss is computed.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import threading
from collections.abc import Iterator
from typing import Any

FLOAT_TYPES = ("bfloat16", "float16", "float32", "float64")

_floatx = "float32"
_epsilon = 1e-7
# epsilon_within's override: context-local, as prefer_backend's is.  The
# ContextVar is read only while some context holds an override (torch.compile
# cannot trace ContextVar.get: every loss would break its graph).
_epsilon_override: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "losskit_epsilon", default=None
)
_epsilon_overrides_held = 0
_epsilon_overrides_lock = threading.Lock()


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
    if not _epsilon_overrides_held:
        return _epsilon
    override = _epsilon_override.get()
    return _epsilon if override is None else override


@contextlib.contextmanager
def epsilon_within(value: float) -> Iterator[None]:
    """Use ``value`` as epsilon inside the block, in this thread or asyncio
    task only.  ``losskit.keras`` computes with Keras's epsilon this way, so
    ``keras.config.set_epsilon`` acts on losskit losses inside Keras as on
    Keras's own; the value is taken as Keras takes it, unchecked.

    >>> import losskit
    >>> from losskit._config import epsilon_within
    >>> with epsilon_within(1e-4):
    ...     losskit.epsilon()
    0.0001
    >>> losskit.epsilon()
    1e-07
    """
    global _epsilon_overrides_held
    with _epsilon_overrides_lock:
        _epsilon_overrides_held += 1
    token = _epsilon_override.set(float(value))
    try:
        yield
    finally:
        _epsilon_override.reset(token)
        with _epsilon_overrides_lock:
            _epsilon_overrides_held -= 1


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


def _preference_from_environment() -> str:
    value = os.environ.get("LOSSKIT_BACKEND") or "fast"  # empty counts as unset
    if value not in BACKEND_PREFERENCES:
        raise ValueError(
            f"Invalid value of the environment variable LOSSKIT_BACKEND: {value!r}. "
            f"Expected one of {BACKEND_PREFERENCES} (or leave it unset for 'fast')."
        )
    return value


_backend_preference = _preference_from_environment()
# prefer_backend's overrides: context-local, so threads and asyncio tasks each
# see their own, and one never restores over another's.
_preference_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "losskit_backend_preference", default=None
)


def backend_preference() -> str:
    """``"fast"`` (default: fused kernels where the input allows) or
    ``"reference"`` (always the array-API reference implementation).

    The environment variable ``LOSSKIT_BACKEND`` (``fast`` or ``reference``)
    sets it at import; any other value is a ValueError.  Inside
    :func:`prefer_backend` the context's own choice wins.

    >>> import losskit
    >>> losskit.backend_preference() in ("fast", "reference")
    True
    """
    override = _preference_override.get()
    return _backend_preference if override is None else override


def _check_preference(value: Any) -> str:
    if not isinstance(value, str) or value not in BACKEND_PREFERENCES:
        raise ValueError(
            f"Invalid backend preference {value!r}. Expected one of {BACKEND_PREFERENCES}."
        )
    return value


def set_backend_preference(value: str) -> None:
    """Choose ``"fast"`` or ``"reference"`` for the whole process (every
    thread); see :func:`backend_preference`.

    >>> import losskit
    >>> previous = losskit.backend_preference()
    >>> losskit.set_backend_preference("reference")
    >>> losskit.backend_preference()
    'reference'
    >>> losskit.set_backend_preference(previous)
    """
    global _backend_preference
    _backend_preference = _check_preference(value)


@contextlib.contextmanager
def prefer_backend(value: str) -> Iterator[None]:
    """Use ``value`` (``"fast"`` or ``"reference"``) inside the block, in this
    thread or asyncio task only: the override lives in a
    :class:`contextvars.ContextVar`, so overlapping blocks in several threads
    never leave another's preference behind.

    >>> import losskit
    >>> with losskit.prefer_backend("reference"):
    ...     losskit.backend_preference()
    'reference'
    """
    token = _preference_override.set(_check_preference(value))
    try:
        yield
    finally:
        _preference_override.reset(token)
