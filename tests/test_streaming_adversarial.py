"""Inputs an adversarial tester found to break the streaming accumulators:
group keys that hide a missing value (NaN in a tuple, pandas' NA and NaT,
Arrow's null indices), empty and one-row batches, odd label shapes, weights
and states; each test failed before its fix."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from losskit import Huber
from losskit.functional.segmentation import dice_from_sums
from losskit.streaming import (
    GroupedAccumulator,
    LossAccumulator,
    MultiLossAccumulator,
    resolve_loss,
)

pd = pytest.importorskip("pandas")

zeros = np.zeros
TWO = np.array([[1.0], [3.0]])


def reloaded(acc: Any) -> Any:
    return type(acc).from_state(json.loads(json.dumps(acc.state)))


# -- group keys -------------------------------------------------------------


def test_tuple_keys_with_nan_are_one_missing_group() -> None:
    keys = pd.Series(list(zip(["x", "x"], np.array([np.nan, np.nan]), strict=True)))
    acc = GroupedAccumulator(["mae"])
    acc.update(zeros((2, 1)), TWO, groups=keys)
    assert acc.result() == {("x", None): {"mean_absolute_error": 2.0}}
    assert reloaded(acc).result() == acc.result()


def test_tuple_keys_hold_python_scalars() -> None:
    keys = np.empty(2, dtype=object)
    keys[:] = [("a", np.int64(7)), ("a", 7)]
    acc = GroupedAccumulator(["mae"])
    acc.update(zeros((2, 1)), TWO, groups=keys)
    assert acc.samples == {("a", 7): 2}
    assert type(acc.groups[0][1]) is int


def test_tuple_group_keys_with_nan_are_one_group() -> None:
    acc = GroupedAccumulator(["mae"])
    group_keys = [("x", np.nan), ("x", None), ("y", np.float64(1.5))]
    acc.update(
        zeros((3, 1)), np.array([[1.0], [3.0], [4.0]]), groups=[0, 1, 2], group_keys=group_keys
    )
    assert acc.result() == {
        ("x", None): {"mean_absolute_error": 2.0},
        ("y", 1.5): {"mean_absolute_error": 4.0},
    }
    assert reloaded(acc).result() == acc.result()


def test_nat_in_an_object_array_is_the_missing_key() -> None:
    acc = GroupedAccumulator(["mae"])
    acc.update(
        zeros((3, 1)),
        np.array([[1.0], [3.0], [5.0]]),
        groups=np.array([pd.NaT, None, pd.NaT], dtype=object),
    )
    assert acc.samples == {None: 3}
    assert acc.state["groups"] == [None]
    assert reloaded(acc).result() == {None: {"mean_absolute_error": 3.0}}


def test_nat_in_an_older_state_loads_as_the_missing_key() -> None:
    acc = GroupedAccumulator(["mae"])
    acc.update(zeros((1, 1)), np.ones((1, 1)), groups=["a"])
    state = json.loads(json.dumps(acc.state))
    state["groups"] = [{"datetime": "NaT"}]
    assert GroupedAccumulator.from_state(state).samples == {None: 1}
    state["groups"] = [{"datetime": "not a time"}]
    with pytest.raises(ValueError, match="Not a group key"):
        GroupedAccumulator.from_state(state)


@pytest.mark.parametrize(
    ("values", "dtype"), [([None, None], "string"), ([None, True], "boolean"), ([None, 2], "Int64")]
)
def test_pandas_na_is_the_missing_key(values: list[Any], dtype: str) -> None:
    acc = GroupedAccumulator(["mae"])
    acc.update(zeros((2, 1)), TWO, groups=pd.array(values, dtype=dtype))
    acc.update(zeros((1, 1)), np.ones((1, 1)), groups=[None])
    missing = values.count(None) + 1
    assert acc.samples[None] == missing
    assert len(acc.samples) == len(set(values))
    assert reloaded(acc).samples == acc.samples
    acc.update(zeros((1, 1)), np.ones((1, 1)), groups=[0], group_keys=[pd.NA])
    assert acc.samples[None] == missing + 1


def test_keys_are_normalised_without_importing_pandas_or_pyarrow() -> None:
    code = (
        "import sys, numpy as np\n"
        "from losskit.streaming import GroupedAccumulator\n"
        "acc = GroupedAccumulator(['mae'])\n"
        "keys = np.array([None, 'a', ('b', 1.0)], dtype=object)\n"
        "acc.update(np.zeros((3, 1)), np.ones((3, 1)), groups=keys)\n"
        "codes = np.array([0, -1])\n"
        "acc.update(np.zeros((2, 1)), np.ones((2, 1)), groups=codes, group_keys=['a'])\n"
        "assert acc.samples == {None: 2, 'a': 2, ('b', 1.0): 1}, acc.samples\n"
        "assert 'pandas' not in sys.modules and 'pyarrow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_arrow_null_indices_are_the_missing_key() -> None:
    pa = pytest.importorskip("pyarrow")
    encoded = pa.array(["a", None, "b", None]).dictionary_encode()
    unsigned = pa.DictionaryArray.from_arrays(
        pa.array([0, None, 1, 1], pa.uint8()), encoded.dictionary
    )
    chunked = pa.chunked_array([encoded.indices[:1], encoded.indices[1:]])
    y_pred = np.array([[1.0], [2.0], [3.0], [4.0]])
    for codes, expected in (
        (encoded.indices, {None: 3.0, "a": 1.0, "b": 3.0}),
        (unsigned.indices, {None: 2.0, "a": 1.0, "b": 3.5}),
        (chunked, {None: 3.0, "a": 1.0, "b": 3.0}),
    ):
        acc = GroupedAccumulator(["mae"])
        acc.update(zeros((4, 1)), y_pred, groups=codes, group_keys=encoded.dictionary.to_pylist())
        assert {k: v["mean_absolute_error"] for k, v in acc.result().items()} == expected
    with pytest.raises(TypeError, match="integer codes"):
        GroupedAccumulator(["mae"]).update(
            zeros((2, 1)), TWO, groups=pa.array([0.0, None]), group_keys=["a"]
        )


# -- batches ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "y_true", "y_pred", "weight"),
    [
        ("mse", zeros((0, 2, 3)), zeros((0, 2, 3)), None),
        ("mse", zeros((0, 1)), zeros((0, 1)), zeros((0, 1))),
        ("mse", zeros((0, 2)), zeros((0, 2)), zeros((0,))),
        ("dice", zeros((0, 3)), zeros((0, 3)), None),
        ("sparse_categorical_crossentropy", zeros((0, 2)), zeros((0, 2, 3)), None),
        ("hinge", zeros((0, 2)), zeros((0, 2)), None),
    ],
)
def test_empty_batches_are_no_ops(loss: str, y_true: Any, y_pred: Any, weight: Any) -> None:
    grouped = GroupedAccumulator([loss])
    before = grouped.state
    grouped.update(y_true, y_pred, sample_weight=weight, groups=[])
    assert grouped.state == before
    plain = LossAccumulator(loss)
    plain.update(y_true, y_pred, sample_weight=weight)
    assert plain.samples == 0
    assert plain.result() == MultiLossAccumulator([loss]).result()[plain.name]


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
def test_one_row_with_a_scalar_weight(reduction: str) -> None:
    grouped = GroupedAccumulator(["mse"], reduction=reduction)
    grouped.update(zeros((1, 1)), np.ones((1, 1)), sample_weight=2.0, groups=["a"])
    plain = LossAccumulator("mse", reduction=reduction)
    plain.update(zeros((1, 1)), np.ones((1, 1)), sample_weight=2.0)
    expected = {"sum_over_batch_size": 2.0, "sum": 2.0, "mean_with_sample_weight": 1.0}[reduction]
    assert grouped.result() == {"a": {"mean_squared_error": expected}}
    assert plain.result() == expected
    assert grouped.combined().result()["mean_squared_error"] == expected


def test_state_of_a_grouped_accumulator_without_groups() -> None:
    acc = reloaded(GroupedAccumulator(["mse", "hinge"]))
    assert acc.result() == {}
    acc.update(zeros((2, 1)), TWO, groups=[3, 4])
    assert acc.integer_table() is not None
    assert acc.result()[4] == {"mean_squared_error": 9.0, "hinge": 4.0}


@pytest.mark.parametrize("loss", ["hinge", "squared_hinge", "categorical_hinge"])
@pytest.mark.parametrize("labels", [[0.0, 1.0, 1.0], [-1.0, 1.0, 0.5]])
def test_hinges_take_labels_of_rank_one_as_the_loss_does(loss: str, labels: list[float]) -> None:
    y_true, y_pred = np.array(labels), np.array([[0.5], [-0.2], [2.0]])
    expected = float(type(resolve_loss(loss))(dtype="float64")(y_true, y_pred))
    plain = LossAccumulator(loss)
    plain.update(y_true[:1], y_pred[:1])
    plain.update(y_true[1:], y_pred[1:])
    assert plain.result() == pytest.approx(expected, rel=1e-15)
    grouped = GroupedAccumulator([loss])
    grouped.update(y_true, y_pred, groups=[0, 0, 0])
    assert grouped.result()[0][plain.name] == pytest.approx(expected, rel=1e-15)
    if labels[0] == 0.0:
        assert plain.result() == pytest.approx({"hinge": 0.9, "squared_hinge": 1.23}.get(loss, 0.9))


def test_float32_losses_are_summed_in_float64_with_or_without_groups() -> None:
    a, b = np.random.default_rng(0).normal(size=(2, 4096, 1))
    plain = LossAccumulator("mse", dtype="float32")
    plain.update(a, b)
    grouped = GroupedAccumulator(["mse"], dtype="float32")
    grouped.update(a, b, groups=np.zeros(4096, dtype=np.int64))
    assert plain.result() == grouped.result()[0]["mean_squared_error"]
    per_sample = np.square(a.astype(np.float32) - b.astype(np.float32))
    exact = math.fsum(per_sample.astype(np.float64).ravel()) / per_sample.size
    assert abs(plain.result() - exact) < 1e-14
    multi = MultiLossAccumulator(["mse", "mae", "huber"], dtype="float32")
    multi.update(a, b)
    assert multi.result()["mean_squared_error"] == plain.result()


def test_integer_keys_keep_their_table_after_empty_batches_and_merges() -> None:
    after_empty = GroupedAccumulator(["mse"])
    after_empty.update(zeros((0, 1)), zeros((0, 1)), groups=[])
    after_empty.update(zeros((2, 1)), TWO, groups=[1, 2])
    merged = GroupedAccumulator(["mse"]).merge(GroupedAccumulator(["mse"]))
    merged.update(zeros((2, 1)), TWO, groups=[1, 2])
    for acc in (after_empty, merged, reloaded(merged)):
        table = acc.integer_table()
        assert table is not None
        keys, samples, values = table
        assert keys.tolist() == [1, 2]
        assert samples.tolist() == [1, 1]
        assert values["mean_squared_error"].tolist() == [1.0, 9.0]


# -- bad input --------------------------------------------------------------


@pytest.mark.parametrize(
    "update",
    [
        lambda w: GroupedAccumulator(["mse"]).update(
            zeros((1, 1)), np.ones((1, 1)), sample_weight=w, groups=[0]
        ),
        lambda w: LossAccumulator("mse").update(
            zeros((1, 1)), np.ones((1, 1)), sample_weight=w, mask=[True]
        ),
        lambda w: LossAccumulator("mse").update(zeros((1, 1)), np.ones((1, 1)), sample_weight=w),
        lambda w: LossAccumulator("hinge").update(zeros((1, 1)), np.ones((1, 1)), sample_weight=w),
    ],
)
def test_complex_weights_are_a_type_error(update: Any) -> None:
    with pytest.raises(TypeError, match="`sample_weight` must hold booleans, integers or real"):
        update(np.array([1 + 9j]))


def test_a_mask_of_the_wrong_length_is_named() -> None:
    with pytest.raises(ValueError, match=r"^mask vs. losses: shapes \(3,\) and \(2,\)"):
        LossAccumulator("mse").update(zeros((3, 1)), zeros((3, 1)), mask=np.ones(2))
    with pytest.raises(ValueError, match=r"^mask vs. losses"):
        GroupedAccumulator(["mse"]).update(
            zeros((3, 1)), zeros((3, 1)), mask=np.ones(2), groups=[0, 1, 1]
        )


STATE_KEYS = ["losses", "reduction", "dtype", "groups", "samples", "fields", "sums", "compensation"]


@pytest.mark.parametrize("key", STATE_KEYS)
def test_a_state_missing_a_key_is_a_value_error(key: str) -> None:
    acc = GroupedAccumulator(["mse"])
    acc.update(zeros((1, 1)), np.ones((1, 1)), groups=["a"])
    state = acc.state
    del state[key]
    with pytest.raises(ValueError, match=rf"^Malformed accumulator state: it has no \['{key}'\]"):
        GroupedAccumulator.from_state(state)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"losses": 5}, "'losses' must be a list; received int"),
        ({"sums": []}, "'sums' has 0 entries for 1 losses"),
        ({"fields": [["total", "count", "weight"]] * 2}, "'fields' has 2 entries for 1 losses"),
        ({"sums": [[[1.0, 2.0]]]}, r"'sums' must hold numbers of shape \(1, 3\)"),
        (
            {"compensation": [[["x", 0.0, 0.0]]]},
            r"'compensation' must hold numbers of shape \(1, 3\)",
        ),
        ({"samples": [1, 2]}, r"'samples' must hold numbers of shape \(1,\)\.$"),
        ({"samples": None}, "'samples' must be a list; received NoneType"),
    ],
)
def test_a_malformed_state_is_a_value_error(change: dict[str, Any], message: str) -> None:
    acc = LossAccumulator("mse")
    acc.update(zeros((1, 1)), np.ones((1, 1)))
    with pytest.raises(ValueError, match=f"^Malformed accumulator state: {message}"):
        LossAccumulator.from_state({**acc.state, **change})


def test_no_samples_gives_the_value_of_empty_sums() -> None:
    assert LossAccumulator("mse").result() == 0.0
    assert LossAccumulator("dice").result() == float(dice_from_sums(0.0, 0.0, 0.0)) == 1.0
    assert LossAccumulator("tversky").result() == 1.0


def test_groups_are_sorted_with_the_missing_key_last() -> None:
    """With a missing key among them, the groups came out in the order they
    were first seen (sorting None with text raised, and the fallback kept
    that order): the report and --plot's "first 8 by key" depend on it."""
    acc = GroupedAccumulator(["mse"])
    keys = np.array(["zeta", "alpha", None, "mid", "beta"], dtype=object)
    acc.update(np.zeros((5, 1)), np.ones((5, 1)), groups=keys)
    assert list(acc.result()) == ["alpha", "beta", "mid", "zeta", None]
    numbers = GroupedAccumulator(["mse"])
    numbers.update(np.zeros((5, 1)), np.ones((5, 1)), groups=[30.0, 2.0, math.nan, 100.0, -5.0])
    assert list(numbers.result()) == [-5.0, 2.0, 30.0, 100.0, None]  # NaN is the missing key


def test_keys_of_several_types_sort_by_type_then_value() -> None:
    """Numbers and text (from two files) sort numbers first, then text; the
    missing key last."""
    acc = GroupedAccumulator(["mse"])
    acc.update(np.zeros((3, 1)), np.ones((3, 1)), groups=np.array(["b", None, "a"], dtype=object))
    acc.update(np.zeros((2, 1)), np.ones((2, 1)), groups=[3, 1])
    assert list(acc.result()) == [1, 3, "a", "b", None]


def test_a_state_without_its_type_names_what_is_missing() -> None:
    acc = GroupedAccumulator(["mse"])
    acc.update(np.zeros((2, 1)), np.ones((2, 1)), groups=[1, 2])
    state = dict(acc.state)
    del state["type"]
    with pytest.raises(ValueError, match=r"Malformed accumulator state: it has no \['type'\]"):
        GroupedAccumulator.from_state(state)


def test_boolean_codes_are_refused_with_group_keys() -> None:
    """Booleans were taken as the codes 0 and 1; the docs say integer codes only."""
    accumulator = GroupedAccumulator(["mse"])
    with pytest.raises(TypeError, match="integer codes; received dtype bool"):
        accumulator.update(
            np.ones((3, 1)),
            np.zeros((3, 1)),
            groups=np.array([True, False, True]),
            group_keys=["a", "b"],
        )


@pytest.mark.parametrize(
    ("first", "second", "named"),
    [
        ({"reduction": "sum"}, {}, "'sum', dtype float64 vs. MeanSquaredError {}, reduction 'sum_"),
        ({}, {"reduction": "sum"}, "reduction 'sum_over_batch_size', dtype float64 vs."),
    ],
)
def test_a_refused_merge_says_what_differs(
    first: dict[str, Any], second: dict[str, Any], named: str
) -> None:
    """It printed two identical lists of names."""
    mine, theirs = LossAccumulator("mse", **first), LossAccumulator("mse", **second)
    with pytest.raises(ValueError, match="differ in their arguments") as raised:
        mine.merge(theirs)
    assert named in str(raised.value)
    huber = LossAccumulator(Huber(delta=1.0))
    with pytest.raises(ValueError, match=r"\{'delta': 1.0\}.* vs. Huber \{'delta': 2.0\}"):
        huber.merge(LossAccumulator(Huber(delta=2.0)))
