"""``losskit evaluate`` and ``python -m losskit``: every file format, column
kind, option and kind of bad input.  Expected values are the float64 loss
classes applied to all the data at once (tied to Keras by the parity tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import losskit
from losskit.cli import main
from losskit.cli.specs import FAMILIES
from losskit.registry import LOSSES

N = 1000
REGRESSION = [info for info in LOSSES if info.family == "regression"]
RTOL = 1e-10
ROOT = Path(__file__).resolve().parent.parent


def make_data(n: int = N, k: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.uniform(0.5, 10.0, size=(n, k))
    y_pred = y_true + rng.normal(scale=1.5, size=(n, k))
    y_pred[:: max(n // 7, 1)] *= 4.0  # a few outliers
    return {
        "y_true": y_true,
        "y_pred": y_pred,
        "w": rng.uniform(0.0, 2.0, size=n),
        "g": rng.choice(np.array(["north", "south", "east"]), size=n),
    }


def expected(
    data: dict[str, np.ndarray],
    weighted: bool = False,
    rows: Any = slice(None),
    infos: list[Any] = REGRESSION,
) -> dict[str, float]:
    weights = data["w"][rows] if weighted else None
    return {
        info.name: float(
            info.cls(dtype="float64")(data["y_true"][rows], data["y_pred"][rows], weights)
        )
        for info in infos
    }


def table(data: dict[str, np.ndarray]) -> pa.Table:
    columns: dict[str, Any] = {"w": data["w"], "g": data["g"]}
    for name in ("y_true", "y_pred"):
        values = data[name]
        if values.shape[1] == 1:
            columns[name] = values[:, 0]
        else:
            flat = pa.array(values.reshape(-1))
            columns[name] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    return pa.table(columns)


def write(data: dict[str, np.ndarray], path: Path) -> Path:
    """Write ``data`` in the format of ``path``'s extension, in several
    row groups / record batches."""
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".csv.gz") else path.suffix
    if suffix in (".csv", ".csv.gz"):
        import pyarrow.csv as pcsv

        if data["y_true"].shape[1] != 1:
            raise ValueError("CSV holds scalar columns")
        pcsv.write_csv(table(data), str(path))
        if suffix == ".csv.gz":
            raw = path.read_bytes()
            import gzip

            path.write_bytes(gzip.compress(raw))
    elif suffix == ".parquet":
        pq.write_table(table(data), str(path), row_group_size=128)
    elif suffix == ".feather":
        feather.write_feather(table(data), str(path), chunksize=300)
    elif suffix == ".npz":
        np.savez(
            path,
            **{k: (v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v) for k, v in data.items()},
        )
    elif suffix == ".npy":
        k = data["y_true"].shape[1]
        dtype = [
            ("y_true", "f8", (k,)) if k > 1 else ("y_true", "f8"),
            ("y_pred", "f8", (k,)) if k > 1 else ("y_pred", "f8"),
            ("w", "f8"),
            ("g", "U8"),
        ]
        records = np.empty(len(data["w"]), dtype=dtype)
        for name in ("y_true", "y_pred"):
            records[name] = data[name] if k > 1 else data[name][:, 0]
        records["w"], records["g"] = data["w"], data["g"]
        np.save(path, records)
    else:
        raise ValueError(path)
    return path


def evaluate(*args: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code = main(["evaluate", *args, "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)  # type: ignore[no-any-return]


def assert_losses(got: dict[str, Any], want: dict[str, float]) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=RTOL, err_msg=name)


FORMATS = ["data.csv", "data.csv.gz", "data.parquet", "data.feather", "data.npy", "data.npz"]


@pytest.mark.parametrize("name", FORMATS)
def test_every_format(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_data()
    path = write(data, tmp_path / name)
    report = evaluate(str(path), "--batch-rows", "97", capsys=capsys)
    assert report["rows"] == N
    assert report["skipped_rows"] == 0
    assert_losses(report["losses"], expected(data))
    weighted = evaluate(str(path), "--sample-weight", "w", "--batch-rows", "333", capsys=capsys)
    assert_losses(weighted["losses"], expected(data, weighted=True))


@pytest.mark.parametrize("name", ["data.parquet", "data.feather", "data.npy", "data.npz"])
def test_list_columns_are_multi_output(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data(k=3)
    path = write(data, tmp_path / name)
    report = evaluate(str(path), "--sample-weight", "w", capsys=capsys)
    assert_losses(report["losses"], expected(data, weighted=True))


def test_variable_length_lists_of_equal_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data(k=2)
    path = tmp_path / "lists.parquet"
    pq.write_table(
        pa.table({"y_true": data["y_true"].tolist(), "y_pred": data["y_pred"].tolist()}), path
    )
    assert_losses(evaluate(str(path), capsys=capsys)["losses"], expected(data))


def test_several_scalar_columns_form_the_output_axis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data(k=2)
    path = tmp_path / "wide.csv"
    path.write_text(
        "t0,t1,p0,p1\n"
        + "".join(
            ",".join(map(repr, row)) + "\n"
            for row in np.hstack([data["y_true"], data["y_pred"]]).tolist()
        )
    )
    report = evaluate(str(path), "--y-true", "t0,t1", "--y-pred", "p0,p1", capsys=capsys)
    assert report["columns"]["y_true"] == ["t0", "t1"]
    assert_losses(report["losses"], expected(data))


def test_group_by(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_data()
    path = write(data, tmp_path / "data.parquet")
    report = evaluate(str(path), "--group-by", "g", "--sample-weight", "w", capsys=capsys)
    assert_losses(report["losses"], expected(data, weighted=True))
    assert sorted(report["groups"]) == ["east", "north", "south"]
    for key, group in report["groups"].items():
        rows = data["g"] == key
        assert group["rows"] == int(rows.sum())
        assert_losses(group["losses"], expected(data, weighted=True, rows=rows))


def test_group_by_numbers_and_missing_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data(n=50)
    path = tmp_path / "g.parquet"
    keys = pa.array([None if i % 10 == 0 else i % 3 for i in range(50)], type=pa.int64())
    pq.write_table(
        pa.table({"y_true": data["y_true"][:, 0], "y_pred": data["y_pred"][:, 0], "g": keys}), path
    )
    report = evaluate(str(path), "--group-by", "g", "--loss", "mae", capsys=capsys)
    assert sorted(report["groups"]) == ["0", "1", "2", "null"]
    assert report["groups"]["null"]["rows"] == 5


def test_globs_and_directories_cover_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data()
    parts = [slice(0, 300), slice(300, 700), slice(700, N)]
    folder = tmp_path / "runs"
    (folder / "nested").mkdir(parents=True)
    names = ["a.parquet", "b.csv", "nested/c.npz"]
    for part, name in zip(parts, names, strict=True):
        write({k: v[part] for k, v in data.items()}, folder / name)
    (folder / "notes.txt").write_text("not data")
    for paths in ([str(folder)], [str(folder / "*.*"), str(folder / "nested" / "*.npz")]):
        report = evaluate(*paths, capsys=capsys)
        assert report["rows"] == N
        assert len(report["files"]) == 3
        assert_losses(report["losses"], expected(data))


def test_loss_names_aliases_and_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data()
    path = write(data, tmp_path / "data.parquet")
    report = evaluate(str(path), "--loss", "mse,huber:delta=2.0,MAE,log_cosh", capsys=capsys)
    y_true, y_pred = data["y_true"], data["y_pred"]
    want = {
        "mean_squared_error": float(losskit.MeanSquaredError(dtype="float64")(y_true, y_pred)),
        "huber_loss(delta=2.0)": float(losskit.Huber(delta=2.0, dtype="float64")(y_true, y_pred)),
        "mean_absolute_error": float(losskit.MeanAbsoluteError(dtype="float64")(y_true, y_pred)),
        "log_cosh": float(losskit.LogCosh(dtype="float64")(y_true, y_pred)),
    }
    assert_losses(report["losses"], want)
    both = evaluate(str(path), "--loss", "huber,huber:delta=2.0", capsys=capsys)
    assert list(both["losses"]) == ["huber_loss", "huber_loss(delta=2.0)"]
    np.testing.assert_allclose(
        both["losses"]["huber_loss(delta=2.0)"], want["huber_loss(delta=2.0)"], rtol=RTOL
    )


def test_all_losses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=(N, 4)).astype(float)
    y_pred = rng.uniform(0.05, 0.95, size=(N, 4))
    path = tmp_path / "probabilities.npz"
    np.savez(path, y_true=y_true, y_pred=y_pred, w=rng.uniform(size=N))
    report = evaluate(str(path), "--loss", "all", "--batch-rows", "128", capsys=capsys)
    # The losses of class labels (sparse) need labels of shape (N,): they do
    # not apply here; the sequence and metric-learning families are never run.
    sparse = [i.name for i in LOSSES if i.domain.startswith("sparse")]
    assert "sparse_categorical_crossentropy" in sparse
    assert list(report["skipped_losses"]) == sparse
    assert "shape" in report["skipped_losses"]["sparse_categorical_crossentropy"]
    computed = [i for i in LOSSES if i.family in FAMILIES and i.name not in sparse]
    assert list(report["losses"]) == [i.name for i in computed]
    for info in LOSSES:
        if info.name in report["losses"]:
            want = float(info.cls(dtype="float64")(y_true, y_pred))
            np.testing.assert_allclose(
                report["losses"][info.name], want, rtol=1e-9, err_msg=info.name
            )
    weighted = evaluate(str(path), "--loss", "all", "--sample-weight", "w", capsys=capsys)
    assert {"dice", "tversky"} <= set(weighted["skipped_losses"])
    assert "whole array" in weighted["skipped_losses"]["dice"]


def test_explicit_loss_that_does_not_apply_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(make_data(), tmp_path / "data.parquet")
    code = main(["evaluate", str(path), "--loss", "dice", "--sample-weight", "w"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert "data.parquet, rows 1-" in captured.err
    assert "dice" in captured.err


def test_bundled_example(capsys: pytest.CaptureFixture[str]) -> None:
    report = evaluate(capsys=capsys)
    assert report["example"] is True
    assert report["rows"] == 442
    import csv
    from importlib import resources

    with (
        resources.as_file(resources.files("losskit") / "data" / "diabetes_predictions.csv") as p,
        p.open() as stream,
    ):
        rows = list(csv.DictReader(stream))
    data = {
        "y_true": np.array([[float(r["y_true"])] for r in rows]),
        "y_pred": np.array([[float(r["y_pred"])] for r in rows]),
    }
    assert_losses(report["losses"], expected(data))
    grouped = evaluate("--group-by", "age_group", capsys=capsys)
    assert sorted(grouped["groups"]) == ["40-59", "60+", "<40"]


def test_python_dash_m_runs_the_same_command(tmp_path: Path) -> None:
    data = make_data(n=100)
    path = write(data, tmp_path / "data.csv")
    result = subprocess.run(
        [sys.executable, "-m", "losskit", "evaluate", str(path), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert_losses(json.loads(result.stdout)["losses"], expected(data))
    failed = subprocess.run(
        [sys.executable, "-m", "losskit", "evaluate", str(path), "--y-true", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 1
    assert failed.stdout == ""


def test_csv_and_table_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_data()
    path = write(data, tmp_path / "data.parquet")
    assert main(["evaluate", str(path), "--format", "csv", "--group-by", "g"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(",") == ["scope", "group", "rows", *[i.name for i in REGRESSION]]
    assert lines[1].startswith(f"all,,{N},")
    assert [line.split(",")[1] for line in lines[2:]] == ["east", "north", "south"]
    value = float(lines[1].split(",")[3])
    np.testing.assert_allclose(value, expected(data)["mean_squared_error"], rtol=RTOL)
    assert main(["evaluate", str(path)]) == 0
    text = capsys.readouterr().out
    for info in REGRESSION:
        assert info.name in text
    assert f"{N:,} rows" in text


def test_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(make_data(), tmp_path / "data.parquet")
    out = tmp_path / "scores.json"
    assert main(["evaluate", str(path), "--format", "json", "--output", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(out.read_text())["rows"] == N


@pytest.mark.parametrize(
    "options", [["--batch-rows", "1"], ["--batch-rows", "100000"], ["--jobs", "3"]]
)
def test_batching_and_threads_do_not_change_results(
    tmp_path: Path, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data(n=300)
    path = write(data, tmp_path / "data.feather")
    report = evaluate(str(path), "--group-by", "g", *options, capsys=capsys)
    assert_losses(report["losses"], expected(data))


def test_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(make_data(), tmp_path / "data.parquet")
    assert main(["evaluate", str(path), "--progress", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rows"] == N
    assert f"{N:,} rows" in captured.err


# -- bad input -----------------------------------------------------------------------


def fails(args: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> str:
    out = tmp_path / "result.json"
    code = main(["evaluate", *args, "--format", "json", "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert not out.exists()  # never a partial result
    assert captured.err.startswith("losskit evaluate: error: ")
    return captured.err


def test_missing_column_lists_the_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("data.csv", "data.parquet", "data.feather", "data.npy", "data.npz"):
        path = write(make_data(n=20), tmp_path / name)
        err = fails([str(path), "--y-pred", "prediction"], capsys, tmp_path)
        assert "column 'prediction' not found" in err
        for column in ("'y_true'", "'y_pred'", "'w'"):
            assert column in err


def test_non_numeric_value_names_file_and_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("y_true,y_pred\n1,2\n3,4\n5,oops\n7,8\n")
    err = fails([str(path)], capsys, tmp_path)
    assert "bad.csv, row 3 (line 4): column 'y_pred' has a non-numeric value 'oops'" in err
    table_path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"y_true": ["1", "2", "x"], "y_pred": [1.0, 2.0, 3.0]}), table_path)
    err = fails([str(table_path)], capsys, tmp_path)
    assert "bad.parquet, row 3: column 'y_true' has a non-numeric value 'x'" in err


def test_length_mismatch_names_file_and_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ragged = tmp_path / "ragged.parquet"
    pq.write_table(
        pa.table({"y_true": [[1.0, 2.0], [3.0, 4.0], [5.0]], "y_pred": [[1.0, 2.0]] * 3}), ragged
    )
    err = fails([str(ragged)], capsys, tmp_path)
    assert "ragged.parquet, row 3: length mismatch: column 'y_true' has 1 values" in err
    short = tmp_path / "short.npz"
    np.savez(short, y_true=np.ones(10), y_pred=np.ones(9))
    err = fails([str(short)], capsys, tmp_path)
    assert "short.npz, row 10: length mismatch" in err
    fields = tmp_path / "fields.csv"
    fields.write_text("y_true,y_pred\n1,2\n3\n")
    err = fails([str(fields)], capsys, tmp_path)
    assert "fields.csv, row 2 (line 3): 1 fields where the header has 2" in err
    widths = tmp_path / "widths.npz"
    np.savez(widths, y_true=np.ones((10, 2)), y_pred=np.ones((10, 3)))
    err = fails([str(widths), "--loss", "mse"], capsys, tmp_path)
    assert "widths.npz, rows 1-10: mean_squared_error" in err
    assert "same shape" in err


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("nan", "missing (null or NaN)"),
        ("", "missing (null or NaN)"),
        ("inf", "inf"),
        ("-inf", "-inf"),
    ],
)
def test_nan_and_infinite_values_fail_with_their_position(
    tmp_path: Path, value: str, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "holes.csv"
    path.write_text(f"y_true,y_pred\n1,2\n3,4\n5,{value}\n7,8\n")
    err = fails([str(path), "--batch-rows", "2"], capsys, tmp_path)
    assert f"holes.csv, row 3: column 'y_pred' is {what}" in err
    assert "--nan-policy omit" in err


def test_nan_policy_omit_skips_and_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data()
    bad = np.zeros(N, dtype=bool)
    bad[[5, 123, 999]] = True
    holes = {k: v.copy() for k, v in data.items()}
    holes["y_pred"][5, 0] = np.nan
    holes["y_true"][123, 0] = np.inf
    holes["w"][999] = np.nan
    path = write(holes, tmp_path / "holes.parquet")
    report = evaluate(str(path), "--sample-weight", "w", "--nan-policy", "omit", capsys=capsys)
    assert report["rows"] == N - 3
    assert report["skipped_rows"] == 3
    assert_losses(report["losses"], expected(data, weighted=True, rows=~bad))
    assert main(["evaluate", str(path), "--nan-policy", "omit"]) == 0
    assert "2 rows skipped" in capsys.readouterr().out  # the weight column is not read


def test_all_rows_skipped_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("y_true,y_pred\n1,nan\n")
    err = fails([str(path), "--nan-policy", "omit"], capsys, tmp_path)
    assert "No rows to evaluate (1 skipped" in err


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fails([str(tmp_path / "nothing.parquet")], capsys, tmp_path)
    assert "no such file or directory" in err
    for special in (os.devnull, str(tmp_path / "fifo.csv")):
        if special != os.devnull:
            os.mkfifo(special)
        err = fails([special], capsys, tmp_path)
        assert f"{special}: not a regular file or a directory" in err
    err = fails([str(tmp_path / "*.parquet")], capsys, tmp_path)
    assert "No file of a supported type" in err
    path = write(make_data(n=10), tmp_path / "data.parquet")
    err = fails([str(path), "--loss", "huber:dlta=2"], capsys, tmp_path)
    assert "Huber has no argument dlta; its arguments are: delta" in err
    err = fails([str(path), "--loss", "msee"], capsys, tmp_path)
    assert "Unknown loss 'msee'" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(path), "--format", "xml"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["evaluate", "--batch-rows", "0"])


def test_missing_optional_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    from losskit.cli import _deps

    real = importlib.import_module

    def no_pyarrow(name: str, package: str | None = None) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr(_deps.importlib, "import_module", no_pyarrow)
    assert main(["evaluate"]) == 1
    assert 'pip install "losskit[cli]"' in capsys.readouterr().err


def test_core_imports_without_the_cli_dependencies() -> None:
    code = textwrap.dedent(
        """
        import sys
        for name in ("pyarrow", "rich", "matplotlib", "dask", "distributed"):
            sys.modules[name] = None
        import losskit, losskit.streaming, losskit.cli, losskit.cli.evaluate
        from losskit.cli import main
        assert main(["evaluate"]) == 1
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert 'pip install "losskit[cli]"' in result.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Peak resident memory of a run over 16x more rows stays the same
    (within allocator and thread-stack noise, up to about 7 MB between runs
    here), far below the growth of the data (60 MB)."""
    script = textwrap.dedent(
        """
        import sys
        from losskit.cli import main
        code = main(["evaluate", sys.argv[1], "--batch-rows", "32768", "--jobs", "1",
                     "--format", "json", "--output", sys.argv[2]])
        # This process's peak resident memory (ru_maxrss would include the
        # parent's, inherited across fork and exec).
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        print(int(status.split()[0]) * 1024)
        """
    )
    peaks = []
    for n in (250_000, 4_000_000):
        rng = np.random.default_rng(0)
        path = tmp_path / f"rows{n}.parquet"
        y = rng.normal(size=n)
        pq.write_table(pa.table({"y_true": y, "y_pred": y + 1.0}), path, row_group_size=65536)
        result = subprocess.run(
            [sys.executable, "-c", script, str(path), str(tmp_path / "out.json")],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks.append(int(result.stdout.split()[-1]))
    data_growth = 3_750_000 * 2 * 8  # 60 MB more float64 data
    assert peaks[1] - peaks[0] < data_growth / 4, peaks


def test_cli_module_files_exist() -> None:
    assert (ROOT / "src" / "losskit" / "data" / "diabetes_predictions.csv").is_file()
    assert os.path.isfile(ROOT / "scripts" / "make_example_data.py")


@pytest.mark.parametrize("slow_row", [0, 128])
def test_parallel_error_is_the_first_batch_s(
    slow_row: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every batch fails; whichever thread fails first, the error reported is
    the first batch's, so a run gives the same message every time."""
    import threading

    from losskit.cli import engine

    first_failed = threading.Event()

    def failing_update(self: engine.Work, batch: Any) -> None:
        if batch.first_row == slow_row:
            first_failed.wait(timeout=5)  # let the other batch fail first
        else:
            first_failed.set()
        raise ValueError(f"bad batch at row {batch.first_row}")

    monkeypatch.setattr(engine.Work, "update", failing_update)
    path = write(make_data(n=256), tmp_path / "data.parquet")
    code = main(["evaluate", str(path), "--loss", "mse", "--batch-rows", "128", "--jobs", "2"])
    captured = capsys.readouterr()
    assert code == 1
    assert "bad batch at row 0" in captured.err
