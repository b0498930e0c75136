"""``losskit evaluate``: every Keras loss over prediction files of any size.

The files are read in batches (:mod:`losskit.cli.readers`) and each batch
updates mergeable accumulators (:mod:`losskit.streaming`), so memory stays
bounded by the batch size, whatever the size of the data.  The local engine
reads on the main thread and computes on ``jobs`` threads, which add their
batches into one shared accumulator (its additions taking turns); the Dask engine
(:mod:`losskit.cli.dask_engine`) computes one accumulator per piece of the
files and merges them in a tree.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

import numpy as np

from losskit.cli import domains, readers, standard_input
from losskit.cli._deps import CLIError, UsageError, require
from losskit.cli.engine import (
    CONTROL_CHARACTERS,
    Plan,
    Work,
    group_labels,
    kernels_pay_off,
    run_local,
    text_labels,
)
from losskit.cli.output import (
    STDOUT_PATH,
    Output,
    check_not_an_input,
    prepare_output,
    same_file,
)
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
    by_reason: dict[str, list[str]] = {}  # each message without the loss's name in front
    for choice in choices:
        if choice.optional and probe is not None:
            reason = _inapplicable(choice.loss, probe)
            if reason:
                skipped[choice.name] = reason
                by_reason.setdefault(re.sub(r"^\w+: ", "", reason), []).append(choice.name)
                continue
        kept.append(choice.loss)
    if not kept:
        # One line per distinct reason, not the same shape error seven times.
        raise CLIError(
            "None of the losses applies to these columns: "
            + "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())
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
    columnar: bool = False,
) -> dict[str, Any]:
    """The result as a JSON-ready dict (``columnar``: with the groups as
    :class:`GroupColumns`, which :func:`render` takes too)."""
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
        "domain_warnings": domain_warnings(work),
    }
    if isinstance(accumulator, GroupedAccumulator):
        groups = GroupColumns.of(accumulator)
        report["groups"] = groups if columnar else groups.as_dicts()
    return report


@dataclass
class GroupColumns:
    """Each group's results as columns, in the order of the output: rendered
    without a Python object per value (10^6 groups of 7 losses are 7 * 10^6
    numbers; dicts and ``float.__repr__`` for each took most of the time)."""

    # Each group's label (see engine.group_label): a list of text, or for
    # integer keys and plain text keys an Arrow string array (10^6 Python
    # strings and the dict labelling them took a quarter of a grouped run);
    # its number of rows.
    labels: Any
    rows: np.ndarray
    values: dict[str, np.ndarray]

    @classmethod
    def of(cls, accumulator: GroupedAccumulator) -> GroupColumns:
        table = accumulator.integer_table()
        if table is not None:
            pa, pc = require("pyarrow"), require("pyarrow.compute")
            integers, samples, values = table
            return cls(pc.cast(pa.array(integers), pa.string()), samples, values)
        keys, samples, values = accumulator.table()
        texts = text_labels(keys)
        if texts is not None:
            return cls(texts, samples, values)
        labels = group_labels(keys)
        return cls([labels[key] for key in keys], samples, values)

    @classmethod
    def from_dicts(cls, groups: dict[str, Any], names: Sequence[str]) -> GroupColumns:
        values = {
            name: np.array(
                [
                    math.nan if g["losses"][name] is None else g["losses"][name]
                    for g in groups.values()
                ],
                dtype=np.float64,
            )
            for name in names
        }
        rows = np.array([g["rows"] for g in groups.values()], dtype=np.int64)
        return cls(list(groups), rows, values)

    def __len__(self) -> int:
        return len(self.labels)

    def as_dicts(self) -> dict[str, Any]:
        """``{label: {"losses": {name: value or None}, "rows": n}}``."""
        names = list(self.values)
        columns = [_numbers(self.values[name]) for name in names]
        return {
            label: {"losses": dict(zip(names, losses_, strict=True)), "rows": rows}
            for label, losses_, rows in zip(
                self.texts(), zip(*columns, strict=True), self.rows.tolist(), strict=True
            )
        }

    def texts(self) -> list[str]:
        """The labels as Python text."""
        return self.labels if isinstance(self.labels, list) else self.labels.to_pylist()

    def arrow_labels(
        self, quoted: Callable[[list[str]], list[str]], json_keys: bool = False
    ) -> Any:
        """The labels as an Arrow string array, each passed through
        ``quoted`` (JSON or CSV quoting).  An Arrow array of labels that
        need no escaping (checked at once: integers never do, most text
        does not) only gets the double quotes of ``json_keys``."""
        pa, pc = require("pyarrow"), require("pyarrow.compute")
        labels = self.labels
        if not isinstance(labels, list):
            escaping = _JSON_ESCAPED if json_keys else _CSV_QUOTED
            if not pc.any(pc.match_substring_regex(labels, escaping)).as_py():
                return pc.binary_join_element_wise('"', labels, '"', "") if json_keys else labels
            labels = labels.to_pylist()
        return pa.array(quoted(labels), pa.string())


# What makes a label need more than plain double quotes as a JSON string
# (see _json_strings), or quotes in a CSV field (see _csv_fields).
_JSON_ESCAPED = r'[^ -~]|["\\]'
_CSV_QUOTED = '[,"\r\n]'


def _numbers(values: Any) -> list[float | None]:
    """The values as Python floats, None where not finite (NaN, inf)."""
    listed: list[float | None] = values.tolist()
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        listed[i] = None
    return listed


def domain_warnings(work: Work) -> dict[str, dict[str, Any]]:
    """Each loss with rows outside its domain: their number and what was wrong."""
    if work.domains is None:
        return {}
    return {
        name: {"rows": rows, "problems": problems}
        for name, (rows, problems) in work.domains.violations().items()
    }


def domain_messages(report: dict[str, Any], strict: bool = False) -> list[str]:
    return [
        domains.describe(name, w["rows"], report["rows"], w["problems"], strict)
        for name, w in report["domain_warnings"].items()
    ]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while building or rendering a report:
    its million dicts (one per group) hold no cycles, but each allocation
    batch triggered a collection that walked all of them again (5 s for
    10^6 groups, most of the work)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def render(report: dict[str, Any], fmt: str) -> str:
    with _gc_paused():
        return _render(report, fmt)


def _render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return _render_json(report)
    if fmt == "csv":
        return _render_csv(report)
    return _render_table(report)


def _group_columns(report: dict[str, Any]) -> GroupColumns | None:
    groups = report.get("groups")
    if groups is None or isinstance(groups, GroupColumns):
        return groups
    return GroupColumns.from_dicts(groups, list(report["losses"]))


def _render_json(report: dict[str, Any]) -> str:
    """The report as indented JSON, each group on one line (the indenting
    encoder is pure Python: a minute for 10^6 groups)."""
    groups = _group_columns(report)
    if not groups:
        plain = report if groups is None else {**report, "groups": {}}
        return json.dumps(plain, indent=2) + "\n"
    head = json.dumps({k: v for k, v in report.items() if k != "groups"}, indent=2)
    labels = groups.arrow_labels(_json_strings, json_keys=True)
    names = [json.dumps(name) for name in groups.values]
    separator = ",\n    "

    def lines(start: int, stop: int) -> str:
        pa, pc = require("pyarrow"), require("pyarrow.compute")
        parts: list[Any] = [labels[start:stop], ': {"losses": {']
        for i, (name, values) in enumerate(zip(names, groups.values.values(), strict=True)):
            parts += [(", " if i else "") + name + ": ", _number_texts(values[start:stop], "null")]
        rows = pc.cast(pa.array(groups.rows[start:stop], pa.int64()), pa.string())
        parts += ['}, "rows": ', rows, "}" + separator]
        return _concatenated(pc.binary_join_element_wise(*parts, ""))

    body = _by_slices(len(groups), lines)[: -len(separator)]
    return f'{head[:-2]},\n  "groups": {{\n    {body}\n  }}\n}}\n'


def _json_strings(texts: list[str]) -> list[str]:
    """Each text as a JSON string (checked all at once: most labels need no
    escaping)."""
    joined = "".join(texts)
    if joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined:
        return [f'"{text}"' for text in texts]
    return [json.dumps(text) for text in texts]


def _number_texts(values: np.ndarray, missing: str) -> Any:
    """Each value as the shortest text that reads back as the same float64
    (by Arrow: ``float.__repr__`` per value took seconds for 10^6 groups),
    ``missing`` where not finite; integral values keep a ``.0``."""
    pa, pc = require("pyarrow"), require("pyarrow.compute")
    finite = np.isfinite(values)
    text = pc.cast(pa.array(np.where(finite, values, 0.0)), pa.string())
    # Arrow writes integral values without a point ("3", but "1e+16"); other
    # values always have a point or an exponent, so most columns skip this
    with np.errstate(invalid="ignore"):
        if (values == np.trunc(values)).any() or not finite.all():
            integral = pc.invert(pc.match_substring_regex(text, r"[.en]"))
            text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
    if finite.all():
        return text
    return pc.if_else(pa.array(finite), text, missing)


def _render_csv(report: dict[str, Any]) -> str:
    names = list(report["losses"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    groups = _group_columns(report)
    grouped = groups is not None
    head = ["scope", "group"] if grouped else []
    writer.writerow([*head, "rows", *names])
    overall = report["losses"]
    line = ["" if overall[n] is None else repr(overall[n]) for n in names]
    writer.writerow([*(["all", ""] if grouped else []), report["rows"], *line])
    if groups:
        labels = groups.arrow_labels(_csv_fields)

        def lines(start: int, stop: int) -> str:
            pa, pc = require("pyarrow"), require("pyarrow.compute")
            rows = pc.cast(pa.array(groups.rows[start:stop], pa.int64()), pa.string())
            texts = [_number_texts(groups.values[n][start:stop], "") for n in names]
            # each line starts with the line break that ends the one before
            return _concatenated(
                pc.binary_join_element_wise("\ngroup", labels[start:stop], rows, *texts, ",")
            )

        return out.getvalue()[:-1] + _by_slices(len(groups), lines) + "\n"
    return out.getvalue()


# Groups rendered per thread at least: Arrow's casts and joins release the
# GIL, so the slices of 10^6 groups render on every core (7 * 10^6 numbers
# to text took 0.45 s on one of 2 cores, 0.24 s on both).
_RENDER_SLICE_GROUPS = 1 << 17


def _by_slices(n: int, render_slice: Callable[[int, int], str]) -> str:
    """``render_slice(start, stop)`` over consecutive slices of ``range(n)``,
    on as many threads as there are cores (one slice for small ``n``), joined."""
    slices = max(1, min(os.cpu_count() or 1, n // _RENDER_SLICE_GROUPS))
    bounds = [n * i // slices for i in range(slices + 1)]
    if slices == 1:
        return render_slice(0, n)
    with ThreadPoolExecutor(slices) as pool:
        return "".join(pool.map(render_slice, bounds[:-1], bounds[1:]))


def _concatenated(texts: Any) -> str:
    """The strings of an Arrow string array, one after another: its data
    buffer, decoded at once rather than as a Python string per line."""
    pa = require("pyarrow")
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if len(texts) == 0:
        return ""
    wide = pa.types.is_large_string(texts.type)
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64 if wide else np.int32)
    start, stop = int(offsets[texts.offset]), int(offsets[texts.offset + len(texts)])
    return str(memoryview(texts.buffers()[2])[start:stop], "utf-8")


def _csv_fields(texts: list[str]) -> list[str]:
    """Each text quoted as the csv module quotes, only where it must (checked
    all at once: most labels need no quotes)."""
    joined = "".join(texts)
    if not any(c in joined for c in ',"\r\n'):
        return texts
    return [
        '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text
        for text in texts
    ]


def _format_value(value: float | None) -> str:
    return "nan" if value is None else f"{value:.6g}"


# Up to this many groups, the table has a column per group (a row per loss,
# as without groups); with more, a line per group (see _long_table).
TABLE_GROUP_COLUMNS = 8


def _render_table(report: dict[str, Any]) -> str:
    notes = _table_notes(report)
    columns = _group_columns(report)
    if columns is not None and len(columns) > TABLE_GROUP_COLUMNS:
        return _long_table(report, columns, notes)
    groups = columns.as_dicts() if columns is not None else {}
    try:
        table_module = require("rich.table")
        console_module = require("rich.console")
        text_module = require("rich.text")
    except CLIError:
        table_module = None
    if table_module is None:
        return _plain_table(report, groups, notes)
    # Text objects: labels, loss names and file names are shown as they are,
    # never read as markup ("[/]" raised, "[bold]x" was styled).
    plain = text_module.Text
    table = table_module.Table(title="losskit evaluate", title_justify="left")
    table.add_column("loss (Keras name)")
    table.add_column("all" if groups else "value", justify="right")
    for key in groups:
        table.add_column(plain(_one_line_label(key)), justify="right")
    for name, value in report["losses"].items():
        cells = [_format_value(value)]
        cells += [_format_value(g["losses"][name]) for g in groups.values()]
        table.add_row(plain(_one_line_label(name)), *cells)
    if groups:
        table.add_row("rows", f"{report['rows']:,}", *(f"{g['rows']:,}" for g in groups.values()))
    out = io.StringIO()
    console = console_module.Console(file=out, width=max(100, 24 + 14 * (len(groups) + 1)))
    console.print(table)
    console.print(plain("; ".join(notes)), highlight=False, soft_wrap=True)
    for name, reason in report["skipped_losses"].items():
        console.print(plain(f"skipped {name}: {reason}"), highlight=False, soft_wrap=True)
    return out.getvalue()


def _one_line_label(text: str) -> str:
    """``text``, or as a JSON string where it has a control character (a line
    break, an escape sequence that would clear the screen) or would be taken
    for something else: blank, or ``all`` (the column of all rows)."""
    return json.dumps(text) if _quoted_in_tables(text) else text


def _quoted_in_tables(text: str) -> bool:
    return bool(re.search(CONTROL_CHARACTERS, text)) or not text.strip() or text == "all"


def _table_notes(report: dict[str, Any]) -> list[str]:
    """What the table's last line says: rows, skipped rows, sources, dtype."""
    notes = [f"{report['rows']:,} rows"]
    if report["skipped_rows"]:
        notes.append(f"{report['skipped_rows']:,} rows skipped (missing or infinite values)")
    sources = "bundled example data (diabetes)" if report["example"] else ", ".join(report["files"])
    if len(sources) > 120:
        sources = f"{len(report['files'])} files"
    notes.append(f"from {sources}")
    notes.append("float64; Keras's default reduction (sum_over_batch_size)")
    return notes


def _long_table(report: dict[str, Any], groups: GroupColumns, notes: list[str]) -> str:
    """A line per group (``all`` first): its label, rows and each loss, in
    aligned columns, the numbers as in the CSV output (``nan`` where not
    finite), assembled by Arrow.  With a column per group, 10^5 groups made
    lines of 1.4 million characters, cut by the terminal, in 16 s."""
    pa, pc = require("pyarrow"), require("pyarrow.compute")
    names = list(report["losses"])
    overall = [report["losses"][name] for name in names]
    labels = pa.concat_arrays([pa.array(["all"]), _table_labels(groups)])
    rows = np.concatenate([[report["rows"]], groups.rows]).astype(np.int64)
    columns = [("group", labels, False), ("rows", pc.cast(pa.array(rows), pa.string()), True)]
    for name, value in zip(names, overall, strict=True):
        values = np.concatenate([[math.nan if value is None else value], groups.values[name]])
        columns.append((name, _number_texts(values, "nan"), True))
    header, cells = [], []
    for title, texts, right in columns:
        width = max(len(title), pc.max(pc.utf8_length(texts)).as_py() or 0)
        pad = pc.utf8_lpad if right else pc.utf8_rpad
        header.append(title.rjust(width) if right else title.ljust(width))
        cells.append(pad(texts, width=width, padding=" "))
    lines = pc.binary_join_element_wise(*cells, "  ")
    body = _concatenated(pc.binary_join_element_wise(lines, "\n", ""))
    skipped = [f"skipped {name}: {reason}\n" for name, reason in report["skipped_losses"].items()]
    title = f"losskit evaluate\n{'  '.join(header).rstrip()}\n"
    return "".join([title, body, "; ".join(notes), "\n", *skipped])


def _table_labels(groups: GroupColumns) -> Any:
    """The labels as an Arrow string array, a label with a control character
    (a line break in a text key) written as a JSON string, so that each group
    keeps one line."""
    pa, pc = require("pyarrow"), require("pyarrow.compute")
    labels = groups.labels if not isinstance(groups.labels, list) else pa.array(groups.labels)
    labels = labels.cast(pa.string())
    odd = pc.or_(
        pc.match_substring_regex(labels, CONTROL_CHARACTERS),
        pc.match_substring_regex(labels, r"^(\s*|all)$"),
    )
    if not pc.any(odd).as_py():
        return labels
    return pa.array([_one_line_label(text) for text in labels.to_pylist()], pa.string())


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
    """The column names of a comma-separated list (blanks around each name
    ignored); an empty name is a usage error, as an empty --loss item is
    (``t0,,t1`` was read as ``t0,t1``)."""
    names = tuple(n.strip() for n in text.split(","))
    if not any(names):
        raise UsageError(f"{option} {text!r}: give a column name.")
    if not all(names):
        raise UsageError(
            f"{option} {text!r}: an empty column name (two commas in a row, or one at "
            "an end); give the names separated by single commas."
        )
    return names


def _optional_column(text: str | None, option: str) -> str | None:
    """A single column name, or None where the option is not given; an
    empty one is an error (``--sample-weight "$UNSET"`` ran unweighted while
    the report named the weights '')."""
    if text is None:
        return None
    if not text.strip():
        raise UsageError(f"{option} {text!r}: give a column name.")
    return text


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
    strict: bool = False


def example_path() -> Any:
    """The bundled example data set (a context manager giving a path)."""
    return resources.as_file(resources.files("losskit") / "data" / EXAMPLE)


def _planned(options: Options, files: list[str]) -> tuple[Plan, dict[str, str]]:
    """The plan of the evaluation, and the losses left out with why."""
    columns = readers.ColumnSpec(
        _columns(options.y_true, "--y-true"),
        _columns(options.y_pred, "--y-pred"),
        _optional_column(options.sample_weight, "--sample-weight"),
        _optional_column(options.group_by, "--group-by"),
    )
    if options.batch_rows < 1:
        raise CLIError(f"--batch-rows must be >= 1; received {options.batch_rows}.")
    pieces = readers.plan(files, columns, options.batch_rows)
    chosen, skipped = select_losses(parse_losses(options.loss), pieces, columns, options.nan_policy)
    plan = Plan(
        tuple(pieces),
        columns,
        tuple(chosen),
        options.batch_rows,
        options.nan_policy,
        histogram=options.plot is not None,
    )
    return plan, skipped


def uses_kernels(options: Options) -> bool:
    """Whether :func:`run` with these options (files named in ``paths``, the
    local engine) will compute on the Numba kernels, by
    :func:`~losskit.cli.engine.kernels_pay_off`: for a benchmark that imports
    what the command imports, before its clock."""
    plan, _ = _planned(options, readers.find_files(options.paths))
    return kernels_pay_off(plan)


def run(
    options: Options,
    on_piece_start: Callable[[readers.Piece], None] | None = None,
    columnar: bool = False,
    figure: Output | None = None,
) -> dict[str, Any]:
    """Evaluate as ``options`` say; return the report (nothing is printed;
    ``columnar``: groups as :class:`GroupColumns`, for :func:`render`).
    With ``--plot``, the figure is staged in ``figure`` (for the caller to
    commit), or written to its file where ``figure`` is None."""
    require("pyarrow")
    if options.plot and figure is None:
        figure = prepare_output(options.plot, "--plot")
        try:
            report = _run_inputs(options, on_piece_start, columnar, figure)
            figure.commit()
            return report
        finally:
            figure.close()
    return _run_inputs(options, on_piece_start, columnar, figure)


def _run_inputs(
    options: Options,
    on_piece_start: Callable[[readers.Piece], None] | None,
    columnar: bool,
    figure: Output | None,
) -> dict[str, Any]:
    """:func:`run` over the files named, the example, or standard input."""
    if options.scheduler is not None and not options.scheduler.strip():
        raise UsageError(
            "--scheduler '': give a Dask scheduler's address, such as tcp://HOST:8786."
        )
    standard_input.check_paths(options.paths, options.scheduler)
    with contextlib.ExitStack() as stack:
        example = not options.paths
        paths = options.paths or [str(stack.enter_context(example_path()))]
        if standard_input.STDIN_PATH not in paths:
            return _run(options, paths, example, on_piece_start, columnar, figure)
        parse_losses(options.loss)  # a bad --loss fails before stdin is copied
        redirected = standard_input.identity()  # stdin as a file (< data.csv)
        _check_not_inputs(options, [], redirected)
        named = [p for p in paths if p != standard_input.STDIN_PATH]
        if redirected and redirected in readers.file_identities(named):
            return _run(options, named, example, on_piece_start, columnar, figure)  # read once
        copy = stack.enter_context(standard_input.spooled())
        paths = [copy if p == standard_input.STDIN_PATH else p for p in paths]
        try:
            return _run(options, paths, example, on_piece_start, columnar, figure, copy)
        except CLIError as error:
            error.args = (standard_input.renamed(str(error), copy),)
            raise


def _check_not_inputs(
    options: Options, files: list[str], stdin: tuple[int, int] | None = None
) -> None:
    """Neither the result nor the figure may replace an input file."""
    check_not_an_input(options.output, files, stdin)
    check_not_an_input(options.plot, files, stdin, "--plot")


def _run(
    options: Options,
    paths: list[str],
    example: bool,
    on_piece_start: Callable[[readers.Piece], None] | None,
    columnar: bool,
    figure: Output | None,
    stdin_copy: str | None = None,
) -> dict[str, Any]:
    files = readers.find_files(paths)
    _check_not_inputs(options, files)
    plan, skipped = _planned(options, files)
    engine = options.engine or ("dask" if options.scheduler else "local")
    if options.scheduler and engine != "dask":
        raise CLIError("--scheduler needs --engine dask (or no --engine).")
    total_bytes = sum(p.nbytes for p in plan.pieces)
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
            # The main thread reads; the others compute.  Grouped, the
            # main thread does both: the threads share one accumulator
            # whose additions are serialised, and each batch in flight
            # holds its groups' sums (10^6 groups, 7 losses: 2.3-2.5 s on
            # one thread, 2.7-3.1 s and 0.25 GB more on three).
            default = 1 if plan.grouped else min(4, (os.cpu_count() or 1) + 1)
            jobs = options.jobs or default
            plan = replace(plan, use_kernels=kernels_pay_off(plan))
            work = run_local(plan, jobs=jobs, progress=progress)
    if work.rows == 0:
        detail = f" ({work.skipped} skipped by --nan-policy omit)" if work.skipped else ""
        raise CLIError(f"No rows to evaluate{detail}.")
    shown = [os.path.basename(f) for f in files] if example else files
    shown = [standard_input.STDIN_NAME if f == stdin_copy else f for f in shown]
    with _gc_paused():
        report = build_report(
            work, plan, shown, skipped, engine, example, columnar and not options.plot
        )
    if options.strict and report["domain_warnings"]:
        raise CLIError(
            "--strict: "
            + " ".join(domain_messages(report, strict=True))
            + " Drop these losses or fix the data."
        )
    if options.plot:
        from losskit.cli.plot import plot_evaluation

        assert work.histogram is not None
        assert figure is not None
        figure.stage(plot_evaluation(report, work.histogram, options.plot))
    return report


def _check_plot(path: str, output: str | None) -> None:
    """Fail at once, not after the evaluation, on a ``--plot`` that cannot be
    written, or that is the ``--output`` file under any spelling or link (one
    would overwrite the other)."""
    from losskit.cli.plot import check_figure_path

    check_figure_path(path, "--plot")
    if output not in (None, STDOUT_PATH) and same_file(output, path):
        raise CLIError(f"--plot {path!r} is also the --output file; give two files.")


def _distinct_warnings(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """The first message of each place that warned (once a batch would repeat
    it), on one line."""
    seen: dict[tuple[Any, ...], str] = {}
    for item in caught:
        place = (item.category, item.filename, item.lineno)
        if place not in seen:
            seen[place] = " ".join(str(item.message).split())
    return list(seen.values())


def main(options: Options) -> int:
    """Run ``losskit evaluate``: check the outputs, evaluate, write the result."""
    if options.plot is not None:
        _check_plot(options.plot, options.output)
    # Both outputs are checked before any input is read, and written together
    # once everything has succeeded: a failed run leaves both as they were.
    output = prepare_output(options.output)
    figure: Output | None = None
    try:
        figure = prepare_output(options.plot, "--plot") if options.plot is not None else None
        # Warnings (a library's, such as Keras's on one-class crossentropy)
        # are reported once each, in one line, after the evaluation.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = run(options, columnar=True, figure=figure)
        for message in [*domain_messages(report), *_distinct_warnings(caught)]:
            print(f"losskit evaluate: warning: {message}", file=sys.stderr)
        output.stage(render(report, options.format))
        output.commit()
        if figure is not None:
            figure.commit()
    finally:
        output.close()
        if figure is not None:
            figure.close()
    return 0
