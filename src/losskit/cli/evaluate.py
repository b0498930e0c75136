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
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from losskit.cli import readers
from losskit.cli._deps import CLIError, require
from losskit.cli.engine import Plan, Work, group_labels, run_local
from losskit.cli.output import prepare_output
from losskit.cli.progress import Progress
from losskit.cli.specs import LossChoice, parse_losses
from losskit.losses import Loss
from losskit.streaming import GroupedAccumulator, MultiLossAccumulator

EXAMPLE = "diabetes_predictions.csv"
# 16 MiB of float64 per column; 4x fewer batches than 2**18 saved 0.6 s of
# per-batch overhead over 10^8 rows
DEFAULT_BATCH_ROWS = 1 << 20
PROBE_ROWS = 256


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
        results = accumulator.result()
        labels = group_labels(results)
        report["groups"] = {
            labels[key]: {
                "losses": {name: _number(value) for name, value in values.items()},
                "rows": samples[key],
            }
            for key, values in results.items()
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
    """Print, or write ``path`` (atomically if it is a regular file; see
    :mod:`losskit.cli.output`)."""
    output = prepare_output(path)
    try:
        output.write(text)
    finally:
        output.close()


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


def _check_plot(path: str) -> None:
    """Fail at once, not after the evaluation, on a ``--plot`` that cannot be
    written."""
    from losskit.cli.plot import FORMATS

    if not path.lower().endswith(FORMATS):
        raise CLIError(f"--plot {path!r}: give a file ending in {', '.join(FORMATS)}.")
    directory = os.path.dirname(path) or os.curdir
    if not os.path.isdir(directory):
        raise CLIError(f"--plot {path!r}: the directory {directory!r} does not exist.")


def main(options: Options) -> int:
    """Run ``losskit evaluate``: check the outputs, evaluate, write the result."""
    output = prepare_output(options.output)  # before any input is read
    try:
        if options.plot:
            _check_plot(options.plot)
        report = run(options)
        output.write(render(report, options.format))
    finally:
        output.close()
    return 0
