"""``losskit evaluate`` against inputs an adversary would try: a CSV header
with a quoted line end, one file named twice, FIFOs and device links in a
searched directory, globs with many ``**``, and an output path that is an
input.  Each once gave a wrong number, a hang or lost data."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from losskit.cli import main, readers
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
    assert readers._csv_header_bytes(str(path)) == length


def test_header_longer_than_the_first_read(tmp_path: Path) -> None:
    names = ",".join(f'"column {i}\nsecond line"' for i in range(20_000))
    path = tmp_path / "wide.csv"
    path.write_text(names + "\n" + ",".join("1" * 20_000) + "\n")
    assert readers._csv_header_bytes(str(path)) == len(names) + 1


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
