"""The NumPy fast path (:mod:`losskit._numpy_fast`) gives the reference's
result bit for bit: it runs the reference's own math and reduction, without
the conversions (sparse crossentropy: the same pick by another route).
Random and edge values (as labels too: NaN, inf, huge, negative), float32
and float64, every reduction; and the calls it must leave to the reference."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pytest

import losskit
from losskit import _numpy_fast
from tests.cases import CASES, Case, case_inputs
from tests.test_fast_path_fuzz import EDGE_CLASSES

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)
SHAPES = ((7, 5), (3, 4, 2), (1, 1))


def taken(case: Case) -> bool:
    y_true, y_pred = case_inputs(case, (4, 3), 0)
    loss = case.losskit_loss()
    t, p = y_true.astype("float32"), y_pred.astype("float32")
    return _numpy_fast.fast_call(loss, t, p, None, None) is not None


FAST = [c for c in CASES if taken(c)]


def test_the_expected_losses_take_the_fast_path() -> None:
    assert {c.loss for c in FAST} == {
        "MeanSquaredError",
        "MeanAbsoluteError",
        "MeanAbsolutePercentageError",
        "MeanSquaredLogarithmicError",
        "Huber",
        "LogCosh",
        "Poisson",
        "Dice",
        "SparseCategoricalCrossentropy",
    }


def inputs(case: Case, shape: tuple[int, ...], edge: str | None, dtype: str, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    y_true, y_pred = (a.astype("float64") for a in case_inputs(case, shape, seed))
    if edge is not None:
        pool = np.array(EDGE_CLASSES[edge])
        for a in (y_true, y_pred):
            where = rng.random(a.shape) < 0.3
            a[where] = rng.choice(pool, size=int(where.sum()))
    with np.errstate(over="ignore"):
        return y_true.astype(dtype), y_pred.astype(dtype)


def call(
    loss: losskit.Loss, t: np.ndarray, p: np.ndarray, preference: str, weight: Any = None
) -> Any:
    """The value (or the error) and the warnings of one call."""
    with losskit.prefer_backend(preference), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = loss(t, p, weight)
        except (ValueError, TypeError) as error:
            value = error
    return value, sorted(str(w.message) for w in caught)


def weights(kind: str, shape: tuple[int, ...], seed: int) -> Any:
    rng = np.random.default_rng(seed)
    if kind == "none":
        return None
    if kind == "scalar":
        return 0.75
    if kind == "zero_d":
        return np.asarray(0.5)
    if kind == "all_zero":
        return np.zeros(shape[:-1])
    if kind == "column":
        return rng.uniform(0.0, 2.0, (*shape[:-1], 1))
    if kind == "wrong":
        return np.ones(shape[0] + 1)
    return rng.uniform(0.0, 2.0, shape[:-1])


WEIGHT_KINDS = ("none", "per_sample", "column", "scalar", "zero_d", "all_zero", "wrong")


@pytest.mark.parametrize("case", FAST, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("edge", [None, *EDGE_CLASSES])
def test_fast_path_is_the_reference_bit_for_bit(
    case: Case, dtype: str, edge: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[bool] = []
    original = _numpy_fast.fast_call

    def spy(*args: Any) -> Any:
        try:
            result = original(*args)
        except (ValueError, TypeError):
            used.append(True)  # it took the call, and raised the reference's error
            raise
        used.append(result is not None)
        return result

    monkeypatch.setattr(_numpy_fast, "fast_call", spy)
    sparse = case.loss == "SparseCategoricalCrossentropy"
    for seed, shape in enumerate(SHAPES):
        t, p = inputs(case, shape, edge, dtype, seed)
        for reduction, kind in itertools.product(REDUCTIONS, WEIGHT_KINDS):
            loss = case.losskit_loss(reduction=reduction, dtype=dtype)
            weight = weights(kind, shape, seed)
            used.clear()
            fast, fast_warnings = call(loss, t, p, "fast", weight)
            assert used == [not sparse or len(shape) == 2]
            reference, reference_warnings = call(loss, t, p, "reference", weight)
            assert type(fast) is type(reference)
            where = f"{reduction}, {kind}, {shape}"
            if isinstance(reference, Exception):
                assert str(fast) == str(reference), where
                continue
            assert fast.dtype == reference.dtype
            np.testing.assert_array_equal(fast, reference, err_msg=where)
            assert fast_warnings == reference_warnings, where


class Subclass(np.ndarray):
    pass


@pytest.mark.parametrize(
    "make",
    [
        lambda t, p: (t, p, None, np.ones(t.shape[0], dtype=bool)),  # a mask
        lambda t, p: (t.astype("float64"), p, None, None),  # mixed dtypes
        lambda t, p: (t.tolist(), p, None, None),  # a list
        lambda t, p: (t[:, :1], p, None, None),  # broadcasting shapes
        lambda t, p: (t[0], p[0], None, None),  # rank 1
        lambda t, p: (t[:0], p[:0], None, None),  # empty
        lambda t, p: (t.view(Subclass), p.view(Subclass), None, None),  # a subclass
    ],
)
def test_calls_left_to_the_reference(make: Any) -> None:
    t = np.ones((4, 3), dtype="float32")
    p = np.full((4, 3), 2.0, dtype="float32")
    y_true, y_pred, weight, mask = make(t, p)
    assert _numpy_fast.fast_call(losskit.MeanSquaredError(), y_true, y_pred, weight, mask) is None


def test_other_dtype_and_subclass_and_preference_are_left_to_the_reference() -> None:
    t = np.ones((4, 3), dtype="float32")
    p = np.full((4, 3), 2.0, dtype="float32")
    wide = losskit.MeanSquaredError(dtype="float64")
    assert _numpy_fast.fast_call(wide, t, p, None, None) is None

    class Mine(losskit.MeanSquaredError):
        pass

    assert _numpy_fast.fast_call(Mine(), t, p, None, None) is None
    with losskit.prefer_backend("reference"):
        assert _numpy_fast.fast_call(losskit.MeanSquaredError(), t, p, None, None) is None


def test_epsilon_is_read_at_call_time() -> None:
    t = np.zeros((2, 2), dtype="float64")
    p = np.ones((2, 2), dtype="float64")
    loss = losskit.MeanAbsolutePercentageError(dtype="float64")
    before = losskit.epsilon()
    try:
        losskit.set_epsilon(1e-3)
        assert float(loss(t, p)) == pytest.approx(100.0 / 1e-3)
    finally:
        losskit.set_epsilon(before)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("label_dtype", ["int64", "int32", "uint8", "float32", "float64"])
def test_sparse_labels_of_every_kind_are_the_references(
    from_logits: bool, label_dtype: str
) -> None:
    rng = np.random.default_rng(3)
    p = rng.random((9, 5)).astype("float32")
    p[2, 1] = np.nan
    labels = np.array([0, 4, 1, 5, -1, 2**31 - 1, 2**32 + 1, 2**24 + 1, 3])
    if label_dtype == "uint8":
        labels = np.abs(labels) % 256
    elif label_dtype.startswith("float"):
        labels = labels + 0.5
    t = labels.astype(label_dtype)
    loss = losskit.SparseCategoricalCrossentropy(from_logits=from_logits, reduction=None)
    with np.errstate(invalid="ignore"):  # labels beyond int32 (warned below)
        assert _numpy_fast.fast_call(loss, t, p, None, None) is not None
    fast, fast_warnings = call(loss, t, p, "fast")
    reference, reference_warnings = call(loss, t, p, "reference")
    np.testing.assert_array_equal(fast, reference)
    np.testing.assert_array_equal(np.signbit(fast), np.signbit(reference))
    assert fast_warnings == reference_warnings
