"""What the Numba kernels save per element, loss by loss: the table behind
``losskit evaluate``'s choice between them and NumPy
(``_NUMPY_EXTRA_NS`` in ``src/losskit/cli/engine.py``, used by
``kernels_pay_off``).

Each built-in loss with a kernel is called with ``reduction="sum"`` and
``dtype="float64"`` on one batch of ``--elements`` values (the evaluator's
batch size), as the evaluator's accumulators call it: once on the kernels and
once inside ``kernels.declined()`` (the NumPy fast path or the reference).
Numba runs on one thread, as in the evaluator's computing threads.  The best
of ``--repeat`` calls is kept; the output is ns per element for each path and
their difference, which is what the table holds (rounded); then the
grouped runs' addition of a batch's group sums into the running ones
(``_GROUP_ADD_EXTRA_NS``: 60% of 10^6 groups, 3 fields, compiled loop vs
NumPy); and Numba's start-up in a fresh process (import, first cached kernel
load).

    python benchmarks/kernel_costs.py
    python benchmarks/kernel_costs.py --elements 262144 --repeat 9
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

START_UP = """
import time
start = time.perf_counter()
import numba
imported = time.perf_counter()
import numpy as np
from losskit import kernels
entry = kernels.entries()["squared_error"]
x = np.zeros((1, 1))
loading = time.perf_counter()
entry.forward(x, x, np.ones(1), 0, 0.0, 0.0)
print(imported - start, time.perf_counter() - loading)
"""


def inputs(name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Valid inputs of ``n`` elements for the loss class ``name``."""
    if "Sparse" in name or "Generalized" in name:  # integer labels
        return rng.integers(0, 4, (n // 4,)).astype(float), rng.dirichlet(np.ones(4), n // 4)
    if ("Categorical" in name and "Hinge" not in name) or name == "KLDivergence":
        return rng.dirichlet(np.ones(4), n // 4), rng.dirichlet(np.ones(4), n // 4)
    probabilities = rng.uniform(0.01, 0.99, (n, 1))
    if "Hinge" in name or "Binary" in name:
        return (rng.random((n, 1)) > 0.5).astype(float), probabilities
    return rng.uniform(0.5, 10.0, (n, 1)), probabilities


def best_seconds(call: Callable[..., Any], arguments: tuple[Any, ...], repeat: int) -> float:
    call(*arguments)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call(*arguments)
        best = min(best, time.perf_counter() - start)
    return best


def group_add_ns(rng: np.random.Generator, repeat: int) -> tuple[float, float]:
    """ns per group and field of adding 632,000 groups' sums (the distinct keys
    of a 2^20-row batch over 10^6 keys) into 10^6 running sums, as
    ``_Sums.add`` does on the compiled loop and on NumPy."""
    from losskit import kernels, streaming

    n = 632_000
    rows = np.sort(rng.choice(1_000_000, n, replace=False))
    values = rng.random((n, 3))
    found = []
    for declined in (False, True):
        sums = streaming._Sums(3, ())
        sums.grow(1_000_000)
        with kernels.declined() if declined else contextlib.nullcontext():
            found.append(best_seconds(sums.add, (rows, values), repeat) * 1e9 / (3 * n))
    return found[0], found[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", type=int, default=1 << 20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import numba

    import losskit
    from losskit import kernels, spec

    numba.set_num_threads(1)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__}; "
        f"{args.elements} float64 elements per call, best of {args.repeat}"
    )
    rng = np.random.default_rng(0)
    with_kernels = {s.cls.__name__ for s in spec.SPECS if s.kernel is not None}
    print(f"{'loss':32s} {'kernel':>8s} {'NumPy':>8s} {'saved':>8s}  (ns per element)")
    for info in losskit.LOSSES:
        if info.cls.__name__ not in with_kernels:
            continue
        loss = info.cls(reduction="sum", dtype="float64")
        y_true, y_pred = inputs(info.cls.__name__, args.elements, rng)
        fused = best_seconds(loss, (y_true, y_pred), args.repeat)
        with kernels.declined():
            plain = best_seconds(loss, (y_true, y_pred), args.repeat)
        ns = 1e9 / args.elements
        print(
            f"{info.cls.__name__:32s} {fused * ns:8.2f} {plain * ns:8.2f} "
            f"{(plain - fused) * ns:8.2f}"
        )
    group_add = group_add_ns(rng, args.repeat)
    print(
        f"group sums added: kernel {group_add[0]:.2f}, NumPy {group_add[1]:.2f}, "
        f"saved {group_add[1] - group_add[0]:.2f} ns per group and field"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", START_UP], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(3)
    ]
    imported = min(float(run[0]) for run in runs)
    loaded = min(float(run[1]) for run in runs)
    print(
        f"Numba start-up, fresh process (best of 3): import {imported:.2f} s, "
        f"first load {loaded:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
