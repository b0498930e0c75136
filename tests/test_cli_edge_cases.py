"""``losskit evaluate`` on awkward group keys, list columns that change width,
schedulers that are not Dask schedulers and glob patterns through symbolic
links (issue 12): a right answer or one line on standard error, never a
wrong number, a traceback or a hang."""

from __future__ import annotations

import csv
import http.server
import io
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from losskit.cli import main


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit status, standard output and standard error of ``losskit evaluate``."""
    code = main(["evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_bounded(
    args: list[str], capsys: pytest.CaptureFixture[str], limit: float = 30.0
) -> tuple[int, str, str]:
    """:func:`run` on a thread: a run that hangs fails the test after
    ``limit`` seconds instead of hanging it (the thread is left behind)."""
    result: list[tuple[int, str, str]] = []
    thread = threading.Thread(target=lambda: result.append(run(args, capsys)), daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"losskit evaluate {' '.join(args)} still runs after {limit:g} s")
    return result[0]


def one_line_error(
    args: list[str], capsys: pytest.CaptureFixture[str], *names: str, limit: float = 30.0
) -> str:
    """Run, and check the failure is one line naming each of ``names``."""
    code, out, err = run_bounded(args, capsys, limit)
    assert code == 1, err
    assert out == ""
    assert err.startswith("losskit evaluate: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for name in names:
        assert name in err, err
    return err


def test_no_loss_applies_says_each_reason_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seven regression losses refusing the same shapes: one reason, naming
    all seven (it was the same sentence seven times, once under Huber's
    function name)."""
    path = tmp_path / "shapes.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [1.0, 2.0], "c": [3.0, 4.0]}), path)
    err = one_line_error(
        [str(path), "--y-true", "a", "--y-pred", "b,c"],
        capsys,
        "None of the losses applies to these columns: mean_squared_error, mean_absolute_error, "
        "mean_absolute_percentage_error, mean_squared_logarithmic_error, cosine_similarity, "
        "huber_loss, log_cosh: `y_true` and `y_pred` must have the same shape",
    )
    assert err.count("must have the same shape") == 1


# -- group keys: NaN, null and the text "null" ---------------------------------------


def test_float_key_with_nan_and_null_keeps_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.parquet"
    key = pa.array([1.0, float("nan"), None, 1.0], type=pa.float64())
    pq.write_table(pa.table({"y_true": [0.0] * 4, "y_pred": [1.0, 2.0, 3.0, 4.0], "k": key}), path)
    code, out, err = run(
        [str(path), "--group-by", "k", "--loss", "mse", "--format", "json"], capsys
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["rows"] == 4
    assert report["losses"]["mean_squared_error"] == pytest.approx(7.5)  # (1+4+9+16)/4
    groups = report["groups"]
    assert sum(g["rows"] for g in groups.values()) == 4
    assert groups["1"] == {"losses": {"mean_squared_error": pytest.approx(8.5)}, "rows": 2}
    assert groups["null"] == {"losses": {"mean_squared_error": pytest.approx(6.5)}, "rows": 2}


def _null_and_text_null(tmp_path: Path) -> Path:
    path = tmp_path / "keys.parquet"
    key = pa.array(["null", None, "a", "null"], type=pa.string())
    pq.write_table(pa.table({"y_true": [0.0] * 4, "y_pred": [1.0, 2.0, 3.0, 4.0], "k": key}), path)
    return path


def test_text_null_and_a_missing_key_are_two_groups_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _null_and_text_null(tmp_path)
    code, out, err = run(
        [str(path), "--group-by", "k", "--loss", "mse", "--format", "json"], capsys
    )
    assert code == 0, err
    groups = json.loads(out)["groups"]
    assert sorted(groups) == ['"null"', "a", "null"]
    assert groups["null"]["rows"] == 1  # the missing key
    assert groups["null"]["losses"]["mean_squared_error"] == pytest.approx(4.0)
    assert groups['"null"']["rows"] == 2  # the text
    assert groups['"null"']["losses"]["mean_squared_error"] == pytest.approx(8.5)


def test_text_null_and_a_missing_key_are_two_groups_in_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _null_and_text_null(tmp_path)
    code, out, err = run([str(path), "--group-by", "k", "--loss", "mse", "--format", "csv"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    groups = {r["group"]: int(r["rows"]) for r in rows if r["scope"] == "group"}
    assert groups == {'"null"': 2, "a": 1, "null": 1}
    code, out, err = run([str(path), "--group-by", "k", "--loss", "mse"], capsys)
    assert code == 0, err
    assert '"null"' in out


# -- list columns whose width changes ------------------------------------------------


def _changing_width(tmp_path: Path) -> Path:
    """Lists of 2 values in the first row group, of 3 in the second."""
    path = tmp_path / "widths.parquet"
    y_true = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    y_pred = [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0, 3.0], [4.0, 4.0, 4.0]]
    pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred}), path, row_group_size=2)
    return path


def test_list_width_changing_within_a_batch_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row groups smaller than a batch are read together: one batch, so the
    error names the row where the width changes."""
    path = _changing_width(tmp_path)
    for jobs in ("1", "3"):
        one_line_error(
            [str(path), "--loss", "mse", "--batch-rows", "1000", "--jobs", jobs],
            capsys,
            "widths.parquet, row 3: length mismatch: column 'y_true' has 3 values in this "
            "row and 2 in earlier rows.",
        )


@pytest.mark.parametrize("batch_rows", ["1", "2", "3"])
def test_list_width_changing_between_row_groups_is_an_error(
    tmp_path: Path, batch_rows: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _changing_width(tmp_path)
    for jobs in ("1", "3"):
        err = one_line_error(
            [str(path), "--loss", "mse", "--batch-rows", batch_rows, "--jobs", jobs],
            capsys,
            "same number of values",
        )
        # the first rows of one width, and the first rows of the other that
        # met them (which depends on the threads)
        assert re.search(
            r"widths\.parquet, rows \d+-\d+: column 'y_true' has ([23]) values per row, "
            r"but (?!\1)[23] in \S*widths\.parquet, rows \d+-\d+;",
            err,
        ), err


def test_small_row_groups_are_read_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file of many small row groups is read in batches of --batch-rows
    rows, not a batch per group (20,000 groups of 10 rows took 4.9 s, now
    0.45 s), with the same numbers and row numbers in errors."""
    from losskit.cli import readers

    rng = np.random.default_rng(4)
    y_true, y_pred = rng.normal(size=(2, 5000))
    small, whole = tmp_path / "small.parquet", tmp_path / "whole.parquet"
    pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred}), small, row_group_size=7)
    pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred}), whole)
    piece = readers._plan_parquet(str(small), readers.ColumnSpec(("y_true",), ("y_pred",)), 1000)
    columns = readers.ColumnSpec(("y_true",), ("y_pred",))
    batches = [b for p in piece for b, _ in readers._raw_parquet(p, columns, 1000)]
    sizes = [len(b["y_true"]) for b in batches]
    # whole groups of 7 up to 1000 rows a batch, within each piece of the plan
    assert (sum(sizes), len(sizes), max(sizes)) == (5000, 6, 996)
    results = []
    for path in (small, whole):
        code, out, err = run([str(path), "--loss", "mse,mae", "--format", "json"], capsys)
        assert code == 0, err
        results.append(json.loads(out)["losses"])
    assert results[0] == results[1]
    with_null = pa.table(
        {"y_true": y_true, "y_pred": pa.array([*y_pred[:4321], None, *y_pred[4322:]])}
    )
    pq.write_table(with_null, small, row_group_size=7)
    one_line_error(
        [str(small), "--loss", "mse", "--batch-rows", "1000"],
        capsys,
        "small.parquet, row 4322: column 'y_pred' is missing",
    )


@pytest.mark.parametrize("kind", ["file", "stream"])
def test_small_ipc_record_batches_are_read_together(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same for Arrow IPC files and streams of many small record batches
    (20,000 of 10 rows: 5.4 s as a file, 3.1 s as a stream; now 0.46 s)."""
    from losskit.cli import readers

    rng = np.random.default_rng(5)
    y_true, y_pred = rng.normal(size=(2, 5000))
    table = pa.table({"y_true": y_true, "y_pred": y_pred, "note": ["n"] * 5000})
    path = tmp_path / "small.arrow"
    open_writer = pa.ipc.new_file if kind == "file" else pa.ipc.new_stream
    with pa.OSFile(str(path), "wb") as sink, open_writer(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=7):
            writer.write_batch(batch)
    columns = readers.ColumnSpec(("y_true",), ("y_pred",))
    pieces = readers.plan([str(path)], columns, 1000)
    batches = [b for p in pieces for b, _ in readers._raw_arrow(p, columns, 1000)]
    sizes = [len(b["y_true"]) for b in batches]
    assert sum(sizes) == 5000
    assert max(sizes) <= 1000
    assert len(sizes) == 6  # 994-row runs of 7-row batches (a file's pieces end runs too)
    assert set(batches[0]) == {"y_true", "y_pred"}
    code, out, err = run([str(path), "--loss", "mse", "--format", "json"], capsys)
    assert code == 0, err
    expected = float(np.mean((table["y_pred"].to_numpy() - table["y_true"].to_numpy()) ** 2))
    assert json.loads(out)["losses"]["mean_squared_error"] == pytest.approx(expected, rel=1e-12)


def test_list_width_changing_between_files_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two = tmp_path / "a.parquet"
    three = tmp_path / "b.parquet"
    pq.write_table(pa.table({"y_true": [[0.0, 0.0]], "y_pred": [[1.0, 1.0]]}), two)
    pq.write_table(pa.table({"y_true": [[0.0] * 3], "y_pred": [[1.0] * 3]}), three)
    one_line_error(
        [str(two), str(three), "--loss", "mse", "--jobs", "1"],
        capsys,
        "b.parquet, rows 1-1: column 'y_true' has 3 values per row, but 2 in ",
        "a.parquet, rows 1-1",
    )


def test_list_width_changing_is_an_error_on_dask(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    distributed = pytest.importorskip("distributed")
    path = _changing_width(tmp_path)
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        for batch_rows in ("1", "2", "1000"):
            expected = (
                ("widths.parquet, row 3: length mismatch",)  # one batch (see above)
                if batch_rows == "1000"
                else ("widths.parquet, rows ", "values per row, but")
            )
            one_line_error(
                [
                    str(path),
                    "--loss",
                    "mse",
                    "--batch-rows",
                    batch_rows,
                    "--scheduler",
                    cluster.scheduler_address,
                ],
                capsys,
                *expected,
            )


# -- --scheduler at something that is not a Dask scheduler ---------------------------


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello\n")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A TCP socket on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in accepted:
            connection.close()
        server.close()


@pytest.fixture
def web_server() -> Iterator[int]:
    """An HTTP server on 127.0.0.1; yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _bounded_scheduler_error(scheduler: str, data: Path, capsys: pytest.CaptureFixture[str]) -> str:
    start = time.monotonic()
    err = one_line_error(
        [str(data), "--loss", "mse", "--scheduler", scheduler], capsys, f"--scheduler {scheduler!r}"
    )
    assert time.monotonic() - start < 15, "it should give up within a few seconds"
    return err


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"y_true": [0.0, 1.0], "y_pred": [1.0, 1.0]}), path)
    return path


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    from losskit.cli import dask_engine

    monkeypatch.setattr(dask_engine, "CONNECT_TIMEOUT", 1.0)


@pytest.mark.usefixtures("short_timeout")
@pytest.mark.parametrize("scheme", ["", "tcp://"])
def test_scheduler_that_never_answers(
    silent_listener: str, scheme: str, small_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _bounded_scheduler_error(scheme + silent_listener, small_file, capsys)
    assert "no answer from a Dask scheduler within 1 s" in err


@pytest.mark.usefixtures("short_timeout")
@pytest.mark.parametrize("scheme", ["", "tcp://"])
def test_scheduler_that_is_a_web_server(
    web_server: int, scheme: str, small_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _bounded_scheduler_error(f"{scheme}127.0.0.1:{web_server}", small_file, capsys)


@pytest.mark.usefixtures("short_timeout")
@pytest.mark.parametrize("address", ["bogus", "http://127.0.0.1:{port}", "tcp://", "tcp://:x"])
def test_malformed_scheduler_address(
    web_server: int, address: str, small_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _bounded_scheduler_error(address.format(port=web_server), small_file, capsys)
    assert "not a Dask scheduler address" in err


def test_scheduler_that_is_a_scheduler_still_works(
    small_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, processes=False, dashboard_address=None, protocol="tcp", host="127.0.0.1"
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        args = [str(small_file), "--loss", "mse", "--format", "json"]
        code, out, err = run([*args, "--scheduler", cluster.scheduler_address], capsys)
    assert code == 0, err
    assert json.loads(out)["losses"]["mean_squared_error"] == pytest.approx(0.5)


# -- ``**`` through symbolic links -----------------------------------------------------


def test_double_star_does_not_follow_a_symlink_loop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for part in ("a", "a/b", "a/b/c", "d"):
        (tmp_path / part).mkdir()
    rows = {"a/one.parquet": 1.0, "a/b/c/two.parquet": 3.0, "d/three.parquet": 5.0}
    for name, value in rows.items():
        pq.write_table(pa.table({"y_true": [0.0], "y_pred": [value]}), tmp_path / name)
    (tmp_path / "a/b/c/up").symlink_to("../..")  # a loop: a/b/c/up/b/c/up/...
    (tmp_path / "a/b/root").symlink_to(tmp_path)  # another, to the top
    (tmp_path / "a/b/to_d").symlink_to(tmp_path / "d")  # a linked directory: not followed
    monkeypatch.chdir(tmp_path)
    for pattern in ("**/*.parquet", str(tmp_path / "**" / "*.parquet"), "a/**"):
        code, out, err = run_bounded([pattern, "--loss", "mae", "--format", "json"], capsys)
        assert code == 0, err
        report = json.loads(out)
        names = sorted(os.path.relpath(f, tmp_path) for f in report["files"])
        if pattern == "a/**":
            assert names == ["a/b/c/two.parquet", "a/one.parquet"]
            continue
        assert names == ["a/b/c/two.parquet", "a/one.parquet", "d/three.parquet"]
        assert report["rows"] == 3
        assert report["losses"]["mean_absolute_error"] == pytest.approx(3.0)


@pytest.mark.parametrize("batch_rows", ["1", "2", "1000"])
def test_null_lists_are_missing_whatever_the_batch(
    tmp_path: Path, batch_rows: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "holes.parquet"
    y_true = [[0.0, 0.0], None, [0.0, 0.0]]
    y_pred = [[1.0, 1.0], None, [3.0, 3.0]]
    pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred}), path)
    args = [str(path), "--loss", "mae", "--batch-rows", batch_rows]
    one_line_error(args, capsys, "holes.parquet, row 2: column 'y_true' is missing")
    code, out, err = run([*args, "--nan-policy", "omit", "--format", "json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert (report["rows"], report["skipped_rows"]) == (2, 1)
    assert report["losses"]["mean_absolute_error"] == pytest.approx(2.0)
