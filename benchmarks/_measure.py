"""Timing and peak-memory measurement shared by every column of the benchmark.

Timing: every measurement calls the function twice to warm up (the first call
compiles: Numba, XLA, Inductor; a process's first forward and first
forward+backward measurement warm up for at least ``FIRST_WARMUP_S``, see
:func:`time_call`), then times ``repeat`` calls
with ``time.perf_counter`` (the garbage collector off) and reports their median
and minimum.  A call so slow that ``repeat`` of them would exceed the time budget
of a measurement gets fewer timed calls, never fewer than ``min(3, repeat)``.

Peak extra memory, two methods:

- ``tracemalloc`` (NumPy forward): NumPy reports its data allocations to
  :mod:`tracemalloc`; the traced peak during the call minus the traced size
  before it.  Blind to memory NumPy does not allocate (Numba's own runtime
  allocations, torch, XLA).
- ``rss-hwm`` (everything): the Linux peak resident set size.  Free heap memory
  is first returned to the OS (glibc ``malloc_trim(0)``), then the kernel's
  high-water mark ``VmHWM`` is reset to the current RSS by writing ``5`` to
  ``/proc/self/clear_refs`` (Linux >= 4.0); after the call, ``VmHWM`` minus
  that RSS is the peak of memory touched during the call, whichever allocator
  it came from (NumPy, Numba, torch's CPU allocator, XLA).  Page granular, and
  blind to memory that was already resident and reused, so it is a lower bound
  by a few pages.  ``None`` where the mechanism is missing (not Linux).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import math
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Spec",
    "measure",
    "peak_rss_extra",
    "peak_tracemalloc_extra",
    "rss_supported",
    "time_call",
    "to_float",
]

WARMUP_CALLS = 2


def _nothing() -> None:
    return None


@dataclass
class Spec:
    """One thing to measure.

    Attributes:
        call: runs the measured work once (synchronously: it blocks until the
            result is ready) and returns the loss value.
        prepare: runs before every call, untimed (e.g. ``p.grad = None``).
        gradient_bytes: size of the gradient the call leaves behind; it is
            subtracted from the peak memory.
        tracemalloc: also measure with tracemalloc (NumPy inputs), and report
            that as the primary peak.
        memory: measure memory at all (off for the roofline).
    """

    call: Callable[[], Any]
    prepare: Callable[[], None] = _nothing
    gradient_bytes: int = 0
    tracemalloc: bool = False
    memory: bool = True


def to_float(value: Any) -> float | None:
    """The loss value of a call's result as a Python float (``None`` if not one)."""
    if isinstance(value, tuple):
        value = value[0]
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _libc_malloc_trim() -> Callable[[], None]:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return _nothing
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def trim_heap() -> None:
        trim(0)

    return trim_heap


_malloc_trim = _libc_malloc_trim()


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak_rss() -> int:
    """Give free heap memory back, reset ``VmHWM`` to the RSS; return the RSS."""
    _malloc_trim()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return _status_bytes("VmRSS")


@functools.cache
def rss_supported() -> bool:
    """Whether the peak RSS can be reset and read here (Linux >= 4.0)."""
    try:
        _reset_peak_rss()
        _status_bytes("VmHWM")
    except (OSError, KeyError, ValueError):
        return False
    return True


def peak_rss_extra(spec: Spec) -> int | None:
    """Peak resident memory of one call beyond what was resident before it, in
    bytes, less ``spec.gradient_bytes``; ``None`` where unsupported."""
    if not rss_supported():
        return None
    spec.prepare()
    before = _reset_peak_rss()
    result = spec.call()
    peak = _status_bytes("VmHWM")
    del result
    return peak - before - spec.gradient_bytes


def peak_tracemalloc_extra(spec: Spec) -> int:
    """Peak of traced allocations during one call beyond those live before it,
    in bytes, less ``spec.gradient_bytes``."""
    spec.prepare()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = spec.call()
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        if not tracing:
            tracemalloc.stop()
    return peak - before - spec.gradient_bytes


FIRST_WARMUP_S = 1.0
FIRST_WARMUP_CALLS = 25
_warm_kinds: set[str] = set()  # the kinds of measurement this process has warmed up


def time_call(spec: Spec, repeat: int, budget_s: float) -> tuple[dict[str, Any], Any]:
    """Warm up, then time calls; returns the timings and the first result.

    A process's first forward and first forward+backward measurement warm up
    for ``FIRST_WARMUP_S`` (at most ``FIRST_WARMUP_CALLS`` calls): on the
    benchmark's VM a new process's first few 64 MiB outputs, in transparent
    huge pages, took 80-100 ms to fault in instead of 5 ms (a bare Numba loop
    writing fresh ``np.empty`` buffers shows it, so does any library), which
    made whichever loss a column measured first look up to 20x slower than in
    steady state.
    """
    kind = "fwdbwd" if spec.gradient_bytes else "fwd"
    warmup: list[float] = []
    first: Any = None
    calls = WARMUP_CALLS if kind in _warm_kinds else FIRST_WARMUP_CALLS
    for i in range(calls):
        if i >= WARMUP_CALLS and sum(warmup) >= FIRST_WARMUP_S:
            break
        spec.prepare()
        start = time.perf_counter()
        result = spec.call()
        warmup.append(time.perf_counter() - start)
        if i == 0:
            first = result
        del result
    _warm_kinds.add(kind)
    estimate = max(warmup[-1], 1e-9)
    floor = min(3, repeat)
    count = repeat if estimate * repeat <= budget_s else max(floor, math.floor(budget_s / estimate))
    count = min(count, repeat)
    times: list[float] = []
    gc.disable()  # as timeit does; the worker collects between losses
    try:
        for _ in range(count):
            spec.prepare()
            start = time.perf_counter()
            result = spec.call()
            times.append(time.perf_counter() - start)
            del result
    finally:
        gc.enable()
    timing = {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "repeats": count,
        "times_s": times,
        "warmup_s": warmup,
    }
    return timing, first


def measure(spec: Spec, repeat: int, budget_s: float) -> dict[str, Any]:
    """Time a spec and measure its peak extra memory (separate, untimed calls).

    Returns the timings of :func:`time_call`, the loss ``value``, and
    ``peak_extra_bytes`` with the ``peak_extra_method`` that produced it
    (``"tracemalloc"`` for NumPy inputs, else ``"rss-hwm"``), plus each
    method's own number under ``tracemalloc_peak_extra_bytes`` and
    ``rss_peak_extra_bytes``.
    """
    timing, first = time_call(spec, repeat, budget_s)
    result: dict[str, Any] = {**timing, "value": to_float(first)}
    del first
    rss = traced = None
    if spec.memory:
        rss = peak_rss_extra(spec)
        if spec.tracemalloc:
            traced = peak_tracemalloc_extra(spec)
    if traced is not None:
        method, peak = "tracemalloc", traced
    elif rss is not None:
        method, peak = "rss-hwm", rss
    else:
        method, peak = None, None
    result.update(
        peak_extra_bytes=peak,
        peak_extra_method=method,
        rss_peak_extra_bytes=rss,
        tracemalloc_peak_extra_bytes=traced,
    )
    return result


def cpu_threads() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
