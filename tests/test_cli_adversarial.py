"""``losskit evaluate`` against inputs an adversary would try: a CSV header
with a quoted line end, one file named twice, FIFOs and device links in a
searched directory, globs with many ``**``, and an output path that is an
input.  Each once gave a wrong number, a hang or lost data."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from losskit.cli import main, readers
from losskit.cli.output import current_umask
from tests.test_cli import make_data, write
from tests.test_cli_robustness import one_line_error, run


def mse(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, float]:
    """Rows and MSE of ``losskit evaluate ARGS --loss mse``."""
    code, out, err = run([*args, "--loss", "mse", "--format", "json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    return report["rows"], report["losses"]["mean_squared_error"]


# -- a CSV header is a record, not a line -------------------------------------------


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize(
    "header",
    [
        b'y_true,y_pred,"note\n100,0,x"\n',  # its second line looks like a row
        b'"y_true","y_pred","a\r\nb"\r\n',
        b'\xef\xbb\xbfy_true,y_pred,"x ""quoted"" name, with a comma\n"\n',
        b'y_true,y_pred,note"with quote\n',  # a quote inside an unquoted field is text
    ],
)
def test_header_with_line_ends_in_a_quoted_name(
    header: bytes, gzipped: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / ("data.csv.gz" if gzipped else "data.csv")
    end = b"\r\n" if b"\r\n" in header else b"\n"
    body = end.join([b"1,2,a", b"3,5,b"]) + end
    if gzipped:
        import gzip

        path.write_bytes(gzip.compress(header + body))
    else:
        path.write_bytes(header + body)
    assert mse([str(path)], capsys) == (2, 2.5)


@pytest.mark.parametrize("chunk", [8, 64, 1 << 20])
def test_header_bytes_at_any_chunk_size(
    chunk: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(readers, "CSV_CHUNK_BYTES", chunk)
    path = tmp_path / "data.csv"
    rows = "".join(f"{i},{i + 1}\n" for i in range(40))
    path.write_text('y_true,y_pred,"note\n100,200"\n' + rows.replace("\n", ",x\n"))
    assert mse([str(path)], capsys) == (40, 1.0)


@pytest.mark.parametrize(
    ("text", "length"),
    [
        (b"a,b\nc", 4),
        (b"a,b\r\nc", 5),
        (b"a,b\rc", 4),
        (b"a,b", 3),
        (b'"a\n,b"\nc', 7),
        (b'"a""\nb",c\nd', 10),
        (b'a"b,c\nd', 6),
        (b'"unclosed\na,b\n', 14),  # to the end: the file is all header
    ],
)
def test_header_length(text: bytes, length: int, tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(text)
    assert readers._csv_header(str(path))[1] == length


def test_header_longer_than_the_first_read(tmp_path: Path) -> None:
    names = ",".join(f'"column {i}\nsecond line"' for i in range(20_000))
    path = tmp_path / "wide.csv"
    path.write_text(names + "\n" + ",".join("1" * 20_000) + "\n")
    assert readers._csv_header(str(path))[1] == len(names) + 1


# -- each file once ---------------------------------------------------------------------


def test_one_file_under_several_spellings_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "d/sub").mkdir(parents=True)
    (tmp_path / "d/one.csv").write_text("y_true,y_pred\n0,1\n")
    (tmp_path / "d/sub/two.csv").write_text("y_true,y_pred\n0,3\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "d/one.csv")
    os.link(tmp_path / "d/sub/two.csv", tmp_path / "hard.csv")
    monkeypatch.chdir(tmp_path)
    spellings = ["d", "./d/one.csv", "d//one.csv", "d/./sub/../one.csv", "link.csv", "hard.csv"]
    assert mse(spellings, capsys) == (2, 5.0)
    code, out, err = run(["./d/one.csv", "d", "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["files"] == ["./d/one.csv", "d/sub/two.csv"]  # the first spelling


def test_directory_search_skips_fifos_and_device_links(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/a.csv").write_text("y_true,y_pred\n0,1\n0,2\n")
    os.mkfifo(tmp_path / "d/fifo.csv")  # opening it would wait for a writer
    (tmp_path / "d/zero.csv").symlink_to("/dev/zero")  # reading it would never end
    assert mse([str(tmp_path / "d")], capsys) == (2, 2.5)


def test_many_double_stars_take_linear_time(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["d"] * 25)
    deep.mkdir(parents=True)
    (deep / "x.csv").write_text("y_true,y_pred\n1,2\n")
    pattern = os.path.join(str(tmp_path), *["**"] * 8, "x.csv")
    start = time.process_time()
    assert readers.expand_glob(pattern) == [str(deep / "x.csv")]
    # 34 s of CPU before; a generous bound, as this is a correctness test
    assert time.process_time() - start < 5.0
    assert readers.expand_glob(os.path.join(str(tmp_path), *["**"] * 8, "nomatch.csv")) == []


# -- the output is never an input ------------------------------------------------------


def test_output_that_is_an_input_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(make_data(n=30), tmp_path / "data.csv")
    before = path.read_bytes()
    monkeypatch.chdir(tmp_path)
    for output in ("data.csv", "./data.csv", str(path)):
        one_line_error(
            ["data.csv", "--format", "csv", "--output", output], capsys, 1, "is the input file"
        )
        one_line_error([str(tmp_path), "--output", output], capsys, 1, "would replace the data")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["data.csv"]  # no temporary file left


def test_output_dash_is_standard_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(make_data(n=30), tmp_path / "data.csv")
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(path), "--format", "json", "--output", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 30
    assert np.isfinite(report["losses"]["mean_squared_error"])
    assert not (tmp_path / "-").exists()


# -- loss arguments, group keys, odd columns -------------------------------------------


def test_loss_arguments_may_be_lists_and_tuples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import losskit

    rng = np.random.default_rng(0)
    y_true, y_pred = np.eye(2)[rng.integers(0, 2, 50)], rng.dirichlet([1.0, 1.0], 50)
    lists = {
        name: pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), 2)
        for name, v in (("y_true", y_true), ("y_pred", y_pred))
    }
    path = tmp_path / "classes.parquet"
    pq.write_table(pa.table(lists), path)
    focal = "categorical_focal_crossentropy:alpha=[0.1,0.2],gamma=3.0"
    code, out, err = run([str(path), "--loss", f"{focal},mse", "--format", "json"], capsys)
    assert code == 0, err
    got = json.loads(out)["losses"]
    want = losskit.CategoricalFocalCrossentropy(alpha=[0.1, 0.2], gamma=3.0, dtype="float64")
    name = "categorical_focal_crossentropy(alpha=[0.1, 0.2], gamma=3.0)"
    assert list(got) == [name, "mean_squared_error"]
    np.testing.assert_allclose(got[name], float(want(y_true, y_pred)), rtol=1e-12)


@pytest.mark.parametrize("batch_rows", ["1", "2", "4"])
def test_boolean_group_keys_whatever_the_batches(
    batch_rows: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "g.parquet"
    table = pa.table(
        {"y_true": [0.0] * 4, "y_pred": [1.0, 2, 3, 4], "g": [True, False, True, None]}
    )
    pq.write_table(table, path, row_group_size=2)
    args = [str(path), "--group-by", "g", "--batch-rows", batch_rows, "--loss", "mse"]
    code, out, err = run([*args, "--format", "json"], capsys)
    assert code == 0, err
    groups = json.loads(out)["groups"]
    assert {k: v["rows"] for k, v in groups.items()} == {"True": 2, "False": 1, "null": 1}
    assert groups["True"]["losses"]["mean_squared_error"] == 5.0


def test_boolean_and_datetime_keys_of_npy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = np.zeros(3, [("y_true", "f8"), ("y_pred", "f8"), ("b", "?"), ("t", "M8[ns]")])
    records["y_pred"] = [1.0, 2.0, 3.0]
    records["b"] = [True, False, True]
    records["t"] = np.array(["2024-01-01T00:00:00.000000001", "2024-01-01", "NaT"], "M8[ns]")
    path = tmp_path / "keys.npy"
    np.save(path, records)
    rows = {}
    for column in ("b", "t"):
        code, out, err = run([str(path), "--group-by", column, "--format", "json"], capsys)
        assert code == 0, err
        rows[column] = {k: v["rows"] for k, v in json.loads(out)["groups"].items()}
    assert rows["b"] == {"False": 1, "True": 2}
    # a nanosecond apart: two groups (as integers they were 1704067200000000001, ...)
    assert rows["t"] == {
        "2024-01-01T00:00:00.000000001": 1,
        "2024-01-01T00:00:00.000000000": 1,
        "null": 1,
    }


def test_missing_csv_group_keys_are_one_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "g.csv"
    path.write_text(
        'y_true,y_pred,g\n1,2,\n1,3,NaN\n1,4,nan\n1,5,null\n1,6,"null"\n1,7,"NA"\n1,8,x\n'
    )
    code, out, err = run(
        [str(path), "--group-by", "g", "--loss", "mse", "--format", "json"], capsys
    )
    assert code == 0, err
    groups = json.loads(out)["groups"]
    # quoted or not, as in the numeric columns (and pandas)
    assert {k: v["rows"] for k, v in groups.items()} == {"null": 6, "x": 1}
    assert groups["null"]["losses"]["mean_squared_error"] == (1 + 4 + 9 + 16 + 25 + 36) / 6


def test_npy_field_of_higher_rank_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = np.zeros(5, [("y_true", "f8", (2, 3)), ("y_pred", "f8", (2, 3)), ("x", "f8", (2, 2))])
    np.save(tmp_path / "st.npy", records)
    one_line_error([str(tmp_path / "st.npy")], capsys, 1, "field 'y_true' has shape (2, 3)")
    # an unused field of any shape is fine
    flat = np.zeros(5, [("y_true", "f8", (3,)), ("y_pred", "f8", (3,)), ("x", "f8", (2, 2))])
    np.save(tmp_path / "flat.npy", flat)
    assert mse([str(tmp_path / "flat.npy")], capsys) == (5, 0.0)


def test_empty_lists_and_one_value_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = pa.array([[], []], pa.list_(pa.float64()))
    pq.write_table(pa.table({"y_true": empty, "y_pred": empty}), tmp_path / "empty.parquet")
    err = one_line_error([str(tmp_path / "empty.parquet")], capsys, 1, "row 1")
    assert "column 'y_true' holds empty lists (0 values per row)" in err
    np.savez(tmp_path / "empty.npz", y_true=np.zeros((3, 0)), y_pred=np.zeros((3, 0)))
    one_line_error([str(tmp_path / "empty.npz")], capsys, 1, "holds empty lists")
    weights = pa.array([[1.0], [3.0]])
    table = pa.table({"y_true": [1.0, 2.0], "y_pred": [1.5, 2.0], "w": weights})
    pq.write_table(table, tmp_path / "w.parquet")
    assert mse([str(tmp_path / "w.parquet"), "--sample-weight", "w"], capsys) == (2, 0.125)


def test_batch_rows_beyond_any_memory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(make_data(n=20), tmp_path / "data.parquet")
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(path), "--batch-rows", "99999999999999999999"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--batch-rows: expected at most 2**40" in err
    assert "Traceback" not in err
    assert mse([str(path), "--batch-rows", str(2**40)], capsys)[0] == 20


def test_feather_version_1_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "v1.feather"
    # a Feather v1 file begins and ends with FEA1; the reader must not take
    # its bytes for metadata sizes
    path.write_bytes(b"FEA1" + bytes(60) + b"FEA1")
    one_line_error([str(path)], capsys, 1, "v1.feather: a Feather version 1 file")
    from tests.test_cli_stdin import pipe

    pipe(monkeypatch, path.read_bytes())
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    one_line_error(["-"], capsys, 1, "<stdin>: a Feather version 1 file")


def test_numbers_python_reads_but_pyarrow_does_not_are_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "us.csv"
    path.write_text("y_true,y_pred\n1,2\n1_000,3\n4, 5\n6,7\n8,1_0\n")
    err = one_line_error([str(path)], capsys, 1)
    assert "us.csv, row 2 (line 3): column 'y_true' has a non-numeric value '1_000'" in err
    assert "1 more problem: row 5 (line 6): column 'y_pred' has a non-numeric value '1_0'" in err
    assert "row 3" not in err  # pyarrow reads " 5", as Python does


@pytest.mark.parametrize("gzipped", [False, True])
def test_blank_lines_before_the_header_and_a_header_alone(
    gzipped: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import gzip

    def csv_file(name: str, text: bytes) -> str:
        path = tmp_path / (name + (".csv.gz" if gzipped else ".csv"))
        path.write_bytes(gzip.compress(text) if gzipped else text)
        return str(path)

    # pyarrow skips blank lines; the header is the first record after them
    assert mse([csv_file("blank", b"\n\r\ny_true,y_pred\n1,2\n3,5\n")], capsys) == (2, 2.5)
    err = one_line_error([csv_file("bad", b"\n\ny_true,y_pred\n1,2\n3,x\n")], capsys, 1)
    assert "row 2 (line 5): column 'y_pred' has a non-numeric value 'x'" in err
    for alone in (b"y_true,y_pred", b"y_true,y_pred\n", b"\ny_true,y_pred\r\n"):
        err = one_line_error([csv_file("alone", alone)], capsys, 1)
        assert err == "losskit evaluate: error: No rows to evaluate.\n"


def test_dictionary_encoded_numbers_and_lists_of_decimals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    categorical = pa.array([1.0, 2.0, 1.0]).dictionary_encode()  # pandas' float categorical
    amounts = [[decimal.Decimal(v)] for v in ("1.5", "2", "3")]
    table = pa.table(
        {"y_true": categorical, "y_pred": pa.array(amounts, pa.list_(pa.decimal128(5, 2)))}
    )
    pq.write_table(table, tmp_path / "d.parquet")
    rows, value = mse([str(tmp_path / "d.parquet")], capsys)
    assert rows == 3
    assert value == pytest.approx((0.25 + 0.0 + 4.0) / 3, rel=1e-15)


@pytest.mark.parametrize(
    "text",
    [
        b"\xef\xbb\xbf\ny_true,y_pred\n1,2\n3,5\n",  # a BOM, then a blank line
        b'\xef\xbb\xbf"y_true","y_pred"\r\n1,2\r\n3,5\r\n',
    ],
)
def test_header_after_a_byte_order_mark(
    text: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(text)
    assert mse([str(path)], capsys) == (2, 2.5)


def test_a_path_with_glob_characters_that_exists_is_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "results[1].csv").write_text("y_true,y_pred\n0,1\n")
    (tmp_path / "q?.csv").write_text("y_true,y_pred\n0,2\n")
    (tmp_path / "qa.csv").write_text("y_true,y_pred\n0,4\n")
    assert mse([str(tmp_path / "results[1].csv")], capsys) == (1, 1.0)
    assert mse([str(tmp_path / "q?.csv")], capsys) == (1, 4.0)  # not qa.csv as well
    assert mse([str(tmp_path / "q[a].csv")], capsys) == (1, 16.0)  # a pattern: no such file


# -- what is shown: labels as text, outputs that fail --------------------------------


def test_markup_and_control_characters_in_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rich.csv"
    path.write_text('y_true,y_pred,g\n0,1,[/]\n0,2,[bold red]b\n0,3,"a\x1b[2Jb"\n')
    code, out, err = run([str(path), "--group-by", "g", "--loss", "mse:name='[/x]'"], capsys)
    assert code == 0, err
    assert "[/]" in out  # "[/]" raised rich's MarkupError
    assert "[bold red]b" in out  # was styled
    assert "[/x]" in out
    assert "\x1b" not in out  # an escape sequence that cleared the screen
    assert '"a\\u001b[2Jb"' in out


def test_dollar_signs_are_drawn_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from losskit.cli import plot

    path = tmp_path / "d.csv"
    path.write_text("y_true,y_pred,g\n0,1,$x^$\n0,2,b\n0,3,$5 or $6\n")
    figure = tmp_path / "d.png"
    args = [str(path), "--group-by", "g", "--loss", "mse", "--plot", str(figure)]
    code, _, err = run(args, capsys)
    assert code == 0, err  # "$x^$" raised matplotlib's ParseSyntaxException
    assert figure.stat().st_size > 0
    assert plot._literal("$5 or $6") == r"\$5 or \$6"
    assert plot._literal("a\nb") == r'"a\nb"'


def test_plot_histograms_per_group_are_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from losskit.cli.histogram import HISTOGRAM_GROUPS, ResidualHistogram

    histogram = ResidualHistogram()
    y = np.zeros((100, 1))
    histogram.update(y, y + 1.0, np.arange(100) % 10)
    assert histogram.per_group
    assert sorted(histogram.counts) == list(range(10))
    histogram.update(y, y + 2.0, np.arange(100) + 10)  # 110 groups in all
    assert not histogram.per_group
    assert histogram.counts == {}  # 2403 counts per group were kept for 10^6 groups
    histogram.update(y, y, np.arange(100))
    assert histogram.total().sum() == 300
    merged = ResidualHistogram()
    merged.update(y, y, np.zeros(100))
    assert merged.merge(histogram).total().sum() == 400
    assert not merged.per_group
    many = tmp_path / "many.csv"
    rows = "".join(f"0,{i % 7},k{i}\n" for i in range(HISTOGRAM_GROUPS + 1))
    many.write_text("y_true,y_pred,g\n" + rows)
    code, _, err = run([str(many), "--group-by", "g", "--plot", str(tmp_path / "m.png")], capsys)
    assert code == 0, err


@pytest.mark.parametrize(
    ("plot", "message"),
    [
        ("adir.png", "it is a directory"),
        (".png", "give a file name ending in"),
        ("result.svg", "is also the --output file"),
    ],
)
def test_plot_targets_that_fail_before_reading(
    plot: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "adir.png").mkdir()
    data = write(make_data(n=20), tmp_path / "data.csv")
    args = [str(data), "--plot", str(tmp_path / plot), "--output", str(tmp_path / "result.svg")]
    one_line_error(args, capsys, 1, message)


@pytest.mark.parametrize("name", ["rows", "scope", "group"])
def test_loss_named_as_an_output_column(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write(make_data(n=20), tmp_path / "data.csv")
    one_line_error([str(data), "--loss", f"mse:name='{name}'"], capsys, 1, "give it another name")


def test_standard_output_full_or_closed(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = write(make_data(n=20), tmp_path / "data.csv")
    command = [sys.executable, "-m", "losskit", "evaluate", str(data), "--loss", "mse"]
    with open("/dev/full", "w") as full:
        result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 1
    assert result.stderr.endswith(
        "losskit evaluate: error: cannot write the result to standard output: "
        "No space left on device.\n"
    )
    assert "Traceback" not in result.stderr
    # standard output closed by the shell (a preexec_fn would fork this
    # multithreaded process)
    shell = ["sh", "-c", 'exec "$0" "$@" >&-', *command]
    closed = subprocess.run(shell, stderr=subprocess.PIPE, text=True, check=False)
    assert closed.returncode == 1
    assert closed.stderr.endswith("standard output is closed.\n")


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_header_quote_left_open(
    gzipped: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import gzip

    monkeypatch.setattr(readers, "CSV_HEADER_LIMIT", 1 << 18)
    text = b'"y_true,y_pred\n' + b"0.5,0.25\n" * 100_000  # 0.9 MB after the open quote
    path = tmp_path / ("open.csv.gz" if gzipped else "open.csv")
    path.write_bytes(gzip.compress(text) if gzipped else text)
    err = one_line_error([str(path)], capsys, 1, "does not end in the first 262,144 bytes")
    assert len(err) < 300  # the whole file was one column name, quoted in a 110 MB line


def test_many_columns_are_listed_briefly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(5000)) + "," + "x" * 1000 + "\n1\n")
    err = one_line_error([str(path)], capsys, 1, "'c0', 'c1'", "... (5,001 columns)")
    assert "'c49', ..." in err
    assert len(err) < 1000


@pytest.mark.parametrize("name", ["data.csv", "data.csv.gz", "data.parquet", "data.feather"])
def test_file_names_that_are_not_utf8(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(make_data(n=40), tmp_path / name)
    odd = tmp_path / os.fsdecode(b"lat\xe9-" + name.encode())  # Latin-1 bytes in the name
    try:
        os.rename(path, odd)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system takes only UTF-8 names")
    want = mse([str(tmp_path)], capsys)  # found by the directory walk
    assert want[0] == 40
    assert mse([str(odd)], capsys) == want  # "cannot read it: 'utf-8' codec can't encode"


@pytest.mark.parametrize("end", [b"\r", b"\r\n", b"\n"])
def test_csv_chunks_with_any_line_end(
    end: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(readers, "CSV_CHUNK_BYTES", 64)
    rows = [b"y_true,y_pred"] + [f"{i},{i + 2}".encode() for i in range(500)]
    path = tmp_path / "ends.csv"
    path.write_bytes(end.join(rows) + end)
    chunks = list(readers._line_chunks(str(path), 64, start=len(rows[0] + end)))
    assert max(len(c) for c in chunks) < 200  # CR alone: one chunk of the whole file
    assert mse([str(path)], capsys) == (500, 4.0)


@pytest.mark.parametrize("extra_groups", [0, 12])  # a column per group; a line per group
def test_table_labels_that_would_be_taken_for_others(
    extra_groups: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ["0,1,all", "0,3, ", "0,4,x"] + [f"0,1,k{i}" for i in range(extra_groups)]
    path = tmp_path / "labels.csv"
    path.write_text("y_true,y_pred,g\n" + "\n".join(lines) + "\n")
    code, out, err = run([str(path), "--group-by", "g", "--loss", "mse"], capsys)
    assert code == 0, err
    assert '"all"' in out  # a group named all: not the column of all rows
    assert '" "' in out  # a blank label: not an empty cell
    assert " x " in out or "\nx " in out


def test_long_labels_are_cut_in_the_plot() -> None:
    from losskit.cli import plot

    assert plot._literal("x" * 200_000) == "x" * 37 + "..."  # drawn whole: 24 s
    assert plot._literal("short") == "short"


def test_text_numbers_in_parquet_read_as_in_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = pa.array([" 2", "1", "NA", "", " 3 "])  # CSV reads " 2" and takes NA, "" as missing
    pq.write_table(pa.table({"y_true": texts, "y_pred": [1.0] * 5}), tmp_path / "t.parquet")
    err = one_line_error(
        [str(tmp_path / "t.parquet")], capsys, 1, "row 3: column 'y_true' is missing"
    )
    assert "non-numeric" not in err
    rows, value = mse([str(tmp_path / "t.parquet"), "--nan-policy", "omit"], capsys)
    assert (rows, value) == (3, pytest.approx(5 / 3, rel=1e-15))


# -- the figure is never an input, nor the result, and appears only on success -------


def test_plot_that_is_an_input_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plot through a symbolic or a hard link to the data, or onto the file
    on standard input, turned the data into a PNG (exit 0)."""
    path = write(make_data(n=30), tmp_path / "data.csv")
    before = path.read_bytes()
    (tmp_path / "soft.png").symlink_to(path)
    os.link(path, tmp_path / "hard.png")
    for figure in ("soft.png", "hard.png"):
        one_line_error(
            [str(path), "--plot", str(tmp_path / figure)], capsys, 1, "--plot", "is the input file"
        )
    with (tmp_path / "hard.png").open("rb") as source:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(source))
        one_line_error(
            ["-", "--plot", str(tmp_path / "hard.png")], capsys, 1, "is the file on standard input"
        )
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["data.csv", "hard.png", "soft.png"]


def test_plot_and_output_through_a_link_are_one_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One of the two results silently replaced the other (exit 0)."""
    path = write(make_data(n=30), tmp_path / "data.csv")
    (tmp_path / "out.json").write_text("{}")
    (tmp_path / "p.png").symlink_to(tmp_path / "out.json")
    (tmp_path / "new.png").symlink_to(tmp_path / "missing.json")  # to a file not yet made
    for plot, output in (("p.png", "out.json"), ("new.png", "missing.json")):
        args = [str(path), "--plot", str(tmp_path / plot), "--output", str(tmp_path / output)]
        one_line_error(args, capsys, 1, "is also the --output file")
    assert (tmp_path / "out.json").read_text() == "{}"


def test_a_failed_run_writes_no_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The figure was written before the result, so a run whose result could
    not be written (exit 1) left it behind; now both are written together."""
    path = write(make_data(n=30), tmp_path / "data.csv")
    figure = tmp_path / "figure.png"
    args = [str(path), "--loss", "mse", "--plot", str(figure), "--output", "/dev/full"]
    one_line_error(args, capsys, 1, "No space left on device")
    assert not figure.exists()
    assert sorted(os.listdir(tmp_path)) == ["data.csv"]  # no temporary file left
    code, _, err = run(
        [str(path), "--plot", str(figure), "--output", str(tmp_path / "r.csv")], capsys
    )
    assert code == 0, err
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert oct(figure.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def test_a_figure_under_a_file_says_it_is_not_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(make_data(n=30), tmp_path / "data.csv")
    one_line_error([str(path), "--plot", str(path / "x.png")], capsys, 1, "is not a directory")


def test_a_figure_that_cannot_be_prepared_leaves_no_result_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plot through a link into a missing directory failed after the
    --output temporary file was made, and left it there."""
    path = write(make_data(n=30), tmp_path / "data.csv")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "missing" / "x.png")
    args = [str(path), "--output", str(tmp_path / "out.json"), "--plot"]
    one_line_error([*args, str(tmp_path / "dangling.png")], capsys, 1, "does not exist")
    one_line_error([*args, ""], capsys, 1, "--plot ''")
    assert sorted(os.listdir(tmp_path)) == ["dangling.png", "data.csv"]
