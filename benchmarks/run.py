#!/usr/bin/env python
"""losskit's benchmark: every loss against a measured memory roofline and its peers.

Run it from the repository root with the ``bench`` extra installed
(``pip install -e ".[bench]"``)::

    python benchmarks/run.py                                   # everything, ~10-15 min
    python benchmarks/run.py --losses mse,huber --peers keras-jax,torch-nn --repeat 9
    python benchmarks/run.py --rows 65536 --cols 128 --json /tmp/bench.json
    python benchmarks/run.py --list                            # losses, peers, mapping

For each loss of ``losskit.LOSSES`` (class with default arguments, default
reduction) on inputs of ``rows x cols`` float32 elements (default 2^18 x 64 =
2^24, 64 MiB per array), in one run on one machine, it measures:

* ``fwd``: the loss value.  losskit from NumPy arrays; Keras on JAX jitted;
  Keras on torch, ``torch.nn.functional`` and ``torch.compile`` from torch CPU
  tensors.
* ``fwd+bwd``: the value and the gradient with respect to ``y_pred``:
  ``loss(t, p).backward()`` with ``p`` a torch CPU tensor with
  ``requires_grad`` (losskit, Keras on torch, ``torch.nn.functional``,
  ``torch.compile``), ``jax.jit(jax.value_and_grad(...))`` (Keras on JAX).
* the roofline: one fused Numba pass reading both inputs (``fwd``), and one
  that also writes a ``y_pred``-sized array (``fwd+bwd``), on the same arrays
  (:mod:`losskit.kernels.roofline`), with 1, 2, ... up to Numba's default
  number of threads: the fastest is the roofline.  No loss can move less memory.

Columns (each runs in its own process unless ``--in-process``):

* ``losskit``: preference ``"fast"`` (the default: fused kernels where they
  exist, else the reference path);
* ``reference``: the same calls under ``losskit.prefer_backend("reference")``
  (shown, not a peer);
* ``keras-jax``: Keras 3 on JAX, ``jax.jit`` / ``jax.value_and_grad``;
* ``keras-torch``: Keras 3 on torch, eager;
* ``torch-nn``: the ``torch.nn.functional`` equivalent, where the math matches
  Keras's loss (``F.mse_loss``, ``F.l1_loss``, ``F.huber_loss``,
  ``-F.cosine_similarity(...).mean()``, ``F.kl_div(log p, t, "batchmean")``,
  ``F.poisson_nll_loss(log_input=False)``, ``F.binary_cross_entropy``, and
  ``F.cross_entropy(log p, t)`` with probability targets for the categorical
  and class indices for the sparse crossentropy: ``log_softmax(log p)`` is
  exactly Keras's ``p / sum(p)``); ``-`` elsewhere (no hinge: ``soft_margin``
  is the logistic loss, ``hinge_embedding`` a loss on distances and
  ``multi_margin`` sums where Keras takes a maximum;
  ``binary_cross_entropy_with_logits`` is ``from_logits=True``, not measured);
* ``torch-compile``: ``torch.compile(lambda t, p: loss(t, p))`` of losskit's
  reference path;
* ``optax``: the optax equivalent under ``jax.jit``, where one exists (binary
  focal crossentropy: ``optax.losses.sigmoid_focal_loss`` on ``logit(p)``).
  ``torchvision.ops.sigmoid_focal_loss`` is not a column: torchvision does not
  install beside the pinned torch 2.13.0.

Ratios: ``losskit / roofline`` (1.0 is the bound), and ``speedup`` = fastest of
keras-jax, keras-torch, torch-nn, torch-compile and optax / losskit (> 1:
losskit is faster).

Timing: two warm-up calls (the first compiles), then ``--repeat`` calls
(default 5) timed one by one with ``time.perf_counter``, the garbage collector
off; a call so slow that they would exceed ``--budget`` seconds (default 4)
gets fewer (at least 3).  The tables use the median (``--statistic min``: the
minimum); the JSON has both and every time.  The roofline passes, cheap, get
``max(20, 4 * repeat)`` timed calls per thread count, and the roofline is their
minimum: a bound is the best pass the machine managed.

Peak extra memory, per measurement, in separate untimed calls: for NumPy
inputs the tracemalloc peak minus the traced size before the call (NumPy
reports its allocations to tracemalloc); for everything (NumPy too, as a
cross-check) the peak RSS: glibc ``malloc_trim(0)``, reset of the kernel's
``VmHWM`` through ``/proc/self/clear_refs``, call, ``VmHWM`` minus the RSS
before; the gradient's size is subtracted for fwd+bwd.  See ``_measure.py``.

Everything (machine, versions, settings, every timing) goes to a JSON file,
``benchmarks/results/latest.json`` by default.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _measure import WARMUP_CALLS, cpu_threads  # noqa: E402
from _peers import (  # noqa: E402
    COLUMN_DESCRIPTIONS,
    COLUMNS,
    KERAS_BACKENDS,
    LABEL_LOSSES,
    OPTAX_MAPPING,
    PEERS,
    RATIO_PEERS,
    TORCH_NN_MAPPING,
    WorkerSettings,
    has_inputs,
    input_description,
    roofline_repeat,
    run_worker,
    torch_nn_description,
)

DEFAULT_JSON = HERE / "results" / "latest.json"
KINDS = ("fwd", "fwdbwd")
KIND_LABELS = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}
DASH = "—"
MIB = 2**20
#: Relative difference from losskit's reference value above which a column's
#: value is reported as a mismatch (float32 sums of 2^24 terms).
VALUE_RTOL = 1e-3
#: The roofline is a bound: the fastest pass measured (over repeats and thread counts).
ROOFLINE_STATISTIC = "min"
#: /roof below this is reported as a disturbed (or not memory-bound) roofline.
ROOFLINE_SLACK = 0.9
VERSION_PACKAGES = (
    "numpy",
    "numba",
    "llvmlite",
    "torch",
    "jax",
    "jaxlib",
    "keras",
    "optax",
    "array-api-compat",
    "losskit",
)


# --- command line ------------------------------------------------------------------


def loss_aliases() -> dict[str, str]:
    """Every accepted spelling of a loss (lower case) -> its Keras default name."""
    import losskit

    aliases: dict[str, str] = {}
    for info in losskit.LOSSES:
        for alias in (info.name, info.cls.__name__, *info.function_names):
            aliases[alias.lower()] = info.name
    return aliases


def all_losses() -> tuple[str, ...]:
    """The Keras default names of ``losskit.LOSSES`` whose inputs the benchmark
    draws (not CTC and Circle: see :func:`_peers.has_inputs`), in registry order."""
    import losskit

    return tuple(info.name for info in losskit.LOSSES if has_inputs(info.name))


def parse_losses(text: str) -> tuple[str, ...]:
    """``"mse,Huber,huber_loss"`` -> Keras default names, deduplicated, in order.

    Accepts the Keras default name, the class name, the function name and its
    aliases, case-insensitively, or ``all``.  Raises ValueError for unknown names.
    """
    if text.strip().lower() == "all":
        return all_losses()
    aliases = loss_aliases()
    names: list[str] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.lower() not in aliases:
            close = difflib.get_close_matches(item.lower(), aliases, n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"unknown loss {item!r}.{hint} Known losses: {', '.join(all_losses())} "
                "(or their class names and aliases, or 'all')."
            )
        name = aliases[item.lower()]
        if not has_inputs(name):
            raise ValueError(
                f"{item!r} takes label sequences or embeddings, which this benchmark does not "
                "draw (CTC: python benchmarks/ctc.py)."
            )
        names.append(name)
    if not names:
        raise ValueError("--losses is empty; give loss names or 'all'.")
    return tuple(dict.fromkeys(names))


def parse_peers(text: str) -> tuple[str, ...]:
    """``"keras-jax,torch-nn"`` -> peers in table order; ``all`` or ``none``.

    Raises ValueError for unknown names.
    """
    lowered = text.strip().lower()
    if lowered == "all":
        return PEERS
    if lowered in ("none", ""):
        return ()
    chosen: set[str] = set()
    for raw in lowered.split(","):
        item = raw.strip().replace("_", "-")
        if not item:
            continue
        if item not in PEERS:
            close = difflib.get_close_matches(item, PEERS, n=2, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"unknown peer {raw.strip()!r}.{hint} Known peers: {', '.join(PEERS)} "
                "(or 'all', 'none')."
            )
        chosen.add(item)
    return tuple(c for c in COLUMNS if c in chosen)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``benchmarks/run.py``."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description=(
            "Time every losskit loss (forward, and forward+backward) against a measured "
            "memory roofline and against Keras 3 on JAX and torch, torch.nn.functional and "
            "torch.compile; print a table and write JSON."
        ),
    )
    parser.add_argument("--rows", type=positive_int, default=2**18, help="default 262144")
    parser.add_argument("--cols", type=positive_int, default=64, help="default 64")
    parser.add_argument(
        "--losses",
        default="all",
        help="comma-separated loss names (Keras names, class names or aliases); default all",
    )
    parser.add_argument(
        "--peers",
        default="all",
        help=f"comma-separated subset of {','.join(PEERS)}, or all/none; default all",
    )
    parser.add_argument(
        "--repeat", type=positive_int, default=5, help="timed calls per measurement; default 5"
    )
    parser.add_argument(
        "--budget",
        type=positive_float,
        default=4.0,
        help=(
            "seconds of timed calls per measurement: slower calls get fewer repeats "
            "(at least min(3, repeat)); default 4"
        ),
    )
    parser.add_argument(
        "--statistic",
        choices=("median", "min"),
        default="median",
        help="what the tables and ratios use; the JSON has both; default median",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs; default 0")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"output file; default {DEFAULT_JSON}"
    )
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the columns that do not need Keras in this process (faster start, less "
        "isolation); Keras peers always get their own process",
    )
    parser.add_argument(
        "--worker-timeout",
        type=positive_float,
        default=1800.0,
        help="seconds before a column's process is killed; default 1800",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the losses, peers and torch mapping, and exit"
    )
    parser.add_argument("--worker", choices=COLUMNS, help=argparse.SUPPRESS)
    return parser


# --- workers -----------------------------------------------------------------------


def log(message: str) -> None:
    """Progress, on stderr."""
    print(message, file=sys.stderr, flush=True)


def worker_main(column: str, settings: WorkerSettings) -> int:
    """``--worker COLUMN``: measure one column, print its JSON on stdout.

    While it works, file descriptor 1 points at stderr, so nothing a library
    prints (from Python or C) can corrupt the JSON.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        result = run_worker(column, settings, log=log)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    sys.stdout.write(json.dumps(result))
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


def worker_command(column: str, settings: WorkerSettings) -> list[str]:
    """The command line of a column's worker process."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        column,
        "--rows",
        str(settings.rows),
        "--cols",
        str(settings.cols),
        "--losses",
        ",".join(settings.losses),
        "--repeat",
        str(settings.repeat),
        "--budget",
        str(settings.budget_s),
        "--seed",
        str(settings.seed),
    ]


def worker_environment(column: str) -> dict[str, str]:
    """The environment of a column's process: its Keras backend, JAX in its
    default 32-bit mode, losskit's backend preference not forced."""
    env = dict(os.environ)
    env.pop("LOSSKIT_BACKEND", None)
    env.pop("JAX_ENABLE_X64", None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if column in KERAS_BACKENDS:
        env["KERAS_BACKEND"] = KERAS_BACKENDS[column]
    return env


def failed_column(column: str, settings: WorkerSettings, message: str) -> dict[str, Any]:
    """A column whose worker failed: every measurement is that error."""
    error = {"error": message}
    return {
        "column": column,
        "error": message,
        "results": {name: {"fwd": error, "fwdbwd": error} for name in settings.losses},
    }


def run_column(
    column: str, settings: WorkerSettings, in_process: bool, timeout_s: float
) -> dict[str, Any]:
    """Measure one column, in a subprocess (Keras peers always) or in this process."""
    if in_process and column not in KERAS_BACKENDS:
        try:
            return run_worker(column, settings, log=log)
        except Exception as error:
            return failed_column(column, settings, f"{type(error).__name__}: {error}")
    try:
        completed = subprocess.run(
            worker_command(column, settings),
            stdout=subprocess.PIPE,
            env=worker_environment(column),
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return failed_column(column, settings, f"worker timed out after {timeout_s:g} s")
    if completed.returncode != 0:
        return failed_column(
            column, settings, f"worker exited with status {completed.returncode} (see stderr)"
        )
    try:
        result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return failed_column(column, settings, "worker printed no JSON result")
    return result


# --- machine and versions --------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, OS and kernel of this machine."""
    cpuinfo = _read("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    lscpu: dict[str, str] = {}
    try:
        output = subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        for line in output.splitlines():
            key, _, value = line.partition(":")
            lscpu[key.strip()] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    memory = None
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    os_name = platform.platform()
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip('"')
    keep = ("Model name", "Thread(s) per core", "Hypervisor vendor", "L1d cache", "L2 cache")
    return {
        "cpu_model": lscpu.get("Model name") or fields.get("model name") or platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": cpu_threads(),
        "cpu_mhz": fields.get("cpu MHz"),
        "lscpu": {k: lscpu[k] for k in (*keep, "L3 cache", "Vendor ID") if k in lscpu},
        "memory_bytes": memory,
        "os": os_name,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def library_versions() -> dict[str, str | None]:
    """Python's and each relevant distribution's version (``None``: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(*args: str) -> str:
    """The output of ``git ARGS`` in this repository."""
    return subprocess.run(
        ["git", *args], cwd=HERE, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def git_revision() -> str | None:
    """The repository's commit, with ``+dirty`` if tracked files changed."""
    try:
        head = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


# --- summary and report ----------------------------------------------------------------


def seconds(measurement: Any, statistic: str = "median") -> float | None:
    """The median (or min) time of a measurement dict; None for no equivalent or an error."""
    key = f"{statistic}_s"
    if isinstance(measurement, dict) and key in measurement:
        return float(measurement[key])
    return None


def summarize(
    results: dict[str, dict[str, Any]], losses: Sequence[str], statistic: str = "median"
) -> dict[str, Any]:
    """Per loss and kind: roofline, losskit, ratio, fastest peer and speedup, memory."""
    summary: dict[str, Any] = {}
    for name in losses:
        entry: dict[str, Any] = {}
        for kind in KINDS:

            def cell(column: str, kind: str = kind, name: str = name) -> Any:
                return results.get(column, {}).get(name, {}).get(kind)

            roofline = seconds(cell("roofline"), ROOFLINE_STATISTIC)
            losskit = seconds(cell("losskit"), statistic)
            peers = {c: t for c in RATIO_PEERS if (t := seconds(cell(c), statistic)) is not None}
            best = min(peers, key=lambda c: peers[c]) if peers else None
            measured = cell("losskit") if isinstance(cell("losskit"), dict) else {}
            entry[kind] = {
                "roofline_s": roofline,
                "losskit_s": losskit,
                "losskit_over_roofline": losskit / roofline if losskit and roofline else None,
                "reference_s": seconds(cell("reference"), statistic),
                "best_peer": best,
                "best_peer_s": peers[best] if best else None,
                "speedup": peers[best] / losskit if best and losskit else None,
                "losskit_peak_extra_bytes": measured.get("peak_extra_bytes"),
                "losskit_peak_extra_method": measured.get("peak_extra_method"),
            }
        summary[name] = entry
    return summary


def value_mismatches(results: dict[str, dict[str, Any]], losses: Sequence[str]) -> list[str]:
    """Columns whose loss value differs from losskit's (reference, else fast) by
    more than :data:`VALUE_RTOL` relative: a sign of a wrong peer mapping."""
    problems: list[str] = []
    for name in losses:
        for kind in KINDS:
            base_column = (
                "reference"
                if seconds(results.get("reference", {}).get(name, {}).get(kind))
                else "losskit"
            )
            base = results.get(base_column, {}).get(name, {}).get(kind) or {}
            expected = base.get("value")
            if expected is None:
                continue
            for column, column_results in results.items():
                if column in ("roofline", base_column):
                    continue
                value = (column_results.get(name, {}).get(kind) or {}).get("value")
                if value is None:
                    continue
                scale = max(abs(expected), 1e-12)
                if not abs(value - expected) <= VALUE_RTOL * scale:
                    problems.append(
                        f"{name} {KIND_LABELS[kind]}: {column} gives {value:.7g}, "
                        f"losskit {base_column} {expected:.7g}"
                    )
    return problems


def column_statistic(column: str, statistic: str) -> str:
    """The statistic a column is shown with: the roofline always with its minimum."""
    return ROOFLINE_STATISTIC if column == "roofline" else statistic


def plural(count: int | None, noun: str) -> str:
    """``"1 thread"``, ``"2 threads"``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def fmt_ms(seconds: float | None) -> str:
    """Seconds as milliseconds, 3-4 significant digits."""
    if seconds is None:
        return DASH
    ms = seconds * 1e3
    if ms >= 1000:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def fmt_ratio(ratio: float | None) -> str:
    """A ratio with two decimals."""
    return DASH if ratio is None else f"{ratio:.2f}"


def fmt_mib(size: int | None) -> str:
    """Bytes as MiB, one decimal (page-level noise below 0 shows as 0.0)."""
    if size is None:
        return "n/a"
    return f"{max(size, 0) / MIB:.1f}"


def cell_ms(measurement: Any, statistic: str = "median") -> str:
    """A measurement's median (or min) in ms, ``—`` (no equivalent) or ``err``."""
    if measurement is None:
        return DASH
    if isinstance(measurement, dict) and "error" in measurement:
        return "err"
    return fmt_ms(seconds(measurement, statistic))


def cell_mib(measurement: Any, key: str = "peak_extra_bytes") -> str:
    """A measurement's peak extra memory in MiB."""
    if measurement is None:
        return DASH
    if isinstance(measurement, dict) and "error" in measurement:
        return "err"
    return fmt_mib(measurement.get(key))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def main_table(report: dict[str, Any]) -> str:
    """loss | roofline, losskit, ratio, fastest peer, speedup (fwd, then fwd+bwd) | memory."""
    headers = ["loss"]
    for kind in KINDS:
        label = KIND_LABELS[kind]
        headers += [f"roof {label}", f"losskit {label}", "/roof", f"best peer {label}", "speedup"]
    headers += ["extra fwd", "extra f+b"]
    rows = []
    for name, entry in report["summary"].items():
        row = [name]
        for kind in KINDS:
            e = entry[kind]
            losskit = report["results"].get("losskit", {}).get(name, {}).get(kind)
            losskit_ms = cell_ms(losskit, report["settings"]["statistic"])
            best = f"{fmt_ms(e['best_peer_s'])} {e['best_peer']}" if e["best_peer"] else DASH
            row += [
                fmt_ms(e["roofline_s"]),
                losskit_ms,
                fmt_ratio(e["losskit_over_roofline"]),
                best,
                fmt_ratio(e["speedup"]),
            ]
        row += [fmt_mib(entry[k]["losskit_peak_extra_bytes"]) for k in KINDS]
        rows.append(row)
    return format_table(headers, rows)


def column_table(report: dict[str, Any], kind: str, memory: bool = False) -> str:
    """Every column's time (or peak extra memory) for one kind of call."""
    statistic = report["settings"]["statistic"]
    columns = [c for c in report["columns"] if c != "roofline" or not memory]
    rows = []
    for name in report["settings"]["losses"]:
        row = [name]
        for column in columns:
            measurement = report["results"].get(column, {}).get(name, {}).get(kind)
            if memory:
                row.append(cell_mib(measurement))
            else:
                row.append(cell_ms(measurement, column_statistic(column, statistic)))
        if memory and kind == "fwd":
            losskit = report["results"].get("losskit", {}).get(name, {}).get(kind)
            row.append(cell_mib(losskit, "rss_peak_extra_bytes"))
        rows.append(row)
    headers = ["loss", *columns]
    if memory and kind == "fwd":
        headers.append("losskit (rss)")
    return format_table(headers, rows)


def render(report: dict[str, Any]) -> str:
    """The whole printed report."""
    s, m, v = report["settings"], report["machine"], report["versions"]
    roof = report.get("roofline_bandwidth") or {}
    memory_gib = (m["memory_bytes"] or 0) / 2**30
    threads = (
        ", ".join(f"{lib} {n}" for lib, n in sorted(report.get("threads", {}).items())) or "n/a"
    )
    lines = [
        f"losskit benchmark, {report['created']}",
        f"sizes: {s['rows']} x {s['cols']} = {s['elements']} {s['dtype']} elements per input "
        f"({s['bytes_per_array'] / MIB:.1f} MiB per array)",
        f"machine: {m['cpu_model']}, {m['cpus_usable']} usable of {m['cpu_count']} CPUs, "
        f"{memory_gib:.1f} GiB, {m['os']}, kernel {m['kernel']}",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ", losskit git "
        f"{report.get('git_revision')}",
        f"threads: {threads}; load average before {report['load_average']['before']}, "
        f"after {report['load_average']['after']} (other work on the machine adds noise)",
        f"timing: {s['statistic']} of {s['repeat']} timed calls (roofline: minimum of "
        f"{s['roofline_repeat']} per thread count) after {WARMUP_CALLS} warm-up calls, "
        f"time.perf_counter; calls slower than the {s['budget_s']:g} s budget per measurement "
        "get fewer (>= 3): 'repeats' in the JSON",
    ]
    if roof:
        lines.append(
            f"roofline ({roof['loss']}): fwd reads {roof['fwd_bytes'] / MIB:.0f} MiB in "
            f"{fmt_ms(roof['fwd_s'])} ms = {roof['fwd_gbps']:.1f} GB/s "
            f"({plural(roof['fwd_threads'], 'Numba thread')}); fwd+bwd reads and writes "
            f"{roof['fwdbwd_bytes'] / MIB:.0f} MiB in {fmt_ms(roof['fwdbwd_s'])} ms = "
            f"{roof['fwdbwd_gbps']:.1f} GB/s ({plural(roof['fwdbwd_threads'], 'thread')}); "
            "each roofline is the fastest of 1..N threads"
        )
    lines += [
        "",
        f"Times in ms ({s['statistic']}; the roofline's: the minimum, the best pass the machine "
        "managed).  /roof = losskit / roofline (1.00 is the memory bound).  "
        "best peer = fastest of "
        f"{', '.join(c for c in RATIO_PEERS if c in report['columns']) or '(none run)'}; "
        "speedup = best peer / losskit (> 1: losskit is faster).  extra = losskit's peak "
        "memory beyond inputs and gradient, MiB (fwd: tracemalloc on NumPy; f+b: peak RSS).",
        "",
        main_table(report),
    ]
    for kind in KINDS:
        lines += ["", f"All columns, {KIND_LABELS[kind]}, ms:", column_table(report, kind)]
    for kind in KINDS:
        method = "tracemalloc for NumPy, else peak RSS" if kind == "fwd" else "peak RSS"
        lines += [
            "",
            f"Peak extra memory, {KIND_LABELS[kind]}, MiB ({method}; beyond the inputs"
            + (" and the gradient" if kind == "fwdbwd" else "")
            + "):",
            column_table(report, kind, memory=True),
        ]
    if "torch-nn" in report["columns"]:
        lines += ["", "torch-nn mapping (t = y_true, p = y_pred, F = torch.nn.functional):"]
        for name in s["losses"]:
            lines.append(f"  {name:<32} {torch_nn_description(name)}")
    if "optax" in report["columns"]:
        lines += ["", "optax mapping:"]
        for name in s["losses"]:
            lines.append(f"  {name:<32} {OPTAX_MAPPING.get(name, DASH + ' no optax loss')}")
    errors = [
        f"{column} {name} {KIND_LABELS[kind]}: {m_['error']}"
        for column, per_loss in report["results"].items()
        for name, kinds in per_loss.items()
        for kind, m_ in kinds.items()
        if isinstance(m_, dict) and "error" in m_
    ]
    if errors:
        lines += ["", "Errors ('err' above):", *(f"  {e}" for e in errors)]
    below = [
        f"{name} {KIND_LABELS[kind]} ({entry[kind]['losskit_over_roofline']:.2f})"
        for name, entry in report["summary"].items()
        for kind in KINDS
        if (entry[kind]["losskit_over_roofline"] or 1.0) < ROOFLINE_SLACK
    ]
    if below:
        lines += [
            "",
            "losskit measured faster than the roofline's best pass (/roof < "
            f"{ROOFLINE_SLACK:g}): the roofline passes, measured at another moment, were "
            "slowed throughout by other work on the machine (see the load average), or they "
            "do not reach the memory bound here: " + "; ".join(below),
        ]
    if report["value_mismatches"]:
        lines += [
            "",
            f"Values differing from losskit's by more than {VALUE_RTOL:g} (relative):",
            *(f"  {p}" for p in report["value_mismatches"]),
        ]
    lines += [
        "",
        f"{DASH} = no equivalent; err = failed (see Errors); n/a = not measurable here.  "
        f"Total {report['elapsed_s']:.0f} s.",
    ]
    return "\n".join(lines)


def roofline_bandwidth(
    results: dict[str, Any], losses: Sequence[str], bytes_per_array: int
) -> dict[str, Any] | None:
    """GB/s of the roofline passes of the first dense loss."""
    statistic = ROOFLINE_STATISTIC
    for name in losses:
        if name in LABEL_LOSSES:
            continue
        cells = results.get("roofline", {}).get(name, {})
        fwd, fwdbwd = seconds(cells.get("fwd"), statistic), seconds(cells.get("fwdbwd"), statistic)
        if fwd and fwdbwd:
            return {
                "loss": name,
                "fwd_threads": cells["fwd"].get("threads"),
                "fwdbwd_threads": cells["fwdbwd"].get("threads"),
                "fwd_s": fwd,
                "fwd_bytes": 2 * bytes_per_array,
                "fwd_gbps": 2 * bytes_per_array / fwd / 1e9,
                "fwdbwd_s": fwdbwd,
                "fwdbwd_bytes": 3 * bytes_per_array,
                "fwdbwd_gbps": 3 * bytes_per_array / fwdbwd / 1e9,
            }
    return None


# --- main ------------------------------------------------------------------------------


def list_everything() -> str:
    """``--list``: the losses, their inputs, the peers and the torch mapping."""
    lines = ["Losses (Keras default names; class names and aliases work too):"]
    lines += [f"  {name:<32} inputs: {input_description(name)}" for name in all_losses()]
    lines += ["", "Columns (peers: " + ", ".join(PEERS) + "):"]
    lines += [f"  {c:<13} {COLUMN_DESCRIPTIONS[c]}" for c in COLUMNS]
    lines += ["", "torch-nn mapping:"]
    for name in all_losses():
        lines.append(f"  {name:<32} {torch_nn_description(name)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker``, one column of it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        losses = parse_losses(args.losses)
        peers = parse_peers(args.peers)
    except ValueError as error:
        parser.error(str(error))
    settings = WorkerSettings(
        rows=args.rows,
        cols=args.cols,
        losses=losses,
        repeat=args.repeat,
        budget_s=args.budget,
        seed=args.seed,
    )
    if args.worker:
        return worker_main(args.worker, settings)
    if args.list:
        print(list_everything())
        return 0

    started = time.perf_counter()
    columns = [c for c in COLUMNS if c in ("roofline", "losskit") or c in peers]
    elements = args.rows * args.cols
    bytes_per_array = elements * 4
    load_before = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, dict[str, Any]] = {}
    workers: dict[str, dict[str, Any]] = {}
    for i, column in enumerate(columns, 1):
        log(f"[{i}/{len(columns)}] {column}: {COLUMN_DESCRIPTIONS[column]}")
        column_started = time.perf_counter()
        outcome = run_column(column, settings, args.in_process, args.worker_timeout)
        results[column] = outcome["results"]
        workers[column] = {
            "threads": outcome.get("threads"),
            "preference": outcome.get("preference"),
            "elapsed_s": time.perf_counter() - column_started,
            "process": "this" if args.in_process and column not in KERAS_BACKENDS else "own",
            "error": outcome.get("error"),
        }
        log(f"[{i}/{len(columns)}] {column} done in {time.perf_counter() - column_started:.1f} s")
    threads: dict[str, int] = {}
    for info in workers.values():
        threads.update(info.get("threads") or {})
    report: dict[str, Any] = {
        "schema": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(
            ["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "settings": {
            "rows": args.rows,
            "cols": args.cols,
            "elements": elements,
            "dtype": "float32",
            "bytes_per_array": bytes_per_array,
            "losses": list(losses),
            "peers": list(peers),
            "repeat": args.repeat,
            "budget_s": args.budget,
            "warmup_calls": WARMUP_CALLS,
            "seed": args.seed,
            "statistic": args.statistic,
            "roofline_repeat": roofline_repeat(args.repeat),
            "roofline_statistic": ROOFLINE_STATISTIC,
            "in_process": args.in_process,
        },
        "machine": machine_info(),
        "versions": library_versions(),
        "git_revision": git_revision(),
        "threads": threads,
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "columns": {c: COLUMN_DESCRIPTIONS[c] for c in columns},
        "workers": workers,
        "inputs": {name: input_description(name) for name in losses},
        "torch_nn_mapping": {name: TORCH_NN_MAPPING.get(name) for name in losses},
        "optax_mapping": {name: OPTAX_MAPPING.get(name) for name in losses},
        "memory_methods": {
            "tracemalloc": (
                "NumPy forward: tracemalloc peak during the call minus the traced size before"
            ),
            "rss-hwm": (
                "malloc_trim(0), VmHWM reset via /proc/self/clear_refs, call, VmHWM minus "
                "the RSS before, minus the gradient's size for fwd+bwd"
            ),
        },
        "results": results,
    }
    report["summary"] = summarize(results, losses, args.statistic)
    report["roofline_bandwidth"] = roofline_bandwidth(results, losses, bytes_per_array)
    report["value_mismatches"] = value_mismatches(results, losses)
    report["elapsed_s"] = time.perf_counter() - started
    print(render(report))
    if not args.no_json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
