"""``losskit evaluate --group-by`` output: groups rendered column by column
(JSON one group per line, CSV) read back to exactly the accumulator's values,
with labels escaped as JSON and CSV require."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from losskit.cli import main
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
