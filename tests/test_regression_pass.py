"""The one-pass kernel of several regression losses (kernels.regression_sums),
against each loss's reference sum, and its use by the accumulators."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import losskit
from losskit import kernels
from losskit.streaming import GroupedAccumulator, MultiLossAccumulator
from tests.spies import record_calls

pytestmark = pytest.mark.skipif(not kernels.available(), reason="needs Numba")

REGRESSION_SET = (
    "MeanSquaredError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError",
    "Huber",
    "LogCosh",
    "CosineSimilarity",
)


def summing(name: str, dtype: str = "float64", **kwargs: Any) -> losskit.Loss:
    return getattr(losskit, name)(reduction="sum", dtype=dtype, **kwargs)


def reference_sums(
    losses: list[losskit.Loss], t: np.ndarray, p: np.ndarray, weight: Any
) -> list[float]:
    with losskit.prefer_backend("reference"), np.errstate(all="ignore"):
        return [float(loss(t, p, sample_weight=weight)) for loss in losses]


def data(shape: tuple[int, int], dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.uniform(-2.0, 10.0, shape)
    p = t + rng.normal(scale=2.0, size=shape)
    t[::97] = 0.0  # MAPE's epsilon floor, MSLE's clamp
    p[::89] = -0.5
    return t.astype(dtype), p.astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(40_000, 1), (33_001, 1), (5_000, 8), (4_099, 9)])
@pytest.mark.parametrize("weighting", ["none", "rows", "scalar"])
def test_each_sum_is_the_reference_s(dtype: str, shape: tuple[int, int], weighting: str) -> None:
    t, p = data(shape, dtype)
    weight: Any = {
        "none": None,
        "rows": np.random.default_rng(1).uniform(0.0, 2.0, shape[0]),
        "scalar": 0.75,
    }[weighting]
    losses = [summing(name, dtype) for name in REGRESSION_SET]
    sums = kernels.regression_sums(losses, t, p, weight)
    assert sums is not None
    expected = reference_sums(losses, t, p, weight)
    tolerance = 1e-11 if dtype == "float64" else 2e-4
    for loss, got, want in zip(losses, sums, expected, strict=True):
        if isinstance(loss, losskit.CosineSimilarity) and shape[1] > 1 and weighting != "rows":
            assert got is None  # rows of several features: cosine has a pass of its own
            continue
        assert got is not None, loss.name
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance, err_msg=loss.name)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_sum_that_is_not_finite_is_left_to_the_loss(bad: float) -> None:
    t, p = data((40_000, 1), "float64")
    p[123, 0] = bad
    losses = [summing(name) for name in REGRESSION_SET]
    sums = kernels.regression_sums(losses, t, p, None)
    assert sums is not None
    expected = reference_sums(losses, t, p, None)
    for got, want in zip(sums, expected, strict=True):
        if np.isfinite(want):
            assert got is None or np.isclose(got, want, rtol=1e-11)
        else:
            assert got is None


def test_which_losses_the_pass_takes() -> None:
    t, p = data((40_000, 1), "float64")
    losses = [
        summing("MeanSquaredError"),
        summing("Huber", delta=2.0),
        summing("Huber", delta=3.0),  # a second Huber: its own pass
        summing("Poisson"),  # not in the pass
        None,
        summing("MeanAbsoluteError", dtype="float32"),  # another dtype
        summing("MeanAbsoluteError"),
    ]
    sums = kernels.regression_sums(losses, t, p, None)
    assert sums is not None
    assert [x is None for x in sums] == [False, False, True, True, True, True, False]
    mse, huber, mae = reference_sums([losses[0], losses[1], losses[6]], t, p, None)  # type: ignore[list-item]
    np.testing.assert_allclose([sums[0], sums[1], sums[6]], [mse, huber, mae], rtol=1e-11)


def test_no_pass_where_it_does_not_apply() -> None:
    t, p = data((40_000, 1), "float64")
    losses = [summing(name) for name in REGRESSION_SET]
    assert kernels.regression_sums([*losses[:1], None], t, p, None) is None  # one loss
    assert kernels.regression_sums(losses, t[:100], p[:100], None) is None  # small
    assert kernels.regression_sums(losses, t, p.astype("float32"), None) is None  # mixed
    assert kernels.regression_sums(losses, t.reshape(-1), p.reshape(-1), None) is None  # 1-D
    assert kernels.regression_sums(losses, t, p, np.ones((40_000, 2))) is None  # weights
    with losskit.prefer_backend("reference"):
        assert kernels.regression_sums(losses, t, p, None) is None


def test_accumulator_takes_the_pass_and_gives_the_reference_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = record_calls(monkeypatch, kernels, "regression_sums")
    t, p = data((50_000, 2), "float64", seed=3)
    weight = np.random.default_rng(4).uniform(0.0, 2.0, 50_000)
    names = ["mse", "mae", "mape", "msle", "huber", "log_cosh", "cosine_similarity"]
    fused = MultiLossAccumulator(names)
    for start in range(0, 50_000, 25_000):
        rows = slice(start, start + 25_000)
        fused.update(t[rows], p[rows], sample_weight=weight[rows])
    assert calls
    assert all(calls)
    with losskit.prefer_backend("reference"):
        reference = MultiLossAccumulator(names)
        for start in range(0, 50_000, 25_000):
            rows = slice(start, start + 25_000)
            reference.update(t[rows], p[rows], sample_weight=weight[rows])
    got, want = fused.result(), reference.result()
    assert list(got) == list(want)
    np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-11)


@pytest.mark.parametrize("features", [1, 3])
def test_grouped_accumulator_takes_the_pass_per_group(
    features: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = record_calls(
        monkeypatch,
        kernels,
        "regression_sums",
        lambda result, args: result is not None and args[-1] is not None,  # grouped
    )
    rows = 40_000
    t, p = data((rows, features), "float64", seed=5)
    rng = np.random.default_rng(6)
    weight = rng.uniform(0.0, 2.0, rows)
    keys = rng.integers(0, 500, rows)
    p[7, 0] = np.nan  # its group's MSE etc. are NaN: those losses take their own path
    names = ["mse", "mae", "mape", "msle", "huber", "log_cosh", "cosine_similarity"]
    fused = GroupedAccumulator(names)
    fused.update(t, p, sample_weight=weight, groups=keys)
    assert calls == [True]
    with losskit.prefer_backend("reference"), np.errstate(all="ignore"):
        reference = GroupedAccumulator(names)
        reference.update(t, p, sample_weight=weight, groups=keys)
    got, want = fused.result(), reference.result()
    assert list(got) == list(want)
    for key in want:
        np.testing.assert_allclose(
            list(got[key].values()), list(want[key].values()), rtol=1e-11, err_msg=str(key)
        )
