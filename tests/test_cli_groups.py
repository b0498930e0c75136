"""``losskit evaluate --group-by`` output: groups rendered column by column
(JSON one group per line, CSV) read back to exactly the accumulator's values,
with labels escaped as JSON and CSV require."""

from __future__ import annotations

import csv
import io
import json
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from losskit.cli import engine, evaluate, main
from losskit.streaming import GroupedAccumulator


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["evaluate", *args]) == 0
    return capsys.readouterr().out


@pytest.fixture
def data(tmp_path: Path) -> tuple[str, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    n = 3000
    y_true = rng.normal(size=n) * 10.0 ** rng.integers(-8, 8, size=n)
    y_pred = np.round(y_true + rng.normal(size=n))
    y_pred[:10] = y_true[:10] + 2.0  # groups whose MAE is exactly 2.0
    names = ["plain", 'quote "q"', "comma, here", "back\\slash", "é", "null", "line\nbreak"]
    keys = [names[i % len(names)] + str(i % 50) for i in range(n)]
    keys[:10] = ["exact"] * 10
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred, "g": keys}), path)
    return str(path), y_true, y_pred, keys


def expected(y_true: np.ndarray, y_pred: np.ndarray, keys: list[str]) -> dict[str, dict]:
    acc = GroupedAccumulator(["mse", "mae"])
    acc.update(y_true[:, None], y_pred[:, None], groups=np.array(keys, dtype=object))
    return acc.result()


def test_json_groups_read_back_exactly(
    data: tuple[str, np.ndarray, np.ndarray, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, y_true, y_pred, keys = data
    out = run(capsys, path, "--group-by", "g", "--loss", "mse,mae", "--format", "json")
    groups = json.loads(out)["groups"]
    want = expected(y_true, y_pred, keys)
    assert set(groups) == set(want)
    for key, losses in want.items():
        assert groups[key]["losses"] == losses  # exactly, not approximately
        assert groups[key]["rows"] == keys.count(key)
    assert groups["exact"]["losses"]["mean_absolute_error"] == 2.0
    assert isinstance(groups["exact"]["losses"]["mean_absolute_error"], float)
    # one line per group
    lines = out.split('\n  "groups": {\n')[1].splitlines()[:-2]
    assert len(lines) == len(groups)
    assert all(line.endswith(("},", "}")) and '"rows": ' in line for line in lines)


def test_csv_groups_read_back_exactly(
    data: tuple[str, np.ndarray, np.ndarray, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, y_true, y_pred, keys = data
    out = run(capsys, path, "--group-by", "g", "--loss", "mse,mae", "--format", "csv")
    records = list(csv.reader(io.StringIO(out)))
    assert records[0] == ["scope", "group", "rows", "mean_squared_error", "mean_absolute_error"]
    want = expected(y_true, y_pred, keys)
    got = {r[1]: (int(r[2]), float(r[3]), float(r[4])) for r in records[2:]}
    assert len(records) == 2 + len(want)
    for key, losses in want.items():
        label = '"null"' if key == "null" else key
        assert got[label] == (
            keys.count(key),
            losses["mean_squared_error"],
            losses["mean_absolute_error"],
        )


@pytest.mark.parametrize("key_kind", ["text", "integer"])
def test_threads_sharing_one_accumulator_count_every_batch_once(
    data: tuple[str, np.ndarray, np.ndarray, list[str]],
    capsys: pytest.CaptureFixture[str],
    key_kind: str,
) -> None:
    """Three computing threads add 31 batches into one accumulator (under a
    lock): the groups, their rows and their losses are those of one thread."""
    path, y_true, y_pred, keys = data
    if key_kind == "integer":
        path = path.replace(".parquet", "_int.parquet")
        integer_keys = np.array([zlib.crc32(k.encode()) % 997 for k in keys], dtype=np.int64)
        pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred, "g": integer_keys}), path)
    arguments = [path, "--group-by", "g", "--loss", "mse,mae", "--format", "json"]
    arguments += ["--batch-rows", "97"]
    one = json.loads(run(capsys, *arguments, "--jobs", "1"))
    three = json.loads(run(capsys, *arguments, "--jobs", "3"))
    assert three["rows"] == one["rows"] == len(keys)
    assert list(three["groups"]) == list(one["groups"])
    for label, group in one["groups"].items():
        assert three["groups"][label]["rows"] == group["rows"]
        for name, value in group["losses"].items():
            assert three["groups"][label]["losses"][name] == pytest.approx(value, rel=1e-14)
    for name, value in one["losses"].items():
        assert three["losses"][name] == pytest.approx(value, rel=1e-14)


TEXT_KEYS = {
    "plain": ["a", "b10", "user 7", ""],
    "comma": ["a,b", "c"],
    "quote inside": ['say "hi"', "x"],
    "backslash": ["back\\slash", "y"],
    "not ascii": ["é", "日本", "z"],
    "line break": ["two\nlines", "cr\rhere", "tab\there"],
}


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
@pytest.mark.parametrize("names", TEXT_KEYS.values(), ids=TEXT_KEYS.keys())
def test_text_keys_labelled_at_once_render_as_the_generic_labels(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    names: list[str],
) -> None:
    """Text keys labelled as one Arrow array (escaped only where some label
    needs it) give the output of the label-by-label path."""
    rng = np.random.default_rng(8)
    n = 400
    keys = [names[i % len(names)] + ("" if i % 3 else str(i % 7)) for i in range(n)]
    y_true = rng.normal(size=n)
    y_pred = y_true + rng.normal(size=n)
    path = tmp_path / "keys.parquet"
    pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred, "g": keys}), path)
    arguments = (str(path), "--group-by", "g", "--loss", "mse,mae", "--format", fmt)
    fast = run(capsys, *arguments)
    assert engine.text_labels(sorted(set(keys))) is not None
    monkeypatch.setattr(evaluate, "text_labels", lambda keys: None)
    assert run(capsys, *arguments) == fast
    if fmt == "json":
        assert set(json.loads(fast)["groups"]) == set(keys)


@pytest.mark.parametrize(
    "keys",
    [["null", "a"], ['"quoted', "a"], ["a", 1], ["a", None], ["a", "\ud800"], []],
)
def test_text_labels_leave_other_keys_to_the_generic_labels(keys: list[object]) -> None:
    assert engine.text_labels(keys) is None


# -- integer keys as arrays ------------------------------------------------------


def test_integer_table_is_the_table_with_an_array_of_keys() -> None:
    rng = np.random.default_rng(5)
    acc, other = GroupedAccumulator(["mse", "mae"]), GroupedAccumulator(["mse", "mae"])
    for target in (acc, acc, other):
        keys = rng.integers(-50, 50, size=300)
        target.update(rng.normal(size=(300, 1)), rng.normal(size=(300, 1)), groups=keys)
    acc.merge(other)
    for accumulator in (acc, GroupedAccumulator.from_state(acc.state)):
        found = accumulator.integer_table()
        assert found is not None
        keys, samples, values = accumulator.table()
        assert found[0].dtype == np.int64
        assert found[0].tolist() == keys == sorted(keys)
        np.testing.assert_array_equal(found[1], samples)
        for name in values:
            np.testing.assert_array_equal(found[2][name], values[name])


@pytest.mark.parametrize(
    "keys",
    [["a", "b", "a"], [1, None, 1], [1, 2.5, 1], [True, False, True], [1, "1", 1], [2**70, 1, 1]],
)
def test_integer_table_is_none_unless_every_key_is_an_int64(keys: list[object]) -> None:
    acc = GroupedAccumulator(["mse"])
    acc.update(np.zeros((3, 1)), np.ones((3, 1)), groups=np.array(keys, dtype=object))
    assert acc.integer_table() is None
    assert len(acc.table()[0]) == 2


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_integer_keys_render_as_the_generic_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    rng = np.random.default_rng(6)
    n = 2000
    path = tmp_path / "keys.parquet"
    keys = rng.integers(-(2**62), 2**62, size=40)[rng.integers(0, 40, size=n)]
    y_true = rng.normal(size=n)
    y_pred = y_true + rng.normal(size=n)
    y_pred[:3] = 1e300  # an infinite MSE in some groups: "null" / empty cells
    pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred, "g": keys}), path)
    arguments = (str(path), "--group-by", "g", "--loss", "mse,mae", "--format", fmt)
    fast = run(capsys, *arguments)
    monkeypatch.setattr(GroupedAccumulator, "integer_table", lambda self: None)
    assert run(capsys, *arguments) == fast
    if fmt != "table":  # (the table's 41 columns are cut to the width)
        assert str(int(keys[0])) in fast


@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("key_kind", ["text", "integer"])
def test_groups_rendered_in_slices_are_the_one_slice_output(
    data: tuple[str, np.ndarray, np.ndarray, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    key_kind: str,
) -> None:
    """Large reports render slice by slice on threads; the text must be the
    one-slice text whatever the slices (here 3 groups each, and an uneven
    split into as many slices as cores)."""
    path, y_true, y_pred, keys = data
    if key_kind == "integer":
        path = path.replace(".parquet", "_int.parquet")
        integer_keys = np.array([zlib.crc32(k.encode()) % 997 - 400 for k in keys], dtype=np.int64)
        y_pred = y_pred.copy()
        y_pred[:3] = 1e300  # infinite MSE: "null" (JSON) and empty (CSV) cells
        pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred, "g": integer_keys}), path)
    arguments = (path, "--group-by", "g", "--loss", "mse,mae", "--format", fmt)
    monkeypatch.setattr(evaluate, "_RENDER_SLICE_GROUPS", 10**9)
    one_slice = run(capsys, *arguments)
    for slice_groups in (3, 7):
        monkeypatch.setattr(evaluate, "_RENDER_SLICE_GROUPS", slice_groups)
        monkeypatch.setattr(evaluate.os, "cpu_count", lambda: 64)
        assert run(capsys, *arguments) == one_slice
    if key_kind == "integer":
        assert ("null" if fmt == "json" else ",,") in one_slice


@pytest.mark.parametrize("with_null", [False, True])
def test_uint64_keys_beyond_int64_are_groups_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], with_null: bool
) -> None:
    rng = np.random.default_rng(7)
    n = 600
    base = np.uint64(2**63)
    offsets = rng.integers(0, 3, size=n).astype(np.uint64)
    keys = pa.array(
        [None if with_null and i == 5 else int(base + o) for i, o in enumerate(offsets)],
        pa.uint64(),
    )
    y_true, y_pred = rng.normal(size=n), rng.normal(size=n)
    path = tmp_path / "u64.parquet"
    pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred, "g": keys}), path)
    report = json.loads(
        run(capsys, str(path), "--group-by", "g", "--loss", "mse", "--format", "json")
    )
    present = np.ones(n, dtype=bool)
    if with_null:
        present[5] = False
    for offset in range(3):
        rows = present & (offsets == offset)
        group = report["groups"][str(2**63 + offset)]
        assert group["rows"] == rows.sum()
        want = np.mean((y_pred[rows] - y_true[rows]) ** 2)
        assert group["losses"]["mean_squared_error"] == pytest.approx(want, rel=1e-12)
    assert ("null" in report["groups"]) is with_null


# -- the table with many groups ------------------------------------------------------


def test_table_with_many_groups_has_a_line_per_group(
    data: tuple[str, np.ndarray, np.ndarray, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """More groups than TABLE_GROUP_COLUMNS: a line per group (a column per
    group made lines of millions of characters), aligned, the numbers those
    of the CSV output, a label with a line break written as a JSON string."""
    path, _, _, keys = data
    table = run(capsys, path, "--group-by", "g", "--loss", "mse,mae")
    records = list(
        csv.reader(
            io.StringIO(
                run(capsys, path, "--group-by", "g", "--loss", "mse,mae", "--format", "csv")
            )
        )
    )
    lines = table.splitlines()
    assert lines[0] == "losskit evaluate"
    assert lines[1].split() == ["group", "rows", "mean_squared_error", "mean_absolute_error"]
    body = lines[2:-1]
    assert lines[-1].startswith("3,000 rows; from ")
    assert len(body) == len(records) - 1 == len(set(keys)) + 1  # "all" and each group
    assert len({len(line) for line in body}) == 1  # aligned
    for line, record in zip(body, records[1:], strict=True):
        label, rows, mse, mae = line.rsplit(maxsplit=3)
        expected_label = "all" if record[0] == "all" else record[1]
        if "\n" in expected_label:
            expected_label = json.dumps(expected_label)
        assert (label.strip(), rows, mse, mae) == (expected_label, *record[2:])


def test_table_with_few_groups_has_a_column_per_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(9)
    path = tmp_path / "few.parquet"
    for count in (evaluate.TABLE_GROUP_COLUMNS, evaluate.TABLE_GROUP_COLUMNS + 1):
        keys = [f"k{i % count}" for i in range(100)]
        y_true, y_pred = rng.normal(size=(2, 100))
        pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred, "g": keys}), path)
        lines = run(capsys, str(path), "--group-by", "g", "--loss", "mse").splitlines()
        by_column = any("loss (Keras name)" in line for line in lines)
        assert by_column is (count <= evaluate.TABLE_GROUP_COLUMNS)
        assert len(lines) == (8 if by_column else 4 + count)


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_a_text_key_utf8_cannot_hold_is_labelled_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """NumPy text can hold a lone surrogate, which no UTF-8 output can: the
    CSV output failed with a traceback. Labelled as JSON text, as ``"null"``
    is, in every format."""
    keys = np.array(["\ud800x"] + [f"k{i}" for i in range(9)] * 2 + ["\ud800x"] * 3)
    path = tmp_path / "keys.npz"
    np.savez(path, y_true=np.zeros(22), y_pred=np.arange(22.0), g=keys)
    out = run(capsys, str(path), "--group-by", "g", "--loss", "mse", "--format", fmt)
    label = '"\\ud800x"'
    if fmt == "json":
        assert label in json.loads(out)["groups"]
    elif fmt == "csv":
        assert [label, "4"] in [row[1:3] for row in csv.reader(io.StringIO(out))]
    else:
        assert any(line.split()[:2] == [label, "4"] for line in out.splitlines())
