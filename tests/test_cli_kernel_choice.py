"""When ``losskit evaluate`` runs the losses on the Numba kernels and when on
NumPy (:func:`losskit.cli.engine.kernels_pay_off`), and the switch behind it
(:func:`losskit.kernels.declined`): either way the same numbers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import losskit
from losskit import kernels
from losskit.cli import engine, readers
from losskit.cli.engine import Plan, Work, kernels_pay_off
from losskit.registry import LOSSES

pytestmark = pytest.mark.skipif(not kernels.available(), reason="needs Numba")

REGRESSION = tuple(info.cls(dtype="float64") for info in LOSSES if info.family == "regression")
MSE = (losskit.losses.MeanSquaredError(dtype="float64"),)
COLUMNS = readers.ColumnSpec(("y_true",), ("y_pred",))


def plan(rows: int | None, losses: tuple[Any, ...] = MSE, group_by: str | None = None) -> Plan:
    fmt = "csv" if rows is None else "parquet"
    piece = readers.Piece("data." + fmt, fmt, 0, 1, 0, rows, nbytes=36 * 10**8)
    columns = readers.ColumnSpec(("y_true",), ("y_pred",), group_by=group_by)
    return Plan((piece,), columns, losses, batch_rows=1 << 20)


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Numba's whole start-up still to pay (0.5 s), whatever this test
    process has loaded already."""
    monkeypatch.setattr(engine, "_numba_start_up", lambda: 0.5)


@pytest.mark.usefixtures("fresh_process")
@pytest.mark.parametrize(
    ("rows", "losses", "expected"),
    [
        (10**6, MSE, False),  # saves 2 ms
        (10**8, MSE, False),  # 0.2 s: less than the start-up
        (3 * 10**8, MSE, True),  # 0.6 s
        (10**7, REGRESSION, False),  # 7 losses: 0.4 s
        (2 * 10**7, REGRESSION, True),  # 0.8 s
        (5 * 10**7, REGRESSION[:2], False),  # MSE and MAE: 0.25 s
    ],
)
def test_kernels_when_they_save_more_than_numba_costs(
    rows: int, losses: tuple[Any, ...], expected: bool
) -> None:
    assert kernels_pay_off(plan(rows, losses)) is expected


@pytest.mark.usefixtures("fresh_process")
def test_text_without_a_sample_is_estimated_from_its_size() -> None:
    # (no such file to sample) 3.6e9 bytes over 2 numeric columns: 2.25e8
    # values at most; MSE saves 0.45 s, the 7 regression losses 9 s
    assert plan(None).pieces[0].rows is None
    assert kernels_pay_off(plan(None, MSE)) is False
    assert kernels_pay_off(plan(None, REGRESSION)) is True


def csv_piece(path: Path, text: bytes, nbytes: int | None = None) -> readers.Piece:
    path.write_bytes(text)
    return readers.Piece(str(path), "csv", 0, 0, 0, None, nbytes or len(text))


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        (b"", 0),
        (b"y_true,y_pred", 0),
        (b"y_true,y_pred\n", 0),
        (b"y_true,y_pred\n1,2", 1),
        (b"y_true,y_pred\n1,2\n3,4\n", 2),
        (b"y_true,y_pred\r\n1,2\r\n3,4\r\n5,6", 3),
    ],
)
def test_a_csv_file_within_the_sample_is_counted(tmp_path: Path, text: bytes, rows: int) -> None:
    assert readers.estimated_csv_rows(csv_piece(tmp_path / "small.csv", text)) == rows


def test_a_larger_csv_file_is_estimated_from_its_first_lines(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = [f"{a!r},{b!r}\n".encode() for a, b in rng.normal(size=(40_000, 2)).tolist()]
    text = b"y_true,y_pred\n" + b"".join(lines)
    assert len(text) > 3 * readers.TEXT_SAMPLE_BYTES
    estimate = readers.estimated_csv_rows(csv_piece(tmp_path / "large.csv", text))
    assert estimate is not None
    assert abs(estimate - 40_000) < 40_000 * 0.02


def test_csv_rows_not_estimated_where_the_sample_says_nothing(tmp_path: Path) -> None:
    no_line_end = csv_piece(tmp_path / "one_line.csv", b"x" * readers.TEXT_SAMPLE_BYTES * 2)
    header_only = csv_piece(tmp_path / "header.csv", b"h" * readers.TEXT_SAMPLE_BYTES + b"\n1\n")
    compressed = csv_piece(tmp_path / "data.csv.gz", b"y_true,y_pred\n1,2\n")
    missing = readers.Piece(str(tmp_path / "missing.csv"), "csv", 0, 0, 0, None, 100)
    for piece in (no_line_end, header_only, compressed, missing):
        assert readers.estimated_csv_rows(piece) is None, piece.path


@pytest.mark.usefixtures("fresh_process")
def test_csv_rows_come_from_the_line_lengths(tmp_path: Path) -> None:
    # Lines of two 17-digit floats (about 40 bytes): 4*10^8 bytes are about
    # 10^7 rows, where the seven losses on NumPy beat Numba's start-up; the
    # bound of 8 bytes a value counted 2.5*10^7 rows and chose Numba.
    rng = np.random.default_rng(1)
    lines = [f"{a:.17f},{b:.17f}\n".encode() for a, b in rng.uniform(size=(20_000, 2)).tolist()]
    text = b"y_true,y_pred\n" + b"".join(lines)
    piece = csv_piece(tmp_path / "data.csv", text, nbytes=4 * 10**8)
    line_length = (len(text) - 14) / 20_000
    csv_plan = Plan((piece,), COLUMNS, REGRESSION, batch_rows=1 << 20)
    assert engine._estimated_rows(csv_plan) == pytest.approx(4 * 10**8 / line_length, rel=0.02)
    assert kernels_pay_off(csv_plan) is False
    assert kernels_pay_off(replace(csv_plan, pieces=(replace(piece, nbytes=10**9),))) is True


@pytest.mark.usefixtures("fresh_process")
@pytest.mark.parametrize(
    ("rows", "losses", "expected"),
    [
        (10**5, REGRESSION, False),  # 7 losses: 4 ms of values, 19 ms of group sums
        (4 * 10**6, MSE, False),  # 8 ms of values, 0.11 s of group sums at most
        (4 * 10**6, REGRESSION, True),  # 0.16 s of values, 0.76 s of group sums
        (2 * 10**7, MSE, True),  # 0.04 s and 0.54 s
    ],
)
def test_grouped_runs_count_their_group_sums(
    rows: int, losses: tuple[Any, ...], expected: bool
) -> None:
    assert kernels_pay_off(plan(rows, losses, group_by="g")) is expected


@pytest.mark.usefixtures("fresh_process")
def test_losses_without_kernels_never_pay_for_numba() -> None:
    class Halved(losskit.losses.Loss):
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return (y_pred - y_true) / 2

    assert kernels_pay_off(plan(10**10, (Halved(),))) is False


def test_no_numba_means_no_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "_NUMBA", False)
    assert kernels_pay_off(plan(10**10, REGRESSION, group_by="g")) is False


def test_the_reference_backend_means_no_kernels() -> None:
    assert kernels_pay_off(plan(10**10, REGRESSION)) is True
    with losskit.prefer_backend("reference"):
        assert kernels_pay_off(plan(10**10, REGRESSION)) is False


def test_a_process_that_loaded_them_uses_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_numba_start_up", lambda: 0.0)
    assert kernels_pay_off(plan(10**5, MSE)) is True


def batch(rows: int, seed: int = 0) -> readers.Batch:
    rng = np.random.default_rng(seed)
    y_true = rng.uniform(0.5, 10.0, size=(rows, 1))
    y_pred = y_true * np.exp(rng.normal(0.0, 0.3, size=(rows, 1)))
    return readers.Batch("data.parquet", 0, y_true, y_pred, None, None, None, nbytes=16 * rows)


def test_declined_work_gives_the_kernels_numbers_without_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = [batch(1 << 16, seed) for seed in range(3)]
    with_kernels = Work.empty(Plan((), COLUMNS, REGRESSION, 1 << 16))
    for b in data:
        with_kernels.update(b)

    def refuse(*args: Any) -> Any:
        raise AssertionError("a kernel ran inside kernels.declined()")

    monkeypatch.setattr(kernels, "_fused_call", refuse)
    monkeypatch.setattr(kernels, "_regression_pass", refuse)
    declined = Work.empty(Plan((), COLUMNS, REGRESSION, 1 << 16, use_kernels=False))
    for b in data:
        declined.update(b)
    got = declined.accumulator.result()
    want = with_kernels.accumulator.result()
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-12), name
    assert declined.rows == with_kernels.rows == 3 << 16


def test_declined_group_sums_are_numpys_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    from losskit import streaming

    rng = np.random.default_rng(3)
    rows = np.sort(rng.choice(50_000, streaming._KERNEL_MIN_ROWS * 4, replace=False))
    values = rng.normal(size=(rows.size, 3)) * 10.0 ** rng.integers(-8, 8, size=(rows.size, 3))
    compiled, plain = streaming._Sums(3, (2,)), streaming._Sums(3, (2,))
    for sums in (compiled, plain):
        sums.grow(50_000)
    for _ in range(3):
        compiled.add(rows, values)
    monkeypatch.setattr(streaming, "_compensated_add_kernel", lambda: 1 / 0)
    with kernels.declined():
        for _ in range(3):
            plain.add(rows, values)
    np.testing.assert_array_equal(plain.value, compiled.value)
    np.testing.assert_array_equal(plain.compensation, compiled.compensation)


def test_declined_is_for_this_thread_only() -> None:
    x = np.zeros((kernels.MIN_ELEMENTS, 1))
    mse = losskit.losses.MeanSquaredError(dtype="float64")
    seen: list[Any] = []
    with kernels.declined():
        assert kernels.fused_call(mse, x, x + 1, None, None) is None
        assert kernels.regression_sums([mse, mse], x, x + 1, None) is None
        other = threading.Thread(
            target=lambda: seen.append(kernels.fused_call(mse, x, x, None, None)),
        )
        other.start()
        other.join()
    assert seen == [0.0]  # the other thread's call took the kernel
    assert kernels.fused_call(mse, x, x + 1, None, None) == 1.0


def run_fresh(path: Path, setup: str = "", *options: str) -> str:
    """``losskit evaluate --loss mse`` in a fresh process; prints whether
    Numba was imported."""
    code = textwrap.dedent(
        f"""
        import sys
        from losskit.cli import engine, main
        {setup}
        arguments = ["evaluate", "--loss", "mse", "--no-progress", "--format", "json", *{options!r}]
        status = main([*arguments, {str(path)!r}])
        print("NUMBA", "numba" in sys.modules, status)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout


def test_a_small_file_is_scored_without_importing_numba(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    b = batch(1 << 17)  # four times MIN_ELEMENTS: used to import Numba
    pq.write_table(pa.table({"y_true": b.y_true[:, 0], "y_pred": b.y_pred[:, 0]}), path)
    assert "NUMBA False 0" in run_fresh(path)
    forced = 'engine._NUMPY_EXTRA_NS["MeanSquaredError"] = 10**9'
    assert "NUMBA True 0" in run_fresh(path, forced)


def test_uses_kernels_tells_what_run_will_choose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from losskit.cli import evaluate

    path = tmp_path / "data.parquet"
    b = batch(1 << 12)
    pq.write_table(pa.table({"y_true": b.y_true[:, 0], "y_pred": b.y_pred[:, 0]}), path)
    chosen: list[bool] = []
    monkeypatch.setattr(
        evaluate, "run_local", lambda plan, **_: chosen.append(plan.use_kernels) or Work.empty(plan)
    )
    for start_up in (0.5, 0.0):  # a fresh process, then one that loaded Numba
        monkeypatch.setattr(engine, "_numba_start_up", lambda seconds=start_up: seconds)
        options = evaluate.Options(paths=[str(path)], loss="mse", progress=False)
        with pytest.raises(evaluate.CLIError, match="No rows"):
            evaluate.run(options)
        assert evaluate.uses_kernels(options) is chosen[-1] is (start_up == 0.0)


def test_a_grouped_run_without_kernels_does_not_import_numba_for_its_total(
    tmp_path: Path,
) -> None:
    """The overall loss of 2^13 groups (summed from the groups, by the compiled
    loop where it is loaded) must not load Numba for that alone."""
    path = tmp_path / "data.parquet"
    b = batch(1 << 15)
    keys = np.arange(1 << 15) % (1 << 13)
    table = pa.table({"y_true": b.y_true[:, 0], "y_pred": b.y_pred[:, 0], "g": keys})
    pq.write_table(table, path)
    assert "NUMBA False 0" in run_fresh(path, "", "--group-by", "g")
    forced = 'engine._NUMPY_EXTRA_NS["MeanSquaredError"] = 10**9'
    assert "NUMBA True 0" in run_fresh(path, forced, "--group-by", "g")


def test_the_cost_table_names_losses_with_kernels() -> None:
    """A misspelt class name would silently get the default cost."""
    from losskit import spec

    with_kernels = {s.cls.__name__ for s in spec.SPECS if s.kernel is not None}
    assert set(engine._NUMPY_EXTRA_NS) == with_kernels
