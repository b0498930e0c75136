"""The array libraries losskit is tested on, behind one small interface."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import array_api_strict
import dask.array as da
import jax.numpy as jnp
import numpy as np
import torch


@dataclass(frozen=True)
class Backend:
    """How to make an array of a library from NumPy, and read it back."""

    name: str
    make: Callable[[np.ndarray], Any]
    read: Callable[[Any], np.ndarray]
    dtypes: tuple[str, ...] = ("float32", "float64")
    lazy: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def asarray(self, values: Any, dtype: str | None = None) -> Any:
        """``values`` as an array of this library, in ``dtype`` if given."""
        array = np.asarray(values)
        if dtype is None:
            return self.make(array)
        if dtype == "bfloat16":
            return self.extra["bfloat16"](array)
        return self.make(array.astype(dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        return self.read(x)


def _torch_read(x: Any) -> np.ndarray:
    x = x.detach()
    if x.dtype == torch.bfloat16:
        x = x.float()
    return x.cpu().numpy()


def _jax_read(x: Any) -> np.ndarray:
    if x.dtype == jnp.bfloat16:
        x = x.astype(jnp.float32)
    return np.asarray(x)


def _strict_read(x: Any) -> np.ndarray:
    return np.from_dlpack(x)


def _dask_make(a: np.ndarray) -> Any:
    chunks = tuple(max(1, (d + 1) // 2) for d in a.shape)  # several chunks
    return da.from_array(a, chunks=chunks or ())


def _dask_read(x: Any) -> np.ndarray:
    return np.asarray(x.compute())


NUMPY = Backend("numpy", np.asarray, np.asarray, ("float16", "float32", "float64"))
TORCH = Backend(
    "torch",
    torch.asarray,
    _torch_read,
    ("float16", "bfloat16", "float32", "float64"),
    extra={"bfloat16": lambda a: torch.asarray(a.astype("float32")).to(torch.bfloat16)},
)
JAX = Backend(
    "jax",
    jnp.asarray,
    _jax_read,
    ("float16", "bfloat16", "float32", "float64"),
    extra={"bfloat16": lambda a: jnp.asarray(a, dtype=jnp.bfloat16)},
)
STRICT = Backend("array_api_strict", array_api_strict.asarray, _strict_read)
DASK = Backend("dask", _dask_make, _dask_read, ("float16", "float32", "float64"), lazy=True)

BACKENDS = (NUMPY, TORCH, JAX, STRICT, DASK)
GRAD_BACKENDS = (TORCH, JAX)
