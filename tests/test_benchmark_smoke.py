"""Smoke test of ``benchmarks/run.py``: a tiny run, checked for the structure of
its JSON and report.  Nothing here asserts on a timing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("numba")
pytest.importorskip("torch")

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
LOSSES = ["mean_squared_error", "sparse_categorical_crossentropy", "log_cosh"]
TINY = ["--rows", "64", "--cols", "8", "--repeat", "1"]
TIMING_KEYS = {"median_s", "min_s", "repeats", "times_s", "warmup_s", "value"}
MEMORY_KEYS = {
    "peak_extra_bytes",
    "peak_extra_method",
    "rss_peak_extra_bytes",
    "tracemalloc_peak_extra_bytes",
}
SUMMARY_KEYS = {
    "roofline_s",
    "losskit_s",
    "losskit_over_roofline",
    "reference_s",
    "best_peer",
    "best_peer_s",
    "speedup",
    "losskit_peak_extra_bytes",
    "losskit_peak_extra_method",
}


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """``benchmarks/run.py`` imported as a module."""
    spec = importlib.util.spec_from_file_location("losskit_benchmark_run", RUN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_the_expected_json(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    losses = "mse,SparseCategoricalCrossentropy,logcosh"
    argv = [*TINY, "--losses", losses, "--peers", "torch-nn,reference", "--json", str(out)]
    assert bench.main([*argv, "--in-process"]) == 0

    report = json.loads(out.read_text())
    assert {
        "settings",
        "machine",
        "versions",
        "columns",
        "inputs",
        "torch_nn_mapping",
        "results",
        "summary",
        "roofline_bandwidth",
        "value_mismatches",
        "load_average",
    } <= set(report)
    settings = report["settings"]
    assert settings["losses"] == LOSSES
    assert settings["peers"] == ["reference", "torch-nn"]
    assert (settings["rows"], settings["cols"], settings["elements"]) == (64, 8, 512)
    assert {"cpu_model", "cpu_count", "memory_bytes", "os"} <= set(report["machine"])
    assert {"python", "numpy", "numba", "torch", "jax", "keras", "losskit"} <= set(
        report["versions"]
    )
    assert list(report["results"]) == ["roofline", "losskit", "reference", "torch-nn"]

    for column, per_loss in report["results"].items():
        assert list(per_loss) == LOSSES
        for name in LOSSES:
            for kind in ("fwd", "fwdbwd"):
                measured = per_loss[name][kind]
                if column == "torch-nn" and name == "log_cosh":
                    assert measured is None  # no torch.nn.functional equivalent
                    continue
                assert "error" not in measured, (column, name, kind, measured)
                assert set(measured) >= TIMING_KEYS | MEMORY_KEYS
                assert len(measured["times_s"]) == measured["repeats"] >= 1
                if column == "roofline":
                    assert measured["peak_extra_bytes"] is None
                    assert str(measured["threads"]) in measured["by_threads"]
                elif kind == "fwd" and column in ("losskit", "reference"):
                    assert measured["peak_extra_method"] == "tracemalloc"
                else:
                    assert measured["peak_extra_method"] in ("rss-hwm", None)

    for name in LOSSES:
        for kind in ("fwd", "fwdbwd"):
            entry = report["summary"][name][kind]
            assert set(entry) == SUMMARY_KEYS
            assert entry["best_peer"] == (None if name == "log_cosh" else "torch-nn")
    # Every column computes the same loss values (the torch mapping is right).
    assert report["value_mismatches"] == []

    printed = capsys.readouterr().out
    assert "roof fwd" in printed
    assert "speedup" in printed
    for name in LOSSES:
        assert name in printed


def test_worker_prints_only_json_on_stdout() -> None:
    command = [sys.executable, str(RUN), "--worker", "torch-nn", *TINY, "--losses", "mse"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(completed.stdout)
    assert result["column"] == "torch-nn"
    assert set(result["results"]["mean_squared_error"]) == {"fwd", "fwdbwd"}


def test_loss_names_resolve_like_losskit(bench: ModuleType) -> None:
    assert bench.parse_losses("mse,MeanSquaredError,Huber,huber_loss") == (
        "mean_squared_error",
        "huber_loss",
    )
    assert len(bench.parse_losses("all")) == 20  # every loss but CTC and Circle
    assert bench.parse_peers("torch_nn,keras-jax") == ("keras-jax", "torch-nn")
    assert bench.parse_peers("none") == ()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--losses", "msee", "unknown loss 'msee'. Did you mean 'mse'"),
        ("--peers", "keras-tf", "unknown peer 'keras-tf'. Did you mean"),
    ],
)
def test_unknown_names_are_clear_errors(
    bench: ModuleType, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main([option, value, "--no-json"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_readme_gpu_table_is_the_committed_results() -> None:
    """The README's H100 tables are what ``benchmarks/gpu.py --markdown``
    renders from the committed results file, target verdicts included."""
    root = RUN.parents[1]
    done = subprocess.run(
        [
            sys.executable,
            str(root / "benchmarks" / "gpu.py"),
            "--markdown",
            str(root / "benchmarks" / "results" / "gpu_NVIDIA-H100-80GB-HBM3.json"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    table = done.stdout.strip()
    assert "| mse | float32 | 1.04 | 1.44 | 0.98 | 2.22 | 1.58 |" in table
    assert "| liger-kernel | 4.31 | 0 |" in table
    assert table in (root / "README.md").read_text()


def test_gpu_table_shows_kernel_and_back_to_back_times_when_measured() -> None:
    """Rows that carry the profiler's kernel time and the back-to-back time
    get their columns; rows without them print '-'.  (The results of a round
    that measured neither, with both added to MSE's rows.)"""
    root = RUN.parents[1]
    results = root / "benchmarks" / "results" / "gpu_NVIDIA-H100-80GB-HBM3_c7ef53e.json"
    report = json.loads(results.read_text())
    for row in report["results"]:
        if row.get("loss") == "mse" and row.get("mode") == "fwd+bwd":
            row["loop_ms"] = 1.234
            if row["provider"] == "losskit fused":
                row["device_ms"] = 1.055
    spec = importlib.util.spec_from_file_location("gpu_bench", root / "benchmarks" / "gpu.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.markdown(report).splitlines()
    assert table[0].count("back to back") == 2  # losskit fused and torch.compile
    assert "kernels only" in table[0]
    mse = next(line for line in table if line.startswith("| mse | float32 |"))
    assert "| 1.05 | 1.23 | 1.23 |" in mse
    mae = next(line for line in table if line.startswith("| mae | float32 |"))
    assert "| - | - | - |" in mae
