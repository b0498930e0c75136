"""Optional dependencies of the command line, imported only when needed."""

from __future__ import annotations

import importlib
from types import ModuleType


class CLIError(Exception):
    """An error to report to the user in one line, without a traceback."""


class UsageError(CLIError):
    """A malformed command line: reported like :class:`CLIError`, exit status 2."""


def require(module: str, extra: str = "cli") -> ModuleType:
    """Import ``module``, or fail with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        raise CLIError(
            f"This command needs {top}, which is not installed ({error}). "
            f'Install it with: pip install "losskit[{extra}]"'
        ) from None
