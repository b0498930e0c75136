"""Figures: ``losskit plot`` (each loss and its derivative against the
residual) and ``losskit evaluate --plot`` (a residual histogram and the
losses).

Values come from losskit's own functions, evaluated element-wise on a grid
(one sample with one output per point, shape ``(n, 1)``); derivatives are
central finite differences of those values with respect to ``y_pred``, so
nothing here restates a formula.  matplotlib draws with its Agg backend (no
display needed).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from losskit.cli._deps import CLIError, require
from losskit.cli.engine import CONTROL_CHARACTERS, group_labels
from losskit.cli.histogram import HISTOGRAM_GROUPS, ResidualHistogram, quantile_limits
from losskit.cli.output import prepare_output
from losskit.cli.specs import parse_losses
from losskit.losses import Loss
from losskit.spec import SPECS, spec_of

FORMATS = (".png", ".svg", ".pdf")


@dataclass(frozen=True)
class Axis:
    """What a loss is drawn against."""

    label: str
    grid: np.ndarray
    y_true: tuple[float, ...]  # one curve per target value
    residual: bool  # x is y_pred - y_true (else y_pred)


_RESIDUALS = np.linspace(-3.0, 3.0, 601)
_AXES = {
    "regression": Axis("residual  y_pred - y_true", _RESIDUALS, (1.0,), True),
    "hinge": Axis("y_pred (score)", _RESIDUALS, (-1.0, 1.0), False),
    "probabilistic": Axis("y_pred", np.linspace(0.005, 0.995, 397), (0.0, 1.0), False),
}
# Targets of the curves for losses that depend on y_true beyond the residual.
_TARGETS = (0.5, 1.0, 2.0, 5.0)


def _plot_axis(loss: Loss) -> Axis | None:
    """The axis a loss is drawn against (its spec's ``plot``), or None."""
    found = spec_of(type(loss))
    return None if found is None or found.plot is None else _AXES[found.plot]


_PLOTTABLE = sorted(s.cls.__name__ for s in SPECS if s.plot is not None)


def _matplotlib() -> Any:
    matplotlib = require("matplotlib")
    matplotlib.use("Agg", force=True)
    return require("matplotlib.pyplot")


def check_figure_path(path: str, option: str = "--output") -> None:
    """Fail at once, before any work, on a figure file that cannot be
    written: a wrong extension or none before it (matplotlib wrote ``.png``
    as ``.png.png``), a directory, a missing or read-only directory."""
    where = f"{option} {path!r}"
    name = os.path.basename(path)
    if not name.lower().endswith(FORMATS) or name.lower() in FORMATS:
        raise CLIError(f"{where}: give a file name ending in {', '.join(FORMATS)}.")
    if os.path.isdir(path):
        raise CLIError(f"{where}: it is a directory; give a file name.")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        missing = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise CLIError(f"{where}: the directory {directory!r} {missing}.")
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CLIError(f"{where}: it cannot be written (permissions).")


def _image(figure: Any, path: str) -> bytes:
    """The figure as the bytes of an image file in the format ``path``'s
    extension names (written by the caller: atomically, and only once the
    whole command has succeeded)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=os.path.splitext(path)[1][1:].lower())
    return buffer.getvalue()


def elementwise(loss: Loss, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """The per-sample loss of each (y_true, y_pred) pair, as one-output samples."""
    values = loss.call(y_true.reshape(-1, 1), y_pred.reshape(-1, 1))
    return np.asarray(values, dtype=np.float64).reshape(-1)


def derivative(loss: Loss, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """d loss / d y_pred by central differences of :func:`elementwise`; NaN
    where it does not exist (steps h and 2h disagree: a jump or a kink)."""
    step = 1e-5 * np.maximum(1.0, np.abs(y_pred))

    def central(h: np.ndarray) -> np.ndarray:
        ahead = elementwise(loss, y_true, y_pred + h)
        behind = elementwise(loss, y_true, y_pred - h)
        return (ahead - behind) / (2.0 * h)

    slope, wider = central(step), central(2.0 * step)
    smooth = np.abs(slope - wider) <= 1e-3 * (1.0 + np.abs(slope))
    return np.where(smooth, slope, np.nan)


def depends_on_target(loss: Loss, axis: Axis) -> bool:
    """Whether the loss at a given residual changes with y_true."""
    if not axis.residual:
        return False
    values = [elementwise(loss, np.full(5, t), np.full(5, t) + axis.grid[::150]) for t in _TARGETS]
    return not all(np.allclose(values[0], v, rtol=1e-9, atol=1e-12) for v in values[1:])


def plot_losses(losses_: Sequence[Loss], output: str) -> bytes:
    """Draw each loss (rows) and its derivative, and, for losses that depend
    on y_true, the loss against y_true at fixed residuals (columns); the
    bytes of the image file ``output`` names."""
    plt = _matplotlib()
    rows = len(losses_)
    figure, grid = plt.subplots(rows, 3, figsize=(13, 2.9 * rows), squeeze=False)
    for row, loss in enumerate(losses_):
        axis = _plot_axis(loss)
        assert axis is not None  # plottable() chose it
        dependent = depends_on_target(loss, axis)
        targets = _TARGETS if dependent else axis.y_true
        value_axes, slope_axes, target_axes = grid[row]
        for t in targets:
            y_true = np.full(axis.grid.shape, t)
            y_pred = y_true + axis.grid if axis.residual else axis.grid
            label = f"y_true = {t:g}"
            value_axes.plot(axis.grid, elementwise(loss, y_true, y_pred), label=label)
            slope_axes.plot(axis.grid, derivative(loss, y_true, y_pred), label=label)
        value_axes.set_title(f"{loss.name}", loc="left", fontsize=10)
        value_axes.set_xlabel(axis.label)
        value_axes.set_ylabel("loss")
        slope_axes.set_title("d loss / d y_pred", loc="left", fontsize=10)
        slope_axes.set_xlabel(axis.label)
        for axes in (value_axes, slope_axes):
            axes.axhline(0.0, color="0.8", linewidth=0.8, zorder=0)
            axes.axvline(0.0, color="0.8", linewidth=0.8, zorder=0)
            if len(targets) > 1:
                axes.legend(fontsize=7)
        if dependent:
            y_true = np.linspace(0.05, 5.0, 400)
            for r in (-1.0, -0.25, 0.25, 1.0):
                target_axes.plot(
                    y_true, elementwise(loss, y_true, y_true + r), label=f"residual {r:+g}"
                )
            target_axes.set_title("loss against y_true", loc="left", fontsize=10)
            target_axes.set_xlabel("y_true")
            target_axes.legend(fontsize=7)
        else:
            target_axes.axis("off")
            target_axes.text(
                0.02,
                0.5,
                "depends on the residual only" if axis.residual else "",
                transform=target_axes.transAxes,
                color="0.4",
                fontsize=9,
            )
    figure.suptitle("losskit: per-element losses and derivatives (finite differences)")
    figure.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.35 / rows))
    image = _image(figure, output)
    plt.close(figure)
    return image


def plottable(text: str | None) -> list[Loss]:
    """The losses of a ``--loss`` value that can be drawn element-wise; names
    given explicitly must be, families and ``all`` keep those that can."""
    chosen = []
    for choice in parse_losses(text):
        if _plot_axis(choice.loss) is not None:
            chosen.append(choice.loss)
        elif not choice.optional:
            names = ", ".join(_PLOTTABLE)
            raise CLIError(
                f"Cannot plot {choice.name}: its value depends on several outputs "
                f"(or the whole array), not on one residual. Plottable: {names}."
            )
    if not chosen:
        raise CLIError("None of these losses can be plotted element-wise.")
    return chosen


def main(loss: str | None, output: str) -> int:
    check_figure_path(output)
    chosen = plottable(loss)
    target = prepare_output(output)
    try:
        target.write(plot_losses(chosen, output))
    finally:
        target.close()
    print(f"wrote {output}")
    return 0


# Groups drawn (in the report's order, by key) beside all rows: more lines or
# bars are unreadable; the legend says how many there are.
PLOTTED_GROUPS = 8


def _literal(text: str) -> str:
    """``text`` drawn as it is: matplotlib reads text between two dollar
    signs as mathematics (``$x^$`` raised, ``$5 or $6`` was typeset); with a
    control character (a line break, an escape), as a JSON string, as the
    table shows it."""
    if re.search(CONTROL_CHARACTERS, text):
        text = json.dumps(text)
    if len(text) > PLOTTED_LABEL:  # (a label of 2*10^5 characters took 24 s to draw)
        text = text[: PLOTTED_LABEL - 3] + "..."
    return text.replace("$", r"\$")


PLOTTED_LABEL = 40  # characters of a label drawn


def plot_evaluation(report: dict[str, Any], histogram: ResidualHistogram, output: str) -> bytes:
    """A residual histogram (per group if grouped, the first
    :data:`PLOTTED_GROUPS`) and each loss's value, as the bytes of the image
    file ``output`` names."""
    check_figure_path(output, "--plot")
    plt = _matplotlib()
    names = list(report["losses"])
    groups = report.get("groups", {})
    columns = min(4, len(names))
    loss_rows = math.ceil(len(names) / columns)
    # (at least wide enough for the histogram's two-line title)
    figure = plt.figure(figsize=(max(5.5, 3.4 * columns + 1), 3.6 + 2.4 * loss_rows))
    layout = figure.add_gridspec(1 + loss_rows, columns, height_ratios=[1.6] + [1.0] * loss_rows)
    top = figure.add_subplot(layout[0, :])
    total = histogram.total()
    limits = quantile_limits(total)
    edges, counts, below, above = ResidualHistogram.linear(total, limits=limits)
    top.stairs(counts, edges, fill=True, color="0.75", label="all rows")
    labels_of = group_labels(histogram.counts)
    by_label = {labels_of[k]: v for k, v in histogram.counts.items()}
    shown = list(groups)[:PLOTTED_GROUPS]
    if groups:
        for j, key in enumerate(shown):
            if key in by_label:
                _, part, _, _ = ResidualHistogram.linear(by_label[key], limits=limits)
                top.stairs(part, edges, label=_literal(key), color=f"C{j}")
        more = len(groups) - len(shown)
        title = f"the first {len(shown)} of {len(groups):,} groups" if more else None
        if not histogram.per_group:
            title = f"{len(groups):,} groups (drawn one by one up to {HISTOGRAM_GROUPS})"
        top.legend(fontsize=8, title=title, title_fontsize=8)
    top.set_xlabel("residual  y_pred - y_true")
    top.set_ylabel("rows")
    outside = (
        f"\noutside the range shown: {below:,} below, {above:,} above" if below or above else ""
    )
    top.set_title(f"residuals of {report['rows']:,} rows{outside}", loc="left", fontsize=10)
    labels = ["all", *shown]
    for i, name in enumerate(names):
        axes = figure.add_subplot(layout[1 + i // columns, i % columns])
        values = [report["losses"][name]] + [groups[g]["losses"][name] for g in labels[1:]]
        heights = [np.nan if v is None else v for v in values]
        bars = axes.bar(
            range(len(labels)), heights, color=["0.55"] + [f"C{j}" for j in range(len(labels) - 1)]
        )
        axes.bar_label(
            bars, labels=[("nan" if v is None else f"{v:.4g}") for v in values], fontsize=7
        )
        axes.set_xticks(
            range(len(labels)),
            [_literal(label) for label in labels],
            fontsize=7,
            rotation=30 if len(labels) > 4 else 0,
        )
        axes.set_title(_literal(name), fontsize=9)
        axes.margins(y=0.2)
    figure.tight_layout()
    image = _image(figure, output)
    plt.close(figure)
    return image
