"""CSV files are parsed in chunks cut at line ends (readers._chunked_csv):
every row is read once, whatever the chunk size, line ends and lengths."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from losskit.cli import main, readers


def score(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict, str]:
    code = main(["evaluate", str(path), "--loss", "mse,mae", "--format", "json", *extra])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else {}), captured.err


def expected(rows: list[tuple[float, float]]) -> tuple[float, float]:
    t, p = np.array(rows).T
    return float(np.mean((p - t) ** 2)), float(np.mean(np.abs(p - t)))


def random_rows(count: int, seed: int) -> list[tuple[float, float]]:
    """(y_true, y_pred) pairs of six decimals."""
    rng = np.random.default_rng(seed)
    return [(float(a), float(b)) for a, b in rng.normal(size=(count, 2)).round(6)]


def assert_scored(report: dict, rows: list[tuple[float, float]]) -> None:
    """The report counts every row once and has their MSE and MAE."""
    assert report["rows"] == len(rows)
    mse, mae = expected(rows)
    assert report["losses"]["mean_squared_error"] == pytest.approx(mse, rel=1e-12)
    assert report["losses"]["mean_absolute_error"] == pytest.approx(mae, rel=1e-12)


@pytest.mark.parametrize("chunk_bytes", [8, 17, 64, 1 << 20])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("trailing_newline", [True, False])
@pytest.mark.parametrize("bom", [False, True])
def test_every_row_once_whatever_the_chunks(
    chunk_bytes: int,
    newline: str,
    trailing_newline: bool,
    bom: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readers, "CSV_CHUNK_BYTES", chunk_bytes)
    rows = random_rows(50, seed=chunk_bytes)
    lines = ["note,y_true,y_pred"] + [f"n{i},{t!r},{p!r}" for i, (t, p) in enumerate(rows)]
    lines.insert(20, "")  # a blank line is no row
    text = newline.join(lines) + (newline if trailing_newline else "")
    path = tmp_path / "data.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    code, report, err = score(path, capsys)
    assert code == 0, err
    assert_scored(report, rows)


def test_a_line_longer_than_a_chunk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "CSV_CHUNK_BYTES", 1 << 10)
    long_note = "x" * (3 << 20)  # longer than a chunk and than pyarrow's 1 MiB block
    path = tmp_path / "data.csv"
    path.write_text(f"y_true,y_pred,note\n1,2,a\n3,5,{long_note}\n5,8,b\n")
    code, report, err = score(path, capsys)
    assert code == 0, err
    assert report["rows"] == 3
    assert report["losses"]["mean_squared_error"] == pytest.approx((1 + 4 + 9) / 3)


def test_a_bad_value_in_a_later_chunk_is_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "CSV_CHUNK_BYTES", 32)
    lines = ["y_true,y_pred"] + [f"{i},{i + 1}" for i in range(40)]
    lines[31] = "30,oops"
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = score(path, capsys)
    assert code == 1
    assert "row 31 (line 32): column 'y_pred' has a non-numeric value 'oops'" in err


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 64])
@pytest.mark.parametrize(
    "data",
    [b"", b"\n", b"a\n", b"a", b"ab\ncd\n", b"ab\ncd", b"\n\n\nx\n", b"0123456789abcdef\nx\ny\n"],
)
def test_line_chunks_cover_the_file_once_each_ending_at_a_line_end(
    tmp_path: Path, size: int, data: bytes
) -> None:
    """Pieces read once, seeking back over each partial line (and doubling
    the read for a line longer than a piece): together the file's bytes, in
    order, none empty, each but the last ending with a line end."""
    path = tmp_path / "lines.csv"
    path.write_bytes(data)
    pieces = [bytes(piece) for piece in readers._line_chunks(str(path), size)]
    assert b"".join(pieces) == data
    assert all(pieces)
    assert all(piece.endswith(b"\n") for piece in pieces[:-1])
    if data.endswith(b"\n") and pieces:
        assert pieces[-1].endswith(b"\n")


def quoted_notes_file(path: Path, rows: list[tuple[float, float]], every: int = 7) -> None:
    """Notes of two lines in quotes, one in ``every`` shaped like a row of
    its own: cut at its line end, it was counted as one (100, 200), and where
    all were, without an error (93 rows instead of 60, MSE 3549 instead of
    1.59, with 8-byte chunks)."""
    lines = ["y_true,y_pred,note"]
    for i, (t, p) in enumerate(rows):
        row_shaped = i % every == every // 2
        note = '"x\n100,200,y"' if row_shaped else f'"first line\nsecond, ""line"" {i}"'
        lines.append(f"{t!r},{p!r},{note}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("chunk_bytes", [8, 17, 64, 100, 1 << 20])
@pytest.mark.parametrize("every", [7, 1])
def test_line_ends_inside_quoted_values_are_not_record_ends(
    chunk_bytes: int,
    every: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readers, "CSV_CHUNK_BYTES", chunk_bytes)
    rows = random_rows(60, seed=chunk_bytes)
    path = tmp_path / "notes.csv"
    quoted_notes_file(path, rows, every)
    code, report, err = score(path, capsys, "--batch-rows", "4")
    assert code == 0, err
    assert_scored(report, rows)


def test_a_compressed_file_with_line_ends_inside_quoted_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = random_rows(40_000, seed=5)
    plain = tmp_path / "notes.csv"
    quoted_notes_file(plain, rows)
    path = tmp_path / "notes.csv.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    # batches of 10^4 rows: pyarrow's blocks of 1 MiB, about a third of the file
    code, report, err = score(path, capsys, "--batch-rows", "10000")
    assert code == 0, err
    assert report["rows"] == len(rows)
    assert report["losses"]["mean_squared_error"] == pytest.approx(expected(rows)[0], rel=1e-12)


def test_quotes_in_the_middle_of_a_field_are_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quote inside an unquoted field opens nothing (pyarrow's rule): the
    rows after it, quoted notes of two lines included, are read as pyarrow
    reads the whole file."""
    monkeypatch.setattr(readers, "CSV_CHUNK_BYTES", 16)
    path = tmp_path / "names.csv"
    path.write_text('y_true,y_pred,name\n1,2,O"Brien\n3,5,"two\nlines"\n5,8,x\n7,11,"a\n9,13,b"\n')
    code, report, err = score(path, capsys)
    assert code == 0, err
    assert report["rows"] == 4
    assert report["losses"]["mean_squared_error"] == pytest.approx((1 + 4 + 9 + 16) / 4)


def test_a_quoted_header_keeps_the_parallel_chunks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow writes the header quoted; only quotes in the data send the
    rest of a file to the (one-threaded) streaming reader."""
    streamed: list[int] = []
    original = readers._streamed_csv

    def spy(*args: Any, **kwargs: Any) -> Any:
        streamed.append(args[4] if len(args) > 4 else 0)
        return original(*args, **kwargs)

    monkeypatch.setattr(readers, "_streamed_csv", spy)
    monkeypatch.setattr(readers, "CSV_CHUNK_BYTES", 32)
    lines = ['"y_true","y_pred"'] + [f"{i},{i + 1}" for i in range(30)]
    path = tmp_path / "header.csv"
    path.write_text("\n".join(lines) + "\n")
    code, report, err = score(path, capsys)
    assert code == 0, err
    assert (report["rows"], streamed) == (30, [])
    lines[20] = '"19","20"'
    path.write_text("\n".join(lines) + "\n")
    code, report, err = score(path, capsys)
    assert code == 0, err
    assert report["rows"] == 30
    assert report["losses"]["mean_squared_error"] == pytest.approx(1.0)
    assert len(streamed) == 1
    assert 0 < streamed[0] < path.stat().st_size
