"""``losskit evaluate -``: data piped into the command.

Standard input is copied into a temporary file first, whose extension says
the format its first bytes show, and is then read as any file is.  A copy
costs a write of the data, but keeps what a file gives: CSV parsed in
parallel chunks, errors that name the line (found by reading the text
again), Parquet and Arrow files (their footer is at the end), and the Dask
engine's workers reading pieces of it.  Messages and the report name it
``<stdin>``, not the temporary path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO

from losskit.cli._deps import CLIError

STDIN_PATH = "-"
STDIN_NAME = "<stdin>"
_COPY_BLOCK = 1 << 20

# (first bytes, extension); anything else is CSV text
_MAGIC = (
    (b"PAR1", ".parquet"),
    (b"ARROW1", ".arrow"),
    (b"FEA1", ".feather"),  # Feather v1, refused as such
    (b"\xff\xff\xff\xff", ".arrow"),  # an IPC stream's first message
    (b"\x93NUMPY", ".npy"),
    (b"PK\x03\x04", ".npz"),
    (b"\x1f\x8b", ".csv.gz"),
)


# formats marked at both ends: a CSV whose first column is named PAR1 (a
# gene) starts as Parquet does, but does not end so
_TRAILERS = {".parquet": b"PAR1", ".arrow": b"ARROW1"}


def extension_of(head: bytes, tail: bytes | None = None) -> str:
    """The file extension of data starting with ``head`` (and ending with
    ``tail``, where known): Parquet, Arrow IPC (file or stream), Feather v1,
    ``.npy``, ``.npz`` (a zip archive), gzip-compressed CSV, and otherwise CSV.

    >>> extension_of(b"PAR1...", b"...PAR1")
    '.parquet'
    >>> extension_of(b"PAR1,y_true,y_pred\\n", b"1,2\\n")
    '.csv'
    >>> extension_of(b"y_true,y_pred\\n")
    '.csv'
    """
    for magic, extension in _MAGIC:
        if head.startswith(magic):
            trailer = _TRAILERS.get(extension) if magic == _TRAILERS.get(extension) else None
            if trailer and tail is not None and not tail.endswith(trailer):
                return ".csv"
            return extension
    return ".csv"


def identity() -> tuple[int, int] | None:
    """The device and inode of standard input where it is a regular file
    (``< data.csv``), else None."""
    try:
        status = os.fstat(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return (status.st_dev, status.st_ino) if stat.S_ISREG(status.st_mode) else None


def check_paths(paths: Sequence[str], scheduler: str | None) -> None:
    """Fail, before anything is read, on a ``-`` that cannot be read."""
    if paths.count(STDIN_PATH) > 1:
        raise CLIError("'-' (standard input) is given more than once; it can be read once.")
    if STDIN_PATH not in paths:
        return
    if scheduler:
        raise CLIError(
            "'-' (standard input) is copied to a file on this machine, which the "
            "workers of --scheduler cannot read; save the data where they can, "
            "or use the local engine."
        )
    if sys.stdin is None:
        raise CLIError("'-' reads the data from standard input, which is closed.")
    if sys.stdin.isatty():
        raise CLIError(
            "'-' reads the data from standard input, which is a terminal; "
            "pipe a file into it (losskit evaluate - < preds.csv)."
        )


@contextlib.contextmanager
def spooled(source: IO[bytes] | None = None) -> Iterator[str]:
    """Copy ``source`` (default: standard input) into a temporary file and
    yield its path; the file is removed on exit."""
    stream = source if source is not None else sys.stdin.buffer
    try:
        head = stream.read(8)
    except OSError as error:
        raise CLIError(f"'-': cannot read standard input: {error.strerror or error}.") from None
    if not head:
        raise CLIError("'-': standard input is empty; pipe a file into it.")
    with tempfile.TemporaryDirectory(prefix="losskit-stdin-") as directory:
        copy = os.path.join(directory, "stdin")
        try:
            with open(copy, "wb") as file:
                file.write(head)
                shutil.copyfileobj(stream, file, _COPY_BLOCK)
            with open(copy, "rb") as file:
                file.seek(max(os.path.getsize(copy) - 8, 0))
                tail = file.read()
        except OSError as error:
            raise CLIError(
                f"cannot copy standard input to a temporary file in {directory}: "
                f"{error.strerror or error}; set TMPDIR to a directory with room."
            ) from None
        path = copy + extension_of(head, tail)
        os.rename(copy, path)
        yield path


def renamed(message: str, path: str) -> str:
    """``message`` with the temporary copy's path written as ``<stdin>``."""
    return message.replace(path, STDIN_NAME)
