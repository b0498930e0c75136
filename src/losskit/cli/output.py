"""``--output``: where a result is written, checked before any input is read.

A regular file (or a new one) is written atomically: the text goes to a
temporary file in the same directory, created when the run starts (so an
unwritable or missing directory fails at once, not after the evaluation),
and is renamed over the path at the end, with the mode a new file gets
(``0o666`` less the umask).  Anything else the path names (a FIFO, a
character device such as ``/dev/null``, or the target of a symbolic link)
is written directly, never replaced: a symbolic link stays a link and its
target receives the text.  A failed run leaves the path as it was.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from typing import IO, Any

from losskit.cli._deps import CLIError, UsageError

__all__ = [
    "STDOUT_PATH",
    "Output",
    "check_not_an_input",
    "current_umask",
    "prepare_output",
    "same_file",
]

STDOUT_PATH = "-"


def current_umask() -> int:
    """The process's umask (from ``/proc`` on Linux, without changing it)."""
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open("/proc/self/status", encoding="ascii") as status,
    ):
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and set it back
    os.umask(mask)
    return mask


class Output:
    """Standard output (``path`` None), a file written atomically
    (``temporary`` set) or a path written directly (a FIFO, a device, the
    target of a symbolic link).  ``option`` names it in errors.

    A result is written in two steps, so that two outputs (the report and a
    figure) appear together or not at all: :meth:`stage` writes the data to
    the temporary file (or keeps it, for a direct path), :meth:`commit`
    puts it in place; :meth:`write` does both."""

    def __init__(
        self, path: str | None, temporary: str | None = None, option: str = "--output"
    ) -> None:
        self.path = path
        self.temporary = temporary
        self.option = option
        self._staged: str | bytes | None = None

    def write(self, data: str | bytes) -> None:
        """Write ``data`` (the whole result) where the output goes."""
        self.stage(data)
        self.commit()

    def stage(self, data: str | bytes) -> None:
        """Make ``data`` ready to be put in place by :meth:`commit`."""
        if self.temporary is not None:
            try:
                with _opened(self.temporary, data) as stream:
                    stream.write(data)
                os.chmod(self.temporary, 0o666 & ~current_umask())
            except OSError as error:
                raise self._failed(error) from None
        self._staged = data

    def commit(self) -> None:
        """Put the staged data in place (nothing if none was staged)."""
        data, self._staged = self._staged, None
        if data is None:
            return
        if self.path is None:
            _write_stdout(data if isinstance(data, str) else data.decode("utf-8"))
            return
        try:
            if self.temporary is None:
                with _opened(self.path, data) as stream:
                    stream.write(data)
                return
            os.replace(self.temporary, self.path)
            self.temporary = None
        except OSError as error:
            raise self._failed(error) from None

    def _failed(self, error: OSError) -> CLIError:
        return CLIError(f"{self.option} {self.path!r}: cannot write it: {_reason(error)}.")

    def close(self) -> None:
        """Remove the temporary file of a result that was never written."""
        if self.temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.temporary)
            self.temporary = None


def _opened(path: str, data: str | bytes) -> IO[Any]:
    if isinstance(data, bytes):
        return open(path, "wb")
    return open(path, "w", encoding="utf-8")


def _write_stdout(text: str) -> None:
    """Print ``text``; a closed or full standard output is one error line."""
    if sys.stdout is None:
        raise CLIError("cannot write the result: standard output is closed.")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except (OSError, ValueError) as error:
        # What is left in the buffer goes nowhere: flushing it again at exit
        # would print a second error.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        if isinstance(error, BrokenPipeError):
            raise CLIError("standard output was closed before the result was written.") from None
        reason = _reason(error) if isinstance(error, OSError) else str(error)
        raise CLIError(f"cannot write the result to standard output: {reason}.") from None


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def prepare_output(path: str | None, option: str = "--output") -> Output:
    """Check that ``path`` can be written (creating the temporary file of an
    atomic write) before any input is read; a one-line error names
    ``option`` and ``path``."""
    if path is None or path == STDOUT_PATH:
        return Output(None, option=option)
    if not path:
        raise UsageError(f"{option} '': give a file name.")
    where = f"{option} {path!r}"
    if os.path.islink(path):  # written through: the link stays a link
        if os.path.isdir(path):
            raise CLIError(f"{where}: it links to a directory.")
        if os.path.exists(path):
            if not os.access(path, os.W_OK):
                raise CLIError(f"{where}: its target is not writable.")
        else:
            _check_directory(where, os.path.dirname(os.path.realpath(path)))
        return Output(path, option=option)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise CLIError(f"{where}: {_reason(error)}.") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise CLIError(f"{where}: it is a directory; give a file name.")
    if mode is not None and not stat.S_ISREG(mode):
        if not os.access(path, os.W_OK):
            raise CLIError(f"{where}: it is not writable.")
        return Output(path, option=option)  # a FIFO, a device: written directly
    directory = os.path.dirname(path) or os.curdir
    _check_directory(where, directory)
    try:
        handle, temporary = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".losskit-tmp"
        )
    except OSError as error:
        raise CLIError(f"{where}: cannot write in {directory!r}: {_reason(error)}.") from None
    os.close(handle)
    return Output(path, temporary, option)


def _check_directory(where: str, directory: str) -> None:
    if not os.path.isdir(directory):
        missing = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise CLIError(f"{where}: the directory {directory!r} {missing}.")


def check_not_an_input(
    path: str | None,
    inputs: list[str],
    stdin: tuple[int, int] | None = None,
    option: str = "--output",
) -> None:
    """Fail if ``path`` (what ``option`` writes) names one of the input files,
    under any spelling or link, or the file that standard input is
    (``stdin``: its device and inode): writing there would replace the data
    it was computed from."""
    if path is None or path == STDOUT_PATH or not os.path.exists(path):
        return
    if stdin is not None:
        with contextlib.suppress(OSError):
            status = os.stat(path)
            if (status.st_dev, status.st_ino) == stdin:
                raise CLIError(
                    f"{option} {path!r} is the file on standard input; writing the "
                    "result there would replace the data. Give another file."
                )
    for source in inputs:
        with contextlib.suppress(OSError):
            if os.path.samefile(path, source):
                raise CLIError(
                    f"{option} {path!r} is the input file {source!r}; writing the "
                    "result there would replace the data. Give another file."
                )


def same_file(first: str, second: str) -> bool:
    """Whether two paths name one file: the same file where both exist (a
    link, a hard link, another spelling), else the same resolved path."""
    with contextlib.suppress(OSError):
        return os.path.samefile(first, second)
    return os.path.realpath(first) == os.path.realpath(second)
