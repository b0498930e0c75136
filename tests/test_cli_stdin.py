"""``losskit evaluate -``: data piped into the command, in any supported
format, gives what the same file gives, and its errors name ``<stdin>``."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from losskit.cli import main
from losskit.cli.standard_input import extension_of

from .test_cli import FORMATS, make_data, write

ARGS = ["--sample-weight", "w", "--group-by", "g", "--format", "json"]


def pipe(monkeypatch: pytest.MonkeyPatch, data: bytes, terminal: bool = False) -> None:
    """Make ``data`` the process's standard input."""
    stream = io.TextIOWrapper(io.BytesIO(data))
    monkeypatch.setattr(stream, "isatty", lambda: terminal)
    monkeypatch.setattr(sys, "stdin", stream)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the copies of standard input go (emptied again by each run)."""
    directory = tmp_path / "spool"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_piped_equals_the_file(
    name: str,
    tmp_path: Path,
    spool: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write(make_data(n=300), tmp_path / name)
    code, out, err = run([str(path), *ARGS], capsys)
    assert code == 0, err
    from_file = json.loads(out)
    pipe(monkeypatch, path.read_bytes())
    code, out, err = run(["-", *ARGS], capsys)
    assert code == 0, err
    piped = json.loads(out)
    assert piped["files"] == ["<stdin>"]
    for key in ("losses", "rows", "groups"):
        assert piped[key] == from_file[key]
    assert list(spool.iterdir()) == []  # the copy is removed


def test_stdin_beside_files(
    tmp_path: Path, spool: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write(make_data(n=50, seed=1), tmp_path / "first.parquet")
    second = write(make_data(n=70, seed=2), tmp_path / "second.csv")
    code, out, err = run([str(first), str(second), "--format", "json"], capsys)
    assert code == 0, err
    both: dict[str, Any] = json.loads(out)
    pipe(monkeypatch, second.read_bytes())
    code, out, err = run([str(first), "-", "--format", "json"], capsys)
    assert code == 0, err
    piped = json.loads(out)
    assert piped["files"] == [str(first), "<stdin>"]
    assert piped["rows"] == 120
    assert piped["losses"] == both["losses"]


def test_errors_name_stdin_not_the_copy(
    spool: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe(monkeypatch, b"y_true,y_pred\n1,2\n3,oops\n")
    code, out, err = run(["-"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "losskit evaluate: error: <stdin>, row 2 (line 3): "
        "column 'y_pred' has a non-numeric value 'oops'.\n"
    )
    pipe(monkeypatch, b"a,b\n1,2\n")
    code, out, err = run(["-"], capsys)
    assert code == 1
    assert err.startswith("losskit evaluate: error: <stdin>: columns 'y_true', 'y_pred' not found")
    assert str(spool) not in err
    assert list(spool.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "data", "terminal", "message"),
    [
        (["-"], b"", False, "'-': standard input is empty; pipe a file into it."),
        (["-", "-"], b"y_true,y_pred\n1,2\n", False, "is given more than once"),
        (["-"], b"", True, "standard input, which is a terminal"),
        (
            ["-", "--scheduler", "tcp://127.0.0.1:9"],
            b"y_true,y_pred\n1,2\n",
            False,
            "the workers of --scheduler cannot read",
        ),
    ],
)
def test_stdin_that_cannot_be_read(
    args: list[str],
    data: bytes,
    terminal: bool,
    message: str,
    spool: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipe(monkeypatch, data, terminal=terminal)
    code, out, err = run(args, capsys)
    assert (code, out) == (1, "")
    assert err.startswith("losskit evaluate: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_formats_by_first_bytes() -> None:
    assert extension_of(b"PAR1\x15\x04") == ".parquet"
    assert extension_of(b"ARROW1\x00\x00") == ".arrow"
    assert extension_of(b"\xff\xff\xff\xff\x10\x01") == ".arrow"
    assert extension_of(b"\x93NUMPY\x01\x00") == ".npy"
    assert extension_of(b"PK\x03\x04\x14\x00") == ".npz"
    assert extension_of(b"\x1f\x8b\x08\x00") == ".csv.gz"
    assert extension_of(b"y_true,y") == ".csv"
    assert extension_of(b"\xef\xbb\xbfy_true") == ".csv"


def test_a_real_pipe(tmp_path: Path) -> None:
    path = write(make_data(n=200), tmp_path / "data.csv.gz")
    command = [sys.executable, "-m", "losskit", "evaluate", "--format", "csv", "--loss", "mse"]
    with path.open("rb") as source:
        piped = subprocess.run([*command, "-"], stdin=source, capture_output=True, check=False)
    direct = subprocess.run([*command, str(path)], capture_output=True, check=False)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == direct.stdout
    assert piped.stderr == direct.stderr == b""


def test_stdin_redirected_from_an_input_or_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(make_data(n=40), tmp_path / "data.csv")
    before = path.read_bytes()
    with path.open("rb") as source:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(source))
        # `losskit evaluate - --output data.csv < data.csv` replaced the data
        code, out, err = run(["-", "--output", str(path)], capsys)
        assert (code, out) == (1, "")
        assert "is the file on standard input" in err
        assert path.read_bytes() == before
        # `losskit evaluate data.csv - < data.csv` read it twice
        code, out, err = run([str(path), "-", "--format", "json"], capsys)
        assert code == 0, err
        assert json.loads(out)["rows"] == 40


def test_a_csv_that_starts_like_parquet(
    spool: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe(monkeypatch, b"PAR1,y_true,y_pred\n0,1,2\n0,3,5\n")  # PAR1: a gene
    code, out, err = run(["-", "--loss", "mse", "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["losses"] == {"mean_squared_error": 2.5}


def test_a_bad_loss_fails_before_stdin_is_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe(monkeypatch, b"y_true,y_pred\n1,2\n")
    code, _, err = run(["-", "--loss", "bogus"], capsys)
    assert code == 1
    assert "Unknown loss 'bogus'" in err
    assert sys.stdin.buffer.tell() == 0  # not read: a slow pipe is not waited for


def test_closed_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    code, _, err = run(["-"], capsys)
    assert code == 1
    assert err == (
        "losskit evaluate: error: '-' reads the data from standard input, which is closed.\n"
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_terminated_while_copying_leaves_nothing(signum: int, tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "losskit", "evaluate", "-"]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=False
    )
    assert process.stdin is not None
    process.stdin.write(b"y_true,y_pred\n" + b"1,2\n" * 1000)
    process.stdin.flush()
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("losskit-stdin-*/stdin")):  # copying, waiting for more
        assert time.monotonic() < deadline, "the copy never started"
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum
    name = signal.Signals(signum).name
    assert err.decode().endswith(f"losskit evaluate: terminated ({name})\n")
    assert list(tmp_path.iterdir()) == []  # the copy is removed (it stayed, 3 GB)
