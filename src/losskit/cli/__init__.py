"""The ``losskit`` command line: ``losskit evaluate`` and ``losskit plot``.

``main(argv)`` parses the arguments, runs the command and returns the exit
status: 0 on success, 1 on any error (reported on standard error in one line,
with nothing on standard output), 2 for a usage error.  The optional
dependencies (pyarrow, rich, matplotlib; dask and distributed for
``--engine dask``) are imported only when a command needs them.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence

from losskit.cli._deps import CLIError, UsageError

__all__ = ["CLIError", "build_parser", "main"]

EPILOG_EVALUATE = """\
examples:
  losskit evaluate                                  # the bundled example data
  losskit evaluate preds.parquet --y-true target --y-pred prediction
  losskit evaluate 'runs/*.csv' --loss mse,huber:delta=2.0 --group-by model
  losskit evaluate data/ --y-true y --y-pred p --format json --output scores.json
  zcat preds.csv.gz | losskit evaluate - --loss mae  # any format, piped
  losskit evaluate big.parquet --engine dask --scheduler tcp://10.0.0.5:8786

Each row is one sample; a scalar column is an output of size 1, a list column
(or several columns named together, --y-true a,b,c) of size k.  Results equal
the Keras loss class with its default reduction over all rows (per group with
--group-by), computed in float64.
"""


LARGEST_COUNT = 1 << 40
"""The largest --batch-rows, --jobs or --dask-workers taken: far beyond any
memory, and within the 64-bit sizes that pyarrow takes (larger failed there
with a traceback)."""


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value > LARGEST_COUNT:
        raise argparse.ArgumentTypeError(f"expected at most 2**40, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from losskit import __version__

    parser = argparse.ArgumentParser(
        prog="losskit",
        description="Keras 3 losses over prediction files of any size.",
    )
    parser.add_argument("--version", action="version", version=f"losskit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    evaluate = commands.add_parser(
        "evaluate",
        help="compute Keras losses over prediction files",
        description="Compute Keras losses over prediction files (CSV, Parquet, "
        "Arrow/Feather, .npy/.npz), streaming them in bounded memory.",
        epilog=EPILOG_EVALUATE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files, globs or directories, or - for standard input "
        "(default: a bundled example data set)",
    )
    evaluate.add_argument(
        "--y-true",
        default="y_true",
        metavar="COL[,COL...]",
        help="column(s) of targets (default: y_true)",
    )
    evaluate.add_argument(
        "--y-pred",
        default="y_pred",
        metavar="COL[,COL...]",
        help="column(s) of predictions (default: y_pred)",
    )
    evaluate.add_argument("--sample-weight", metavar="COL", help="column of per-row weights")
    evaluate.add_argument("--group-by", metavar="COL", help="also report each group's losses")
    evaluate.add_argument(
        "--loss",
        metavar="NAMES",
        help="comma-separated names or aliases, with arguments as NAME:KEY=VALUE "
        "(huber:delta=2.0), or a family: regression (default), probabilistic, "
        "hinge, segmentation, all",
    )
    evaluate.add_argument("--format", choices=("table", "json", "csv"), default="table")
    evaluate.add_argument("--output", metavar="FILE", help="write the result here, not to stdout")
    evaluate.add_argument(
        "--engine", choices=("local", "dask"), help="local threads (default), or a Dask graph"
    )
    evaluate.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a dask.distributed scheduler (implies --engine dask; default: a LocalCluster)",
    )
    evaluate.add_argument(
        "--batch-rows",
        type=_positive,
        default=1 << 20,  # evaluate.DEFAULT_BATCH_ROWS, not imported by the parser
        metavar="N",
        help="rows per batch (default: 1048576); memory grows with it",
    )
    evaluate.add_argument(
        "--nan-policy",
        choices=("raise", "omit"),
        default="raise",
        help="rows with missing or infinite values: fail (default) or skip",
    )
    evaluate.add_argument(
        "--strict",
        action="store_true",
        help="fail, instead of warning, when rows fall outside a loss's domain "
        "(targets outside [0, 1] for a crossentropy, negative counts for Poisson, ...)",
    )
    evaluate.add_argument(
        "--plot", metavar="FILE.png", help="also draw a residual histogram and the losses"
    )
    evaluate.add_argument(
        "--jobs",
        type=_positive,
        metavar="N",
        help="computing threads of the local engine (default: CPUs + 1, at most 4)",
    )
    evaluate.add_argument(
        "--dask-workers",
        type=_positive,
        metavar="N",
        help="worker processes of the LocalCluster (default: CPUs)",
    )
    evaluate.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when it is a terminal)",
    )

    plot = commands.add_parser(
        "plot",
        help="draw each loss and its derivative against the residual",
        description="Draw each loss's per-element value and derivative against the "
        "residual y_pred - y_true (and against y_true where the loss depends on it).",
    )
    plot.add_argument("--loss", metavar="NAMES", help="as for evaluate (default: regression)")
    plot.add_argument(
        "--output",
        metavar="FILE",
        default="losses.png",
        help="a .png, .svg or .pdf file (default: losses.png)",
    )
    return parser


def _one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (library messages may span several)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as an interruption is, so that temporary
    files (a copy of standard input, an unfinished output) are removed on the
    way out, as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _terminable() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` while the command runs
    (only the main thread can set handlers; elsewhere, as they were)."""
    names = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {name: signal.signal(getattr(signal, name), _terminate) for name in names}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    with _terminable():
        return _run(arguments)


def _run(arguments: argparse.Namespace) -> int:
    try:
        if arguments.command == "evaluate":
            from losskit.cli import evaluate

            options = evaluate.Options(
                **{k: v for k, v in vars(arguments).items() if k != "command"}
            )
            return evaluate.main(options)
        from losskit.cli import plot

        return plot.main(arguments.loss, arguments.output)
    except CLIError as error:
        print(f"losskit {arguments.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1
    except Terminated as signalled:
        name = signal.Signals(signalled.signum).name
        print(f"losskit {arguments.command}: terminated ({name})", file=sys.stderr)
        return 128 + signalled.signum
    except KeyboardInterrupt:
        print(f"losskit {arguments.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError as error:  # input too large for this machine, not a bug
        detail = f" ({_one_line(error)})" if str(error) else ""
        advice = (
            " Lower --batch-rows or --jobs (with --group-by, memory also grows with "
            "the number of groups), or run on a machine with more memory."
            if arguments.command == "evaluate"
            else ""
        )
        print(
            f"losskit {arguments.command}: error: out of memory{detail}.{advice}", file=sys.stderr
        )
        return 1
    except Exception as error:  # a bug: show where
        traceback.print_exc()
        print(f"losskit {arguments.command}: unexpected error: {error}", file=sys.stderr)
        return 1
