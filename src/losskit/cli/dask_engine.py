"""``--engine dask``: one accumulator per piece of the files, merged in a tree.

The files are cut into pieces (runs of Parquet row groups, IPC record
batches, ``.npy`` rows; whole CSV and ``.npz`` files).  Each piece is a task
that reads it and returns its accumulators' state (:class:`Work`); merge tasks
combine them :data:`FAN_IN` at a time, level by level, into one.  The
tasks are pure functions of the file contents, so when a worker dies the
scheduler recomputes what it held and the result is unchanged.

Without ``--scheduler`` a ``dask.distributed.LocalCluster`` of worker
processes is started for the run; with it, the workers must see the files
at the same paths.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from losskit.cli import readers
from losskit.cli._deps import CLIError, require
from losskit.cli.engine import Plan, Work, evaluate_piece
from losskit.cli.progress import Progress

FAN_IN = 8


def piece_task(
    plan: Plan,
    piece: readers.Piece,
    on_start: Callable[[readers.Piece], None] | None = None,
) -> Work:
    """The task of one piece (runs on a worker)."""
    if on_start is not None:
        on_start(piece)
    return evaluate_piece(plan, piece)


def merge_task(*works: Work) -> Work:
    """The task merging several pieces' results (runs on a worker)."""
    total = works[0]
    for work in works[1:]:
        total.merge(work)
    return total


def _tree(client: Any, leaves: Sequence[Any]) -> Any:
    level = list(leaves)
    while len(level) > 1:
        level = [
            client.submit(merge_task, *level[i : i + FAN_IN], pure=False)
            for i in range(0, len(level), FAN_IN)
        ]
    return level[0]


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None) -> Any:
    distributed = require("distributed", extra="dask")
    require("dask", extra="dask")
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout="20s")
        except OSError as error:
            raise CLIError(
                f"Cannot connect to the Dask scheduler at {scheduler}: {error}"
            ) from None
        with client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    with (
        distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def run_dask(
    plan: Plan,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    on_piece_start: Callable[[readers.Piece], None] | None = None,
    client: Any = None,
) -> Work:
    """Evaluate ``plan`` as a Dask graph on ``client`` (or on the cluster at
    ``scheduler``, or on a new LocalCluster)."""
    if not plan.pieces:
        return Work.empty(plan)
    if client is None:
        with _client(scheduler, workers) as own:
            return run_dask(plan, progress=progress, on_piece_start=on_piece_start, client=own)
    distributed = require("distributed", extra="dask")
    plan_future = client.scatter(plan, broadcast=True)
    leaves = [
        client.submit(piece_task, plan_future, piece, on_piece_start, pure=False)
        for piece in plan.pieces
    ]
    root = _tree(client, leaves)
    try:
        if progress is not None:
            sizes = {leaf.key: piece for leaf, piece in zip(leaves, plan.pieces, strict=True)}
            for leaf in distributed.as_completed(leaves):
                if leaf.status == "error":
                    break
                piece = sizes[leaf.key]
                progress.advance(piece.rows or 0, piece.nbytes)
        return root.result()
    finally:
        for future in (*leaves, root):
            future.cancel()
