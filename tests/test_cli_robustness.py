"""``losskit evaluate`` on malformed command lines, awkward output paths and
damaged input files (issue 11): each problem gives one line on standard
error that names the argument or the file, never a traceback."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import losskit
from losskit.cli import main, readers
from losskit.cli.output import prepare_output
from tests.test_cli import make_data, write

# -- helpers --------------------------------------------------------------------------


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit status, standard output and standard error of ``losskit evaluate``."""
    code = main(["evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(
    args: list[str], capsys: pytest.CaptureFixture[str], code: int = 1, *names: str
) -> str:
    """Run, and check the failure is one line naming each of ``names``."""
    got, out, err = run(args, capsys)
    assert got == code, err
    assert out == ""
    assert err.startswith("losskit evaluate: error: "), err
    assert err.count("\n") == 1, err
    assert err.endswith("\n"), err
    assert "Traceback" not in err
    assert "unexpected error" not in err
    for name in names:
        assert name in err, err
    return err


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    return write(make_data(n=50), tmp_path / "data.parquet")


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


# -- 1. --loss ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["mse,,huber", "mse,", ",mse", "", " , ", "huber:"])
def test_empty_loss_item_is_a_usage_error(
    data_file: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_error([str(data_file), "--loss", value], capsys, 2, "--loss", repr(value))


def test_empty_loss_item_names_its_position(
    data_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = one_line_error([str(data_file), "--loss", "mse,,huber"], capsys, 2)
    assert "item 2 of 3 is empty" in err


@pytest.mark.parametrize("name", ["Loss", "LossFunctionWrapper"])
def test_base_classes_are_not_losses_on_the_command_line(
    data_file: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = one_line_error([str(data_file), "--loss", name], capsys, 1, "--loss", name)
    assert "base class" in err
    assert "cannot be used from the command line" in err


def test_unknown_loss_does_not_list_base_classes(
    data_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = one_line_error([str(data_file), "--loss", "msee"], capsys, 1, "Unknown loss 'msee'")
    known = err.split("Known names: ")[1].split(";")[0].split(", ")
    assert "mse" in known
    assert "Huber" in known
    assert "Loss" not in known
    assert "LossFunctionWrapper" not in known


# -- 2. --output is checked before the input is read -----------------------------------


def test_missing_output_directory_fails_before_reading(
    data_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the input was read before --output was checked")

    monkeypatch.setattr(readers, "find_files", no_reading)
    monkeypatch.setattr(readers, "plan", no_reading)
    target = str(tmp_path / "missing" / "scores.json")
    err = one_line_error(
        [str(data_file), "--output", target], capsys, 1, f"--output {target!r}", "does not exist"
    )
    assert ".losskit" not in err  # not the temporary file


def test_plot_in_a_missing_directory_fails_before_reading(
    data_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the input was read before --plot was checked")

    monkeypatch.setattr(readers, "plan", no_reading)
    target = str(tmp_path / "missing" / "plot.png")
    one_line_error([str(data_file), "--plot", target], capsys, 1, f"--plot {target!r}")


def test_output_that_is_a_directory_fails_at_once(
    data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_error([str(data_file), "--output", str(tmp_path)], capsys, 1, "is a directory")


def test_failed_run_leaves_no_temporary_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "scores.json"
    out.parent.mkdir()
    one_line_error([str(tmp_path / "nothing.csv"), "--output", str(out)], capsys)
    assert list(out.parent.iterdir()) == []


# -- 3. --output writes into what the path names ----------------------------------------


def test_output_to_a_fifo_writes_into_it(
    data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as stream:
            received.append(stream.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    code, out, err = run([str(data_file), "--format", "json", "--output", str(fifo)], capsys)
    thread.join(timeout=30)
    assert code == 0, err
    assert out == ""
    assert json.loads(received[0])["rows"] == 50
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.parquet", "results.fifo"]


def test_output_to_dev_null(data_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # First check, without writing, that /dev/null would be written directly:
    # a regression that replaced it would, run as root, leave a regular file.
    target = prepare_output("/dev/null")
    direct = target.temporary is None
    target.close()
    assert direct
    before = os.stat("/dev/null")
    code, out, err = run([str(data_file), "--output", "/dev/null"], capsys)
    assert code == 0, err
    assert out == ""
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert after.st_ino == before.st_ino


def test_output_through_a_symlink_writes_its_target(
    data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "real" / "scores.csv"
    target.parent.mkdir()
    target.write_text("old contents, longer than nothing\n" * 50)
    link = tmp_path / "scores.csv"
    link.symlink_to(target)
    code, _, err = run([str(data_file), "--format", "csv", "--output", str(link)], capsys)
    assert code == 0, err
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    rows = list(csv.reader(io.StringIO(target.read_text())))
    assert rows[0][0] == "rows"
    assert rows[1][0] == "50"
    assert len(rows) == 2
    assert sorted(p.name for p in target.parent.iterdir()) == ["scores.csv"]


@pytest.mark.parametrize("mask", [0o022, 0o077])
@pytest.mark.parametrize("exists", [False, True])
def test_output_file_mode_follows_the_umask(
    data_file: Path,
    tmp_path: Path,
    mask: int,
    exists: bool,
    umask: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "scores.json"
    if exists:
        out.write_text("{}")
        out.chmod(0o600)
    os.umask(mask)
    code, _, err = run([str(data_file), "--format", "json", "--output", str(out)], capsys)
    assert code == 0, err
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~mask
    assert json.loads(out.read_text())["rows"] == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.parquet", "scores.json"]


# -- 4. damaged files ---------------------------------------------------------------------


def flip(path: Path, start: int, count: int = 16) -> None:
    raw = bytearray(path.read_bytes())
    for i in range(start, start + count):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_truncated_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(make_data(n=200), tmp_path / "data.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    one_line_error([str(path)], capsys, 1, str(path))


@pytest.mark.parametrize("compressed", [False, True])
def test_corrupt_npz(tmp_path: Path, compressed: bool, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.npz"
    data = make_data(n=2000)
    save = np.savez_compressed if compressed else np.savez
    save(path, y_true=data["y_true"][:, 0], y_pred=data["y_pred"][:, 0])
    flip(path, path.stat().st_size // 4)
    one_line_error([str(path)], capsys, 1, str(path))


def test_npz_member_shorter_than_its_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    path = tmp_path / "short.npz"
    good = io.BytesIO()
    np.save(good, np.arange(100.0))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("y_true.npy", good.getvalue())
        archive.writestr("y_pred.npy", good.getvalue()[:-80])  # 10 rows missing
    err = one_line_error([str(path)], capsys, 1, str(path), "y_pred")
    assert "truncated" in err


def test_csv_field_longer_than_the_csv_module_allows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.csv"
    long_note = "x" * (2 << 20)
    path.write_text(f"y_true,y_pred,note\n1,2,short\n3,4,{long_note}\n5,7,z\n")
    code, out, err = run([str(path), "--loss", "mse", "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["losses"]["mean_squared_error"] == pytest.approx(2.0)
    # A bad value after the long field is located, not a csv module error.
    path.write_text(f"y_true,y_pred,note\n1,2,short\n3,4,{long_note}\n5,oops,z\n")
    err = one_line_error([str(path), "--batch-rows", "10"], capsys, 1, str(path))
    assert "row 3 (line 4): column 'y_pred' has a non-numeric value 'oops'" in err
    assert csv.field_size_limit() == 128 * 1024  # left as it was


def test_bit_flipped_parquet_page_with_checksums(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data.parquet"
    y = np.random.default_rng(0).normal(size=1000)
    pq.write_table(pa.table({"y_true": y, "y_pred": y + 1}), path, write_page_checksum=True)
    flip(path, path.stat().st_size // 2)
    err = one_line_error([str(path)], capsys, 1, str(path))
    assert "checksum" in err.lower()


def test_bit_flipped_parquet_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Compressed pages without checksums: damage shows as a decoding error."""
    path = tmp_path / "data.parquet"
    y = np.round(np.random.default_rng(0).normal(size=1000), 1)
    pq.write_table(pa.table({"y_true": y, "y_pred": y + 1}), path)
    flip(path, path.stat().st_size // 2)
    one_line_error([str(path)], capsys, 1, str(path))


@pytest.mark.parametrize("where", [0.1, 0.3, 0.5, 0.7, 0.9, 0.97])
def test_damaged_parquet_anywhere_never_gives_a_traceback(
    tmp_path: Path, where: float, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data.parquet"
    y = np.round(np.random.default_rng(0).normal(size=1000), 1)
    pq.write_table(pa.table({"y_true": y, "y_pred": y + 1}), path, row_group_size=300)
    flip(path, int(path.stat().st_size * where))
    code, out, err = run([str(path), "--format", "json"], capsys)
    if code != 0:  # damage to values alone cannot be seen without checksums
        assert code == 1
        assert out == ""
        assert err.count("\n") == 1, err
        assert str(path) in err, err
        assert "unexpected" not in err, err


# -- 5. .npy headers promising more data than the file holds -------------------------------


def npy_claiming(path: Path, shape: tuple[int, ...], dtype: str = "<f8", body: int = 64) -> Path:
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    path.write_bytes(stream.getvalue() + b"\0" * body)
    return path


@pytest.mark.parametrize("shape", [(10**18,), (10**18, 2), (5, 10**17), (9,)])
def test_npy_header_promising_too_much_fails_before_reading(
    tmp_path: Path, shape: tuple[int, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    path = npy_claiming(tmp_path / "huge.npy", shape)  # 64 bytes = 8 float64s
    assert path.stat().st_size < 200
    err = one_line_error([str(path), "--y-true", "0", "--y-pred", "0"], capsys, 1, str(path))
    assert "truncated or its header is damaged" in err


def test_npz_member_header_promising_too_much(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    fake = tmp_path / "fake.npy"
    npy_claiming(fake, (10**18,))
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(fake, "y_true.npy")
        archive.write(fake, "y_pred.npy")
    one_line_error([str(path)], capsys, 1, str(path), "truncated or its header is damaged")


def test_npy_header_that_fits_still_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "small.npy"
    np.save(path, np.stack([np.arange(8.0), np.arange(8.0) + 1], axis=1))
    code, out, err = run([str(path), "--y-true", "0", "--y-pred", "1", "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["rows"] == 8


# -- 6. loss names in the output -----------------------------------------------------------


def test_loss_with_arguments_is_named_by_them(
    data_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_data(n=50)
    code, out, err = run(
        [
            str(data_file),
            "--loss",
            "huber,huber:delta=2.0,tversky:beta=0.3,alpha=0.7",
            "--format",
            "json",
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads(out)
    names = ["huber_loss", "huber_loss(delta=2.0)", "tversky(alpha=0.7, beta=0.3)"]
    assert list(report["losses"]) == names
    assert list(report["reduction"]) == names
    y_true, y_pred = data["y_true"], data["y_pred"]
    for name, loss in zip(
        names,
        [
            losskit.Huber(dtype="float64"),
            losskit.Huber(delta=2.0, dtype="float64"),
            losskit.Tversky(alpha=0.7, beta=0.3, dtype="float64"),
        ],
        strict=True,
    ):
        np.testing.assert_allclose(report["losses"][name], float(loss(y_true, y_pred)), rtol=1e-10)


def test_loss_names_in_csv_output(data_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        [str(data_file), "--loss", "huber,huber:delta=2.0", "--format", "csv"], capsys
    )
    assert code == 0, err
    header = next(csv.reader(io.StringIO(out)))
    assert header == ["rows", "huber_loss", "huber_loss(delta=2.0)"]


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("huber:delta=2.0", ["huber_loss(delta=2.0)"]),
        ("huber:delta=2", ["huber_loss(delta=2.0)"]),
        ("huber:delta=1.0", ["huber_loss"]),  # the default: Keras's plain name
        ("huber,Huber,huber:delta=1", ["huber_loss"]),  # one loss, given three ways
        ("huber:delta=2.0,huber:delta=2", ["huber_loss(delta=2.0)"]),
        ("huber:delta=2,huber:name='robust'", ["huber_loss(delta=2.0)", "robust"]),
        ("regression,huber:delta=3", None),
    ],
)
def test_default_arguments_keep_the_keras_name(
    data_file: Path, spec: str, names: list[str] | None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run([str(data_file), "--loss", spec, "--format", "json"], capsys)
    assert code == 0, err
    got = list(json.loads(out)["losses"])
    if names is None:
        assert "huber_loss" in got
        assert got[-1] == "huber_loss(delta=3.0)"
    else:
        assert got == names


def test_running_out_of_memory_is_one_line_with_advice(
    data_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A MemoryError (too wide a list column, too many groups for this machine)
    is the input's size, not a bug: one line saying what to lower, no traceback."""
    from losskit.cli import evaluate

    def exhausted(options: object) -> int:
        raise MemoryError("Unable to allocate 74.5 GiB for an array")

    monkeypatch.setattr(evaluate, "main", exhausted)
    err = one_line_error([str(data_file)], capsys, 1, "out of memory", "74.5 GiB", "--batch-rows")
    assert "unexpected" not in err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--sample-weight", ""], "--sample-weight ''"),
        (["--sample-weight", "  "], "--sample-weight '  '"),
        (["--group-by", ""], "--group-by ''"),
        (["--scheduler", ""], "--scheduler ''"),
        (["--y-true", "y_true,,y_true"], "an empty column name"),
        (["--y-pred", "y_pred,"], "an empty column name"),
        (["--y-true", " "], "--y-true ' ': give a column name"),
    ],
)
def test_empty_option_values_are_usage_errors(
    args: list[str], named: str, data_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty --sample-weight ran unweighted while the report named the
    weights ''; an empty --group-by gave a traceback; an empty --scheduler
    ran locally; empty items of a column list were dropped."""
    one_line_error([str(data_file), "--loss", "mse", *args], capsys, 2, named)
