"""Reading prediction files in batches of bounded size.

Formats (by extension): CSV (``.csv``, ``.csv.gz``, read by pyarrow's
streaming CSV reader), Parquet (``.parquet``, ``.pq``: row group by row
group), Arrow IPC / Feather v2 (``.arrow``, ``.feather``, ``.ipc``: record
batch by record batch) and NumPy (``.npy``, ``.npz``: the file is read in
chunks of rows, never loaded or memory-mapped whole).

A file is cut into *pieces* (runs of Parquet row groups, of IPC record
batches or of ``.npy`` rows; a whole CSV or ``.npz`` file), the unit of work of
the Dask engine; a piece is read as batches of at most ``batch_rows`` rows.

Columns of a batch become float64 NumPy arrays: a scalar column gives an
output of size 1, shape ``(N, 1)``; a fixed-size (or equal-length) list
column of size k, or several scalar columns named together, gives ``(N, k)``.
Rows with a missing (null or NaN) or infinite value raise an error naming the
file, row and column, unless the policy is ``"omit"``, which drops them and
counts them.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import functools
import glob
import io
import math
import os
import re
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import numpy as np

from losskit.cli._deps import CLIError, require

FORMATS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".npy": "npy",
    ".npz": "npz",
}
NAN_POLICIES = ("raise", "omit")
_GLOB_CHARACTERS = set("*?[")


class InputError(CLIError):
    """Bad input data: the message names the file, and the row where known."""


def format_of(path: str) -> str | None:
    """The format of ``path`` by its extension, or None."""
    lower = path.lower()
    for extension in sorted(FORMATS, key=len, reverse=True):
        if lower.endswith(extension):
            return FORMATS[extension]
    return None


def expand_glob(pattern: str) -> list[str]:
    """The paths ``pattern`` matches, as ``glob.glob(pattern, recursive=True)``
    gives them, except that ``**`` never descends into a symbolic link to a
    directory (``glob`` follows them, so a link to a parent directory made it
    recurse until paths grew too long); the directories it searches are
    walked once each, as with a directory PATH."""
    parts = pattern.split(os.sep)
    if "**" not in parts:
        return glob.glob(pattern)
    first = parts.index("**")
    head, tail = os.sep.join(parts[:first]), parts[first:]
    if not head and pattern.startswith(os.sep):
        head = os.sep
    if not head:
        bases = [""]
    elif glob.has_magic(head):
        bases = glob.glob(head)
    else:
        bases = [head]
    found: list[str] = []
    for base in bases:
        if base and not os.path.isdir(base):
            continue
        for root, directories, names in os.walk(base or os.curdir):
            relative = os.path.relpath(root, base or os.curdir)
            parents = [] if relative == os.curdir else relative.split(os.sep)
            for name in [*directories, *names]:
                if _matches([*parents, name], tail):
                    found.append(os.path.join(base, *parents, name))
    return found


def _matches(names: list[str], patterns: list[str]) -> bool:
    """Whether the path components ``names`` match the glob components
    ``patterns`` (``**`` is any number of components; wildcards match no
    hidden name, as in :mod:`glob`).  Each (name, pattern) position is
    decided once: several ``**`` made plain backtracking exponential."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if j == len(patterns):
            return i == len(names)
        if patterns[j] == "**":
            if match(i, j + 1):
                return True
            return i < len(names) and not names[i].startswith(".") and match(i + 1, j)
        if i == len(names):
            return False
        name, pattern = names[i], patterns[j]
        if name.startswith(".") and not pattern.startswith(".") and glob.has_magic(pattern):
            return False
        return fnmatch.fnmatchcase(name, pattern) and match(i + 1, j + 1)

    return match(0, 0)


def find_files(paths: Sequence[str]) -> list[str]:
    """Expand globs and directories (recursively) into supported files."""
    found: list[str] = []
    supported = ", ".join(sorted(FORMATS))
    for path in paths:
        # (a path that exists is itself, whatever it holds: results[1].csv)
        if _GLOB_CHARACTERS & set(path) and not os.path.lexists(path):
            matches = sorted(expand_glob(path))
            files = [m for m in matches if os.path.isfile(m) and format_of(m)]
            if not files:
                raise CLIError(f"No file of a supported type ({supported}) matches {path!r}.")
        elif os.path.isdir(path):
            # (only regular files, or links to them: a FIFO or a link to
            # /dev/zero named like a data file would hang or never end)
            files = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(path)
                for name in names
                if format_of(name) and os.path.isfile(os.path.join(root, name))
            )
            if not files:
                raise CLIError(f"Directory {path!r} has no file of a supported type ({supported}).")
        elif os.path.isfile(path):
            if format_of(path) is None:
                raise CLIError(f"{path}: unsupported file type; supported: {supported}.")
            files = [path]
        elif os.path.exists(path):  # a FIFO, a device, a socket
            raise CLIError(f"{path}: not a regular file or a directory; give a file to read.")
        else:
            raise CLIError(f"{path}: no such file or directory.")
        found.extend(files)
    return _distinct_files(found)


def file_identities(paths: Sequence[str]) -> set[tuple[int, int]]:
    """The device and inode of each file that ``paths`` name (as
    :func:`find_files` finds them; none where that fails: reading says why)."""
    try:
        files = find_files(paths) if paths else []
    except CLIError:
        return set()
    return {identity for identity in map(_identity, files) if identity is not None}


def _identity(path: str) -> tuple[int, int] | None:
    """The file's device and inode (the same for every spelling of it), or
    None where it cannot be read."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _distinct_files(paths: list[str]) -> list[str]:
    """Each file once, in the order first named: two spellings of one file
    (``d/a.csv`` and ``./d/a.csv``, a link and its target, a directory and
    a file in it) are the same device and inode, and would count its rows
    twice."""
    seen: dict[tuple[int, int], str] = {}
    for path in paths:
        identity = _identity(path)
        # (a file that cannot be read is kept: reading it will say why)
        seen.setdefault((-1, len(seen)) if identity is None else identity, path)
    return list(seen.values())


@dataclass(frozen=True)
class ColumnSpec:
    """Which columns hold what.  ``y_true`` and ``y_pred`` name one column, or
    several scalar columns that form the last axis together."""

    y_true: tuple[str, ...]
    y_pred: tuple[str, ...]
    sample_weight: str | None = None
    group_by: str | None = None

    @property
    def numeric(self) -> list[str]:
        names = [*self.y_true, *self.y_pred]
        if self.sample_weight:
            names.append(self.sample_weight)
        return list(dict.fromkeys(names))

    @property
    def needed(self) -> list[str]:
        names = self.numeric
        if self.group_by and self.group_by not in names:
            names.append(self.group_by)
        return names


@dataclass(frozen=True)
class Piece:
    """A unit of work: rows ``first_row`` onwards of one file, given as a range
    ``[start, stop)`` of row groups (Parquet), record batches (IPC) or rows
    (``.npy``); CSV and ``.npz`` files are one piece."""

    path: str
    format: str
    start: int
    stop: int
    first_row: int
    rows: int | None
    nbytes: int


WHOLE_ROW_GROUP_ROWS = 1 << 22  # Parquet row groups up to this are decoded whole


@dataclass
class Batch:
    """Rows ``first_row .. first_row + rows - 1`` (0-based) of ``path``."""

    path: str
    first_row: int
    y_true: np.ndarray
    y_pred: np.ndarray
    sample_weight: np.ndarray | None
    groups: np.ndarray | None
    group_keys: list[Any] | None
    nbytes: int
    skipped: int = 0

    @property
    def rows(self) -> int:
        return int(self.y_pred.shape[0])


# -- planning ------------------------------------------------------------------


def plan(files: Sequence[str], columns: ColumnSpec, batch_rows: int) -> list[Piece]:
    """Check that every file has the columns, and cut the files into pieces."""
    pieces: list[Piece] = []
    errors: tuple[type[BaseException], ...] = (*_read_errors(), TypeError)
    for path in files:
        kind = format_of(path)
        try:
            if kind == "parquet":
                pieces.extend(_plan_parquet(path, columns, batch_rows))
            elif kind == "arrow":
                pieces.extend(_plan_arrow(path, columns, batch_rows))
            elif kind == "csv":
                _check_columns(path, _csv_names(path), columns)
                pieces.append(Piece(path, "csv", 0, 0, 0, None, os.path.getsize(path)))
            elif kind == "npy":
                pieces.extend(_plan_npy(path, columns, batch_rows))
            elif kind == "npz":
                rows = _npz_rows(path, columns)
                pieces.append(Piece(path, "npz", 0, rows, 0, rows, os.path.getsize(path)))
        except CLIError:
            raise
        except errors as error:
            raise _unreadable(path, kind, error) from None
    return pieces


def _source(path: str) -> Any:
    """``path`` as pyarrow opens it: the name itself, or the file opened by
    its bytes where the name is not UTF-8 (a POSIX name may hold any bytes;
    pyarrow takes text names as UTF-8 only, and could not read such files)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return require("pyarrow").OSFile(os.fsencode(path))
    return path


def _input_stream(path: str) -> Any:
    """A stream of the file's text, decompressed for ``.csv.gz``."""
    pa = require("pyarrow")
    compression = "gzip" if path.lower().endswith(".gz") else None
    return pa.input_stream(pa.OSFile(os.fsencode(path)), compression=compression)


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a damaged or malformed file raises while it is read: OS errors,
    bad values, a truncated stream, a broken zip archive or zlib stream, a bad
    CSV record, and pyarrow's errors (Parquet pages failing their checksum or
    their decompression, undecodable metadata)."""
    errors: tuple[type[BaseException], ...] = (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        csv.Error,
    )
    with contextlib.suppress(ImportError):
        import pyarrow

        errors += (pyarrow.ArrowException,)
    return errors


def _unreadable(path: str, kind: str | None, error: BaseException) -> InputError:
    """A one-line error naming the file, for ``error`` raised while reading it."""
    message = " ".join(str(error).split()) or type(error).__name__
    return InputError(f"{path}: cannot read it as {kind}: {message}")


def _check_columns(path: str, names: Sequence[str], columns: ColumnSpec) -> None:
    missing = [c for c in columns.needed if c not in names]
    if missing:
        listed = _listed(names)
        plural = "s" if len(missing) > 1 else ""
        raise InputError(
            f"{path}: column{plural} {', '.join(repr(m) for m in missing)} not found; "
            f"its columns are: {listed}."
        )
    repeated = sorted({c for c in columns.needed if list(names).count(c) > 1})
    if repeated:
        raise InputError(
            f"{path}: several columns are named {', '.join(repr(c) for c in repeated)}; "
            "rename them so that each column to read has one name."
        )


LISTED_NAMES = 50


def _listed(names: Sequence[str]) -> str:
    """Column names for a message: the first :data:`LISTED_NAMES`, each cut
    to 100 characters (a header that was a whole file made a 110 MB line)."""
    shown = [repr(n if len(n) <= 100 else n[:100] + "...") for n in names[:LISTED_NAMES]]
    more = f", ... ({len(names):,} columns)" if len(names) > LISTED_NAMES else ""
    return (", ".join(shown) or "(none)") + more


def _piece_rows(batch_rows: int) -> int:
    return max(batch_rows, 1) * 4


def _plan_parquet(path: str, columns: ColumnSpec, batch_rows: int) -> list[Piece]:
    pq = require("pyarrow.parquet")
    source = pq.ParquetFile(_source(path), page_checksum_verification=True)
    metadata = source.metadata
    _check_columns(path, source.schema_arrow.names, columns)
    size, total = os.path.getsize(path), max(metadata.num_rows, 1)
    pieces, start, first, rows = [], 0, 0, 0
    for group in range(metadata.num_row_groups):
        rows += metadata.row_group(group).num_rows
        if rows >= _piece_rows(batch_rows) or group == metadata.num_row_groups - 1:
            pieces.append(
                Piece(path, "parquet", start, group + 1, first, rows, size * rows // total)
            )
            start, first, rows = group + 1, first + rows, 0
    return pieces


def _open_ipc(path: str) -> Any:
    pa = require("pyarrow")
    with open(path, "rb") as file:
        if file.read(4) == b"FEA1":
            raise InputError(
                f"{path}: a Feather version 1 file, which cannot be read in batches; "
                "convert it to Feather version 2 (pyarrow.feather.write_feather) or Parquet."
            )
    source = pa.OSFile(os.fsencode(path))  # not memory-mapped: read pages do not stay
    try:
        return pa.ipc.open_file(source)
    except pa.ArrowInvalid:
        source.close()
        return pa.ipc.open_stream(pa.OSFile(os.fsencode(path)))


def _plan_arrow(path: str, columns: ColumnSpec, batch_rows: int) -> list[Piece]:
    """An IPC file in pieces of consecutive record batches of about
    :func:`_piece_rows` rows (their row counts read through a memory map,
    which touches the batches' headers, not their data); a stream in one."""
    reader = _open_ipc(path)
    _check_columns(path, reader.schema.names, columns)
    size = os.path.getsize(path)
    if not hasattr(reader, "num_record_batches"):  # a stream: read in one go
        return [Piece(path, "arrow", 0, -1, 0, None, size)]
    pa = require("pyarrow")
    with pa.memory_map(os.fsencode(path)) as mapped:
        index = pa.ipc.open_file(mapped)
        counts = [index.get_batch(i).num_rows for i in range(index.num_record_batches)]
    total = max(sum(counts), 1)
    pieces, start, first, rows = [], 0, 0, 0
    for i, count in enumerate(counts):
        rows += count
        if rows >= _piece_rows(batch_rows) or i == len(counts) - 1:
            pieces.append(Piece(path, "arrow", start, i + 1, first, rows, size * rows // total))
            start, first, rows = i + 1, first + rows, 0
    return pieces


# -- NumPy files -------------------------------------------------------------------


@dataclass(frozen=True)
class _NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    offset: int

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_items(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1


def _read_npy_header(stream: IO[bytes], where: str, size: int) -> _NpyHeader:
    """The header of the array stored in ``stream`` (``size`` bytes long),
    which must hold as much data as the header promises: a damaged header
    (``10**18`` rows in 200 bytes) is an error before anything is read."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    if fortran and len(shape) > 1:
        raise InputError(
            f"{where}: Fortran-ordered arrays cannot be read by rows; save it with "
            "np.save(path, np.ascontiguousarray(array))."
        )
    if dtype.hasobject:
        raise InputError(f"{where}: arrays of Python objects are not supported.")
    offset = stream.tell()
    promised = math.prod(int(n) for n in shape) * dtype.itemsize
    if offset + promised > size:
        raise InputError(
            f"{where}: the header promises an array of shape {tuple(shape)} and dtype "
            f"{dtype} ({promised:,} bytes) but only {max(size - offset, 0):,} bytes "
            "follow it; the file is truncated or its header is damaged."
        )
    return _NpyHeader(tuple(shape), dtype, offset)


def _npy_columns(header: _NpyHeader, where: str) -> dict[str, tuple[str | None, int]]:
    """Column name -> (structured field or None for a plain column index, width)."""
    if header.dtype.names:
        if len(header.shape) != 1:
            raise InputError(f"{where}: a structured array must be 1-D (one record per row).")
        out: dict[str, tuple[str | None, int]] = {}
        for name in header.dtype.names:
            sub = header.dtype.fields[name][0]  # type: ignore[index]
            width = int(np.prod(sub.shape)) if sub.shape else 1
            out[name] = (name, width)
        return out
    if len(header.shape) == 1:
        return {"0": (None, 1)}
    if len(header.shape) == 2:
        return {str(i): (None, 1) for i in range(header.shape[1])}
    raise InputError(
        f"{where}: a plain .npy array must be 1-D or 2-D (rows x columns); this one "
        f"has shape {header.shape}. Use a structured array or an .npz file."
    )


def _plan_npy(path: str, columns: ColumnSpec, batch_rows: int) -> list[Piece]:
    with open(path, "rb") as stream:
        header = _read_npy_header(stream, path, os.fstat(stream.fileno()).st_size)
    _check_columns(path, list(_npy_columns(header, path)), columns)
    for name in columns.needed if header.dtype.names else ():
        shape = header.dtype.fields[name][0].shape  # type: ignore[index]
        if len(shape) > 1:
            raise InputError(
                f"{path}: field {name!r} has shape {shape} in each row; a column holds "
                "one value or a 1-D list of k values (the output axis) per row. "
                "Reshape the field, or use the Python API for targets of higher rank."
            )
    size, step = os.path.getsize(path), _piece_rows(batch_rows)
    total = max(header.rows, 1)
    return [
        Piece(
            path,
            "npy",
            lo,
            min(lo + step, header.rows),
            lo,
            min(step, header.rows - lo),
            size * min(step, header.rows - lo) // total,
        )
        for lo in range(0, max(header.rows, 1), step)
    ]


def _npz_headers(archive: zipfile.ZipFile, path: str) -> dict[str, str]:
    return {name[: -len(".npy")]: name for name in archive.namelist() if name.endswith(".npy")}


def _npz_rows(path: str, columns: ColumnSpec) -> int:
    with zipfile.ZipFile(path) as archive:
        members = _npz_headers(archive, path)
        _check_columns(path, list(members), columns)
        lengths = {}
        for name in columns.needed:
            with archive.open(members[name]) as stream:
                header = _read_npy_header(
                    stream, f"{path}[{name}]", archive.getinfo(members[name]).file_size
                )
            if header.dtype.names or len(header.shape) not in (1, 2):
                raise InputError(
                    f"{path}: member {name!r} must be a 1-D array (a scalar column) or "
                    f"2-D (N, k) (a column of k outputs); it has shape {header.shape}."
                )
            lengths[name] = header.rows
    if len(set(lengths.values())) > 1:
        first = columns.needed[0]
        for name, n in lengths.items():
            if n != lengths[first]:
                shorter = min(n, lengths[first])
                raise InputError(
                    f"{path}, row {shorter + 1}: length mismatch: column {name!r} has "
                    f"{n} rows but {first!r} has {lengths[first]}."
                )
    return next(iter(lengths.values()))


# -- reading -------------------------------------------------------------------------


def read_piece(
    piece: Piece, columns: ColumnSpec, batch_rows: int, nan_policy: str = "raise"
) -> Iterator[Batch]:
    """The piece's rows, as batches of at most ``batch_rows`` rows."""
    RawReader = Callable[[Piece, ColumnSpec, int], Iterator[tuple[dict[str, Any], int]]]
    readers: dict[str, RawReader] = {
        "parquet": _raw_parquet,
        "arrow": _raw_arrow,
        "csv": functools.partial(_raw_csv, nan_policy=nan_policy),
        "npy": _raw_npy,
        "npz": _raw_npz,
    }
    row = piece.first_row
    for raw, nbytes in _guarded(piece, readers[piece.format](piece, columns, batch_rows)):
        n = _length(next(iter(raw.values())))
        for lo in range(0, n, batch_rows):
            hi = min(lo + batch_rows, n)
            part = {name: data[lo:hi] for name, data in raw.items()}
            share = nbytes * (hi - lo) // n if n else nbytes
            yield _to_batch(piece.path, row + lo, part, columns, share, nan_policy)
        row += n


def _guarded(
    piece: Piece, raw: Iterator[tuple[dict[str, Any], int]]
) -> Iterator[tuple[dict[str, Any], int]]:
    """The raw batches of ``piece``; a damaged file (a corrupt archive, a
    Parquet page failing its checksum, ...) becomes an error naming it."""
    errors = _read_errors()
    try:
        while True:
            try:
                item = next(raw)
            except StopIteration:
                return
            except CLIError:
                raise
            except errors as error:
                raise _unreadable(piece.path, piece.format, error) from None
            yield item
    finally:
        close = getattr(raw, "close", None)
        if close is not None:
            close()  # a consumer that stops early closes the file at once


def _length(data: Any) -> int:
    return len(data)


def _raw_parquet(
    piece: Piece, columns: ColumnSpec, batch_rows: int
) -> Iterator[tuple[dict[str, Any], int]]:
    pq = require("pyarrow.parquet")
    source = pq.ParquetFile(_source(piece.path), page_checksum_verification=True)
    rows = max(piece.rows or 1, 1)
    sizes = ((g, source.metadata.row_group(g).num_rows) for g in range(piece.start, piece.stop))
    for groups in _runs(sizes, batch_rows):
        if len(groups) > 1 or groups[0][1] <= max(WHOLE_ROW_GROUP_ROWS, batch_rows):
            # Decoding whole row groups uses pyarrow's threads (one column
            # each): several times faster than its batch iterator, which
            # decodes on one thread.  Memory stays bounded by the group size.
            numbers = [group for group, _ in groups]
            table = source.read_row_groups(numbers, columns=columns.needed, use_threads=True)
            batches = table.combine_chunks().to_batches(max_chunksize=batch_rows)
        else:
            batches = source.iter_batches(
                batch_size=batch_rows, row_groups=[groups[0][0]], columns=columns.needed
            )
        for batch in batches:
            yield (
                {name: batch.column(name) for name in columns.needed},
                piece.nbytes * batch.num_rows // rows,
            )


_Part = TypeVar("_Part")


def _runs(parts: Iterable[tuple[_Part, int]], batch_rows: int) -> Iterator[list[tuple[_Part, int]]]:
    """(part, rows) pairs, in order, in runs to be read as one: small parts
    (Parquet row groups, IPC record batches) join until a run would hold more
    than ``batch_rows`` rows, so that a file of many small parts is read in
    batches of ``batch_rows`` (20,000 row groups of 10 rows took 4.9 s, a
    batch each; an IPC file of such record batches 5.4 s)."""
    run: list[tuple[_Part, int]] = []
    held = 0
    for part, rows in parts:
        if run and held + rows > batch_rows:
            yield run
            run, held = [], 0
        run.append((part, rows))
        held += rows
    if run:
        yield run


def _raw_arrow(
    piece: Piece, columns: ColumnSpec, batch_rows: int
) -> Iterator[tuple[dict[str, Any], int]]:
    pa = require("pyarrow")
    reader = _open_ipc(piece.path)
    if piece.stop < 0:
        parts = iter(reader)
    else:
        parts = (reader.get_batch(i) for i in range(piece.start, piece.stop))
    rows = piece.rows
    for run in _runs(((part, part.num_rows) for part in parts), batch_rows):
        table = pa.Table.from_batches([part for part, _ in run]).select(list(columns.needed))
        for batch in table.combine_chunks().to_batches(max_chunksize=batch_rows):
            share = piece.nbytes if rows is None else piece.nbytes * batch.num_rows // max(rows, 1)
            yield {name: batch.column(name) for name in columns.needed}, share


@contextlib.contextmanager
def _csv_fields_of_any_size() -> Iterator[None]:
    """Lift the csv module's field size limit (128 KiB by default) while a
    file is read: a long text in some column must not stop the reading."""
    previous = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _csv_names(path: str) -> list[str]:
    """The column names: the first record of the file (see :func:`_csv_header`)."""
    return _csv_header(path)[0]


def _header(records: Iterator[list[str]]) -> list[str]:
    """The first record that is not a blank line ([] if none)."""
    return next((record for record in records if record), [])


# A field as pyarrow's parser reads it: quoted (a doubled quote inside is a
# quote; what follows the closing quote up to the next comma is kept), or
# unquoted, where a quote is text.  (The quoted part as runs between doubled
# quotes: a repeat per character took 2 GB over an unclosed quote.)
_CSV_FIELD = rb'(?:"[^"]*(?:""[^"]*)*"[^,\r\n]*|[^,\r\n"][^,\r\n]*|)'
_CSV_RECORD = re.compile(_CSV_FIELD + rb"(?:," + _CSV_FIELD + rb")*(?:\r\n|\r|\n)")


CSV_HEADER_LIMIT = 1 << 24  # bytes searched for the end of a CSV header


def _csv_header(path: str) -> tuple[list[str], int]:
    """The column names, the first record of a CSV file after any blank lines
    (pyarrow skips them), and its length in bytes (decompressed), line end
    and blank lines included (the whole file if it has no other record).  A
    quoted name may hold line ends, so the header is not always the first
    line; the names are parsed from the record's bytes alone (an unclosed
    quote made the whole file one name)."""
    want = 1 << 16
    while True:
        if want > CSV_HEADER_LIMIT:
            raise InputError(
                f"{path}: the header (the first record) does not end in the first "
                f"{CSV_HEADER_LIMIT:,} bytes; is a quote in it left open?"
            )
        with _input_stream(path) as stream:
            head = stream.read(want)
        bom = 3 if head.startswith(b"\xef\xbb\xbf") else 0  # as utf-8-sig reads the names
        start = len(head) - len(head[bom:].lstrip(b"\r\n"))
        record = _CSV_RECORD.match(head, start)
        if (record and record.end() < len(head)) or len(head) < want:
            # (a record ending at the buffer's end may be a CR whose LF
            # is beyond it: read on, unless the file ends there)
            size = record.end() if record else len(head)
            text = io.StringIO(head[:size].decode("utf-8-sig", errors="replace"), newline="")
            with _csv_fields_of_any_size():
                return _header(csv.reader(text)), size
        want *= 4


def _raw_csv(
    piece: Piece, columns: ColumnSpec, batch_rows: int, nan_policy: str = "raise"
) -> Iterator[tuple[dict[str, Any], int]]:
    pa = require("pyarrow")
    pcsv = require("pyarrow.csv")
    types = {name: pa.float64() for name in columns.numeric}
    if columns.group_by and columns.group_by not in types:
        types[columns.group_by] = pa.string()
    # A group key that is empty or nan, NA, null, ... is missing, quoted or
    # not, as in the numeric columns (whose quoted "NA" pyarrow rejects when
    # quoted values may not be null) and as in pandas.
    convert = pcsv.ConvertOptions(
        include_columns=columns.needed, column_types=types, strings_can_be_null=True
    )
    try:
        if _compressed(piece):
            names, header = _csv_header(piece.path)
            yield from _streamed_csv(piece, columns, batch_rows, convert, header, names)
        else:
            yield from _chunked_csv(piece, columns, batch_rows, convert)
    except pa.ArrowInvalid as error:
        located = _locate_csv_problem(piece.path, columns, nan_policy)
        if located:
            raise InputError(located) from None
        raise InputError(f"{piece.path}: {error}") from None


def _compressed(piece: Piece) -> bool:
    """Whether a CSV piece is gzip-compressed (``.csv.gz``)."""
    return piece.path.lower().endswith(".gz")


def _streamed_csv(
    piece: Piece,
    columns: ColumnSpec,
    batch_rows: int,
    convert: Any,
    offset: int,
    names: list[str],
) -> Iterator[tuple[dict[str, Any], int]]:
    """A CSV file through pyarrow's streaming reader (one thread), from
    ``offset`` (a record's start, in the decompressed text; ``names``: the
    header's names, read already) on, allowing
    line ends inside quoted values as RFC 4180 does (pyarrow's default does
    not, and failed on a quoted value of two lines across a block boundary;
    allowing them measured no slower on 10^7 rows of a compressed file)."""
    pa = require("pyarrow")
    pcsv = require("pyarrow.csv")
    block_size = int(min(64 << 20, max(1 << 20, batch_rows * 48)))
    read = pcsv.ReadOptions(block_size=block_size, column_names=names)
    parse = pcsv.ParseOptions(newlines_in_values=True)
    compressed = _compressed(piece)
    with _input_stream(piece.path) if compressed else pa.OSFile(os.fsencode(piece.path)) as stream:
        if compressed:
            stream.read(offset)
        else:
            stream.seek(offset)
        position = offset
        try:
            batches = pcsv.open_csv(
                stream, read_options=read, parse_options=parse, convert_options=convert
            )
        except pa.ArrowInvalid as error:
            if str(error).startswith("Empty CSV file"):  # the header alone
                return
            raise
        for batch in batches:
            # (the position in a compressed file is not known; in another,
            # the bytes read so far, the reader's read-ahead included)
            read_to = position if compressed else stream.tell()
            yield {name: batch.column(name) for name in columns.needed}, read_to - position
            position = read_to


CSV_CHUNK_BYTES = 8 << 20


def _chunked_csv(
    piece: Piece, columns: ColumnSpec, batch_rows: int, convert: Any
) -> Iterator[tuple[dict[str, Any], int]]:
    """An uncompressed CSV file cut at line ends into chunks of about
    :data:`CSV_CHUNK_BYTES`, each parsed by pyarrow on all its threads: about
    twice as fast as its streaming reader, which parses on one thread (0.53 s
    against 1.11 s for 10^7 rows of two floats), with memory bounded by the
    chunk.  A line end is a record's end only outside quoted values, which
    only a parser can tell (a quote in the middle of an unquoted field is
    text): from the first chunk with a quote on, the rest of the file goes
    through pyarrow's streaming reader, which allows line ends inside quoted
    values (cut at any line end, a quoted note of two lines became a row of
    its own, or an error, depending on the chunk size)."""
    pa = require("pyarrow")
    pcsv = require("pyarrow.csv")
    # The chunks start after the header (a quoted name may hold a line end,
    # and pyarrow's skip_rows skips lines, not records).
    names, offset = _csv_header(piece.path)
    for chunk in _line_chunks(piece.path, CSV_CHUNK_BYTES, start=offset):
        if _has_quote(chunk):
            yield from _streamed_csv(piece, columns, batch_rows, convert, offset, names)
            return
        read = pcsv.ReadOptions(column_names=names)
        try:
            table = pcsv.read_csv(pa.py_buffer(chunk), read_options=read, convert_options=convert)
        except pa.ArrowInvalid as error:
            if "straddl" not in str(error):
                raise
            # A line longer than pyarrow's parsing block (1 MiB): the chunk
            # as one block, parsed on one thread.
            read = pcsv.ReadOptions(column_names=names, block_size=len(chunk) + 1)
            table = pcsv.read_csv(pa.py_buffer(chunk), read_options=read, convert_options=convert)
        offset += len(chunk)
        if table.num_rows:
            table = table.combine_chunks()
            yield {name: table.column(name).chunk(0) for name in columns.needed}, len(chunk)


def _line_chunks(path: str, size: int, start: int = 0) -> Iterator[bytes | memoryview]:
    """The file's bytes from ``start`` on in pieces of about ``size`` that
    end at a line end (the last piece: at the end of the file), each read
    once and not copied: the partial line after a piece's last line end is
    read again with the next piece (joining it to the next block copied
    every block twice)."""
    with open(path, "rb") as file:
        file.seek(start)
        want = size
        while block := file.read(want):
            if len(block) < want:  # the end of the file
                yield block
                return
            # (a file with CR line ends alone, as classic Mac OS wrote, has no
            # LF: it was one chunk, its memory growing with the file)
            cut = (block.rfind(b"\n") + 1) or (block.rfind(b"\r") + 1)
            if cut == 0:  # one line longer than a block: that line again, read whole
                file.seek(-len(block), os.SEEK_CUR)
                want *= 2
                continue
            file.seek(cut - len(block), os.SEEK_CUR)
            want = size
            yield memoryview(block)[:cut]


def _has_quote(piece: bytes | memoryview) -> bool:
    """Whether a piece of :func:`_line_chunks` holds a quote (a memoryview
    there is the start of its block, searched without a copy)."""
    return _block_of(piece).find(b'"', 0, len(piece)) != -1


def _block_of(piece: bytes | memoryview) -> bytes:
    block = piece.obj if isinstance(piece, memoryview) else piece
    assert isinstance(block, bytes)
    return block


TEXT_SAMPLE_BYTES = 1 << 18


def estimated_csv_rows(piece: Piece) -> int | None:
    """The number of data rows of an uncompressed CSV piece, from the line
    lengths in its first :data:`TEXT_SAMPLE_BYTES` (exact where the file fits
    in them), or None where that says nothing: a compressed or unreadable
    file, a sample without a line after the header.  Only an estimate (the
    first lines may be shorter or longer than the rest), used to choose
    between code paths, never as a count."""
    if piece.format != "csv" or _compressed(piece):
        return None
    try:
        with open(piece.path, "rb") as file:
            sample = file.read(TEXT_SAMPLE_BYTES)
    except OSError:
        return None
    whole_file = len(sample) < TEXT_SAMPLE_BYTES
    body_start = sample.find(b"\n") + 1  # after the header
    if body_start in (0, len(sample)):  # nothing after the header line
        return 0 if whole_file else None
    lines = sample.count(b"\n", body_start)
    if whole_file:
        return lines + (not sample.endswith(b"\n"))
    if lines == 0:
        return None
    measured = sample.rfind(b"\n") + 1 - body_start  # the sample's whole lines
    return math.ceil((piece.nbytes - body_start) * lines / measured)


def _csv_nulls() -> set[str]:
    pcsv = require("pyarrow.csv")
    return set(pcsv.ConvertOptions().null_values)


SHOWN_PROBLEMS = 3


def _locate_csv_problem(path: str, columns: ColumnSpec, nan_policy: str = "raise") -> str | None:
    """Find the rows that pyarrow rejected (its messages have no row
    number): every non-numeric value, wrong number of fields and (unless
    ``nan_policy`` is ``"omit"``) missing value, the first few of them
    shown, with the total."""
    nulls = _csv_nulls()
    problems: list[str] = []
    count = 0
    with _csv_fields_of_any_size(), _input_stream(path) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
        reader = csv.reader(text)
        header = _header(reader)
        where = {name: header.index(name) for name in columns.numeric if name in header}
        row = 0
        for record in reader:
            if not record:
                continue
            row += 1
            place = f"row {row} (line {reader.line_num})"
            found = _csv_record_problems(record, header, where, nulls, nan_policy)
            count += len(found)
            problems.extend(f"{place}: {p}" for p in found[: SHOWN_PROBLEMS - len(problems)])
    if not count:
        return None
    first = f"{path}, {problems[0]}."
    if count == 1:
        return first
    hidden = count - len(problems)
    shown = "; ".join(problems[1:]) + (f"; {hidden} more not shown" if hidden else "")
    return f"{first} {count - 1} more problem{'s' if count > 2 else ''}: {shown}."


def _csv_record_problems(
    record: list[str], header: list[str], where: dict[str, int], nulls: set[str], nan_policy: str
) -> list[str]:
    if len(record) != len(header):
        return [f"{len(record)} fields where the header has {len(header)}"]
    found = []
    for name, index in where.items():
        value = record[index]
        if value in nulls:
            if nan_policy != "omit":
                found.append(f"column {name!r} is missing ({value!r})")
            continue
        if not _is_csv_number(value):
            found.append(f"column {name!r} has a non-numeric value {value!r}")
    return found


_PLAIN_NUMBER_CHARACTERS = frozenset("0123456789+-.eE")


def _is_csv_number(value: str) -> bool:
    """Whether pyarrow reads ``value`` as a float64: Python's ``float`` for
    plain digits, pyarrow itself for the rest (``float`` also takes
    ``1_000`` and ``infinity``, which pyarrow rejects)."""
    try:
        float(value)
    except ValueError:
        return False
    if _PLAIN_NUMBER_CHARACTERS.issuperset(value):
        return True
    pa, pcsv = require("pyarrow"), require("pyarrow.csv")
    text = f'x\n"{value}"\n'.encode()
    convert = pcsv.ConvertOptions(column_types={"x": pa.float64()})
    try:
        pcsv.read_csv(pa.py_buffer(text), convert_options=convert)
    except pa.ArrowInvalid:
        return False
    return True


def _raw_npy(
    piece: Piece, columns: ColumnSpec, batch_rows: int
) -> Iterator[tuple[dict[str, Any], int]]:
    with open(piece.path, "rb") as stream:
        header = _read_npy_header(stream, piece.path, os.fstat(stream.fileno()).st_size)
        layout = _npy_columns(header, piece.path)
        item = header.dtype.itemsize * header.row_items
        stream.seek(header.offset + piece.start * item)
        total = max(piece.rows or 1, 1)
        for lo in range(piece.start, piece.stop, batch_rows):
            n = min(batch_rows, piece.stop - lo)
            chunk = np.fromfile(stream, dtype=header.dtype, count=n * header.row_items)
            if chunk.size != n * header.row_items:
                row = lo + chunk.size // max(header.row_items, 1) + 1
                raise InputError(f"{piece.path}, row {row}: the file ends early.")
            chunk = chunk.reshape((n, *header.shape[1:]))
            data = {}
            for name in columns.needed:
                fieldname, _ = layout[name]
                if fieldname is not None:
                    values = chunk[fieldname]
                    data[name] = values.reshape(n, -1) if values.ndim > 2 else values
                elif chunk.ndim == 1:
                    data[name] = chunk
                else:
                    data[name] = chunk[:, int(name)]
            yield data, piece.nbytes * n // total


def _raw_npz(
    piece: Piece, columns: ColumnSpec, batch_rows: int
) -> Iterator[tuple[dict[str, Any], int]]:
    with zipfile.ZipFile(piece.path) as archive:
        members = _npz_headers(archive, piece.path)
        streams = {name: archive.open(members[name]) for name in columns.needed}
        try:
            headers = {
                name: _read_npy_header(
                    stream, f"{piece.path}[{name}]", archive.getinfo(members[name]).file_size
                )
                for name, stream in streams.items()
            }
            total = max(piece.rows or 1, 1)
            for lo in range(0, piece.stop, batch_rows):
                n = min(batch_rows, piece.stop - lo)
                data = {}
                for name, stream in streams.items():
                    header = headers[name]
                    wanted = n * header.row_items * header.dtype.itemsize
                    raw = stream.read(wanted)
                    if len(raw) != wanted:
                        got = len(raw) // max(header.row_items * header.dtype.itemsize, 1)
                        raise InputError(
                            f"{piece.path}, row {lo + got + 1}: member {name!r} ends early."
                        )
                    values = np.frombuffer(raw, dtype=header.dtype)
                    data[name] = values.reshape((n, *header.shape[1:]))
                yield data, piece.nbytes * n // total
        finally:
            for stream in streams.values():
                stream.close()


# -- columns to arrays -----------------------------------------------------------------


def _to_batch(
    path: str,
    first_row: int,
    raw: dict[str, Any],
    columns: ColumnSpec,
    nbytes: int,
    nan_policy: str,
) -> Batch:
    arrays = {name: _numeric(raw[name], name, path, first_row) for name in columns.numeric}
    y_true = _stack(arrays, columns.y_true, path, first_row)
    y_pred = _stack(arrays, columns.y_pred, path, first_row)
    weight = arrays[columns.sample_weight] if columns.sample_weight else None
    if weight is not None and weight.ndim == 2 and weight.shape[1] == 1:
        weight = weight[:, 0]  # (N, 1), as Keras takes it
    if weight is not None and weight.ndim != 1:
        raise InputError(
            f"{path}, row {first_row + 1}: the sample weight column "
            f"{columns.sample_weight!r} must hold one number per row."
        )
    groups, keys = (None, None)
    if columns.group_by:
        groups, keys = _group_codes(raw[columns.group_by], columns.group_by, path, first_row)
    batch = Batch(path, first_row, y_true, y_pred, weight, groups, keys, nbytes)
    return _apply_nan_policy(batch, columns, arrays, nan_policy)


def _stack(
    arrays: dict[str, np.ndarray], names: tuple[str, ...], path: str, first_row: int
) -> np.ndarray:
    if len(names) == 1:
        array = arrays[names[0]]
        return array[:, None] if array.ndim == 1 else array
    parts = []
    for name in names:
        if arrays[name].ndim != 1:
            raise InputError(
                f"{path}, row {first_row + 1}: column {name!r} holds lists; list "
                "columns cannot be combined with other columns."
            )
        parts.append(arrays[name])
    return np.stack(parts, axis=1)


def _surely_finite(array: np.ndarray) -> bool:
    """True only if every entry is finite, from one sum (a SIMD reduction,
    no temporary array): a NaN or an infinity makes the sum NaN or infinite.
    False can also mean a sum that overflowed; the caller then looks closer."""
    if array.dtype.kind in "iub":
        return True
    if array.dtype.kind != "f" or (array.ndim == 2 and array.shape[1] == 0):
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        return math.isfinite(float(np.sum(array)))


def _apply_nan_policy(
    batch: Batch, columns: ColumnSpec, arrays: dict[str, np.ndarray], nan_policy: str
) -> Batch:
    if all(_surely_finite(array) for array in arrays.values()):
        return batch
    finite = np.ones(batch.rows, dtype=bool)
    for array in arrays.values():
        ok = np.isfinite(array)
        if ok.ndim == 1:
            finite &= ok
        elif ok.shape[1]:
            finite &= ok.all(axis=1)
        else:  # a list column whose every list in the batch is null
            finite[:] = False
    if finite.all():
        return batch
    if nan_policy != "omit":
        index = int(np.argmin(finite))
        for name, array in arrays.items():
            values = np.atleast_1d(array[index])
            bad = values[~np.isfinite(values)] if values.size else np.array([np.nan])
            if bad.size:
                what = "missing (null or NaN)" if np.isnan(bad[0]) else f"{bad[0]}"
                raise InputError(
                    f"{batch.path}, row {batch.first_row + index + 1}: column {name!r} "
                    f"is {what}. Fix the data, or pass --nan-policy omit to skip rows "
                    "with missing or infinite values."
                )
    keep = finite
    batch.y_true = batch.y_true[keep]
    batch.y_pred = batch.y_pred[keep]
    if batch.sample_weight is not None:
        batch.sample_weight = batch.sample_weight[keep]
    if batch.groups is not None:
        batch.groups = batch.groups[keep]
    batch.skipped = int((~keep).sum())
    return batch


def _numeric(data: Any, name: str, path: str, first_row: int) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return _numeric_numpy(data, name, path, first_row)
    return _numeric_arrow(data, name, path, first_row)


def _numeric_numpy(data: np.ndarray, name: str, path: str, first_row: int) -> np.ndarray:
    if data.ndim == 2 and data.shape[0] and not data.shape[1]:
        _no_values(name, path, first_row)
    if data.dtype.kind in "biuf":
        return data.astype(np.float64, copy=data.dtype != np.float64 or not data.flags.writeable)
    if data.dtype.kind in "USO":
        flat = data.reshape(len(data), -1)
        for i, row in enumerate(flat):
            for value in row:
                try:
                    float(value)
                except (TypeError, ValueError):
                    raise InputError(
                        f"{path}, row {first_row + i + 1}: column {name!r} has a "
                        f"non-numeric value {value!r}."
                    ) from None
        return data.astype(np.float64)
    raise InputError(
        f"{path}, row {first_row + 1}: column {name!r} has dtype {data.dtype}; expected numbers."
    )


def _numeric_arrow(data: Any, name: str, path: str, first_row: int) -> np.ndarray:
    pa = require("pyarrow")
    pc = require("pyarrow.compute")
    if pa.types.is_dictionary(data.type):  # a categorical of numbers, from pandas
        data = data.dictionary_decode()
    kind = data.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _numeric_list(data, name, path, first_row)
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
    ):
        # Integers beyond 2**53 (and decimals) round to the nearest float64, as
        # NumPy's conversion does: the losses are computed in float64.
        values = pc.cast(data, pa.float64(), safe=False) if kind != pa.float64() else data
        return _to_numpy(values, np.float64)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # As a CSV file's text is read: surrounding blanks ignored, and the
        # missing-value words ("", NA, nan, null, ...) missing.
        data = pc.utf8_trim_whitespace(data)
        missing = pc.is_in(data, value_set=pa.array(sorted(_csv_nulls())))
        data = pc.if_else(missing, pa.scalar(None, data.type), data)
        try:
            return _to_numpy(pc.cast(data, pa.float64()), np.float64)
        except pa.ArrowInvalid:
            for i, value in enumerate(data.to_pylist()):
                if value is None:
                    continue
                try:
                    pc.cast(pa.array([value]), pa.float64())
                except pa.ArrowInvalid:
                    raise InputError(
                        f"{path}, row {first_row + i + 1}: column {name!r} has a "
                        f"non-numeric value {value!r}."
                    ) from None
            raise
    raise InputError(
        f"{path}, row {first_row + 1}: column {name!r} has type {kind}; expected "
        "numbers or lists of numbers."
    )


def _numeric_list(data: Any, name: str, path: str, first_row: int) -> np.ndarray:
    pa = require("pyarrow")
    pc = require("pyarrow.compute")
    n = len(data)
    lengths = _to_numpy(pc.list_value_length(data), np.float64)  # NaN for null lists
    valid = ~np.isnan(lengths)
    width = int(lengths[valid][0]) if valid.any() else 0
    if valid.any() and width == 0:
        _no_values(name, path, first_row + int(np.argmax(valid)))
    wrong = valid & (lengths != width)
    if wrong.any():
        i = int(np.argmax(wrong))
        raise InputError(
            f"{path}, row {first_row + i + 1}: length mismatch: column {name!r} has "
            f"{int(lengths[i])} values in this row and {width} in earlier rows."
        )
    inner = data.type.value_type
    if not (
        pa.types.is_integer(inner)
        or pa.types.is_floating(inner)
        or pa.types.is_boolean(inner)
        or pa.types.is_decimal(inner)
    ):
        raise InputError(
            f"{path}, row {first_row + 1}: column {name!r} holds lists of {inner}; "
            "expected lists of numbers."
        )
    flat = _to_numpy(data.flatten(), np.float64)
    out = np.full((n, width), np.nan)
    out[valid] = flat.reshape(-1, width) if width else flat
    return out


def _no_values(name: str, path: str, row: int) -> None:
    raise InputError(
        f"{path}, row {row + 1}: column {name!r} holds empty lists (0 values per row); "
        "each row needs at least one value."
    )


def _to_numpy(data: Any, dtype: Any) -> np.ndarray:
    """A primitive Arrow array as a NumPy array of ``dtype`` (nulls become NaN
    for floats), without copying where the type already matches.

    (``Array.to_numpy`` would import pandas, which costs a fifth of a second
    and 50 MB.)"""
    pa = require("pyarrow")
    pc = require("pyarrow.compute")
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks()
    if len(data) == 0:
        return np.empty(0, dtype=dtype)
    target = pa.from_numpy_dtype(np.dtype(dtype))
    if data.type != target:
        # unsafe: integers beyond 2**53 round to the nearest float64, as in NumPy
        data = pc.cast(data, target, safe=not pa.types.is_floating(target))
    if data.null_count:
        data = pc.fill_null(data, float("nan") if target == pa.float64() else 0)
    values = np.frombuffer(data.buffers()[1], dtype=dtype, count=data.offset + len(data))
    return values[data.offset :]


def _datetime_keys(data: np.ndarray) -> np.ndarray:
    """datetime64 group keys: as they are where a ``datetime`` holds them
    (microseconds or coarser), else as ISO text with every digit (as Python
    objects, nanoseconds became integers; as datetimes, keys a nanosecond
    apart would be one group); NaT is the missing key."""
    if np.datetime_data(data.dtype)[0] in ("ns", "ps", "fs", "as"):
        texts = np.datetime_as_string(data).astype(object)
        texts[np.isnat(data)] = None
        return texts
    return data


def _group_codes(
    data: Any, name: str, path: str, first_row: int
) -> tuple[np.ndarray, list[Any] | None]:
    """Group keys as (codes, keys) for Arrow columns, or keys for NumPy ones."""
    if isinstance(data, np.ndarray):
        if data.ndim != 1:
            raise InputError(
                f"{path}, row {first_row + 1}: the --group-by column {name!r} holds "
                f"{data.shape[1:]} values per row; group keys must be one value per row."
            )
        if data.dtype.kind in "iuf":
            return data, None
        if data.dtype.kind == "M":
            return _datetime_keys(data), None
        return np.asarray(data, dtype=object).reshape(len(data)), None
    pa = require("pyarrow")
    kind = data.type
    # (booleans go through the dictionary: as codes they were the numbers 0
    # and 1, or True and False in a batch with a null)
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if numeric and data.null_count == 0:
        # uint64 keys keep their type: from 2**63 on they do not fit int64
        dtype = np.uint64 if kind == pa.uint64() else np.int64
        return _to_numpy(data, np.float64 if pa.types.is_floating(kind) else dtype), None
    try:
        encoded = data.dictionary_encode()
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise InputError(
            f"{path}, row {first_row + 1}: the --group-by column {name!r} has type "
            f"{kind}; group keys must be numbers, text, booleans, dates or times."
        ) from None
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    keys = [*encoded.dictionary.to_pylist(), None]
    codes = _to_numpy(encoded.indices.fill_null(len(keys) - 1), np.int64)
    return codes, keys
