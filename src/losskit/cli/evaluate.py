"""``losskit evaluate``: every Keras loss over prediction files of any size.

The files are read in batches (:mod:`losskit.cli.readers`) and each batch
updates mergeable accumulators (:mod:`losskit.streaming`), so memory stays
bounded by the batch size, whatever the size of the data.  The local engine
reads on the main thread and computes on ``jobs`` threads, each with its own
accumulators, merged at the end; the Dask engine
(:mod:`losskit.cli.dask_engine`) computes one accumulator per piece of the
files and merges them in a tree.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import functools
import io
import json
import math
import os
import queue
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from losskit.cli import readers
from losskit.cli._deps import CLIError, require
from losskit.cli.histogram import ResidualHistogram
from losskit.cli.progress import Progress
from losskit.cli.specs import LossChoice, parse_losses
from losskit.losses import Loss
from losskit.streaming import GroupedAccumulator, MultiLossAccumulator

EXAMPLE = "diabetes_predictions.csv"
# 16 MiB of float64 per column; 4x fewer batches than 2**18 saved 0.6 s of
# per-batch overhead over 10^8 rows
DEFAULT_BATCH_ROWS = 1 << 20
PROBE_ROWS = 256


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs to evaluate a piece (picklable)."""

    pieces: tuple[readers.Piece, ...]
    columns: readers.ColumnSpec
    losses: tuple[Loss, ...]
    batch_rows: int
    nan_policy: str = "raise"
    histogram: bool = False

    @property
    def grouped(self) -> bool:
        return self.columns.group_by is not None


@dataclass
class Work:
    """The accumulated result of some batches."""

    accumulator: MultiLossAccumulator | GroupedAccumulator
    histogram: ResidualHistogram | None = None
    rows: int = 0
    skipped: int = 0
    nbytes: int = 0

    @classmethod
    def empty(cls, plan: Plan) -> Work:
        accumulator: MultiLossAccumulator | GroupedAccumulator
        if plan.grouped:
            accumulator = GroupedAccumulator(list(plan.losses))
        else:
            accumulator = MultiLossAccumulator(list(plan.losses))
        return cls(accumulator, ResidualHistogram() if plan.histogram else None)

    def update(self, batch: readers.Batch) -> None:
        try:
            if isinstance(self.accumulator, GroupedAccumulator):
                self.accumulator.update(
                    batch.y_true,
                    batch.y_pred,
                    sample_weight=batch.sample_weight,
                    groups=batch.groups,
                    group_keys=batch.group_keys,
                )
            else:
                self.accumulator.update(
                    batch.y_true, batch.y_pred, sample_weight=batch.sample_weight
                )
        except (ValueError, TypeError) as error:
            last = batch.first_row + batch.rows + batch.skipped
            raise readers.InputError(
                f"{batch.path}, rows {batch.first_row + 1}-{last}: {error}"
            ) from None
        if self.histogram is not None:
            self.histogram.update(batch.y_true, batch.y_pred, batch.groups, batch.group_keys)
        self.rows += batch.rows
        self.skipped += batch.skipped
        self.nbytes += batch.nbytes

    def merge(self, other: Work) -> Work:
        self.accumulator.merge(other.accumulator)  # type: ignore[arg-type]
        if self.histogram is not None and other.histogram is not None:
            self.histogram.merge(other.histogram)
        self.rows += other.rows
        self.skipped += other.skipped
        self.nbytes += other.nbytes
        return self


@functools.cache
def tune_allocator() -> None:
    """Keep freed batch buffers in the heap (glibc on Linux).

    Each batch allocates and frees temporaries of a few megabytes; glibc's
    defaults return them to the system and fault them back in on every batch,
    which costs as much as the arithmetic.  Raising the mmap and trim
    thresholds keeps them for reuse: the peak memory is the same, and it
    stays bounded (at most ``_TRIM`` bytes are kept free).  pyarrow decodes
    into the same heap (its own allocator keeps freed pages per decoding
    thread, so resident memory crept up with the number of row groups, and
    releasing them after each group cost a third of the reading time).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import pyarrow
    except ImportError:  # .npy input needs no pyarrow
        pass
    else:
        pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM)
    except (OSError, AttributeError):  # not glibc
        pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP, _TRIM = 32 << 20, 128 << 20


def evaluate_piece(
    plan: Plan, piece: readers.Piece, on_batch: Callable[[readers.Batch], None] | None = None
) -> Work:
    """Read one piece and accumulate it."""
    tune_allocator()
    work = Work.empty(plan)
    for batch in readers.read_piece(piece, plan.columns, plan.batch_rows, plan.nan_policy):
        work.update(batch)
        if on_batch is not None:
            on_batch(batch)
    return work


def iter_batches(plan: Plan) -> Iterator[readers.Batch]:
    for piece in plan.pieces:
        yield from readers.read_piece(piece, plan.columns, plan.batch_rows, plan.nan_policy)


def _one_kernel_thread() -> None:
    """Make the fused kernels called from this thread single-threaded (Numba's
    setting is per calling thread): the batches already run in parallel, and
    nested threads oversubscribe the cores (3.3 s instead of 2.8 s for the
    regression set over 10^8 rows on 2 cores)."""
    from losskit import kernels

    if kernels.available():
        import numba

        numba.set_num_threads(1)


def run_local(plan: Plan, jobs: int = 1, progress: Progress | None = None) -> Work:
    """Evaluate on this machine: read here, compute on ``jobs`` threads."""
    tune_allocator()
    if jobs <= 1:
        work = Work.empty(plan)
        for batch in iter_batches(plan):
            work.update(batch)
            if progress is not None:
                progress.advance(batch.rows + batch.skipped, batch.nbytes)
        return work
    works = [Work.empty(plan) for _ in range(jobs)]
    pending: queue.Queue[readers.Batch | None] = queue.Queue(maxsize=jobs)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def compute(work: Work) -> None:
        _one_kernel_thread()
        while True:
            batch = pending.get()
            if batch is None:
                return
            if errors:
                continue  # drain
            try:
                work.update(batch)
            except BaseException as error:
                errors.append(error)
                continue
            if progress is not None:
                with lock:
                    progress.advance(batch.rows + batch.skipped, batch.nbytes)

    threads = [threading.Thread(target=compute, args=(w,), daemon=True) for w in works]
    for thread in threads:
        thread.start()
    try:
        for batch in iter_batches(plan):
            if errors:
                break
            pending.put(batch)
    finally:
        for _ in threads:
            pending.put(None)
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    total = works[0]
    for work in works[1:]:
        total.merge(work)
    return total


# -- choosing the losses ---------------------------------------------------------


def select_losses(
    choices: Sequence[LossChoice],
    pieces: Sequence[readers.Piece],
    columns: readers.ColumnSpec,
    nan_policy: str,
) -> tuple[list[Loss], dict[str, str]]:
    """Drop the optional losses (from a family or ``all``) that do not apply
    to these columns, judged on the first rows; say why."""
    optional = [c for c in choices if c.optional]
    if not optional:
        return [c.loss for c in choices], {}
    probe = _first_batch(pieces, columns, nan_policy)
    kept, skipped = [], {}
    for choice in choices:
        if choice.optional and probe is not None:
            reason = _inapplicable(choice.loss, probe)
            if reason:
                skipped[choice.name] = reason
                continue
        kept.append(choice.loss)
    if not kept:
        raise CLIError(
            "None of the losses applies to these columns: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    return kept, skipped


def _first_batch(
    pieces: Sequence[readers.Piece], columns: readers.ColumnSpec, nan_policy: str
) -> readers.Batch | None:
    for piece in pieces:
        for batch in readers.read_piece(piece, columns, PROBE_ROWS, nan_policy):
            if batch.rows:
                return batch
    return None


def _inapplicable(loss: Loss, batch: readers.Batch) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            MultiLossAccumulator([loss]).update(
                batch.y_true, batch.y_pred, sample_weight=batch.sample_weight
            )
    except (ValueError, TypeError, Warning) as error:
        return str(error)
    return None


# -- the report -----------------------------------------------------------------


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def group_label(key: Hashable) -> str:
    if key is None:
        return "null"
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


def build_report(
    work: Work,
    plan: Plan,
    files: Sequence[str],
    skipped_losses: dict[str, str],
    engine: str,
    example: bool,
) -> dict[str, Any]:
    """The result as a JSON-ready dict."""
    accumulator = work.accumulator
    if isinstance(accumulator, GroupedAccumulator):
        overall = accumulator.combined().result()
    else:
        overall = accumulator.result()
    report: dict[str, Any] = {
        "losses": {name: _number(value) for name, value in overall.items()},
        "rows": work.rows,
        "skipped_rows": work.skipped,
        "files": list(files),
        "example": example,
        "columns": {
            "y_true": list(plan.columns.y_true),
            "y_pred": list(plan.columns.y_pred),
            "sample_weight": plan.columns.sample_weight,
            "group_by": plan.columns.group_by,
        },
        "reduction": {loss.name: loss.reduction for loss in plan.losses},
        "dtype": "float64",
        "engine": engine,
        "nan_policy": plan.nan_policy,
        "skipped_losses": skipped_losses,
    }
    if isinstance(accumulator, GroupedAccumulator):
        samples = accumulator.samples
        report["groups"] = {
            group_label(key): {
                "losses": {name: _number(value) for name, value in values.items()},
                "rows": samples[key],
            }
            for key, values in accumulator.result().items()
        }
    return report


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "csv":
        return _render_csv(report)
    return _render_table(report)


def _render_csv(report: dict[str, Any]) -> str:
    names = list(report["losses"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    grouped = "groups" in report
    head = ["scope", "group"] if grouped else []
    writer.writerow([*head, "rows", *names])

    def line(losses_: dict[str, float | None]) -> list[str]:
        return ["" if losses_[n] is None else repr(losses_[n]) for n in names]

    writer.writerow([*(["all", ""] if grouped else []), report["rows"], *line(report["losses"])])
    for key, group in report.get("groups", {}).items():
        writer.writerow(["group", key, group["rows"], *line(group["losses"])])
    return out.getvalue()


def _format_value(value: float | None) -> str:
    return "nan" if value is None else f"{value:.6g}"


def _render_table(report: dict[str, Any]) -> str:
    groups = report.get("groups", {})
    notes = [f"{report['rows']:,} rows"]
    if report["skipped_rows"]:
        notes.append(f"{report['skipped_rows']:,} rows skipped (missing or infinite values)")
    sources = "bundled example data (diabetes)" if report["example"] else ", ".join(report["files"])
    if len(sources) > 120:
        sources = f"{len(report['files'])} files"
    notes.append(f"from {sources}")
    notes.append("float64; Keras's default reduction (sum_over_batch_size)")
    try:
        table_module = require("rich.table")
        console_module = require("rich.console")
    except CLIError:
        table_module = None
    if table_module is None:
        return _plain_table(report, groups, notes)
    table = table_module.Table(title="losskit evaluate", title_justify="left")
    table.add_column("loss (Keras name)")
    table.add_column("all" if groups else "value", justify="right")
    for key in groups:
        table.add_column(f"{key}", justify="right")
    for name, value in report["losses"].items():
        cells = [_format_value(value)]
        cells += [_format_value(g["losses"][name]) for g in groups.values()]
        table.add_row(name, *cells)
    if groups:
        table.add_row("rows", f"{report['rows']:,}", *(f"{g['rows']:,}" for g in groups.values()))
    out = io.StringIO()
    console = console_module.Console(file=out, width=max(100, 24 + 14 * (len(groups) + 1)))
    console.print(table)
    console.print("; ".join(notes), highlight=False, soft_wrap=True)
    for name, reason in report["skipped_losses"].items():
        console.print(f"skipped {name}: {reason}", highlight=False, soft_wrap=True)
    return out.getvalue()


def _plain_table(report: dict[str, Any], groups: dict[str, Any], notes: list[str]) -> str:
    lines = []
    header = ["loss", "all" if groups else "value", *groups]
    lines.append("\t".join(header))
    for name, value in report["losses"].items():
        cells = [_format_value(value)] + [_format_value(g["losses"][name]) for g in groups.values()]
        lines.append("\t".join([name, *cells]))
    lines.append("; ".join(notes))
    return "\n".join(lines) + "\n"


def write_output(text: str, path: str | None) -> None:
    """Print, or write ``path`` atomically (never a partial file)."""
    if path is None:
        print(text, end="")
        return
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".losskit-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# -- the command ---------------------------------------------------------------------


def _columns(text: str, option: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise CLIError(f"{option} needs a column name.")
    return names


@dataclass
class Options:
    paths: list[str] = field(default_factory=list)
    y_true: str = "y_true"
    y_pred: str = "y_pred"
    sample_weight: str | None = None
    group_by: str | None = None
    loss: str | None = None
    format: str = "table"
    output: str | None = None
    engine: str | None = None
    scheduler: str | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS
    nan_policy: str = "raise"
    plot: str | None = None
    jobs: int | None = None
    dask_workers: int | None = None
    progress: bool | None = None


def example_path() -> Any:
    """The bundled example data set (a context manager giving a path)."""
    return resources.as_file(resources.files("losskit") / "data" / EXAMPLE)


def run(
    options: Options, on_piece_start: Callable[[readers.Piece], None] | None = None
) -> dict[str, Any]:
    """Evaluate as ``options`` say; return the report (nothing is printed)."""
    require("pyarrow")
    with contextlib.ExitStack() as stack:
        example = not options.paths
        paths = options.paths or [str(stack.enter_context(example_path()))]
        files = readers.find_files(paths)
        columns = readers.ColumnSpec(
            _columns(options.y_true, "--y-true"),
            _columns(options.y_pred, "--y-pred"),
            options.sample_weight,
            options.group_by,
        )
        if options.batch_rows < 1:
            raise CLIError(f"--batch-rows must be >= 1; received {options.batch_rows}.")
        pieces = readers.plan(files, columns, options.batch_rows)
        chosen, skipped = select_losses(
            parse_losses(options.loss), pieces, columns, options.nan_policy
        )
        plan = Plan(
            tuple(pieces),
            columns,
            tuple(chosen),
            options.batch_rows,
            options.nan_policy,
            histogram=options.plot is not None,
        )
        engine = options.engine or ("dask" if options.scheduler else "local")
        if options.scheduler and engine != "dask":
            raise CLIError("--scheduler needs --engine dask (or no --engine).")
        total_bytes = sum(p.nbytes for p in pieces)
        with Progress(total_bytes, options.progress) as progress:
            if engine == "dask":
                from losskit.cli.dask_engine import run_dask

                work = run_dask(
                    plan,
                    scheduler=options.scheduler,
                    workers=options.dask_workers,
                    progress=progress,
                    on_piece_start=on_piece_start,
                )
            else:
                # The main thread reads; the others compute.
                jobs = options.jobs or min(4, (os.cpu_count() or 1) + 1)
                work = run_local(plan, jobs=jobs, progress=progress)
        if work.rows == 0:
            detail = f" ({work.skipped} skipped by --nan-policy omit)" if work.skipped else ""
            raise CLIError(f"No rows to evaluate{detail}.")
        shown = [os.path.basename(f) for f in files] if example else files
        report = build_report(work, plan, shown, skipped, engine, example)
        if options.plot:
            from losskit.cli.plot import plot_evaluation

            assert work.histogram is not None
            plot_evaluation(report, work.histogram, options.plot)
        return report


def main(options: Options) -> int:
    report = run(options)
    write_output(render(report, options.format), options.output)
    return 0
