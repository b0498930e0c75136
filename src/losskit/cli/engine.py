"""The work of an evaluation, shared by both engines: the plan a worker
receives, the mergeable result of some batches, reading and accumulating one
piece, and the local engine (threads on this machine).

:mod:`losskit.cli.evaluate` (the command) and :mod:`losskit.cli.dask_engine`
both import this module; neither imports the other at module level.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import math
import queue
import sys
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from losskit import _config, kernels, registry
from losskit.cli import readers
from losskit.cli._deps import require
from losskit.cli.domains import DomainChecks
from losskit.cli.histogram import ResidualHistogram
from losskit.cli.progress import Progress
from losskit.losses import Loss
from losskit.streaming import GroupedAccumulator, MultiLossAccumulator


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs to evaluate a piece (picklable)."""

    pieces: tuple[readers.Piece, ...]
    columns: readers.ColumnSpec
    losses: tuple[Loss, ...]
    batch_rows: int
    nan_policy: str = "raise"
    histogram: bool = False
    # Whether the losses may run on the Numba kernels (see kernels_pay_off).
    use_kernels: bool = True

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
    # The names of the target and prediction columns, the shape of one row
    # of each (the width of a list column) and the first rows that had it:
    # every batch of every file must agree, whatever the batch size.
    names: tuple[str, str] = ("y_true", "y_pred")
    shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    shapes_at: str = ""
    domains: DomainChecks | None = None
    use_kernels: bool = True
    # Set where threads share one accumulator (see run_local): held while a
    # batch's statistics are added, not while they are computed.
    adding: threading.Lock | None = field(default=None, repr=False, compare=False)

    @classmethod
    def empty(cls, plan: Plan) -> Work:
        accumulator: MultiLossAccumulator | GroupedAccumulator
        if plan.grouped:
            accumulator = GroupedAccumulator(list(plan.losses))
        else:
            accumulator = MultiLossAccumulator(list(plan.losses))
        names = (",".join(plan.columns.y_true), ",".join(plan.columns.y_pred))
        return cls(
            accumulator,
            ResidualHistogram() if plan.histogram else None,
            names=names,
            domains=DomainChecks(plan.losses),
            use_kernels=plan.use_kernels,
        )

    def _check_shapes(self, shapes: tuple[tuple[int, ...], tuple[int, ...]], where: str) -> None:
        """Fail on rows (``where``) whose width differs from the rows seen
        before."""
        if self.shapes is None:
            self.shapes, self.shapes_at = shapes, where
            return
        for name, mine, theirs in zip(self.names, self.shapes, shapes, strict=True):
            if mine != theirs:
                raise readers.InputError(
                    f"{where}: column {name!r} has {_width(theirs)} values per row, but "
                    f"{_width(mine)} in {self.shapes_at}; every row must have the same "
                    "number of values."
                )

    def update(self, batch: readers.Batch) -> None:
        last = batch.first_row + batch.rows + batch.skipped
        where = f"{batch.path}, rows {batch.first_row + 1}-{last}"
        if not batch.rows:  # every row skipped (null lists only have no width)
            self.skipped += batch.skipped
            self.nbytes += batch.nbytes
            return
        self._check_shapes((batch.y_true.shape[1:], batch.y_pred.shape[1:]), where)
        with contextlib.nullcontext() if self.use_kernels else kernels.declined():
            self._accumulate(batch, where)
        self.rows += batch.rows
        self.skipped += batch.skipped
        self.nbytes += batch.nbytes

    def _accumulate(self, batch: readers.Batch, where: str) -> None:
        try:
            statistics = self.accumulator._batch_statistics(
                batch.y_true,
                batch.y_pred,
                batch.sample_weight,
                None,
                batch.groups,
                batch.group_keys,
            )
            with self.adding or contextlib.nullcontext():
                self.accumulator._add_statistics(statistics)
        except (ValueError, TypeError) as error:
            raise readers.InputError(f"{where}: {error}") from None
        if self.histogram is not None:
            self.histogram.update(batch.y_true, batch.y_pred, batch.groups, batch.group_keys)
        if self.domains is not None:
            self.domains.update(batch.y_true, batch.y_pred)

    def merge(self, other: Work) -> Work:
        if other.shapes is not None:
            self._check_shapes(other.shapes, other.shapes_at)
        if other.accumulator is not self.accumulator:
            self.accumulator.merge(other.accumulator)  # type: ignore[arg-type]
        if self.histogram is not None and other.histogram is not None:
            self.histogram.merge(other.histogram)
        if self.domains is not None and other.domains is not None:
            self.domains.merge(other.domains)
        self.rows += other.rows
        self.skipped += other.skipped
        self.nbytes += other.nbytes
        return self


def _width(shape: tuple[int, ...]) -> str:
    return str(shape[0]) if len(shape) == 1 else "x".join(map(str, shape))


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


# What NumPy takes per element of a batch beyond what the Numba kernel takes,
# in ns: `python benchmarks/kernel_costs.py` (float64, batches of 2^20
# elements, one thread, this project's 2-core EPYC VM; it varies with the
# data: NumPy's log-cosh costs 1.5x as much on errors within [-1, 1]).  Every
# built-in loss with a kernel is listed (a test checks it); the others save 0.
_NUMPY_EXTRA_NS = {
    "MeanSquaredError": 2,
    "MeanAbsoluteError": 3,
    "MeanAbsolutePercentageError": 4,
    "MeanSquaredLogarithmicError": 5,
    "CosineSimilarity": 10,
    "Huber": 5,
    "LogCosh": 11,
    "Dice": 0,
    "Tversky": 0,
    "Hinge": 3,
    "SquaredHinge": 7,
    "CategoricalHinge": 4,
    "KLDivergence": 10,
    "Poisson": 1,
    "BinaryCrossentropy": 8,
    "CategoricalCrossentropy": 6,
    "SparseCategoricalCrossentropy": 8,
    "BinaryFocalCrossentropy": 15,
    "CategoricalFocalCrossentropy": 9,
    "CategoricalGeneralizedCrossEntropy": 6,
}
# A grouped run adds each batch's sums into its groups' running sums: NumPy's
# version takes 10 ns per group, field and loss where Numba's loop takes 1.2
# (3 fields per loss; benchmarks/kernel_costs.py measures both).
_GROUP_ADD_EXTRA_NS = 3 * 9
# Numba's start-up: importing it (0.2 s) and loading the first cached kernel
# (0.3 s: its typing and lowering registries; 0.15 s of that is SciPy's BLAS
# check where SciPy is installed).
_NUMBA_IMPORT_S, _NUMBA_LOAD_S = 0.2, 0.3


def kernels_pay_off(plan: Plan) -> bool:
    """Whether running the losses on the Numba kernels saves more time than
    Numba's start-up costs in this process, estimated before reading: the
    NumPy time the kernels save on every element of the input, and in a
    grouped run on adding every row's group sums as if each row were a group
    of its own (an upper bound), against importing Numba and loading its
    first kernel (whatever of that this process has not done yet).

    The time saved is counted on one core even where several threads
    compute: they share the cores with the reading, and the break-even
    measured on 2 cores (the 7 regression losses: NumPy 0.27 s faster as a
    command over 10^7 rows, Numba 0.1 s faster over 2*10^7) sits where the
    one-core estimate meets the start-up."""
    if not kernels.available() or _config.backend_preference() != "fast":
        return False  # (with "reference" no kernel runs: Numba would load for nothing)
    builtin = {info.cls for info in registry.LOSSES}
    names = [type(loss).__name__ for loss in plan.losses if type(loss) in builtin]
    extra_ns = sum(_NUMPY_EXTRA_NS.get(name, 0) for name in names)
    saved = _estimated_elements(plan) * extra_ns * 1e-9
    if plan.grouped:
        saved += _estimated_rows(plan) * len(plan.losses) * _GROUP_ADD_EXTRA_NS * 1e-9
    return saved > _numba_start_up()


def _numba_start_up() -> float:
    """What Numba's start-up still costs this process, in seconds."""
    seconds = 0.0
    if "numba" not in sys.modules:
        seconds += _NUMBA_IMPORT_S
    if "numba.np.arraymath" not in sys.modules:  # imported by the first kernel load
        seconds += _NUMBA_LOAD_S
    return seconds


def _estimated_elements(plan: Plan) -> int:
    """The number of values in the ``y_pred`` columns (a list column counts
    as one value per row: its width is known once read)."""
    return _estimated_rows(plan) * len(plan.columns.y_pred)


def _estimated_rows(plan: Plan) -> int:
    """The number of rows: from the row counts where the format has them,
    else for uncompressed CSV from the line lengths of the file's start
    (:func:`readers.estimated_csv_rows`), else from the size (text: at least
    8 bytes per value with its separator, so this errs towards more rows;
    it counted a CSV file of 10^7 rows of two floats as 2.3*10^7 rows, and
    loaded Numba where NumPy was 0.2 s faster as a command)."""
    numeric = len(plan.columns.numeric) + (plan.columns.group_by is not None)
    total = 0
    for piece in plan.pieces:
        rows = piece.rows if piece.rows is not None else readers.estimated_csv_rows(piece)
        total += piece.nbytes // (8 * numeric) if rows is None else rows
    return total


def _one_kernel_thread(batch: readers.Batch) -> bool:
    """Make the fused kernels called from this thread single-threaded (Numba's
    setting is per calling thread): the batches already run in parallel, and
    nested threads oversubscribe the cores (3.3 s instead of 2.8 s for the
    regression set over 10^8 rows on 2 cores).  Only once a batch is large
    enough for the kernels: importing Numba costs 0.4 s, most of the time of
    scoring a small file.  Returns whether it is done."""
    if batch.y_pred.size < kernels.MIN_ELEMENTS and "numba" not in sys.modules:
        return False
    if kernels.available():
        import numba

        numba.set_num_threads(1)
    return True


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
    # One accumulator for every thread: each computes its batches' statistics
    # and adds them under a lock.  An accumulator per thread held each group
    # once per thread and merged them at the end: with 10^6 groups, 0.5 GB
    # more and slower than one thread.
    works = [Work.empty(plan) for _ in range(jobs)]
    adding = threading.Lock()
    for work in works:
        work.accumulator, work.adding = works[0].accumulator, adding
    pending: queue.Queue[tuple[int, readers.Batch] | None] = queue.Queue(maxsize=jobs)
    # The error reported is the first batch's in file order, whichever thread
    # meets its error first: the same message on every run.
    errors: dict[int, BaseException] = {}
    lock = threading.Lock()

    def failed_before(index: int) -> bool:
        with lock:
            return any(failed < index for failed in errors)

    def compute(work: Work) -> None:
        single = False
        while True:
            item = pending.get()
            if item is None:
                return
            index, batch = item
            if failed_before(index):
                continue  # drain: a batch before this one has failed
            try:
                single = single or not work.use_kernels or _one_kernel_thread(batch)
                work.update(batch)
            except BaseException as error:
                with lock:
                    errors[index] = error
                continue
            if progress is not None:
                with lock:
                    progress.advance(batch.rows + batch.skipped, batch.nbytes)

    threads = [threading.Thread(target=compute, args=(w,), daemon=True) for w in works]
    for thread in threads:
        thread.start()
    index = 0
    try:
        for index, batch in enumerate(iter_batches(plan)):
            if failed_before(index):
                break
            pending.put((index, batch))
    except Exception as error:  # the reader's: after every batch handed out
        with lock:
            errors[index + 1] = error
    finally:
        for _ in threads:
            pending.put(None)
        for thread in threads:
            thread.join()
    if errors:
        raise errors[min(errors)]
    total = works[0]
    for work in works[1:]:
        total.merge(work)
    return total


MISSING_LABEL = "null"
CONTROL_CHARACTERS = "[\x00-\x1f\x7f]"
"""A label holding one (a line break, an escape sequence) is shown as a JSON
string in the table and the plot, so that it stays on its line."""


def group_label(key: Hashable) -> str:
    """A group's name in the output: ``null`` for the missing key (None or
    NaN), integers without a decimal point, text as it is, except text that
    could be mistaken for another label (``"null"``, or text starting with a
    double quote) or that UTF-8 cannot hold (a lone surrogate), which is
    shown quoted as in JSON (``\"null\"``, ``"\\ud800"``)."""
    if key is None or (isinstance(key, float) and math.isnan(key)):
        return MISSING_LABEL
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    if isinstance(key, str) and (
        key == MISSING_LABEL or key.startswith('"') or not _utf8_encodable(key)
    ):
        return json.dumps(key)
    return str(key)


def _utf8_encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (a lone surrogate, which NumPy
    text can hold, cannot: the CSV output failed with a traceback)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def group_labels(keys: Iterable[Hashable]) -> dict[Hashable, str]:
    """Each key's label (see :func:`group_label`), distinct: keys of different
    types that print alike (the number 1 and the text ``1``) get their type
    added, so no two groups are ever merged in the output."""
    keys = list(keys)
    if set(map(type, keys)) == {int}:  # the common case, in one pass
        return dict(zip(keys, map(str, keys), strict=True))
    labels: dict[Hashable, str] = {}
    used: set[str] = set()
    for key in keys:
        label = group_label(key)
        if label in used:
            label = f"{label} ({type(key).__name__})"
            base, n = label, 2
            while label in used:
                label, n = f"{base} #{n}", n + 1
        used.add(label)
        labels[key] = label
    return labels


def text_labels(keys: Sequence[Any]) -> Any:
    """The labels of keys that are all text (see :func:`group_label`) as one
    Arrow string array, made without a Python call per key; None where a
    key is not text or is labelled otherwise (``"null"`` and text starting
    with a double quote are quoted)."""
    if not keys or set(map(type, keys)) != {str}:
        return None
    pa, pc = require("pyarrow"), require("pyarrow.compute")
    try:
        texts = pa.array(keys, pa.string())
    except (pa.ArrowException, UnicodeEncodeError):  # lone surrogates
        return None
    quoted = pc.or_(pc.equal(texts, MISSING_LABEL), pc.starts_with(texts, '"'))
    return None if pc.any(quoted).as_py() else texts
