"""A progress bar on standard error: rows, bytes and throughput (rich)."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from losskit.cli._deps import require


class Progress:
    """``advance(rows, nbytes)`` after each batch; a no-op when disabled."""

    def __init__(self, total_bytes: int, enabled: bool | None, label: str = "evaluating") -> None:
        self.total_bytes = total_bytes
        self.rows = 0
        self.started = time.perf_counter()
        self._bar: Any = None
        self._task: Any = None
        if enabled is False:
            return
        console_module = require("rich.console")
        console = console_module.Console(stderr=True)
        if enabled is None and not console.is_terminal:
            return
        progress = require("rich.progress")

        class RowsColumn(progress.ProgressColumn):  # type: ignore[name-defined]
            def render(self, task: Any) -> Any:
                rows = task.fields.get("rows", 0)
                elapsed = task.elapsed or 0.0
                rate = rows / elapsed if elapsed > 0 else 0.0
                return require("rich.text").Text(f"{rows:,} rows  {rate:,.0f} rows/s")

        self._bar = progress.Progress(
            progress.TextColumn("[bold]{task.description}"),
            progress.BarColumn(),
            progress.TaskProgressColumn(),
            RowsColumn(),
            progress.DownloadColumn(),
            progress.TransferSpeedColumn(),
            progress.TimeElapsedColumn(),
            progress.TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = self._bar.add_task(label, total=max(total_bytes, 1), rows=0)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, rows: int, nbytes: int) -> None:
        self.rows += rows
        if self._bar is not None:
            self._bar.update(self._task, advance=nbytes, rows=self.rows)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=max(self.total_bytes, 1), rows=self.rows)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            if kind is None:
                self.finish()
            self._bar.stop()
