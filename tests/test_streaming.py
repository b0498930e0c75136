"""Accumulators over batches equal the loss object called once on all the data
(float64 losskit classes, which the parity tests tie to Keras), for every
loss, reduction, kind of weight and mask, with merges in any order."""

from __future__ import annotations

import datetime
import itertools
import json
import math
from typing import Any

import numpy as np
import pytest

import losskit
from losskit.streaming import (
    GroupedAccumulator,
    LossAccumulator,
    MultiLossAccumulator,
    resolve_loss,
)
from tests.backends import BACKENDS, Backend
from tests.cases import CASES, Case, case_inputs, keras_class_value

REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight"]
RTOL, ATOL = 1e-10, 1e-12
SPLITS = (0, 7, 8, 20, 33, 40)  # uneven batches, one of a single sample
N = 40


def is_overlap(case: Case) -> bool:
    return case.loss in ("Dice", "Tversky") and case.kwargs.get("axis") is None


def inputs(case: Case, seed: int = 0, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    return case_inputs(case, (n, 3), seed)


def batches(*arrays: Any) -> list[tuple[Any, ...]]:
    return [
        tuple(None if a is None else a[lo:hi] for a in arrays)
        for lo, hi in itertools.pairwise(SPLITS)
    ]


def reference(case: Case, reduction: str, *args: Any, **kwargs: Any) -> float:
    loss = case.losskit_loss(reduction=reduction, dtype="float64")
    return float(loss(*args, **kwargs))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_batches_equal_one_call(case: Case, reduction: str) -> None:
    y_true, y_pred = inputs(case)
    acc = LossAccumulator(case.losskit_loss(reduction=reduction))
    for t, p in batches(y_true, y_pred):
        acc.update(t, p)
    assert acc.samples == N
    expected = reference(case, reduction, y_true, y_pred)
    np.testing.assert_allclose(acc.result(), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_equals_keras(case: Case) -> None:
    """The oracle itself, on the whole data set, default reduction."""
    y_true, y_pred = inputs(case, seed=3)
    acc = LossAccumulator(case.losskit_loss())
    for t, p in batches(y_true, y_pred):
        acc.update(t, p)
    expected = keras_class_value(case, y_true, y_pred)
    np.testing.assert_allclose(acc.result(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("weight_kind", ["per_sample", "column", "per_element"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", [c for c in CASES if not is_overlap(c)], ids=lambda c: c.id)
def test_sample_weights(case: Case, reduction: str, weight_kind: str) -> None:
    rng = np.random.default_rng(5)
    if weight_kind == "per_element":  # per-sample losses of shape (N, 2)
        y_true, y_pred = case_inputs(case, (N, 2, 3), 1)
        weights = rng.uniform(0.0, 2.0, size=(N, 2))
    else:
        y_true, y_pred = inputs(case, seed=1)
        weights = rng.uniform(0.0, 2.0, size=N)
        if weight_kind == "column":
            weights = weights[:, None]
    weights[[3, 17]] = 0.0
    acc = LossAccumulator(case.losskit_loss(reduction=reduction))
    for t, p, w in batches(y_true, y_pred, weights):
        acc.update(t, p, sample_weight=w)
    expected = reference(case, reduction, y_true, y_pred, sample_weight=weights)
    np.testing.assert_allclose(acc.result(), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_scalar_weight(reduction: str) -> None:
    """A scalar weight is a weight of every sample: Keras's value for one call,
    except that "mean_with_sample_weight" divides by the weight of every
    sample, not by the scalar once (see the module docstring)."""
    y_true, y_pred = inputs(CASES[0])
    acc = LossAccumulator(losskit.MeanSquaredError(reduction=reduction))
    for t, p in batches(y_true, y_pred):
        acc.update(t, p, sample_weight=2.5)
    if reduction == "mean_with_sample_weight":
        expected = reference(CASES[0], "mean", y_true, y_pred)
    else:
        expected = reference(CASES[0], reduction, y_true, y_pred, sample_weight=2.5)
    np.testing.assert_allclose(acc.result(), expected, rtol=RTOL)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", [c for c in CASES if not is_overlap(c)], ids=lambda c: c.id)
def test_masks_and_weights(case: Case, reduction: str) -> None:
    y_true, y_pred = inputs(case, seed=2)
    rng = np.random.default_rng(7)
    mask = rng.random(N) > 0.3
    mask[:7] = False  # a batch without any valid sample
    weights = rng.uniform(0.5, 2.0, size=N)
    acc = LossAccumulator(case.losskit_loss(reduction=reduction))
    masked = LossAccumulator(case.losskit_loss(reduction=reduction))
    for t, p, m, w in batches(y_true, y_pred, mask, weights):
        acc.update(t, p, mask=m)
        masked.update(t, p, sample_weight=w, mask=m)
    np.testing.assert_allclose(
        acc.result(), reference(case, reduction, y_true, y_pred, mask=mask), rtol=RTOL, atol=ATOL
    )
    expected = reference(case, reduction, y_true, y_pred, sample_weight=weights, mask=mask)
    np.testing.assert_allclose(masked.result(), expected, rtol=RTOL, atol=ATOL)


def test_mask_of_a_column_shape() -> None:
    """A mask of shape (N, 1) over per-sample losses of shape (N, 2)."""
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.normal(size=(N, 2, 3)), rng.normal(size=(N, 2, 3))
    mask = rng.random((N, 1)) > 0.5
    acc = LossAccumulator("mse")
    for t, p, m in batches(y_true, y_pred, mask):
        acc.update(t, p, mask=m)
    expected = float(losskit.MeanSquaredError(dtype="float64")(y_true, y_pred, mask=mask))
    np.testing.assert_allclose(acc.result(), expected, rtol=RTOL)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hinge_label_conversion_is_decided_on_the_whole_data(reduction: str) -> None:
    """Batches of 0/1 labels convert to -1/1 on their own, but not when another
    batch has a -1 label; and they do when every batch is 0/1."""
    rng = np.random.default_rng(0)
    y_pred = rng.normal(size=(N, 3))
    binary = rng.integers(0, 2, size=(N, 3)).astype(float)
    mixed = binary.copy()
    mixed[35, 0] = -1.0  # only the last batch is not all 0/1
    for loss in (losskit.Hinge(reduction=reduction), losskit.SquaredHinge(reduction=reduction)):
        for y_true in (binary, mixed):
            acc = LossAccumulator(loss)
            for t, p in batches(y_true, y_pred):
                acc.update(t, p)
            expected = float(type(loss)(reduction=reduction, dtype="float64")(y_true, y_pred))
            np.testing.assert_allclose(acc.result(), expected, rtol=RTOL)


def test_hinge_groups_decide_per_group() -> None:
    rng = np.random.default_rng(1)
    y_pred = rng.normal(size=(N, 2))
    y_true = rng.integers(0, 2, size=(N, 2)).astype(float)
    groups = np.array(["a", "b"] * (N // 2))
    y_true[np.flatnonzero(groups == "b")[-1], 1] = -1.0  # group b is not 0/1
    acc = GroupedAccumulator(["hinge"])
    for t, p, g in batches(y_true, y_pred, groups):
        acc.update(t, p, groups=g)
    for key, result in acc.result().items():
        rows = groups == key
        expected = float(losskit.Hinge(dtype="float64")(y_true[rows], y_pred[rows]))
        np.testing.assert_allclose(result["hinge"], expected, rtol=RTOL)


@pytest.mark.parametrize("case", [c for c in CASES if is_overlap(c)], ids=lambda c: c.id)
def test_whole_array_overlap_losses(case: Case) -> None:
    y_true, y_pred = inputs(case)
    acc = LossAccumulator(case.losskit_loss())
    for t, p in batches(y_true, y_pred):
        acc.update(t, p)
    np.testing.assert_allclose(acc.result(), reference(case, "sum", y_true, y_pred), rtol=1e-12)
    with pytest.raises(ValueError, match="one value for the whole array"):
        acc.update(y_true, y_pred, sample_weight=np.ones(N))


def test_per_sample_dice() -> None:
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 2, size=(N, 4)), rng.random((N, 4))
    acc = LossAccumulator(losskit.Dice(axis=-1))
    for t, p in batches(y_true, y_pred):
        acc.update(t, p)
    expected = float(losskit.Dice(axis=-1, dtype="float64")(y_true, y_pred))
    np.testing.assert_allclose(acc.result(), expected, rtol=RTOL)


@pytest.mark.parametrize("case", CASES[:8], ids=lambda c: c.id)
def test_merge_in_any_order_and_state_round_trip(case: Case) -> None:
    y_true, y_pred = inputs(case, seed=4)
    weights = np.random.default_rng(0).uniform(0, 1, size=N)
    parts = []
    for t, p, w in batches(y_true, y_pred, weights):
        part = LossAccumulator(case.losskit_loss())
        part.update(t, p, sample_weight=w)
        parts.append(part)
    expected = reference(case, "sum_over_batch_size", y_true, y_pred, sample_weight=weights)

    def clone(acc: LossAccumulator) -> LossAccumulator:
        return LossAccumulator.from_state(json.loads(json.dumps(acc.state)))

    forward = clone(parts[0])
    for part in parts[1:]:
        forward.merge(part)
    backward = clone(parts[-1])
    for part in reversed(parts[:-1]):
        backward.merge(clone(part))
    tree = clone(parts[0]).merge(parts[1]).merge(clone(parts[2]).merge(parts[3]).merge(parts[4]))
    for acc in (forward, backward, tree, clone(tree)):
        assert acc.samples == N
        np.testing.assert_allclose(acc.result(), expected, rtol=RTOL, atol=ATOL)


def test_multi_and_grouped_accumulators() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.uniform(0.5, 3.0, size=(N, 1))
    y_pred = y_true + rng.normal(size=(N, 1))
    weights = rng.uniform(0, 1, size=N)
    groups = rng.choice(np.array([3, 1, 2]), size=N)
    names = [info.name for info in losskit.LOSSES if info.family == "regression"]
    multi = MultiLossAccumulator(names)
    grouped = GroupedAccumulator(names)
    for t, p, w, g in batches(y_true, y_pred, weights, groups):
        multi.update(t, p, sample_weight=w)
        grouped.update(t, p, sample_weight=w, groups=g)
    merged = GroupedAccumulator.from_state(json.loads(json.dumps(grouped.state)))
    assert list(merged.result()) == [1, 2, 3]
    assert merged.samples == {k: int(np.sum(groups == k)) for k in (1, 2, 3)}
    assert multi.samples == N
    for info in losskit.LOSSES:
        if info.family != "regression":
            continue
        loss = info.cls(dtype="float64")
        expected = float(loss(y_true, y_pred, sample_weight=weights))
        np.testing.assert_allclose(multi.result()[info.name], expected, rtol=RTOL)
        for key, result in merged.result().items():
            rows = groups == key
            expected = float(loss(y_true[rows], y_pred[rows], sample_weight=weights[rows]))
            np.testing.assert_allclose(result[info.name], expected, rtol=RTOL)


def test_grouped_string_and_missing_keys() -> None:
    y = np.arange(6.0).reshape(6, 1)
    acc = GroupedAccumulator("mae")
    acc.update(y, y + 1.0, groups=np.array(["x", None, "y", None, "x", "x"], dtype=object))
    acc.update(y[:2], y[:2], groups=np.array([np.nan, 1.0]))
    assert acc.samples == {"x": 3, None: 3, "y": 1, 1.0: 1}
    assert acc.result()[None] == {"mean_absolute_error": 2.0 / 3.0}


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_any_array_library(backend: Backend) -> None:
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.normal(size=(N, 2)), rng.normal(size=(N, 2))
    weights = rng.uniform(size=N)
    acc = MultiLossAccumulator(["mse", "huber", "hinge", "log_cosh"])
    for t, p, w in batches(y_true, y_pred, weights):
        acc.update(backend.asarray(t), backend.asarray(p), sample_weight=backend.asarray(w))
    for name, value in acc.result().items():
        loss = resolve_loss(name)
        expected = float(type(loss)(dtype="float64")(y_true, y_pred, sample_weight=weights))
        np.testing.assert_allclose(value, expected, rtol=RTOL)


def test_float32_computation_matches_keras_float32() -> None:
    case = CASES[0]
    y_true, y_pred = inputs(case)
    acc = LossAccumulator("mse", dtype="float32")
    for t, p in batches(y_true, y_pred):
        acc.update(t, p)
    expected = keras_class_value(case, y_true, y_pred, dtype="float32")
    np.testing.assert_allclose(acc.result(), expected, rtol=1e-6)


def test_empty_accumulator_gives_zero() -> None:
    assert LossAccumulator("mse").result() == 0.0
    assert MultiLossAccumulator(["mae", "huber"]).result() == {
        "mean_absolute_error": 0.0,
        "huber_loss": 0.0,
    }


def test_infinite_values_propagate() -> None:
    acc = LossAccumulator("mae")
    acc.update(np.array([[0.0]]), np.array([[np.inf]]))
    acc.update(np.array([[0.0]]), np.array([[1.0]]))
    assert acc.result() == np.inf


def test_failed_update_changes_nothing() -> None:
    acc = MultiLossAccumulator(["mse", losskit.CosineSimilarity(axis=0)])
    with pytest.raises(ValueError, match="batch axis"):
        acc.update(np.ones((4, 2)), np.ones((4, 2)))
    assert acc.samples == 0


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: LossAccumulator("mse").update(np.ones(4), np.ones(4)), ValueError, r"\(N, 1\)"),
        (
            lambda: LossAccumulator(losskit.MeanSquaredError(reduction="none")),
            ValueError,
            "reduces",
        ),
        (lambda: LossAccumulator("nope"), ValueError, "Unknown loss"),
        (lambda: LossAccumulator("mse").merge(LossAccumulator("mae")), ValueError, "different"),
        (
            lambda: LossAccumulator("mse").update(
                np.ones((4, 1)), np.ones((4, 1)), sample_weight=np.ones((4, 3))
            ),
            ValueError,
            "broadcast",
        ),
        (lambda: MultiLossAccumulator(["mse", "MeanSquaredError"]), ValueError, "distinct"),
        (
            lambda: GroupedAccumulator("mse").update(np.ones((2, 1)), np.ones((2, 1)), groups=[1]),
            ValueError,
            "1 keys for 2 samples",
        ),
        (lambda: LossAccumulator.from_state({"format": "x"}), ValueError, "Not a losskit"),
        (
            lambda: LossAccumulator("mse").update(np.ones((2, 1)), np.array([["a"], ["b"]])),
            TypeError,
            "y_pred",
        ),
    ],
)
def test_errors(make: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()


def test_custom_loss_function() -> None:
    def fourth_power(y_true: Any, y_pred: Any) -> Any:
        return np.mean((y_true - y_pred) ** 4, axis=-1)

    y = np.arange(8.0).reshape(4, 2)
    acc = LossAccumulator(fourth_power)
    acc.update(y[:1], y[:1] + 1.0)
    acc.update(y[1:], y[1:] * 2.0)
    expected = float(losskit.get(fourth_power)(y, np.concatenate([y[:1] + 1.0, y[1:] * 2.0])))
    assert acc.name == "fourth_power"
    np.testing.assert_allclose(acc.result(), expected, rtol=1e-6)
    state = json.loads(json.dumps(acc.state))
    rebuilt = LossAccumulator.from_state(state, custom_objects={"fourth_power": fourth_power})
    assert rebuilt.result() == acc.result()


@pytest.mark.parametrize("weighted", [False, True])
def test_large_batches_through_the_fast_paths(weighted: bool) -> None:
    """Batches big enough for losskit's fused kernels (where installed) give
    the reference implementation's values, every regression and
    probabilistic loss."""
    rng = np.random.default_rng(0)
    n = 3 * 50_000
    y_true = rng.uniform(0.1, 1.0, size=(n, 1))
    y_pred = np.clip(y_true + rng.normal(scale=0.2, size=(n, 1)), 0.01, 0.99)
    weights = rng.uniform(size=n) if weighted else None
    # one output column: no losses of several classes or of class labels
    names = [
        i.name
        for i in losskit.LOSSES
        if i.family in ("regression", "probabilistic")
        and not i.domain.startswith(("categorical", "sparse"))
    ]
    acc = MultiLossAccumulator(names)
    for lo in range(0, n, 50_000):
        w = None if weights is None else weights[lo : lo + 50_000]
        acc.update(y_true[lo : lo + 50_000], y_pred[lo : lo + 50_000], sample_weight=w)
    with losskit.prefer_backend("reference"):
        for name, value in acc.result().items():
            loss = type(resolve_loss(name))(dtype="float64")
            expected = float(loss(y_true, y_pred, sample_weight=weights))
            np.testing.assert_allclose(value, expected, rtol=1e-10, err_msg=name)


def test_accumulators_take_arrays_on_a_non_default_device() -> None:
    import array_api_strict

    device = array_api_strict.Device("device1")
    rng = np.random.default_rng(8)
    t, p = rng.random((6, 3)), rng.random((6, 3))
    names = ["mse", "hinge", "dice", "categorical_crossentropy"]
    on_device = MultiLossAccumulator(names)
    on_device.update(
        array_api_strict.asarray(t, device=device), array_api_strict.asarray(p, device=device)
    )
    on_host = MultiLossAccumulator(names)
    on_host.update(t, p)
    assert on_device.result() == pytest.approx(on_host.result(), rel=1e-12)


@pytest.mark.parametrize("codes", [False, True])
def test_grouped_nan_and_none_keys_lose_no_sample(codes: bool) -> None:
    """NaN and None are one missing key (None); neither's samples are lost,
    whether the keys come as values or as codes into ``group_keys``."""
    y_true = np.zeros((4, 1))
    y_pred = np.array([[1.0], [2.0], [3.0], [4.0]])
    acc = GroupedAccumulator(["mse"])
    if codes:
        acc.update(y_true, y_pred, groups=np.array([0, 1, 2, 0]), group_keys=[1.0, np.nan, None])
    else:
        acc.update(y_true, y_pred, groups=np.array([1.0, np.nan, None, 1.0], dtype=object))
    assert acc.samples == {1.0: 2, None: 2}
    assert acc.result() == {
        1.0: {"mean_squared_error": 8.5},
        None: {"mean_squared_error": 6.5},
    }
    assert acc.combined().result() == {"mean_squared_error": 7.5}


@pytest.mark.parametrize("name", ["hinge", "squared_hinge"])
def test_an_empty_hinge_batch_changes_nothing(name: str) -> None:
    # Other accumulators already took an empty batch as a no-op; the hinge's
    # label check used to fail to reshape zero rows.
    y_true, y_pred = np.array([[1.0, 0.0, 1.0]]), np.array([[0.5, 0.2, -0.3]])
    with_empty = LossAccumulator(name)
    with_empty.update(np.zeros((0, 3)), np.zeros((0, 3)))
    with_empty.update(y_true, y_pred)
    alone = LossAccumulator(name)
    alone.update(y_true, y_pred)
    assert with_empty.result() == alone.result()
    assert with_empty.result() == pytest.approx(float(losskit.get(name)(y_true, y_pred)[0]))


def _three_groups() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((5, 1)), np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])


def test_group_codes_minus_one_is_the_missing_key() -> None:
    """pandas' and Arrow's code -1 for a missing key is the group None, not
    the last key (a negative index)."""
    y_true, y_pred = _three_groups()
    acc = GroupedAccumulator(["mse"])
    acc.update(y_true, y_pred, groups=np.array([0, -1, 1, -1, 0]), group_keys=["a", "b"])
    assert acc.samples == {"a": 2, None: 2, "b": 1}
    assert acc.result()["a"] == {"mean_squared_error": 13.0}
    assert acc.result()[None] == {"mean_squared_error": 10.0}
    assert acc.result()["b"] == {"mean_squared_error": 9.0}


def test_repeated_group_keys_are_one_group() -> None:
    y_true, y_pred = _three_groups()
    acc = GroupedAccumulator(["mse"])
    acc.update(y_true, y_pred, groups=np.array([0, 1, 2, 1, 0]), group_keys=["a", "a", "b"])
    assert acc.samples == {"a": 4, "b": 1}
    assert acc.result() == {
        "a": {"mean_squared_error": (1 + 4 + 16 + 25) / 4},
        "b": {"mean_squared_error": 9.0},
    }


@pytest.mark.parametrize(
    ("codes", "error", "match"),
    [
        ([0, 1, 2, 1, 0], ValueError, r"the code 2, outside the 2 `group_keys`.*\[0, 1\]"),
        ([0, 1, -2, 1, 0], ValueError, r"the code -2, outside the 2 `group_keys`"),
        ([0.0, 1.0, 0.5, 1.0, 0.0], TypeError, "integer codes; received dtype float64"),
        (["0", "1", "1", "0", "0"], TypeError, "integer codes; received dtype <U1"),
    ],
)
def test_bad_group_codes_are_a_clear_error(codes: list[Any], error: type, match: str) -> None:
    y_true, y_pred = _three_groups()
    acc = GroupedAccumulator(["mse"])
    with pytest.raises(error, match=match):
        acc.update(y_true, y_pred, groups=np.array(codes), group_keys=["a", "b"])
    assert acc.samples == {}


def test_object_nan_keys_of_several_batches_lose_no_sample() -> None:
    acc = GroupedAccumulator(["mae"])
    acc.update(np.zeros((2, 1)), np.ones((2, 1)), groups=np.array([np.nan, "x"], dtype=object))
    acc.update(np.zeros((2, 1)), np.ones((2, 1)), groups=np.array([None, float("nan")]))
    acc.update(np.zeros((1, 1)), np.ones((1, 1)), groups=np.array([np.float32("nan")]))
    assert acc.samples == {None: 4, "x": 1}


def test_state_with_numpy_and_datetime_keys_is_json() -> None:
    y_true, y_pred = _three_groups()
    acc = GroupedAccumulator(["mse"])
    acc.update(y_true[:2], y_pred[:2], groups=np.array([7, 8], dtype=np.uint8))
    days = np.array(["2024-01-01", "2024-01-02", "NaT"], dtype="datetime64[D]")
    acc.update(y_true[2:], y_pred[2:], groups=days)
    acc.update(
        y_true[:2],
        y_pred[:2],
        groups=np.array(["2024-01-01T10:00:00", "2024-01-01T10:00:00"], dtype="datetime64[ns]"),
    )
    acc.update(y_true[:1], y_pred[:1], groups=[np.int64(7)])
    pair = np.empty(1, dtype=object)
    pair[0] = (1, "a")
    acc.update(y_true[:1], y_pred[:1], groups=pair)
    state = json.loads(json.dumps(acc.state))
    assert state["groups"] == [
        7,
        8,
        {"date": "2024-01-01"},
        {"date": "2024-01-02"},
        None,
        {"datetime": "2024-01-01T10:00:00"},
        [1, "a"],
    ]
    rebuilt = GroupedAccumulator.from_state(state)
    assert rebuilt.samples == acc.samples
    assert rebuilt.result() == acc.result()
    assert acc.samples[datetime.datetime(2024, 1, 1, 10)] == 2
    assert acc.samples[7] == 2


def test_state_with_a_key_json_cannot_hold_is_a_clear_error() -> None:
    acc = GroupedAccumulator(["mse"])
    acc.update(np.zeros((1, 1)), np.ones((1, 1)), groups=np.array([frozenset()], dtype=object))
    with pytest.raises(TypeError, match="group key of type frozenset"):
        _ = acc.state


def test_many_groups_give_each_group_its_own_value_and_an_exact_total() -> None:
    """Results of 30,000 groups over several batches (new groups in each),
    against a direct per-group computation, and the combined total against
    an exactly rounded sum."""
    rng = np.random.default_rng(0)
    n, n_groups = 90_000, 30_000
    y_true, y_pred = rng.normal(size=(n, 1)), rng.normal(size=(n, 1)) * 1e3
    keys = rng.permutation(np.repeat(np.arange(n_groups), 3))
    acc = GroupedAccumulator(["mse", "mae"])
    for lo in range(0, n, 7_000):
        acc.update(y_true[lo : lo + 7_000], y_pred[lo : lo + 7_000], groups=keys[lo : lo + 7_000])
    squared = ((y_pred - y_true) ** 2)[:, 0]
    per_group = np.bincount(keys, weights=squared) / 3
    result = acc.result()
    assert list(result) == list(range(n_groups))
    np.testing.assert_allclose(
        [result[k]["mean_squared_error"] for k in range(n_groups)], per_group, rtol=1e-13
    )
    combined = acc.combined().result()["mean_squared_error"]
    assert combined == pytest.approx(math.fsum(squared.tolist()) / n, rel=1e-15)


def test_integer_keys_then_other_keys_keep_every_group() -> None:
    """Integer keys are looked up by binary search until another kind of key
    arrives; the groups found either way are the same."""
    acc = GroupedAccumulator(["mae"])
    ones = np.ones((3, 1))
    acc.update(np.zeros((3, 1)), ones, groups=np.array([5, 3, 5]))
    acc.update(np.zeros((3, 1)), ones, groups=np.array([3, 2**62, 7], dtype=np.int64))
    acc.update(np.zeros((2, 1)), ones[:2], groups=np.array([2**64 - 1, 3], dtype=np.uint64))
    acc.update(np.zeros((3, 1)), ones, groups=np.array(["a", 3, 7], dtype=object))
    acc.update(np.zeros((2, 1)), ones[:2], groups=np.array([3.0, 7.5]))
    assert acc.samples == {5: 2, 3: 5, 2**62: 1, 7: 2, 2**64 - 1: 1, "a": 1, 7.5: 1}
    other = GroupedAccumulator(["mae"])
    other.update(np.zeros((3, 1)), ones, groups=np.array([7, 9, 5]))
    merged = GroupedAccumulator.from_state(other.state).merge(acc)
    assert merged.samples == {7: 3, 9: 1, 5: 3, 3: 5, 2**62: 1, 2**64 - 1: 1, "a": 1, 7.5: 1}
    assert sum(merged.samples.values()) == 16


def test_circle_is_refused_since_its_per_sample_loss_depends_on_the_batch() -> None:
    # Circle compares every pair of embeddings in a batch: summing its values
    # batch by batch gives another number than one call on all the rows.
    with pytest.raises(ValueError, match="Circle cannot be accumulated batch by batch"):
        LossAccumulator(losskit.Circle())
    with pytest.raises(ValueError, match="depends on every other sample"):
        MultiLossAccumulator(["mse", "circle"])


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64, np.uint64])
@pytest.mark.parametrize("spread", [1, 3, 10**6, 2**62])
def test_integer_keys_factorize_as_numpy_unique(dtype: Any, spread: int) -> None:
    """The table-based factorisation of narrow integer ranges (and the sort
    for wide ones) gives numpy.unique's keys and inverse, at the extremes of
    each integer type too."""
    from losskit import streaming

    info = np.iinfo(dtype)
    rng = np.random.default_rng(spread)
    for low in (int(info.min), 0, int(info.max) - min(spread, int(info.max))):
        high = min(low + spread, int(info.max))
        keys = rng.integers(low, high, size=50, endpoint=True, dtype=dtype)
        unique, inverse = np.unique(keys, return_inverse=True)
        found, codes = streaming._factorize(keys)
        # an int64 array where every key fits one, else Python ints
        fits = int(unique[-1]) < 2**63
        assert isinstance(found, np.ndarray) == fits
        listed = found.tolist() if fits else found
        assert listed == unique.tolist()
        assert all(type(k) is int for k in listed)
        np.testing.assert_array_equal(codes, inverse)
    assert len(streaming._factorize(np.zeros(0, dtype=dtype))[0]) == 0


INDEX_BATCHES = {
    "dense": [np.arange(0, 40), np.arange(30, 90), np.array([5, 89])],
    "rising": [np.arange(k * 1000, k * 1000 + 700) for k in range(12)],
    "falling": [np.arange(-k * 1000 - 700, -k * 1000) for k in range(12)],
    "sparse then dense": [np.array([-(2**61), 2**61]), np.arange(0, 50), np.array([2**61])],
    "dense then sparse": [np.arange(0, 3000), np.array([10**15, 1, -(10**15)]), np.arange(0, 5)],
    "extremes": [np.array([2**63 - 1, -(2**63), 0]), np.array([-(2**63), 7])],
    "near the table's limits": [np.array([2**62 - 2, 2**62 - 1]), np.array([-(2**62) + 1])],
}


@pytest.mark.parametrize("batches", INDEX_BATCHES.values(), ids=INDEX_BATCHES.keys())
def test_integer_index_gives_each_key_one_row_as_a_dict_would(batches: list[Any]) -> None:
    """_IntegerIndex (a table while keys are dense, binary search after)
    gives the rows a dict of first appearances gives, and lists its keys in
    order, through every switch between its two forms."""
    from losskit.streaming import _IntegerIndex

    rng = np.random.default_rng(len(batches))
    index, reference = _IntegerIndex(), {}
    for batch in batches:
        keys = rng.permutation(np.asarray(batch, dtype=np.int64))
        rows, new_keys, new_rows = index.rows_for(keys, len(reference))
        expected_new = [k for k in keys.tolist() if k not in reference]
        assert new_keys.tolist() == expected_new
        for key in expected_new:
            reference[key] = len(reference)
        assert rows.tolist() == [reference[k] for k in keys.tolist()]
        assert new_rows.tolist() == [reference[k] for k in expected_new]
        assert index.size == len(reference)
        ordered_keys, ordered_rows = index.in_key_order()
        assert ordered_keys.tolist() == sorted(reference)
        assert ordered_rows.tolist() == [reference[k] for k in sorted(reference)]
    if batches is INDEX_BATCHES["rising"]:  # doubling, not a table per batch
        assert index.table is not None
        assert index.table.size <= 4 * index.size + 1024


def test_grouped_integer_keys_over_many_batches_as_one_batch() -> None:
    """Integer keys in any order over many batches (the index switching from
    a table to binary search half-way) group as the same keys in one batch."""
    rng = np.random.default_rng(11)
    keys = np.concatenate([rng.integers(0, 500, 3000), rng.integers(-(10**12), 10**12, 300)])
    y_true, y_pred = rng.normal(size=(keys.size, 1)), rng.normal(size=(keys.size, 1))
    whole, batched = GroupedAccumulator(["mse", "mae"]), GroupedAccumulator(["mse", "mae"])
    whole.update(y_true, y_pred, groups=keys)
    for part in np.array_split(np.arange(keys.size), 17):
        batched.update(y_true[part], y_pred[part], groups=keys[part])
    assert batched.samples == whole.samples
    got, want = batched.result(), whole.result()
    assert list(got) == list(want) == sorted(set(keys.tolist()))
    for key in want:
        for name, value in want[key].items():
            assert got[key][name] == pytest.approx(value, rel=1e-14)


@pytest.mark.parametrize("seed", range(6))
def test_compiled_compensated_sums_equal_the_numpy_ones(seed: int, monkeypatch: Any) -> None:
    """The Numba loop of _Sums.add gives bit for bit the NumPy version's
    values and compensations, flags, overflow and NaN included."""
    pytest.importorskip("numba")
    from losskit import streaming

    monkeypatch.setattr(streaming, "_KERNEL_MIN_ROWS", 1)  # the loop for every batch size
    assert streaming._compensated_add_kernel() is not None
    rng = np.random.default_rng(seed)
    compiled, plain = streaming._Sums(4, (3,)), streaming._Sums(4, (3,))
    for sums in (compiled, plain):
        sums.grow(100)
    for step in range(6):
        rows = rng.permutation(100)[: rng.integers(1, 100)]
        values = rng.normal(size=(rows.size, 4)) * 10.0 ** rng.integers(-20, 20, (rows.size, 4))
        values[:, 3] = rng.integers(0, 2, size=rows.size)
        values[0, step % 3] = [np.inf, np.nan, 1.7e308][seed % 3]
        extra: Any = 0.0 if step % 2 else rng.normal(size=values.shape) * 1e-17
        compiled.add(rows, values, extra)
        with monkeypatch.context() as patch:
            patch.setattr(streaming, "_ADD_KERNEL", [None])
            plain.add(rows, values, extra)
    np.testing.assert_array_equal(compiled.value, plain.value)
    np.testing.assert_array_equal(compiled.compensation, plain.compensation)
    if seed % 3 < 2:  # an inf or NaN went in
        assert not np.isfinite(compiled.value).all()


@pytest.mark.parametrize("special", ["finite", "inf", "nan", "overflow", "cancelling"])
def test_compiled_collapse_of_the_groups_equals_the_pairwise_tree(
    special: str, monkeypatch: Any
) -> None:
    """Summing every group into one (the overall loss of a grouped run) by the
    compiled loop gives the pairwise tree's total: to the last bits where
    finite, the same inf or NaN where not, flags by minimum."""
    pytest.importorskip("numba")
    from losskit import streaming

    assert streaming._compensated_add_kernel() is not None  # loaded: the collapse may use it
    rng = np.random.default_rng(3)
    sums = streaming._Sums(4, (3,))
    sums.grow(5000)
    values = rng.normal(size=(5000, 4)) * 10.0 ** rng.integers(-12, 12, (5000, 4))
    values[:, 3] = 1.0
    values[4321, 3] = 0.0
    values[:, 2] = rng.integers(0, 1000, 5000)  # counts: exact either way
    if special == "inf":
        values[17, 0] = np.inf
    elif special == "nan":
        values[17, 1] = np.nan
    elif special == "overflow":
        values[[5, 6], 0] = 1.7e308
    elif special == "cancelling":
        values[:2500, 0] = 1e20 * np.arange(2500)
        values[2500:, 0] = -values[:2500, 0]
        values[0, 0] = 3.0
    compensation = np.nan_to_num(values * rng.normal(size=values.shape) * 1e-9, posinf=0.0)
    compensation[:, 3] = 0.0
    if special == "cancelling":  # only the rounding errors of the cancelling sums count
        compensation[:, 0] = 0.0
    sums.add(np.arange(5000), values, compensation)
    compiled = sums.collapsed()
    with monkeypatch.context() as patch:
        patch.setattr(streaming, "_ADD_KERNEL", [None])
        tree = sums.collapsed()
    exact = []
    for j in (0, 1, 2):
        try:
            exact.append(math.fsum([*sums.value[:, j], *sums.compensation[:, j]]))
        except OverflowError:
            exact.append(math.inf)
    for (value, compensation), name in ((compiled, "compiled"), (tree, "tree")):
        totals = np.where(np.isfinite(value), value + compensation, value)[0]
        assert totals[3] == 0.0, name
        assert totals[2] == exact[2], name
        for j in (0, 1):
            if math.isfinite(exact[j]) and special != "overflow":
                assert totals[j] == pytest.approx(exact[j], rel=1e-15, abs=1e-300), (name, j)
    np.testing.assert_array_equal(np.isfinite(compiled[0]), np.isfinite(tree[0]))
    np.testing.assert_array_equal(np.isnan(compiled[0]), np.isnan(tree[0]))
    if special in ("inf", "overflow"):
        assert compiled[0][0, 0] == tree[0][0, 0] == np.inf
    if special == "cancelling":
        assert compiled[0][0, 0] + compiled[1][0, 0] == pytest.approx(exact[0], rel=1e-15)


def test_a_small_ungrouped_evaluation_does_not_import_numba() -> None:
    # A 1-row file's start-up must not pay for Numba's import (issue 11).
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from losskit.streaming import LossAccumulator\n"
        "acc = LossAccumulator('mse')\n"
        "acc.update(np.array([[1.0]]), np.array([[2.0]]))\n"
        "assert acc.result() == 1.0\n"
        "print('numba' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
