"""Benchmark ``losskit evaluate`` against what a user would write instead.

On a generated Parquet file of ``--rows`` rows (default 10**8) with two
float64 columns (y_true, y_pred), each contender runs in a fresh Python
process, which reports its time (reading and computing, after imports) and
its peak resident memory (VmHWM):

- ``losskit evaluate`` with the regression set (7 Keras losses, default) and
  with MSE alone;
- pandas + scikit-learn: ``pd.read_parquet`` then ``sklearn.metrics`` for
  MSE, MAE, MAPE and MSLE, NumPy for cosine similarity, Huber and log-cosh;
- polars: one lazy ``scan_parquet(...).select(...)`` of the same 7 losses
  (written as Keras defines them), run by the streaming engine, and of MSE
  alone.

Every contender's values are checked against losskit's.  Targets (issue
11), in process and as a fresh process: the regression set in at most 0.6x
polars' time for the same 7 losses, MSE alone within 1.2x of polars' MSE;
with ``--csv`` (a CSV copy of the same data), within 1.5x of polars on that
CSV; peak memory at least 10x below pandas'.

    python benchmarks/evaluate_bench.py                 # 10**8 rows
    python benchmarks/evaluate_bench.py --rows 20000000 --repeat 3
    python benchmarks/evaluate_bench.py --rows 1e7 --csv --only losskit_mse polars_mse
    python benchmarks/evaluate_bench.py --rows 4e6 --groups 1e6 [--text-keys]

With ``--groups K`` the file also has a key column ``g`` of K distinct
integers (or, with ``--text-keys``, the same keys as text), and the grouped
contenders score each group (target: at most 3x the ungrouped time).

It prints the machine, versions, sizes and every number, and writes
``benchmarks/results/evaluate_<rows>.json``.  The data file is kept in
``--data`` (default: the system's temporary directory) for later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
EPSILON = 1e-7
CHUNK = 1 << 20

# Each contender: Python code run in a fresh process, with FILE set; it sets
# VALUES (a dict of loss name -> value).  Only the code between the two
# clock readings is timed: reading and computing, not the imports.
# Numba and the kernel modules are imports too (polars' engine is imported
# outside the clock as well) where the command loads them, which it decides
# before reading (``uses_kernels``: only where they save more than Numba's
# start-up); compiling or loading the cached kernels is not.
KERNEL_IMPORTS = (
    "if ev.uses_kernels(OPTIONS):\n"
    "    import losskit.kernels._numba_elementwise, losskit.kernels._numba_rowwise\n"
    "    import losskit.kernels._numba_regression\n"
)
# What the command imports on its first batch, outside the clock as polars'
# imports are: pyarrow's readers, and array-api-compat's NumPy namespace
# (75 ms: losskit imports it on first use, to spare torch and JAX users).
LOSSKIT_IMPORTS = (
    "import losskit.cli.evaluate as ev, pyarrow.parquet, pyarrow.compute, pyarrow.csv\n"
    "from losskit import _array\n"
    "_array.numpy_namespace()\n"
)


def losskit_setup(**options: str) -> str:
    """The imports of a losskit contender whose command has these options."""
    arguments = "".join(f", {name}={value!r}" for name, value in options.items())
    return (
        LOSSKIT_IMPORTS
        + f"OPTIONS = ev.Options(paths=[FILE], progress=False{arguments})\n"
        + KERNEL_IMPORTS
    )


POLARS_SCAN = "SCAN = pl.scan_csv if FILE.endswith('.csv') else pl.scan_parquet\n"
PRELUDE = "import time, json, sys\nFILE = sys.argv[1]\n"
CONTENDERS: dict[str, tuple[str, str]] = {
    "losskit_regression": (losskit_setup(), "VALUES = ev.run(OPTIONS)['losses']"),
    "losskit_mse": (losskit_setup(loss="mse"), "VALUES = ev.run(OPTIONS)['losses']"),
    # With --groups K: the same losses per group of an integer column of K
    # distinct keys, the CSV text (one line per group) included in the time.
    "losskit_grouped_mse": (
        losskit_setup(loss="mse", group_by="g"),
        "report = ev.run(OPTIONS, columnar=True)\n"
        "TEXT = ev.render(report, 'csv')\n"
        "VALUES = report['losses']",
    ),
    "losskit_grouped_regression": (
        losskit_setup(group_by="g"),
        "report = ev.run(OPTIONS, columnar=True)\n"
        "TEXT = ev.render(report, 'csv')\n"
        "VALUES = report['losses']",
    ),
    "polars_regression": (
        "import math, polars as pl\n" + POLARS_SCAN,
        textwrap.dedent(
            """
            t, p, eps = pl.col("y_true"), pl.col("y_pred"), 1e-7
            e = p - t
            frame = SCAN(FILE).select(
                (e**2).mean().alias("mean_squared_error"),
                e.abs().mean().alias("mean_absolute_error"),
                (100 * ((t - p) / t.abs().clip(lower_bound=eps)).abs()).mean()
                .alias("mean_absolute_percentage_error"),
                (((p.clip(lower_bound=eps) + 1).log() - (t.clip(lower_bound=eps) + 1).log()) ** 2)
                .mean().alias("mean_squared_logarithmic_error"),
                (-(t / t.abs().clip(lower_bound=eps)) * (p / p.abs().clip(lower_bound=eps)))
                .mean().alias("cosine_similarity"),
                pl.when(e.abs() <= 1.0).then(0.5 * e**2).otherwise(e.abs() - 0.5)
                .mean().alias("huber_loss"),
                (e.abs() + (-2 * e.abs()).exp().log1p() - math.log(2.0)).mean().alias("log_cosh"),
            ).collect(engine="streaming")
            VALUES = frame.row(0, named=True)
            """
        ),
    ),
    "polars_mse": (
        "import polars as pl\n" + POLARS_SCAN,
        textwrap.dedent(
            """
            e = pl.col("y_pred") - pl.col("y_true")
            frame = SCAN(FILE).select((e**2).mean().alias("mean_squared_error"))
            VALUES = frame.collect(engine="streaming").row(0, named=True)
            """
        ),
    ),
    "pandas_sklearn": (
        "import numpy as np, pandas as pd\nfrom sklearn import metrics",
        textwrap.dedent(
            """
            frame = (pd.read_csv if FILE.endswith(".csv") else pd.read_parquet)(FILE)
            t, p = frame["y_true"].to_numpy(), frame["y_pred"].to_numpy()
            e = p - t
            VALUES = {
                "mean_squared_error": metrics.mean_squared_error(t, p),
                "mean_absolute_error": metrics.mean_absolute_error(t, p),
                "mean_absolute_percentage_error":
                    100 * metrics.mean_absolute_percentage_error(t, p),
                "mean_squared_logarithmic_error": metrics.mean_squared_log_error(t, p),
                "cosine_similarity": float(-np.mean(np.sign(t) * np.sign(p))),
                "huber_loss": float(np.mean(np.where(np.abs(e) <= 1, 0.5 * e**2, np.abs(e) - 0.5))),
                "log_cosh": float(np.mean(np.logaddexp(e, -e) - np.log(2.0))),
            }
            """
        ),
    ),
}
WORKER = textwrap.dedent(
    """
    {setup}
    start = time.perf_counter()
    {work}
    seconds = time.perf_counter() - start
    try:
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        peak = int(status.split()[0]) * 1024
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    VALUES = {{k: float(v) for k, v in VALUES.items()}}
    print("RESULT", json.dumps({{"seconds": seconds, "peak_bytes": peak, "values": VALUES}}))
    """
)


def make_data(
    path: Path, rows: int, seed: int = 0, groups: int = 0, text_keys: bool = False
) -> None:
    """Positive targets and predictions (so every baseline accepts them),
    with 0.1% gross outliers; written in 2**20-row row groups.  With
    ``groups``, also a column ``g`` of random integer keys in [0, groups),
    or with ``text_keys`` the same keys as text (``user123``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    fields = [("y_true", pa.float64()), ("y_pred", pa.float64())]
    key_type = pa.string() if text_keys else pa.int64()
    schema = pa.schema(fields + ([("g", key_type)] if groups else []))
    temporary = path.with_suffix(".partial")
    with pq.ParquetWriter(temporary, schema) as writer:
        for lo in range(0, rows, CHUNK):
            n = min(CHUNK, rows - lo)
            y_true = rng.gamma(2.0, 50.0, size=n)
            y_pred = y_true * np.exp(rng.normal(0.0, 0.2, size=n))
            outliers = rng.random(n) < 0.001
            y_pred[outliers] *= 10.0
            columns = {"y_true": y_true, "y_pred": y_pred}
            if groups:
                keys = rng.integers(0, groups, size=n)
                columns["g"] = np.char.add("user", keys.astype(str)) if text_keys else keys
            writer.write_table(pa.table(columns, schema=schema))
    temporary.rename(path)


def write_csv(parquet: Path, path: Path) -> None:
    """A CSV copy of the Parquet file (shortest round-trip text of each
    float64, as pyarrow writes it)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    source = pq.ParquetFile(parquet)
    temporary = path.with_suffix(".partial")
    with pcsv.CSVWriter(temporary, source.schema_arrow) as writer:
        for group in range(source.num_row_groups):
            writer.write_table(source.read_row_group(group))
    temporary.rename(path)


# An installed package has its bytecode compiled; with PYTHONDONTWRITEBYTECODE
# set (some sandboxes and CI images set it), every fresh process would compile
# the modules of an editable install from source (50 ms for losskit's), so
# the contenders may write their caches (the first round does).
CHILD_ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_contender(name: str, path: Path) -> dict[str, Any]:
    setup, work = CONTENDERS[name]
    code = PRELUDE + WORKER.format(setup=setup, work=textwrap.indent(work, "").strip())
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=CHILD_ENVIRONMENT,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    out: dict[str, Any] = json.loads(line[len("RESULT ") :])
    out["process_seconds"] = wall
    return out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        meminfo = Path("/proc/meminfo").read_text().split()
        info["memory_bytes"] = int(meminfo[meminfo.index("MemTotal:") + 1]) * 1024
    except (OSError, ValueError):
        pass
    return info


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for package in ("losskit", "numpy", "pyarrow", "polars", "pandas", "scikit-learn"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=lambda s: int(float(s)), default=10**8)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per contender, taking turns (best is kept)"
    )
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument(
        "--only", nargs="*", choices=sorted(CONTENDERS), help="run only these contenders"
    )
    parser.add_argument(
        "--groups",
        type=lambda s: int(float(s)),
        default=0,
        help="add a key column of this many distinct values (for the grouped contenders)",
    )
    parser.add_argument(
        "--text-keys", action="store_true", help="with --groups: the keys as text, not int64"
    )
    parser.add_argument("--output", type=Path, help="JSON file (default: results/...)")
    parser.add_argument(
        "--csv", action="store_true", help="score a CSV copy of the data instead of the Parquet"
    )
    args = parser.parse_args(argv)

    if args.text_keys and not args.groups:
        parser.error("--text-keys needs --groups")
    suffix = f"_g{args.groups}" if args.groups else ""
    suffix += "_text" if args.text_keys else ""
    path = args.data / f"losskit_bench_{args.rows}{suffix}.parquet"
    if not path.exists():
        print(f"writing {path} ({args.rows:,} rows) ...", flush=True)
        started = time.perf_counter()
        make_data(path, args.rows, groups=args.groups, text_keys=args.text_keys)
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    if args.csv:
        parquet, path = path, path.with_suffix(".csv")
        if not path.exists():
            print(f"writing {path} ...", flush=True)
            write_csv(parquet, path)
    size = path.stat().st_size
    header = {"machine": machine(), "versions": versions()}
    header["data"] = {
        "rows": args.rows,
        "columns": "y_true, y_pred (float64)",
        "format": "csv" if args.csv else "parquet",
        "file": str(path),
        "file_bytes": size,
        "row_group_rows": CHUNK,
        "groups": args.groups,
        "group_keys": ("text" if args.text_keys else "int64") if args.groups else None,
    }
    print(json.dumps(header, indent=2))

    # Contenders take turns, so that load from elsewhere on the machine
    # falls on all of them alike; the best of the repeats is the estimate
    # least disturbed by it (medians are reported too).
    names = args.only or [n for n in CONTENDERS if args.groups or "grouped" not in n]
    if not args.groups and any("grouped" in n for n in names):
        parser.error("the grouped contenders need --groups")
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    for repeat in range(args.repeat):
        for name in names:
            sample = run_contender(name, path)
            samples[name].append(sample)
            print(
                f"[{repeat + 1}/{args.repeat}] {name:20s} {sample['seconds']:8.2f} s  "
                f"peak {sample['peak_bytes'] / 2**20:6.0f} MiB",
                flush=True,
            )
    runs: dict[str, Any] = {}
    print()
    for name in names:
        seconds = min(s["seconds"] for s in samples[name])
        peak = max(s["peak_bytes"] for s in samples[name])
        runs[name] = {
            "seconds": seconds,
            "median_seconds": statistics.median(s["seconds"] for s in samples[name]),
            "seconds_all": [s["seconds"] for s in samples[name]],
            "process_seconds": min(s["process_seconds"] for s in samples[name]),
            "rows_per_second": args.rows / seconds,
            "peak_rss_bytes": peak,
            "values": samples[name][0]["values"],
        }
        print(
            f"{name:20s} best {seconds:8.2f} s  median {runs[name]['median_seconds']:8.2f} s  "
            f"{args.rows / seconds / 1e6:8.1f} M rows/s  peak {peak / 2**20:8.0f} MiB",
            flush=True,
        )
    header["load_average"] = {
        "before": load_before,
        "after": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }

    reference = runs.get("losskit_regression", {}).get("values", {})
    agreement = {}
    for name, run in runs.items():
        worst = 0.0
        for loss, value in run["values"].items():
            if loss in reference:
                worst = max(worst, abs(value - reference[loss]) / max(abs(reference[loss]), 1e-300))
        agreement[name] = worst
    print("largest relative difference from losskit's values:", json.dumps(agreement))

    targets: dict[str, Any] = {}
    # Issue 11's targets, in process and as a fresh command; on CSV input
    # (--csv) every losskit run within 1.5x of polars on the same CSV.
    limits = {"regression": 0.6, "mse": 1.2}
    for loss, limit in limits.items():
        ours, theirs = f"losskit_{loss}", f"polars_{loss}"
        if {ours, theirs} <= set(runs):
            for clock in ("seconds", "process_seconds"):
                ratio = runs[ours][clock] / runs[theirs][clock]
                bound = 1.5 if args.csv else limit
                targets[f"{loss}_vs_polars_same_losses_{clock}"] = {
                    "ratio": ratio,
                    "target": f"<= {bound}",
                    "met": ratio <= bound,
                }
    if {"losskit_regression", "pandas_sklearn"} <= set(runs):
        ratio = (
            runs["pandas_sklearn"]["peak_rss_bytes"] / runs["losskit_regression"]["peak_rss_bytes"]
        )
        targets["pandas_peak_memory_over_losskit"] = {
            "ratio": ratio,
            "target": ">= 10",
            "met": ratio >= 10,
        }
    for loss in ("mse", "regression"):
        grouped, plain = f"losskit_grouped_{loss}", f"losskit_{loss}"
        if {grouped, plain} <= set(runs):
            for clock in ("seconds", "process_seconds"):
                ratio = runs[grouped][clock] / runs[plain][clock]
                targets[f"grouped_{loss}_vs_ungrouped_{clock}"] = {
                    "ratio": ratio,
                    "target": "<= 3",
                    "met": ratio <= 3,
                }
    print("targets:", json.dumps(targets, indent=2))

    suffix += "_csv" if args.csv else ""
    output = args.output or RESULTS / f"evaluate_{args.rows}{suffix}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    payload = {**header, "runs": runs, "agreement": agreement, "targets": targets}
    output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
