"""``losskit evaluate --engine dask`` computes what the local engine computes:
on a LocalCluster of several worker processes, with a worker killed mid-run,
and when a task fails on bad data."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

distributed = pytest.importorskip("distributed")

from losskit.cli import evaluate, main, readers  # noqa: E402

N_FILES, ROWS = 3, 4000


@pytest.fixture
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=3,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        host="127.0.0.1",
    ) as local:
        yield local


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    """Three Parquet files of 500-row row groups: 24 pieces with 1000-row batches."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N_FILES):
        y_true = rng.uniform(0.5, 5.0, size=(ROWS, 2))
        y_pred = y_true + rng.normal(size=(ROWS, 2))
        table = pa.table(
            {
                "y_true": pa.FixedSizeListArray.from_arrays(pa.array(y_true.reshape(-1)), 2),
                "y_pred": pa.FixedSizeListArray.from_arrays(pa.array(y_pred.reshape(-1)), 2),
                "w": rng.uniform(0, 1, size=ROWS),
                "site": rng.choice(["a", "b", "c"], size=ROWS),
            }
        )
        path = tmp_path / f"part{i}.parquet"
        pq.write_table(table, path, row_group_size=500)
        paths.append(str(path))
    return paths


ARGS = ["--sample-weight", "w", "--group-by", "site", "--loss", "all", "--batch-rows", "250"]


def local_report(files: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["evaluate", *files, *ARGS, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["rows"] == want["rows"] == N_FILES * ROWS
    assert got["skipped_losses"] == want["skipped_losses"]
    scopes = [(got, want)] + [(got["groups"][key], want["groups"][key]) for key in want["groups"]]
    assert sorted(got["groups"]) == sorted(want["groups"])
    for mine, theirs in scopes:
        assert mine["rows"] == theirs["rows"]
        assert list(mine["losses"]) == list(theirs["losses"])
        for name, value in theirs["losses"].items():
            if value is None:  # NaN (Poisson of negative predictions)
                assert mine["losses"][name] is None
            else:
                np.testing.assert_allclose(mine["losses"][name], value, rtol=1e-12, err_msg=name)


def test_local_cluster_equals_local_engine(
    cluster: Any, files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    want = local_report(files, capsys)
    code = main(
        ["evaluate", *files, *ARGS, "--scheduler", cluster.scheduler_address, "--format", "json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    got = json.loads(captured.out)
    assert got["engine"] == "dask"
    assert_same(got, want)
    # Every worker did some of the work.
    with distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 3


def release_when_told(directory: str, piece: readers.Piece) -> None:
    """Runs on a worker before each piece: say so, then wait for the test."""
    folder = Path(directory)
    (folder / f"started-{os.getpid()}-{piece.path.rsplit('/', 1)[-1]}-{piece.start}").touch()
    deadline = time.monotonic() + 60
    while not (folder / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the tasks")
        time.sleep(0.02)


def test_killing_a_worker_mid_run_does_not_change_the_result(
    cluster: Any, files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    want = local_report(files, capsys)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    options = evaluate.Options(
        paths=files,
        sample_weight="w",
        group_by="site",
        loss="all",
        batch_rows=250,
        scheduler=cluster.scheduler_address,
        engine="dask",
        progress=False,
    )
    outcome: dict[str, Any] = {}

    def evaluate_in_background() -> None:
        try:
            outcome["report"] = evaluate.run(
                options, on_piece_start=functools.partial(release_when_told, str(barrier))
            )
        except BaseException as error:
            outcome["error"] = error

    with distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        thread = threading.Thread(target=evaluate_in_background)
        thread.start()
        deadline = time.monotonic() + 60
        while not list(barrier.glob("started-*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        started = sorted(barrier.glob("started-*"))
        assert started, "no task started"
        victim_pid = int(started[0].name.split("-")[1])
        victim = next(address for address, pid in pids.items() if pid == victim_pid)
        # The victim is blocked inside a task: kill its process.
        os.kill(victim_pid, signal.SIGKILL)
        while victim in client.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert victim not in client.scheduler_info()["workers"]
        (barrier / "release").touch()
        thread.join(timeout=120)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    report = outcome["report"]
    assert_same(report, want)
    # Every piece started once, and the killed worker's piece once more.
    columns = readers.ColumnSpec(("y_true",), ("y_pred",), "w", "site")
    pieces = readers.plan(files, columns, 250)
    started = {p.name.split("-", 2)[2] for p in barrier.glob("started-*")}
    assert started == {f"{Path(p.path).name}-{p.start}" for p in pieces}
    assert len(list(barrier.glob("started-*"))) > len(pieces)


def test_own_local_cluster_and_task_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "holes.parquet"
    values = np.arange(1.0, 2001.0)
    pred = values.copy()
    pred[1234] = np.nan
    pq.write_table(pa.table({"y_true": values, "y_pred": pred}), path, row_group_size=400)
    args = ["evaluate", str(path), "--engine", "dask", "--dask-workers", "2", "--batch-rows", "100"]
    assert main([*args, "--format", "json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "holes.parquet, row 1235: column 'y_pred' is missing (null or NaN)" in captured.err
    assert main([*args, "--format", "json", "--nan-policy", "omit"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 1999
    assert report["skipped_rows"] == 1
    keep = ~np.isnan(pred)
    want = float(np.mean((values[keep] - pred[keep]) ** 2))
    np.testing.assert_allclose(report["losses"]["mean_squared_error"], want, rtol=1e-12)


def test_a_successful_run_cancels_nothing(
    cluster: Any,
    files: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Cancelling the futures of a finished merge tree made the scheduler log
    an AssertionError traceback per leaf whose merge task was not yet
    forgotten (exit status 0, the right result, 29 lines of errors on
    stderr, depending on timing); a finished tree is released instead, which
    the scheduler's event log shows."""
    from losskit.cli import dask_engine

    with distributed.Client(cluster) as client:

        @contextlib.contextmanager
        def this_client(scheduler: Any, workers: Any) -> Iterator[Any]:
            yield client

        monkeypatch.setattr(dask_engine, "_client", this_client)
        # 24 pieces: two levels of merges, the first held by no client
        args = ["--engine", "dask", "--batch-rows", "125", "--loss", "mse", "--format", "json"]
        assert main(["evaluate", *files, *args]) == 0
        captured = capfd.readouterr()
        assert json.loads(captured.out)["rows"] == N_FILES * ROWS
        assert captured.err == ""
        actions = [event.get("action") for _, event in client.get_events(client.id)]
        assert "cancel" not in actions


def test_bad_data_on_a_local_cluster_is_one_line_on_stderr(
    files: list[str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The workers of the LocalCluster the command starts used to log
    "Compute Failed" with the task's traceback next to the one-line error."""
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"y_true": ["1", "x"] * 500, "y_pred": [1.0, 2.0] * 500}), bad)
    args = ["--engine", "dask", "--dask-workers", "2", "--loss", "mse", "--batch-rows", "250"]
    assert main(["evaluate", files[0], str(bad), *args]) == 1
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"losskit evaluate: error: {bad}, row 2: column 'y_true' has a non-numeric value 'x'.\n"
    )
