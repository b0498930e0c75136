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

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from losskit.cli import readers
from losskit.cli._deps import CLIError, require
from losskit.cli.engine import Plan, Work, evaluate_piece
from losskit.cli.progress import Progress

FAN_IN = 8
# seconds to connect to a --scheduler and hear it answer as a scheduler
CONNECT_TIMEOUT = 5.0


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


def _tree(client: Any, leaves: Sequence[Any]) -> list[list[Any]]:
    """The merge tree over ``leaves``: its levels, the leaves first and the
    root (a level of one) last."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        levels.append(
            [
                client.submit(merge_task, *level[i : i + FAN_IN], pure=False)
                for i in range(0, len(level), FAN_IN)
            ]
        )
    return levels


def _cancel(client: Any, levels: list[list[Any]]) -> None:
    """Cancel the tree from the root down.  (Cancelling a task makes the
    scheduler cancel its dependents too, and it fails an assertion, printing
    a traceback, on a dependent that no client still holds: cancelling the
    leaves of a finished tree printed 29 lines of AssertionError.)"""
    for level in reversed(levels):
        client.cancel(level)


def _check_scheduler(address: str, timeout: float | None = None) -> None:
    """Fail in at most about ``timeout`` seconds (:data:`CONNECT_TIMEOUT`)
    unless ``address`` is a Dask scheduler's: one that is malformed, that
    nothing listens at, or where something else listens (a web server, a
    socket that never answers), would otherwise give a traceback or make
    ``Client`` wait for an answer forever."""
    comm_module = require("distributed.comm", extra="dask")
    security_module = require("distributed.security", extra="dask")
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    where = f"--scheduler {address!r}"
    try:
        scheme, location = comm_module.parse_address(address)
        comm_module.registry.get_backend(scheme)
        if scheme in ("tcp", "tls"):
            comm_module.parse_host_port(location)
    except (ValueError, TypeError) as error:
        raise CLIError(
            f"{where}: not a Dask scheduler address ({error}); give one like tcp://HOST:8786."
        ) from None
    if scheme == "inproc":  # in this process: nothing to wait for
        return

    async def identity() -> Any:
        arguments = security_module.Security().get_connection_args("client")
        comm = await comm_module.connect(address, timeout=timeout, **arguments)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    async def bounded() -> Any:
        return await asyncio.wait_for(identity(), timeout)

    try:
        # on a thread of its own: the caller may be running an event loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            reply = pool.submit(asyncio.run, bounded()).result()
    except (asyncio.TimeoutError, TimeoutError):
        reason = f"no answer from a Dask scheduler within {timeout:g} s"
    except Exception as error:  # what the transport raised: refused, reset, garbage
        reason = " ".join(str(error).split()) or type(error).__name__
    else:
        if isinstance(reply, dict) and reply.get("type") == "Scheduler":
            return
        reason = "what answers there is not a Dask scheduler"
    raise CLIError(f"{where}: cannot connect to a Dask scheduler: {reason}.")


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None) -> Any:
    distributed = require("distributed", extra="dask")
    require("dask", extra="dask")
    if scheduler:
        _check_scheduler(scheduler)
        try:
            client = distributed.Client(scheduler, timeout="20s")
        except (OSError, ValueError) as error:
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
            # The workers' own log records (a task failing on bad data logs
            # "Compute Failed" with its traceback) stay out of the terminal:
            # the error reaches the command, which reports it in one line.
            silence_logs=logging.CRITICAL,
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
    levels = _tree(client, leaves)
    root = levels[-1][0]
    finished = False
    try:
        if progress is not None:
            sizes = {leaf.key: piece for leaf, piece in zip(leaves, plan.pieces, strict=True)}
            for leaf in distributed.as_completed(leaves):
                if leaf.status == "error":
                    break
                piece = sizes[leaf.key]
                progress.advance(piece.rows or 0, piece.nbytes)
        work: Work = root.result()
        finished = True
        return work
    finally:
        if not finished:  # an error or an interrupt: stop what still runs
            _cancel(client, levels)
        for level in levels:  # a finished tree is released, not cancelled
            for future in level:
                future.release()
