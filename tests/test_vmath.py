"""The kernels' vectorisable exp, log and log1p against NumPy's, in both
precisions, over their whole range and at special values, called from a
fast-math loop as the kernels call them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from losskit.kernels._numba_elementwise import FASTMATH  # noqa: E402
from losskit.kernels._vmath import exp_as, log1p_as, log_as  # noqa: E402


def _apply(function: Any) -> Callable[[np.ndarray], np.ndarray]:
    @numba.njit(fastmath=FASTMATH, error_model="numpy")
    def loop(x, out):  # type: ignore[no-untyped-def]
        for i in range(x.shape[0]):
            out[i] = function(x[i], x[i])

    def run(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        loop(x, out)
        return out

    return run


SPECIAL = [0.0, -0.0, -1.0, -2.0, np.inf, -np.inf, np.nan, 1.0, 2.0, 1e-45, 1e-40, 1e-300, 5e-324]


def _inputs(name: str, dtype: type, rng: np.random.Generator) -> np.ndarray:
    info = np.finfo(dtype)
    low, high = np.log10(float(info.smallest_subnormal)), np.log10(float(info.max))
    if name == "exp":
        bound = np.log(float(info.max))
        parts = [rng.uniform(-1.05 * bound - 10, bound + 2, 200_000), rng.uniform(-1, 1, 50_000)]
    else:
        parts = [10 ** rng.uniform(low, high, 200_000), rng.uniform(0, 3, 50_000)]
        if name == "log1p":
            parts.append(-(10 ** rng.uniform(low, 0, 50_000)))
    with np.errstate(all="ignore"):
        return np.concatenate([*parts, SPECIAL]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("name", "function", "reference"),
    [("log", log_as, np.log), ("exp", exp_as, np.exp), ("log1p", log1p_as, np.log1p)],
)
def test_within_2_5_ulp_of_the_correctly_rounded_result(
    name: str, function: Any, reference: Any, dtype: type
) -> None:
    x = _inputs(name, dtype, np.random.default_rng(0))
    got = _apply(function)(x)
    assert got.dtype == dtype
    with np.errstate(all="ignore"):
        exact = reference(x.astype(np.longdouble))
        rounded = exact.astype(dtype)
    finite = np.isfinite(rounded)
    # inf, -inf and NaN exactly where the correctly rounded result has them
    np.testing.assert_array_equal(got[~finite], rounded[~finite])
    spacing = np.spacing(np.maximum(np.abs(rounded[finite]), np.finfo(dtype).smallest_subnormal))
    error = np.abs(got[finite].astype(np.longdouble) - exact[finite]) / spacing.astype(
        np.longdouble
    )
    assert float(error.max()) <= 2.5
